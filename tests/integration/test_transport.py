"""Real WebRTC and WebSocket transports over loopback: frames, identity, refusals, liveness."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from swarmd.node.transport import (
    FrameTooLargeError,
    SignalingRejectedError,
    TransportConfig,
    signaling,
)
from swarmd.node.transport.link import BULK_QUEUE_BYTES_MAX
from swarmd.protocol import encoding, limits
from swarmd.protocol.crypto import KeyPair

pytestmark = pytest.mark.integration

# Node and NodeFactory come from conftest.py through the fixtures (make_node, free_port);
# test modules do not import conftest, so these names are only annotations here.
Node = Any
NodeFactory = Any
WAIT_S = 10.0


def connected_ids(node: Node) -> list[bytes]:
    return [peer_id for peer_id, _ in node.recorder.connected]


async def exchange_frames(a: Node, b: Node) -> None:
    """Large and small frames both ways; each direction must arrive complete and in order."""
    large = [os.urandom(limits.FRAME_SIZE_BYTES_MAX) for _ in range(16)]
    small = [i.to_bytes(4, "big") * (1 + i % 7) for i in range(1000)]
    for frame in large + small:
        assert a.transport.send(b.node_id, frame)
    for frame in small:
        assert b.transport.send(a.node_id, frame, control=True)
    await b.recorder.wait_for(lambda: len(b.recorder.frames) == len(large) + len(small))
    await a.recorder.wait_for(lambda: len(a.recorder.frames) == len(small))
    assert b.recorder.frames_from(a.node_id) == large + small
    assert a.recorder.frames_from(b.node_id) == small


@pytest.mark.parametrize("kind", ["webrtc", "websocket"])
async def test_frames_flow_both_ways_between_verified_ids(
    make_node: NodeFactory, kind: str
) -> None:
    a, b = await make_node(kind), await make_node(kind)

    peer_id = await a.transport.connect(None, b.url)

    assert peer_id == b.node_id
    await b.recorder.wait_for(lambda: connected_ids(b) == [a.node_id])
    assert connected_ids(a) == [b.node_id]
    info = a.transport.peers()[b.node_id]
    assert (info.transport, info.direction, info.remote_url) == (kind, "outbound", b.url)
    assert b.transport.peers()[a.node_id].direction == "inbound"
    await exchange_frames(a, b)


@pytest.mark.parametrize("kind", ["webrtc", "websocket"])
async def test_heartbeat_measures_rtt_and_close_is_reported(
    make_node: NodeFactory, kind: str
) -> None:
    a, b = await make_node(kind), await make_node(kind)
    await a.transport.connect(b.node_id, b.url)

    await a.transport.wait_for_peers(lambda peers: peers[b.node_id].rtt_ms is not None, WAIT_S)
    rtt_ms = a.transport.peers()[b.node_id].rtt_ms
    assert rtt_ms is not None and 0 < rtt_ms < 1000

    await b.close()
    await a.recorder.wait_for(lambda: len(a.recorder.disconnected) == 1)
    assert a.recorder.disconnected[0][0] == b.node_id
    assert b.node_id not in a.transport.peers()


async def test_send_bounds_frame_size_and_queue(make_node: NodeFactory) -> None:
    a, b = await make_node(), await make_node()
    await a.transport.connect(b.node_id, b.url)

    with pytest.raises(FrameTooLargeError) as raised:
        a.transport.send(b.node_id, bytes(limits.FRAME_SIZE_BYTES_MAX + 1))
    assert raised.value.code == "frame_too_large"
    assert a.transport.send(KeyPair.from_seed(bytes(32)).public_key, b"x") is False
    # No await between sends: the writer cannot drain, so the byte bound must be hit.
    large = bytes(limits.FRAME_SIZE_BYTES_MAX)
    accepted = 0
    while accepted <= BULK_QUEUE_BYTES_MAX // len(large) and a.transport.send(b.node_id, large):
        accepted += 1
    assert accepted == BULK_QUEUE_BYTES_MAX // (len(large) + 1)
    assert a.transport.send(b.node_id, b"heartbeat-like", control=True)
    await b.recorder.wait_for(lambda: len(b.recorder.frames) == accepted + 1)
    # Control frames jump ahead of the bulk queue.
    assert b.recorder.frames[0][1] == b"heartbeat-like"


async def test_send_queue_frame_count_bound(make_node: NodeFactory) -> None:
    a, b = await make_node("websocket"), await make_node("websocket")
    await a.transport.connect(b.node_id, b.url)

    results = [a.transport.send(b.node_id, b"m") for _ in range(limits.PEER_SEND_QUEUE_MAX + 1)]

    assert results.count(True) == limits.PEER_SEND_QUEUE_MAX and results[-1] is False


# --- signaling refusals ----------------------------------------------------------------------


@pytest.fixture
async def offer_sdp(make_node: NodeFactory) -> AsyncIterator[str]:
    """A real aiortc offer (ICE pinned to loopback by the transports' start)."""
    await make_node()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("swarmd")
    await pc.setLocalDescription(await pc.createOffer())
    yield pc.localDescription.sdp
    await pc.close()


def signed_offer(
    keypair: KeyPair, network_id: bytes, sdp: str, *, now: float | None = None, **overrides: Any
) -> bytes:
    body = signaling.new_body(
        signaling.KIND_OFFER,
        keypair=keypair,
        network_id=network_id,
        to=None,
        nonce=os.urandom(signaling.NONCE_SIZE_BYTES),
        now=time.time() if now is None else now,
        sdp=sdp.encode(),
        fingerprints=signaling.parse_dtls_fingerprints(sdp),
    )
    return signaling.sign(keypair, {**body, **overrides})


async def post_signal(url: str, envelope: bytes) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/signal", data=envelope) as response,
    ):
        if response.status == 200:
            return 200, await response.read()
        return response.status, (await response.json())["code"]


async def test_signaling_refuses_bad_offers_with_typed_codes(
    make_node: NodeFactory, network_id: bytes, offer_sdp: str
) -> None:
    b = await make_node()
    dialer = KeyPair.from_seed(os.urandom(32))
    valid = signed_offer(dialer, network_id, offer_sdp)

    status, answer_envelope = await post_signal(b.url, valid)
    assert status == 200
    answer = signaling.open_signed(answer_envelope, signaling.KIND_ANSWER)
    signaling.check_echo(answer, signaling.open_signed(valid, signaling.KIND_OFFER))
    assert answer.sender_id == b.node_id and answer.body["to"] == dialer.public_key

    outer = encoding.decode(valid)
    tampered_body = outer["body"].replace(b"a=fingerprint", b"a=fingerprinT", 1)
    tampered = encoding.encode({"body": tampered_body, "signature": outer["signature"]})
    cases = {
        "signal_replayed": valid,
        "bad_signature": tampered,
        "signal_expired": signed_offer(dialer, network_id, offer_sdp, now=time.time() - 120),
        "wrong_network": signed_offer(dialer, os.urandom(32), offer_sdp),
        "wrong_peer": signed_offer(dialer, network_id, offer_sdp, to=dialer.public_key),
        "signal_binding_mismatch": signed_offer(
            dialer, network_id, offer_sdp, fingerprints=["sha-256 " + "AB:" * 31 + "AB"]
        ),
        "signal_malformed": b"\x81\xa4body\xc4\x01x",
    }
    statuses = {"signal_replayed": 409, "bad_signature": 401, "wrong_network": 403}
    statuses["wrong_peer"] = 403
    for code, envelope in cases.items():
        assert await post_signal(b.url, envelope) == (statuses.get(code, 400), code)
    assert b.transport.peers() == {}


def test_replay_cache_is_bounded_and_forgets_expired_nonces() -> None:
    cache = signaling.ReplayCache(entries_max=2)
    cache.remember(b"n1", expires_at=100, now=50)
    cache.remember(b"n2", expires_at=110, now=50)

    with pytest.raises(signaling.SignalReplayedError):
        cache.remember(b"n1", expires_at=100, now=60)
    with pytest.raises(signaling.SignalBusyError) as busy:
        cache.remember(b"n3", expires_at=120, now=60)
    assert busy.value.code == "signal_busy"
    cache.remember(b"n3", expires_at=120, now=101)  # n1 expired and was forgotten
    assert len(cache) == 2


async def test_dialer_gets_the_refusal_code(make_node: NodeFactory, network_id: bytes) -> None:
    a, b = await make_node(), await make_node()
    other_network = await make_node(network=os.urandom(32))

    with pytest.raises(SignalingRejectedError) as wrong_peer:
        await a.transport.connect(other_network.node_id, b.url)
    with pytest.raises(SignalingRejectedError) as wrong_network:
        await a.transport.connect(None, other_network.url)

    assert (wrong_peer.value.code, wrong_peer.value.http_status) == ("wrong_peer", 403)
    assert wrong_network.value.code == "wrong_network"
    assert a.transport.peers() == {} and b.transport.peers() == {}


async def test_websocket_hello_for_another_network_is_refused(make_node: NodeFactory) -> None:
    a = await make_node("websocket")
    b = await make_node("websocket", network=os.urandom(32))

    with pytest.raises(SignalingRejectedError) as refused:
        await a.transport.connect(None, b.url)

    assert refused.value.code == "wrong_network"
    assert a.transport.peers() == {} and b.transport.peers() == {}


async def test_new_offer_from_known_peer_replaces_the_link(make_node: NodeFactory) -> None:
    a, b = await make_node(), await make_node()
    await a.transport.connect(b.node_id, b.url)
    await b.recorder.wait_for(lambda: len(b.recorder.connected) == 1)

    restarted_a = await make_node(keypair=a.keypair)  # same node id, fresh DTLS identity
    await restarted_a.transport.connect(b.node_id, b.url)

    await b.recorder.wait_for(lambda: len(b.recorder.connected) == 2)
    assert b.recorder.disconnected == [(a.node_id, "replaced")]
    assert list(b.transport.peers()) == [a.node_id]
    assert b.transport.send(a.node_id, b"to the new link")
    await restarted_a.recorder.wait_for(lambda: len(restarted_a.recorder.frames) == 1)


# --- a peer process that vanishes (kill -9) and comes back -----------------------------------

PEER_PROCESS_CODE = """
import asyncio, sys
import structlog
from aiohttp import web
from swarmd.protocol.crypto import KeyPair
from swarmd.node.transport import TransportConfig, WebRtcTransport

structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

class Echo:
    transport = None
    def on_peer_connected(self, peer_id, info): pass
    def on_frame(self, peer_id, frame): self.transport.send(peer_id, frame)
    def on_peer_disconnected(self, peer_id, reason): pass

async def main():
    seed, network_id = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])
    port = int(sys.argv[3])
    echo = Echo()
    config = TransportConfig(ice_host_addresses=("127.0.0.1",))
    echo.transport = WebRtcTransport(KeyPair.from_seed(seed), network_id, config, echo)
    await echo.transport.start()
    app = web.Application()
    app.add_routes(echo.transport.routes)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def start_peer_process(
    seed: bytes, network_id: bytes, port: int
) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PEER_PROCESS_CODE,
        seed.hex(),
        network_id.hex(),
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), WAIT_S)
    assert line == b"ready\n", line
    return process


async def test_heartbeat_detects_killed_peer_and_dialer_reconnects(
    make_node: NodeFactory, network_id: bytes, free_port: int
) -> None:
    config = TransportConfig(ice_host_addresses=("127.0.0.1",), reconnect_backoff_max_s=0.5)
    a = await make_node(config=config)
    seed, port = os.urandom(32), free_port
    b_id = KeyPair.from_seed(seed).public_key
    b_url = f"http://127.0.0.1:{port}"
    process = await start_peer_process(seed, network_id, port)
    try:
        assert await a.transport.connect(None, b_url) == b_id
        assert a.transport.send(b_id, b"echo me")
        await a.recorder.wait_for(lambda: a.recorder.frames_from(b_id) == [b"echo me"])

        process.kill()  # SIGKILL: no DTLS close, no SCTP abort, the peer just goes silent
        killed_at = time.monotonic()
        await a.recorder.wait_for(lambda: a.recorder.disconnected != [], timeout_s=5)
        detected_after_s = time.monotonic() - killed_at
        await process.wait()

        assert a.recorder.disconnected == [(b_id, "heartbeat_timeout")]
        assert detected_after_s < limits.HEARTBEAT_DEAD_AFTER_S + 1.0

        process = await start_peer_process(seed, network_id, port)
        await a.recorder.wait_for(lambda: len(a.recorder.connected) == 2)
        assert a.transport.send(b_id, b"after restart")
        await a.recorder.wait_for(lambda: len(a.recorder.frames_from(b_id)) == 2)
        assert a.recorder.frames_from(b_id)[-1] == b"after restart"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
