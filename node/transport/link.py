"""One live connection to a peer, whatever carries it: send queues, heartbeat, link framing.

Every message on a channel starts with one byte that says what it is: an application frame
(`FRAME_KIND_DATA`), or a heartbeat ping or pong that the transport consumes itself. The ping
carries the sender's monotonic clock in nanoseconds and the pong echoes it, so the round-trip
time needs no clock agreement. A peer from which nothing at all arrived for
`heartbeat_dead_after_s` is declared dead: aiortc alone notices only after ~30 s.

A link created with `coalesce=True` (WebRTC) writes every link message queued when the channel
is ready as one batch message (`FRAME_KIND_BATCH`: each message after a 4-byte big-endian
length), never larger than `LINK_MESSAGE_SIZE_BYTES_MAX`; a single message goes out as it is.
A data channel message costs aiortc an SCTP message, a task and at least one DTLS record and UDP
datagram (plus the peer's SACK) however small it is, so small consensus frames and heartbeats
written one by one cost far more than their bytes. A batch keeps the order the messages would
have been written in (control first, then bulk, each in FIFO order) and any receiver accepts it.

Outgoing frames wait in two bounded queues; control frames (heartbeats, consensus) are written
before any bulk frame. The channel-specific `write` coroutine applies the channel's own
backpressure (a data channel's bufferedAmount, a socket's drain), and the queue bounds turn
sustained overload into `send(...) -> False` for the caller instead of unbounded memory.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from swarmd.protocol import limits
from swarmd.protocol.crypto import account_id_text

FRAME_KIND_DATA = 0x00
FRAME_KIND_PING = 0x01
FRAME_KIND_PONG = 0x02
FRAME_KIND_BATCH = 0x03
_PING_PAYLOAD = struct.Struct(">Q")
_BATCH_LENGTH = struct.Struct(">I")
_BATCH_HEADER = bytes([FRAME_KIND_BATCH])
_DATA_HEADER = bytes([FRAME_KIND_DATA])

#: Link header byte plus the largest frame: what a channel may carry in one message.
LINK_MESSAGE_SIZE_BYTES_MAX = 1 + limits.FRAME_SIZE_BYTES_MAX
#: Control frames (heartbeats, pongs, consensus) queued per peer. Control traffic is small and
#: paced, so a full control queue means the peer stopped reading; more would only add delay.
CONTROL_QUEUE_FRAMES_MAX = 1024
#: Bytes of bulk frames queued per peer (256 full frames). With PEER_SEND_QUEUE_MAX frames
#: this bounds memory per peer to 16 MiB even when every frame is 64 KiB.
BULK_QUEUE_BYTES_MAX = 16 * 1024 * 1024
#: A lingering link (`bulk_linger_s`) stops waiting for more bulk frames once this many bytes
#: are queued: a message that size wastes at most a few percent of its last SCTP packet.
LINGER_BULK_BYTES = 16 * 1024

log = structlog.get_logger("swarmd.transport")


@dataclass(frozen=True)
class PeerInfo:
    """A snapshot of one connected peer, as `Transport.peers()` reports it."""

    peer_id: bytes
    transport: str  # "webrtc" | "websocket"
    direction: str  # "outbound" (we dialed) | "inbound"
    remote_url: str | None  # the URL we dialed, or the one the peer advertised
    connected_since: float  # unix time
    rtt_ms: float | None  # from the latest pong; None until the first one
    candidate_pair: str | None = None  # WebRTC: "<local type>/<remote type>", e.g. "relay/relay"


WriteFunction = Callable[[bytes], Awaitable[None]]
CloseFunction = Callable[[], Awaitable[None]]


class PeerLink:
    """Queues, writer task and heartbeat of one connection; the transport owns the channel."""

    def __init__(
        self,
        *,
        peer_id: bytes,
        transport_name: str,
        direction: str,
        remote_url: str | None,
        heartbeat_interval_s: float,
        heartbeat_dead_after_s: float,
        write: WriteFunction,
        close_channel: CloseFunction,
        on_frame: Callable[[bytes, bytes], None],
        on_closed: Callable[[PeerLink, str], None],
        on_updated: Callable[[], None] | None = None,
        candidate_pair: Callable[[], str | None] | None = None,
        coalesce: bool = False,
        bulk_linger_s: float = 0.0,
    ) -> None:
        self.peer_id = peer_id
        self.transport_name = transport_name
        self.direction = direction
        self.remote_url = remote_url
        self.connected_since = time.time()
        self.rtt_ms: float | None = None
        self._heartbeat_interval_s = heartbeat_interval_s
        self._heartbeat_dead_after_s = heartbeat_dead_after_s
        self._write = write
        self._close_channel = close_channel
        self._on_frame = on_frame
        self._on_closed = on_closed
        self._on_updated = on_updated
        self._candidate_pair = candidate_pair
        self._coalesce = coalesce
        self._bulk_linger_s = bulk_linger_s
        self._control: deque[bytes] = deque()
        self._bulk: deque[bytes] = deque()
        self._bulk_bytes = 0
        self._wakeup = asyncio.Event()
        self._last_received = asyncio.get_running_loop().time()
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False
        self.close_reason: str | None = None
        self._closed_event = asyncio.Event()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._write_loop()),
            asyncio.create_task(self._heartbeat_loop()),
        ]

    def info(self) -> PeerInfo:
        return PeerInfo(
            peer_id=self.peer_id,
            transport=self.transport_name,
            direction=self.direction,
            remote_url=self.remote_url,
            connected_since=self.connected_since,
            rtt_ms=self.rtt_ms,
            candidate_pair=self._candidate_pair() if self._candidate_pair else None,
        )

    def enqueue(self, frame: bytes, control: bool) -> bool:
        """Queue an application frame; False when the bounded queue is full or the link closed."""
        if self.closed:
            return False
        message = _DATA_HEADER + frame
        if control:
            return self._enqueue_control(message)
        if (
            len(self._bulk) >= limits.PEER_SEND_QUEUE_MAX
            or self._bulk_bytes + len(message) > BULK_QUEUE_BYTES_MAX
        ):
            return False
        self._bulk.append(message)
        self._bulk_bytes += len(message)
        self._wakeup.set()
        return True

    def _enqueue_control(self, message: bytes) -> bool:
        if self.closed or len(self._control) >= CONTROL_QUEUE_FRAMES_MAX:
            return False
        self._control.append(message)
        self._wakeup.set()
        return True

    def receive(self, message: bytes) -> None:
        """Handle one message from the channel (called by the transport's reader)."""
        if self.closed:
            return
        self._last_received = asyncio.get_running_loop().time()
        if not message or len(message) > LINK_MESSAGE_SIZE_BYTES_MAX:
            self.close("protocol_error:bad_message_size")
            return
        if message[0] != FRAME_KIND_BATCH:
            self._receive_one(message)
            return
        parts = _split_batch(message)
        if parts is None:
            self.close("protocol_error:bad_batch")
            return
        for part in parts:
            if self.closed:
                return
            self._receive_one(part)

    def _receive_one(self, message: bytes) -> None:
        kind, payload = message[0], bytes(message[1:])
        if kind == FRAME_KIND_DATA:
            try:
                self._on_frame(self.peer_id, payload)
            except Exception:  # a bug in the node's handler must not kill the link
                log.exception("on_frame_failed", peer=account_id_text(self.peer_id))
        elif kind == FRAME_KIND_PING and len(payload) == _PING_PAYLOAD.size:
            self._enqueue_control(bytes([FRAME_KIND_PONG]) + payload)
        elif kind == FRAME_KIND_PONG and len(payload) == _PING_PAYLOAD.size:
            (sent_ns,) = _PING_PAYLOAD.unpack(payload)
            rtt_ns = time.monotonic_ns() - sent_ns
            if 0 <= rtt_ns <= self._heartbeat_dead_after_s * 1e9:
                self.rtt_ms = rtt_ns / 1e6
                if self._on_updated is not None:
                    self._on_updated()
        else:
            self.close("protocol_error:bad_link_message")

    def close(self, reason: str) -> None:
        """Close once: stop the tasks, close the channel, tell the transport (synchronously)."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        closing = asyncio.create_task(self._close_channel_quietly())
        closing.add_done_callback(lambda _: self._closed_event.set())
        self._on_closed(self, reason)

    async def wait_closed(self) -> None:
        await self._closed_event.wait()

    async def _close_channel_quietly(self) -> None:
        try:
            await self._close_channel()
        except Exception:  # the peer is gone either way; closing is best effort
            log.debug("channel_close_failed", peer=account_id_text(self.peer_id))

    async def _write_loop(self) -> None:
        while not self.closed:
            if not self._control and not self._bulk:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._bulk_linger_s > 0:
                await self._linger()
            message = self._next_batch() if self._coalesce else self._pop()
            try:
                await self._write(message)
            except Exception as exc:  # any failure to write ends this link
                log.info("send_failed", peer=account_id_text(self.peer_id), error=repr(exc))
                self.close("send_failed")
                return

    async def _linger(self) -> None:
        """Give a few bulk frames `bulk_linger_s` to gather more company (Nagle-like); any
        control frame, or `LINGER_BULK_BYTES` queued, ends the wait at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._bulk_linger_s
        while not self._control and 0 < self._bulk_bytes < LINGER_BULK_BYTES:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    def _pop(self) -> bytes:
        """The next message to write: control frames before any bulk frame."""
        if self._control:
            return self._control.popleft()
        message = self._bulk.popleft()
        self._bulk_bytes -= len(message)
        return message

    def _peek_size(self) -> int:
        queue = self._control or self._bulk
        return len(queue[0]) if queue else 0

    def _next_batch(self) -> bytes:
        """Every queued message that fits in one link message, in `_pop` order."""
        first = self._pop()
        size = len(_BATCH_HEADER) + _BATCH_LENGTH.size + len(first)
        following = self._peek_size()
        if not following or size + _BATCH_LENGTH.size + following > LINK_MESSAGE_SIZE_BYTES_MAX:
            return first
        parts = [_BATCH_HEADER, _BATCH_LENGTH.pack(len(first)), first]
        while following and size + _BATCH_LENGTH.size + following <= LINK_MESSAGE_SIZE_BYTES_MAX:
            message = self._pop()
            parts += (_BATCH_LENGTH.pack(len(message)), message)
            size += _BATCH_LENGTH.size + len(message)
            following = self._peek_size()
        return b"".join(parts)

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed:
            # A timer, not a wait for a condition: the heartbeat fires at a fixed cadence.
            await asyncio.sleep(self._heartbeat_interval_s)
            if loop.time() - self._last_received > self._heartbeat_dead_after_s:
                self.close("heartbeat_timeout")
                return
            self._enqueue_control(
                bytes([FRAME_KIND_PING]) + _PING_PAYLOAD.pack(time.monotonic_ns())
            )


def _split_batch(message: bytes) -> list[bytes] | None:
    """The link messages of a batch, or None when it is malformed (empty, truncated, an
    empty part, or a batch inside a batch)."""
    parts: list[bytes] = []
    view = memoryview(message)
    position, end = 1, len(message)
    while position < end:
        if position + _BATCH_LENGTH.size > end:
            return None
        (length,) = _BATCH_LENGTH.unpack_from(view, position)
        position += _BATCH_LENGTH.size
        if length == 0 or position + length > end or view[position] == FRAME_KIND_BATCH:
            return None
        parts.append(message[position : position + length])
        position += length
    return parts or None
