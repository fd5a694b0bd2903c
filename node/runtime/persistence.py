"""What the daemon needs from durable storage, and the adapters that provide it.

The driver (runtime/driver.py) talks to a `NodeLog`: append op envelopes, store checkpoint
bundles, read both back at start, keep the admin mode. `open_node_log` returns the adapter
over `swarmd.storage.store.Store` (the project's store).
Each write is durable when its coroutine returns; a write that raises wrote nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from swarmd.protocol import encoding, limits
from swarmd.protocol.errors import LocalProtocolError, ProtocolError
from swarmd.protocol.ledger.snapshot import build_snapshot
from swarmd.protocol.limits import REVERTED_OPS_MAX
from swarmd.protocol.node_core import Mode, NodeCore, Observed, PersistCheckpoint, SnapshotDue
from swarmd.protocol.ops import Op, envelope_metadata, op_id_of
from swarmd.protocol.snapshot import Manifest, encode_blob
from swarmd.protocol.telemetry import report as telemetry_report
from swarmd.storage import api as storage_api
from swarmd.storage import errors as storage_errors
from swarmd.storage.api import NewOp
from swarmd.storage.store import Store

from ..logs import get_logger

log = get_logger("swarmd.persistence")

#: Store meta key of the live state root recorded at a clean stop: [log seq, root].
LIVE_STATE_META_KEY = "live_state"
#: Rows read per query while loading the log at start: bounds memory per read.
LOAD_PAGE_ROWS = 4096
#: Store meta key of the height through which final op bodies and bundles were pruned
#: (`[storage].retain_heights`); absent: nothing pruned, a full replay is possible.
PRUNED_THROUGH_META_KEY = "pruned_through"
#: The rejoin episode in progress (protocol/node_core/rejoin.py `Rejoin.record`; empty: none),
#: so a node restarted while confirming its root is read-only and confirming again.
REJOIN_META_KEY = "rejoin"
#: Stored snapshots a restart may try, newest first, before replaying the whole log (restore.py
#: uses it; pruning keeps the log and bundles above the oldest of them).
SNAPSHOT_RESTORE_ATTEMPTS_MAX = 2
#: Mode reasons longer than this are cut (the store bounds meta values; a reason is one line).
MODE_REASON_SIZE_BYTES_MAX = 256


class NodeLog(Protocol):
    async def append_ops(self, envelopes: Sequence[bytes]) -> None: ...

    def new_ops(self, envelopes: Sequence[bytes]) -> list[NewOp]:
        """The rows `append_new_ops` writes for `envelopes` (admitted by the core already)."""
        ...

    async def append_new_ops(self, ops: Sequence[NewOp]) -> list[int]:
        """Append `ops`, skipping the ones logged before; their seqs, in order."""
        ...

    async def put_checkpoint(self, checkpoint: PersistCheckpoint) -> None: ...

    async def put_snapshot(self, height: int, state_root: bytes, blob: bytes) -> None:
        """Store a snapshot built after its checkpoint was stored (`SnapshotBuilds`); the
        store's SnapshotWithoutCheckpointError when that checkpoint is not stored."""
        ...

    def log_pages(
        self, above_height: int | None = None
    ) -> AsyncIterator[list[tuple[bytes, int, bytes]]]:
        """(author, seq, envelope) of the replayable ops (not reverted, expired or pruned) in
        log order, a page (at most LOAD_PAGE_ROWS rows read) at a time: a restart never holds
        the whole log, and skips the ops below its snapshot by author and seq, undecoded.
        With `above_height` (a restart from the snapshot at that height) only the rows the
        store's `replay_seqs` names are read: not those final at or below it."""
        ...

    def bundle_pages(self, after_height: int) -> AsyncIterator[list[bytes]]:
        """The stored checkpoint bundles above `after_height`, ascending, a page at a time."""
        ...

    async def mark_expired(self, op_ids: Sequence[bytes]) -> None:
        """Pending ops that expired or were evicted: not replayed at the next restart."""
        ...

    async def record_missing_final_heights(
        self, finals: Sequence[tuple[int, Sequence[bytes]]]
    ) -> int:
        """Backfill the final heights the store lacks for (height, final op ids in canonical
        order) pairs a restart re-finalized; returns the ops recorded (0: none missing)."""
        ...

    async def received_at_ms(self, op_ids: Sequence[bytes]) -> dict[bytes, int]:
        """When each logged op among `op_ids` was received (ms since the epoch)."""
        ...

    async def envelopes(self, op_ids: Sequence[bytes]) -> list[bytes]:
        """The logged bodies of `op_ids`, in the order asked (unknown and pruned ones left
        out): final ops the ledger no longer holds in memory."""
        ...

    async def latest_snapshot(self) -> tuple[int, bytes] | None:
        """(height, blob) of the newest stored state snapshot, or None. Raises the store's
        CorruptDatabaseError when its bytes fail their checksum."""
        ...

    async def snapshot_heights(self) -> list[int]:
        """Heights of the stored snapshots a restore may use, ascending."""
        ...

    async def pruned_through(self) -> int:
        """The height through which final op bodies and bundles were pruned (0: none)."""
        ...

    async def is_pruned(self, op_id: bytes) -> bool:
        """Whether `op_id` was logged and its body pruned (`[storage].retain_heights`)."""
        ...

    async def get_snapshot(self, height: int) -> bytes | None:
        """The snapshot blob at `height` (None: none stored); CorruptDatabaseError as above."""
        ...

    async def get_bundle(self, height: int) -> bytes | None: ...

    async def telemetry(self, days: int) -> dict[str, object]:
        """The product telemetry report of the `days` newest days (protocol/telemetry.py)."""
        ...

    async def note_conflict(self, handle: str, raised_ms: int) -> None:
        """Store when a handle conflict was first raised (wall-clock UTC ms)."""
        ...

    async def read_observed(self) -> Observed | None:
        """The stored participation and conflict record (node_core/observed.py)."""
        ...

    async def put_rollback(self, certificate: bytes, epoch: int, height: int) -> int:
        """Store an accepted rollback certificate (`PersistRollback`) and move the stored
        checkpoints above `height` out (kept as reverted); returns how many moved."""
        ...

    async def mark_reverted(
        self, op_ids: Sequence[bytes], height: int, epoch: int
    ) -> dict[bytes, bytes]:
        """Record ops a certificate reverted (`OpsReverted`) and mark them in the log; returns
        the author of each logged one (for its subscribers)."""
        ...

    async def load_rollbacks(self) -> tuple[list[bytes], list[bytes]]:
        """(certificates in the order accepted, reverted op ids in the order recorded)."""
        ...

    async def reverted_op(self, op_id: bytes) -> RevertedRecord | None:
        """Height, epoch and the logged envelope (if any) of an op a certificate reverted."""
        ...

    async def latest_height(self) -> int: ...

    async def get_mode(self) -> tuple[Mode, str]: ...

    async def set_mode(self, mode: Mode, reason: str) -> None: ...

    async def record_live_state(self, state_root: bytes) -> None: ...

    async def get_rejoin(self) -> bytes:
        """The stored rejoin episode (`Rejoin.record`), b"" when none."""
        ...

    async def set_rejoin(self, record: bytes) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RevertedRecord:
    """An op a rollback certificate reverted, as the API reports it."""

    height: int
    epoch: int
    envelope: bytes | None


def _clip_reason(reason: str) -> str:
    data = reason.encode()[:MODE_REASON_SIZE_BYTES_MAX]
    return data.decode(errors="ignore")


# --- the project's store -------------------------------------------------------------------


class StoreLog:
    """`NodeLog` over `swarmd.storage` (`OpStore`)."""

    def __init__(
        self,
        store: Any,
        api: Any,
        errors: Any,
        snapshots_kept: int | None = None,
        retain_heights: int = 0,
        expired_kept: int = limits.PENDING_OPS_MAX,
    ) -> None:
        self.store = store
        self.api = api
        self.errors = errors
        #: Final heights whose op bodies and bundles are kept (0: archive, keep everything).
        self.retain_heights = retain_heights
        #: Expired ops (pending ops that never became valid) kept in the log: the pending
        #: pool's bound, so junk is bounded on disk as in memory (`[limits].pending_ops_max`).
        self.expired_kept = expired_kept
        #: Snapshots kept when a new one is stored (None: all; see `[storage].snapshots_kept`).
        self.snapshots_kept = snapshots_kept
        #: The decoded op of an op id, when the caller knows it (the daemon: its ledger). It
        #: saves decoding each envelope again for its author and seq (~6 us an op); the id is
        #: the envelope's hash, so a known id always names this very envelope.
        self.known_op: Callable[[bytes], Op | None] | None = None

    async def append_ops(self, envelopes: Sequence[bytes]) -> None:
        await self.append_new_ops(self.new_ops(envelopes))

    def new_ops(self, envelopes: Sequence[bytes]) -> list[NewOp]:
        now_ms = int(time.time() * 1000)
        new_op = self.api.NewOp
        applied = self.api.OpStatus.APPLIED
        known_op = self.known_op
        new_ops = []
        for envelope in envelopes:
            # The core admitted it already: its metadata needs no checks.
            op_id = op_id_of(envelope)
            op = known_op(op_id) if known_op is not None else None
            if op is not None:
                author, seq = op.author, op.seq
            else:
                op_id, author, seq = envelope_metadata(envelope)
            new_ops.append(new_op(op_id, author, seq, envelope, applied, now_ms))
        return new_ops

    async def append_new_ops(self, ops: Sequence[NewOp]) -> list[int]:
        unique = list({op.op_id: op for op in ops}.values())
        seqs: dict[bytes, int] = {}
        for start in range(0, len(unique), self.api.APPEND_OPS_MAX):
            chunk = unique[start : start + self.api.APPEND_OPS_MAX]
            try:
                written = await self.store.append_ops(chunk)
            except self.errors.DuplicateOpError:
                # An op logged before (e.g. evicted from the pending pool after a restart and
                # received again): write the others one by one and skip what is already there.
                for op in chunk:
                    seqs[op.op_id] = await self._append_one(op)
            else:
                seqs.update(zip((op.op_id for op in chunk), written, strict=True))
        return [seqs[op.op_id] for op in ops]

    async def _append_one(self, op: NewOp) -> int:
        try:
            return int((await self.store.append_ops([op]))[0])
        except self.errors.DuplicateOpError:
            # Logged before. If a rollback had marked it reverted (or the pool expired it) and
            # it came back by sync, it is live again: without this it would be dropped at the
            # next restart while a later checkpoint needs it.
            logged = await self.store.get_op(op.op_id)
            if logged is None:
                return 0  # not readable as logged: skipped as before; seq 0 names no row
            if logged.status in (self.api.OpStatus.REVERTED, self.api.OpStatus.EXPIRED):
                await self.store.mark_status([op.op_id], self.api.OpStatus.APPLIED)
            return int(logged.seq)

    async def put_checkpoint(self, checkpoint: PersistCheckpoint) -> None:
        record = self.api.Checkpoint(
            checkpoint.height,
            checkpoint.checkpoint_id,
            checkpoint.state_root,
            checkpoint.bundle,
            self.store.last_seq,
        )
        # The snapshot goes in the same transaction as its checkpoint, and pruning the old
        # ones too: after a crash the store holds both or neither. So do the final heights of
        # its ops, recorded on every node: pruning reads them, and so does an offline rollback
        # (`swarmd rollback` reverts exactly the ops final above its height), so a checkpoint
        # is never stored without them.
        await self.store.put_checkpoint(
            record,
            checkpoint.snapshot,
            snapshots_kept=self.snapshots_kept,
            telemetry=checkpoint.telemetry,  # (the same write: protocol/telemetry.py)
            observed=checkpoint.observed,  # (and node_core/observed.py)
            final_op_ids=checkpoint.final_op_ids,
        )
        # One bounded pass a checkpoint (the pool marks junk EXPIRED as it drops it).
        await self.store.trim_expired(self.expired_kept, self.api.PRUNE_ROWS_MAX)
        if self.retain_heights:
            await self.prune(checkpoint.height)

    async def prune(self, final_height: int) -> tuple[int, int]:
        """One bounded prune pass after the checkpoint at `final_height` (PRUNE_ROWS_MAX op
        bodies and checkpoint rows at most): bodies of ops final at or below
        `final_height - retain_heights`, never above the oldest snapshot a restart may use
        (its bundle and the log above it stay); nothing before a snapshot exists."""
        candidates = (await self.snapshot_heights())[-SNAPSHOT_RESTORE_ATTEMPTS_MAX:]
        through = min(final_height - self.retain_heights, *candidates[:1]) if candidates else 0
        if through < 1:
            return 0, 0
        ops, checkpoints = await self.store.prune_final(through, self.api.PRUNE_ROWS_MAX)
        if (ops or checkpoints) and through > await self.pruned_through():
            await self.store.set_meta(PRUNED_THROUGH_META_KEY, str(through).encode())
        return ops, checkpoints

    async def pruned_through(self) -> int:
        value = await self.store.get_meta(PRUNED_THROUGH_META_KEY)
        return 0 if value is None else int(value)

    async def is_pruned(self, op_id: bytes) -> bool:
        logged = await self.store.get_op(op_id)
        return logged is not None and not logged.envelope

    async def put_snapshot(self, height: int, state_root: bytes, blob: bytes) -> None:
        await self.store.put_snapshot(height, state_root, blob, snapshots_kept=self.snapshots_kept)

    async def latest_snapshot(self) -> tuple[int, bytes] | None:
        snapshot = await self.store.latest_snapshot()
        return None if snapshot is None else (int(snapshot.height), bytes(snapshot.blob))

    async def record_missing_final_heights(
        self, finals: Sequence[tuple[int, Sequence[bytes]]]
    ) -> int:
        """A store upgraded from before schema v6 has no final height for the ops final before
        the upgrade (nor has one where an older version crashed between a checkpoint and its
        final heights). A height lacks them when its last op in canonical order does (a head
        of its cut: the one written last); those heights' ids are then written in order, in
        writes of at most IDS_PER_CALL_MAX ids, so a crash in between leaves that last op
        unrecorded and the next restart (or `swarmd rollback`'s check) sees the height."""
        per_call = self.api.IDS_PER_CALL_MAX
        lasts = [ids[-1] for _, ids in finals if ids]
        missing: set[bytes] = set()
        for start in range(0, len(lasts), per_call):
            missing.update(await self.store.unrecorded_final(lasts[start : start + per_call]))
        recorded = 0
        batch: list[tuple[int, Sequence[bytes]]] = []
        size = 0
        for height, ids in finals:
            if not ids or ids[-1] not in missing:
                continue
            for start in range(0, len(ids), per_call):
                piece = ids[start : start + per_call]
                if size + len(piece) > per_call:
                    recorded += await self.store.record_final_heights(batch)
                    batch, size = [], 0
                batch.append((height, piece))
                size += len(piece)
        if batch:
            recorded += await self.store.record_final_heights(batch)
        return recorded

    async def mark_expired(self, op_ids: Sequence[bytes]) -> None:
        for start in range(0, len(op_ids), self.api.APPEND_OPS_MAX):
            chunk = op_ids[start : start + self.api.APPEND_OPS_MAX]
            await self.store.mark_status(chunk, self.api.OpStatus.EXPIRED)

    async def envelopes(self, op_ids: Sequence[bytes]) -> list[bytes]:
        found: dict[bytes, bytes] = {}
        for start in range(0, len(op_ids), self.api.IDS_PER_CALL_MAX):
            for row in await self.store.get_ops(op_ids[start : start + self.api.IDS_PER_CALL_MAX]):
                if row.envelope:
                    found[bytes(row.op_id)] = bytes(row.envelope)
        return [found[op_id] for op_id in op_ids if op_id in found]

    async def received_at_ms(self, op_ids: Sequence[bytes]) -> dict[bytes, int]:
        found: dict[bytes, int] = {}
        for start in range(0, len(op_ids), self.api.APPEND_OPS_MAX):
            for row in await self.store.get_ops(op_ids[start : start + self.api.APPEND_OPS_MAX]):
                found[bytes(row.op_id)] = int(row.received_at_ms)
        return found

    async def log_pages(
        self, above_height: int | None = None
    ) -> AsyncIterator[list[tuple[bytes, int, bytes]]]:
        skipped = (self.api.OpStatus.REVERTED, self.api.OpStatus.EXPIRED)
        # Above a snapshot: the seqs of the tail (through the store's indexes, a list of ints
        # as long as the tail), then their rows a page at a time. None: the whole log.
        seqs = None if above_height is None else await self.store.replay_seqs(above_height)
        after = 0
        while True:
            if seqs is None:
                rows = await self.store.read_log(after, LOAD_PAGE_ROWS)
            else:
                rows = await self.store.read_ops_at(seqs[after : after + LOAD_PAGE_ROWS])
            # (a pruned row, its envelope empty, is below every snapshot a restore uses)
            yield [
                (row.author, row.author_seq, row.envelope)
                for row in rows
                if row.status not in skipped and row.envelope
            ]
            if seqs is not None:
                after += LOAD_PAGE_ROWS
                if after >= len(seqs):
                    return
            elif len(rows) < LOAD_PAGE_ROWS:
                return
            else:
                after = rows[-1].seq

    async def bundle_pages(self, after_height: int) -> AsyncIterator[list[bytes]]:
        height = after_height
        while True:
            checkpoints = await self.store.read_checkpoints(height, LOAD_PAGE_ROWS)
            yield [checkpoint.bundle for checkpoint in checkpoints]
            if len(checkpoints) < LOAD_PAGE_ROWS:
                return
            height = checkpoints[-1].height

    async def snapshot_heights(self) -> list[int]:
        return [int(height) for height in await self.store.snapshot_heights()]

    async def get_snapshot(self, height: int) -> bytes | None:
        snapshot = await self.store.get_snapshot(height)
        return None if snapshot is None or not snapshot.blob else bytes(snapshot.blob)

    async def note_conflict(self, handle: str, raised_ms: int) -> None:
        await self.store.note_conflict(handle, raised_ms)

    async def read_observed(self) -> Observed | None:
        observed: Observed | None = await self.store.read_observed()
        return observed

    async def telemetry(self, days: int) -> dict[str, object]:
        final_height = await self.latest_height()  # (first: a commit in between adds counts)
        records, since = await self.store.read_telemetry(days)
        return telemetry_report(records, days, since, final_height)

    async def get_bundle(self, height: int) -> bytes | None:
        checkpoint = await self.store.get_checkpoint(height)
        return None if checkpoint is None else bytes(checkpoint.bundle)

    async def latest_height(self) -> int:
        checkpoint = await self.store.latest_checkpoint()
        return 0 if checkpoint is None else int(checkpoint.height)

    async def put_rollback(self, certificate: bytes, epoch: int, height: int) -> int:
        return int(
            await self.store.put_rollback(self.api.StoredRollback(epoch, height, certificate))
        )

    async def mark_reverted(
        self, op_ids: Sequence[bytes], height: int, epoch: int
    ) -> dict[bytes, bytes]:
        authors: dict[bytes, bytes] = {}
        for start in range(0, len(op_ids), self.api.APPEND_OPS_MAX):
            chunk = op_ids[start : start + self.api.APPEND_OPS_MAX]
            await self.store.mark_reverted(chunk, height, epoch)
            for row in await self.store.get_ops(chunk):
                authors[bytes(row.op_id)] = bytes(row.author)
        return authors

    async def load_rollbacks(self) -> tuple[list[bytes], list[bytes]]:
        certificates: list[bytes] = []
        epoch = 0
        while rows := await self.store.read_rollbacks(epoch, LOAD_PAGE_ROWS):
            certificates += [bytes(row.certificate) for row in rows]
            epoch = rows[-1].epoch
        op_ids: list[bytes] = []
        seq = 0
        while rows := await self.store.read_reverted_ops(seq, LOAD_PAGE_ROWS):
            op_ids += [bytes(row.op_id) for row in rows]
            seq = rows[-1].seq
        # The core remembers the newest REVERTED_OPS_MAX (the oldest are below every final line).
        return certificates, op_ids[-REVERTED_OPS_MAX:]

    async def reverted_op(self, op_id: bytes) -> RevertedRecord | None:
        found = await self.store.get_reverted(op_id)
        if found is None:
            return None
        logged = await self.store.get_op(op_id)
        envelope = None if logged is None else bytes(logged.envelope)
        return RevertedRecord(int(found.height), int(found.epoch), envelope)

    async def get_mode(self) -> tuple[Mode, str]:
        mode, reason = await self.store.get_mode()
        return Mode(str(mode.value).replace("_", "-")), str(reason)

    async def set_mode(self, mode: Mode, reason: str) -> None:
        await self.store.set_mode(
            self.api.NodeMode(mode.value.replace("-", "_")), _clip_reason(reason)
        )

    async def record_live_state(self, state_root: bytes) -> None:
        """Remember the provisional state root at the current end of the log."""
        value = encoding.encode([self.store.last_seq, state_root])
        await self.store.set_meta(LIVE_STATE_META_KEY, value)

    async def get_rejoin(self) -> bytes:
        return await self.store.get_meta(REJOIN_META_KEY) or b""

    async def set_rejoin(self, record: bytes) -> None:
        await self.store.set_meta(REJOIN_META_KEY, record)

    async def close(self) -> None:
        await self.store.close()


async def open_node_log(
    path: Path,
    *,
    network_id: bytes,
    node_key: bytes,
    synchronous: str = "FULL",
    snapshots_kept: int | None = None,
    retain_heights: int = 0,
    expired_kept: int = limits.PENDING_OPS_MAX,
) -> NodeLog:
    """The node's log over the project's store (`swarmd.storage.store.Store`)."""
    if snapshots_kept is not None:
        storage_api.check_snapshots_kept(snapshots_kept)
    store = await Store.open(
        path, network_id=network_id, node_key=node_key, synchronous=synchronous
    )
    return StoreLog(
        store, storage_api, storage_errors, snapshots_kept, retain_heights, expired_kept
    )


class LogAppender:
    """A `NodeLog` as the group committer's `OpAppender` (`append_new_ops`)."""

    def __init__(self, node_log: NodeLog) -> None:
        self.node_log = node_log

    async def append_ops(self, ops: Sequence[NewOp]) -> list[int]:
        return await self.node_log.append_new_ops(ops)


# --- building snapshots off the event loop ----------------------------------------------------


class StoredOps:
    """Reads of final ops older than the ledger's in-memory window, for peers
    (`StoredOpsWanted`), at most limits.STORED_OPS_READS_INFLIGHT_MAX at once: a request
    beyond that is refused (counted in `refused`; the peer asks again)."""

    def __init__(self, node_log: NodeLog) -> None:
        self.node_log = node_log
        self.inflight = 0
        self.served = 0
        self.refused = 0

    async def read(self, op_ids: Sequence[bytes]) -> list[bytes] | None:
        """The logged bodies of `op_ids` (see `NodeLog.envelopes`), or None when refused."""
        if self.inflight >= limits.STORED_OPS_READS_INFLIGHT_MAX:
            self.refused += 1
            return None
        self.inflight += 1
        try:
            envelopes = await self.node_log.envelopes(op_ids)
        finally:
            self.inflight -= 1
        self.served += len(envelopes)
        return envelopes


class SnapshotBuildQueue:
    """Which deferred snapshot build runs next, by the rule "newest due waits".

    One build runs at a time. A SnapshotDue that arrives while one runs waits; a newer one
    replaces the waiting one, which is skipped (counted in `skipped`): it would be older than
    the next snapshot when done, and each waiting one holds a copy of the whole state. The
    running build is never abandoned, since its snapshot serves peers and is stored until the
    next one is ready. So at most two state copies are alive, and a node whose builds take
    longer than the snapshot interval still makes every other snapshot or so.
    """

    def __init__(self) -> None:
        self.running: SnapshotDue | None = None
        self.waiting: SnapshotDue | None = None
        self.skipped = 0

    def offer(self, due: SnapshotDue) -> SnapshotDue | None:
        """`due` when it should start now, else None (it waits)."""
        if self.running is None:
            self.running = due
            return due
        if self.waiting is not None:
            self.skipped += 1
        self.waiting = due
        return None

    def finished(self) -> SnapshotDue | None:
        """The running build is done: the waiting one, which now runs, or None."""
        self.running, self.waiting = self.waiting, None
        return self.running


def build_snapshot_blob(due: SnapshotDue) -> tuple[Manifest, list[bytes], bytes]:
    """The worker thread's job: the snapshot of `due.state` and its stored form."""
    manifest, chunks = build_snapshot(due.state, due.height, due.checkpoint_id, due.state_root)
    return manifest, chunks, encode_blob(manifest, chunks)


class SnapshotBuilds:
    """Runs the core's SnapshotDue builds in one worker thread (`SnapshotBuildQueue`'s rule),
    hands each result to `NodeCore.snapshot_built` and stores the blobs it accepts.

    `committed()` waits for the commits queued so far (the daemon's group commit barrier):
    the snapshot's checkpoint was queued before its SnapshotDue, and the store only takes a
    snapshot beside its stored checkpoint. `stored(height, size_bytes)` reports each one.
    The build holds the GIL while it runs Python code, so the loop still shares the CPU with
    it, but in switch-interval slices instead of one stall of the whole build.
    """

    def __init__(
        self,
        core: NodeCore,
        node_log: NodeLog,
        committed: Callable[[], Awaitable[None]],
        stored: Callable[[int, int], None],
    ) -> None:
        self.core = core
        self.node_log = node_log
        self.committed = committed
        self.stored = stored
        self.queue = SnapshotBuildQueue()
        self.builds_stored = 0
        self.builds_not_stored = 0
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="swarmd-snapshot"
        )
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def due(self, event: SnapshotDue) -> None:
        start = self.queue.offer(event)
        if start is not None:
            self._idle.clear()
            self._task = asyncio.create_task(self._run(start))

    async def wait_idle(self) -> None:
        """Until no build runs or waits (every accepted snapshot is stored or failed)."""
        await self._idle.wait()

    async def stop(self) -> None:
        """Drop the waiting build and stop waiting for the running one (its thread finishes
        on its own; nothing is stored after this)."""
        self.queue.waiting = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, due: SnapshotDue | None) -> None:
        try:
            while due is not None:
                await self._build_and_store(due)
                due = self.queue.finished()
        finally:
            self._idle.set()

    async def _build_and_store(self, due: SnapshotDue) -> None:
        loop = asyncio.get_running_loop()
        try:
            try:
                manifest, chunks, blob = await loop.run_in_executor(
                    self._executor, build_snapshot_blob, due
                )
            finally:
                # The worker is done reading (a cancelled await leaves it frozen: only at stop).
                if not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    self.core.snapshot_state_released(due.state)
        except Exception as exc:
            # A state over the snapshot limits (LocalProtocolError), or a bug: either way this
            # snapshot is skipped and the queue goes on (a snapshot is derived data).
            self.core.snapshot_build_failed(due.height)
            code = exc.code if isinstance(exc, LocalProtocolError) else type(exc).__name__
            log.warning("snapshot_failed", height=due.height, error=code)
            return
        if not self.core.snapshot_built(manifest, chunks, due.bundle, loop.time()):
            log.info("snapshot_stale", height=due.height)
            return
        with contextlib.suppress(Exception):
            await self.committed()  # a failed commit shows as a missing checkpoint below
        try:
            await self.node_log.put_snapshot(due.height, due.state_root, blob)
        except ProtocolError as exc:
            # Its checkpoint's commit failed (or a rollback reverted it): the snapshot still
            # serves peers from memory, and the next one will be stored.
            self.builds_not_stored += 1
            log.warning("snapshot_not_stored", height=due.height, error=exc.code)
            return
        self.builds_stored += 1
        self.stored(due.height, len(blob))
