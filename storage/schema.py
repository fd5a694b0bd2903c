"""The SQLite schema and its ordered migrations.

`MIGRATIONS[i]` takes a database from schema version i to i + 1; version 0 is an empty file.
`Store.open` runs the missing ones in order, each in its own transaction together with the
version bump, so a crash in the middle of a migration leaves the previous version intact. A
migration is a tuple of SQL statements (not a script: `executescript` would commit the open
transaction first). Never edit a published migration; append a new one.
"""

from __future__ import annotations

from typing import Final

# Version 1: the log, the pending pool, checkpoints, snapshots and meta.
#
# op_log is keyed by the INTEGER seq (a B-tree append, measured 2.5x faster than a table keyed
# by random op ids). The UNIQUE index on op_id serves lookups by id (API, sync) and makes a
# duplicate op impossible at the storage layer; it halves raw insert throughput at 50k rows
# (measured ~130k vs ~290k rows/s in batches of 1000), a price paid for the guarantee.
# The triggers keep "an op is pending or logged, never both" inside the writing statement, so
# appending an op that was pending costs no extra statement and no extra transaction.
_V1: Final = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
    """CREATE TABLE op_log (
        seq INTEGER PRIMARY KEY,
        op_id BLOB NOT NULL UNIQUE,
        author BLOB NOT NULL,
        author_seq INTEGER NOT NULL,
        envelope BLOB NOT NULL,
        status INTEGER NOT NULL,
        received_at_ms INTEGER NOT NULL,
        crc INTEGER NOT NULL
    )""",
    """CREATE TABLE pending_ops (
        op_id BLOB PRIMARY KEY,
        envelope BLOB NOT NULL,
        received_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE checkpoints (
        height INTEGER PRIMARY KEY,
        checkpoint_id BLOB NOT NULL UNIQUE,
        state_root BLOB NOT NULL,
        bundle BLOB NOT NULL,
        log_seq INTEGER NOT NULL,
        crc INTEGER NOT NULL
    )""",
    """CREATE TABLE state_snapshots (
        height INTEGER PRIMARY KEY,
        state_root BLOB NOT NULL,
        blob BLOB NOT NULL,
        crc INTEGER NOT NULL
    )""",
    """CREATE TRIGGER op_log_clears_pending AFTER INSERT ON op_log BEGIN
        DELETE FROM pending_ops WHERE op_id = NEW.op_id;
    END""",
    """CREATE TRIGGER pending_skips_logged BEFORE INSERT ON pending_ops
    WHEN EXISTS (SELECT 1 FROM op_log WHERE op_id = NEW.op_id) BEGIN
        SELECT RAISE(IGNORE);
    END""",
)

# Version 2: the pending pool evicts its oldest-received op first, which needs this index.
_V2: Final = ("CREATE INDEX pending_ops_by_received_at ON pending_ops (received_at_ms)",)

# Version 3: a rollback moves the checkpoints above its target here instead of deleting them,
# so the signed bundles it undid stay readable for an audit. The same checkpoint can be
# reverted twice (re-finalized by sync, then rolled back again), hence the own key.
_V3: Final = (
    """CREATE TABLE reverted_checkpoints (
        revert_seq INTEGER PRIMARY KEY,
        height INTEGER NOT NULL,
        checkpoint_id BLOB NOT NULL,
        state_root BLOB NOT NULL,
        bundle BLOB NOT NULL,
        log_seq INTEGER NOT NULL,
        crc INTEGER NOT NULL,
        rolled_back_to INTEGER NOT NULL
    )""",
)

# Version 4 (wallet): the node's retained window of published events (node/http/events.py),
# so a client resuming with `/v1/events?since=ID` after a node restart gets what it missed.
# `accounts` holds the raw 32-byte keys the event concerns, concatenated (NULL: it concerns
# every subscriber); `event` is its JSON text as published. Bounded by the writer, which
# deletes the oldest rows beyond limits.EVENTS_RETAINED_MAX in the same transaction.
_V4_WALLET: Final = (
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        accounts BLOB,
        event TEXT NOT NULL
    )""",
)

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_V1, _V2, _V3, _V4_WALLET)
SCHEMA_VERSION: Final = len(MIGRATIONS)
