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

# Version 4 (rbstore): the council rollback certificates a node accepted, by the epoch each
# starts (`NodeCore.restore` takes them back in that order), and the ops they reverted with
# the height and epoch of the rollback (the API answers `reverted` for them, also after a
# restart; the ops themselves stay in op_log, marked REVERTED). Keyed by a seq so a restart
# feeds them back in the order they were reverted; op_id UNIQUE: one row per op.
_V4_RBSTORE: Final = (
    """CREATE TABLE rollback_certificates (
        epoch INTEGER PRIMARY KEY,
        height INTEGER NOT NULL,
        certificate BLOB NOT NULL,
        crc INTEGER NOT NULL
    )""",
    """CREATE TABLE reverted_ops (
        seq INTEGER PRIMARY KEY,
        op_id BLOB NOT NULL UNIQUE,
        height INTEGER NOT NULL,
        epoch INTEGER NOT NULL
    )""",
)

# Version 5 (netguard): node ids banned for misbehaviour, so a restart does not forgive them.
# `until_ms` is wall-clock unix time (a ban outlives the process); `bans` counts the bans so
# far (each doubles the next). The node rewrites the whole table (at most PEER_BANS_MAX rows).
# The address book of peer exchange: each signed record (protocol/addresses.py) with the peer
# it was learned from (empty for a configured seed) and its failed dials; rewritten whole, at
# most ADDRESS_BOOK_MAX rows.
_V5_NETGUARD: Final = (
    """CREATE TABLE peer_bans (
        node_id BLOB PRIMARY KEY,
        until_ms INTEGER NOT NULL,
        bans INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE address_book (
        node_id BLOB PRIMARY KEY,
        record BLOB NOT NULL,
        source BLOB NOT NULL,
        failures INTEGER NOT NULL
    ) WITHOUT ROWID""",
)

# Version 6 (scale branch, issue 13): `[storage].retain_heights` prunes the bodies of ops final
# more than N heights ago. An op's final height is recorded when its checkpoint is stored; a
# pruned row keeps its id, author, seq and status (so the API can answer `pruned`, ~100 bytes
# an op) with an empty envelope and final_height NULL. The partial index holds only the rows
# still to prune, so a prune pass never scans what earlier passes pruned.
# Expired ops (status 4: pending ops that never became valid) are deleted beyond the newest
# `keep` (`trim_expired`: junk is bounded on disk as in memory); their index finds them without
# a scan, and meta `op_log_deleted` counts the seqs deleted, which the integrity check expects
# as gaps.
_V6_SCALE: Final = (
    "ALTER TABLE op_log ADD COLUMN final_height INTEGER",
    "CREATE INDEX op_log_by_final_height ON op_log (final_height) WHERE final_height IS NOT NULL",
    "CREATE INDEX op_log_expired ON op_log (seq) WHERE status = 4",
)

# Version 7 (wallet): the node's retained window of published events (node/http/events.py),
# so a client resuming with `/v1/events?since=ID` after a node restart gets what it missed.
# `accounts` holds the raw 32-byte keys the event concerns, concatenated (NULL: it concerns
# every subscriber); `event` is its JSON text as published. Bounded by the writer, which
# deletes the oldest rows beyond limits.EVENTS_RETAINED_MAX in the same transaction.
_V7_WALLET: Final = (
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        accounts BLOB,
        event TEXT NOT NULL
    )""",
)

# Version 8 (telemetry branch, issue 17): product telemetry from final state
# (protocol/telemetry.py), written in the transaction of the checkpoint it comes from, so a
# restart keeps it and nothing is recomputed from history. One row a UTC day of cut time
# (`telemetry_days`), the distinct authors active that day (`telemetry_active`) and the credits
# burned that day per target (`telemetry_burns`). Days older than limits.TELEMETRY_DAYS_KEPT
# before the newest are deleted in the same transaction. Also the observed participation and
# conflict ages (see below).
_V8_TELEMETRY: Final = (
    """CREATE TABLE telemetry_days (
        day INTEGER PRIMARY KEY,
        first_height INTEGER NOT NULL,
        last_height INTEGER NOT NULL,
        checkpoints INTEGER NOT NULL,
        ops INTEGER NOT NULL,
        new_accounts INTEGER NOT NULL,
        transfer_volume INTEGER NOT NULL,
        supply_end INTEGER NOT NULL
    )""",
    """CREATE TABLE telemetry_active (
        day INTEGER NOT NULL,
        account BLOB NOT NULL,
        PRIMARY KEY (day, account)
    ) WITHOUT ROWID""",
    """CREATE TABLE telemetry_burns (
        day INTEGER NOT NULL,
        target TEXT NOT NULL,
        amount INTEGER NOT NULL,
        PRIMARY KEY (day, target)
    ) WITHOUT ROWID""",
    # Participation per council member at final height `height` (protocol/node_core/
    # observed.py), rewritten with each checkpoint (one row a member), and when each open
    # handle conflict was first raised (wall-clock UTC ms): inserted when raised, rewritten
    # with each checkpoint. A restart continues from them instead of starting at zero.
    """CREATE TABLE observed_members (
        member BLOB PRIMARY KEY,
        height INTEGER NOT NULL,
        signed INTEGER NOT NULL,
        missed INTEGER NOT NULL,
        last_signed_height INTEGER NOT NULL,
        last_signed_ms INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE observed_conflicts (
        handle TEXT PRIMARY KEY,
        raised_ms INTEGER NOT NULL
    ) WITHOUT ROWID""",
)

# Version 9 (scale4 branch, issue 13): a restart from a snapshot reads only the log rows it
# replays (`replay_seqs`): those final above the snapshot (op_log_by_final_height) and the
# applied rows not final with a body, through this partial index. An op leaves it when it
# becomes final (mark_final), is pruned, reverted or expired, so it holds the pending and live
# ops, lost forks, and the rows final before v6 recorded final heights (their number is fixed
# at the upgrade; a restart skips them by author seq, as before).
_V9_SCALE4: Final = (
    "CREATE INDEX op_log_unsettled ON op_log (seq) "
    "WHERE final_height IS NULL AND status = 1 AND length(envelope) > 0",
)

# Version 10 (peers2 branch, issue 16): the address book keeps, per record, whether a link to
# its node came up once (`tried`: after a restart tried records are dialed first and shared
# as tried) and whether it is one of the last good outbound peers (`anchor`: 0, or its rank
# 1..ADDRESS_ANCHORS_MAX; anchors are dialed first after a restart). Rows from before read as
# new and no anchor.
_V10_PEERS2: Final = (
    "ALTER TABLE address_book ADD COLUMN tried INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE address_book ADD COLUMN anchor INTEGER NOT NULL DEFAULT 0",
)

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    _V1,
    _V2,
    _V3,
    _V4_RBSTORE,
    _V5_NETGUARD,
    _V6_SCALE,
    _V7_WALLET,
    _V8_TELEMETRY,
    _V9_SCALE4,
    _V10_PEERS2,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)
