"""Bytes per peer, direction and message class (node_core/bandwidth.py): exact counts of known
frames, both ways, and totals that outlive a dropped peer."""

from __future__ import annotations

import random

from swarmd.protocol.framing import (
    BATCH_HEADER_SIZE_BYTES,
    BATCH_LENGTH_SIZE_BYTES,
    FRAGMENT_HEADER_SIZE_BYTES,
    FrameEncoder,
    Priority,
)
from swarmd.protocol.messages import (
    BundleRequestMessage,
    ChunkMessage,
    ConsensusEnvelope,
    SyncDoneMessage,
    encode_message,
)
from swarmd.protocol.node_core import NodeCore
from swarmd.protocol.node_core.bandwidth import (
    CLASSES,
    FRAGMENT_CLASSES_REMEMBERED_MAX,
    Direction,
)

from .helpers import author, keypair, make_council

ZERO = dict.fromkeys(CLASSES, 0)


def _pair() -> tuple[NodeCore, NodeCore]:
    genesis, _ = make_council(4)
    a, b = (
        NodeCore(genesis=genesis, keypair=keypair(name), rng=random.Random(1), now=0.0)
        for name in ("full-a", "full-b")
    )
    assert a.peer_connected(b.node_id, 0.0) and b.peer_connected(a.node_id, 0.0)
    return a, b


def test_a_batch_frame_is_split_by_message_class_exactly() -> None:
    a, b = _pair()
    consensus = encode_message(ConsensusEnvelope(b"\x01" * 40))
    request = encode_message(BundleRequestMessage(1, 2))
    done = encode_message(SyncDoneMessage(7))
    junk = b"\xc1junk"  # not a message: its entry counts as control
    encoder = FrameEncoder()
    for message in (consensus, request, done, junk):
        encoder.queue_message(message, Priority.CONTROL)
    (frame,) = encoder.frames_to_send()
    b.receive_frame(a.node_id, frame, 0.1)
    entry = BATCH_LENGTH_SIZE_BYTES
    expected = ZERO | {
        "consensus": BATCH_HEADER_SIZE_BYTES + entry + len(consensus),
        "bundle": entry + len(request),
        "delta_sync": entry + len(done),
        "control": entry + len(junk),
    }
    status = b.node_status()
    (peer,) = status.peers
    assert peer.bytes_received == expected
    assert sum(expected.values()) == len(frame)
    assert status.bytes_received == expected
    assert status.bytes_sent == ZERO


def test_fragments_count_as_their_message_and_garbage_as_control() -> None:
    a, b = _pair()
    chunk = encode_message(ChunkMessage(b"\x02" * 32, 0, b"\x03" * 150_000))
    encoder = FrameEncoder()
    encoder.queue_message(chunk, Priority.BULK)
    frames = encoder.frames_to_send()
    assert len(frames) == 3
    for frame in frames:
        b.receive_frame(a.node_id, frame, 0.1)
    b.receive_frame(a.node_id, b"\x01\x07junk", 0.2)
    (peer,) = b.node_status().peers
    assert peer.bytes_received == ZERO | {
        "state_sync": len(chunk) + 3 * FRAGMENT_HEADER_SIZE_BYTES,
        "control": 6,
    }


def test_a_later_fragment_without_its_first_counts_as_control() -> None:
    direction = Direction()
    encoder = FrameEncoder()
    encoder.queue_message(encode_message(ChunkMessage(b"\x02" * 32, 0, bytes(100_000))))
    first, second = encoder.frames_to_send()
    direction.count(second)
    assert direction.by_class[CLASSES.index("control")] == len(second)
    direction.count(first)
    assert direction.by_class[CLASSES.index("state_sync")] == len(first)


def test_sent_gossip_matches_what_the_peer_received_and_outlives_the_link() -> None:
    a, b = _pair()
    genesis = a.genesis
    member = author(genesis, "council-0")
    grant = member.grant(author(genesis, "someone").key, 100)
    assert a.submit_op(grant.envelope, 0.1).status == "accepted"
    frames = a.frames_to_send()
    assert frames and all(peer == b.node_id for peer, _ in frames)
    for _, frame in frames:
        b.receive_frame(a.node_id, frame, 0.2)
    size = sum(len(frame) for _, frame in frames)
    sent = a.node_status().peers[0].bytes_sent
    assert sent["gossip"] > len(grant.envelope)
    assert sum(sent.values()) == size
    assert b.node_status().peers[0].bytes_received == sent
    b.peer_disconnected(a.node_id, 0.3)
    status = b.node_status()
    assert status.peers == ()
    assert status.bytes_received == sent
    assert status.as_dict()["bytes_received"] == sent


def test_past_the_remembered_streams_the_oldest_is_forgotten() -> None:
    direction = Direction()
    encoder = FrameEncoder()
    chunk = encode_message(ChunkMessage(b"\x02" * 32, 0, bytes(100_000)))
    for _ in range(FRAGMENT_CLASSES_REMEMBERED_MAX + 1):
        encoder.queue_message(chunk, Priority.BULK)
    frames = encoder.frames_to_send()
    firsts, seconds = frames[0::2], frames[1::2]
    for frame in firsts:
        direction.count(frame)
    assert len(direction.streams) == FRAGMENT_CLASSES_REMEMBERED_MAX
    for frame in seconds:
        direction.count(frame)
    # The first stream was forgotten: its last fragment counts as control; the rest as theirs.
    assert direction.by_class[CLASSES.index("control")] == len(seconds[0])
    assert direction.streams == {}
