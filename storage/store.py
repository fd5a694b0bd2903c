"""The durable store: SQLite through aiosqlite, WAL journal, one writer.

Durability rule: a write is acknowledged (its coroutine returns) only after the transaction
holding it committed with `synchronous=FULL`, i.e. after the WAL was fsynced. A write that
raises wrote nothing. Reads go through a second, query-only connection and so see committed
data only, never the middle of a transaction.

One aiosqlite call per batch: each call is a hop to aiosqlite's worker thread (22-60 us here),
so `append_ops` writes a whole batch (up to OPS_PER_STATEMENT_MAX ops) with a single multi-row
INSERT in autocommit mode: SQLite runs one statement as one transaction, so the batch commits
atomically in that one hop. Writes that need several statements (a checkpoint with its
snapshot, a batch above OPS_PER_STATEMENT_MAX) use BEGIN IMMEDIATE ... COMMIT; they are rare.

Opening checks, before anything is written: the file is an SQLite database that passes
`PRAGMA quick_check`, it was made by swarmd for this network id (and node key), and its schema
is not newer than this code. Each failure is a typed StorageError; the file is left as it was.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any, Final, TypeVar

import aiosqlite

from . import api, telemetry_sql
from .api import (
    Checkpoint,
    IntegrityReport,
    LoggedOp,
    NewOp,
    OpStatus,
    PendingOp,
    RevertedCheckpoint,
    StateSnapshot,
    StoredRollback,
)
from .errors import (
    CheckpointConflictError,
    CorruptDatabaseError,
    DuplicateOpError,
    SnapshotWithoutCheckpointError,
    StorageError,
    StoreClosedError,
    StoreUsageError,
    from_sqlite,
)
from .failpoints import failpoint
from .opening import (
    QUICK_CHECK_LINES_QUOTED,
    FileLock,
    NoLock,
    check_file,
    check_path,
    prepare,
    stored_version,
)
from .rollback_sql import (
    IDS_PER_STATEMENT_MAX,
    SELECT_ROLLBACKS,
    SELECT_UNRECORDED_FINAL,
    final_height_statements,
    missing_final_heights_statements,
    revert_final_above_statements,
)
from .schema import SCHEMA_VERSION
from .store_records import _OP_COLUMNS, StoreRecords, _op_from_row
from .telemetry_sql import Activity, Observed, checkpoint_statements

T = TypeVar("T")

#: FULL fsyncs the WAL at every commit: an acknowledged op survives a power cut. NORMAL fsyncs
#: only at WAL checkpoints: still safe against a process crash (kill -9), but the last commits
#: before a power cut or kernel panic may be lost (see docs/parts/storage.md).
SYNCHRONOUS_MODES: Final = ("FULL", "NORMAL")
#: Ops in one INSERT statement: 8 parameters each stays far below SQLite's default limit of
#: 32766 bound parameters (3.32+), and 1000 rows already amortize a commit's fsync.
OPS_PER_STATEMENT_MAX: Final = 1_000

if sqlite3.sqlite_version_info < (3, 35, 0):  # pragma: no cover - checked at import
    raise ImportError(f"swarmd.storage needs SQLite >= 3.35, found {sqlite3.sqlite_version}")


@lru_cache(maxsize=64)
def _placeholders(rows: int, columns: int) -> str:
    row = "(" + ",".join("?" * columns) + ")"
    return ",".join([row] * rows)


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _checkpoint_from_row(row: Sequence[Any], path: str) -> Checkpoint:
    checkpoint = Checkpoint(*row[:5])
    if api.checkpoint_crc(checkpoint) != row[5]:
        raise CorruptDatabaseError(f"{path}: checkpoint {row[0]} does not match its checksum")
    return checkpoint


class Store(StoreRecords):
    """The SQLite op store. Open it with `await Store.open(...)`; see api.OpStore."""

    def __init__(
        self,
        path: str,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        file_lock: FileLock | NoLock,
        last_seq: int,
        *,
        read_only: bool = False,
    ) -> None:
        self.path = path
        #: Opened by `open_read_only`: every write raises StoreUsageError.
        self.read_only = read_only
        self._writer = writer
        self._reader = reader
        self._file_lock = file_lock
        self._last_seq = last_seq
        self._write_lock = asyncio.Lock()
        self._closed = False

    # --- opening and closing ---------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        network_id: bytes,
        node_key: bytes | None = None,
        synchronous: str = "FULL",
    ) -> Store:
        """Open (or create) the database at `path` for `network_id`.

        `node_key` is required to create a database and, when given, must match the stored
        one. Raises CorruptDatabaseError, ForeignDatabaseError, WrongNetworkError,
        WrongNodeKeyError, SchemaTooNewError, DatabaseLockedError or StorageIOError.
        """
        api.check_network_id(network_id)
        if node_key is not None:
            api.check_node_key(node_key)
        if synchronous not in SYNCHRONOUS_MODES:
            raise StoreUsageError(f"synchronous must be one of {SYNCHRONOUS_MODES}")
        text_path = os.fspath(path)
        check_path(text_path)
        file_lock = FileLock(text_path)
        connections: list[aiosqlite.Connection] = []
        try:
            writer = await aiosqlite.connect(text_path, isolation_level=None)
            connections.append(writer)
            await check_file(writer, text_path)
            await prepare(writer, text_path, network_id, node_key, synchronous)
            reader = await aiosqlite.connect(text_path, isolation_level=None)
            connections.append(reader)
            await reader.execute("PRAGMA query_only = ON")
            rows = await writer.execute_fetchall("SELECT max(seq) FROM op_log")
            last_seq = next(iter(rows))[0] or 0
        except BaseException as error:
            for connection in connections:
                await connection.close()
            file_lock.release()
            if isinstance(error, sqlite3.Error):
                typed = from_sqlite(error, text_path)
                if typed is not None:
                    raise typed from error
            raise
        return cls(text_path, writer, reader, file_lock, last_seq)

    @classmethod
    async def open_read_only(cls, path: str | os.PathLike[str], *, network_id: bytes) -> Store:
        """Open an existing, up-to-date store for reading only, beside the process that owns
        it (a running node): no lock is taken, nothing is migrated or written, and every
        write raises StoreUsageError. Raises the typed errors of `open`, and SchemaTooOldError
        (StoreUsageError) when the file needs a migration only its owner may run.
        """
        api.check_network_id(network_id)
        text_path = os.fspath(path)
        if not os.path.exists(text_path):
            raise StoreUsageError(f"{text_path} does not exist")
        check_path(text_path)
        uri = "file:" + urllib.parse.quote(text_path) + "?mode=ro"
        connection: aiosqlite.Connection | None = None
        try:
            connection = await aiosqlite.connect(uri, uri=True, isolation_level=None)
            await connection.execute("PRAGMA query_only = ON")
            await check_file(connection, text_path)
            version = await stored_version(connection, text_path, network_id, None)
            if version != SCHEMA_VERSION:
                raise StoreUsageError(
                    f"{text_path} has schema version {version}, not {SCHEMA_VERSION}: start the "
                    "node once (it migrates the store) before reading it read-only"
                )
            rows = await connection.execute_fetchall("SELECT max(seq) FROM op_log")
            last_seq = next(iter(rows))[0] or 0
        except BaseException as error:
            if connection is not None:
                await connection.close()
            if isinstance(error, sqlite3.Error):
                typed = from_sqlite(error, text_path)
                if typed is not None:
                    raise typed from error
            raise
        return cls(text_path, connection, connection, NoLock(), last_seq, read_only=True)

    async def close(self) -> None:
        """Wait for the write in progress, then close. Idempotent."""
        if self._closed:
            return
        async with self._write_lock:
            self._closed = True
            await self._reader.close()
            if self._writer is not self._reader:
                await self._writer.close()
            self._file_lock.release()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def last_seq(self) -> int:
        """The seq of the last committed op (0 for an empty log)."""
        return self._last_seq

    # --- the op log ------------------------------------------------------------------------

    async def append_ops(self, ops: Sequence[NewOp]) -> list[int]:
        """Append `ops` in one transaction; return their seqs once it committed durably.

        Appending an op removes it from the pending pool in the same transaction. Raises
        DuplicateOpError (nothing written) if an op id is already logged or repeated.
        """
        api.check_new_ops(ops)
        if len(ops) != len({op.op_id for op in ops}):
            raise DuplicateOpError("the same op id appears twice in one batch")
        if not ops:
            return []

        async def work() -> list[int]:
            first = self._last_seq + 1
            statements = []
            for start in range(0, len(ops), OPS_PER_STATEMENT_MAX):
                chunk = ops[start : start + OPS_PER_STATEMENT_MAX]
                parameters: list[object] = []
                op_crc = api.op_crc
                for seq, (op_id, author, author_seq, envelope, status, received_at_ms) in enumerate(
                    chunk, start=first + start
                ):
                    crc = op_crc(seq, op_id, author, author_seq, envelope)
                    parameters += (seq, op_id, author, author_seq, envelope)
                    parameters += (status.value, received_at_ms, crc)
                sql = f"INSERT INTO op_log ({_OP_COLUMNS}) VALUES {_placeholders(len(chunk), 8)}"
                statements.append((sql, parameters))
            try:
                await self._execute_atomically("append_ops", statements)
            except sqlite3.IntegrityError as error:
                if "op_log.op_id" not in str(error):
                    raise
                raise DuplicateOpError("an op id in the batch is already logged") from None
            self._last_seq = first + len(ops) - 1
            return list(range(first, self._last_seq + 1))

        return await self._write(work)

    async def mark_status(self, op_ids: Sequence[bytes], status: OpStatus) -> int:
        """Set the status of logged ops (the signed bytes never change). Returns rows changed."""
        api.check_op_ids(op_ids)
        api.check_status(status)
        statements = [
            (
                f"UPDATE op_log SET status = ? WHERE op_id IN ({_placeholders(len(chunk), 1)})",
                [int(status), *chunk],
            )
            for chunk in _chunks(op_ids, IDS_PER_STATEMENT_MAX)
        ]
        return await self._write(lambda: self._changed_rows("mark_status", statements))

    async def mark_final(self, op_ids: Sequence[bytes], height: int) -> int:
        """Record the final height of logged ops (what `prune_final` prunes by)."""
        api.check_op_ids(op_ids)
        api.check_read_range(height, 1)
        statements = final_height_statements(op_ids, height)
        return await self._write(lambda: self._changed_rows("mark_final", statements))

    async def record_final_heights(self, heights: Sequence[tuple[int, Sequence[bytes]]]) -> int:
        """See `api.OpStore.record_final_heights` (the backfill of a store older than v6)."""
        api.check_final_heights(heights)
        statements = missing_final_heights_statements(heights)
        return await self._write(lambda: self._changed_rows("record_final", statements))

    async def unrecorded_final(self, op_ids: Sequence[bytes]) -> list[bytes]:
        """See `api.OpStore.unrecorded_final` (through the op_id index; no body is read)."""
        api.check_op_ids(op_ids)
        unrecorded: set[bytes] = set()
        for chunk in _chunks(op_ids, IDS_PER_STATEMENT_MAX):
            sql = SELECT_UNRECORDED_FINAL + f"({_placeholders(len(chunk), 1)})"
            unrecorded.update(bytes(row[0]) for row in await self._read(sql, chunk))
        return [op_id for op_id in op_ids if op_id in unrecorded]

    async def prune_final(self, through_height: int, limit: int) -> tuple[int, int]:
        """Prune the bodies of applied ops final at or below `through_height` (the row keeps
        its id, author, seq and status; its envelope becomes empty) and delete the checkpoint
        rows below it, at most `limit` of each (PRUNE_ROWS_MAX). Returns (ops, checkpoints)."""
        api.check_read_range(through_height, 1)
        if not 1 <= limit <= api.PRUNE_ROWS_MAX:
            raise StoreUsageError(f"prune limit must be 1..{api.PRUNE_ROWS_MAX}")

        async def work() -> tuple[int, int]:
            rows = await self._writer.execute_fetchall(
                "SELECT seq, op_id, author, author_seq FROM op_log WHERE final_height <= ? "
                "AND final_height IS NOT NULL AND status = ? ORDER BY final_height LIMIT ?",
                (through_height, int(OpStatus.APPLIED), limit),
            )
            pruned = [
                (api.op_crc(seq, op_id, author, author_seq, b""), seq)
                for seq, op_id, author, author_seq in rows
            ]
            await self._writer.execute("BEGIN IMMEDIATE")
            await self._writer.executemany(
                "UPDATE op_log SET envelope = X'', crc = ?, final_height = NULL WHERE seq = ?",
                pruned,
            )
            failpoint("prune_final.in_transaction")
            cursor = await self._writer.execute(
                "DELETE FROM checkpoints WHERE height IN (SELECT height FROM checkpoints "
                "WHERE height < ? ORDER BY height LIMIT ?)",
                (through_height, limit),
            )
            await self._writer.execute("COMMIT")
            return len(pruned), cursor.rowcount

        return await self._write(work)

    async def trim_expired(self, keep: int, limit: int) -> int:
        """Delete expired ops (pending ops that never became valid) beyond the newest `keep`,
        at most `limit` (PRUNE_ROWS_MAX) a call: junk is bounded on disk as in memory. The
        newest expired row stays (keep >= 1), so the last seq never goes back."""
        if keep < 1 or not 1 <= limit <= api.PRUNE_ROWS_MAX:
            raise StoreUsageError(f"need keep >= 1 and a limit of 1..{api.PRUNE_ROWS_MAX}")

        async def work() -> int:
            rows = await self._writer.execute_fetchall(
                "SELECT seq FROM op_log WHERE status = 4 ORDER BY seq DESC LIMIT ? OFFSET ?",
                (limit, keep),
            )
            if not rows:
                return 0
            seqs = [row[0] for row in rows]
            deleted = await self._deleted_rows() + len(seqs)
            statements: list[tuple[str, Sequence[object]]] = [
                (f"DELETE FROM op_log WHERE seq IN ({_placeholders(len(seqs), 1)})", seqs),
                (
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    [api.META_OP_LOG_DELETED, str(deleted).encode()],
                ),
            ]
            return (await self._execute_atomically("trim_expired", statements))[0]

        return await self._write(work)

    async def _deleted_rows(self) -> int:
        rows = await self._read("SELECT value FROM meta WHERE key = ?", (api.META_OP_LOG_DELETED,))
        return int(bytes(rows[0][0])) if rows else 0

    async def mark_reverted_after(self, log_seq: int) -> int:
        """Rollback: mark every applied op after `log_seq` reverted (kept, never deleted)."""
        api.check_read_range(log_seq, 1)
        statements = [
            (
                "UPDATE op_log SET status = ? WHERE seq > ? AND status = ?",
                [int(OpStatus.REVERTED), log_seq, int(OpStatus.APPLIED)],
            )
        ]
        return await self._write(lambda: self._changed_rows("mark_reverted", statements))

    async def roll_back_to(self, height: int) -> tuple[int, int]:
        """Rollback to the final checkpoint at `height` (0 = genesis), in one transaction:
        move the checkpoints above it to `reverted_checkpoints` and mark every applied op
        final above `height` (op_log.final_height, recorded by `put_checkpoint`) reverted, by
        finality, not by log position: an op logged before checkpoint `height` but final
        above it is reverted, a pending op (never final) stays APPLIED. The reverted ops
        lose their final height. Nothing signed is deleted (the snapshots above `height`,
        derived state, are). Returns (reverted ops, reverted checkpoints); StoreUsageError
        when no checkpoint is stored at `height`."""
        api.check_read_range(height, 1)

        async def work() -> tuple[int, int]:
            if height > 0:
                rows = await self._writer.execute_fetchall(
                    "SELECT 1 FROM checkpoints WHERE height = ?", (height,)
                )
                if not list(rows):
                    raise StoreUsageError(f"no checkpoint is stored at height {height}")
            # Checkpoints go first in the transaction only for readability: it commits whole.
            statements: list[tuple[str, Sequence[object]]] = [
                (
                    "INSERT INTO reverted_checkpoints (height, checkpoint_id, state_root, bundle, "
                    "log_seq, crc, rolled_back_to) SELECT height, checkpoint_id, state_root, "
                    "bundle, log_seq, crc, ? FROM checkpoints WHERE height > ? ORDER BY height",
                    [height, height],
                ),
                ("DELETE FROM checkpoints WHERE height > ?", [height]),
                *revert_final_above_statements(height),
                # Snapshots are derived state: those of reverted heights are worthless.
                ("DELETE FROM state_snapshots WHERE height > ?", [height]),
                # The product telemetry of the reverted heights (as put_rollback drops it).
                *telemetry_sql.rollback_statements(height),
            ]
            counts = await self._execute_atomically("roll_back", statements)
            return counts[2], counts[1]

        return await self._write(work)

    async def read_reverted_checkpoints(
        self, after_revert_seq: int, limit: int
    ) -> list[RevertedCheckpoint]:
        """Up to `limit` checkpoints moved out by rollbacks, in the order they were reverted."""
        api.check_read_range(after_revert_seq, limit)
        rows = await self._read(
            "SELECT height, checkpoint_id, state_root, bundle, log_seq, crc, revert_seq, "
            "rolled_back_to FROM reverted_checkpoints WHERE revert_seq > ? "
            "ORDER BY revert_seq LIMIT ?",
            (after_revert_seq, limit),
        )
        return [
            RevertedCheckpoint(row[6], row[7], _checkpoint_from_row(row[:6], self.path))
            for row in rows
        ]

    async def read_log(self, after_seq: int, limit: int) -> list[LoggedOp]:
        """Up to `limit` (<= READ_LOG_LIMIT_MAX) logged ops with seq > after_seq, in order."""
        api.check_read_range(after_seq, limit)
        rows = await self._read(
            f"SELECT {_OP_COLUMNS} FROM op_log WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        self.rows_read += len(rows)
        return [_op_from_row(row, self.path) for row in rows]

    async def get_op(self, op_id: bytes) -> LoggedOp | None:
        found = await self.get_ops([op_id])
        return found[0] if found else None

    async def get_ops(self, op_ids: Sequence[bytes]) -> list[LoggedOp]:
        """The logged ops among `op_ids`, in log order (unknown ids are left out)."""
        api.check_op_ids(op_ids)
        found: list[LoggedOp] = []
        for chunk in _chunks(op_ids, IDS_PER_STATEMENT_MAX):
            sql = f"SELECT {_OP_COLUMNS} FROM op_log WHERE op_id IN "
            rows = await self._read(sql + f"({_placeholders(len(chunk), 1)})", chunk)
            found += (_op_from_row(row, self.path) for row in rows)
        return sorted(found, key=lambda op: op.seq)

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
        """Store a final checkpoint, its ops' final heights and its derived state atomically.

        An empty `snapshot_blob` stores no snapshot. With `snapshots_kept`, the same
        transaction deletes every snapshot but the newest `snapshots_kept`. Storing the same
        checkpoint again is a no-op; another one at the same height (or the same id at another
        height) raises CheckpointConflictError.
        """
        api.check_checkpoint(checkpoint, snapshot_blob, snapshots_kept, final_op_ids)
        snapshot = StateSnapshot(checkpoint.height, checkpoint.state_root, snapshot_blob)

        async def work() -> None:
            rows = await self._writer.execute_fetchall(
                "SELECT height, checkpoint_id FROM checkpoints WHERE height = ? OR "
                "checkpoint_id = ?",
                (checkpoint.height, checkpoint.checkpoint_id),
            )
            existing = {(row[0], row[1]) for row in rows}
            if existing == {(checkpoint.height, checkpoint.checkpoint_id)}:
                return
            if existing:
                raise CheckpointConflictError(
                    f"another checkpoint is stored at height {checkpoint.height}"
                )
            statements: list[tuple[str, Sequence[object]]] = [
                (
                    "INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        *(checkpoint.height, checkpoint.checkpoint_id, checkpoint.state_root),
                        *(checkpoint.bundle, checkpoint.log_seq, api.checkpoint_crc(checkpoint)),
                    ],
                ),
            ]
            if snapshot_blob:
                statements.append(
                    (
                        "INSERT OR REPLACE INTO state_snapshots VALUES (?, ?, ?, ?)",
                        [
                            snapshot.height,
                            snapshot.state_root,
                            snapshot.blob,
                            api.snapshot_crc(snapshot),
                        ],
                    )
                )
                if snapshots_kept is not None:
                    statements.append(_prune_snapshots_statement(snapshots_kept))
            statements += checkpoint_statements(telemetry, observed)
            statements += final_height_statements(final_op_ids, checkpoint.height)
            await self._execute_atomically("put_checkpoint", statements)

        await self._write(work)

    async def put_snapshot(
        self, height: int, state_root: bytes, blob: bytes, *, snapshots_kept: int | None = None
    ) -> None:
        """See `api.OpStore.put_snapshot`."""
        snapshot = StateSnapshot(height, state_root, blob)
        api.check_snapshot(snapshot, snapshots_kept)

        async def work() -> None:
            # Checked inside the write lock, so no rollback can slip in between.
            rows = await self._writer.execute_fetchall(
                "SELECT state_root FROM checkpoints WHERE height = ?", (height,)
            )
            if [bytes(row[0]) for row in rows] != [state_root]:
                raise SnapshotWithoutCheckpointError(
                    f"no checkpoint with this state root is stored at height {height}"
                )
            statements: list[tuple[str, Sequence[object]]] = [
                (
                    "INSERT OR REPLACE INTO state_snapshots VALUES (?, ?, ?, ?)",
                    [height, state_root, blob, api.snapshot_crc(snapshot)],
                )
            ]
            if snapshots_kept is not None:
                statements.append(_prune_snapshots_statement(snapshots_kept))
            await self._execute_atomically("put_snapshot", statements)

        await self._write(work)

    async def latest_checkpoint(self) -> Checkpoint | None:
        rows = await self._read(
            "SELECT height, checkpoint_id, state_root, bundle, log_seq, crc FROM checkpoints "
            "ORDER BY height DESC LIMIT 1",
            (),
        )
        return _checkpoint_from_row(rows[0], self.path) if rows else None

    async def get_checkpoint(self, height: int) -> Checkpoint | None:
        found = await self.read_checkpoints(height - 1, 1) if height >= 1 else []
        return found[0] if found and found[0].height == height else None

    async def read_checkpoints(self, after_height: int, limit: int) -> list[Checkpoint]:
        """Up to `limit` checkpoints with height > after_height, in order."""
        api.check_read_range(after_height, limit)
        rows = await self._read(
            "SELECT height, checkpoint_id, state_root, bundle, log_seq, crc FROM checkpoints "
            "WHERE height > ? ORDER BY height LIMIT ?",
            (after_height, limit),
        )
        return [_checkpoint_from_row(row, self.path) for row in rows]

    async def get_snapshot(self, height: int) -> StateSnapshot | None:
        rows = await self._read(
            "SELECT height, state_root, blob, crc FROM state_snapshots WHERE height = ?",
            (height,),
        )
        if not rows:
            return None
        snapshot = StateSnapshot(*rows[0][:3])
        if api.snapshot_crc(snapshot) != rows[0][3]:
            raise CorruptDatabaseError(f"{self.path}: snapshot {height} fails its checksum")
        return snapshot

    async def latest_snapshot(self) -> StateSnapshot | None:
        heights = await self._snapshot_heights("DESC LIMIT 1")
        return await self.get_snapshot(heights[0]) if heights else None

    async def snapshot_heights(self) -> list[int]:
        return await self._snapshot_heights("")

    async def _snapshot_heights(self, order_tail: str) -> list[int]:
        # Joined with the stored checkpoint so that a snapshot of a height a rollback reverted
        # (or an empty row written by an older version) is never offered for a restore.
        rows = await self._read(
            "SELECT s.height FROM state_snapshots AS s JOIN checkpoints AS c "
            "ON c.height = s.height AND c.state_root = s.state_root "
            f"WHERE length(s.blob) > 0 ORDER BY s.height {order_tail}",
            (),
        )
        return sorted(int(row[0]) for row in rows)

    async def delete_snapshots_below(self, height: int) -> int:
        """Drop derived snapshots below `height` (the log and checkpoints are kept)."""
        api.check_read_range(height, 1)
        statements = [("DELETE FROM state_snapshots WHERE height < ?", [height])]
        return await self._write(lambda: self._changed_rows("delete_snapshots", statements))

    # --- the pending pool ------------------------------------------------------------------

    async def put_pending(self, ops: Sequence[PendingOp]) -> int:
        """Add ops to the durable pending pool; ids already pending or logged are skipped.
        Returns the number added."""
        api.check_pending(ops)
        statements = [
            (
                f"INSERT OR IGNORE INTO pending_ops VALUES {_placeholders(len(chunk), 3)}",
                [value for op in chunk for value in (op.op_id, op.envelope, op.received_at_ms)],
            )
            for chunk in _chunks(ops, IDS_PER_STATEMENT_MAX)
        ]
        return await self._write(lambda: self._changed_rows("put_pending", statements))

    async def delete_pending(self, op_ids: Sequence[bytes]) -> int:
        api.check_op_ids(op_ids)
        statements = [
            (f"DELETE FROM pending_ops WHERE op_id IN ({_placeholders(len(chunk), 1)})", chunk)
            for chunk in _chunks(op_ids, IDS_PER_STATEMENT_MAX)
        ]
        return await self._write(lambda: self._changed_rows("delete_pending", statements))

    async def load_pending(self) -> list[PendingOp]:
        """The pending pool, oldest received first (at most PENDING_OPS_STORED_MAX ops)."""
        rows = await self._read(
            "SELECT op_id, envelope, received_at_ms FROM pending_ops "
            "ORDER BY received_at_ms, op_id LIMIT ?",
            (api.PENDING_OPS_STORED_MAX,),
        )
        return [PendingOp(*row) for row in rows]

    # --- meta and modes --------------------------------------------------------------------

    async def get_meta(self, key: str) -> bytes | None:
        api.check_meta(key)
        rows = await self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return bytes(rows[0][0]) if rows else None

    async def set_meta(self, key: str, value: bytes) -> None:
        api.check_meta(key, value, writing=True)
        statements = [("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])]
        await self._write(lambda: self._changed_rows("set_meta", statements))

    # --- checks ----------------------------------------------------------------------------

    async def integrity_check(self) -> IntegrityReport:
        """A full check: SQLite's integrity_check, every row's checksum (ops, checkpoints,
        snapshots, rollback certificates), seqs 1..n without a gap, checkpoints inside the
        log. Reports problems instead of raising them."""
        self._check_open()
        problems: list[str] = []
        rows = await self._read("PRAGMA integrity_check", ())
        if [tuple(row) for row in rows] != [("ok",)]:
            problems += (f"sqlite: {row[0]}" for row in rows[:QUICK_CHECK_LINES_QUOTED])
        ops_checked = await self._scan_log(problems)
        checkpoints = await self._read("SELECT * FROM checkpoints ORDER BY height", ())
        for row in checkpoints:
            checkpoint = Checkpoint(*row[:5])
            if api.checkpoint_crc(checkpoint) != row[5]:
                problems.append(f"checkpoint {checkpoint.height}: checksum mismatch")
            if checkpoint.log_seq > ops_checked:
                problems.append(f"checkpoint {checkpoint.height}: log_seq beyond the log")
        for row in await self._read("SELECT * FROM state_snapshots", ()):
            if api.snapshot_crc(StateSnapshot(*row[:3])) != row[3]:
                problems.append(f"snapshot {row[0]}: checksum mismatch")
        for row in await self._read(SELECT_ROLLBACKS, (0, 2**63 - 1)):
            if api.rollback_crc(StoredRollback(row[0], row[1], bytes(row[2]))) != row[3]:
                problems.append(f"rollback certificate of epoch {row[0]}: checksum mismatch")
        return IntegrityReport(not problems, tuple(problems), ops_checked)

    async def _scan_log(self, problems: list[str]) -> int:
        expected_seq = 1
        gaps: list[str] = []
        missing = 0
        while True:
            rows = await self._read(
                f"SELECT {_OP_COLUMNS} FROM op_log WHERE seq >= ? ORDER BY seq LIMIT ?",
                (expected_seq, api.READ_LOG_LIMIT_MAX),
            )
            for row in rows:
                if row[0] != expected_seq:
                    gaps.append(f"op_log: seq {row[0]} follows {expected_seq - 1}")
                    missing += row[0] - expected_seq
                try:
                    _op_from_row(row, self.path)
                except CorruptDatabaseError as error:
                    problems.append(error.message)
                expected_seq = row[0] + 1
            if len(rows) < api.READ_LOG_LIMIT_MAX:
                # Gaps are expected only where trim_expired deleted expired rows.
                deleted = await self._deleted_rows()
                if missing != deleted:
                    problems += gaps[:QUICK_CHECK_LINES_QUOTED]
                    problems.append(f"op_log: {missing} seqs missing, {deleted} trimmed")
                return expected_seq - 1

    # --- plumbing --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{self.path} is closed")

    async def _write(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run one write under the writer lock, shielded: a cancelled caller cannot stop a
        transaction half way, so the write commits or rolls back as a whole either way."""
        self._check_open()
        if self.read_only:
            raise StoreUsageError(f"{self.path} is open read-only")
        task = asyncio.ensure_future(self._locked_write(work))
        task.add_done_callback(_retrieve_exception)
        return await asyncio.shield(task)

    async def _locked_write(self, work: Callable[[], Awaitable[T]]) -> T:
        async with self._write_lock:
            self._check_open()
            try:
                return await work()
            except BaseException as error:
                await self._recover_after_failed_write()
                if isinstance(error, sqlite3.Error):
                    typed = from_sqlite(error, self.path)
                    if typed is not None:
                        raise typed from error
                raise

    async def _recover_after_failed_write(self) -> None:
        if self._writer.in_transaction:
            await self._writer.execute("ROLLBACK")
        rows = await self._writer.execute_fetchall("SELECT max(seq) FROM op_log")
        self._last_seq = next(iter(rows))[0] or 0

    async def _execute_atomically(
        self, name: str, statements: Sequence[tuple[str, Sequence[object]]]
    ) -> list[int]:
        """Run `statements` as one transaction; return each one's changed-row count. A single
        statement is its own transaction (one hop); several are wrapped in BEGIN ... COMMIT."""
        failpoint(f"{name}.before_commit")
        if len(statements) == 1:
            cursor = await self._writer.execute(*statements[0])
            counts = [cursor.rowcount]
        else:
            await self._writer.execute("BEGIN IMMEDIATE")
            counts = []
            for sql, parameters in statements:
                cursor = await self._writer.execute(sql, parameters)
                counts.append(cursor.rowcount)
                failpoint(f"{name}.in_transaction")
            await self._writer.execute("COMMIT")
        failpoint(f"{name}.after_commit")
        return counts

    async def _changed_rows(
        self, name: str, statements: Sequence[tuple[str, Sequence[object]]]
    ) -> int:
        return sum(await self._execute_atomically(name, statements))

    async def _read(self, sql: str, parameters: Iterable[object]) -> list[Any]:
        self._check_open()
        try:
            return list(await self._reader.execute_fetchall(sql, tuple(parameters)))
        except sqlite3.Error as error:
            typed = from_sqlite(error, self.path)
            if typed is None:
                raise
            raise typed from error


def _prune_snapshots_statement(snapshots_kept: int) -> tuple[str, Sequence[object]]:
    """Delete every snapshot row below the newest `snapshots_kept` non-empty ones (and any
    empty row, which an older version wrote for every checkpoint)."""
    return (
        "DELETE FROM state_snapshots WHERE length(blob) = 0 OR height < (SELECT min(height) "
        "FROM (SELECT height FROM state_snapshots WHERE length(blob) > 0 "
        "ORDER BY height DESC LIMIT ?))",
        [snapshots_kept],
    )


def _retrieve_exception(task: asyncio.Future[Any]) -> None:
    # The caller may have been cancelled while the shielded write went on; its error is then
    # reported to nobody, which is expected, so mark it retrieved.
    if not task.cancelled():
        task.exception()


__all__ = ["OPS_PER_STATEMENT_MAX", "SYNCHRONOUS_MODES", "StorageError", "Store"]
