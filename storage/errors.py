"""Typed errors of the durable store.

Every error the store raises on purpose is a `StorageError`, so the node shell can catch one
class at its boundary. Each concrete class also derives from the protocol hierarchy:
`RemoteProtocolError` when the fault came from outside our code (a file on disk that is corrupt,
made for another network, or written by newer software), `LocalProtocolError` when our own caller
misused the API (a duplicate op id, a closed store). Errors of the environment (disk full, the
database held by another process) are plain `StorageError`s. Codes are stable strings that the
HTTP API, the CLI's `--json` output and the logs reuse.
"""

from __future__ import annotations

import sqlite3

from swarmd.protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError


class StorageError(ProtocolError):
    """Base of every error the store raises on purpose."""

    code = "storage_error"


# --- the database file is unusable as it is (nothing is changed or deleted) -------------------


class CorruptDatabaseError(StorageError, RemoteProtocolError):
    """The file is not an SQLite database, is truncated, fails `quick_check`, or a row's
    checksum does not match its bytes."""

    code = "corrupt_database"


class ForeignDatabaseError(StorageError, RemoteProtocolError):
    """A valid SQLite database that was not made by swarmd (it has tables but no swarmd meta)."""

    code = "foreign_database"


class WrongNetworkError(StorageError, RemoteProtocolError):
    """The database was made for another network id (genesis hash)."""

    code = "wrong_network"


class WrongNodeKeyError(StorageError, RemoteProtocolError):
    """The database was made by a node with another identity key."""

    code = "wrong_node_key"


class SchemaTooNewError(StorageError, RemoteProtocolError):
    """The database was written by newer code with a schema this code does not know."""

    code = "schema_too_new"


# --- the environment ---------------------------------------------------------------------------


class DatabaseLockedError(StorageError):
    """Another process (or another open store in this process) holds the database."""

    code = "database_locked"


class StorageIOError(StorageError):
    """The disk refused a read or write (full, I/O error, cannot open the path)."""

    code = "storage_io_error"


class StorageOverloadedError(StorageError):
    """The group committer's queue is full; the caller should shed load (HTTP 503)."""

    code = "storage_overloaded"


# --- our own caller misused the API ------------------------------------------------------------


class StoreUsageError(StorageError, LocalProtocolError):
    """An argument of the wrong type, size or value."""

    code = "storage_usage"


class StoreClosedError(StorageError, LocalProtocolError):
    """The store was closed (or, for MemoryStore, crashed) before or during the call."""

    code = "store_closed"


class DuplicateOpError(StorageError, LocalProtocolError):
    """An op id is already in the log (or twice in one batch); the batch was not written."""

    code = "duplicate_op"


class CheckpointConflictError(StorageError, LocalProtocolError):
    """A different checkpoint is already stored at that height."""

    code = "checkpoint_conflict"


class SnapshotWithoutCheckpointError(StorageError, LocalProtocolError):
    """`put_snapshot` for a height with no stored checkpoint, or one with another state root
    (its commit failed, or a rollback reverted it); nothing was written."""

    code = "snapshot_without_checkpoint"


class RollbackConflictError(StorageError, LocalProtocolError):
    """Another rollback certificate is already stored for that epoch; nothing was written."""

    code = "rollback_conflict"


# --- mapping SQLite's errors -------------------------------------------------------------------

# Primary result codes from sqlite3.h (the extended code's low byte is the primary code).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26


def from_sqlite(error: sqlite3.Error, path: str) -> StorageError | None:
    """The typed error for an SQLite error caused by the file or the disk, or None when the
    error can only be a bug in our code (which must stay visible, not be wrapped)."""
    primary = getattr(error, "sqlite_errorcode", 0) & 0xFF
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return CorruptDatabaseError(f"{path}: {error}")
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return DatabaseLockedError(f"{path}: {error}")
    if primary in (_SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN):
        return StorageIOError(f"{path}: {error}")
    return None
