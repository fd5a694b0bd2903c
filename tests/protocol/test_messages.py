"""Peer messages: exact round trips, the canonical fast path, and the fuzz invariant."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from swarmd.protocol import encoding, limits, messages
from swarmd.protocol.errors import RemoteProtocolError

ids = st.binary(min_size=32, max_size=32)
blobs = st.binary(min_size=1, max_size=300)
chunk_indices = st.integers(0, messages.CHUNK_INDEX_MAX)
state_sync_message = st.one_of(
    st.builds(messages.SnapshotOfferMessage, blobs, blobs),
    st.builds(messages.ChunkRequestMessage, ids, chunk_indices),
    st.builds(messages.ChunkMessage, ids, chunk_indices, blobs),
    st.builds(messages.ChunkMissingMessage, ids, chunk_indices),
)
any_message = st.one_of(
    st.builds(messages.OpsMessage, st.lists(blobs, min_size=1, max_size=22).map(tuple)),
    st.builds(messages.FetchMessage, st.lists(ids, min_size=1, max_size=20).map(tuple)),
    st.builds(
        messages.AnnounceMessage,
        st.integers(0, 2**40),
        st.lists(ids, min_size=1, max_size=20).map(tuple),
    ),
    st.builds(
        messages.SyncHelloMessage,
        st.integers(0, messages.SESSION_ID_MAX),
        st.integers(0, 2**40),
        st.binary(max_size=50),
    ),
    st.builds(
        messages.ReconcileMessage,
        st.integers(0, messages.SESSION_ID_MAX),
        st.booleans(),
        st.binary(max_size=50),
    ),
    st.builds(messages.ConsensusEnvelope, st.binary(max_size=50)),
    st.builds(messages.BundlesMessage, st.lists(blobs, min_size=1, max_size=8).map(tuple)),
    st.builds(messages.BundleRequestMessage, st.integers(1, 2**40), st.integers(1, 8)),
    st.builds(messages.SyncDoneMessage, st.integers(0, messages.SESSION_ID_MAX)),
    st.builds(messages.CheckpointOpsRequest, st.integers(1, 2**40)),
    st.builds(messages.EvidenceMessage, st.lists(blobs, min_size=1, max_size=16).map(tuple)),
    st.builds(
        messages.HandleConflictMessage,
        st.text("abcdefghij-_0123", min_size=3, max_size=32),
        ids,
        st.lists(ids, min_size=1, max_size=5).map(tuple),
        st.integers(1, 2**40),
    ),
    state_sync_message,
)


@given(any_message)
def test_round_trip_is_exact_and_canonical(message: messages.Message) -> None:
    data = messages.encode_message(message)
    assert messages.decode_message(data) == message
    assert encoding.encode(encoding.decode(data)) == data


@given(st.lists(blobs, min_size=1, max_size=22))
def test_ops_fast_path_equals_the_canonical_encoding(envelopes: list[bytes]) -> None:
    fast = messages.encode_message(messages.OpsMessage(tuple(envelopes)))
    assert fast == encoding.encode([int(messages.MessageType.OPS), envelopes])


@given(st.integers(0, limits.SEQ_MAX), st.lists(ids, min_size=1, max_size=40))
def test_announce_fast_path_equals_the_canonical_encoding(height: int, op_ids: list[bytes]) -> None:
    fast = messages.encode_message(messages.AnnounceMessage(height, tuple(op_ids)))
    assert fast == encoding.encode([int(messages.MessageType.ANNOUNCE), height, op_ids])


def test_announce_limits_are_typed_errors() -> None:
    most = [bytes([i % 256, i // 256]) * 16 for i in range(messages.ANNOUNCE_IDS_PER_MESSAGE_MAX)]
    data = encoding.encode([int(messages.MessageType.ANNOUNCE), 7, most])
    assert messages.decode_message(data) == messages.AnnounceMessage(7, tuple(most))
    for bad in (
        [12, 7, [*most, b"y" * 32]],  # one id over ANNOUNCE_IDS_PER_MESSAGE_MAX
        [12, 7, [b"x" * 33]],
        [12, 7, []],
        [12, -1, [b"x" * 32]],
        [12, [b"x" * 32]],
    ):
        try:
            messages.decode_message(encoding.encode(bad))
        except messages.MessageError:
            continue
        raise AssertionError(f"accepted {bad!r:.60}")


def test_limits_are_typed_errors() -> None:
    too_many = encoding.encode([1, [b"x"] * (messages.OPS_PER_MESSAGE_MAX + 1)])
    short_id = encoding.encode([2, [b"x" * 31]])
    too_many_ids = encoding.encode([2, [b"x" * 32] * (limits.FETCH_OPS_PER_REQUEST_MAX + 1)])
    for data in (too_many, short_id, too_many_ids, encoding.encode([99, 1]), b"\x90"):
        try:
            messages.decode_message(data)
        except messages.MessageError:
            continue
        raise AssertionError(f"accepted {data[:20]!r}")


@given(st.binary(max_size=300))
def test_fuzz_any_bytes_decode_or_raise_remote_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        messages.decode_message(data)


@given(any_message, st.data())
def test_fuzz_mutated_messages(message: messages.Message, data: st.DataObject) -> None:
    raw = bytearray(messages.encode_message(message))
    index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[index] = data.draw(st.integers(min_value=0, max_value=255))
    with contextlib.suppress(RemoteProtocolError):
        messages.decode_message(bytes(raw))


# --- state sync messages ---------------------------------------------------------------------


@given(state_sync_message, st.data())
def test_fuzz_mutated_state_sync_messages(message: messages.Message, data: st.DataObject) -> None:
    raw = bytearray(messages.encode_message(message))
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[index] = data.draw(st.integers(min_value=0, max_value=255))
    with contextlib.suppress(RemoteProtocolError):
        messages.decode_message(bytes(raw))
    with contextlib.suppress(RemoteProtocolError):  # cut short anywhere
        messages.decode_message(bytes(raw[: data.draw(st.integers(0, len(raw)))]))


@given(st.binary(max_size=300))
def test_fuzz_bytes_behind_the_snapshot_offer_prefix(tail: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        messages.decode_message(bytes([0x93, messages.MessageType.SNAPSHOT_OFFER]) + tail)


def test_snapshot_offer_may_exceed_the_value_limit_up_to_its_own() -> None:
    from swarmd.protocol.snapshot import MANIFEST_SIZE_BYTES_MAX

    big = messages.SnapshotOfferMessage(b"m" * MANIFEST_SIZE_BYTES_MAX, b"b" * 1000)
    data = messages.encode_message(big)
    assert len(data) > limits.ENCODED_VALUE_SIZE_BYTES_MAX
    assert messages.decode_message(data) == big
    over = messages.SnapshotOfferMessage(b"m" * (MANIFEST_SIZE_BYTES_MAX + 1), b"b")
    too_big_bundle = messages.SnapshotOfferMessage(
        b"m", b"b" * (limits.ENCODED_VALUE_SIZE_BYTES_MAX + 1)
    )
    # Any other message type stays under the encoded value limit.
    chunk = encoding.pack([15, b"i" * 32, 0, b"c" * limits.ENCODED_VALUE_SIZE_BYTES_MAX])
    for data in (messages.encode_message(over), messages.encode_message(too_big_bundle), chunk):
        try:
            messages.decode_message(data)
        except RemoteProtocolError:
            continue
        raise AssertionError(f"accepted {data[:20]!r}")


def test_state_sync_limits_are_typed_errors() -> None:
    good_id = b"i" * 32
    top = messages.CHUNK_INDEX_MAX
    assert messages.decode_message(encoding.encode([14, good_id, top])) == (
        messages.ChunkRequestMessage(good_id, top)
    )
    for bad in (
        [14, good_id, top + 1],  # index over SNAPSHOT_CHUNKS_MAX - 1
        [14, good_id, -1],
        [14, b"i" * 31, 0],
        [15, good_id, 0, b""],
        [15, good_id, 0, b"c" * (limits.SNAPSHOT_CHUNK_SIZE_BYTES + 1)],
        [15, good_id, 0],
        [16, good_id, top + 1],
        [16, good_id, "0"],
        [13, b"", b"b"],
        [13, b"m", b""],
        [13, "m", b"b"],
    ):
        try:
            messages.decode_message(encoding.encode(bad))
        except messages.MessageError:
            continue
        raise AssertionError(f"accepted {bad!r:.60}")
