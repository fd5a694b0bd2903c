"""Transport-independent framing: batching, fragmentation and reassembly (sans-I/O).

One `FrameEncoder` and one `FrameDecoder` exist per peer link and per link lifetime. The
encoder queues messages by `Priority`, packs small ones into batch frames and cuts large ones
into fragment frames; the decoder turns frames back into messages. Neither does I/O: the shell
hands `frames_to_send()` to the transport and feeds every received frame to `receive_frame()`.

The wire format is specified in docs/parts/framing.md. In short, every frame starts with a
version byte and a type byte (all integers big-endian):

    batch:    version=1 | type=1 | count:u16 | length:u16 * count | message bytes * count
    fragment: version=1 | type=2 | message_id:u64 | index:u16 | total:u16 | total_length:u32
              | digest:16 bytes (sha256 of the whole message, truncated) | payload

Fragmentation is canonical: every fragment but the last carries exactly
`FRAGMENT_PAYLOAD_SIZE_BYTES`, so the receiver knows the size of each fragment from its
header and rejects any other size at once, before buffering anything.

Real transports are reliable and ordered, but the simulated network loses, duplicates and
reorders frames, so the decoder tolerates all three: duplicates are ignored, fragments are
placed by index, and partial messages expire after `REASSEMBLY_TIMEOUT_S` and are counted.
A bad fragment only ever discards the message it claims to belong to.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from struct import Struct
from typing import NoReturn

from . import limits
from .codes import RejectCode
from .errors import LimitExceededError, LocalProtocolError, RemoteProtocolError

# --- wire format -----------------------------------------------------------------------------

FRAME_VERSION = 1
FRAME_TYPE_BATCH = 1
FRAME_TYPE_FRAGMENT = 2

_PREFIX = Struct("!BB")
_BATCH_HEADER = Struct("!BBH")
_FRAGMENT_HEADER = Struct("!BBQHHI16s")

FRAME_PREFIX_SIZE_BYTES = _PREFIX.size
BATCH_HEADER_SIZE_BYTES = _BATCH_HEADER.size
#: Each batched message costs a 2-byte entry in the length table.
BATCH_LENGTH_SIZE_BYTES = 2
FRAGMENT_HEADER_SIZE_BYTES = _FRAGMENT_HEADER.size
#: sha256 truncated to 128 bits: it detects corruption and fragments mixed between messages;
#: it is not a defence against the sending peer, which authored the message anyway.
FRAGMENT_DIGEST_SIZE_BYTES = 16

#: The largest message that travels whole in a batch frame (alone, if above the batch target).
BATCH_MESSAGE_SIZE_BYTES_MAX = (
    limits.FRAME_SIZE_BYTES_MAX - BATCH_HEADER_SIZE_BYTES - BATCH_LENGTH_SIZE_BYTES
)
#: Messages in one batch: the count is a u16 (a batch of empty messages at the batch target
#: stays far below this).
BATCH_MESSAGES_MAX = 0xFFFF
#: Payload of every fragment but the last (canonical fragmentation, see the module docstring).
FRAGMENT_PAYLOAD_SIZE_BYTES = limits.FRAME_SIZE_BYTES_MAX - FRAGMENT_HEADER_SIZE_BYTES
#: The largest message the encoder accepts: FRAGMENTS_PER_MESSAGE_MAX full fragments.
MESSAGE_SIZE_BYTES_MAX = limits.FRAGMENTS_PER_MESSAGE_MAX * FRAGMENT_PAYLOAD_SIZE_BYTES

# --- bounds of this module -------------------------------------------------------------------

#: Bytes queued per peer across all priorities. PEER_SEND_QUEUE_MAX bounds the message count,
#: but one BULK message may be 16 MiB, so bytes need their own bound: four maximal messages.
#: Over it, the same policy applies (oldest BULK, then oldest NORMAL dropped).
PEER_SEND_QUEUE_BYTES_MAX = 4 * MESSAGE_SIZE_BYTES_MAX
FINISHED_MESSAGE_IDS_REMEMBERED_MAX = (
    limits.FINISHED_MESSAGE_IDS_REMEMBERED_MAX
)  # why: see limits.py

assert BATCH_MESSAGE_SIZE_BYTES_MAX <= 0xFFFF, "batch lengths are u16"
assert limits.FRAME_BATCH_SIZE_BYTES_TARGET // BATCH_LENGTH_SIZE_BYTES < BATCH_MESSAGES_MAX
assert FRAGMENT_PAYLOAD_SIZE_BYTES < BATCH_MESSAGE_SIZE_BYTES_MAX
assert limits.FRAGMENTS_PER_MESSAGE_MAX <= 0xFFFF, "fragment index and total are u16"
assert MESSAGE_SIZE_BYTES_MAX <= 0xFFFF_FFFF, "total_length is u32"
assert MESSAGE_SIZE_BYTES_MAX <= limits.REASSEMBLY_BYTES_PER_PEER_MAX
assert limits.ENCODED_VALUE_SIZE_BYTES_MAX <= MESSAGE_SIZE_BYTES_MAX
assert array("H").itemsize == BATCH_LENGTH_SIZE_BYTES

_LENGTH_TABLE_NEEDS_BYTESWAP = sys.byteorder == "little"


# --- errors ----------------------------------------------------------------------------------


class FramingError(RemoteProtocolError):
    """A peer sent a frame this layer refuses."""

    code: str = RejectCode.FRAMING_ERROR


class FrameMalformedError(FramingError):
    """Bytes that do not follow the frame format."""

    code: str = RejectCode.FRAME_MALFORMED


class FrameVersionError(FramingError):
    code: str = RejectCode.FRAME_VERSION_UNSUPPORTED


class FrameTooLargeError(FramingError, LimitExceededError):
    code: str = RejectCode.FRAME_TOO_LARGE


class FragmentLimitError(FramingError, LimitExceededError):
    """A fragment claims a message of more than FRAGMENTS_PER_MESSAGE_MAX fragments."""

    code: str = RejectCode.FRAGMENT_LIMIT


class ReassemblyLimitError(FramingError, LimitExceededError):
    """Starting this reassembly would exceed the per-peer count or byte bound."""

    code: str = RejectCode.REASSEMBLY_LIMIT


class FragmentIntegrityError(FramingError):
    """A reassembled message fails its digest, or fragments of one message conflict."""

    code: str = RejectCode.FRAGMENT_INTEGRITY


class MessageTooLargeError(LocalProtocolError):
    """The caller queued a message larger than MESSAGE_SIZE_BYTES_MAX."""

    code: str = RejectCode.MESSAGE_TOO_LARGE


class SendQueueFullError(LocalProtocolError):
    """The queue holds only CONTROL messages and is full: the link is not being drained."""

    code: str = RejectCode.SEND_QUEUE_FULL


# --- encoder ---------------------------------------------------------------------------------


class Priority(IntEnum):
    CONTROL = 0  # heartbeat, consensus: never dropped, sent first
    NORMAL = 1  # gossip
    BULK = 2  # sync, snapshot chunks: dropped first


_PRIORITIES = tuple(Priority)
#: An encoder's `_streams` when no message is being fragmented.
_NO_STREAMS: list[None] = [None for _ in _PRIORITIES]
_PRIORITY_VALUES = frozenset(int(p) for p in Priority)


@dataclass
class FrameEncoderStats:
    messages_queued: int = 0
    messages_sent: int = 0
    messages_dropped: int = 0
    frames_sent: int = 0
    fragments_sent: int = 0
    bytes_sent: int = 0


@dataclass
class _FragmentStream:
    """A message being sent as fragments; it leaves the queue and can no longer be dropped."""

    message_id: int
    message: memoryview
    digest: bytes
    total: int
    next_index: int = 0


def _digest(message: bytes) -> bytes:
    return hashlib.sha256(message).digest()[:FRAGMENT_DIGEST_SIZE_BYTES]


def fragment_count(message_size_bytes: int) -> int:
    """Fragments a message of this size is cut into (1 for messages that travel whole)."""
    return max(1, -(-message_size_bytes // FRAGMENT_PAYLOAD_SIZE_BYTES))


class FrameEncoder:
    """The sending side of one peer link."""

    def __init__(self, on_queue: Callable[[], object] | None = None) -> None:
        self.stats = FrameEncoderStats()
        #: Called after each queued message (the core notes which encoders to drain).
        self._on_queue = on_queue
        self._queues: tuple[deque[bytes], ...] = tuple(deque() for _ in _PRIORITIES)
        self._streams: list[_FragmentStream | None] = [None for _ in _PRIORITIES]
        # Running totals, so that queueing a message costs O(1).
        self._queued_messages = 0
        self._queued_bytes = 0
        self._queued_control_bytes = 0
        self._next_message_id = 0

    @property
    def queued_messages(self) -> int:
        """Messages waiting in the queue (not counting one being fragmented per priority)."""
        return self._queued_messages

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def has_frames_to_send(self) -> bool:
        # Hot: the core asks every peer's encoder after every input (one list compare).
        return self._queued_messages > 0 or self._streams != _NO_STREAMS

    def queue_message(self, message: bytes, priority: Priority = Priority.NORMAL) -> None:
        """Queue `message`; when the queue is over its bounds, drop the oldest BULK message
        (then the oldest NORMAL one) until it is not. CONTROL messages are never dropped: if
        the CONTROL messages alone would exceed a bound, this raises SendQueueFullError and
        queues nothing."""
        size = len(message)
        if size > MESSAGE_SIZE_BYTES_MAX:
            raise MessageTooLargeError(
                f"message of {size} bytes exceeds {MESSAGE_SIZE_BYTES_MAX} "
                f"({limits.FRAGMENTS_PER_MESSAGE_MAX} fragments)"
            )
        if priority not in _PRIORITY_VALUES:
            raise LocalProtocolError(
                f"unknown priority {priority!r}", code=RejectCode.INVALID_PRIORITY
            )
        if priority == Priority.CONTROL:
            if (
                len(self._queues[Priority.CONTROL]) + 1 > limits.PEER_SEND_QUEUE_MAX
                or self._queued_control_bytes + size > PEER_SEND_QUEUE_BYTES_MAX
            ):
                raise SendQueueFullError("send queue is full of CONTROL messages")
            self._queued_control_bytes += size
        self._queues[priority].append(message)
        if self._on_queue is not None:
            self._on_queue()
        self._queued_messages += 1
        self._queued_bytes += size
        self.stats.messages_queued += 1
        while (
            self._queued_messages > limits.PEER_SEND_QUEUE_MAX
            or self._queued_bytes > PEER_SEND_QUEUE_BYTES_MAX
        ):
            self._drop_oldest_droppable()

    def _drop_oldest_droppable(self) -> None:
        # The CONTROL check in queue_message guarantees a BULK or NORMAL message exists here.
        for priority in (Priority.BULK, Priority.NORMAL):
            queue = self._queues[priority]
            if queue:
                dropped = queue.popleft()
                self._queued_messages -= 1
                self._queued_bytes -= len(dropped)
                self.stats.messages_dropped += 1
                return
        raise AssertionError("over the send queue bound with only CONTROL messages queued")

    def frames_to_send(self, budget_bytes: int | None = None) -> list[bytes]:
        """Drain queued messages into frames, highest priority first.

        With `budget_bytes`, stop as soon as at least that many bytes are produced (so the
        result exceeds the budget by less than one frame, and a positive budget always makes
        progress); a budget of 0 or less produces nothing. Frames not produced stay queued; a
        fragment stream resumes where it stopped, possibly after higher-priority frames.
        """
        return [frame for _, frame in self.frames_with_priority(budget_bytes)]

    def frames_with_priority(self, budget_bytes: int | None = None) -> list[tuple[Priority, bytes]]:
        """`frames_to_send`, each frame with the priority of the queue it came from, so that
        the transport can keep CONTROL frames ahead of bulk ones in its own send queue."""
        frames: list[tuple[Priority, bytes]] = []
        produced = 0
        while budget_bytes is None or produced < budget_bytes:
            item = self._next_frame()
            if item is None:
                break
            frames.append(item)
            produced += len(item[1])
        self.stats.frames_sent += len(frames)
        self.stats.bytes_sent += produced
        return frames

    def _next_frame(self) -> tuple[Priority, bytes] | None:
        for priority in _PRIORITIES:
            if self._streams[priority] is not None:
                return priority, self._next_fragment(priority)
            queue = self._queues[priority]
            if not queue:
                continue
            if len(queue[0]) > BATCH_MESSAGE_SIZE_BYTES_MAX:
                self._start_stream(priority)
                return priority, self._next_fragment(priority)
            return priority, self._build_batch(priority)
        return None

    def _start_stream(self, priority: Priority) -> None:
        message = self._queues[priority].popleft()
        self._queued_messages -= 1
        self._queued_bytes -= len(message)
        if priority == Priority.CONTROL:
            self._queued_control_bytes -= len(message)
        self._streams[priority] = _FragmentStream(
            message_id=self._next_message_id,
            message=memoryview(message),
            digest=_digest(message),
            total=fragment_count(len(message)),
        )
        self._next_message_id += 1

    def _next_fragment(self, priority: Priority) -> bytes:
        stream = self._streams[priority]
        assert stream is not None
        index = stream.next_index
        start = index * FRAGMENT_PAYLOAD_SIZE_BYTES
        payload = stream.message[start : start + FRAGMENT_PAYLOAD_SIZE_BYTES]
        header = _FRAGMENT_HEADER.pack(
            FRAME_VERSION,
            FRAME_TYPE_FRAGMENT,
            stream.message_id,
            index,
            stream.total,
            len(stream.message),
            stream.digest,
        )
        stream.next_index += 1
        self.stats.fragments_sent += 1
        if stream.next_index == stream.total:
            self._streams[priority] = None
            self.stats.messages_sent += 1
        return b"".join((header, payload))

    def _build_batch(self, first: Priority) -> bytes:
        """One batch frame: messages of `first`, then of lower priorities, in queue order.

        A priority whose head is being (or must be) fragmented contributes nothing, so
        messages of one priority are always sent in the order they were queued. The first
        message is always taken, even above the batch target (it fits a frame by the caller's
        check); the batch closes at the first message that would exceed the target.
        """
        messages: list[bytes] = []
        lengths = array("H")
        size = BATCH_HEADER_SIZE_BYTES
        for priority in _PRIORITIES[first:]:
            if self._streams[priority] is not None:
                continue
            queue = self._queues[priority]
            taken = len(messages)
            full = self._take_batch_entries(queue, messages, lengths, size)
            taken_bytes = sum(lengths[taken:])
            size += taken_bytes + BATCH_LENGTH_SIZE_BYTES * (len(messages) - taken)
            if priority == Priority.CONTROL:
                self._queued_control_bytes -= taken_bytes
            if full:
                break
        return self._pack_batch(messages, lengths)

    @staticmethod
    def _take_batch_entries(
        queue: deque[bytes], messages: list[bytes], lengths: array[int], size: int
    ) -> bool:
        """Move messages from the head of `queue` into the batch; True once the batch is full.

        This loop runs once per small message, so it keeps to local variables.
        """
        target = limits.FRAME_BATCH_SIZE_BYTES_TARGET
        append_message, append_length, popleft = messages.append, lengths.append, queue.popleft
        while queue:
            length = len(queue[0])
            if length > BATCH_MESSAGE_SIZE_BYTES_MAX:
                return False
            size += BATCH_LENGTH_SIZE_BYTES + length
            if (size > target and messages) or len(messages) == BATCH_MESSAGES_MAX:
                return True
            append_message(popleft())
            append_length(length)
        return False

    def _pack_batch(self, messages: list[bytes], lengths: array[int]) -> bytes:
        self._queued_messages -= len(messages)
        self._queued_bytes -= sum(lengths)
        if _LENGTH_TABLE_NEEDS_BYTESWAP:
            lengths.byteswap()
        header = _BATCH_HEADER.pack(FRAME_VERSION, FRAME_TYPE_BATCH, len(messages))
        self.stats.messages_sent += len(messages)
        return b"".join((header, lengths.tobytes(), *messages))


# --- decoder ---------------------------------------------------------------------------------


@dataclass
class FrameDecoderStats:
    frames_received: int = 0
    frames_malformed: int = 0
    messages_received: int = 0
    fragments_received: int = 0
    fragments_duplicate: int = 0
    #: Fragments of a message no longer under reassembly (completed, expired, rejected or
    #: failed): late duplicates, or the rest of a message that was given up.
    fragments_discarded: int = 0
    reassemblies_completed: int = 0
    reassemblies_expired: int = 0
    reassemblies_rejected: int = 0
    integrity_failures: int = 0


@dataclass
class _Reassembly:
    total: int
    total_length: int
    digest: bytes
    deadline: float
    fragments: list[bytes | None] = field(default_factory=list)
    received: int = 0


@dataclass(frozen=True)
class _FragmentHeader:
    message_id: int
    index: int
    total: int
    total_length: int
    digest: bytes


class FrameDecoder:
    """The receiving side of one peer link.

    `receive_frame` returns the messages a frame completes, or raises a FramingError
    (a RemoteProtocolError) that concerns only that frame and the message it belongs to.
    """

    def __init__(self) -> None:
        self.stats = FrameDecoderStats()
        self._reassemblies: dict[int, _Reassembly] = {}
        self._reassembly_bytes = 0
        self._finished_ids: OrderedDict[int, None] = OrderedDict()
        self._finished_id_floor = -1

    @property
    def reassemblies(self) -> int:
        """Messages under reassembly right now."""
        return len(self._reassemblies)

    @property
    def reassembly_bytes(self) -> int:
        """Bytes reserved by messages under reassembly (their declared total lengths)."""
        return self._reassembly_bytes

    def get_timer(self) -> float | None:
        if not self._reassemblies:
            return None
        return min(r.deadline for r in self._reassemblies.values())

    def handle_timer(self, now: float) -> None:
        """Drop partial messages whose deadline has passed, counting each one."""
        expired = [i for i, r in self._reassemblies.items() if r.deadline <= now]
        for message_id in expired:
            self._finish(message_id)
            self.stats.reassemblies_expired += 1

    def receive_frame(self, frame: bytes, now: float) -> list[bytes]:
        self.stats.frames_received += 1
        try:
            if len(frame) > limits.FRAME_SIZE_BYTES_MAX:
                raise FrameTooLargeError(f"frame of {len(frame)} bytes")
            if len(frame) < FRAME_PREFIX_SIZE_BYTES:
                raise FrameMalformedError("frame shorter than its prefix")
            version, frame_type = _PREFIX.unpack_from(frame)
            if version != FRAME_VERSION:
                raise FrameVersionError(f"frame version {version}")
            if frame_type == FRAME_TYPE_BATCH:
                messages = _parse_batch(frame)
            elif frame_type == FRAME_TYPE_FRAGMENT:
                header = _parse_fragment_header(frame)
                payload = frame[FRAGMENT_HEADER_SIZE_BYTES:]
                return self._receive_fragment(header, payload, now)
            else:
                raise FrameMalformedError(f"unknown frame type {frame_type}")
        except (FrameMalformedError, FrameVersionError, FrameTooLargeError):
            self.stats.frames_malformed += 1
            raise
        except FragmentLimitError:
            self.stats.reassemblies_rejected += 1
            raise
        self.stats.messages_received += len(messages)
        return messages

    def _receive_fragment(self, header: _FragmentHeader, payload: bytes, now: float) -> list[bytes]:
        self.stats.fragments_received += 1
        self.handle_timer(now)
        message_id = header.message_id
        reassembly = self._reassemblies.get(message_id)
        if reassembly is None:
            if message_id in self._finished_ids or message_id <= self._finished_id_floor:
                self.stats.fragments_discarded += 1
                return []
            reassembly = self._start_reassembly(header, now)
        elif (reassembly.total, reassembly.total_length, reassembly.digest) != (
            header.total,
            header.total_length,
            header.digest,
        ):
            self._fail(message_id, "fragment header conflicts with earlier fragments")
        existing = reassembly.fragments[header.index]
        if existing is not None:
            if existing != payload:
                self._fail(message_id, f"conflicting copies of fragment {header.index}")
            self.stats.fragments_duplicate += 1
            return []
        reassembly.fragments[header.index] = payload
        reassembly.received += 1
        if reassembly.received < reassembly.total:
            return []
        message = b"".join(f for f in reassembly.fragments if f is not None)
        if _digest(message) != reassembly.digest:
            self._fail(message_id, "reassembled message fails its digest")
        self._finish(message_id)
        self.stats.reassemblies_completed += 1
        self.stats.messages_received += 1
        return [message]

    def _start_reassembly(self, header: _FragmentHeader, now: float) -> _Reassembly:
        if len(self._reassemblies) >= limits.REASSEMBLIES_PER_PEER_MAX:
            self._reject(header.message_id, f"{len(self._reassemblies)} reassemblies under way")
        if self._reassembly_bytes + header.total_length > limits.REASSEMBLY_BYTES_PER_PEER_MAX:
            self._reject(header.message_id, f"{self._reassembly_bytes} bytes under reassembly")
        reassembly = _Reassembly(
            total=header.total,
            total_length=header.total_length,
            digest=header.digest,
            deadline=now + limits.REASSEMBLY_TIMEOUT_S,
            fragments=[None] * header.total,
        )
        self._reassemblies[header.message_id] = reassembly
        self._reassembly_bytes += header.total_length
        return reassembly

    def _reject(self, message_id: int, reason: str) -> NoReturn:
        self._remember_finished(message_id)
        self.stats.reassemblies_rejected += 1
        raise ReassemblyLimitError(f"message {message_id} refused: {reason}")

    def _fail(self, message_id: int, reason: str) -> NoReturn:
        self._finish(message_id)
        self.stats.integrity_failures += 1
        raise FragmentIntegrityError(f"message {message_id}: {reason}")

    def _finish(self, message_id: int) -> None:
        reassembly = self._reassemblies.pop(message_id)
        self._reassembly_bytes -= reassembly.total_length
        self._remember_finished(message_id)

    def _remember_finished(self, message_id: int) -> None:
        self._finished_ids[message_id] = None
        if len(self._finished_ids) > FINISHED_MESSAGE_IDS_REMEMBERED_MAX:
            evicted, _ = self._finished_ids.popitem(last=False)
            self._finished_id_floor = max(self._finished_id_floor, evicted)


def _parse_batch(frame: bytes) -> list[bytes]:
    if len(frame) < BATCH_HEADER_SIZE_BYTES:
        raise FrameMalformedError("batch frame shorter than its header")
    _, _, count = _BATCH_HEADER.unpack_from(frame)
    if count == 0:
        raise FrameMalformedError("empty batch")
    body_start = BATCH_HEADER_SIZE_BYTES + BATCH_LENGTH_SIZE_BYTES * count
    if body_start > len(frame):
        raise FrameMalformedError(f"batch of {count} messages is truncated")
    lengths = array("H")
    lengths.frombytes(frame[BATCH_HEADER_SIZE_BYTES:body_start])
    if _LENGTH_TABLE_NEEDS_BYTESWAP:
        lengths.byteswap()
    if body_start + sum(lengths) != len(frame):
        raise FrameMalformedError("batch lengths do not add up to the frame size")
    messages: list[bytes] = []
    position = body_start
    for length in lengths:
        end = position + length
        messages.append(frame[position:end])
        position = end
    return messages


def _parse_fragment_header(frame: bytes) -> _FragmentHeader:
    if len(frame) < FRAGMENT_HEADER_SIZE_BYTES:
        raise FrameMalformedError("fragment frame shorter than its header")
    _, _, message_id, index, total, total_length, digest = _FRAGMENT_HEADER.unpack_from(frame)
    if total > limits.FRAGMENTS_PER_MESSAGE_MAX:
        raise FragmentLimitError(f"message {message_id} claims {total} fragments")
    if total_length == 0 or total != fragment_count(total_length):
        raise FrameMalformedError(f"{total} fragments cannot carry {total_length} bytes")
    if index >= total:
        raise FrameMalformedError(f"fragment index {index} of {total}")
    if index == total - 1:
        expected_size = total_length - index * FRAGMENT_PAYLOAD_SIZE_BYTES
    else:
        expected_size = FRAGMENT_PAYLOAD_SIZE_BYTES
    payload_size = len(frame) - FRAGMENT_HEADER_SIZE_BYTES
    if payload_size != expected_size:
        raise FrameMalformedError(f"fragment {index} of {total} carries {payload_size} bytes")
    return _FragmentHeader(message_id, index, total, total_length, digest)
