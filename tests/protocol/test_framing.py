"""Tests of the framing layer: batching, fragmentation, reassembly, limits and fuzzing."""

from __future__ import annotations

import hashlib
import itertools
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmd.protocol import limits
from swarmd.protocol.errors import LimitExceededError, LocalProtocolError, RemoteProtocolError
from swarmd.protocol.framing import (
    BATCH_MESSAGE_SIZE_BYTES_MAX,
    FRAGMENT_HEADER_SIZE_BYTES,
    FRAGMENT_PAYLOAD_SIZE_BYTES,
    MESSAGE_SIZE_BYTES_MAX,
    PEER_SEND_QUEUE_BYTES_MAX,
    FragmentIntegrityError,
    FragmentLimitError,
    FrameDecoder,
    FrameEncoder,
    FrameMalformedError,
    FrameTooLargeError,
    FrameVersionError,
    FramingError,
    MessageTooLargeError,
    Priority,
    ReassemblyLimitError,
    SendQueueFullError,
    fragment_count,
)

TARGET = limits.FRAME_BATCH_SIZE_BYTES_TARGET
FRAME_MAX = limits.FRAME_SIZE_BYTES_MAX
P = FRAGMENT_PAYLOAD_SIZE_BYTES

#: Sizes at and around every boundary of the format.
BOUNDARY_SIZES = sorted(
    {
        0,
        1,
        2,
        TARGET - 8,
        TARGET - 6,
        TARGET - 5,
        TARGET,
        TARGET + 1,
        P - 1,
        P,
        P + 1,
        BATCH_MESSAGE_SIZE_BYTES_MAX - 1,
        BATCH_MESSAGE_SIZE_BYTES_MAX,
        BATCH_MESSAGE_SIZE_BYTES_MAX + 1,
        2 * P - 1,
        2 * P,
        2 * P + 1,
        3 * P,
    }
)


# --- helpers ---------------------------------------------------------------------------------


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def fragment_frames(message: bytes, message_id: int) -> list[bytes]:
    """Fragment frames built from the documented wire format (independent of the encoder)."""
    digest = hashlib.sha256(message).digest()[:16]
    total = fragment_count(len(message))
    frames = []
    for index in range(total):
        header = struct.pack("!BBQHHI16s", 1, 2, message_id, index, total, len(message), digest)
        frames.append(header + message[index * P : (index + 1) * P])
    return frames


def deliver(decoder: FrameDecoder, frames: list[bytes], now: float = 0.0) -> list[bytes]:
    messages: list[bytes] = []
    for frame in frames:
        messages.extend(decoder.receive_frame(frame, now))
    return messages


def first_fragment_of_max_message(message_id: int) -> bytes:
    """The first fragment of a message of MESSAGE_SIZE_BYTES_MAX bytes, without building it."""
    header = struct.pack(
        "!BBQHHI16s",
        1,
        2,
        message_id,
        0,
        limits.FRAGMENTS_PER_MESSAGE_MAX,
        MESSAGE_SIZE_BYTES_MAX,
        bytes(16),
    )
    return header + bytes(P)


# --- wire format -----------------------------------------------------------------------------


def test_batch_wire_format_is_as_documented() -> None:
    encoder = FrameEncoder()
    encoder.queue_message(b"ab")
    encoder.queue_message(b"c")
    assert encoder.frames_to_send() == [b"\x01\x01\x00\x02\x00\x02\x00\x01abc"]


def test_fragment_wire_format_is_as_documented() -> None:
    message = payload(BATCH_MESSAGE_SIZE_BYTES_MAX + 1, seed=1)
    encoder = FrameEncoder()
    encoder.queue_message(message)
    frames = encoder.frames_to_send()
    assert frames == fragment_frames(message, message_id=0)
    assert [len(f) for f in frames] == [FRAME_MAX, FRAGMENT_HEADER_SIZE_BYTES + len(message) - P]


def test_message_ids_count_up_per_fragmented_message() -> None:
    encoder = FrameEncoder()
    messages = [payload(BATCH_MESSAGE_SIZE_BYTES_MAX + 10, seed=i) for i in range(3)]
    for message in messages:
        encoder.queue_message(message)
    frames = encoder.frames_to_send()
    expected = [f for i, m in enumerate(messages) for f in fragment_frames(m, i)]
    assert frames == expected


# --- round trips -----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(
        st.tuples(
            st.one_of(st.sampled_from(BOUNDARY_SIZES), st.integers(0, 3000)),
            st.sampled_from(list(Priority)),
        ),
        min_size=1,
        max_size=40,
    ),
    budgets=st.lists(st.one_of(st.none(), st.integers(-1, 3 * FRAME_MAX)), max_size=8),
    seed=st.integers(0, 2**32),
)
def test_round_trip_of_random_message_mixes(
    specs: list[tuple[int, Priority]], budgets: list[int | None], seed: int
) -> None:
    sent = [(payload(size, seed + i), priority) for i, (size, priority) in enumerate(specs)]
    encoder, decoder = FrameEncoder(), FrameDecoder()
    for message, priority in sent:
        encoder.queue_message(message, priority)
    received: list[bytes] = []
    for budget in [*budgets, None]:
        frames = encoder.frames_to_send(budget)
        if budget is not None and frames:
            assert sum(map(len, frames)) - len(frames[-1]) < budget
        for frame in frames:
            assert len(frame) <= FRAME_MAX
            received.extend(decoder.receive_frame(frame, now=0.0))
    assert not encoder.has_frames_to_send()
    assert encoder.queued_messages == 0
    assert encoder.queued_bytes == 0
    # Order holds within each priority; across priorities only the multiset must match.
    assert sorted(received) == sorted(m for m, _ in sent)
    owners: dict[bytes, set[Priority]] = {}
    for message, priority in sent:
        owners.setdefault(message, set()).add(priority)
    for priority in Priority:
        mine = [m for m, p in sent if p == priority and owners[m] == {priority}]
        assert [m for m in received if owners[m] == {priority}] == mine
    assert decoder.stats.messages_received == len(sent) == encoder.stats.messages_sent
    assert decoder.reassemblies == 0 and decoder.reassembly_bytes == 0


def test_small_messages_are_batched_up_to_the_target() -> None:
    encoder, decoder = FrameEncoder(), FrameDecoder()
    messages = [payload(200, seed=i) for i in range(1000)]
    for message in messages:
        encoder.queue_message(message)
    frames = encoder.frames_to_send()
    assert all(len(f) <= TARGET for f in frames)
    per_frame = (TARGET - 4) // 202
    assert len(frames) == -(-len(messages) // per_frame)
    assert deliver(decoder, frames) == messages
    assert encoder.stats.frames_sent == len(frames)
    assert encoder.stats.bytes_sent == sum(map(len, frames))


def test_a_message_above_the_target_travels_alone_and_unfragmented() -> None:
    encoder, decoder = FrameEncoder(), FrameDecoder()
    big = payload(TARGET + 1, seed=1)
    encoder.queue_message(b"x")
    encoder.queue_message(big)
    encoder.queue_message(b"y")
    frames = encoder.frames_to_send()
    assert len(frames) == 3
    assert encoder.stats.fragments_sent == 0
    assert deliver(decoder, frames) == [b"x", big, b"y"]


def test_largest_message_round_trips_and_one_byte_more_is_refused() -> None:
    encoder, decoder = FrameEncoder(), FrameDecoder()
    message = payload(MESSAGE_SIZE_BYTES_MAX, seed=2)
    encoder.queue_message(message, Priority.BULK)
    frames = encoder.frames_to_send()
    assert len(frames) == limits.FRAGMENTS_PER_MESSAGE_MAX
    assert deliver(decoder, frames) == [message]
    with pytest.raises(MessageTooLargeError) as info:
        encoder.queue_message(message + b"!", Priority.BULK)
    assert isinstance(info.value, LocalProtocolError)
    assert info.value.code == "message_too_large"
    assert encoder.stats.messages_queued == 1


def test_budget_of_zero_sends_nothing_and_a_tiny_budget_still_progresses() -> None:
    encoder = FrameEncoder()
    encoder.queue_message(payload(3 * P, seed=3), Priority.BULK)
    assert encoder.frames_to_send(0) == []
    assert encoder.frames_to_send(-5) == []
    assert len(encoder.frames_to_send(1)) == 1
    assert len(encoder.frames_to_send(FRAME_MAX + 1)) == 2
    assert encoder.frames_to_send(1) == []


# --- priorities and interleaving -------------------------------------------------------------


def test_control_frames_interleave_with_a_bulk_fragment_stream() -> None:
    encoder, decoder = FrameEncoder(), FrameDecoder()
    bulk = payload(5 * P, seed=4)
    encoder.queue_message(bulk, Priority.BULK)
    received = deliver(decoder, encoder.frames_to_send(budget_bytes=1))
    assert received == []
    encoder.queue_message(b"heartbeat", Priority.CONTROL)
    encoder.queue_message(b"gossip", Priority.NORMAL)
    frames = encoder.frames_to_send(budget_bytes=1)
    # The CONTROL message goes first; the NORMAL one fills the same batch frame.
    assert deliver(decoder, frames) == [b"heartbeat", b"gossip"]
    encoder.queue_message(payload(2 * P, seed=5), Priority.CONTROL)
    frames = encoder.frames_to_send(budget_bytes=2 * FRAME_MAX)
    received = deliver(decoder, frames)
    assert received == [payload(2 * P, seed=5)]
    assert decoder.reassemblies == 1  # the BULK message is still under way
    assert deliver(decoder, encoder.frames_to_send()) == [bulk]
    assert decoder.reassemblies == 0


def test_control_is_sent_before_normal_before_bulk() -> None:
    encoder, decoder = FrameEncoder(), FrameDecoder()
    encoder.queue_message(b"b" * TARGET, Priority.BULK)
    encoder.queue_message(b"n" * TARGET, Priority.NORMAL)
    encoder.queue_message(b"c" * TARGET, Priority.CONTROL)
    received = deliver(decoder, encoder.frames_to_send())
    assert [m[:1] for m in received] == [b"c", b"n", b"b"]


def test_batches_never_reorder_messages_behind_a_fragment_stream() -> None:
    encoder, decoder = FrameEncoder(), FrameDecoder()
    big = payload(2 * P, seed=6)
    encoder.queue_message(big, Priority.NORMAL)
    encoder.queue_message(b"after-big", Priority.NORMAL)
    encoder.queue_message(b"control", Priority.CONTROL)
    received = deliver(decoder, encoder.frames_to_send())
    assert received.index(big) < received.index(b"after-big")
    assert received[0] == b"control"


# --- send queue bound ------------------------------------------------------------------------


def test_queue_overflow_drops_oldest_bulk_then_normal_never_control() -> None:
    encoder = FrameEncoder()
    third = limits.PEER_SEND_QUEUE_MAX // 3
    for i in range(third):
        encoder.queue_message(b"C%d" % i, Priority.CONTROL)
        encoder.queue_message(b"N%d" % i, Priority.NORMAL)
        encoder.queue_message(b"B%d" % i, Priority.BULK)
    room = limits.PEER_SEND_QUEUE_MAX - encoder.queued_messages
    for i in range(room):
        encoder.queue_message(b"c%d" % i, Priority.CONTROL)
    assert encoder.stats.messages_dropped == 0
    overflow = third + 5  # every BULK message, then five NORMAL ones
    for i in range(overflow):
        encoder.queue_message(b"x%d" % i, Priority.CONTROL)
    assert encoder.stats.messages_dropped == overflow
    assert encoder.queued_messages == limits.PEER_SEND_QUEUE_MAX
    received = deliver(FrameDecoder(), encoder.frames_to_send())
    assert not [m for m in received if m.startswith(b"B")]
    normals = [m for m in received if m.startswith(b"N")]
    assert normals == [b"N%d" % i for i in range(5, third)]
    assert len([m for m in received if m[:1] in b"Ccx"]) == 2 * third + room + overflow - third
    assert encoder.stats.messages_queued == len(received) + overflow


def test_new_bulk_message_is_dropped_when_only_older_control_and_normal_wait() -> None:
    encoder = FrameEncoder()
    for i in range(limits.PEER_SEND_QUEUE_MAX):
        encoder.queue_message(b"n%d" % i, Priority.NORMAL if i % 2 else Priority.CONTROL)
    encoder.queue_message(b"bulk", Priority.BULK)
    assert encoder.stats.messages_dropped == 1
    received = deliver(FrameDecoder(), encoder.frames_to_send())
    assert b"bulk" not in received
    assert len(received) == limits.PEER_SEND_QUEUE_MAX


def test_queue_full_of_control_refuses_more_control() -> None:
    encoder = FrameEncoder()
    for _ in range(limits.PEER_SEND_QUEUE_MAX):
        encoder.queue_message(b"c", Priority.CONTROL)
    with pytest.raises(SendQueueFullError) as info:
        encoder.queue_message(b"c", Priority.CONTROL)
    assert info.value.code == "send_queue_full"
    encoder.queue_message(b"n", Priority.NORMAL)  # accepted, then dropped at once
    assert encoder.stats.messages_dropped == 1
    assert encoder.queued_messages == limits.PEER_SEND_QUEUE_MAX


def test_queue_byte_bound_drops_oldest_bulk() -> None:
    encoder = FrameEncoder()
    big = bytes(MESSAGE_SIZE_BYTES_MAX)
    assert PEER_SEND_QUEUE_BYTES_MAX // len(big) == 4
    encoder.queue_message(b"first-bulk", Priority.BULK)
    for _ in range(3):
        encoder.queue_message(big, Priority.BULK)
    encoder.queue_message(big, Priority.NORMAL)
    assert encoder.stats.messages_dropped == 1  # the small oldest BULK message went first
    encoder.queue_message(b"control", Priority.CONTROL)
    assert encoder.stats.messages_dropped == 2
    assert encoder.queued_bytes <= PEER_SEND_QUEUE_BYTES_MAX
    assert encoder.queued_messages == 4


def test_control_byte_bound_is_accounted_through_draining() -> None:
    encoder = FrameEncoder()
    big = bytes(MESSAGE_SIZE_BYTES_MAX)
    for _round in range(2):
        for _ in range(PEER_SEND_QUEUE_BYTES_MAX // len(big)):
            encoder.queue_message(big, Priority.CONTROL)
        with pytest.raises(SendQueueFullError):
            encoder.queue_message(b"c", Priority.CONTROL)
        frames = encoder.frames_to_send()
        assert len(frames) == 4 * limits.FRAGMENTS_PER_MESSAGE_MAX
        assert encoder.queued_bytes == 0
    assert encoder.stats.messages_dropped == 0


def test_message_being_fragmented_is_never_dropped() -> None:
    encoder, decoder = FrameEncoder(), FrameDecoder()
    big = payload(3 * P, seed=7)
    encoder.queue_message(big, Priority.BULK)
    frames = encoder.frames_to_send(budget_bytes=1)
    for i in range(limits.PEER_SEND_QUEUE_MAX + 10):
        encoder.queue_message(b"b%d" % i, Priority.BULK)
    assert encoder.stats.messages_dropped == 10
    received = deliver(decoder, frames + encoder.frames_to_send())
    assert received[0] == big
    assert received[1:] == [b"b%d" % i for i in range(10, limits.PEER_SEND_QUEUE_MAX + 10)]


def test_unknown_priority_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        FrameEncoder().queue_message(b"x", 7)  # type: ignore[arg-type]


# --- loss, duplication, reordering -----------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    size=st.sampled_from([BATCH_MESSAGE_SIZE_BYTES_MAX + 1, 2 * P, 2 * P + 1, 7 * P - 3]),
    order_seed=st.integers(0, 2**32),
    duplicates=st.integers(0, 10),
)
def test_fragments_shuffled_and_duplicated_deliver_the_message_once(
    size: int, order_seed: int, duplicates: int
) -> None:
    message = payload(size, seed=size)
    frames = fragment_frames(message, message_id=42)
    rng = random.Random(order_seed)
    frames += [rng.choice(frames) for _ in range(duplicates)]
    rng.shuffle(frames)
    decoder = FrameDecoder()
    assert deliver(decoder, frames) == [message]
    stats = decoder.stats
    assert stats.fragments_duplicate + stats.fragments_discarded == duplicates
    assert stats.reassemblies_completed == 1
    assert decoder.reassemblies == 0


def test_lost_fragment_expires_through_the_timer_and_is_counted() -> None:
    decoder = FrameDecoder()
    message = payload(4 * P, seed=8)
    frames = fragment_frames(message, message_id=0)
    lost = frames.pop(2)
    assert decoder.get_timer() is None
    assert deliver(decoder, frames, now=100.0) == []
    assert decoder.reassemblies == 1
    assert decoder.reassembly_bytes == len(message)
    deadline = 100.0 + limits.REASSEMBLY_TIMEOUT_S
    assert decoder.get_timer() == deadline
    decoder.handle_timer(deadline - 0.001)
    assert decoder.stats.reassemblies_expired == 0
    decoder.handle_timer(deadline)
    assert decoder.stats.reassemblies_expired == 1
    assert decoder.reassemblies == 0 and decoder.reassembly_bytes == 0
    assert decoder.get_timer() is None
    # The lost fragment arriving late is discarded, not the start of a new reassembly.
    assert decoder.receive_frame(lost, deadline + 1) == []
    assert decoder.stats.fragments_discarded == 1
    assert decoder.reassemblies == 0


def test_overdue_reassemblies_expire_on_receive_even_without_the_timer() -> None:
    decoder = FrameDecoder()
    stale = fragment_frames(payload(2 * P, seed=9), message_id=1)
    fresh_message = payload(2 * P, seed=10)
    decoder.receive_frame(stale[0], now=0.0)
    later = float(limits.REASSEMBLY_TIMEOUT_S)
    assert deliver(decoder, fragment_frames(fresh_message, 2), now=later) == [fresh_message]
    assert decoder.stats.reassemblies_expired == 1


def test_duplicate_fragments_after_completion_do_not_deliver_twice() -> None:
    decoder = FrameDecoder()
    message = payload(2 * P, seed=11)
    frames = fragment_frames(message, message_id=5)
    assert deliver(decoder, frames) == [message]
    assert deliver(decoder, frames) == []
    assert decoder.reassemblies == 0
    assert decoder.stats.fragments_discarded == 2


def test_finished_ids_are_forgotten_in_a_bounded_way_but_old_ids_stay_discarded() -> None:
    decoder = FrameDecoder()
    small = payload(P + 1, seed=12)
    for message_id in range(2000):
        assert deliver(decoder, fragment_frames(small, message_id)) == [small]
    # Id 3 fell out of the remembered set but is below the floor, so it is still discarded.
    assert deliver(decoder, fragment_frames(small, 3)) == []
    assert decoder.reassemblies == 0
    assert deliver(decoder, fragment_frames(small, 2000)) == [small]


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(
        st.sampled_from([5, 300, BATCH_MESSAGE_SIZE_BYTES_MAX + 1, 2 * P + 7, TARGET]),
        min_size=1,
        max_size=12,
    ),
    loss=st.floats(0, 0.3),
    duplication=st.floats(0, 0.3),
    seed=st.integers(0, 2**32),
)
def test_lossy_network_delivers_only_sent_messages_at_most_once(
    sizes: list[int], loss: float, duplication: float, seed: int
) -> None:
    rng = random.Random(seed)
    messages = [b"%06d" % i + payload(size, seed + i) for i, size in enumerate(sizes)]
    encoder, decoder = FrameEncoder(), FrameDecoder()
    for message in messages:
        encoder.queue_message(message, rng.choice(list(Priority)))
    frames = [f for f in encoder.frames_to_send() if rng.random() >= loss]
    frames += [f for f in frames if rng.random() < duplication]
    rng.shuffle(frames)
    received = deliver(decoder, frames, now=1.0)
    assert set(received) <= set(messages)
    # Fragmented messages arrive at most once; batch frames carry no id, so a duplicated batch
    # frame delivers its messages again (upper layers de-duplicate, see docs/parts/framing.md).
    fragmented = [m for m in received if len(m) > BATCH_MESSAGE_SIZE_BYTES_MAX]
    assert len(fragmented) == len(set(fragmented))
    decoder.handle_timer(1.0 + limits.REASSEMBLY_TIMEOUT_S)
    assert decoder.reassemblies == 0 and decoder.reassembly_bytes == 0
    stats = decoder.stats
    assert stats.reassemblies_completed + stats.reassemblies_expired <= encoder.stats.messages_sent
    assert stats.integrity_failures == 0 and stats.frames_malformed == 0


# --- reassembly limits -----------------------------------------------------------------------


def test_too_many_fragments_is_a_typed_limit_error() -> None:
    decoder = FrameDecoder()
    total = limits.FRAGMENTS_PER_MESSAGE_MAX + 1
    header = struct.pack("!BBQHHI16s", 1, 2, 0, 0, total, total * P, bytes(16))
    with pytest.raises(FragmentLimitError) as info:
        decoder.receive_frame(header + bytes(P), now=0.0)
    assert info.value.code == "fragment_limit"
    assert isinstance(info.value, LimitExceededError)
    assert decoder.stats.reassemblies_rejected == 1
    assert decoder.reassemblies == 0


def test_too_many_concurrent_reassemblies_is_refused_and_others_continue() -> None:
    decoder = FrameDecoder()
    messages = [payload(2 * P, seed=100 + i) for i in range(limits.REASSEMBLIES_PER_PEER_MAX + 1)]
    streams = [fragment_frames(m, i) for i, m in enumerate(messages)]
    for stream in streams[:-1]:
        assert decoder.receive_frame(stream[0], now=0.0) == []
    with pytest.raises(ReassemblyLimitError) as info:
        decoder.receive_frame(streams[-1][0], now=0.0)
    assert info.value.code == "reassembly_limit"
    assert decoder.stats.reassemblies_rejected == 1
    # The rest of the refused message is discarded; the others complete.
    assert decoder.receive_frame(streams[-1][1], now=0.0) == []
    assert decoder.stats.fragments_discarded == 1
    assert deliver(decoder, [s[1] for s in streams[:-1]]) == messages[:-1]
    assert decoder.reassemblies == 0 and decoder.reassembly_bytes == 0


def test_reassembly_byte_bound_is_refused() -> None:
    decoder = FrameDecoder()
    fitting = limits.REASSEMBLY_BYTES_PER_PEER_MAX // MESSAGE_SIZE_BYTES_MAX
    assert 0 < fitting < limits.REASSEMBLIES_PER_PEER_MAX
    for message_id in range(fitting):
        decoder.receive_frame(first_fragment_of_max_message(message_id), now=0.0)
    assert decoder.reassembly_bytes == fitting * MESSAGE_SIZE_BYTES_MAX
    with pytest.raises(ReassemblyLimitError):
        decoder.receive_frame(first_fragment_of_max_message(fitting), now=0.0)
    assert decoder.stats.reassemblies_rejected == 1
    assert decoder.reassemblies == fitting
    # Small messages are still refused while the bytes are reserved, accepted once they expire.
    small = payload(P + 1, seed=13)
    with pytest.raises(ReassemblyLimitError):
        deliver(decoder, fragment_frames(small, 100), now=1.0)
    decoder.handle_timer(float(limits.REASSEMBLY_TIMEOUT_S))
    assert decoder.stats.reassemblies_expired == fitting
    assert deliver(decoder, fragment_frames(small, 101), now=31.0) == [small]


# --- integrity -------------------------------------------------------------------------------


def test_corrupted_fragment_fails_integrity_and_leaves_other_messages_alone() -> None:
    encoder, decoder = FrameEncoder(), FrameDecoder()
    good = payload(3 * P, seed=14)
    victim = payload(3 * P, seed=15)
    good_frames = fragment_frames(good, 1)
    victim_frames = fragment_frames(victim, 2)
    corrupted = bytearray(victim_frames[1])
    corrupted[FRAGMENT_HEADER_SIZE_BYTES + 7] ^= 0x01
    victim_frames[1] = bytes(corrupted)
    encoder.queue_message(b"small")
    batch = encoder.frames_to_send()[0]
    interleaved = [good_frames[0], victim_frames[0], good_frames[1], victim_frames[1], batch]
    assert deliver(decoder, interleaved) == [b"small"]
    with pytest.raises(FragmentIntegrityError) as info:
        decoder.receive_frame(victim_frames[2], now=0.0)
    assert info.value.code == "fragment_integrity"
    assert isinstance(info.value, RemoteProtocolError)
    assert decoder.stats.integrity_failures == 1
    assert decoder.receive_frame(good_frames[2], now=0.0) == [good]
    assert decoder.reassemblies == 0 and decoder.reassembly_bytes == 0


def test_conflicting_duplicate_fragment_fails_only_its_message() -> None:
    decoder = FrameDecoder()
    good, victim = payload(2 * P, seed=16), payload(2 * P, seed=17)
    good_frames, victim_frames = fragment_frames(good, 1), fragment_frames(victim, 2)
    decoder.receive_frame(good_frames[0], now=0.0)
    decoder.receive_frame(victim_frames[0], now=0.0)
    decoder.receive_frame(victim_frames[0], now=0.0)  # an exact duplicate is fine
    assert decoder.stats.fragments_duplicate == 1
    conflicting = victim_frames[0][:-1] + bytes([victim_frames[0][-1] ^ 0xFF])
    with pytest.raises(FragmentIntegrityError):
        decoder.receive_frame(conflicting, now=0.0)
    assert decoder.stats.integrity_failures == 1
    assert decoder.receive_frame(victim_frames[1], now=0.0) == []  # discarded
    assert decoder.receive_frame(good_frames[1], now=0.0) == [good]


def test_fragment_header_conflict_fails_integrity() -> None:
    decoder = FrameDecoder()
    message = payload(2 * P, seed=18)
    frames = fragment_frames(message, 9)
    other_digest = frames[1][:18] + bytes(16) + frames[1][34:]
    decoder.receive_frame(frames[0], now=0.0)
    with pytest.raises(FragmentIntegrityError):
        decoder.receive_frame(other_digest, now=0.0)
    assert decoder.reassemblies == 0


# --- malformed frames ------------------------------------------------------------------------


MALFORMED_FRAMES = [
    (b"", FrameMalformedError),
    (b"\x01", FrameMalformedError),
    (b"\x02\x01\x00\x01\x00\x00", FrameVersionError),
    (b"\x01\x03", FrameMalformedError),
    (b"\x01\x01\x00", FrameMalformedError),
    (b"\x01\x01\x00\x00", FrameMalformedError),  # empty batch
    (b"\x01\x01\x00\x02\x00\x01", FrameMalformedError),  # truncated length table
    (b"\x01\x01\x00\x01\x00\x02a", FrameMalformedError),  # truncated body
    (b"\x01\x01\x00\x01\x00\x01ab", FrameMalformedError),  # trailing bytes
    (b"\x01\x02" + bytes(20), FrameMalformedError),  # short fragment header
    (b"\x01\x01\x00\x01" + bytes(FRAME_MAX), FrameTooLargeError),
    # total does not match total_length
    (struct.pack("!BBQHHI16s", 1, 2, 0, 0, 3, P + 1, bytes(16)) + bytes(P), FrameMalformedError),
    # zero total length
    (struct.pack("!BBQHHI16s", 1, 2, 0, 0, 1, 0, bytes(16)), FrameMalformedError),
    # index beyond total
    (struct.pack("!BBQHHI16s", 1, 2, 0, 2, 2, P + 1, bytes(16)) + b"x", FrameMalformedError),
    # a non-last fragment of the wrong size
    (
        struct.pack("!BBQHHI16s", 1, 2, 0, 0, 2, P + 1, bytes(16)) + bytes(P - 1),
        FrameMalformedError,
    ),
    # a last fragment of the wrong size
    (struct.pack("!BBQHHI16s", 1, 2, 0, 1, 2, P + 1, bytes(16)) + b"xy", FrameMalformedError),
]


@pytest.mark.parametrize(("frame", "error"), MALFORMED_FRAMES)
def test_malformed_frames_raise_typed_errors(frame: bytes, error: type[FramingError]) -> None:
    decoder = FrameDecoder()
    with pytest.raises(error) as info:
        decoder.receive_frame(frame, now=0.0)
    assert isinstance(info.value, RemoteProtocolError)
    assert info.value.code in {"frame_malformed", "frame_version_unsupported", "frame_too_large"}
    assert decoder.stats.frames_malformed == 1
    assert decoder.reassemblies == 0


def test_malformed_frame_does_not_disturb_a_reassembly() -> None:
    decoder = FrameDecoder()
    message = payload(2 * P, seed=19)
    frames = fragment_frames(message, 3)
    decoder.receive_frame(frames[0], now=0.0)
    with pytest.raises(FrameMalformedError):
        decoder.receive_frame(frames[1][:-1], now=0.0)
    assert decoder.receive_frame(frames[1], now=0.0) == [message]


# --- fuzzing ---------------------------------------------------------------------------------


def check_decoder_invariants(decoder: FrameDecoder) -> None:
    assert decoder.reassemblies <= limits.REASSEMBLIES_PER_PEER_MAX
    assert 0 <= decoder.reassembly_bytes <= limits.REASSEMBLY_BYTES_PER_PEER_MAX


def feed_checked(decoder: FrameDecoder, frame: bytes, now: float) -> None:
    try:
        messages = decoder.receive_frame(frame, now)
    except RemoteProtocolError as error:
        assert isinstance(error, FramingError)
        assert error.code
    else:
        assert isinstance(messages, list)
        assert all(isinstance(m, bytes) for m in messages)
    check_decoder_invariants(decoder)


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=10))
def test_fuzz_any_bytes_parse_or_raise_remote_error_whole_or_split(
    data: bytes, cuts: list[int]
) -> None:
    feed_checked(FrameDecoder(), data, now=0.0)
    decoder = FrameDecoder()
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for start, end in itertools.pairwise(bounds):
        feed_checked(decoder, data[start:end], now=float(start))


fragment_prefix = st.builds(
    lambda message_id, index, total, length, digest: struct.pack(
        "!BBQHHI16s", 1, 2, message_id, index, total, length, digest
    ),
    st.integers(0, 3),
    st.integers(0, 4),
    st.integers(0, 5),
    st.integers(0, 5 * P),
    st.sampled_from([bytes(16), b"\xff" * 16]),
)
batch_prefix = st.builds(lambda count: struct.pack("!BBH", 1, 1, count), st.integers(0, 20))


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(
        st.tuples(
            st.one_of(fragment_prefix, batch_prefix),
            st.one_of(st.binary(max_size=200), st.sampled_from([bytes(P), bytes(P - 1)])),
        ),
        max_size=12,
    )
)
def test_fuzz_structured_frames_parse_or_raise_remote_error(
    frames: list[tuple[bytes, bytes]],
) -> None:
    decoder = FrameDecoder()
    for i, (prefix, tail) in enumerate(frames):
        feed_checked(decoder, prefix + tail, now=float(i))


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.sampled_from([0, 3, 100, 2 * P + 1]), min_size=1, max_size=6),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=4),
)
def test_fuzz_mutated_valid_frames_parse_or_raise_remote_error(
    sizes: list[int], flips: list[tuple[int, int]]
) -> None:
    encoder = FrameEncoder()
    for i, size in enumerate(sizes):
        encoder.queue_message(payload(size, i))
    frames = encoder.frames_to_send()
    decoder = FrameDecoder()
    for position, mask in flips:
        which = position % len(frames)
        mutated = bytearray(frames[which])
        if mutated:
            mutated[position % len(mutated)] ^= mask
        frames[which] = bytes(mutated)
    for frame in frames:
        feed_checked(decoder, frame, now=0.0)
