"""Product telemetry in SQLite (schema v8 `_V8_TELEMETRY`): the statements that fold one
checkpoint's `Activity` into its day, in the checkpoint's own transaction, and the read of the
day records a report needs. The in-memory twin is `protocol.telemetry.fold`; both must give the
same records (tests/storage/test_telemetry_store.py checks them against each other)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from swarmd.protocol.telemetry import Activity, DayRecord, Since, window_needed

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
