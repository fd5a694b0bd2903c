"""An in-memory store with the interface and crash semantics of `Store`, for the simulator.

A `MemoryDatabase` plays the disk: it outlives a crash. A `MemoryStore` is an open handle on it.
Each write takes effect atomically at one point, its commit, and is acknowledged only after it;
a write either happened completely or not at all. The async methods first yield to the event
loop once (the real store's hop to its worker thread) and then commit, so a `crash()` made by
another task in between loses the write and its caller gets StoreClosedError, never an ack.
`crash()` keeps exactly what was committed, as kill -9 keeps what SQLite committed; then
`MemoryStore.open` on the same database is the restart.

Every method also exists as `<name>_sync`, which commits at once, for a simulator that drives
the core without an event loop. Argument checks and typed errors are shared with `Store`
(storage/api.py), so a test passing against one passes against the other.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from swarmd.protocol.limits import TELEMETRY_DAYS_KEPT
from swarmd.protocol.node_core.observed import MemberRecord, Observed
from swarmd.protocol.telemetry import Activity, DayRecord, Since, fold, since_of

from . import api
from .api import (
    Checkpoint,
    IntegrityReport,
    LoggedOp,
    NewOp,
    NodeMode,
    OpStatus,
    PendingOp,
    RevertedCheckpoint,
    RevertedOp,
    StateSnapshot,
    StoredRollback,
)
from .errors import (
    CheckpointConflictError,
    DatabaseLockedError,
    DuplicateOpError,
    RollbackConflictError,
    SchemaTooNewError,
    SnapshotWithoutCheckpointError,
    StoreClosedError,
    StoreUsageError,
    WrongNetworkError,
    WrongNodeKeyError,
)
from .schema import SCHEMA_VERSION


@dataclass
class MemoryDatabase:
    """What survives a crash. Tests may read it; only MemoryStore writes it."""

    schema_version: int = 0
    meta: dict[str, bytes] = field(default_factory=dict)
    op_log: list[LoggedOp] = field(default_factory=list)
    seq_by_op_id: dict[bytes, int] = field(default_factory=dict)
    pending: dict[bytes, PendingOp] = field(default_factory=dict)
    checkpoints: dict[int, Checkpoint] = field(default_factory=dict)
    #: Product telemetry by UTC day (schema v8's tables; protocol/telemetry.py).
    telemetry: dict[int, DayRecord] = field(default_factory=dict)
    #: The observed participation (height, members) and conflict ages (v8's observed_* tables).
    observed_members: tuple[int, tuple[MemberRecord, ...]] | None = None
    observed_conflicts: dict[str, int] = field(default_factory=dict)
    snapshots: dict[int, StateSnapshot] = field(default_factory=dict)
    reverted_checkpoints: list[RevertedCheckpoint] = field(default_factory=list)
    rollbacks: dict[int, StoredRollback] = field(default_factory=dict)
    #: op id -> its record, in the order recorded (a re-recorded id moves to the end).
    reverted_ops: dict[bytes, RevertedOp] = field(default_factory=dict)
    reverted_ops_seq: int = 0
    peer_bans: dict[bytes, api.PeerBan] = field(default_factory=dict)
    address_book: dict[bytes, api.AddressEntry] = field(default_factory=dict)
    #: seq -> final height of logged ops not pruned yet (the op_log.final_height column).
    final_heights: dict[int, int] = field(default_factory=dict)
    #: Seqs `trim_expired` deleted (their slots in `op_log` stay, unread).
    deleted: set[int] = field(default_factory=set)
    #: The open handle, if any: like the file lock of `Store`, one writer at a time.
    holder: MemoryStore | None = None


class MemoryStore:
    """An open handle on a MemoryDatabase; see api.OpStore and the module docstring."""

    def __init__(self, database: MemoryDatabase) -> None:
        self.database = database
        self._closed = False
        #: op_log rows returned by `read_log` and `read_ops_at` (see the SQLite store's).
        self.rows_read = 0

    # --- opening, closing, crashing --------------------------------------------------------

    @classmethod
    async def open(
        cls, database: MemoryDatabase, *, network_id: bytes, node_key: bytes | None = None
    ) -> MemoryStore:
        await asyncio.sleep(0)
        return cls.open_sync(database, network_id=network_id, node_key=node_key)

    @classmethod
    def open_sync(
        cls, database: MemoryDatabase, *, network_id: bytes, node_key: bytes | None = None
    ) -> MemoryStore:
        api.check_network_id(network_id)
        if node_key is not None:
            api.check_node_key(node_key)
        if database.holder is not None:
            raise DatabaseLockedError("the memory database is already open")
        if database.schema_version > SCHEMA_VERSION:
            raise SchemaTooNewError(f"schema version {database.schema_version} is too new")
        if database.schema_version == 0:
            if node_key is None:
                raise StoreUsageError("node_key is required to create a database")
            database.meta.update(
                {
                    api.META_NETWORK_ID: network_id,
                    api.META_NODE_KEY: node_key,
                    api.META_MODE: NodeMode.NORMAL.value.encode(),
                    api.META_MODE_REASON: b"",
                }
            )
        elif database.meta.get(api.META_NETWORK_ID) != network_id:
            raise WrongNetworkError("the memory database belongs to another network")
        elif node_key is not None and database.meta.get(api.META_NODE_KEY) != node_key:
            raise WrongNodeKeyError("the memory database was made by another node key")
        database.schema_version = SCHEMA_VERSION
        store = cls(database)
        database.holder = store
        return store

    def crash(self) -> None:
        """Die like kill -9: keep what was committed, fail every write still in flight."""
        self._release()

    async def close(self) -> None:
        self.close_sync()

    def close_sync(self) -> None:
        self._release()

    def _release(self) -> None:
        if not self._closed:
            self._closed = True
            self.database.holder = None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the memory store is closed")

    async def _commit_point(self) -> None:
        # The real store's hop to its worker thread: other tasks run here, a crash included.
        self._check_open()
        await asyncio.sleep(0)
        self._check_open()

    @property
    def last_seq(self) -> int:
        return len(self.database.op_log)

    # --- the op log ------------------------------------------------------------------------

    async def append_ops(self, ops: Sequence[NewOp]) -> list[int]:
        api.check_new_ops(ops)
        await self._commit_point()
        return self.append_ops_sync(ops)

    def append_ops_sync(self, ops: Sequence[NewOp]) -> list[int]:
        self._check_open()
        api.check_new_ops(ops)
        ids = {op.op_id for op in ops}
        if len(ids) != len(ops):
            raise DuplicateOpError("the same op id appears twice in one batch")
        if any(op_id in self.database.seq_by_op_id for op_id in ids):
            raise DuplicateOpError("an op id in the batch is already logged")
        seqs = []
        for op in ops:
            seq = len(self.database.op_log) + 1
            self.database.op_log.append(
                LoggedOp(seq, *op[:4], OpStatus(op.status), op.received_at_ms)
            )
            self.database.seq_by_op_id[op.op_id] = seq
            self.database.pending.pop(op.op_id, None)
            seqs.append(seq)
        return seqs

    async def mark_status(self, op_ids: Sequence[bytes], status: OpStatus) -> int:
        api.check_op_ids(op_ids)
        await self._commit_point()
        return self.mark_status_sync(op_ids, status)

    def mark_status_sync(self, op_ids: Sequence[bytes], status: OpStatus) -> int:
        self._check_open()
        api.check_op_ids(op_ids)
        api.check_status(status)
        changed = 0
        for op_id in set(op_ids):
            seq = self.database.seq_by_op_id.get(op_id)
            if seq is not None:
                self._set_status(seq, status)
                changed += 1
        return changed

    async def mark_final(self, op_ids: Sequence[bytes], height: int) -> int:
        api.check_op_ids(op_ids)
        api.check_read_range(height, 1)
        await self._commit_point()
        self._check_open()
        return self._mark_final(op_ids, height, missing_only=False)

    def _mark_final(self, op_ids: Sequence[bytes], height: int, *, missing_only: bool) -> int:
        """As rollback_sql.final_height_statements: logged ops with a body (`missing_only`:
        applied, with no final height yet) get `height`."""
        database, changed = self.database, 0
        for op_id in set(op_ids):
            seq = database.seq_by_op_id.get(op_id)
            if seq is None or not database.op_log[seq - 1].envelope:
                continue
            if missing_only and (
                seq in database.final_heights
                or database.op_log[seq - 1].status is not OpStatus.APPLIED
            ):
                continue
            database.final_heights[seq] = height
            changed += 1
        return changed

    async def record_final_heights(self, heights: Sequence[tuple[int, Sequence[bytes]]]) -> int:
        api.check_final_heights(heights)
        await self._commit_point()
        self._check_open()
        return sum(self._mark_final(ids, height, missing_only=True) for height, ids in heights)

    async def unrecorded_final(self, op_ids: Sequence[bytes]) -> list[bytes]:
        api.check_op_ids(op_ids)
        await self._commit_point()
        self._check_open()
        database = self.database
        unrecorded = []
        for op_id in op_ids:
            seq = database.seq_by_op_id.get(op_id)
            if seq is None or seq in database.final_heights:
                continue
            op = database.op_log[seq - 1]
            if op.envelope and op.status is OpStatus.APPLIED:
                unrecorded.append(op_id)
        return unrecorded

    async def prune_final(self, through_height: int, limit: int) -> tuple[int, int]:
        api.check_read_range(through_height, 1)
        if not 1 <= limit <= api.PRUNE_ROWS_MAX:
            raise StoreUsageError(f"prune limit must be 1..{api.PRUNE_ROWS_MAX}")
        await self._commit_point()
        self._check_open()
        database = self.database
        due = sorted(
            (height, seq)
            for seq, height in database.final_heights.items()
            if height <= through_height and database.op_log[seq - 1].status is OpStatus.APPLIED
        )[:limit]
        for _, seq in due:
            database.op_log[seq - 1] = dataclasses.replace(database.op_log[seq - 1], envelope=b"")
            del database.final_heights[seq]
        below = sorted(h for h in database.checkpoints if h < through_height)[:limit]
        for height in below:
            del database.checkpoints[height]
        return len(due), len(below)

    async def trim_expired(self, keep: int, limit: int) -> int:
        if keep < 1 or not 1 <= limit <= api.PRUNE_ROWS_MAX:
            raise StoreUsageError(f"need keep >= 1 and a limit of 1..{api.PRUNE_ROWS_MAX}")
        await self._commit_point()
        self._check_open()
        database = self.database
        expired = [
            op
            for op in reversed(database.op_log)
            if op.status is OpStatus.EXPIRED and op.seq not in database.deleted
        ]
        trimmed = expired[keep : keep + limit]
        for op in trimmed:
            database.deleted.add(op.seq)
            del database.seq_by_op_id[op.op_id]
        return len(trimmed)

    async def mark_reverted_after(self, log_seq: int) -> int:
        api.check_read_range(log_seq, 1)
        await self._commit_point()
        return self.mark_reverted_after_sync(log_seq)

    def mark_reverted_after_sync(self, log_seq: int) -> int:
        self._check_open()
        api.check_read_range(log_seq, 1)
        changed = 0
        for op in self.database.op_log[log_seq:]:
            if op.status is OpStatus.APPLIED:
                self._set_status(op.seq, OpStatus.REVERTED)
                changed += 1
        return changed

    async def roll_back_to(self, height: int) -> tuple[int, int]:
        api.check_read_range(height, 1)
        await self._commit_point()
        return self.roll_back_to_sync(height)

    def roll_back_to_sync(self, height: int) -> tuple[int, int]:
        self._check_open()
        api.check_read_range(height, 1)
        checkpoints = self.database.checkpoints
        if height > 0 and height not in checkpoints:
            raise StoreUsageError(f"no checkpoint is stored at height {height}")
        above = sorted(h for h in checkpoints if h > height)
        for number, moved in enumerate(above, start=len(self.database.reverted_checkpoints) + 1):
            reverted = RevertedCheckpoint(number, height, checkpoints.pop(moved))
            self.database.reverted_checkpoints.append(reverted)
            self.database.snapshots.pop(moved, None)
        self._drop_telemetry_above(height)
        return self._revert_final_above(height), len(above)

    def _drop_telemetry_above(self, height: int) -> None:
        """Drop the telemetry days that counted a height above `height` (as
        telemetry_sql.rollback_statements does)."""
        telemetry = self.database.telemetry
        for day in [d for d, r in telemetry.items() if r.last_height > height]:
            del telemetry[day]

    def _revert_final_above(self, height: int) -> int:
        """Mark the applied ops final above `height` REVERTED and forget their final height
        (an op that comes back is pending, not final at its old height); see Store.roll_back_to."""
        database = self.database
        changed = 0
        for seq in sorted(seq for seq, final in database.final_heights.items() if final > height):
            del database.final_heights[seq]
            if database.op_log[seq - 1].status is OpStatus.APPLIED:
                self._set_status(seq, OpStatus.REVERTED)
                changed += 1
        return changed

    async def put_rollback(self, rollback: StoredRollback) -> int:
        api.check_rollback(rollback)
        await self._commit_point()
        return self.put_rollback_sync(rollback)

    def put_rollback_sync(self, rollback: StoredRollback) -> int:
        self._check_open()
        api.check_rollback(rollback)
        database = self.database
        stored = database.rollbacks.get(rollback.epoch)
        if stored is not None:
            if stored.certificate == rollback.certificate:
                return 0
            raise RollbackConflictError(f"another certificate for epoch {rollback.epoch}")
        database.rollbacks[rollback.epoch] = rollback
        above = sorted(h for h in database.checkpoints if h > rollback.height)
        for number, moved in enumerate(above, start=len(database.reverted_checkpoints) + 1):
            checkpoint = database.checkpoints.pop(moved)
            database.reverted_checkpoints.append(
                RevertedCheckpoint(number, rollback.height, checkpoint)
            )
        for height in [h for h in database.snapshots if h > rollback.height]:
            del database.snapshots[height]
        self._drop_telemetry_above(rollback.height)
        return len(above)

    async def read_rollbacks(self, after_epoch: int, limit: int) -> list[StoredRollback]:
        api.check_read_range(after_epoch, limit)
        await self._commit_point()
        self._check_open()
        rollbacks = sorted(self.database.rollbacks.items())
        return [rollback for epoch, rollback in rollbacks if epoch > after_epoch][:limit]

    async def mark_reverted(self, op_ids: Sequence[bytes], height: int, epoch: int) -> int:
        api.check_reverted(op_ids, height, epoch)
        await self._commit_point()
        return self.mark_reverted_sync(op_ids, height, epoch)

    def mark_reverted_sync(self, op_ids: Sequence[bytes], height: int, epoch: int) -> int:
        self._check_open()
        api.check_reverted(op_ids, height, epoch)
        database = self.database
        for op_id in op_ids:
            database.reverted_ops.pop(op_id, None)
            database.reverted_ops_seq += 1
            database.reverted_ops[op_id] = RevertedOp(
                database.reverted_ops_seq, op_id, height, epoch
            )
            seq = database.seq_by_op_id.get(op_id)
            if seq is not None:
                database.final_heights.pop(seq, None)
        return self.mark_status_sync(op_ids, OpStatus.REVERTED)

    async def read_reverted_ops(self, after_seq: int, limit: int) -> list[RevertedOp]:
        api.check_read_range(after_seq, limit)
        await self._commit_point()
        self._check_open()
        found = [op for op in self.database.reverted_ops.values() if op.seq > after_seq]
        return found[:limit]

    async def get_reverted(self, op_id: bytes) -> RevertedOp | None:
        api.check_op_ids([op_id])
        await self._commit_point()
        self._check_open()
        return self.database.reverted_ops.get(op_id)

    async def read_reverted_checkpoints(
        self, after_revert_seq: int, limit: int
    ) -> list[RevertedCheckpoint]:
        api.check_read_range(after_revert_seq, limit)
        await self._commit_point()
        self._check_open()
        return self.database.reverted_checkpoints[after_revert_seq : after_revert_seq + limit]

    def _set_status(self, seq: int, status: OpStatus) -> None:
        op = self.database.op_log[seq - 1]
        self.database.op_log[seq - 1] = dataclasses.replace(op, status=status)

    async def read_log(self, after_seq: int, limit: int) -> list[LoggedOp]:
        await self._commit_point()
        rows = self.read_log_sync(after_seq, limit)
        self.rows_read += len(rows)
        return rows

    def read_log_sync(self, after_seq: int, limit: int) -> list[LoggedOp]:
        self._check_open()
        api.check_read_range(after_seq, limit)
        deleted = self.database.deleted
        if not deleted:
            return self.database.op_log[after_seq : after_seq + limit]
        rows: list[LoggedOp] = []
        for op in self.database.op_log[after_seq:]:
            if len(rows) == limit:
                break
            if op.seq not in deleted:
                rows.append(op)
        return rows

    async def replay_seqs(self, above_height: int) -> list[int]:
        """See `api.OpStore.replay_seqs` (here a scan: this store is a test double)."""
        await self._commit_point()
        self._check_open()
        api.check_read_range(above_height, 1)
        database = self.database
        return [
            op.seq
            for op in database.op_log
            if op.seq not in database.deleted
            and (
                database.final_heights.get(op.seq, -1) > above_height
                or (
                    op.seq not in database.final_heights
                    and op.status is OpStatus.APPLIED
                    and bool(op.envelope)
                )
            )
        ]

    async def read_ops_at(self, seqs: Sequence[int]) -> list[LoggedOp]:
        await self._commit_point()
        self._check_open()
        api.check_seqs(seqs)
        database = self.database
        wanted = sorted(set(seqs))
        rows = [
            database.op_log[seq - 1]
            for seq in wanted
            if seq <= len(database.op_log) and seq not in database.deleted
        ]
        self.rows_read += len(rows)
        return rows

    async def get_op(self, op_id: bytes) -> LoggedOp | None:
        found = await self.get_ops([op_id])
        return found[0] if found else None

    async def get_ops(self, op_ids: Sequence[bytes]) -> list[LoggedOp]:
        await self._commit_point()
        return self.get_ops_sync(op_ids)

    def get_ops_sync(self, op_ids: Sequence[bytes]) -> list[LoggedOp]:
        self._check_open()
        api.check_op_ids(op_ids)
        seqs = {self.database.seq_by_op_id.get(op_id) for op_id in op_ids} - {None}
        return [self.database.op_log[seq - 1] for seq in sorted(s for s in seqs if s)]

    # --- checkpoints and snapshots ---------------------------------------------------------

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
        api.check_checkpoint(checkpoint, snapshot_blob, snapshots_kept, final_op_ids)
        await self._commit_point()
        self.put_checkpoint_sync(
            checkpoint,
            snapshot_blob,
            snapshots_kept=snapshots_kept,
            telemetry=telemetry,
            observed=observed,
            final_op_ids=final_op_ids,
        )

    async def note_conflict(self, handle: str, raised_ms: int) -> None:
        self._check_open()
        await self._commit_point()
        self.database.observed_conflicts.setdefault(handle, raised_ms)

    async def read_observed(self) -> Observed | None:
        self._check_open()
        members = self.database.observed_members
        conflicts = self.database.observed_conflicts
        if members is None and not conflicts:
            return None
        height, records = members if members is not None else (-1, ())
        return Observed(height, records, tuple(sorted(conflicts.items())))

    async def read_telemetry(self, days: int) -> tuple[dict[int, DayRecord], Since | None]:
        self._check_open()
        records = self.database.telemetry
        return copy.deepcopy(records), since_of(records)

    def put_checkpoint_sync(
        self,
        checkpoint: Checkpoint,
        snapshot_blob: bytes,
        *,
        snapshots_kept: int | None = None,
        telemetry: Activity | None = None,
        observed: Observed | None = None,
        final_op_ids: Sequence[bytes] = (),
    ) -> None:
        self._check_open()
        api.check_checkpoint(checkpoint, snapshot_blob, snapshots_kept, final_op_ids)
        stored = self.database.checkpoints.get(checkpoint.height)
        same_id = [
            other
            for other in self.database.checkpoints.values()
            if other.checkpoint_id == checkpoint.checkpoint_id
        ]
        if stored is not None and stored.checkpoint_id == checkpoint.checkpoint_id:
            return
        if stored is not None or same_id:
            raise CheckpointConflictError(
                f"another checkpoint is stored at height {checkpoint.height}"
            )
        self.database.checkpoints[checkpoint.height] = checkpoint
        self._mark_final(final_op_ids, checkpoint.height, missing_only=False)
        if telemetry is not None:
            fold(self.database.telemetry, telemetry, TELEMETRY_DAYS_KEPT)
        if observed is not None:
            self.database.observed_members = (observed.height, observed.members)
            self.database.observed_conflicts = dict(observed.conflicts)
        if not snapshot_blob:
            return
        snapshot = StateSnapshot(checkpoint.height, checkpoint.state_root, snapshot_blob)
        self._store_snapshot(snapshot, snapshots_kept)

    def _store_snapshot(self, snapshot: StateSnapshot, snapshots_kept: int | None) -> None:
        snapshots = self.database.snapshots
        snapshots[snapshot.height] = snapshot
        if snapshots_kept is not None:
            kept = sorted((h for h, s in snapshots.items() if s.blob), reverse=True)
            floor = kept[:snapshots_kept][-1]
            for height in [h for h, s in snapshots.items() if h < floor or not s.blob]:
                del snapshots[height]

    async def put_snapshot(
        self, height: int, state_root: bytes, blob: bytes, *, snapshots_kept: int | None = None
    ) -> None:
        snapshot = StateSnapshot(height, state_root, blob)
        api.check_snapshot(snapshot, snapshots_kept)
        await self._commit_point()
        self.put_snapshot_sync(height, state_root, blob, snapshots_kept=snapshots_kept)

    def put_snapshot_sync(
        self, height: int, state_root: bytes, blob: bytes, *, snapshots_kept: int | None = None
    ) -> None:
        self._check_open()
        snapshot = StateSnapshot(height, state_root, blob)
        api.check_snapshot(snapshot, snapshots_kept)
        checkpoint = self.database.checkpoints.get(height)
        if checkpoint is None or checkpoint.state_root != state_root:
            raise SnapshotWithoutCheckpointError(
                f"no checkpoint with this state root is stored at height {height}"
            )
        self._store_snapshot(snapshot, snapshots_kept)

    async def latest_checkpoint(self) -> Checkpoint | None:
        await self._commit_point()
        return self.latest_checkpoint_sync()

    def latest_checkpoint_sync(self) -> Checkpoint | None:
        self._check_open()
        if not self.database.checkpoints:
            return None
        return self.database.checkpoints[max(self.database.checkpoints)]

    async def get_checkpoint(self, height: int) -> Checkpoint | None:
        await self._commit_point()
        return self.database.checkpoints.get(height)

    async def read_checkpoints(self, after_height: int, limit: int) -> list[Checkpoint]:
        await self._commit_point()
        return self.read_checkpoints_sync(after_height, limit)

    def read_checkpoints_sync(self, after_height: int, limit: int) -> list[Checkpoint]:
        self._check_open()
        api.check_read_range(after_height, limit)
        heights = sorted(h for h in self.database.checkpoints if h > after_height)[:limit]
        return [self.database.checkpoints[height] for height in heights]

    async def get_snapshot(self, height: int) -> StateSnapshot | None:
        await self._commit_point()
        return self.database.snapshots.get(height)

    async def latest_snapshot(self) -> StateSnapshot | None:
        heights = await self.snapshot_heights()
        return self.database.snapshots[heights[-1]] if heights else None

    async def snapshot_heights(self) -> list[int]:
        await self._commit_point()
        self._check_open()
        checkpoints = self.database.checkpoints
        return sorted(
            height
            for height, snapshot in self.database.snapshots.items()
            if snapshot.blob
            and height in checkpoints
            and checkpoints[height].state_root == snapshot.state_root
        )

    async def delete_snapshots_below(self, height: int) -> int:
        api.check_read_range(height, 1)
        await self._commit_point()
        return self.delete_snapshots_below_sync(height)

    def delete_snapshots_below_sync(self, height: int) -> int:
        self._check_open()
        api.check_read_range(height, 1)
        doomed = [h for h in self.database.snapshots if h < height]
        for doomed_height in doomed:
            del self.database.snapshots[doomed_height]
        return len(doomed)

    # --- the pending pool ------------------------------------------------------------------

    async def put_pending(self, ops: Sequence[PendingOp]) -> int:
        api.check_pending(ops)
        await self._commit_point()
        return self.put_pending_sync(ops)

    def put_pending_sync(self, ops: Sequence[PendingOp]) -> int:
        self._check_open()
        api.check_pending(ops)
        added = 0
        for op in ops:
            if op.op_id not in self.database.pending and op.op_id not in (
                self.database.seq_by_op_id
            ):
                self.database.pending[op.op_id] = op
                added += 1
        return added

    async def delete_pending(self, op_ids: Sequence[bytes]) -> int:
        api.check_op_ids(op_ids)
        await self._commit_point()
        return self.delete_pending_sync(op_ids)

    def delete_pending_sync(self, op_ids: Sequence[bytes]) -> int:
        self._check_open()
        api.check_op_ids(op_ids)
        return sum(self.database.pending.pop(op_id, None) is not None for op_id in set(op_ids))

    async def load_pending(self) -> list[PendingOp]:
        await self._commit_point()
        return self.load_pending_sync()

    def load_pending_sync(self) -> list[PendingOp]:
        self._check_open()
        ordered = sorted(
            self.database.pending.values(), key=lambda op: (op.received_at_ms, op.op_id)
        )
        return ordered[: api.PENDING_OPS_STORED_MAX]

    # --- meta and modes --------------------------------------------------------------------

    async def get_meta(self, key: str) -> bytes | None:
        api.check_meta(key)
        await self._commit_point()
        return self.database.meta.get(key)

    async def set_meta(self, key: str, value: bytes) -> None:
        api.check_meta(key, value, writing=True)
        await self._commit_point()
        self.set_meta_sync(key, value)

    def set_meta_sync(self, key: str, value: bytes) -> None:
        self._check_open()
        api.check_meta(key, value, writing=True)
        self.database.meta[key] = value

    # --- peer bans (netguard) --------------------------------------------------------------

    async def replace_peer_bans(self, bans: Sequence[api.PeerBan]) -> None:
        api.check_peer_bans(bans)
        await self._commit_point()
        self._check_open()
        self.database.peer_bans = {ban.node_id: ban for ban in bans}

    async def load_peer_bans(self) -> list[api.PeerBan]:
        await self._commit_point()
        return [self.database.peer_bans[key] for key in sorted(self.database.peer_bans)]

    async def replace_address_book(self, entries: Sequence[api.AddressEntry]) -> None:
        api.check_address_book(entries)
        await self._commit_point()
        self._check_open()
        self.database.address_book = {entry.node_id: entry for entry in entries}

    async def load_address_book(self) -> list[api.AddressEntry]:
        await self._commit_point()
        book = self.database.address_book
        return [book[key] for key in sorted(book)]

    async def get_mode(self) -> tuple[NodeMode, str]:
        await self._commit_point()
        return self.get_mode_sync()

    def get_mode_sync(self) -> tuple[NodeMode, str]:
        self._check_open()
        mode = NodeMode(self.database.meta[api.META_MODE].decode())
        return mode, self.database.meta[api.META_MODE_REASON].decode()

    async def set_mode(self, mode: NodeMode, reason: str) -> None:
        api.check_mode(mode, reason)
        await self._commit_point()
        self.set_mode_sync(mode, reason)

    def set_mode_sync(self, mode: NodeMode, reason: str) -> None:
        self._check_open()
        api.check_mode(mode, reason)
        self.database.meta[api.META_MODE] = mode.value.encode()
        self.database.meta[api.META_MODE_REASON] = reason.encode()

    # --- checks ----------------------------------------------------------------------------

    async def integrity_check(self) -> IntegrityReport:
        await self._commit_point()
        return self.integrity_check_sync()

    def integrity_check_sync(self) -> IntegrityReport:
        """The same invariants `Store.integrity_check` checks, minus the on-disk ones."""
        self._check_open()
        problems = []
        for index, op in enumerate(self.database.op_log):
            if op.seq != index + 1:
                problems.append(f"op_log: seq {op.seq} at position {index + 1}")
            if self.database.seq_by_op_id.get(op.op_id) != op.seq:
                problems.append(f"op_log: seq {op.seq} is not indexed by its op id")
            if op.op_id in self.database.pending:
                problems.append(f"op_log: seq {op.seq} is also pending")
        for checkpoint in self.database.checkpoints.values():
            if checkpoint.log_seq > len(self.database.op_log):
                problems.append(f"checkpoint {checkpoint.height}: log_seq beyond the log")
        return IntegrityReport(not problems, tuple(problems), len(self.database.op_log))
