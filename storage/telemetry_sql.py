"""Product telemetry in SQLite (schema v8 `_V8_TELEMETRY`): the statements that fold one
checkpoint's `Activity` into its day, in the checkpoint's own transaction, and the read of the
day records a report needs; likewise the observed participation and conflict ages
(protocol/node_core/observed.py). The in-memory twin is `protocol.telemetry.fold`; both must
give the same records (tests/storage/test_telemetry_store.py checks them against each
other)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from swarmd.protocol.limits import TELEMETRY_DAYS_KEPT
from swarmd.protocol.node_core.observed import MemberRecord, Observed
from swarmd.protocol.telemetry import Activity, DayRecord, Since, window_needed

#: (Activity and Observed: the types `Store.put_checkpoint` takes, imported from here.)
__all__ = ["Activity", "Observed", "checkpoint_statements", "read", "read_observed"]

Statement = tuple[str, Sequence[object]]
Reader = Callable[[str, Iterable[object]], Awaitable[list[Any]]]

_UPSERT_DAY = (
    "INSERT INTO telemetry_days VALUES (?, ?, ?, 1, ?, ?, ?, ?) ON CONFLICT(day) DO UPDATE SET "
    "first_height = min(first_height, excluded.first_height), "
    "last_height = max(last_height, excluded.last_height), "
    "checkpoints = checkpoints + 1, ops = ops + excluded.ops, "
    "new_accounts = new_accounts + excluded.new_accounts, "
    "transfer_volume = transfer_volume + excluded.transfer_volume, "
    "supply_end = excluded.supply_end"
)
_UPSERT_BURN = (
    "INSERT INTO telemetry_burns VALUES (?, ?, ?) ON CONFLICT(day, target) DO UPDATE SET "
    "amount = amount + excluded.amount"
)


def statements(activity: Activity, days_kept: int) -> list[Statement]:
    """Fold `activity` into its day and delete the days older than `days_kept` before the
    newest: O(authors + burn targets of the checkpoint) rows written."""
    a = activity
    result: list[Statement] = [
        (
            _UPSERT_DAY,
            [a.day, a.height, a.height, a.ops, a.new_accounts, a.transfer_volume, a.supply],
        )
    ]
    result += [
        ("INSERT OR IGNORE INTO telemetry_active VALUES (?, ?)", [a.day, author])
        for author in a.authors
    ]
    result += [(_UPSERT_BURN, [a.day, target, amount]) for target, amount in a.burns]
    for table in ("telemetry_days", "telemetry_active", "telemetry_burns"):
        result.append(
            (
                f"DELETE FROM {table} WHERE day <= (SELECT max(day) FROM telemetry_days) - ?",
                [days_kept],
            )
        )
    return result


def _record(row: Sequence[Any]) -> DayRecord:
    day, first, last, checkpoints, ops, new_accounts, volume, supply = (int(v) for v in row)
    return DayRecord(day, first, last, checkpoints, ops, new_accounts, volume, supply)


def checkpoint_statements(
    telemetry: Activity | None, observed: Observed | None, days_kept: int = TELEMETRY_DAYS_KEPT
) -> list[Statement]:
    """What `put_checkpoint` writes beside the checkpoint row, in its transaction."""
    result = [] if telemetry is None else statements(telemetry, days_kept)
    if observed is not None:
        result.append(("DELETE FROM observed_members", []))
        result += [
            (
                "INSERT INTO observed_members VALUES (?, ?, ?, ?, ?, ?)",
                [
                    m.key,
                    observed.height,
                    m.signed,
                    m.missed,
                    m.last_signed_height,
                    m.last_signed_ms,
                ],
            )
            for m in observed.members
        ]
        result.append(("DELETE FROM observed_conflicts", []))
        result += [
            ("INSERT INTO observed_conflicts VALUES (?, ?)", [handle, raised_ms])
            for handle, raised_ms in observed.conflicts
        ]
    return result


def rollback_statements(height: int) -> list[Statement]:
    """With a rollback to `height` (in `put_rollback`'s transaction): drop every day that
    counted a reverted height. The day sums cannot be taken apart by height, so those days'
    heights at or below `height` go too, and the report's `missing_heights` says so instead of
    the reverted ops being counted."""
    days = "SELECT day FROM telemetry_days WHERE last_height > ?"
    return [
        (f"DELETE FROM telemetry_active WHERE day IN ({days})", [height]),
        (f"DELETE FROM telemetry_burns WHERE day IN ({days})", [height]),
        ("DELETE FROM telemetry_days WHERE last_height > ?", [height]),
    ]


def note_conflict_statement(handle: str, raised_ms: int) -> Statement:
    """A conflict raised between checkpoints (the first time counts)."""
    return ("INSERT OR IGNORE INTO observed_conflicts VALUES (?, ?)", [handle, raised_ms])


async def read_observed(reader: Reader) -> Observed | None:
    """The stored record, None before the first checkpoint that wrote one."""
    rows = await reader(
        "SELECT member, height, signed, missed, last_signed_height, last_signed_ms "
        "FROM observed_members ORDER BY member",
        (),
    )
    conflicts = await reader("SELECT handle, raised_ms FROM observed_conflicts ORDER BY handle", ())
    if not rows and not conflicts:
        return None
    members = tuple(
        MemberRecord(bytes(r[0]), int(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in rows
    )
    height = int(rows[0][1]) if rows else -1
    return Observed(height, members, tuple((str(h), int(ms)) for h, ms in conflicts))


async def since(reader: Reader) -> Since | None:
    """`protocol.telemetry.Since`, None when nothing is recorded (<= TELEMETRY_DAYS_KEPT rows)."""
    rows = await reader(
        "SELECT day, first_height, (SELECT sum(checkpoints) FROM telemetry_days) "
        "FROM telemetry_days ORDER BY day LIMIT 1",
        (),
    )
    return (int(rows[0][0]), int(rows[0][1]), int(rows[0][2])) if rows else None


async def read(reader: Reader, days: int) -> tuple[dict[int, DayRecord], Since | None]:
    """The day records `protocol.telemetry.report` needs for the `days` days ending at the
    newest recorded one (empty when nothing is recorded), and `since`."""
    return await _records(reader, days), await since(reader)


async def _records(reader: Reader, days: int) -> dict[int, DayRecord]:
    newest = await reader("SELECT max(day) FROM telemetry_days", ())
    if not newest or newest[0][0] is None:
        return {}
    first, last = window_needed(int(newest[0][0]), days)
    rows = await reader(
        "SELECT day, first_height, last_height, checkpoints, ops, new_accounts, "
        "transfer_volume, supply_end FROM telemetry_days WHERE day BETWEEN ? AND ?",
        (first, last),
    )
    records = {int(row[0]): _record(row) for row in rows}
    # The supply before the window: the newest day below it carries over into it.
    before = await reader(
        "SELECT day, first_height, last_height, checkpoints, ops, new_accounts, "
        "transfer_volume, supply_end FROM telemetry_days WHERE day < ? ORDER BY day DESC "
        "LIMIT 1",
        (first,),
    )
    for row in before:
        records[int(row[0])] = _record(row)
    for day, account in await reader(
        "SELECT day, account FROM telemetry_active WHERE day BETWEEN ? AND ?", (first, last)
    ):
        records[int(day)].active.add(bytes(account))
    for day, target, amount in await reader(
        "SELECT day, target, amount FROM telemetry_burns WHERE day BETWEEN ? AND ?",
        (first, last),
    ):
        records[int(day)].burns[str(target)] = int(amount)
    return records
