"""Hypothesis writes raw bytes to a live node's API and admin ports and its event stream
(issue 14).

Below what an HTTP client library lets through: garbage instead of a request, request lines
with odd methods, targets and versions, headers that are too many, too long or malformed,
contradictory Content-Length and Transfer-Encoding, broken chunked bodies. Whatever arrives,
the node either closes the connection or answers a status below 500 whose error body is the
one JSON shape; its log shows no bug (aiohttp's parser errors included); it keeps serving.

The event stream (`GET /v1/events`, a WebSocket) gets odd `account` filters and whatever a
client may send on it: the node refuses a bad filter with a typed 400 and ignores or closes on
client messages, never failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator

import aiohttp
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from tests.live.conftest import LiveNode, fuzz_examples

TIMEOUT_S = 10.0
#: Silence after which an answer is taken as complete (the node keeps a connection alive, or
#: waits for the rest of a body the request announced).
IDLE_S = 0.3
#: Bytes of an answer read at most (an error answer is small; a 200 page is not needed whole).
ANSWER_BYTES_MAX = 256 * 1024

FUZZ = settings(
    max_examples=fuzz_examples(),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)

#: Printable header and path text (control characters only ever stop aiohttp's parser, which
#: the raw binary strategy already reaches).
token = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=24)
methods = st.sampled_from(["GET", "GET", "POST", "POST", "PUT", "HEAD", "OPTIONS", "DELETE"])
targets = st.sampled_from(
    [
        *("/v1/status", "/v1/ops", "/v1/ops/batch", "/v1/signal", "/v1/ws", "/v1/events", "/"),
        *("/v1/onboarding/signup", "/v1/accounts/x/ops?limit=-1", "/v1/hype?top=", "/metrics"),
        *("/v1/admin/mode", "/v1/admin/status", "/v1/admin/council/rollback"),
    ]
) | token.map(lambda text: "/v1/" + text.replace("#", ""))
versions = st.sampled_from(["HTTP/1.1"] * 6 + ["HTTP/1.0", "HTTP/2.0", "HTTP/9", "http/1.1"])
header_names = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz-XYZ"), min_size=1, max_size=16)
content_types = st.sampled_from(
    ["application/json", "application/octet-stream", "application/msgpack", "text/plain", ""]
)
headers = st.lists(
    st.one_of(
        st.tuples(st.just("Content-Type"), content_types),
        st.tuples(st.sampled_from(["Content-Length", "Transfer-Encoding", "Content-Type"]), token),
        st.tuples(st.just("Transfer-Encoding"), st.just("chunked")),
        st.tuples(st.just("Content-Length"), st.integers(-5, 10**12).map(str)),
        st.tuples(st.just("Content-Length"), st.integers(0, 600).map(str)),
        st.tuples(header_names, token),
        st.tuples(st.just("X-Long"), st.integers(1, 20_000).map(lambda n: "x" * n)),
    ),
    max_size=4,
)
bodies = st.binary(max_size=512) | st.sampled_from([b"0\r\n\r\n", b"5\r\nab\r\n", b"zz\r\n"])
requests_bytes = st.one_of(
    st.binary(min_size=1, max_size=2048),
    st.builds(
        lambda method, target, version, fields, body: (
            (
                f"{method} {target} {version}\r\nHost: 127.0.0.1\r\n"
                + "".join(f"{name}: {value}\r\n" for name, value in fields)
                + "\r\n"
            ).encode()
            + body
        ),
        methods,
        targets,
        versions,
        headers,
        bodies,
    ),
    st.integers(101, 300).map(
        lambda count: b"GET /v1/status HTTP/1.1\r\n" + b"X-H: 1\r\n" * count + b"\r\n"
    ),
)


def exchange(node: LiveNode, data: bytes, port: int) -> bytes:
    """Send `data` on a fresh connection and read the answer until the node closes it or has
    said nothing for IDLE_S (aiohttp treats a half-close as a client gone: no answer at all,
    so the connection stays open for writing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)  # the node may close first: what it answered is still there
        sock.settimeout(IDLE_S)
        answer = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while len(answer) < ANSWER_BYTES_MAX and (chunk := sock.recv(65536)):
                answer += chunk
        return answer


def check_answer(answer: bytes, head_request: bool = False) -> None:
    """Every response in `answer` below 500; every error one the JSON shape (only its content
    type when the request was HEAD: the answer to HEAD has no body)."""
    while answer.startswith(b"HTTP/"):
        head, _, rest = answer.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        assert status < 500, head
        fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
        fields = {name.strip().lower(): value.strip() for name, value in fields.items()}
        length = int(fields.get(b"content-length", b"0"))
        body, answer = rest[:length], rest[length:]
        if status >= 400:
            assert fields.get(b"content-type", b"").startswith(b"application/json"), head
            if head_request:
                return
            value = json.loads(body)
            assert isinstance(value["error"], str) and value["code"], value
        elif b"content-length" not in fields:
            return  # a streamed or upgraded answer: nothing after it to parse
    assert answer == b"" or not answer.strip(), answer[:200]


@FUZZ
@given(data=requests_bytes, admin=st.booleans())
def test_raw_http_bytes_get_json_errors_or_a_close(
    live_node: LiveNode, data: bytes, admin: bool
) -> None:
    if admin:  # with the token after the request line, so requests reach the handlers
        line, crlf, rest = data.partition(b"\r\n")
        data = line + crlf + f"Authorization: Bearer {live_node.admin_token()}\r\n".encode() + rest
    note(f"sent {data[:300]!r}")
    answer = exchange(live_node, data, live_node.admin_port if admin else live_node.api_port)
    note(f"answer {answer[:600]!r}")
    check_answer(answer, head_request=data.startswith(b"HEAD "))
    found = live_node.problems()
    assert not found, "node log shows a bug:\n" + "\n".join(found[:20])


# --- the event stream ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as runner:
        yield runner


async def event_stream(node: LiveNode, account: str | None, sends: list[bytes | str]) -> int:
    """Open the stream with `account`, send `sends`; the HTTP status (101 when it opened)."""
    params = {} if account is None else {"account": account}
    async with asyncio.timeout(TIMEOUT_S), aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(node.url + "/v1/events", params=params)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        async with ws:
            for item in sends:
                if ws.closed:
                    break
                await (ws.send_str(item) if isinstance(item, str) else ws.send_bytes(item))
            await ws.close()
        return 101


@FUZZ
@given(
    account=st.none() | st.text(max_size=80) | st.just("sw1" + "a" * 56),
    sends=st.lists(st.binary(max_size=256) | st.text(max_size=256), max_size=4),
)
def test_event_stream_takes_any_filter_and_client_message(
    live_node: LiveNode, loop: asyncio.Runner, account: str | None, sends: list[bytes | str]
) -> None:
    status = loop.run(event_stream(live_node, account, sends))
    assert status in (101, 400), status
    found = live_node.problems()
    assert not found, "node log shows a bug:\n" + "\n".join(found[:20])


def test_the_node_is_healthy_after_the_raw_fuzz(live_node: LiveNode) -> None:
    live_node.assert_healthy()
