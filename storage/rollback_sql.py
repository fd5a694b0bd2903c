"""The SQL of the council rollback records (schema v4, `_V4_RBSTORE`) and of the final heights
an offline rollback reverts by (op_log.final_height, v6), for storage/store.py.

Statement builders and row readers only: `Store` runs them in its own transactions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from . import api
from .api import OpStatus, RevertedOp, StoredRollback
from .errors import CorruptDatabaseError

Statement = tuple[str, Sequence[object]]

#: Ids (or 3-column pending rows) in one statement (store.py's too): 1000 bound parameters stay
#: far below SQLite's default limit of 32766 (3.32+).
IDS_PER_STATEMENT_MAX: Final = 1_000
#: Reverted ops per INSERT: 3 parameters each, far below SQLite's bound-parameter limit.
REVERTED_OPS_PER_STATEMENT_MAX: Final = 300

SELECT_CERTIFICATE: Final = "SELECT certificate FROM rollback_certificates WHERE epoch = ?"
SELECT_ROLLBACKS: Final = (
    "SELECT epoch, height, certificate, crc FROM rollback_certificates WHERE epoch > ? "
    "ORDER BY epoch LIMIT ?"
)
SELECT_REVERTED: Final = (
    "SELECT seq, op_id, height, epoch FROM reverted_ops WHERE seq > ? ORDER BY seq LIMIT ?"
)
SELECT_REVERTED_OP: Final = "SELECT seq, op_id, height, epoch FROM reverted_ops WHERE op_id = ?"


def _placeholders(rows: int, columns: int) -> str:
    row = "(" + ",".join("?" * columns) + ")"
    return ",".join([row] * rows)


def put_rollback_statements(rollback: StoredRollback) -> list[Statement]:
    """Store the certificate; move the checkpoints above its height to reverted_checkpoints
    (counted by the third statement) and drop the snapshots above it (derived state)."""
    height = rollback.height
    return [
        (
            "INSERT INTO rollback_certificates VALUES (?, ?, ?, ?)",
            [rollback.epoch, height, rollback.certificate, api.rollback_crc(rollback)],
        ),
        (
            "INSERT INTO reverted_checkpoints (height, checkpoint_id, state_root, bundle, "
            "log_seq, crc, rolled_back_to) SELECT height, checkpoint_id, state_root, "
            "bundle, log_seq, crc, ? FROM checkpoints WHERE height > ? ORDER BY height",
            [height, height],
        ),
        ("DELETE FROM checkpoints WHERE height > ?", [height]),
        ("DELETE FROM state_snapshots WHERE height > ?", [height]),
    ]


def mark_reverted_statements(op_ids: Sequence[bytes], height: int, epoch: int) -> list[Statement]:
    """Pairs of (record the ids, mark the logged ones REVERTED): the second of each pair
    counts the logged ops marked."""
    statements: list[Statement] = []
    size = REVERTED_OPS_PER_STATEMENT_MAX
    for chunk in (op_ids[start : start + size] for start in range(0, len(op_ids), size)):
        values = [value for op_id in chunk for value in (op_id, height, epoch)]
        insert = "INSERT OR REPLACE INTO reverted_ops (op_id, height, epoch) VALUES "
        statements.append((insert + _placeholders(len(chunk), 3), values))
        # A reverted op is no longer final: its final height goes (see revert_final_above).
        update = "UPDATE op_log SET status = ?, final_height = NULL WHERE op_id IN "
        statements.append(
            (update + f"({_placeholders(len(chunk), 1)})", [int(OpStatus.REVERTED), *chunk])
        )
    return statements


def revert_final_above_statements(height: int) -> list[Statement]:
    """The ops of an offline rollback to `height` (Store.roll_back_to): mark the applied ops
    final above it REVERTED (counted by the first statement), then forget the final height
    of every op final above it, so one that comes back by sync is pending, not final at its
    old height (neither pruned as final nor taken as final by a later rollback)."""
    return [
        (
            "UPDATE op_log SET status = ? WHERE final_height > ? AND status = ?",
            [int(OpStatus.REVERTED), height, int(OpStatus.APPLIED)],
        ),
        ("UPDATE op_log SET final_height = NULL WHERE final_height > ?", [height]),
    ]


# The final heights (op_log.final_height, schema v6) that an offline rollback and pruning read.
# Ops of a checkpoint get theirs in the checkpoint's own transaction (`final_height_statements`
# in put_checkpoint); a store upgraded from before v6 lacks them for the ops final before the
# upgrade, which a restart backfills for the heights it replays (`record_missing_statements`)
# and `swarmd rollback` detects from the cuts' heads (`SELECT_UNRECORDED_FINAL`).
_UNRECORDED: Final = (
    "final_height IS NULL AND status = 1 AND length(envelope) > 0"  # (op_log_unsettled's)
)
SELECT_UNRECORDED_FINAL: Final = f"SELECT op_id FROM op_log WHERE {_UNRECORDED} AND op_id IN "


def final_height_statements(
    op_ids: Sequence[bytes], height: int, *, missing_only: bool = False
) -> list[Statement]:
    """Record `height` as the final height of the logged ops among `op_ids` that keep their
    body (IDS_PER_STATEMENT_MAX a statement); `missing_only`: the applied ones with none."""
    where = _UNRECORDED if missing_only else "length(envelope) > 0"
    size = IDS_PER_STATEMENT_MAX
    return [
        (
            f"UPDATE op_log SET final_height = ? WHERE {where} AND op_id IN "
            f"({_placeholders(len(chunk), 1)})",
            [height, *chunk],
        )
        for chunk in (op_ids[start : start + size] for start in range(0, len(op_ids), size))
    ]


def missing_final_heights_statements(
    heights: Sequence[tuple[int, Sequence[bytes]]],
) -> list[Statement]:
    """`final_height_statements(missing_only=True)` for each (height, op ids) pair."""
    return [
        statement
        for height, op_ids in heights
        for statement in final_height_statements(op_ids, height, missing_only=True)
    ]


def rollback_from_row(row: Sequence[Any], path: str) -> StoredRollback:
    rollback = StoredRollback(row[0], row[1], bytes(row[2]))
    if api.rollback_crc(rollback) != row[3]:
        raise CorruptDatabaseError(f"{path}: rollback of epoch {row[0]} fails its checksum")
    return rollback


def reverted_op_from_row(row: Sequence[Any]) -> RevertedOp:
    return RevertedOp(row[0], bytes(row[1]), row[2], row[3])
