"""The snapshot catalog: manifests, chunks and the parallel fetcher (swarmd.protocol.snapshot)."""

from __future__ import annotations

import hashlib
import heapq
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmd.protocol import encoding, limits, snapshot
from swarmd.protocol.errors import LocalProtocolError, RemoteProtocolError
from swarmd.protocol.snapshot import (
    ChunkHashMismatchError,
    ChunkIndexError,
    ChunkRejected,
    ChunkRequestTimedOut,
    ChunkVerified,
    FetchCompleted,
    FetchEvent,
    FetchFailed,
    InvalidManifestError,
    MalformedChunkError,
    Manifest,
    PeerDropped,
    RecordTooLargeError,
    SnapshotFetcher,
    SnapshotLimitExceededError,
    SnapshotTooLargeError,
    build_manifest,
    decode_manifest,
    diff_manifests,
    encode_manifest,
    split_chunk,
    verify_chunk,
)

CHECKPOINT_ID = hashlib.sha256(b"checkpoint").digest()
STATE_ROOT = hashlib.sha256(b"root").digest()
SMALL_CHUNK_BYTES = 1024  # small chunks give many chunks from few records


def records_for(count: int, salt: bytes = b"") -> list[bytes]:
    rng = random.Random(count)
    return [
        encoding.encode(
            {
                "key": hashlib.sha256(salt + number.to_bytes(8, "big")).digest(),
                "balance": rng.randrange(10**12),
                "memo": "x" * rng.randrange(0, 60),
            }
        )
        for number in range(count)
    ]


def small_snapshot(count: int = 300) -> tuple[Manifest, list[bytes], list[bytes]]:
    records = records_for(count)
    manifest, chunks = build_manifest(
        7, CHECKPOINT_ID, STATE_ROOT, records, chunk_size_bytes_max=SMALL_CHUNK_BYTES
    )
    return manifest, chunks, records


# --- building, splitting, verifying ----------------------------------------------------------


def test_build_packs_records_whole_and_split_recovers_them() -> None:
    manifest, chunks, records = small_snapshot()
    assert manifest.chunk_count == len(chunks) > 10
    assert all(0 < len(chunk) <= SMALL_CHUNK_BYTES for chunk in chunks)
    recovered = [record for chunk in chunks for record in split_chunk(chunk)]
    assert recovered == records
    assert manifest.record_count == len(records)
    assert manifest.total_size_bytes == sum(len(chunk) for chunk in chunks)
    assert manifest.total_size_bytes == sum(4 + len(record) for record in records)
    for index, chunk in enumerate(chunks):
        verify_chunk(manifest, index, chunk)
        assert manifest.chunk_hashes[index] == hashlib.sha256(chunk).digest()


def test_chunking_is_deterministic_and_mostly_content_defined() -> None:
    records = records_for(3000)
    first, chunks = build_manifest(1, CHECKPOINT_ID, STATE_ROOT, records)
    second, _ = build_manifest(1, CHECKPOINT_ID, STATE_ROOT, list(records))
    assert first == second and first.manifest_id == second.manifest_id
    assert first.chunk_count == len(chunks)
    full = [c for c in chunks[:-1] if len(c) + 200 > limits.SNAPSHOT_CHUNK_SIZE_BYTES]
    assert len(full) <= len(chunks) // 2 + 1  # most cuts are content-defined, not forced


def test_default_chunk_size_holds_a_realistic_state() -> None:
    records = records_for(20_000)
    manifest, chunks = build_manifest(1, CHECKPOINT_ID, STATE_ROOT, records)
    assert all(len(chunk) <= limits.SNAPSHOT_CHUNK_SIZE_BYTES for chunk in chunks)
    assert manifest.chunk_count >= 2
    assert [r for c in chunks for r in split_chunk(c)] == records


def test_empty_state_has_no_chunks_and_round_trips() -> None:
    manifest, chunks = build_manifest(0, CHECKPOINT_ID, STATE_ROOT, [])
    assert chunks == [] and manifest.chunk_count == 0
    assert manifest.total_size_bytes == 0 and manifest.record_count == 0
    assert decode_manifest(encode_manifest(manifest)) == manifest


def test_record_bigger_than_a_chunk_is_an_error_and_a_full_size_record_fits() -> None:
    fits = b"r" * (SMALL_CHUNK_BYTES - 4)
    _, chunks = build_manifest(
        1, CHECKPOINT_ID, STATE_ROOT, [b"a", fits, b"b"], chunk_size_bytes_max=SMALL_CHUNK_BYTES
    )
    assert fits + b"" in [r for c in chunks for r in split_chunk(c)]
    assert len(chunks) == 3  # the full-size record sits alone
    with pytest.raises(RecordTooLargeError) as excinfo:
        build_manifest(
            1, CHECKPOINT_ID, STATE_ROOT, [fits + b"x"], chunk_size_bytes_max=SMALL_CHUNK_BYTES
        )
    assert excinfo.value.code == "snapshot_record_too_large"
    with pytest.raises(RecordTooLargeError):
        build_manifest(1, CHECKPOINT_ID, STATE_ROOT, [b"x" * limits.SNAPSHOT_CHUNK_SIZE_BYTES])


def test_too_many_chunks_is_an_error() -> None:
    records = records_for(300)
    with pytest.raises(SnapshotTooLargeError):
        build_manifest(
            1, CHECKPOINT_ID, STATE_ROOT, records, chunk_size_bytes_max=512, chunks_max=2
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"chunk_size_bytes_max": limits.SNAPSHOT_CHUNK_SIZE_BYTES + 1},
        {"chunk_size_bytes_max": 0},
        {"chunks_max": limits.SNAPSHOT_CHUNKS_MAX + 1},
    ],
)
def test_build_limits_may_only_be_lowered(kwargs: dict[str, int]) -> None:
    with pytest.raises(LocalProtocolError):
        build_manifest(1, CHECKPOINT_ID, STATE_ROOT, [b"a"], **kwargs)


def test_build_rejects_empty_records_and_bad_header_fields() -> None:
    with pytest.raises(LocalProtocolError):
        build_manifest(1, CHECKPOINT_ID, STATE_ROOT, [b"a", b""])
    with pytest.raises(LocalProtocolError):
        build_manifest(-1, CHECKPOINT_ID, STATE_ROOT, [b"a"])
    with pytest.raises(LocalProtocolError):
        build_manifest(1, b"short", STATE_ROOT, [b"a"])


def test_verify_chunk_rejects_wrong_data_and_indices() -> None:
    manifest, chunks, _ = small_snapshot()
    with pytest.raises(ChunkHashMismatchError) as mismatch:
        verify_chunk(manifest, 0, chunks[1])
    assert mismatch.value.code == "snapshot_chunk_hash_mismatch"
    for index in (-1, manifest.chunk_count, True):
        with pytest.raises(ChunkIndexError):
            verify_chunk(manifest, index, chunks[0])
    with pytest.raises(SnapshotLimitExceededError):
        verify_chunk(manifest, 0, b"x" * (limits.SNAPSHOT_CHUNK_SIZE_BYTES + 1))
    with pytest.raises(MalformedChunkError):
        verify_chunk(manifest, 0, "text")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00",  # ends inside a length
        b"\x00\x00\x00\x00",  # zero-length record
        b"\x00\x00\x00\x05abcd",  # runs past the end
        b"\x00\x00\x00\x01a\x00",  # trailing partial length
    ],
)
def test_split_chunk_rejects_malformed_chunks(data: bytes) -> None:
    with pytest.raises(MalformedChunkError):
        split_chunk(data)


def test_split_chunk_limits() -> None:
    with pytest.raises(SnapshotLimitExceededError):
        split_chunk(b"\x00" * (limits.SNAPSHOT_CHUNK_SIZE_BYTES + 1))
    assert split_chunk(b"") == []


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_split_chunk_fuzz_parses_or_raises_remote_error(data: bytes) -> None:
    try:
        records = split_chunk(data)
    except RemoteProtocolError:
        return
    assert b"".join(len(r).to_bytes(4, "big") + r for r in records) == data


@given(st.lists(st.binary(min_size=1, max_size=200), max_size=30))
def test_split_chunk_round_trips_built_chunks(records: list[bytes]) -> None:
    _, chunks = build_manifest(1, CHECKPOINT_ID, STATE_ROOT, records, chunk_size_bytes_max=600)
    assert [r for c in chunks for r in split_chunk(c)] == records


# --- manifest encoding -----------------------------------------------------------------------


def test_manifest_round_trips_with_a_stable_id() -> None:
    manifest, _, _ = small_snapshot()
    encoded = encode_manifest(manifest)
    assert decode_manifest(encoded) == manifest
    assert manifest.manifest_id == hashlib.sha256(encoded).digest()
    assert decode_manifest(encoded).manifest_id == manifest.manifest_id
    other, _ = build_manifest(
        8, CHECKPOINT_ID, STATE_ROOT, records_for(300), chunk_size_bytes_max=1024
    )
    assert other.manifest_id != manifest.manifest_id  # only the height differs


def manifest_fields(manifest: Manifest) -> dict[str, object]:
    value = encoding.decode(encode_manifest(manifest), size_max=snapshot.MANIFEST_SIZE_BYTES_MAX)
    assert isinstance(value, dict)
    return value


BAD_FIELDS = [
    {"version": 2},
    {"version": True},
    {"height": -1},
    {"height": 2**63},
    {"height": "7"},
    {"height": False},
    {"checkpoint_id": b"short"},
    {"state_root": "not bytes"},
    {"chunk_count": 3},
    {"chunk_hashes": b"\x00" * 31},
    {"chunk_hashes": [b"\x00" * 32]},
    {"total_size_bytes": 10**12},
    {"record_count": 0},
    {"record_count": 10**9},
    {"extra": 1},
]


@pytest.mark.parametrize("change", BAD_FIELDS)
def test_decode_rejects_bad_fields(change: dict[str, object]) -> None:
    manifest, _, _ = small_snapshot(30)
    fields = manifest_fields(manifest)
    fields.update(change)
    with pytest.raises(InvalidManifestError) as excinfo:
        decode_manifest(encoding.encode(fields))
    assert excinfo.value.code == "snapshot_manifest_invalid"


def test_decode_rejects_missing_fields_and_non_maps() -> None:
    manifest, _, _ = small_snapshot(30)
    for name in manifest_fields(manifest):
        fields = manifest_fields(manifest)
        del fields[name]
        with pytest.raises(InvalidManifestError):
            decode_manifest(encoding.encode(fields))
    for value in ([1, 2], 5, None, b"bytes"):
        with pytest.raises(InvalidManifestError):
            decode_manifest(encoding.encode(value))


def test_decode_rejects_too_many_chunks() -> None:
    count = limits.SNAPSHOT_CHUNKS_MAX + 1
    fields = {
        "version": 1,
        "height": 1,
        "checkpoint_id": CHECKPOINT_ID,
        "state_root": STATE_ROOT,
        "chunk_count": count,
        "chunk_hashes": b"\x00" * (32 * count),
        "total_size_bytes": count * 10,
        "record_count": count,
    }
    encoded = encoding.encode(fields)
    with pytest.raises(SnapshotLimitExceededError) as excinfo:
        decode_manifest(encoded)
    assert excinfo.value.code == "snapshot_limit_exceeded"
    fields["chunk_count"] = limits.SNAPSHOT_CHUNKS_MAX
    fields["chunk_hashes"] = b"\x00" * (32 * limits.SNAPSHOT_CHUNKS_MAX)
    assert decode_manifest(encoding.encode(fields)).chunk_count == limits.SNAPSHOT_CHUNKS_MAX


def test_decode_rejects_oversized_and_non_canonical_input() -> None:
    with pytest.raises(SnapshotLimitExceededError):
        decode_manifest(b"\x00" * (snapshot.MANIFEST_SIZE_BYTES_MAX + 1))
    manifest, _, _ = small_snapshot(30)
    encoded = encode_manifest(manifest)
    with pytest.raises(InvalidManifestError):
        decode_manifest(encoded + b"\x00")
    with pytest.raises(InvalidManifestError):
        decode_manifest("text")  # type: ignore[arg-type]


def test_decode_rejects_every_prefix_of_a_valid_manifest() -> None:
    manifest, _, _ = small_snapshot(30)
    encoded = encode_manifest(manifest)
    for end in range(len(encoded)):
        with pytest.raises(RemoteProtocolError):
            decode_manifest(encoded[:end])


@settings(max_examples=1000)
@given(st.binary(max_size=400))
def test_decode_fuzz_any_bytes_parse_or_raise_remote_error(data: bytes) -> None:
    try:
        manifest = decode_manifest(data)
    except RemoteProtocolError:
        return
    assert encode_manifest(manifest) == data


VALID_ENCODED = encode_manifest(small_snapshot(40)[0])


@settings(max_examples=1000)
@given(st.data())
def test_decode_fuzz_mutated_valid_manifests(data: st.DataObject) -> None:
    mutated = bytearray(VALID_ENCODED)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    try:
        manifest = decode_manifest(bytes(mutated))
    except RemoteProtocolError:
        return
    assert encode_manifest(manifest) == bytes(mutated)


# --- diffing ---------------------------------------------------------------------------------


def test_diff_of_identical_manifests_is_empty() -> None:
    manifest, _, _ = small_snapshot()
    diff = diff_manifests(manifest, manifest)
    assert diff.same_state_root
    assert diff.changed_indices == diff.added_indices == diff.removed_indices == ()
    assert diff.new_chunk_indices == ()
    assert diff.reused_chunk_count == manifest.chunk_count


def test_diff_after_one_record_changes_or_is_inserted_is_local() -> None:
    records = records_for(3000)
    before, _ = build_manifest(1, CHECKPOINT_ID, STATE_ROOT, records, chunk_size_bytes_max=4096)
    changed = list(records)
    changed[1500] = encoding.encode({"key": b"k" * 32, "balance": 1})
    other_root = hashlib.sha256(b"other").digest()
    after, _ = build_manifest(2, CHECKPOINT_ID, other_root, changed, chunk_size_bytes_max=4096)
    diff = diff_manifests(before, after)
    assert not diff.same_state_root
    assert 1 <= len(diff.new_chunk_indices) <= 3
    assert diff.reused_chunk_count >= after.chunk_count - 3
    inserted = [*records[:1000], encoding.encode({"key": b"n" * 32}), *records[1000:]]
    after_insert, _ = build_manifest(
        2, CHECKPOINT_ID, other_root, inserted, chunk_size_bytes_max=4096
    )
    diff = diff_manifests(before, after_insert)
    assert 1 <= len(diff.new_chunk_indices) <= 3


SMALL = {"chunk_size_bytes_max": 512}


def test_diff_reports_added_and_removed_positions() -> None:
    short, _ = build_manifest(
        1, CHECKPOINT_ID, STATE_ROOT, records_for(100), chunk_size_bytes_max=512
    )
    long, _ = build_manifest(
        1, CHECKPOINT_ID, STATE_ROOT, records_for(300), chunk_size_bytes_max=512
    )
    grow = diff_manifests(short, long)
    assert grow.added_indices == tuple(range(short.chunk_count, long.chunk_count))
    assert grow.removed_indices == ()
    shrink = diff_manifests(long, short)
    assert shrink.removed_indices == grow.added_indices
    assert shrink.added_indices == ()
    assert set(shrink.changed_indices) <= set(range(short.chunk_count))


# --- the fetcher -----------------------------------------------------------------------------

GOOD, CORRUPT, SILENT, MISSING, TRUNCATED = "good", "corrupt", "silent", "missing", "truncated"


@dataclass
class Swarm:
    """In-test peers serving chunks from a dict, wired to one fetcher over virtual time."""

    fetcher: SnapshotFetcher
    chunks: dict[int, bytes]
    behaviours: dict[bytes, str]
    latency_s: float = 0.05
    now: float = 0.0
    events: list[FetchEvent] = field(default_factory=list)
    requests: list[tuple[bytes, int]] = field(default_factory=list)
    _deliveries: list[tuple[float, int, bytes, int]] = field(default_factory=list)
    _sequence: int = 0

    def run(self, steps_max: int = 100_000) -> FetchEvent:
        for _ in range(steps_max):
            self._collect()
            timer = self.fetcher.get_timer()
            if self._deliveries and (timer is None or self._deliveries[0][0] <= timer):
                self.now, _, peer, index = heapq.heappop(self._deliveries)
                self._deliver(peer, index)
            elif timer is not None:
                self.now = max(self.now, timer)
                self.fetcher.handle_timer(self.now)
            else:
                break
        self._collect()
        final = [e for e in self.events if isinstance(e, (FetchCompleted, FetchFailed))]
        assert len(final) == 1, final
        assert self.fetcher.finished and self.fetcher.get_timer() is None
        return final[0]

    def _collect(self) -> None:
        for peer, index in self.fetcher.requests_to_send():
            self.requests.append((peer, index))
            if self.behaviours[peer] != SILENT:
                self._sequence += 1
                heapq.heappush(
                    self._deliveries, (self.now + self.latency_s, self._sequence, peer, index)
                )
        while (event := self.fetcher.next_event()) is not None:
            self.events.append(event)
        for peer, behaviour in self.behaviours.items():
            if behaviour == GOOD:
                pending = sum(1 for d in self._deliveries if d[2] == peer)
                assert pending <= INFLIGHT

    def _deliver(self, peer: bytes, index: int) -> None:
        behaviour = self.behaviours[peer]
        data = self.chunks[index]
        if behaviour == MISSING:
            self.fetcher.receive_failure(peer, index, self.now)
            return
        if behaviour == CORRUPT:
            data = bytes([data[0] ^ 1]) + data[1:]
        elif behaviour == TRUNCATED:
            data = data[:-1]
        self.fetcher.receive_chunk(peer, index, data, self.now)


INFLIGHT = 4
TIMEOUT_S = 1.0


def make_swarm(behaviours: list[str], seed: int = 1, count: int = 300) -> tuple[Swarm, list[bytes]]:
    manifest, chunks, _ = small_snapshot(count)
    peers = {f"peer-{n}".encode(): behaviour for n, behaviour in enumerate(behaviours)}
    fetcher = SnapshotFetcher(
        manifest,
        list(peers),
        now=0.0,
        rng=random.Random(seed),
        per_peer_inflight_max=INFLIGHT,
        request_timeout_s=TIMEOUT_S,
    )
    return Swarm(fetcher, dict(enumerate(chunks)), peers), chunks


def test_fetch_completes_despite_a_corrupt_and_a_silent_peer() -> None:
    swarm, chunks = make_swarm([CORRUPT, SILENT, GOOD])
    final = swarm.run()
    assert isinstance(final, FetchCompleted)
    assert list(final.chunks) == chunks
    verified = [e for e in swarm.events if isinstance(e, ChunkVerified)]
    assert sorted(e.index for e in verified) == list(range(len(chunks)))
    assert {e.peer for e in verified} == {b"peer-2"}
    rejected = [e for e in swarm.events if isinstance(e, ChunkRejected)]
    assert len(rejected) == 1 and rejected[0].peer == b"peer-0"
    assert rejected[0].reason == "snapshot_chunk_hash_mismatch"
    dropped = {e.peer: e.reason for e in swarm.events if isinstance(e, PeerDropped)}
    assert dropped == {b"peer-0": "bad_chunk", b"peer-1": "timeouts"}
    timed_out = [e for e in swarm.events if isinstance(e, ChunkRequestTimedOut)]
    assert timed_out and all(e.peer == b"peer-1" for e in timed_out)
    # A penalised peer is asked nothing after its bad chunk: only the first batch, sent before
    # any reply, ever went to it.
    to_corrupt = [i for i, (peer, _) in enumerate(swarm.requests) if peer == b"peer-0"]
    assert len(to_corrupt) == INFLIGHT and max(to_corrupt) < 3 * INFLIGHT
    assert swarm.fetcher.peers == [b"peer-2"]


def test_fetch_is_deterministic_given_the_seed() -> None:
    runs = []
    for _ in range(2):
        swarm, _ = make_swarm([GOOD, CORRUPT, SILENT, GOOD, MISSING], seed=42)
        swarm.run()
        runs.append((swarm.requests, swarm.events, swarm.now))
    assert runs[0] == runs[1]


def test_fetch_uses_all_good_peers_in_parallel() -> None:
    swarm, chunks = make_swarm([GOOD, GOOD, GOOD])
    final = swarm.run()
    assert isinstance(final, FetchCompleted) and list(final.chunks) == chunks
    serving = {e.peer for e in swarm.events if isinstance(e, ChunkVerified)}
    assert serving == {b"peer-0", b"peer-1", b"peer-2"}
    # 3 peers x 4 requests in flight: the fetch takes about chunks / 12 round trips.
    assert swarm.now <= (len(chunks) / 12 + 2) * swarm.latency_s


def test_all_bad_peers_fail_the_fetch() -> None:
    swarm, _ = make_swarm([CORRUPT, SILENT, TRUNCATED])
    final = swarm.run()
    assert isinstance(final, FetchFailed)
    assert "no peers left" in final.reason
    assert not any(isinstance(e, ChunkVerified) for e in swarm.events)


def test_peers_that_lack_chunks_fail_after_bounded_passes() -> None:
    swarm, _ = make_swarm([MISSING, MISSING])
    final = swarm.run()
    assert isinstance(final, FetchFailed)
    assert f"{snapshot.FETCH_CHUNK_PASSES_MAX} times" in final.reason
    failed_index = int(final.reason.split()[1])
    asked = [r for r in swarm.requests if r[1] == failed_index]
    assert len(asked) == 2 * snapshot.FETCH_CHUNK_PASSES_MAX
    for index in range(len(swarm.chunks)):
        assert sum(1 for r in swarm.requests if r[1] == index) <= len(asked)


def test_missing_chunks_are_fetched_from_another_peer() -> None:
    swarm, chunks = make_swarm([MISSING, GOOD, MISSING])
    final = swarm.run()
    assert isinstance(final, FetchCompleted) and list(final.chunks) == chunks


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from([GOOD, CORRUPT, SILENT, MISSING, TRUNCATED]), min_size=1, max_size=6),
    st.integers(0, 2**32),
)
def test_fetch_completes_iff_some_peer_is_good(behaviours: list[str], seed: int) -> None:
    swarm, chunks = make_swarm(behaviours, seed=seed, count=120)
    final = swarm.run()
    if GOOD in behaviours:
        assert isinstance(final, FetchCompleted) and list(final.chunks) == chunks
    else:
        assert isinstance(final, FetchFailed)
    bad_peers = {p for p, b in swarm.behaviours.items() if b in (CORRUPT, TRUNCATED)}
    assert not any(isinstance(e, ChunkVerified) and e.peer in bad_peers for e in swarm.events)


def test_late_reply_to_a_timed_out_request_is_used() -> None:
    manifest, chunks, _ = small_snapshot(5)
    fetcher = SnapshotFetcher(manifest, [b"slow"], 0.0, random.Random(1), 1, TIMEOUT_S)
    assert fetcher.requests_to_send() == [(b"slow", 0)]
    fetcher.add_peer(b"fast", 0.0)
    assert fetcher.requests_to_send() == [(b"fast", 1)]
    assert fetcher.get_timer() == TIMEOUT_S
    fetcher.handle_timer(TIMEOUT_S)
    # Both requests timed out; each chunk moves to the other peer.
    assert sorted(fetcher.requests_to_send()) == [(b"fast", 0), (b"slow", 1)]
    fetcher.receive_chunk(b"slow", 0, chunks[0], 1.2)  # the late reply to the first request
    events = drain(fetcher)
    assert ChunkRequestTimedOut(b"slow", 0) in events
    assert ChunkVerified(b"slow", 0, chunks[0]) in events
    fetcher.receive_chunk(b"fast", 0, chunks[0], 1.3)  # now redundant: ignored, not penalised
    assert not any(isinstance(e, ChunkRejected) for e in drain(fetcher))
    assert fetcher.verified_count == 1 and fetcher.peers == [b"slow", b"fast"]


def drain(fetcher: SnapshotFetcher) -> list[FetchEvent]:
    events = []
    while (event := fetcher.next_event()) is not None:
        events.append(event)
    return events


def test_unsolicited_chunks_are_ignored_without_penalty() -> None:
    manifest, chunks, _ = small_snapshot(30)
    fetcher = SnapshotFetcher(manifest, [b"a"], 0.0, random.Random(1), 1, TIMEOUT_S)
    assert fetcher.requests_to_send() == [(b"a", 0)]
    fetcher.receive_chunk(b"a", 1, b"garbage", 0.1)
    fetcher.receive_chunk(b"stranger", 0, chunks[0], 0.1)
    fetcher.receive_chunk(b"a", 10**9, b"garbage", 0.1)
    fetcher.receive_failure(b"stranger", 0, 0.1)
    assert fetcher.unsolicited_chunks_ignored == 3
    assert drain(fetcher) == [] and fetcher.peers == [b"a"]


def test_removing_every_peer_fails_and_banned_peers_stay_out() -> None:
    manifest, _, _ = small_snapshot(30)
    fetcher = SnapshotFetcher(manifest, [b"a", b"b"], 0.0, random.Random(1), 2, TIMEOUT_S)
    requests = fetcher.requests_to_send()
    peer_a_index = next(index for peer, index in requests if peer == b"a")
    fetcher.receive_chunk(b"a", peer_a_index, b"bad", 0.1)
    fetcher.add_peer(b"a", 0.2)  # a penalised peer cannot come back
    assert fetcher.peers == [b"b"]
    fetcher.remove_peer(b"b", 0.3)
    events = drain(fetcher)
    assert isinstance(events[-1], FetchFailed) and events[-1].reason == "no peers left"
    assert fetcher.finished and fetcher.requests_to_send() == [] and fetcher.get_timer() is None


def test_removed_peer_requests_move_to_other_peers() -> None:
    manifest, _, _ = small_snapshot(60)
    fetcher = SnapshotFetcher(manifest, [b"a", b"b"], 0.0, random.Random(1), 2, TIMEOUT_S)
    first = fetcher.requests_to_send()
    taken_from_a = {index for peer, index in first if peer == b"a"}
    assert taken_from_a
    fetcher.remove_peer(b"a", 0.1)
    fetcher.add_peer(b"c", 0.2)
    moved = fetcher.requests_to_send()
    assert taken_from_a <= {index for _, index in moved}
    assert all(peer == b"c" for peer, _ in moved)  # b is still busy with its own two
    assert drain(fetcher) == []


def test_fetcher_limits() -> None:
    manifest, _, _ = small_snapshot(30)
    rng = random.Random(1)
    too_many = [bytes([n]) for n in range(limits.PEERS_MAX + 1)]
    with pytest.raises(LocalProtocolError):
        SnapshotFetcher(manifest, too_many, 0.0, rng, 1, TIMEOUT_S)
    with pytest.raises(LocalProtocolError):
        SnapshotFetcher(manifest, [b"a"], 0.0, rng, snapshot.FETCH_INFLIGHT_PER_PEER_MAX + 1, 1.0)
    with pytest.raises(LocalProtocolError):
        SnapshotFetcher(manifest, [b"a"], 0.0, rng, 1, 0.0)
    fetcher = SnapshotFetcher(manifest, too_many[:-1], 0.0, rng, 1, TIMEOUT_S)
    assert len(fetcher.requests_to_send()) == min(limits.PEERS_MAX, manifest.chunk_count)
    with pytest.raises(LocalProtocolError):
        fetcher.add_peer(b"one too many", 0.0)


def test_empty_manifest_completes_at_once_and_no_peers_fails_at_once() -> None:
    empty, _ = build_manifest(0, CHECKPOINT_ID, STATE_ROOT, [])
    fetcher = SnapshotFetcher(empty, [], 0.0, random.Random(1), 1, TIMEOUT_S)
    assert drain(fetcher) == [FetchCompleted(())]
    manifest, _, _ = small_snapshot(30)
    fetcher = SnapshotFetcher(manifest, [], 0.0, random.Random(1), 1, TIMEOUT_S)
    assert fetcher.requests_to_send() == []
    assert drain(fetcher) == [FetchFailed("no peers left")]


def test_manifest_whose_total_size_lies_fails_at_the_end() -> None:
    honest, chunks, _ = small_snapshot(30)
    lying = Manifest(
        honest.height,
        honest.checkpoint_id,
        honest.state_root,
        honest.chunk_hashes,
        honest.total_size_bytes + 1,
        honest.record_count,
    )
    fetcher = SnapshotFetcher(lying, [b"a"], 0.0, random.Random(1), 16, TIMEOUT_S)
    for _ in range(len(chunks)):
        for peer, index in fetcher.requests_to_send():
            fetcher.receive_chunk(peer, index, chunks[index], 0.1)
    final = drain(fetcher)[-1]
    assert isinstance(final, FetchFailed) and "total size" in final.reason


def test_published_test_vector() -> None:
    """The vector in docs/parts/state.md."""
    manifest, chunks = build_manifest(
        1,
        hashlib.sha256(b"checkpoint").digest(),
        hashlib.sha256(b"root").digest(),
        [b"one", b"two", b"three"],
    )
    assert chunks == [bytes.fromhex("000000036f6e650000000374776f000000057468726565")]
    assert manifest.manifest_id.hex() == (
        "8be1b7d441b96d3ea7e3851661b25efb18148d7247c717dd0b2bd361f5616d61"
    )


def spec_ends_chunk(record: bytes, target_size_bytes: int) -> bool:
    """The cut rule exactly as the module docstring states it."""
    cut_hash = hashlib.sha256(snapshot.CUT_TAG + record).digest()
    framed_size = snapshot.RECORD_LENGTH_PREFIX_BYTES + len(record)
    return int.from_bytes(cut_hash[:8], "big") * target_size_bytes < framed_size * 2**64


@given(
    st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=60),
    st.integers(min_value=1, max_value=limits.SNAPSHOT_CHUNK_SIZE_BYTES),
)
def test_chunk_cuts_follow_the_specified_rule(records: list[bytes], chunk_size: int) -> None:
    """build_manifest's memoized threshold comparison cuts exactly where the rule says (tiny
    chunk sizes make every record qualify, large ones almost none)."""
    records = [record for record in records if len(record) + 4 <= chunk_size]
    _, chunks = build_manifest(
        1, CHECKPOINT_ID, STATE_ROOT, records, chunk_size_bytes_max=chunk_size
    )
    expected: list[list[bytes]] = []
    current: list[bytes] = []
    size = 0
    for record in records:
        framed = 4 + len(record)
        if size + framed > chunk_size:
            expected.append(current)
            current, size = [], 0
        current.append(record)
        size += framed
        if spec_ends_chunk(record, chunk_size // 2):
            expected.append(current)
            current, size = [], 0
    if current:
        expected.append(current)
    assert [split_chunk(chunk) for chunk in chunks] == expected
