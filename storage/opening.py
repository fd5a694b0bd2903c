"""Opening a store: the checks made before anything is written (the path, the file lock, the
SQLite integrity check, the file's network, node key and schema version) and the schema
migrations, each in one transaction. Every failure is a typed StorageError; the file is left
as it was."""

from __future__ import annotations

import fcntl
import os
import stat
from typing import Final

import aiosqlite

from . import api
from .api import NodeMode
from .errors import (
    CorruptDatabaseError,
    DatabaseLockedError,
    ForeignDatabaseError,
    SchemaTooNewError,
    StorageIOError,
    StoreUsageError,
    WrongNetworkError,
    WrongNodeKeyError,
)
from .failpoints import failpoint
from .schema import MIGRATIONS, SCHEMA_VERSION

#: Lines of a failed quick_check quoted in the error (the full list can be thousands of lines).
QUICK_CHECK_LINES_QUOTED: Final = 5


def check_path(path: str) -> None:
    """Refuse, typed, a path that cannot hold our database, before anything is written and
    before aiosqlite starts a worker thread (a thread left behind by a failed connect can
    outlive the event loop and print "Event loop is closed"). A missing path is fine (`open`
    creates it); a zero-length file is not: SQLite would silently start a fresh database in
    it, so a truncated database would come back as a new node."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as error:
        raise StorageIOError(f"{path}: cannot inspect the database path: {error}") from error
    if not stat.S_ISREG(info.st_mode):
        raise StorageIOError(f"{path} is not a regular file (a database path names a file)")
    if info.st_size == 0:
        raise CorruptDatabaseError(
            f"{path} is empty (0 bytes), not a swarmd database: restore it from a backup, or "
            "remove it to start this node from scratch"
        )
    if not os.access(path, os.R_OK):
        raise StorageIOError(f"{path}: permission denied (cannot read the database)")


class FileLock:
    """An advisory lock on `<db>.lock` held while the store is open, so that two processes never
    write one database. The kernel releases it when the process dies, even by kill -9."""

    def __init__(self, path: str) -> None:
        try:
            self._fd: int | None = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise StorageIOError(f"{path}: cannot create the lock file: {error}") from error
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.release()
            raise DatabaseLockedError(f"{path} is open in another process or store") from None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class NoLock:
    """A read-only store takes no lock: SQLite's WAL lets it read beside the one writer."""

    def release(self) -> None:
        return None


async def check_file(writer: aiosqlite.Connection, path: str) -> None:
    rows = list(await writer.execute_fetchall("PRAGMA quick_check"))
    if [tuple(row) for row in rows] != [("ok",)]:
        quoted = "; ".join(str(row[0]) for row in rows[:QUICK_CHECK_LINES_QUOTED])
        raise CorruptDatabaseError(f"{path} fails quick_check: {quoted}")


async def prepare(
    writer: aiosqlite.Connection,
    path: str,
    network_id: bytes,
    node_key: bytes | None,
    synchronous: str,
) -> None:
    """Check the file's identity and version (before any write), then set the journal and
    bring the schema up to date."""
    version = await stored_version(writer, path, network_id, node_key)
    if version == 0 and node_key is None:
        raise StoreUsageError("node_key is required to create a database")
    rows = list(await writer.execute_fetchall("PRAGMA journal_mode = WAL"))
    if [tuple(row) for row in rows] != [("wal",)]:
        raise StorageIOError(f"{path}: cannot switch to WAL mode (got {rows})")
    await writer.execute(f"PRAGMA synchronous = {synchronous}")
    failpoint("open.before_migrations")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        await migrate(writer, target, network_id, node_key)


async def stored_version(
    writer: aiosqlite.Connection, path: str, network_id: bytes, node_key: bytes | None
) -> int:
    """0 for an empty file, else the stored schema version after checking identity."""
    tables = {
        row[0]
        for row in await writer.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type='table'"
        )
    }
    if not tables:
        return 0
    if "meta" not in tables:
        raise ForeignDatabaseError(f"{path} is an SQLite database but not a swarmd store")
    rows = await writer.execute_fetchall(
        "SELECT key, value FROM meta WHERE key IN (?, ?, ?)",
        (api.META_SCHEMA_VERSION, api.META_NETWORK_ID, api.META_NODE_KEY),
    )
    meta = {row[0]: bytes(row[1]) for row in rows}
    try:
        version = int(meta[api.META_SCHEMA_VERSION].decode("ascii"))
    except (KeyError, ValueError, UnicodeDecodeError):
        raise CorruptDatabaseError(f"{path}: the schema version is missing or garbled") from None
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"{path} has schema version {version}; this code knows up to {SCHEMA_VERSION}"
        )
    if meta.get(api.META_NETWORK_ID) != network_id:
        stored = meta.get(api.META_NETWORK_ID, b"").hex()
        raise WrongNetworkError(f"{path} belongs to network {stored}, not {network_id.hex()}")
    if node_key is not None and meta.get(api.META_NODE_KEY) != node_key:
        raise WrongNodeKeyError(f"{path} was made by another node key")
    return version


async def migrate(
    writer: aiosqlite.Connection, target: int, network_id: bytes, node_key: bytes | None
) -> None:
    """One migration and its version bump in one transaction."""
    await writer.execute("BEGIN IMMEDIATE")
    try:
        for sql in MIGRATIONS[target - 1]:
            await writer.execute(sql)
            failpoint(f"migrate_v{target}.in_transaction")
        if target == 1:
            assert node_key is not None  # checked by prepare
            initial = [
                (api.META_NETWORK_ID, network_id),
                (api.META_NODE_KEY, node_key),
                (api.META_MODE, NodeMode.NORMAL.value.encode()),
                (api.META_MODE_REASON, b""),
            ]
            await writer.executemany("INSERT INTO meta VALUES (?, ?)", initial)
        await writer.execute(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            (api.META_SCHEMA_VERSION, str(target).encode("ascii")),
        )
        failpoint(f"migrate_v{target}.before_commit")
        await writer.execute("COMMIT")
    except BaseException:
        if writer.in_transaction:
            await writer.execute("ROLLBACK")
        raise
    failpoint(f"migrate_v{target}.after_commit")
