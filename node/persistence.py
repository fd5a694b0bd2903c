"""What the daemon needs from durable storage, and the adapters that provide it.

The driver (node/daemon.py) talks to a `NodeLog`: append op envelopes, store checkpoint
bundles, read both back at start, keep the admin mode. `open_node_log` returns the adapter
over `swarmd.storage.store.Store` (the project's store) when it is installed, and otherwise a
small aiosqlite log of our own with the same durability (WAL, one transaction per call).
Each write is durable when its coroutine returns; a write that raises wrote nothing.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import aiosqlite

from swarmd.protocol.errors import LocalProtocolError, RemoteProtocolError
from swarmd.protocol.node_core import Mode, PersistCheckpoint
from swarmd.protocol.ops import decode_op

#: Rows read per query while loading the log at start: bounds memory per read.
LOAD_PAGE_ROWS = 4096
#: Mode reasons longer than this are cut (the store bounds meta values; a reason is one line).
MODE_REASON_SIZE_BYTES_MAX = 256


class NodeLogError(RemoteProtocolError):
    """The database belongs to another network or node."""

    code = "storage_mismatch"


class NodeLog(Protocol):
    async def append_ops(self, envelopes: Sequence[bytes]) -> None: ...

    async def put_checkpoint(self, checkpoint: PersistCheckpoint) -> None: ...

    async def load(self) -> tuple[list[bytes], list[bytes]]:
        """(envelopes in log order, checkpoint bundles by ascending height)."""
        ...

    async def get_bundle(self, height: int) -> bytes | None: ...

    async def latest_height(self) -> int: ...

    async def get_mode(self) -> tuple[Mode, str]: ...

    async def set_mode(self, mode: Mode, reason: str) -> None: ...

    async def close(self) -> None: ...


def _clip_reason(reason: str) -> str:
    data = reason.encode()[:MODE_REASON_SIZE_BYTES_MAX]
    return data.decode(errors="ignore")


# --- the project's store -------------------------------------------------------------------


class StoreLog:
    """`NodeLog` over `swarmd.storage` (`OpStore`)."""

    def __init__(self, store: Any, api: Any, errors: Any) -> None:
        self.store = store
        self.api = api
        self.errors = errors

    async def append_ops(self, envelopes: Sequence[bytes]) -> None:
        now_ms = int(time.time() * 1000)
        new_ops = []
        for envelope in envelopes:
            op = decode_op(envelope)  # the core admitted it, so it decodes
            new_ops.append(
                self.api.NewOp(
                    op.op_id, op.author, op.seq, envelope, self.api.OpStatus.APPLIED, now_ms
                )
            )
        unique = list({op.op_id: op for op in new_ops}.values())
        for start in range(0, len(unique), self.api.APPEND_OPS_MAX):
            chunk = unique[start : start + self.api.APPEND_OPS_MAX]
            try:
                await self.store.append_ops(chunk)
            except self.errors.DuplicateOpError:
                # An op logged before (e.g. evicted from the pending pool after a restart and
                # received again): write the others one by one and skip what is already there.
                for op in chunk:
                    with contextlib.suppress(self.errors.DuplicateOpError):
                        await self.store.append_ops([op])

    async def put_checkpoint(self, checkpoint: PersistCheckpoint) -> None:
        record = self.api.Checkpoint(
            checkpoint.height,
            checkpoint.checkpoint_id,
            checkpoint.state_root,
            checkpoint.bundle,
            self.store.last_seq,
        )
        await self.store.put_checkpoint(record, b"")

    async def load(self) -> tuple[list[bytes], list[bytes]]:
        envelopes: list[bytes] = []
        after = 0
        while True:
            rows = await self.store.read_log(after, LOAD_PAGE_ROWS)
            envelopes += [row.envelope for row in rows if row.status != self.api.OpStatus.REVERTED]
            if len(rows) < LOAD_PAGE_ROWS:
                break
            after = rows[-1].seq
        bundles: list[bytes] = []
        height = 0
        while True:
            checkpoints = await self.store.read_checkpoints(height, LOAD_PAGE_ROWS)
            bundles += [checkpoint.bundle for checkpoint in checkpoints]
            if len(checkpoints) < LOAD_PAGE_ROWS:
                break
            height = checkpoints[-1].height
        return envelopes, bundles

    async def get_bundle(self, height: int) -> bytes | None:
        checkpoint = await self.store.get_checkpoint(height)
        return None if checkpoint is None else bytes(checkpoint.bundle)

    async def latest_height(self) -> int:
        checkpoint = await self.store.latest_checkpoint()
        return 0 if checkpoint is None else int(checkpoint.height)

    async def get_mode(self) -> tuple[Mode, str]:
        mode, reason = await self.store.get_mode()
        return Mode(str(mode.value).replace("_", "-")), str(reason)

    async def set_mode(self, mode: Mode, reason: str) -> None:
        await self.store.set_mode(
            self.api.NodeMode(mode.value.replace("-", "_")), _clip_reason(reason)
        )

    async def close(self) -> None:
        await self.store.close()


# --- a small aiosqlite log (used until/unless swarmd.storage.store is available) -------------

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS op_log (
        seq INTEGER PRIMARY KEY, op_id BLOB NOT NULL UNIQUE, envelope BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS checkpoints (
        height INTEGER PRIMARY KEY, checkpoint_id BLOB NOT NULL, state_root BLOB NOT NULL,
        bundle BLOB NOT NULL)""",
)


class SqliteLog:
    """A minimal durable log: WAL, one writer, one transaction per call."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    @classmethod
    async def open(
        cls, path: Path, *, network_id: bytes, node_key: bytes, synchronous: str = "FULL"
    ) -> SqliteLog:
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
            for statement in _SCHEMA:
                await db.execute(statement)
            log = cls(db)
            for key, expected in (("network_id", network_id.hex()), ("node_key", node_key.hex())):
                stored = await log._meta(key)
                if stored is None:
                    await db.execute("INSERT INTO meta VALUES (?, ?)", (key, expected))
                elif stored != expected:
                    raise NodeLogError(f"{path} was made for another {key.replace('_', ' ')}")
        except BaseException:
            await db.close()
            raise
        return log

    async def _meta(self, key: str) -> str | None:
        async with self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else str(row[0])

    async def append_ops(self, envelopes: Sequence[bytes]) -> None:
        rows = [(decode_op(envelope).op_id, envelope) for envelope in envelopes]
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            await self.db.executemany(
                "INSERT OR IGNORE INTO op_log (op_id, envelope) VALUES (?, ?)", rows
            )
            await self.db.execute("COMMIT")
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise

    async def put_checkpoint(self, checkpoint: PersistCheckpoint) -> None:
        await self.db.execute(
            "INSERT OR IGNORE INTO checkpoints VALUES (?, ?, ?, ?)",
            (
                checkpoint.height,
                checkpoint.checkpoint_id,
                checkpoint.state_root,
                checkpoint.bundle,
            ),
        )

    async def load(self) -> tuple[list[bytes], list[bytes]]:
        envelopes: list[bytes] = []
        after = 0
        while True:
            async with self.db.execute(
                "SELECT seq, envelope FROM op_log WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, LOAD_PAGE_ROWS),
            ) as cursor:
                rows = list(await cursor.fetchall())
            envelopes += [bytes(row[1]) for row in rows]
            if len(rows) < LOAD_PAGE_ROWS:
                break
            after = rows[-1][0]
        async with self.db.execute("SELECT bundle FROM checkpoints ORDER BY height") as cursor:
            bundles = [bytes(row[0]) for row in await cursor.fetchall()]
        return envelopes, bundles

    async def get_bundle(self, height: int) -> bytes | None:
        query = "SELECT bundle FROM checkpoints WHERE height = ?"
        async with self.db.execute(query, (height,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else bytes(row[0])

    async def latest_height(self) -> int:
        async with self.db.execute("SELECT MAX(height) FROM checkpoints") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    async def get_mode(self) -> tuple[Mode, str]:
        mode = await self._meta("mode")
        reason = await self._meta("mode_reason")
        try:
            return Mode(mode or "normal"), reason or ""
        except ValueError:
            return Mode.NORMAL, ""

    async def set_mode(self, mode: Mode, reason: str) -> None:
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            for key, value in (("mode", mode.value), ("mode_reason", _clip_reason(reason))):
                await self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
            await self.db.execute("COMMIT")
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        await self.db.close()


async def open_node_log(
    path: Path, *, network_id: bytes, node_key: bytes, synchronous: str = "FULL"
) -> NodeLog:
    """The project's store when available, else `SqliteLog`."""
    try:
        store_module = importlib.import_module("swarmd.storage.store")
        api = importlib.import_module("swarmd.storage.api")
        errors = importlib.import_module("swarmd.storage.errors")
    except ModuleNotFoundError:
        return await SqliteLog.open(
            path, network_id=network_id, node_key=node_key, synchronous=synchronous
        )
    try:
        store = await store_module.Store.open(
            path, network_id=network_id, node_key=node_key, synchronous=synchronous
        )
    except TypeError as exc:  # an older/newer signature: say so instead of a traceback
        raise LocalProtocolError(f"storage.store.Store.open: {exc}") from exc
    return StoreLog(store, api, errors)
