"""HEARTBEAT_INTERVAL_S reached: a link pings its peer every HEARTBEAT_INTERVAL_S (the default
of TransportConfig), a peer that answers stays linked past HEARTBEAT_DEAD_AFTER_S and gets an
RTT, and one that stays silent is closed `heartbeat_timeout`. (The killed-process case over
WebRTC is tests/integration/test_transport.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from swarmd.node.transport.base import TransportConfig
from swarmd.node.transport.link import FRAME_KIND_PING, FRAME_KIND_PONG, PeerLink
from swarmd.protocol import limits

PEER = bytes(range(32))


class Wire:
    """The channel under one link: records the pings written (with their loop time) and, when
    `answer`, sends the pong back as the peer would."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.pings: list[float] = []
        self.changed = asyncio.Event()
        self.closed: list[str] = []
        self.link: PeerLink | None = None

    async def write(self, message: bytes) -> None:
        if message[0] == FRAME_KIND_PING:
            self.pings.append(asyncio.get_running_loop().time())
            if self.answer and self.link is not None:
                self.link.receive(bytes([FRAME_KIND_PONG]) + message[1:])
        self.changed.set()

    def on_closed(self, _link: PeerLink, reason: str) -> None:
        self.closed.append(reason)
        self.changed.set()

    async def wait_for(self, done: Callable[[], bool], timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while not done():
                self.changed.clear()
                await self.changed.wait()


def open_link(wire: Wire) -> PeerLink:
    config = TransportConfig()
    assert config.heartbeat_interval_s == limits.HEARTBEAT_INTERVAL_S
    assert config.heartbeat_dead_after_s == limits.HEARTBEAT_DEAD_AFTER_S

    async def close_channel() -> None:
        return None

    link = PeerLink(
        peer_id=PEER,
        transport_name="test",
        direction="outbound",
        remote_url=None,
        heartbeat_interval_s=config.heartbeat_interval_s,
        heartbeat_dead_after_s=config.heartbeat_dead_after_s,
        write=wire.write,
        close_channel=close_channel,
        on_frame=lambda _peer, _frame: None,
        on_closed=wire.on_closed,
    )
    wire.link = link
    link.start()
    return link


async def test_a_link_pings_every_heartbeat_interval_and_an_answering_peer_stays() -> None:
    wire = Wire(answer=True)
    started = asyncio.get_running_loop().time()
    link = open_link(wire)
    # Past the dead-after time: only the pongs keep the link alive.
    count = int(limits.HEARTBEAT_DEAD_AFTER_S / limits.HEARTBEAT_INTERVAL_S) + 2
    try:
        await wire.wait_for(lambda: len(wire.pings) >= count, limits.HEARTBEAT_DEAD_AFTER_S * 4)
        assert wire.closed == [] and not link.closed
        gaps = [b - a for a, b in zip([started, *wire.pings], wire.pings, strict=False)]
        assert all(gap >= limits.HEARTBEAT_INTERVAL_S * 0.99 for gap in gaps), gaps
        assert link.rtt_ms is not None and link.rtt_ms >= 0
    finally:
        link.close("test_done")


async def test_a_silent_peer_is_closed_after_heartbeat_dead_after_s() -> None:
    wire = Wire(answer=False)
    started = asyncio.get_running_loop().time()
    link = open_link(wire)
    await wire.wait_for(lambda: wire.closed != [], limits.HEARTBEAT_DEAD_AFTER_S * 4)
    elapsed = asyncio.get_running_loop().time() - started
    assert wire.closed == ["heartbeat_timeout"] and link.closed
    # Noticed at the first heartbeat tick past the dead-after time, not before.
    assert elapsed >= limits.HEARTBEAT_DEAD_AFTER_S
    assert len(wire.pings) >= int(limits.HEARTBEAT_DEAD_AFTER_S / limits.HEARTBEAT_INTERVAL_S) - 1
    await link.wait_closed()
