"""Netguard on the WebRTC signalling endpoint: offers being answered are bounded per source
address, so one address holding its share of pending answers cannot lock out another."""

from __future__ import annotations

import os
from typing import Any

import aiohttp
import pytest

from swarmd.protocol import limits
from swarmd.protocol.crypto import KeyPair
from tests.integration import test_transport
from tests.integration.conftest import NodeFactory
from tests.integration.test_transport import post_signal, signed_offer

pytestmark = pytest.mark.integration

offer_sdp = test_transport.offer_sdp  # the fixture: a real aiortc offer


async def post_from(source: str, url: str, envelope: bytes) -> tuple[int, Any]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(url + "/v1/signal", data=envelope) as response,
    ):
        if response.status == 200:
            return 200, await response.read()
        return response.status, (await response.json())["code"]


async def test_pending_answers_are_bounded_per_source_address(
    make_node: NodeFactory, network_id: bytes, offer_sdp: str
) -> None:
    node = await make_node()
    for _ in range(limits.HANDSHAKES_PER_SOURCE_MAX):
        offer = signed_offer(KeyPair.from_seed(os.urandom(32)), network_id, offer_sdp)
        assert (await post_from("127.0.0.2", node.url, offer))[0] == 200
    one_more = signed_offer(KeyPair.from_seed(os.urandom(32)), network_id, offer_sdp)
    assert await post_from("127.0.0.2", node.url, one_more) == (503, "signal_busy")
    # Another address still gets its offer answered.
    other = signed_offer(KeyPair.from_seed(os.urandom(32)), network_id, offer_sdp)
    assert (await post_signal(node.url, other))[0] == 200
    assert node.transport.handshake_slots.in_use("127.0.0.2") == limits.HANDSHAKES_PER_SOURCE_MAX
