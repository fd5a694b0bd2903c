"""PeerLink batching (`coalesce=True`, what WebRTC links use): frames queued while the channel
is busy go out as one batch message, in the order they would have been written one by one
(control first, then bulk, each FIFO), never above the link message size bound; a receiver
takes batches apart and refuses malformed ones. With `bulk_linger_s`, a few bulk frames wait
for company, but never a control frame and never a full enough queue."""

from __future__ import annotations

import asyncio
import os
import struct

from swarmd.node.transport.link import (
    FRAME_KIND_BATCH,
    FRAME_KIND_DATA,
    FRAME_KIND_PING,
    FRAME_KIND_PONG,
    LINGER_BULK_BYTES,
    LINK_MESSAGE_SIZE_BYTES_MAX,
    PeerLink,
)
from swarmd.protocol import limits

PEER = b"p" * 32
LENGTH = struct.Struct(">I")
WAIT_S = 10.0


class Channel:
    """A channel whose writes wait until the test opens it, so frames pile up in the link."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.messages: list[bytes] = []
        self.changed = asyncio.Event()

    async def write(self, message: bytes) -> None:
        await self.open.wait()
        self.messages.append(message)
        self.changed.set()

    async def wait_for(self, predicate: object) -> None:
        assert callable(predicate)
        async with asyncio.timeout(WAIT_S):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


class Receiver:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.closed: list[str] = []

    def on_frame(self, peer_id: bytes, frame: bytes) -> None:
        self.frames.append(frame)

    def on_closed(self, link: PeerLink, reason: str) -> None:
        self.closed.append(reason)


async def no_close() -> None:
    return None


def make_link(write: object, receiver: Receiver, *, coalesce: bool) -> PeerLink:
    assert callable(write)
    return PeerLink(
        peer_id=PEER,
        transport_name="test",
        direction="outbound",
        remote_url=None,
        heartbeat_interval_s=3600.0,
        heartbeat_dead_after_s=7200.0,
        write=write,
        close_channel=no_close,
        on_frame=receiver.on_frame,
        on_closed=receiver.on_closed,
        coalesce=coalesce,
    )


def batch(*messages: bytes) -> bytes:
    return bytes([FRAME_KIND_BATCH]) + b"".join(LENGTH.pack(len(m)) + m for m in messages)


async def send_all(
    coalesce: bool, bulk: list[bytes], control: list[bytes]
) -> tuple[list[bytes], list[bytes]]:
    """Queue every frame while the channel is shut, open it, and return what it carried and
    what a receiving link made of it."""
    channel, sender_events = Channel(), Receiver()
    sender = make_link(channel.write, sender_events, coalesce=coalesce)
    sender.start()
    for frame in bulk:
        assert sender.enqueue(frame, control=False)
    for frame in control:
        assert sender.enqueue(frame, control=True)
    channel.open.set()
    total = len(bulk) + len(control)
    receiver_events = Receiver()
    receiver = make_link(channel.write, receiver_events, coalesce=False)
    delivered = 0

    def all_delivered() -> bool:
        nonlocal delivered
        for message in channel.messages[delivered:]:
            receiver.receive(message)
        delivered = len(channel.messages)
        return len(receiver_events.frames) == total

    await channel.wait_for(all_delivered)
    sender.close("done")
    receiver.close("done")
    assert receiver_events.closed == ["done"]
    return channel.messages, receiver_events.frames


async def test_batches_keep_the_write_order_and_the_size_bound() -> None:
    largest = os.urandom(limits.FRAME_SIZE_BYTES_MAX)
    bulk = [os.urandom(1 + i % 300) for i in range(2000)] + [largest] + [b"tail"]
    control = [b"vote-%d" % i for i in range(50)]

    messages, frames = await send_all(True, bulk, control)

    assert frames == control + bulk
    assert all(len(message) <= LINK_MESSAGE_SIZE_BYTES_MAX for message in messages)
    # The writer took the first frame alone before it saw the rest; everything else was
    # batched, and a largest frame cannot share a message: it goes out as a plain one.
    assert len(messages) < 20
    assert sum(message[0] == FRAME_KIND_BATCH for message in messages) >= 2
    assert bytes([FRAME_KIND_DATA]) + largest in messages


async def test_without_coalescing_every_frame_is_its_own_message() -> None:
    bulk = [b"b%d" % i for i in range(100)]
    messages, frames = await send_all(False, bulk, [b"c"])

    assert len(messages) == 101 and frames[0] == b"c" and frames[1:] == bulk
    assert all(message[0] == FRAME_KIND_DATA for message in messages)


async def test_a_ping_inside_a_batch_is_answered_and_frames_delivered() -> None:
    channel, events = Channel(), Receiver()
    channel.open.set()
    link = make_link(channel.write, events, coalesce=True)
    link.start()
    ping = bytes([FRAME_KIND_PING]) + struct.pack(">Q", 12345)

    link.receive(batch(bytes([FRAME_KIND_DATA]) + b"one", ping, bytes([FRAME_KIND_DATA]) + b"2"))

    assert events.frames == [b"one", b"2"] and not events.closed
    await channel.wait_for(lambda: len(channel.messages) == 1)
    assert channel.messages == [bytes([FRAME_KIND_PONG]) + ping[1:]]
    link.close("done")


async def test_malformed_batches_close_the_link() -> None:
    data = bytes([FRAME_KIND_DATA]) + b"x"
    cases = {
        "empty": bytes([FRAME_KIND_BATCH]),
        "truncated length": batch(data) + b"\x00\x00",
        "length past the end": bytes([FRAME_KIND_BATCH]) + LENGTH.pack(10) + data,
        "empty part": batch(data, b""),
        "nested batch": batch(data, batch(data)),
    }
    for name, message in cases.items():
        events = Receiver()
        link = make_link(Channel().write, events, coalesce=True)
        link.receive(message)
        assert events.closed == ["protocol_error:bad_batch"], name
        assert events.frames == [], name
    events = Receiver()
    make_link(Channel().write, events, coalesce=True).receive(batch(data, b"\x09junk"))
    # The parts before a bad one were delivered; the bad kind closes the link.
    assert events.frames == [b"x"] and events.closed == ["protocol_error:bad_link_message"]


def lingering_link(channel: Channel, linger_s: float) -> tuple[PeerLink, Receiver]:
    events = Receiver()
    link = PeerLink(
        peer_id=PEER,
        transport_name="test",
        direction="outbound",
        remote_url=None,
        heartbeat_interval_s=3600.0,
        heartbeat_dead_after_s=7200.0,
        write=channel.write,
        close_channel=no_close,
        on_frame=events.on_frame,
        on_closed=events.on_closed,
        coalesce=True,
        bulk_linger_s=linger_s,
    )
    link.start()
    return link, events


async def test_bulk_frames_linger_until_a_control_frame_or_enough_bytes() -> None:
    channel = Channel()
    channel.open.set()
    link, _ = lingering_link(channel, linger_s=3600.0)  # longer than the test may wait

    assert link.enqueue(b"announce", control=False)
    for _ in range(20):  # loop turns, not time: the writer is waiting for company
        await asyncio.sleep(0)
    assert channel.messages == []
    assert link.enqueue(b"vote", control=True)  # a control frame ends the wait at once
    await channel.wait_for(lambda: len(channel.messages) == 1)
    assert channel.messages == [batch(b"\x00vote", b"\x00announce")]

    assert link.enqueue(b"a", control=False)
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(channel.messages) == 1  # lingering again
    large = bytes(LINGER_BULK_BYTES)
    assert link.enqueue(large, control=False)  # enough bytes: no wait either
    await channel.wait_for(lambda: len(channel.messages) == 2)
    assert channel.messages[1] == batch(b"\x00a", b"\x00" + large)
    link.close("done")


async def test_a_lone_bulk_frame_goes_out_after_the_linger() -> None:
    channel = Channel()
    channel.open.set()
    link, _ = lingering_link(channel, linger_s=0.01)

    assert link.enqueue(b"announce", control=False)

    await channel.wait_for(lambda: len(channel.messages) == 1)
    assert channel.messages == [b"\x00announce"]
    link.close("done")
