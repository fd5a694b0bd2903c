"""Netguard on the WebSocket transport, at its bounds: a socket that says nothing is closed
HELLO_TIMEOUT_S after it opened (a hello sent before then is answered), and one source address
holds at most INBOUND_LINKS_PER_SOURCE_MAX established inbound links."""

from __future__ import annotations

import asyncio
import os
import time

import aiohttp
import pytest

from swarmd.node.transport import SignalingRejectedError, WebSocketTransport, signaling
from swarmd.node.transport.websocket import WS_PATH
from swarmd.protocol import limits
from swarmd.protocol.crypto import KeyPair
from tests.integration.conftest import LOOPBACK_CONFIG, NodeFactory, Recorder

pytestmark = pytest.mark.integration

WAIT_S = 10.0


def signed_hello(network_id: bytes, to: bytes) -> bytes:
    keypair = KeyPair.from_seed(os.urandom(32))
    body = signaling.new_body(
        signaling.KIND_HELLO,
        keypair=keypair,
        network_id=network_id,
        to=to,
        nonce=os.urandom(signaling.NONCE_SIZE_BYTES),
        now=time.time(),
        url=None,
    )
    return signaling.sign(keypair, body)


async def test_a_silent_socket_is_closed_HELLO_TIMEOUT_S_after_opening(
    make_node: NodeFactory, network_id: bytes
) -> None:
    node = await make_node("websocket")
    assert LOOPBACK_CONFIG.connect_timeout_s > limits.HELLO_TIMEOUT_S + 2  # not that timeout
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        opened_at = loop.time()
        silent = await session.ws_connect(node.url + WS_PATH)
        late = await session.ws_connect(node.url + WS_PATH)
        # Half a second before the bound both sockets are still open...
        with pytest.raises(asyncio.TimeoutError):
            await silent.receive(timeout=limits.HELLO_TIMEOUT_S - 0.5)
        # ...and a hello sent then is still answered with a welcome.
        await late.send_bytes(signed_hello(network_id, node.node_id))
        welcome = await late.receive(timeout=WAIT_S)
        assert welcome.type == aiohttp.WSMsgType.BINARY
        opened = signaling.open_signed(welcome.data, signaling.KIND_WELCOME)
        assert opened.sender_id == node.node_id
        # The silent one is closed once HELLO_TIMEOUT_S have passed (not before).
        closed = await silent.receive(timeout=WAIT_S)
        elapsed = loop.time() - opened_at
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert limits.HELLO_TIMEOUT_S <= elapsed < limits.HELLO_TIMEOUT_S + 2.0  # a loaded host
        await late.close()
        await silent.close()


async def test_one_source_holds_INBOUND_LINKS_PER_SOURCE_MAX_links_and_no_more(
    make_node: NodeFactory, network_id: bytes
) -> None:
    """Every dialer here comes from 127.0.0.1: the first INBOUND_LINKS_PER_SOURCE_MAX get in,
    the next is refused with `signal_busy`, and gets in once one of them leaves."""
    node = await make_node("websocket")
    assert node.transport.config.peers_max > limits.INBOUND_LINKS_PER_SOURCE_MAX  # not that one
    dialers: list[WebSocketTransport] = []
    try:
        for _ in range(limits.INBOUND_LINKS_PER_SOURCE_MAX + 1):
            dialer = WebSocketTransport(
                KeyPair.from_seed(os.urandom(32)), network_id, LOOPBACK_CONFIG, Recorder()
            )
            await dialer.start()
            dialers.append(dialer)
        admitted, extra = dialers[:-1], dialers[-1]
        for dialer in admitted:  # one at a time: the handshake slots are not the bound here
            assert await dialer.connect(node.node_id, node.url) == node.node_id
        # The dialer is done once it sent its confirm; the node registers the link on receipt.
        await node.recorder.wait_for(
            lambda: len(node.transport.peers()) == limits.INBOUND_LINKS_PER_SOURCE_MAX
        )
        with pytest.raises(SignalingRejectedError) as refused:
            await extra.connect(node.node_id, node.url)
        assert refused.value.code == "signal_busy"
        assert extra.own_id not in node.transport.peers()
        # One leaves: its slot is free again for the refused dialer.
        await admitted[0].disconnect(node.node_id)
        await node.recorder.wait_for(lambda: admitted[0].own_id not in node.transport.peers())
        assert await extra.connect(node.node_id, node.url) == node.node_id
        await node.recorder.wait_for(lambda: extra.own_id in node.transport.peers())
        assert len(node.transport.peers()) == limits.INBOUND_LINKS_PER_SOURCE_MAX
    finally:
        await asyncio.gather(*(dialer.stop() for dialer in dialers))
