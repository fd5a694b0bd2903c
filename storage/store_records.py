"""The Store's record tables beside the op log: council rollbacks (schema v4), peer bans and
the address book (v5), the node mode (meta), the retained event window (v7) and the product
telemetry's reads (v8; its writes go with put_checkpoint).

A base class of `storage.store.Store`, split out so that file stays a readable size: these
methods run through the Store's own transaction helpers (`_write`, `_read`,
`_execute_atomically`, `_changed_rows`), declared here for the type checker only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, TypeVar

import aiosqlite

from swarmd.protocol.node_core.observed import Observed
from swarmd.protocol.telemetry import DayRecord, Since

from . import api, telemetry_sql
from .api import LoggedOp, NodeMode, OpStatus, RevertedOp, StoredRollback
from .errors import CorruptDatabaseError, RollbackConflictError, StoreUsageError
from .rollback_sql import (
    SELECT_CERTIFICATE,
    SELECT_REVERTED,
    SELECT_REVERTED_OP,
    SELECT_ROLLBACKS,
    mark_reverted_statements,
    put_rollback_statements,
    reverted_op_from_row,
    rollback_from_row,
)

T = TypeVar("T")

_OP_COLUMNS: Final = "seq, op_id, author, author_seq, envelope, status, received_at_ms, crc"

# The seqs a restart from the snapshot at height ?1 replays, each half through its index: ops
# final above it (op_log_by_final_height, v6) and applied ops not final, body kept
# (op_log_unsettled, v8 scale4: the WHERE below is the index's, term for term, or SQLite
# would not use it). Pending and expired-then-revived ops are in the second half; reverted,
# expired and pruned rows are in neither. Sorted by the caller: an ORDER BY here makes SQLite
# scan the whole log in seq order instead (its plan: tests/storage/test_replay_reads.py).
_REPLAY_SEQS: Final = (
    "SELECT seq FROM op_log WHERE final_height > ?1 UNION ALL "
    "SELECT seq FROM op_log WHERE final_height IS NULL AND status = 1 AND length(envelope) > 0"
)


def _op_from_row(row: Sequence[Any], path: str) -> LoggedOp:
    seq, op_id, author, author_seq, envelope, status, received_at_ms, crc = row
    if api.op_crc(seq, op_id, author, author_seq, envelope) != crc:
        raise CorruptDatabaseError(f"{path}: op at seq {seq} does not match its checksum")
    try:
        op_status = OpStatus(status)
    except ValueError:
        raise CorruptDatabaseError(f"{path}: op at seq {seq} has unknown status {status}") from None
    return LoggedOp(seq, op_id, author, author_seq, envelope, op_status, received_at_ms)


class StoreRecords:
    """Rollback records, peer bans, the address book, the mode and the event window."""

    path: str
    _writer: aiosqlite.Connection

    async def _write(self, work: Callable[[], Awaitable[T]]) -> T:
        raise NotImplementedError

    async def _read(self, sql: str, parameters: Iterable[object]) -> list[Any]:
        raise NotImplementedError

    async def _execute_atomically(
        self, name: str, statements: Sequence[tuple[str, Sequence[object]]]
    ) -> list[int]:
        raise NotImplementedError

    async def _changed_rows(
        self, name: str, statements: Sequence[tuple[str, Sequence[object]]]
    ) -> int:
        raise NotImplementedError

    # --- a restart's read of the log (issue 13) ---------------------------------------------

    #: op_log rows returned by `read_log` and `read_ops_at` since the store was opened: what
    #: a restart read of the log, counted (tests/node/test_restart_tail.py).
    rows_read: int = 0

    async def replay_seqs(self, above_height: int) -> list[int]:
        """See `api.OpStore.replay_seqs`."""
        api.check_read_range(above_height, 1)
        return sorted(int(row[0]) for row in await self._read(_REPLAY_SEQS, (above_height,)))

    async def read_ops_at(self, seqs: Sequence[int]) -> list[LoggedOp]:
        """See `api.OpStore.read_ops_at`."""
        api.check_seqs(seqs)
        sql = f"SELECT {_OP_COLUMNS} FROM op_log WHERE seq IN ({', '.join('?' * len(seqs))})"
        rows = await self._read(sql + " ORDER BY seq", seqs) if seqs else []
        self.rows_read += len(rows)
        return [_op_from_row(row, self.path) for row in rows]

    # --- council rollbacks (NodeCore's PersistRollback and OpsReverted) --------------------

    async def put_rollback(self, rollback: StoredRollback) -> int:
        """See api.OpStore.put_rollback: the certificate and the checkpoint moves, one write."""
        api.check_rollback(rollback)

        async def work() -> int:
            found = await self._writer.execute_fetchall(SELECT_CERTIFICATE, (rollback.epoch,))
            for (certificate,) in found:
                if bytes(certificate) == rollback.certificate:
                    return 0
                raise RollbackConflictError(f"another certificate for epoch {rollback.epoch}")
            statements = put_rollback_statements(rollback)
            statements += telemetry_sql.rollback_statements(rollback.height)
            return (await self._execute_atomically("put_rollback", statements))[2]

        return await self._write(work)

    async def read_rollbacks(self, after_epoch: int, limit: int) -> list[StoredRollback]:
        api.check_read_range(after_epoch, limit)
        rows = await self._read(SELECT_ROLLBACKS, (after_epoch, limit))
        return [rollback_from_row(row, self.path) for row in rows]

    async def mark_reverted(self, op_ids: Sequence[bytes], height: int, epoch: int) -> int:
        """See api.OpStore.mark_reverted."""
        api.check_reverted(op_ids, height, epoch)
        statements = mark_reverted_statements(op_ids, height, epoch)
        if not statements:
            return 0

        async def work() -> int:
            return sum((await self._execute_atomically("mark_reverted", statements))[1::2])

        return await self._write(work)

    async def read_reverted_ops(self, after_seq: int, limit: int) -> list[RevertedOp]:
        """Up to `limit` reverted ops recorded after `after_seq`, in the order recorded."""
        api.check_read_range(after_seq, limit)
        rows = await self._read(SELECT_REVERTED, (after_seq, limit))
        return [reverted_op_from_row(row) for row in rows]

    async def get_reverted(self, op_id: bytes) -> RevertedOp | None:
        api.check_op_ids([op_id])
        rows = await self._read(SELECT_REVERTED_OP, (op_id,))
        return reverted_op_from_row(rows[0]) if rows else None

    # --- peer bans (netguard) --------------------------------------------------------------

    async def replace_peer_bans(self, bans: Sequence[api.PeerBan]) -> None:
        api.check_peer_bans(bans)
        statements: list[tuple[str, Sequence[object]]] = [("DELETE FROM peer_bans", [])]
        statements += [
            ("INSERT INTO peer_bans VALUES (?, ?, ?)", [ban.node_id, ban.until_ms, ban.bans])
            for ban in bans
        ]
        await self._write(lambda: self._changed_rows("replace_peer_bans", statements))

    async def load_peer_bans(self) -> list[api.PeerBan]:
        rows = await self._read(
            "SELECT node_id, until_ms, bans FROM peer_bans ORDER BY node_id LIMIT ?",
            (api.PEER_BANS_STORED_MAX,),
        )
        return [api.PeerBan(bytes(row[0]), int(row[1]), int(row[2])) for row in rows]

    async def replace_address_book(self, entries: Sequence[api.AddressEntry]) -> None:
        api.check_address_book(entries)
        statements: list[tuple[str, Sequence[object]]] = [("DELETE FROM address_book", [])]
        statements += [
            (
                "INSERT INTO address_book (node_id, record, source, failures, tried, anchor) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    entry.node_id,
                    entry.record,
                    entry.source,
                    entry.failures,
                    int(entry.tried),
                    entry.anchor,
                ],
            )
            for entry in entries
        ]
        await self._write(lambda: self._changed_rows("replace_address_book", statements))

    async def load_address_book(self) -> list[api.AddressEntry]:
        rows = await self._read(
            "SELECT node_id, record, source, failures, tried, anchor FROM address_book "
            "ORDER BY node_id LIMIT ?",
            (api.ADDRESS_BOOK_STORED_MAX,),
        )
        return [
            api.AddressEntry(
                bytes(row[0]), bytes(row[1]), bytes(row[2]), int(row[3]), bool(row[4]), int(row[5])
            )
            for row in rows
        ]

    # --- the retained event window (node/http/events.py) ------------------------------------

    async def append_events(
        self,
        rows: Sequence[tuple[int, bytes | None, str]],
        kept: int,
        meta: tuple[str, bytes],
    ) -> None:
        """Store events (id, accounts, JSON text), keep only the `kept` newest, and set one
        meta entry (the stream's bookkeeping), all in one transaction."""
        if kept < 1:
            raise StoreUsageError(f"kept must be positive: {kept}")
        api.check_meta(meta[0], meta[1], writing=True)
        statements: list[tuple[str, Sequence[object]]] = [
            ("INSERT OR REPLACE INTO events VALUES (?, ?, ?)", list(row)) for row in rows
        ]
        statements.append(
            (
                "DELETE FROM events WHERE id < "
                "(SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)",
                [kept - 1],
            )
        )
        statements.append(("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(meta)))
        await self._write(lambda: self._changed_rows("append_events", statements))

    async def read_events(self) -> list[tuple[int, bytes | None, str]]:
        """Every stored event (id, accounts, JSON text), oldest first."""
        rows = await self._read("SELECT id, accounts, event FROM events ORDER BY id", ())
        return [(int(row[0]), None if row[1] is None else bytes(row[1]), row[2]) for row in rows]

    # --- the node's mode (meta) ----------------------------------------------------------

    async def get_mode(self) -> tuple[NodeMode, str]:
        rows = await self._read(
            "SELECT key, value FROM meta WHERE key IN (?, ?)",
            (api.META_MODE, api.META_MODE_REASON),
        )
        values = {row[0]: bytes(row[1]) for row in rows}
        try:
            mode = NodeMode(values.get(api.META_MODE, b"normal").decode())
            return mode, values.get(api.META_MODE_REASON, b"").decode()
        except (ValueError, UnicodeDecodeError):
            raise CorruptDatabaseError(f"{self.path}: the stored mode is unreadable") from None

    async def set_mode(self, mode: NodeMode, reason: str) -> None:
        api.check_mode(mode, reason)
        statements = [
            (
                "INSERT OR REPLACE INTO meta VALUES (?, ?), (?, ?)",
                [api.META_MODE, mode.value.encode(), api.META_MODE_REASON, reason.encode()],
            )
        ]
        await self._write(lambda: self._changed_rows("set_mode", statements))

    async def read_telemetry(self, days: int) -> tuple[dict[int, DayRecord], Since | None]:
        """See `api.OpStore.read_telemetry`."""
        return await telemetry_sql.read(self._read, days)

    async def note_conflict(self, handle: str, raised_ms: int) -> None:
        """See `api.OpStore.note_conflict`."""
        statement = telemetry_sql.note_conflict_statement(handle, raised_ms)
        await self._write(lambda: self._changed_rows("note_conflict", [statement]))

    async def read_observed(self) -> Observed | None:
        """See `api.OpStore.read_observed`."""
        return await telemetry_sql.read_observed(self._read)
