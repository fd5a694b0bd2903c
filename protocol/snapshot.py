"""The snapshot catalog for state sync: manifests, chunks ("recovery fragments") and a fetcher.

A snapshot of the state at a final checkpoint is the sequence of its encoded state records in
canonical key order. The records are packed into chunks, and a manifest lists the sha256 of
every chunk, so a node can fetch chunks from several peers at once and check each one as it
arrives; the rebuilt state root must finally equal the checkpoint's root (hash parity), which is
what makes the whole snapshot trustworthy. docs/parts/state.md specifies the formats.

Chunk format: the concatenation of its records, each prefixed by its length as a 4-byte
big-endian unsigned integer. Records are never split and never empty.

Chunk boundaries are content-defined, so that two snapshots of similar states share most of
their chunks and `diff_manifests` finds the few that changed (an insertion does not shift every
later boundary). A chunk ends after a record r when

    int.from_bytes(sha256(CUT_TAG || r)[0:8], "big") * CHUNK_TARGET_SIZE_BYTES < len4(r) * 2**64

where len4(r) = 4 + len(r): each record ends a chunk with probability proportional to its size,
so chunks average about CHUNK_TARGET_SIZE_BYTES. A chunk also ends before a record that would
take it over `limits.SNAPSHOT_CHUNK_SIZE_BYTES`. The cut rule of a record does not depend on its
position, so after any change the boundaries realign at the next content-defined cut.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import encoding, limits
from .codes import RejectCode
from .errors import (
    LimitExceededError,
    LocalProtocolError,
    RemoteProtocolError,
)

MANIFEST_VERSION = 1
RECORD_LENGTH_PREFIX_BYTES = 4
#: Chunks average half the maximum size: with cut probability proportional to record size the
#: chunk size is roughly exponential, so e**-2 (~14%) of chunks are cut by the maximum instead.
CHUNK_TARGET_SIZE_BYTES = limits.SNAPSHOT_CHUNK_SIZE_BYTES // 2
#: Domain tag of the content-defined cut hash, so it is unrelated to any other hash of a record.
CUT_TAG = b"swarmd-snapshot-cut"
#: Snapshot heights are checkpoint heights: below 2**63 for the 64-bit reason of limits.SEQ_MAX.
HEIGHT_MAX = 2**63 - 1
#: A manifest is its chunk hashes (32 bytes each, at most SNAPSHOT_CHUNKS_MAX = 2 MiB) plus a
#: few fixed fields; it is bigger than ENCODED_VALUE_SIZE_BYTES_MAX and is sent fragmented.
MANIFEST_SIZE_BYTES_MAX = limits.SNAPSHOT_CHUNKS_MAX * limits.HASH_SIZE_BYTES + 1024
FETCH_INFLIGHT_PER_PEER_MAX = limits.FETCH_INFLIGHT_PER_PEER_MAX  # why: see limits.py
FETCH_PEER_TIMEOUTS_MAX = limits.FETCH_PEER_TIMEOUTS_MAX  # why: see limits.py
FETCH_CHUNK_PASSES_MAX = limits.FETCH_CHUNK_PASSES_MAX  # why: see limits.py
FETCH_BANNED_PEERS_MAX = limits.FETCH_BANNED_PEERS_MAX  # why: see limits.py

assert MANIFEST_SIZE_BYTES_MAX <= limits.FRAGMENTS_PER_MESSAGE_MAX * limits.FRAME_SIZE_BYTES_MAX
assert limits.SNAPSHOT_CHUNK_SIZE_BYTES < 2 ** (8 * RECORD_LENGTH_PREFIX_BYTES)


# --- errors ----------------------------------------------------------------------------------


class InvalidManifestError(RemoteProtocolError):
    """Manifest bytes that do not decode to a well-formed manifest."""

    code: str = RejectCode.SNAPSHOT_MANIFEST_INVALID


class SnapshotLimitExceededError(LimitExceededError):
    """A manifest or chunk over a snapshot limit (chunk count, sizes)."""

    code: str = RejectCode.SNAPSHOT_LIMIT_EXCEEDED


class ChunkIndexError(RemoteProtocolError):
    """A chunk index outside the manifest."""

    code: str = RejectCode.SNAPSHOT_CHUNK_INDEX_INVALID


class ChunkHashMismatchError(RemoteProtocolError):
    """Chunk bytes whose sha256 is not the one the manifest lists."""

    code: str = RejectCode.SNAPSHOT_CHUNK_HASH_MISMATCH


class MalformedChunkError(RemoteProtocolError):
    """Chunk bytes that are not a sequence of length-prefixed, non-empty records."""

    code: str = RejectCode.SNAPSHOT_CHUNK_MALFORMED


class RecordTooLargeError(LocalProtocolError):
    """A state record that cannot fit in one chunk (records are never split)."""

    code: str = RejectCode.SNAPSHOT_RECORD_TOO_LARGE


class SnapshotTooLargeError(LocalProtocolError):
    """A state that needs more than the allowed number of chunks."""

    code: str = RejectCode.SNAPSHOT_TOO_LARGE


# --- manifest --------------------------------------------------------------------------------

_MANIFEST_KEYS = frozenset(
    {
        "version",
        "height",
        "checkpoint_id",
        "state_root",
        "chunk_count",
        "chunk_hashes",
        "total_size_bytes",
        "record_count",
    }
)


@dataclass(frozen=True)
class Manifest:
    """One catalog entry: what a snapshot at `height` holds and the hash of every chunk."""

    height: int
    checkpoint_id: bytes
    state_root: bytes
    chunk_hashes: tuple[bytes, ...]
    total_size_bytes: int
    record_count: int

    @property
    def chunk_count(self) -> int:
        return len(self.chunk_hashes)

    @functools.cached_property
    def encoded(self) -> bytes:
        return encode_manifest(self)

    @functools.cached_property
    def manifest_id(self) -> bytes:
        """sha256 of the canonical encoding: the stable name of this catalog entry."""
        return hashlib.sha256(self.encoded).digest()


def encode_manifest(manifest: Manifest) -> bytes:
    return encoding.encode(
        {
            "version": MANIFEST_VERSION,
            "height": manifest.height,
            "checkpoint_id": manifest.checkpoint_id,
            "state_root": manifest.state_root,
            "chunk_count": manifest.chunk_count,
            "chunk_hashes": b"".join(manifest.chunk_hashes),
            "total_size_bytes": manifest.total_size_bytes,
            "record_count": manifest.record_count,
        }
    )


def decode_manifest(data: bytes) -> Manifest:
    """Decode and check a manifest; any bad input raises a RemoteProtocolError subclass."""
    try:
        value = encoding.decode(data, size_max=MANIFEST_SIZE_BYTES_MAX)
    except LimitExceededError as exc:
        raise SnapshotLimitExceededError(f"manifest: {exc.message}") from exc
    except RemoteProtocolError as exc:
        raise InvalidManifestError(f"manifest: {exc.message}") from exc
    if not isinstance(value, dict) or set(value) != _MANIFEST_KEYS:
        raise InvalidManifestError("manifest must be a map with exactly the manifest fields")
    if value["version"] != MANIFEST_VERSION or isinstance(value["version"], bool):
        raise InvalidManifestError(f"unsupported manifest version {value['version']!r}")
    height = _int_field(value, "height", HEIGHT_MAX)
    checkpoint_id = _hash_field(value, "checkpoint_id")
    state_root = _hash_field(value, "state_root")
    chunk_count = _int_field(value, "chunk_count", 2**64 - 1)
    if chunk_count > limits.SNAPSHOT_CHUNKS_MAX:
        raise SnapshotLimitExceededError(
            f"manifest lists {chunk_count} chunks, more than {limits.SNAPSHOT_CHUNKS_MAX}"
        )
    joined = value["chunk_hashes"]
    if not isinstance(joined, bytes) or len(joined) != chunk_count * limits.HASH_SIZE_BYTES:
        raise InvalidManifestError("chunk_hashes must hold exactly chunk_count 32-byte hashes")
    total_size_bytes = _int_field(value, "total_size_bytes", 2**64 - 1)
    record_count = _int_field(value, "record_count", 2**64 - 1)
    _check_totals(chunk_count, total_size_bytes, record_count)
    size = limits.HASH_SIZE_BYTES
    chunk_hashes = tuple(joined[i : i + size] for i in range(0, len(joined), size))
    return Manifest(height, checkpoint_id, state_root, chunk_hashes, total_size_bytes, record_count)


def _int_field(value: dict[str, Any], name: str, maximum: int) -> int:
    number = value[name]
    if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= maximum:
        raise InvalidManifestError(f"{name} must be an integer in 0..{maximum}")
    return number


def _hash_field(value: dict[str, Any], name: str) -> bytes:
    digest = value[name]
    if not isinstance(digest, bytes) or len(digest) != limits.HASH_SIZE_BYTES:
        raise InvalidManifestError(f"{name} must be {limits.HASH_SIZE_BYTES} bytes")
    return digest


def _check_totals(chunk_count: int, total_size_bytes: int, record_count: int) -> None:
    """Totals every honest manifest satisfies: chunks are non-empty and within the size limit."""
    smallest_record = RECORD_LENGTH_PREFIX_BYTES + 1
    if total_size_bytes > chunk_count * limits.SNAPSHOT_CHUNK_SIZE_BYTES:
        raise InvalidManifestError("total_size_bytes exceeds chunk_count full chunks")
    if not chunk_count <= record_count <= total_size_bytes // smallest_record:
        raise InvalidManifestError("record_count does not fit chunk_count and total_size_bytes")


# --- building and reading chunks -------------------------------------------------------------


def build_manifest(
    height: int,
    checkpoint_id: bytes,
    state_root: bytes,
    records: Iterable[bytes],
    *,
    chunk_size_bytes_max: int = limits.SNAPSHOT_CHUNK_SIZE_BYTES,
    chunks_max: int = limits.SNAPSHOT_CHUNKS_MAX,
) -> tuple[Manifest, list[bytes]]:
    """Pack encoded `records` (in canonical key order) into chunks and describe them.

    The keyword limits exist so that tests can reach them; they may only be lowered.
    """
    if not 0 < chunk_size_bytes_max <= limits.SNAPSHOT_CHUNK_SIZE_BYTES:
        raise LocalProtocolError("chunk_size_bytes_max must be in 1..SNAPSHOT_CHUNK_SIZE_BYTES")
    if not 0 <= chunks_max <= limits.SNAPSHOT_CHUNKS_MAX:
        raise LocalProtocolError("chunks_max must be in 0..SNAPSHOT_CHUNKS_MAX")
    if not 0 <= height <= HEIGHT_MAX or len(checkpoint_id) != 32 or len(state_root) != 32:
        raise LocalProtocolError("bad height, checkpoint_id or state_root")
    target = chunk_size_bytes_max // 2
    # Hot loop (once per record of the whole state): the cut hash continues a copy of a hasher
    # fed CUT_TAG, and the cut rule is compared through `_cut_threshold`, memoized per record
    # size, instead of multiplying big ints for every record.
    cut_hasher = hashlib.sha256(CUT_TAG)
    thresholds: dict[int, bytes | None] = {}
    chunks: list[bytes] = []
    parts: list[bytes] = []
    size = 0
    record_count = 0
    for record in records:
        if not isinstance(record, bytes) or not record:
            raise LocalProtocolError("snapshot records are non-empty bytes")
        framed_size = RECORD_LENGTH_PREFIX_BYTES + len(record)
        if framed_size > chunk_size_bytes_max:
            raise RecordTooLargeError(f"a record of {len(record)} bytes does not fit a chunk")
        if size + framed_size > chunk_size_bytes_max:
            _close_chunk(chunks, parts, chunks_max)
            size = 0
        parts.append(len(record).to_bytes(RECORD_LENGTH_PREFIX_BYTES, "big"))
        parts.append(record)
        size += framed_size
        record_count += 1
        if framed_size in thresholds:
            threshold = thresholds[framed_size]
        else:
            threshold = thresholds[framed_size] = _cut_threshold(framed_size, target)
        if threshold is None:
            ends = True
        else:
            cut_hash = cut_hasher.copy()
            cut_hash.update(record)
            ends = cut_hash.digest()[:8] < threshold
        if ends:
            _close_chunk(chunks, parts, chunks_max)
            size = 0
    if parts:
        _close_chunk(chunks, parts, chunks_max)
    manifest = Manifest(
        height=height,
        checkpoint_id=checkpoint_id,
        state_root=state_root,
        chunk_hashes=tuple(hashlib.sha256(chunk).digest() for chunk in chunks),
        total_size_bytes=sum(len(chunk) for chunk in chunks),
        record_count=record_count,
    )
    return manifest, chunks


def _cut_threshold(framed_size: int, target_size_bytes: int) -> bytes | None:
    """The cut rule x * target < framed_size * 2**64 (x the cut hash's first 8 bytes as a
    big-endian int) as x < ceil(framed_size * 2**64 / target), compared as 8 big-endian bytes;
    None when every x qualifies (the threshold is 2**64 or more)."""
    threshold = -(-(framed_size << 64) // target_size_bytes)
    return threshold.to_bytes(8, "big") if threshold < 2**64 else None


def _close_chunk(chunks: list[bytes], parts: list[bytes], chunks_max: int) -> None:
    if len(chunks) >= chunks_max:
        raise SnapshotTooLargeError(f"the state needs more than {chunks_max} chunks")
    chunks.append(b"".join(parts))
    parts.clear()


def verify_chunk(manifest: Manifest, index: int, data: bytes) -> None:
    """Raise a RemoteProtocolError subclass unless `data` is chunk `index` of `manifest`."""
    if not isinstance(index, int) or isinstance(index, bool):
        raise ChunkIndexError("chunk index must be an integer")
    if not 0 <= index < manifest.chunk_count:
        raise ChunkIndexError(f"chunk index {index} outside 0..{manifest.chunk_count - 1}")
    if not isinstance(data, bytes):
        raise MalformedChunkError("chunk data must be bytes")
    if len(data) > limits.SNAPSHOT_CHUNK_SIZE_BYTES:
        raise SnapshotLimitExceededError(f"chunk of {len(data)} bytes is over the chunk size")
    if hashlib.sha256(data).digest() != manifest.chunk_hashes[index]:
        raise ChunkHashMismatchError(f"chunk {index} does not match the manifest hash")


def split_chunk(data: bytes) -> list[bytes]:
    """The records of a chunk, in order. Raises a RemoteProtocolError subclass on bad bytes."""
    if not isinstance(data, bytes):
        raise MalformedChunkError("chunk data must be bytes")
    if len(data) > limits.SNAPSHOT_CHUNK_SIZE_BYTES:
        raise SnapshotLimitExceededError(f"chunk of {len(data)} bytes is over the chunk size")
    records = []
    offset = 0
    # Every record takes at least 5 bytes, so this loop runs at most len(data) / 5 times.
    while offset < len(data):
        header_end = offset + RECORD_LENGTH_PREFIX_BYTES
        if header_end > len(data):
            raise MalformedChunkError("chunk ends inside a record length")
        length = int.from_bytes(data[offset:header_end], "big")
        if length == 0 or header_end + length > len(data):
            raise MalformedChunkError("record length is zero or runs past the chunk")
        records.append(data[header_end : header_end + length])
        offset = header_end + length
    return records


# --- the stored form ---------------------------------------------------------------------------
# A node stores its snapshot as one blob beside the checkpoint (storage's state_snapshots):
# the manifest's canonical bytes, then every chunk, each prefixed by its length as a 4-byte
# big-endian unsigned integer. Reading it back checks every chunk against the manifest.

BLOB_LENGTH_PREFIX_BYTES = 4


class MalformedSnapshotBlobError(RemoteProtocolError):
    """A stored snapshot blob that is not a manifest followed by its chunks."""

    code: str = RejectCode.MALFORMED_SNAPSHOT_BLOB


def encode_blob(manifest: Manifest, chunks: list[bytes]) -> bytes:
    if len(chunks) != manifest.chunk_count:
        raise LocalProtocolError("a snapshot blob needs exactly the manifest's chunks")
    parts = [len(manifest.encoded).to_bytes(BLOB_LENGTH_PREFIX_BYTES, "big"), manifest.encoded]
    for chunk in chunks:
        parts.append(len(chunk).to_bytes(BLOB_LENGTH_PREFIX_BYTES, "big"))
        parts.append(chunk)
    return b"".join(parts)


def decode_blob(blob: bytes) -> tuple[Manifest, list[bytes]]:
    """The manifest and chunks of a stored blob, every chunk checked against the manifest.

    Raises a RemoteProtocolError subclass (MalformedSnapshotBlobError, InvalidManifestError,
    ChunkHashMismatchError, ...) on any bad byte: a stored file may be corrupt.
    """
    if not isinstance(blob, bytes):
        raise MalformedSnapshotBlobError("snapshot blob must be bytes")
    view = memoryview(blob)
    offset = 0

    def take() -> bytes:
        nonlocal offset
        header_end = offset + BLOB_LENGTH_PREFIX_BYTES
        if header_end > len(view):
            raise MalformedSnapshotBlobError("snapshot blob ends inside a length")
        length = int.from_bytes(view[offset:header_end], "big")
        if header_end + length > len(view):
            raise MalformedSnapshotBlobError("a part runs past the end of the snapshot blob")
        offset = header_end + length
        return bytes(view[header_end:offset])

    manifest_bytes = take()
    if len(manifest_bytes) > MANIFEST_SIZE_BYTES_MAX:
        raise SnapshotLimitExceededError("manifest in the snapshot blob is over its size limit")
    manifest = decode_manifest(manifest_bytes)
    chunks = []
    for index in range(manifest.chunk_count):
        chunk = take()
        verify_chunk(manifest, index, chunk)
        chunks.append(chunk)
    if offset != len(view):
        raise MalformedSnapshotBlobError("trailing bytes after the last chunk")
    return manifest, chunks


# --- diffing catalog entries -----------------------------------------------------------------


@dataclass(frozen=True)
class ManifestDiff:
    """How two catalog entries differ.

    By position: `changed_indices` exist in both with different hashes, `added_indices` exist
    only in b, `removed_indices` only in a. By content: `new_chunk_indices` are the chunks of b
    whose hash appears nowhere in a (what a node holding a must fetch to get b), and
    `reused_chunk_count` is how many chunks of b a already has.
    """

    same_state_root: bool
    changed_indices: tuple[int, ...]
    added_indices: tuple[int, ...]
    removed_indices: tuple[int, ...]
    new_chunk_indices: tuple[int, ...]
    reused_chunk_count: int


def diff_manifests(a: Manifest, b: Manifest) -> ManifestDiff:
    common = min(a.chunk_count, b.chunk_count)
    hashes_of_a = set(a.chunk_hashes)
    new_chunk_indices = tuple(
        index for index, digest in enumerate(b.chunk_hashes) if digest not in hashes_of_a
    )
    return ManifestDiff(
        same_state_root=a.state_root == b.state_root,
        changed_indices=tuple(
            index for index in range(common) if a.chunk_hashes[index] != b.chunk_hashes[index]
        ),
        added_indices=tuple(range(common, b.chunk_count)),
        removed_indices=tuple(range(common, a.chunk_count)),
        new_chunk_indices=new_chunk_indices,
        reused_chunk_count=b.chunk_count - len(new_chunk_indices),
    )


# --- the fetcher -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkVerified:
    peer: bytes
    index: int
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class ChunkRejected:
    """`peer` sent bytes that are not chunk `index`; it is dropped and never asked again."""

    peer: bytes
    index: int
    reason: str


@dataclass(frozen=True)
class ChunkRequestTimedOut:
    peer: bytes
    index: int


@dataclass(frozen=True)
class PeerDropped:
    """`peer` is out of this fetch (`reason` is "bad_chunk" or "timeouts")."""

    peer: bytes
    reason: str


@dataclass(frozen=True)
class FetchCompleted:
    chunks: tuple[bytes, ...] = field(repr=False)


@dataclass(frozen=True)
class FetchFailed:
    reason: str


FetchEvent = (
    ChunkVerified
    | ChunkRejected
    | ChunkRequestTimedOut
    | PeerDropped
    | FetchCompleted
    | FetchFailed
)


@dataclass
class _PeerState:
    inflight: set[int] = field(default_factory=set)
    consecutive_timeouts: int = 0


class SnapshotFetcher:
    """Fetches every chunk of one manifest from several peers in parallel (sans-I/O).

    Inputs: `receive_chunk`, `receive_failure` (the peer says it cannot serve the chunk),
    `handle_timer`, `add_peer`, `remove_peer`, each with the current time. Outputs:
    `requests_to_send()` (pairs of peer and chunk index to ask for), `next_event()` and
    `get_timer()`. Each chunk is asked of one peer at a time; the least-loaded peer is chosen,
    ties broken by the injected `rng`, so a run is deterministic given its inputs and seed.

    A peer that sends a chunk that fails verification is dropped and never asked again. A
    request that times out goes to another peer, and a peer that times out
    FETCH_PEER_TIMEOUTS_MAX times in a row is dropped. A late reply to a timed-out request is
    still used. Each chunk is tried on every peer (a pass) at most FETCH_CHUNK_PASSES_MAX
    times. The fetch fails when no peer is left or a chunk runs out of passes.

    The verified chunks are held in memory until FetchCompleted hands them over in order
    (ChunkVerified carries each one too, so a shell can stream them to disk instead).
    """

    def __init__(
        self,
        manifest: Manifest,
        peers: list[bytes],
        now: float,
        rng: random.Random,
        per_peer_inflight_max: int = FETCH_INFLIGHT_PER_PEER_MAX,
        request_timeout_s: float = 10.0,
    ) -> None:
        if not 1 <= per_peer_inflight_max <= FETCH_INFLIGHT_PER_PEER_MAX:
            raise LocalProtocolError("per_peer_inflight_max must be in 1..16")
        if not request_timeout_s > 0:
            raise LocalProtocolError("request_timeout_s must be positive")
        unique_peers = list(dict.fromkeys(peers))
        if len(unique_peers) > limits.PEERS_MAX:
            raise LocalProtocolError(f"at most {limits.PEERS_MAX} peers")
        self._manifest = manifest
        self._rng = rng
        self._inflight_max = per_peer_inflight_max
        self._timeout_s = request_timeout_s
        self._chunks: list[bytes | None] = [None] * manifest.chunk_count
        self._verified_count = 0
        self._peers: dict[bytes, _PeerState] = {peer: _PeerState() for peer in unique_peers}
        # Requests sent and not yet answered, per peer (timed-out ones included, so that a late
        # reply is recognised as solicited). Unsolicited chunks are ignored without hashing.
        self._asked: dict[bytes, set[int]] = {peer: set() for peer in unique_peers}
        self._banned: dict[bytes, None] = {}
        self._inflight: dict[int, tuple[bytes, float]] = {}
        self._queue: collections.deque[int] = collections.deque(range(manifest.chunk_count))
        self._queued: set[int] = set(self._queue)
        self._excluded: dict[int, set[bytes]] = {}
        self._passes: dict[int, int] = {}
        self._outbox: list[tuple[bytes, int]] = []
        self._events: collections.deque[FetchEvent] = collections.deque()
        self._finished = False
        self.unsolicited_chunks_ignored = 0
        if manifest.chunk_count == 0:
            self._finish_completed()
        elif not self._peers:
            self._finish_failed("no peers left")
        self._schedule(now)

    # --- outputs ---

    def requests_to_send(self) -> list[tuple[bytes, int]]:
        requests, self._outbox = self._outbox, []
        return requests

    def next_event(self) -> FetchEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        if self._finished or not self._inflight:
            return None
        return min(deadline for _, deadline in self._inflight.values())

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def verified_count(self) -> int:
        return self._verified_count

    @property
    def peers(self) -> list[bytes]:
        return list(self._peers)

    # --- inputs ---

    def receive_chunk(self, peer: bytes, index: int, data: bytes, now: float) -> None:
        asked = self._asked.get(peer)
        if self._finished or asked is None or index not in asked:
            self.unsolicited_chunks_ignored += 1
            return
        asked.discard(index)
        self._release(peer, index)
        if self._chunks[index] is not None:
            return  # another peer delivered it first
        try:
            verify_chunk(self._manifest, index, data)
        except RemoteProtocolError as exc:
            self._events.append(ChunkRejected(peer, index, exc.code))
            self._drop_peer(peer, "bad_chunk")
            self._requeue(index)
        else:
            self._accept(peer, index, data)
        self._schedule(now)

    def receive_failure(self, peer: bytes, index: int, now: float) -> None:
        asked = self._asked.get(peer)
        if self._finished or asked is None or index not in asked:
            return
        asked.discard(index)
        self._release(peer, index)
        self._excluded.setdefault(index, set()).add(peer)
        self._requeue(index)
        self._schedule(now)

    def handle_timer(self, now: float) -> None:
        if self._finished:
            return
        expired = [
            (index, peer) for index, (peer, deadline) in self._inflight.items() if deadline <= now
        ]
        for index, peer in expired:
            if self._finished or peer not in self._peers:
                continue
            self._release(peer, index)
            self._events.append(ChunkRequestTimedOut(peer, index))
            self._excluded.setdefault(index, set()).add(peer)
            self._requeue(index)
            state = self._peers[peer]
            state.consecutive_timeouts += 1
            if state.consecutive_timeouts >= FETCH_PEER_TIMEOUTS_MAX:
                self._drop_peer(peer, "timeouts")
        self._schedule(now)

    def add_peer(self, peer: bytes, now: float) -> None:
        if self._finished or peer in self._peers or peer in self._banned:
            return
        if len(self._peers) >= limits.PEERS_MAX:
            raise LocalProtocolError(f"at most {limits.PEERS_MAX} peers")
        self._peers[peer] = _PeerState()
        self._asked[peer] = set()
        self._schedule(now)

    def remove_peer(self, peer: bytes, now: float) -> None:
        """The peer went away (not its fault): its requests go to others; it may come back."""
        state = self._peers.pop(peer, None)
        self._asked.pop(peer, None)
        if self._finished or state is None:
            return
        for index in sorted(state.inflight):
            del self._inflight[index]
            self._requeue(index)
        if not self._peers:
            self._finish_failed("no peers left")
        self._schedule(now)

    # --- internals ---

    def _accept(self, peer: bytes, index: int, data: bytes) -> None:
        self._chunks[index] = data
        self._verified_count += 1
        self._excluded.pop(index, None)
        self._passes.pop(index, None)
        self._queued.discard(index)  # a late reply can beat a re-queued request
        other = self._inflight.get(index)
        if other is not None:
            self._release(other[0], index)
        if peer in self._peers:
            self._peers[peer].consecutive_timeouts = 0
        self._events.append(ChunkVerified(peer, index, data))
        if self._verified_count == self._manifest.chunk_count:
            self._finish_completed()

    def _release(self, peer: bytes, index: int) -> None:
        """Forget the in-flight request for `index` if `peer` holds it."""
        current = self._inflight.get(index)
        if current is not None and current[0] == peer:
            del self._inflight[index]
            state = self._peers.get(peer)
            if state is not None:
                state.inflight.discard(index)

    def _requeue(self, index: int) -> None:
        if (
            self._chunks[index] is None
            and index not in self._inflight
            and index not in self._queued
        ):
            self._queue.appendleft(index)
            self._queued.add(index)

    def _drop_peer(self, peer: bytes, reason: str) -> None:
        state = self._peers.pop(peer)
        self._asked.pop(peer, None)
        self._banned[peer] = None
        if len(self._banned) > FETCH_BANNED_PEERS_MAX:
            del self._banned[next(iter(self._banned))]
        self._events.append(PeerDropped(peer, reason))
        for index in sorted(state.inflight):
            del self._inflight[index]
            self._requeue(index)
        if not self._peers:
            self._finish_failed(f"no peers left (last one dropped: {reason})")

    def _schedule(self, now: float) -> None:
        """Assign queued chunks to peers with free request slots, lowest index first."""
        if self._finished:
            return
        capacity = sum(self._inflight_max - len(s.inflight) for s in self._peers.values())
        waiting: list[int] = []
        while self._queue and capacity > 0 and not self._finished:
            index = self._queue.popleft()
            if index not in self._queued:
                continue  # verified by a late reply while queued
            peer = self._choose_peer(index)
            if peer is None:
                waiting.append(index)
                continue
            self._queued.discard(index)
            self._inflight[index] = (peer, now + self._timeout_s)
            self._peers[peer].inflight.add(index)
            self._asked[peer].add(index)
            self._outbox.append((peer, index))
            capacity -= 1
        self._queue.extendleft(reversed(waiting))

    def _choose_peer(self, index: int) -> bytes | None:
        excluded = self._excluded.get(index, set())
        if all(peer in excluded for peer in self._peers):
            passes = self._passes.get(index, 1) + 1
            if passes > FETCH_CHUNK_PASSES_MAX:
                self._finish_failed(f"chunk {index} failed on every peer {passes - 1} times")
                return None
            self._passes[index] = passes
            excluded = self._excluded[index] = set()
        candidates = [
            peer
            for peer, state in self._peers.items()
            if peer not in excluded and len(state.inflight) < self._inflight_max
        ]
        if not candidates:
            return None
        lowest = min(len(self._peers[peer].inflight) for peer in candidates)
        return self._rng.choice([p for p in candidates if len(self._peers[p].inflight) == lowest])

    def _finish_completed(self) -> None:
        chunks = tuple(chunk for chunk in self._chunks if chunk is not None)
        if sum(len(chunk) for chunk in chunks) != self._manifest.total_size_bytes:
            self._finish_failed("the verified chunks do not add up to the manifest total size")
            return
        self._finished = True
        self._outbox = []
        self._events.append(FetchCompleted(chunks))

    def _finish_failed(self, reason: str) -> None:
        self._finished = True
        self._outbox = []
        self._inflight.clear()
        self._events.append(FetchFailed(reason))
