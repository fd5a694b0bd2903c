"""The public HTTP API and the admin interface against a real driver and SQLite store.

A single-node council, so finality works alone. No sockets to peers: the transports are
started (their routes are mounted) but nothing is dialed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse
from aiohttp.test_utils import TestClient, TestServer

from swarmd.node.cli.home import init_home
from swarmd.node.config import load_config
from swarmd.node.http.admin import build_admin_app, write_cookie
from swarmd.node.http.api import build_app
from swarmd.node.runtime.driver import Daemon
from swarmd.protocol import crypto, limits
from swarmd.protocol.ops import Op
from swarmd.protocol.wallet import Author

WAIT_S = 10.0
FAST = {"consensus": {"checkpoint_interval_s": 0.05, "timeout_propose_s": 0.2}}


@dataclass
class Node:
    home: Path
    daemon: Daemon
    api: TestClient
    admin: TestClient
    token: str
    council: Author

    @property
    def network_id(self) -> bytes:
        return self.daemon.genesis.network_id

    def new_author(self) -> Author:
        return Author(crypto.KeyPair.from_seed(os.urandom(32)), self.network_id)

    async def submit(self, op: Op | bytes) -> tuple[int, dict[str, Any]]:
        data = op.envelope if isinstance(op, Op) else op
        response = await self.api.post(
            "/v1/ops", data=data, headers={"Content-Type": "application/octet-stream"}
        )
        return response.status, await response.json()

    async def get(self, path: str) -> tuple[int, Any]:
        response = await self.api.get(path)
        return response.status, await response.json()

    async def set_mode(self, mode: str, reason: str, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token if token is not None else self.token}"}
        return await self.admin.post(
            "/v1/admin/mode", json={"mode": mode, "reason": reason}, headers=headers
        )


async def open_node(home: Path, keypair: crypto.KeyPair | None = None, **overrides: Any) -> Node:
    if keypair is not None:
        init_home(home, keypair=keypair, config_overrides={**FAST, **overrides})
    config = load_config(home / "swarmd.toml")
    daemon = await Daemon.open(config)
    daemon.create_transports()
    token = write_cookie(config.admin.cookie_file)
    api = TestClient(TestServer(build_app(daemon)))
    admin = TestClient(TestServer(build_admin_app(daemon, token)))
    await daemon.start()
    await api.start_server()
    await admin.start_server()
    council = Author(daemon.keypair, daemon.genesis.network_id)
    return Node(home, daemon, api, admin, token, council)


async def close_node(node: Node) -> None:
    await node.api.close()
    await node.admin.close()
    await node.daemon.stop()


@pytest.fixture
async def make_node(tmp_path: Path) -> AsyncIterator[Any]:
    nodes: list[Node] = []

    async def factory(**overrides: Any) -> Node:
        keypair = crypto.KeyPair.from_seed(os.urandom(32))
        node = await open_node(tmp_path / f"home-{len(nodes)}", keypair, **overrides)
        nodes.append(node)
        return node

    yield factory
    for node in nodes:
        if node.daemon.started:
            await close_node(node)


def fresh_key() -> bytes:
    return crypto.KeyPair.from_seed(os.urandom(32)).public_key


async def next_event(ws: ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(WAIT_S):
        while True:
            event: dict[str, Any] = await ws.receive_json()
            if event["type"] == kind:
                return event


async def test_grant_transfer_and_finality(make_node: Any) -> None:
    node = await make_node()
    alice, bob = node.new_author(), node.new_author()
    ws = await node.api.ws_connect(f"/v1/events?account={alice.keypair.account_id}")
    assert (await ws.receive_json())["type"] == "subscribed"

    grant = node.council.grant(alice.key, 100)
    status, body = await node.submit(grant)

    assert (status, body) == (202, {"op_id": grant.op_id.hex(), "status": "accepted"})
    credit = await next_event(ws, "credit_received")
    assert credit["account"] == alice.keypair.account_id
    assert (credit["amount"], credit["op_id"]) == (100, grant.op_id.hex())
    final = await next_event(ws, "op_final")
    assert final["op_id"] == grant.op_id.hex() and final["height"] >= 1

    status, account = await node.get(f"/v1/accounts/{alice.keypair.account_id}")
    assert status == 200
    assert (account["balance"], account["spendable"], account["seq"]) == (100, 0, 0)
    assert account["unreceived"] == [grant.op_id.hex()]

    transfer = alice.transfer(bob.key, 30, receive=[grant.op_id])
    status, body = await node.submit(transfer)
    assert status == 202 and body["status"] == "accepted"
    _, account = await node.get(f"/v1/accounts/{alice.keypair.account_id}")
    assert (account["balance"], account["spendable"], account["seq"]) == (70, 70, 1)
    assert account["head"] == transfer.op_id.hex() and account["unreceived"] == []
    _, view = await node.get(f"/v1/ops/{transfer.op_id.hex()}")
    assert view["op"]["kind"] == "transfer" and view["op"]["amount"] == 30
    assert view["status"] in ("applied", "final")

    status, checkpoint = await node.get("/v1/checkpoints/latest")
    assert status == 200 and checkpoint["height"] >= 1
    assert checkpoint["signers"] == [node.daemon.node_id_text]
    await ws.close()


async def test_duplicate_submission_is_acknowledged_again(make_node: Any) -> None:
    node = await make_node()
    grant = node.council.grant(node.new_author().key, 100)
    assert (await node.submit(grant))[0] == 202

    status, body = await node.submit(grant)

    assert (status, body["status"]) == (202, "duplicate")


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"\x00garbage", "application/octet-stream", 400, "malformed_op"),
        (b"", "application/octet-stream", 400, "malformed_op"),
        (b'{"envelope": "zz"}', "application/json", 400, "bad_request"),
        (b"[1, 2]", "application/json", 400, "bad_request"),
        (b"not json", "application/json", 400, "bad_request"),
        (b"x", "text/plain", 415, "unsupported_media_type"),
        (bytes(limits.OP_ENVELOPE_SIZE_BYTES_MAX + 1), "application/octet-stream", 400, None),
    ],
)
async def test_bad_bodies_get_typed_errors(
    make_node: Any, body: bytes, content_type: str, status: int, code: str | None
) -> None:
    node = await make_node()

    response = await node.api.post("/v1/ops", data=body, headers={"Content-Type": content_type})

    payload = await response.json()
    assert response.status == status
    assert set(payload) >= {"error", "code"}
    if code is not None:
        assert payload["code"] == code
    assert (await node.get("/v1/status"))[0] == 200  # still serving


async def test_forged_and_wrong_network_ops_are_rejected(make_node: Any) -> None:
    node = await make_node()
    grant = node.council.grant(node.new_author().key, 100)
    forged = grant.envelope[:-1] + bytes([grant.envelope[-1] ^ 1])
    other = Author(crypto.KeyPair.from_seed(os.urandom(32)), os.urandom(32))

    assert (await node.submit(forged))[1]["code"] == "bad_signature"
    assert (await node.submit(other.grant(other.key, 5)))[0] == 400
    status, body = await node.submit(node.new_author().transfer(other.key, 5))
    assert status == 400 and body["code"] and body["op_id"]


async def test_oversized_request_gets_413(make_node: Any) -> None:
    node = await make_node()
    size_max = node.daemon.config.api.request_size_bytes_max

    response = await node.api.post(
        "/v1/ops", data=bytes(size_max + 1), headers={"Content-Type": "application/octet-stream"}
    )

    assert response.status == 413
    assert (await response.json())["code"] == "request_too_large"


@pytest.mark.gate("rl-http-per-client")
async def test_rate_limit_per_client_gives_429(make_node: Any) -> None:
    node = await make_node(api={"rate_limit_per_s": 0.1, "rate_limit_burst": 3})

    statuses = [(await node.api.get("/v1/status")).status for _ in range(5)]

    assert statuses == [200, 200, 200, 429, 429]
    response = await node.api.get("/v1/status")
    assert (await response.json())["code"] == "rate_limited"


async def test_reads_validate_their_parameters(make_node: Any) -> None:
    node = await make_node()

    assert (await node.get("/v1/accounts/sw1nope"))[0] == 400
    assert (await node.get("/v1/ops/abcd"))[1]["code"] == "bad_op_id"
    assert (await node.get(f"/v1/ops/{'00' * 32}"))[1]["code"] == "op_not_found"
    assert (await node.get("/v1/checkpoints/latest"))[1]["code"] == "checkpoint_not_found"
    assert (await node.get("/v1/checkpoints/x"))[1]["code"] == "bad_height"
    for bad in ("-5", "0"):
        status, body = await node.get(f"/v1/checkpoints/{bad}")
        assert (status, body["code"]) == (400, "bad_height")
    assert (await node.get("/v1/handles/NO"))[0] == 400
    assert (await node.get("/v1/handles/nobody"))[1]["code"] == "handle_not_found"
    assert (await node.get("/v1/nothing"))[1]["code"] == "not_found"
    metrics = await node.api.get("/metrics")
    assert metrics.status == 200 and "swarmd" in await metrics.text()


async def test_admin_needs_the_cookie_token(make_node: Any) -> None:
    node = await make_node()

    assert (await node.set_mode("read-only", "x", token="wrong")).status == 401
    response = await node.admin.post("/v1/admin/mode", json={"mode": "read-only"})
    assert response.status == 401 and (await response.json())["code"] == "unauthorized"
    assert (await node.set_mode("sideways", "x")).status == 400
    assert (await node.get("/v1/status"))[1]["mode"] == "normal"
    cookie = node.daemon.config.admin.cookie_file
    assert cookie.stat().st_mode & 0o777 == 0o600
    assert cookie.read_text().strip() == node.token


async def test_read_only_refuses_writes_and_survives_restart(make_node: Any) -> None:
    node = await make_node()
    ws = await node.api.ws_connect("/v1/events")
    await ws.receive_json()

    response = await node.set_mode("read-only", "disk migration")

    assert response.status == 200
    changed = await next_event(ws, "mode_changed")
    assert (changed["mode"], changed["reason"]) == ("read-only", "disk migration")
    status, body = await node.submit(node.council.grant(node.new_author().key, 100))
    assert status == 503
    assert (body["code"], body["reason"]) == ("read_only", "disk migration")
    await ws.close()
    await close_node(node)

    restarted = await open_node(node.home)
    try:
        _, status_view = await restarted.get("/v1/status")
        assert (status_view["mode"], status_view["mode_reason"]) == ("read-only", "disk migration")
        assert (await restarted.set_mode("quiesced", "drill")).status == 200
        status, body = await restarted.submit(restarted.council.grant(fresh_key(), 100))
        assert (status, body["code"]) == (503, "quiesced")
        assert (await restarted.set_mode("normal", "")).status == 200
        grant = restarted.council.grant(fresh_key(), 100)
        assert (await restarted.submit(grant))[0] == 202
    finally:
        await close_node(restarted)


async def test_acknowledged_ops_survive_restart(make_node: Any) -> None:
    node = await make_node()
    grants = [node.council.grant(node.new_author().key, 100) for _ in range(20)]
    results = await asyncio.gather(*(node.submit(grant) for grant in grants))
    assert all(status == 202 for status, _ in results)
    await close_node(node)

    restarted = await open_node(node.home)
    try:
        for grant in grants:
            status, view = await restarted.get(f"/v1/ops/{grant.op_id.hex()}")
            assert status == 200 and view["status"] in ("applied", "final")
    finally:
        await close_node(restarted)


async def test_batch_submission(make_node: Any) -> None:
    from swarmd.protocol import encoding

    node = await make_node()
    people = [node.new_author() for _ in range(5)]
    grants = [node.council.grant(p.key, node.daemon.genesis.signup_reward) for p in people]
    forged = bytearray(grants[0].envelope)
    forged[-1] ^= 1
    body = encoding.encode([g.envelope for g in grants] + [bytes(forged)])
    headers = {"Content-Type": "application/msgpack"}
    response = await node.api.post("/v1/ops/batch", data=body, headers=headers)
    assert response.status == 202
    results = (await response.json())["results"]
    assert [r["status"] for r in results] == ["accepted"] * 5 + ["rejected"]
    assert results[-1]["code"] == "bad_signature"
    status, account = await node.get(f"/v1/accounts/{people[4].keypair.account_id}")
    assert status == 200 and account["balance"] == node.daemon.genesis.signup_reward
    for bad_body, bad_headers, code in [
        (b"\x01", headers, 400),
        (encoding.encode([]), headers, 400),
        (encoding.encode([1, 2]), headers, 400),
        (body, {"Content-Type": "application/json"}, 415),
        (b"\x00" * 70_000, headers, 413),
    ]:
        response = await node.api.post("/v1/ops/batch", data=bad_body, headers=bad_headers)
        assert response.status == code
        assert "code" in await response.json()


async def test_op_final_reaches_every_account_subscriber_and_is_bounded_unfiltered(
    make_node: Any,
) -> None:
    from swarmd.node.http.events import FINAL_OPS_PUBLISHED_UNFILTERED_MAX as BOUND
    from swarmd.protocol import encoding

    node = await make_node()
    # Every grant is authored by the council: its subscriber follows all of them.
    everything = await node.api.ws_connect("/v1/events")
    council = await node.api.ws_connect(f"/v1/events?account={node.daemon.node_id_text}")
    for ws in (everything, council):
        assert (await ws.receive_json())["type"] == "subscribed"
    people = [node.new_author() for _ in range(BOUND + 20)]
    grants = [node.council.grant(p.key, node.daemon.genesis.signup_reward) for p in people]
    body = encoding.encode([g.envelope for g in grants])

    # One request: every grant is admitted before the first checkpoint is cut.
    response = await node.api.post(
        "/v1/ops/batch", data=body, headers={"Content-Type": "application/msgpack"}
    )
    assert response.status == 202

    unfiltered_final: list[str] = []
    truncated: list[dict[str, Any]] = []
    async with asyncio.timeout(WAIT_S):
        while True:
            event = await everything.receive_json()
            if event["type"] == "op_final":
                unfiltered_final.append(event["op_id"])
            elif event["type"] == "op_final_truncated":
                truncated.append(event)
            elif event["type"] == "checkpoint_final":
                checkpoint = event
                break
    assert checkpoint["ops"] == len(grants)
    assert len(unfiltered_final) == BOUND
    assert len(truncated) == 1 and truncated[0].pop("id") < checkpoint["id"]
    assert truncated[0].pop("accounts") == []  # only unfiltered subscribers are told
    assert truncated == [
        {
            "type": "op_final_truncated",
            "height": checkpoint["height"],
            "ops": len(grants),
            "published": BOUND,
        }
    ]
    council_final = set()
    async with asyncio.timeout(WAIT_S):
        while len(council_final) < len(grants):
            event = await next_event(council, "op_final")
            assert node.daemon.node_id_text in event["accounts"]
            council_final.add(event["op_id"])
    assert council_final == {g.op_id.hex() for g in grants}
    await everything.close()
    await council.close()


async def test_logged_ops_carry_their_own_id_author_and_seq(make_node: Any) -> None:
    # The log's columns come from the ledger's decoded op (not a second decode): they must
    # still be exactly the envelope's.
    from swarmd.protocol.ops import decode_op

    node = await make_node()
    alice, bob = node.new_author(), node.new_author()
    grant = node.council.grant(alice.key, node.daemon.genesis.signup_reward)
    pay = alice.transfer(bob.key, 3, receive=[grant.op_id])
    for op in (grant, pay):
        assert (await node.submit(op))[0] == 202

    rows = await node.daemon.node_log.store.read_log(0, 10)  # type: ignore[attr-defined]

    assert [row.envelope for row in rows] == [grant.envelope, pay.envelope]
    for row in rows:
        op = decode_op(row.envelope)
        assert (row.op_id, row.author, row.author_seq) == (op.op_id, op.author, op.seq)
