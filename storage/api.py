"""What every store offers: the records, the limits and the `OpStore` interface.

`Store` (SQLite, storage/store.py) and `MemoryStore` (storage/memory.py) implement `OpStore`
with the same semantics, and share the argument checks below so that both raise the same
typed errors for the same misuse. The store is generic: an op envelope and a state snapshot
are opaque bytes to it; the ledger gives them meaning.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from swarmd.protocol import limits
from swarmd.protocol.node_core.observed import Observed
from swarmd.protocol.telemetry import Activity, DayRecord, Since

from .errors import StoreUsageError

# --- limits ------------------------------------------------------------------------------------

#: Ops appended by one `append_ops` call. Bounds one transaction's memory (at most
#: 10_000 x 8 KiB envelopes = 80 MiB); the group committer cuts batches far smaller.
APPEND_OPS_MAX = 10_000
#: Rows returned by one `read_log` / `read_checkpoints` call: at most 4096 x 8 KiB = 32 MiB
#: of envelopes, and large enough that one read per 4096 ops costs nothing during replay.
READ_LOG_LIMIT_MAX = 4_096
#: Ids in one `get_ops` / `mark_status` / `delete_pending` call; a sync fetch asks for at
#: most limits.FETCH_OPS_PER_REQUEST_MAX, and mark_status follows a batch.
IDS_PER_CALL_MAX = APPEND_OPS_MAX
#: A meta value is a small setting (a key, a mode, a reason), never bulk data.
META_VALUE_SIZE_BYTES_MAX = 4 * 1024
META_KEY_SIZE_BYTES_MAX = 64
#: Checkpoint bundles carry up to CUT_HEADS_MAX heads plus signatures; a snapshot blob
#: is the whole derived state. Both are bounded only to catch a caller's bug, not a peer's.
CHECKPOINT_BUNDLE_SIZE_BYTES_MAX = 64 * 1024 * 1024
SNAPSHOT_SIZE_BYTES_MAX = 1024 * 1024 * 1024
#: State snapshots kept by `put_checkpoint(..., snapshots_kept=n)`: each may be up to
#: SNAPSHOT_SIZE_BYTES_MAX, and a node restores from the newest, so a handful covers a corrupt
#: newest one (fall back to the one before) without letting the database grow unbounded.
SNAPSHOTS_KEPT_MAX = 64
SNAPSHOTS_KEPT_DEFAULT = 2
#: A stored rollback certificate: a body plus a quorum of signatures, a few KiB; bounded only
#: to catch a caller's bug (the core decoded and verified it before it is stored).
ROLLBACK_CERTIFICATE_SIZE_BYTES_MAX = 1024 * 1024
#: Op bodies pruned (and checkpoint rows deleted) by one `prune_final` call: one bounded
#: write transaction per checkpoint (1000 rows ~ a few ms), however far behind pruning is.
PRUNE_ROWS_MAX = 1_000
#: Ops in the durable pending pool: the ledger's pool bound.
PENDING_OPS_STORED_MAX = limits.PENDING_OPS_MAX

#: Meta key (store-owned): how many op_log rows `trim_expired` deleted (the gaps in seq).
META_OP_LOG_DELETED = "op_log_deleted"
#: Meta keys the store owns; `set_meta` refuses them.
META_SCHEMA_VERSION = "schema_version"
META_NETWORK_ID = "network_id"
META_NODE_KEY = "node_key"
META_MODE = "mode"
META_MODE_REASON = "mode_reason"
RESERVED_META_KEYS = frozenset(
    {
        META_SCHEMA_VERSION,
        META_NETWORK_ID,
        META_NODE_KEY,
        META_MODE,
        META_MODE_REASON,
        META_OP_LOG_DELETED,
    }
)


class OpStatus(enum.IntEnum):
    """Status of a logged op. The signed bytes never change; only this mark does."""

    APPLIED = 1
    REJECTED = 2
    #: Set by a rollback on ops after the rollback point: kept, never deleted.
    REVERTED = 3
    #: A pending op that expired or was evicted before it became valid (issue 13): kept like
    #: a reverted op, but never replayed at a restart, so junk waiting for parents that never
    #: come is not reloaded after its expiry. Logged again (APPLIED) if it comes back.
    EXPIRED = 4


class NodeMode(enum.Enum):
    NORMAL = "normal"
    #: Client writes are refused (503 with the reason); reads and sync go on.
    READ_ONLY = "read_only"
    #: No new state, no votes; only admin and council messages.
    QUIESCED = "quiesced"


# --- records -----------------------------------------------------------------------------------


class NewOp(NamedTuple):
    """An op to append. `received_at_ms` is the caller's clock (milliseconds since the epoch)
    so that the deterministic simulator controls it."""

    op_id: bytes
    author: bytes
    author_seq: int
    envelope: bytes
    status: OpStatus
    received_at_ms: int


@dataclass(frozen=True, slots=True)
class LoggedOp:
    seq: int
    op_id: bytes
    author: bytes
    author_seq: int
    envelope: bytes
    status: OpStatus
    received_at_ms: int


@dataclass(frozen=True, slots=True)
class PendingOp:
    op_id: bytes
    envelope: bytes
    received_at_ms: int


@dataclass(frozen=True, slots=True)
class Checkpoint:
    height: int
    checkpoint_id: bytes
    state_root: bytes
    bundle: bytes
    #: The op_log position the checkpoint covers: replay starts after it.
    log_seq: int


@dataclass(frozen=True, slots=True)
class RevertedCheckpoint:
    """A checkpoint a rollback moved out of the active set (kept for audit, never deleted)."""

    #: Order of reverting, from 1: the same checkpoint may be reverted more than once.
    revert_seq: int
    #: The height the rollback went back to.
    rolled_back_to: int
    checkpoint: Checkpoint


@dataclass(frozen=True, slots=True)
class StoredRollback:
    """An accepted council rollback certificate (opaque bytes to the store), by epoch."""

    #: The epoch the certificate starts (1 for the first): certificates are kept in this order.
    epoch: int
    #: The final height it went back to (checkpoints above it were moved out).
    height: int
    certificate: bytes


@dataclass(frozen=True, slots=True)
class RevertedOp:
    """An op a rollback certificate reverted: final above `height` in the epoch it ended."""

    #: Order of recording, from 1 (`read_reverted_ops` pages by it).
    seq: int
    op_id: bytes
    height: int
    epoch: int


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    height: int
    state_root: bytes
    blob: bytes


@dataclass(frozen=True, slots=True)
class IntegrityReport:
    ok: bool
    problems: tuple[str, ...]
    ops_checked: int


# --- checksums ---------------------------------------------------------------------------------
# SQLite checks its page structure but not the bytes inside a row, so a flipped bit in an
# envelope would be served silently. Every row whose bytes matter carries a CRC-32 of them.


def op_crc(seq: int, op_id: bytes, author: bytes, author_seq: int, envelope: bytes) -> int:
    header = seq.to_bytes(8, "big") + author_seq.to_bytes(8, "big")
    return zlib.crc32(envelope, zlib.crc32(author, zlib.crc32(op_id, zlib.crc32(header))))


def checkpoint_crc(checkpoint: Checkpoint) -> int:
    header = checkpoint.height.to_bytes(8, "big") + checkpoint.log_seq.to_bytes(8, "big")
    crc = zlib.crc32(header)
    for part in (checkpoint.checkpoint_id, checkpoint.state_root, checkpoint.bundle):
        crc = zlib.crc32(part, crc)
    return crc


def rollback_crc(rollback: StoredRollback) -> int:
    header = rollback.epoch.to_bytes(8, "big") + rollback.height.to_bytes(8, "big")
    return zlib.crc32(rollback.certificate, zlib.crc32(header))


def snapshot_crc(snapshot: StateSnapshot) -> int:
    crc = zlib.crc32(snapshot.height.to_bytes(8, "big"))
    return zlib.crc32(snapshot.blob, zlib.crc32(snapshot.state_root, crc))


# --- argument checks shared by both stores -----------------------------------------------------

_INT64_MAX = 2**63 - 1


def _check_bytes(name: str, value: object, size_max: int, *, exact: bool = False) -> None:
    if not isinstance(value, bytes):
        raise StoreUsageError(f"{name} must be bytes, not {type(value).__name__}")
    if exact and len(value) != size_max:
        raise StoreUsageError(f"{name} must be {size_max} bytes, not {len(value)}")
    if len(value) > size_max:
        raise StoreUsageError(f"{name} of {len(value)} bytes exceeds {size_max}")


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise StoreUsageError(f"{name} must be an int in [{low}, {high}], not {value!r}")


def check_network_id(network_id: object) -> None:
    _check_bytes("network_id", network_id, limits.HASH_SIZE_BYTES, exact=True)


def check_node_key(node_key: object) -> None:
    _check_bytes("node_key", node_key, limits.PUBLIC_KEY_SIZE_BYTES, exact=True)


def check_new_ops(ops: Sequence[NewOp]) -> None:
    """Types and sizes of a batch (ids repeated inside it are the store's DuplicateOpError).

    This runs for every appended op, twice under group commit, so the common case is one
    boolean expression per op and the precise message is built only for a bad op.
    """
    if len(ops) > APPEND_OPS_MAX:
        raise StoreUsageError(f"{len(ops)} ops in one append exceeds {APPEND_OPS_MAX}")
    for op in ops:
        op_id, author, author_seq, envelope, status, received_at_ms = op
        if not (
            type(op_id) is bytes
            and len(op_id) == limits.HASH_SIZE_BYTES
            and type(author) is bytes
            and len(author) <= limits.PUBLIC_KEY_SIZE_BYTES
            and type(author_seq) is int
            and 0 <= author_seq <= limits.SEQ_MAX
            and type(envelope) is bytes
            and len(envelope) <= limits.OP_ENVELOPE_SIZE_BYTES_MAX
            and type(status) is OpStatus
            and type(received_at_ms) is int
            and 0 <= received_at_ms <= _INT64_MAX
        ):
            _explain_bad_op(op)


def _explain_bad_op(op: NewOp) -> None:
    _check_bytes("op_id", op.op_id, limits.HASH_SIZE_BYTES, exact=True)
    _check_bytes("author", op.author, limits.PUBLIC_KEY_SIZE_BYTES)
    _check_int("author_seq", op.author_seq, 0, limits.SEQ_MAX)
    _check_bytes("envelope", op.envelope, limits.OP_ENVELOPE_SIZE_BYTES_MAX)
    check_status(op.status)
    _check_int("received_at_ms", op.received_at_ms, 0, _INT64_MAX)
    raise StoreUsageError(f"malformed op: {op!r:.200}")


def check_op_ids(op_ids: Sequence[bytes]) -> None:
    if len(op_ids) > IDS_PER_CALL_MAX:
        raise StoreUsageError(f"{len(op_ids)} ids in one call exceeds {IDS_PER_CALL_MAX}")
    for op_id in op_ids:
        _check_bytes("op_id", op_id, limits.HASH_SIZE_BYTES, exact=True)


def check_final_heights(heights: Sequence[tuple[int, Sequence[bytes]]]) -> None:
    """`record_final_heights`' argument: (height >= 1, op ids) pairs, IDS_PER_CALL_MAX ids."""
    check_op_ids([op_id for _, op_ids in heights for op_id in op_ids])
    for height, _ in heights:
        _check_int("height", height, 1, _INT64_MAX)


def check_status(status: object) -> None:
    if not isinstance(status, OpStatus):
        raise StoreUsageError(f"status must be an OpStatus, not {status!r}")


def check_read_range(after: int, limit: int) -> None:
    _check_int("after", after, 0, _INT64_MAX)
    _check_int("limit", limit, 1, READ_LOG_LIMIT_MAX)


def check_seqs(seqs: Sequence[int]) -> None:
    if len(seqs) > READ_LOG_LIMIT_MAX:
        raise StoreUsageError(f"at most {READ_LOG_LIMIT_MAX} seqs in one read")
    for seq in seqs:
        _check_int("seq", seq, 1, _INT64_MAX)


def check_pending(ops: Sequence[PendingOp]) -> None:
    if len(ops) > APPEND_OPS_MAX:
        raise StoreUsageError(f"{len(ops)} pending ops in one call exceeds {APPEND_OPS_MAX}")
    for op in ops:
        _check_bytes("op_id", op.op_id, limits.HASH_SIZE_BYTES, exact=True)
        _check_bytes("envelope", op.envelope, limits.OP_ENVELOPE_SIZE_BYTES_MAX)
        _check_int("received_at_ms", op.received_at_ms, 0, _INT64_MAX)


def check_checkpoint(
    checkpoint: Checkpoint,
    snapshot_blob: bytes,
    snapshots_kept: int | None = None,
    final_op_ids: Sequence[bytes] = (),
) -> None:
    if snapshots_kept is not None:
        check_snapshots_kept(snapshots_kept)
    # Not bounded in number: a cut finalizes the closure of its heads, all in one write.
    for op_id in final_op_ids:
        _check_bytes("op_id", op_id, limits.HASH_SIZE_BYTES, exact=True)
    _check_int("height", checkpoint.height, 1, _INT64_MAX)
    _check_bytes("checkpoint_id", checkpoint.checkpoint_id, limits.HASH_SIZE_BYTES, exact=True)
    _check_bytes("state_root", checkpoint.state_root, limits.HASH_SIZE_BYTES, exact=True)
    _check_bytes("bundle", checkpoint.bundle, CHECKPOINT_BUNDLE_SIZE_BYTES_MAX)
    _check_int("log_seq", checkpoint.log_seq, 0, _INT64_MAX)
    _check_bytes("snapshot_blob", snapshot_blob, SNAPSHOT_SIZE_BYTES_MAX)


def check_snapshot(snapshot: StateSnapshot, snapshots_kept: int | None = None) -> None:
    """`put_snapshot`'s arguments: a checkpoint height and root, and a non-empty blob."""
    if snapshots_kept is not None:
        check_snapshots_kept(snapshots_kept)
    _check_int("height", snapshot.height, 1, _INT64_MAX)
    _check_bytes("state_root", snapshot.state_root, limits.HASH_SIZE_BYTES, exact=True)
    _check_bytes("snapshot_blob", snapshot.blob, SNAPSHOT_SIZE_BYTES_MAX)
    if not snapshot.blob:
        raise StoreUsageError("put_snapshot needs a non-empty snapshot blob")


def check_snapshots_kept(snapshots_kept: object) -> None:
    _check_int("snapshots_kept", snapshots_kept, 1, SNAPSHOTS_KEPT_MAX)


def check_rollback(rollback: StoredRollback) -> None:
    _check_int("epoch", rollback.epoch, 1, _INT64_MAX)
    _check_int("height", rollback.height, 0, _INT64_MAX)
    _check_bytes("certificate", rollback.certificate, ROLLBACK_CERTIFICATE_SIZE_BYTES_MAX)


def check_reverted(op_ids: Sequence[bytes], height: int, epoch: int) -> None:
    check_op_ids(op_ids)
    _check_int("height", height, 0, _INT64_MAX)
    _check_int("epoch", epoch, 1, _INT64_MAX)


def check_meta(key: object, value: object | None = None, *, writing: bool = False) -> None:
    if not isinstance(key, str) or not 0 < len(key.encode()) <= META_KEY_SIZE_BYTES_MAX:
        raise StoreUsageError(f"meta key must be a non-empty str of at most 64 bytes: {key!r}")
    if writing:
        if key in RESERVED_META_KEYS:
            raise StoreUsageError(f"meta key {key!r} is owned by the store")
        _check_bytes("meta value", value, META_VALUE_SIZE_BYTES_MAX)


def check_mode(mode: object, reason: object) -> None:
    if not isinstance(mode, NodeMode):
        raise StoreUsageError(f"mode must be a NodeMode, not {mode!r}")
    if not isinstance(reason, str) or len(reason.encode()) > limits.REASON_SIZE_BYTES_MAX:
        raise StoreUsageError("reason must be a str of at most REASON_SIZE_BYTES_MAX bytes")


# --- peer bans (netguard) ----------------------------------------------------------------------

#: Ban rows stored: the core's own bound on remembered bans.
PEER_BANS_STORED_MAX = limits.PEER_BANS_MAX


@dataclass(frozen=True, slots=True)
class PeerBan:
    """A node id banned until `until_ms` (unix milliseconds); `bans` so far."""

    node_id: bytes
    until_ms: int
    bans: int


def check_peer_bans(bans: Sequence[PeerBan]) -> None:
    if len(bans) > PEER_BANS_STORED_MAX:
        raise StoreUsageError(f"at most {PEER_BANS_STORED_MAX} peer bans are stored")
    seen: set[bytes] = set()
    for ban in bans:
        if not isinstance(ban, PeerBan):
            raise StoreUsageError(f"not a PeerBan: {ban!r}")
        _check_bytes("node_id", ban.node_id, limits.PUBLIC_KEY_SIZE_BYTES, exact=True)
        _check_int("until_ms", ban.until_ms, 0, _INT64_MAX)
        _check_int("bans", ban.bans, 1, _INT64_MAX)
        if ban.node_id in seen:
            raise StoreUsageError("a node id is banned twice in one call")
        seen.add(ban.node_id)


#: Address book rows stored: the book's own bound.
ADDRESS_BOOK_STORED_MAX = limits.ADDRESS_BOOK_MAX


@dataclass(frozen=True, slots=True)
class AddressEntry:
    """One address book row: the encoded signed record, the peer it came from (b"" for a
    configured seed) and its failed dials. The store does not verify the record.

    `tried`: a link to the node came up once (protocol/addresses.py); `anchor`: 0, or the rank
    (1..ADDRESS_ANCHORS_MAX) of one of the last good outbound peers, dialed first after a
    restart (node/runtime/exchange.py). Both stored since schema v10 (peers2)."""

    node_id: bytes
    record: bytes
    source: bytes
    failures: int
    tried: bool = False
    anchor: int = 0


def check_address_book(entries: Sequence[AddressEntry]) -> None:
    if len(entries) > ADDRESS_BOOK_STORED_MAX:
        raise StoreUsageError(f"at most {ADDRESS_BOOK_STORED_MAX} address book rows are stored")
    seen: set[bytes] = set()
    for entry in entries:
        if not isinstance(entry, AddressEntry):
            raise StoreUsageError(f"not an AddressEntry: {entry!r}")
        _check_bytes("node_id", entry.node_id, limits.PUBLIC_KEY_SIZE_BYTES, exact=True)
        _check_bytes("record", entry.record, limits.ADDRESS_RECORD_SIZE_BYTES_MAX)
        _check_bytes("source", entry.source, limits.HASH_SIZE_BYTES)
        _check_int("failures", entry.failures, 0, _INT64_MAX)
        if not isinstance(entry.tried, bool):
            raise StoreUsageError(f"tried must be a bool, not {entry.tried!r}")
        _check_int("anchor", entry.anchor, 0, limits.ADDRESS_ANCHORS_MAX)
        if entry.node_id in seen:
            raise StoreUsageError("a node id appears twice in one address book")
        seen.add(entry.node_id)


# --- the interface -----------------------------------------------------------------------------


class OpStore(Protocol):
    """The durable store as the node shell and the simulator see it.

    Every write is atomic and durable when its coroutine returns; a write that raises wrote
    nothing. Reads see only committed writes.
    """

    @property
    def last_seq(self) -> int: ...

    async def append_ops(self, ops: Sequence[NewOp]) -> list[int]: ...

    async def mark_status(self, op_ids: Sequence[bytes], status: OpStatus) -> int: ...

    async def mark_final(self, op_ids: Sequence[bytes], height: int) -> int:
        """Record `height` as the final height of the logged ops among `op_ids` that keep
        their body (a recorded one is overwritten); returns how many. The node records them
        with their checkpoint (`put_checkpoint(final_op_ids=...)`); this is for tools/tests."""
        ...

    async def record_final_heights(self, heights: Sequence[tuple[int, Sequence[bytes]]]) -> int:
        """The backfill of final heights a store lacks (one upgraded from before schema v6,
        or a checkpoint stored by a version that wrote them in a separate write): for each
        (height, op ids) pair, record `height` on the logged, applied ops among the ids that
        keep their body and have no final height yet. At most IDS_PER_CALL_MAX ids in all, in
        one write; returns the rows changed."""
        ...

    async def unrecorded_final(self, op_ids: Sequence[bytes]) -> list[bytes]:
        """The ids among `op_ids` (at most IDS_PER_CALL_MAX) of logged, applied ops that keep
        their body and have no final height recorded, in the order asked. Asked about ops known to
        be final (a checkpoint's heads), a non-empty answer means their final heights are
        unknown: an offline rollback below them would leave them applied."""
        ...

    async def prune_final(self, through_height: int, limit: int) -> tuple[int, int]: ...

    async def trim_expired(self, keep: int, limit: int) -> int: ...

    async def mark_reverted_after(self, log_seq: int) -> int: ...

    async def roll_back_to(self, height: int) -> tuple[int, int]: ...

    async def read_reverted_checkpoints(
        self, after_revert_seq: int, limit: int
    ) -> list[RevertedCheckpoint]: ...

    async def put_rollback(self, rollback: StoredRollback) -> int:
        """Store an accepted rollback certificate after the ones before it and, in the same
        write, move the checkpoints above its height to the reverted ones (snapshots above it
        are deleted); returns how many moved. The same certificate again is a no-op; another
        one for a stored epoch raises RollbackConflictError."""
        ...

    async def read_rollbacks(self, after_epoch: int, limit: int) -> list[StoredRollback]: ...

    async def mark_reverted(self, op_ids: Sequence[bytes], height: int, epoch: int) -> int:
        """Record `op_ids` as reverted by the certificate of `epoch` (to `height`) and mark the
        logged ones REVERTED, in one write (an id recorded before takes the new height and
        epoch); returns how many logged ops were marked."""
        ...

    async def read_reverted_ops(self, after_seq: int, limit: int) -> list[RevertedOp]: ...

    async def get_reverted(self, op_id: bytes) -> RevertedOp | None: ...

    async def read_log(self, after_seq: int, limit: int) -> list[LoggedOp]: ...

    #: op_log rows returned by `read_log` and `read_ops_at` since the store was opened.
    rows_read: int

    async def replay_seqs(self, above_height: int) -> list[int]:
        """The seqs, ascending, of the logged ops a restart from the snapshot at
        `above_height` replays: final above it, or applied and not final with their body
        (pending or live ops; also ops final before schema v6 recorded final heights, and
        lost forks, which the caller skips by author seq). Read through two indexes, never
        the whole log: O(the tail), not O(history)."""
        ...

    async def read_ops_at(self, seqs: Sequence[int]) -> list[LoggedOp]:
        """The logged ops at `seqs` (<= READ_LOG_LIMIT_MAX), in log order; absent ones are
        left out."""
        ...

    async def get_op(self, op_id: bytes) -> LoggedOp | None: ...

    async def get_ops(self, op_ids: Sequence[bytes]) -> list[LoggedOp]: ...

    async def put_checkpoint(
        self,
        checkpoint: Checkpoint,
        snapshot_blob: bytes,
        *,
        snapshots_kept: int | None = None,
        telemetry: Activity | None = None,
        observed: Observed | None = None,
        final_op_ids: Sequence[bytes] = (),
    ) -> None:
        """Store a final checkpoint and (when `snapshot_blob` is not empty) the state snapshot
        at it, in one write. The same write records the checkpoint's height as the final height
        of the logged ops among `final_op_ids` that keep their body (as `mark_final`), so a
        crash never leaves a stored checkpoint whose ops lack it (what `roll_back_to` and
        `prune_final` read). With `snapshots_kept`, the same write deletes every snapshot but
        the newest `snapshots_kept` (None keeps them all). With `telemetry`, the same write
        folds the checkpoint's product telemetry into its day (protocol/telemetry.py) and
        deletes days older than limits.TELEMETRY_DAYS_KEPT. With `observed`, the same write
        replaces the stored participation and open-conflict record (node_core/observed.py).
        Storing the same checkpoint again writes nothing (these included)."""
        ...

    async def note_conflict(self, handle: str, raised_ms: int) -> None:
        """Record when a handle conflict was first raised (a second note keeps the first)."""
        ...

    async def read_observed(self) -> Observed | None:
        """The stored participation and open-conflict record (None: none stored yet)."""
        ...

    async def read_telemetry(self, days: int) -> tuple[dict[int, DayRecord], Since | None]:
        """The telemetry day records `protocol.telemetry.report` needs for the `days` days
        ending at the newest recorded day, and `protocol.telemetry.Since`."""
        ...

    async def latest_checkpoint(self) -> Checkpoint | None: ...

    async def get_checkpoint(self, height: int) -> Checkpoint | None: ...

    async def read_checkpoints(self, after_height: int, limit: int) -> list[Checkpoint]: ...

    async def put_snapshot(
        self, height: int, state_root: bytes, blob: bytes, *, snapshots_kept: int | None = None
    ) -> None:
        """Store the state snapshot of an already stored checkpoint (one built after its
        checkpoint was written). Raises SnapshotWithoutCheckpointError, writing nothing,
        unless the checkpoint at `height` is stored with this `state_root`. Replaces a snapshot
        stored at that height; `snapshots_kept` prunes as in `put_checkpoint`, in the same
        write."""
        ...

    async def get_snapshot(self, height: int) -> StateSnapshot | None: ...

    async def latest_snapshot(self) -> StateSnapshot | None:
        """The newest snapshot whose checkpoint is stored with the same state root (so never
        one a rollback reverted), or None. CorruptDatabaseError when its checksum fails."""
        ...

    async def snapshot_heights(self) -> list[int]:
        """The heights of the snapshots `latest_snapshot` could return (stored with a
        matching checkpoint, not empty), ascending; the blobs are read by `get_snapshot`."""
        ...

    async def delete_snapshots_below(self, height: int) -> int: ...

    async def put_pending(self, ops: Sequence[PendingOp]) -> int: ...

    async def delete_pending(self, op_ids: Sequence[bytes]) -> int: ...

    async def load_pending(self) -> list[PendingOp]: ...

    async def get_meta(self, key: str) -> bytes | None: ...

    async def set_meta(self, key: str, value: bytes) -> None: ...

    async def get_mode(self) -> tuple[NodeMode, str]: ...

    async def set_mode(self, mode: NodeMode, reason: str) -> None: ...

    async def integrity_check(self) -> IntegrityReport: ...

    async def replace_peer_bans(self, bans: Sequence[PeerBan]) -> None:
        """Store exactly `bans` (at most PEER_BANS_STORED_MAX), replacing every earlier row."""
        ...

    async def load_peer_bans(self) -> list[PeerBan]: ...

    async def replace_address_book(self, entries: Sequence[AddressEntry]) -> None:
        """Store exactly `entries` (at most ADDRESS_BOOK_STORED_MAX), replacing the book."""
        ...

    async def load_address_book(self) -> list[AddressEntry]: ...

    async def close(self) -> None: ...
