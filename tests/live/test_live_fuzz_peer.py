"""Hypothesis drives a live node's peer endpoints (issue 14): `POST /v1/signal` and `/v1/ws`.

Signalling: random bytes, canonical msgpack of any shape, correctly signed offers with one
field of the wrong type or size, offers with a broken signature, and correctly signed offers
whose SDP is a real aiortc offer with lines dropped, duplicated or garbled (so aiortc's own
parser is reached). Every answer is 200 or a documented typed refusal in the JSON error shape.

WebSocket: a first (hello) message that is random, text, or a signed hello with a bad field or
signature must be refused with close code 4001 and a "code: message" reason. After a valid
handshake, link messages follow: random bytes, a bad link header, and valid framing around
structured-malformed protocol messages (every message type with values of any shape, op
envelopes with flipped bytes, random consensus payloads). Then a ping: the node either answers
the pong (it dropped what it could not use) or has closed the link; never a crash.

After each example the node's log must show no bug; after each test the node must still run
and answer `/v1/status`. Bounded by SWARMD_FUZZ_EXAMPLES (tests/live/conftest.py).
"""

from __future__ import annotations

import asyncio
import os
import re
import struct
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import aiohttp
import pytest
import requests
from aiortc import RTCConfiguration, RTCPeerConnection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmd.node.transport import signaling
from swarmd.node.transport.link import FRAME_KIND_DATA, FRAME_KIND_PING, FRAME_KIND_PONG
from swarmd.node.transport.websocket import WS_CLOSE_HANDSHAKE_REFUSED, WS_PATH
from swarmd.protocol import encoding, limits
from swarmd.protocol.crypto import KeyPair
from swarmd.protocol.errors import ProtocolError
from swarmd.protocol.framing import FrameEncoder
from swarmd.protocol.messages import MessageType
from swarmd.protocol.wallet import Author
from tests.fuzz.test_decoders import values
from tests.live.conftest import LiveNode, fuzz_examples

T = TypeVar("T")

#: Statuses `/v1/signal` may refuse with (node/http/openapi.py), and the busy/rate answers.
SIGNAL_REFUSALS = {400, 401, 403, 409, 413, 429, 503}
#: How long one WebSocket exchange may take before the example fails (a hang is a bug).
EXCHANGE_TIMEOUT_S = 10.0

FUZZ = settings(
    max_examples=fuzz_examples(),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.Runner]:
    """One event loop for the module's async helpers (Hypothesis examples are synchronous)."""
    with asyncio.Runner() as runner:
        yield runner


def run(runner: asyncio.Runner, work: Coroutine[Any, Any, T]) -> T:
    return runner.run(work)


async def _real_offer_sdp() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("swarmd")
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


@pytest.fixture(scope="module")
def offer_sdp(loop: asyncio.Runner) -> str:
    return run(loop, _real_offer_sdp())


def assert_clean(node: LiveNode) -> None:
    found = node.problems()
    assert not found, "node log shows a bug:\n" + "\n".join(found[:20])


# --- signed messages -------------------------------------------------------------------------


def body_for(kind: str, node: LiveNode, keypair: KeyPair, **fields: Any) -> dict[str, Any]:
    return signaling.new_body(
        kind,
        keypair=keypair,
        network_id=node.network_id,
        to=node.keypair.public_key,
        nonce=os.urandom(signaling.NONCE_SIZE_BYTES),
        now=time.time(),
        **fields,
    )


def offer_fields(sdp: str) -> dict[str, Any]:
    return {"sdp": sdp.encode(), "fingerprints": signaling.parse_dtls_fingerprints(sdp)}


#: One body field replaced: by a value of any shape, by bytes of a wrong size, or removed.
field_damage = st.tuples(
    st.sampled_from(
        ["v", "kind", "from", "to", "network_id", "nonce", "expires_at", "url", "sdp", "extra"]
    ),
    st.one_of(
        values,
        st.binary(max_size=80),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.just(None),
        st.just("<removed>"),
    ),
)


def damaged(body: dict[str, Any], damage: tuple[str, Any]) -> dict[str, Any]:
    name, value = damage
    changed = dict(body)
    if value == "<removed>":
        changed.pop(name, None)
    else:
        changed[name] = value
    return changed


def sign_any(keypair: KeyPair, body: dict[str, Any]) -> bytes:
    """`signaling.sign` for bodies that need not be well-formed: canonical msgpack when the
    values allow it (so the damaged field itself is what the node sees), else plain msgpack."""
    try:
        encoded = encoding.encode(body)
    except ProtocolError:
        encoded = encoding.pack(body)
    signature = keypair.sign(signaling.SIGNAL_DOMAIN_TAG + encoded)
    return encoding.encode({"body": encoded, "signature": signature})


def flip(data: bytes, index: int, mask: int) -> bytes:
    index %= len(data)
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1 :]


# --- POST /v1/signal -------------------------------------------------------------------------


def post_signal(node: LiveNode, http: requests.Session, envelope: bytes) -> tuple[int, Any]:
    response = http.post(
        node.url + "/v1/signal",
        data=envelope,
        headers={"Content-Type": "application/octet-stream"},
        timeout=EXCHANGE_TIMEOUT_S,
    )
    if response.status_code == 200:
        signaling.open_signed(response.content, signaling.KIND_ANSWER)
        return 200, None
    assert response.status_code in SIGNAL_REFUSALS, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body["error"], str) and isinstance(body["code"], str), body
    assert body["code"], body
    return response.status_code, body["code"]


@FUZZ
@given(data=st.binary(max_size=2048) | values.map(encoding.encode))
def test_signal_answers_random_bytes_with_a_typed_refusal(
    live_node: LiveNode, http: requests.Session, data: bytes
) -> None:
    status, _ = post_signal(live_node, http, data)
    assert status != 200
    assert_clean(live_node)


@FUZZ
@given(damage=field_damage, bad_signature=st.booleans(), where=st.integers(0, 2**16))
def test_signal_refuses_signed_offers_with_a_bad_field(
    live_node: LiveNode,
    http: requests.Session,
    offer_sdp: str,
    damage: tuple[str, Any],
    bad_signature: bool,
    where: int,
) -> None:
    dialer = KeyPair.from_seed(os.urandom(32))
    body = damaged(body_for("offer", live_node, dialer, **offer_fields(offer_sdp)), damage)
    envelope = sign_any(dialer, body)
    if bad_signature:
        outer = encoding.decode(envelope)
        outer["signature"] = flip(outer["signature"], where, 1 + where % 255)
        envelope = encoding.encode(outer)
    post_signal(live_node, http, envelope)
    assert_clean(live_node)


def _sdp_edits(sdp: str) -> st.SearchStrategy[str]:
    """The offer with lines dropped, duplicated or with a token replaced by random text (the
    fingerprint lines are kept, so the signed list still matches and aiortc parses it)."""
    lines = [line for line in sdp.split("\r\n") if line]
    keep = [i for i, line in enumerate(lines) if not line.startswith("a=fingerprint:")]
    edit = st.tuples(
        st.sampled_from(keep),
        st.sampled_from(["drop", "double", "garble", "insert"]),
        st.text(st.characters(codec="ascii", exclude_characters="\r\n"), max_size=24),
    )

    def apply(edits: list[tuple[int, str, str]]) -> str:
        result = list(lines)
        for index, action, text in sorted(edits, reverse=True):
            if action == "drop":
                del result[index]
            elif action == "double":
                result.insert(index, result[index])
            elif action == "garble":
                head = re.sub(r"[^ :=/]+$", "", result[index])
                result[index] = head + text
            else:
                result.insert(index, text)
        return "\r\n".join(result) + "\r\n"

    return st.lists(edit, min_size=1, max_size=4, unique_by=lambda e: e[0]).map(apply)


#: What a garbled but signed offer may be answered with besides 200.
GARBLED_OFFER_CODES = {"signal_malformed", "signal_busy", "signal_binding_mismatch"}


@FUZZ
@given(data=st.data())
def test_signal_answers_signed_offers_with_garbled_sdp(
    live_node: LiveNode, http: requests.Session, offer_sdp: str, data: st.DataObject
) -> None:
    sdp = data.draw(_sdp_edits(offer_sdp))
    dialer = KeyPair.from_seed(os.urandom(32))
    fields = {"sdp": sdp.encode(), "fingerprints": signaling.parse_dtls_fingerprints(sdp)}
    envelope = signaling.sign(dialer, body_for("offer", live_node, dialer, **fields))
    status, code = post_signal(live_node, http, envelope)
    assert status == 200 or code in GARBLED_OFFER_CODES, code
    assert_clean(live_node)


# --- /v1/ws ----------------------------------------------------------------------------------


async def handshake(node: LiveNode, ws: aiohttp.ClientWebSocketResponse, key: KeyPair) -> None:
    """The client side of the WebSocket handshake (hello, welcome, confirm)."""
    hello = body_for(signaling.KIND_HELLO, node, key)
    hello_envelope = signaling.sign(key, hello)
    await ws.send_bytes(hello_envelope)
    message = await ws.receive()
    assert message.type == aiohttp.WSMsgType.BINARY, message
    welcome = signaling.open_signed(message.data, signaling.KIND_WELCOME)
    signaling.check_echo(welcome, signaling.SignedMessage(hello, hello_envelope))
    confirm = body_for(
        signaling.KIND_CONFIRM,
        node,
        key,
        echo_nonce=welcome.body["nonce"],
        echo_digest=welcome.digest,
    )
    await ws.send_bytes(signaling.sign(key, confirm))


async def refused_hello(node: LiveNode, first: bytes | str) -> tuple[int | None, str]:
    """Send `first` as the hello: (close code, reason) of the refusal, or (None, "welcome")."""
    async with (
        asyncio.timeout(EXCHANGE_TIMEOUT_S),
        aiohttp.ClientSession() as session,
        session.ws_connect(node.url + WS_PATH) as ws,
    ):
        await (ws.send_str(first) if isinstance(first, str) else ws.send_bytes(first))
        message = await ws.receive()
        if message.type == aiohttp.WSMsgType.BINARY:
            signaling.open_signed(message.data, signaling.KIND_WELCOME)
            return None, "welcome"
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message
        return ws.close_code, str(message.extra or "")


def acceptable_hello(node: LiveNode, envelope: bytes) -> bool:
    """Whether a damaged hello is still one the node should welcome (e.g. `to` = None, another
    url, a version field rewritten to the same value)."""
    try:
        hello = signaling.open_signed(envelope, signaling.KIND_HELLO)
    except ProtocolError:
        return False
    body, now = hello.body, time.time()
    return (
        body["network_id"] == node.network_id
        and body["to"] in (None, node.keypair.public_key)
        and body["from"] != node.keypair.public_key
        and now <= body["expires_at"] <= now + signaling.SIGNAL_TTL_S
    )


hellos = st.one_of(
    st.binary(max_size=1024),
    st.text(max_size=64),
    values.map(encoding.encode),
    st.tuples(field_damage, st.booleans(), st.integers(0, 2**16)),
)


@FUZZ
@given(first=hellos)
def test_ws_refuses_a_bad_hello_with_a_typed_close(
    live_node: LiveNode, loop: asyncio.Runner, first: Any
) -> None:
    if isinstance(first, tuple):
        damage, bad_signature, where = first
        key = KeyPair.from_seed(os.urandom(32))
        envelope = sign_any(key, damaged(body_for("hello", live_node, key), damage))
        if bad_signature:
            outer = encoding.decode(envelope)
            outer["signature"] = flip(outer["signature"], where, 1 + where % 255)
            envelope = encoding.encode(outer)
        first = envelope
    code, reason = run(loop, refused_hello(live_node, first))
    if reason == "welcome":  # the damage left a hello the node may accept
        assert isinstance(first, bytes) and acceptable_hello(live_node, first), first
        return
    assert code == WS_CLOSE_HANDSHAKE_REFUSED, (code, reason)
    assert re.fullmatch(r"[a-z_]+: .+", reason, re.DOTALL), reason
    assert_clean(live_node)


def batch(*messages: bytes) -> bytes:
    """One link data message: the link header and a batch frame (protocol/framing.py)."""
    encoder = FrameEncoder()
    for message in messages:
        encoder.queue_message(message)
    frames = encoder.frames_to_send()
    assert len(frames) == 1
    return bytes([FRAME_KIND_DATA]) + frames[0]


_AUTHOR = Author(KeyPair.from_seed(bytes(32)), bytes(32))
_SEED_OP = _AUTHOR.grant(KeyPair.from_seed(bytes([1]) * 32).public_key, 5).envelope

#: A protocol message: a known type with fields of any shape, or a signed op damaged.
protocol_messages = st.one_of(
    st.tuples(st.sampled_from(list(MessageType)), st.lists(values, max_size=4)).map(
        lambda pair: encoding.encode([int(pair[0]), *pair[1]])
    ),
    st.tuples(st.integers(0, len(_SEED_OP) - 1), st.integers(1, 255)).map(
        lambda pair: encoding.encode([int(MessageType.OPS), [flip(_SEED_OP, *pair)]])
    ),
    st.binary(min_size=1, max_size=256).map(
        lambda payload: encoding.encode([int(MessageType.CONSENSUS), payload])
    ),
    st.binary(max_size=256),
)
#: Well-framed batches of malformed protocol messages, then perhaps one broken link message
#: (after which the node closes the link).
batches = st.lists(protocol_messages, min_size=1, max_size=4).map(lambda items: batch(*items))
broken_link_messages = st.one_of(
    st.binary(max_size=512),
    st.binary(max_size=64).map(lambda payload: bytes([FRAME_KIND_DATA]) + payload),
    st.integers(3, 255).map(lambda kind: bytes([kind]) + bytes(8)),
)
link_messages = st.tuples(
    st.lists(batches, min_size=1, max_size=4), st.none() | broken_link_messages
).map(lambda pair: pair[0] + ([] if pair[1] is None else [pair[1]]))


async def after_handshake(node: LiveNode, messages: list[bytes]) -> str:
    """Send `messages` over a fresh link, then a ping; "pong" or "closed"."""
    ping = bytes([FRAME_KIND_PING]) + struct.pack(">Q", time.monotonic_ns())
    async with (
        asyncio.timeout(EXCHANGE_TIMEOUT_S),
        aiohttp.ClientSession() as session,
        session.ws_connect(node.url + WS_PATH, max_msg_size=limits.FRAME_SIZE_BYTES_MAX + 2) as ws,
    ):
        await handshake(node, ws, KeyPair.from_seed(os.urandom(32)))
        for message in [*messages, ping]:
            if ws.closed:
                return "closed"
            await ws.send_bytes(message)
        async for reply in ws:
            if reply.type != aiohttp.WSMsgType.BINARY:
                return "closed"
            if reply.data[:1] == bytes([FRAME_KIND_PONG]) and reply.data[1:] == ping[1:]:
                return "pong"
        return "closed"


@FUZZ
@given(messages=link_messages)
def test_ws_link_survives_malformed_frames(
    live_node: LiveNode, loop: asyncio.Runner, messages: list[bytes]
) -> None:
    outcome = run(loop, after_handshake(live_node, messages))
    assert outcome in ("pong", "closed")
    assert_clean(live_node)


def test_the_node_is_healthy_after_the_peer_fuzz(live_node: LiveNode) -> None:
    live_node.assert_healthy()
    # Every fuzz link was closed: none lingers in the peer table.
    live_node.wait_for("the fuzz peers to be gone", lambda status: not status["peers"])
