"""Issue 14: bad input never crashes a handler (public API and admin interface).

Each test reproduces one finding of breaking a live devnet (F1, F12, F2, F8) against a real
driver and store; every answer is the one JSON error shape and the node keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from swarmd.node.cli.main import main
from swarmd.node.http.body import json_depth
from swarmd.node.http.server import JsonErrorRunner
from swarmd.node.logs import configure_logging, parse_json_lines, reset_logging
from swarmd.protocol import encoding, limits
from tests.node import test_api
from tests.node.test_api import Node

DEEP = 5_000

make_node = test_api.make_node  # the fixture: a single-node council behind both apps


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    output = io.StringIO()
    configure_logging("test-node", "debug", "json", stream=output)
    yield output
    reset_logging()


def assert_no_traceback(output: io.StringIO) -> None:
    for event in parse_json_lines(output.getvalue()):
        assert "exception" not in event and event["event"] != "request_failed", event


async def post_json(node: Node, path: str, body: bytes, admin: bool = False) -> Any:
    client = node.admin if admin else node.api
    headers = {"Content-Type": "application/json"}
    if admin:
        headers["Authorization"] = f"Bearer {node.token}"
    response = await client.post(path, data=body, headers=headers)
    return response.status, await response.json()


@pytest.mark.parametrize(
    ("path", "body", "admin"),
    [
        ("/v1/ops", b"[" * DEEP + b"]" * DEEP, False),
        ("/v1/ops", b'{"envelope": ' + b"[" * 3_000 + b"]" * 3_000 + b"}", False),
        ("/v1/ops", b"[" * DEEP, False),  # unterminated
        ("/v1/admin/mode", b'{"mode": ' + b"[" * 2_000 + b"]" * 2_000 + b"}", True),
    ],
)
async def test_f1_deeply_nested_json_is_a_typed_400(
    make_node: Any, log_output: io.StringIO, path: str, body: bytes, admin: bool
) -> None:
    node = await make_node()

    status, payload = await post_json(node, path, body, admin)

    assert (status, payload["code"]) == (400, "json_too_deep")
    assert set(payload) == {"error", "code"}
    assert (await node.get("/v1/status"))[0] == 200
    assert_no_traceback(log_output)


def test_json_depth_ignores_brackets_inside_strings() -> None:
    assert json_depth(b'{"a": "[[[[{{{{"}') == 1
    assert json_depth(b'{"a": "\\"[[["}') == 1
    assert json_depth(b"[[1], [[2]]]") == 3
    assert json_depth(b"[" * (limits.JSON_BODY_DEPTH_MAX + 1)) == limits.JSON_BODY_DEPTH_MAX + 1


async def test_json_body_at_the_depth_bound_is_parsed(make_node: Any) -> None:
    node = await make_node()
    depth = limits.JSON_BODY_DEPTH_MAX - 1
    body = b'{"envelope": ' + b"[" * depth + b"]" * depth + b"}"

    status, payload = await post_json(node, "/v1/ops", body)

    assert (status, payload["code"]) == (400, "bad_request")


class JsonErrorTestServer(TestServer):
    """The test server on the node's own runner (`service.py` serves with it)."""

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        return JsonErrorRunner(self.app, **kwargs)


@pytest.fixture
async def raw_server() -> AsyncIterator[tuple[str, int]]:
    app = web.Application()
    app.router.add_get("/ok", lambda request: asyncio.sleep(0, web.json_response({})))
    server = JsonErrorTestServer(app, host="127.0.0.1")
    await server.start_server()
    yield "127.0.0.1", server.port or 0
    await server.close()


async def raw_request(address: tuple[str, int], data: bytes) -> tuple[int, bytes, bytes]:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(data)
    await writer.drain()
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), head, body


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /" + b"a" * 16_384 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /ok HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
        + b"\r\n",
        b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 16_384 + b"\r\n\r\n",
        b"\x16\x03\x01garbage\r\n\r\n",
    ],
)
async def test_f12_unparseable_requests_answer_json_without_a_traceback(
    raw_server: tuple[str, int], log_output: io.StringIO, request_bytes: bytes
) -> None:
    status, head, body = await raw_request(raw_server, request_bytes)

    assert 400 <= status < 500
    assert b"application/json" in head.lower()
    payload = json.loads(body)
    assert set(payload) == {"error", "code"} and payload["code"]
    assert_no_traceback(log_output)
    ok, _, _ = await raw_request(
        raw_server, b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert ok == 200


async def test_f8_resubmitting_a_rejected_op_answers_the_rejection(make_node: Any) -> None:
    node = await make_node()
    broke = node.new_author().transfer(node.new_author().key, 5)
    status, first = await node.submit(broke)
    assert status == 400 and first["code"] == "insufficient_funds"

    status, again = await node.submit(broke)

    assert (status, again["code"]) == (400, "insufficient_funds")
    assert again["op_id"] == broke.op_id.hex() and "error" in again


async def test_f8_a_batch_of_only_rejected_ops_is_not_accepted(make_node: Any) -> None:
    node = await make_node()
    broke = [node.new_author().transfer(node.new_author().key, 5) for _ in range(3)]
    await node.submit(broke[0])  # rejected once already: a duplicate of a rejection
    body = encoding.encode([op.envelope for op in broke])
    headers = {"Content-Type": "application/msgpack"}

    response = await node.api.post("/v1/ops/batch", data=body, headers=headers)

    payload = await response.json()
    assert response.status == 400 and payload["code"] == "insufficient_funds"
    assert [r["code"] for r in payload["results"]] == ["insufficient_funds"] * 3


async def run_cli(*argv: str) -> tuple[int, dict[str, Any]]:
    """`swarmd --json ...` in a thread (its HTTP client blocks; the node runs on this loop)."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = await asyncio.to_thread(main, ["--json", *argv])
    # The node's own log lines share stdout here (structlog's default) and may come after the
    # CLI's answer (a checkpoint finalizing meanwhile): the answer is the one JSON object line.
    answers = [line for line in output.getvalue().splitlines() if line.startswith("{")]
    assert len(answers) == 1, output.getvalue()
    return code, json.loads(answers[0])


async def test_a_second_grant_to_a_tester_says_it_already_got_the_signup_reward(
    make_node: Any,
) -> None:
    node = await make_node()
    url = str(node.api.make_url("")).rstrip("/")
    key = str(node.home / "node.key")
    tester = node.new_author().keypair.account_id

    code, first = await run_cli("wallet", "grant", "--node", url, "--key", key, "--to", tester)
    assert code == 0 and first["status"] == "accepted"
    code, second = await run_cli("wallet", "grant", "--node", url, "--key", key, "--to", tester)

    assert (code, second["code"]) == (1, "already_granted")
    assert "already received the signup reward" in second["error"]


async def test_f8_wallet_send_retried_after_a_rejection_exits_1(
    make_node: Any, tmp_path: Path
) -> None:
    node = await make_node()
    url = str(node.api.make_url("")).rstrip("/")
    code, _ = await run_cli("wallet", "new", "--out", str(tmp_path / "w.key"))
    assert code == 0
    broke = [
        "--node",
        url,
        "--key",
        str(tmp_path / "w.key"),
        "--to",
        node.council.keypair.account_id,
    ]

    for _ in range(2):
        code, refused = await run_cli("wallet", "send", *broke, "--amount", "5")
        assert (code, refused["code"]) == (1, "insufficient_funds")
