"""Product telemetry from final state only: the same figures on every node.

Every figure is counted on the UTC day of the checkpoint that finalized an op, ``day =
cut.time_ms // DAY_MS`` (the council-agreed time, checkpoint.py), so two nodes holding the same
final checkpoints report the same numbers whatever their clocks. Each checkpoint contributes an
`Activity` computed from its own final ops (cost O(ops in the cut)); the store folds it into
one `DayRecord` per day in the checkpoint's own write (storage/telemetry_sql.py), and the
figures over windows of days (`figures`) are computed from those records when read. The
formulas are written in docs/OPERATIONS.md ("Product telemetry"):

- new accounts (day d): ops of sequence 1 final on d (an account starts with its first op);
- daily active (d): distinct authors of ops final on d;
- monthly active (d): distinct authors of ops final on days d-29 .. d;
- retention (d): of the accounts active on days d-59 .. d-30, the fraction also active on
  d-29 .. d (None when none was active in the earlier window);
- credits velocity (d): credits moved by transfers final on d-29 .. d, divided by the
  circulating supply (granted - burned) at the end of d (None at zero supply);
- burns per target (d): credits burned on d for each target.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .ops import Kind, Op

DAY_MS = 86_400_000
#: The rolling window of monthly active accounts, retention and velocity.
WINDOW_DAYS = 30


def day_of(time_ms: int) -> int:
    """The UTC day number (days since 1970-01-01) of a cut time."""
    return time_ms // DAY_MS


def day_text(day: int) -> str:
    """A day number as an ISO date (pure arithmetic on the number: no clock is read)."""
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=day)).isoformat()


@dataclass(frozen=True, slots=True)
class Activity:
    """What one final checkpoint adds to its day."""

    height: int
    day: int
    ops: int
    #: Distinct authors of the checkpoint's final ops, sorted.
    authors: tuple[bytes, ...]
    new_accounts: int
    transfer_volume: int
    #: (target, credits burned) sorted by target.
    burns: tuple[tuple[str, int], ...]
    #: Circulating supply (granted - burned) of the final state after this checkpoint.
    supply: int


def activity_of(height: int, time_ms: int, ops: Iterable[Op], supply: int) -> Activity:
    """The contribution of the checkpoint at `height` (cut time `time_ms`) whose final ops
    are `ops`; one pass over them."""
    authors: set[bytes] = set()
    burns: dict[str, int] = {}
    count = new_accounts = volume = 0
    for op in ops:
        count += 1
        authors.add(op.author)
        if op.seq == 1:
            new_accounts += 1
        if op.kind is Kind.TRANSFER:
            volume += op.amount
        elif op.kind is Kind.BURN:
            target = op.fields["target"]
            burns[target] = burns.get(target, 0) + op.amount
    return Activity(
        height,
        day_of(time_ms),
        count,
        tuple(sorted(authors)),
        new_accounts,
        volume,
        tuple(sorted(burns.items())),
        supply,
    )


@dataclass(slots=True)
class DayRecord:
    """One UTC day's totals, as the store keeps them."""

    day: int
    first_height: int
    last_height: int
    checkpoints: int = 0
    ops: int = 0
    new_accounts: int = 0
    transfer_volume: int = 0
    #: Circulating supply after the day's last checkpoint.
    supply_end: int = 0
    active: set[bytes] = field(default_factory=set)
    burns: dict[str, int] = field(default_factory=dict)


def fold(records: dict[int, DayRecord], activity: Activity, days_kept: int) -> None:
    """Add `activity` to its day (the in-memory twin of the store's SQL), then drop days
    older than `days_kept` before the newest one."""
    record = records.get(activity.day)
    if record is None:
        record = records[activity.day] = DayRecord(activity.day, activity.height, activity.height)
    record.first_height = min(record.first_height, activity.height)
    record.last_height = max(record.last_height, activity.height)
    record.checkpoints += 1
    record.ops += activity.ops
    record.new_accounts += activity.new_accounts
    record.transfer_volume += activity.transfer_volume
    record.supply_end = activity.supply
    record.active.update(activity.authors)
    for target, amount in activity.burns:
        record.burns[target] = record.burns.get(target, 0) + amount
    newest = max(records)
    for day in [day for day in records if day <= newest - days_kept]:
        del records[day]


@dataclass(frozen=True, slots=True)
class DayFigures:
    day: int
    date: str
    checkpoints: int
    ops: int
    new_accounts: int
    daily_active: int
    monthly_active: int
    #: Accounts active on d-59 .. d-30 (retention's denominator) and how many of them came back.
    retention_base: int
    retained: int
    retention: float | None
    transfer_volume_30d: int
    supply: int
    velocity: float | None
    burns: dict[str, int]

    def to_json(self) -> dict[str, object]:
        return {
            "day": self.day,
            "date": self.date,
            "checkpoints": self.checkpoints,
            "ops": self.ops,
            "new_accounts": self.new_accounts,
            "daily_active": self.daily_active,
            "monthly_active": self.monthly_active,
            "retention_base": self.retention_base,
            "retained": self.retained,
            "retention": self.retention,
            "transfer_volume_30d": self.transfer_volume_30d,
            "supply": self.supply,
            "velocity": self.velocity,
            "burns": dict(sorted(self.burns.items())),
        }


def window_needed(last_day: int, count: int) -> tuple[int, int]:
    """The days whose records `figures` needs for the `count` days ending at `last_day`."""
    return last_day - count + 1 - 2 * WINDOW_DAYS + 1, last_day


def figures(records: Mapping[int, DayRecord], last_day: int, count: int) -> list[DayFigures]:
    """The figures of the `count` days ending at `last_day`, oldest first (days without a
    checkpoint included: nothing happened, supply carries over). `records` must hold every
    recorded day of `window_needed(last_day, count)`."""
    return [_figures_of(records, day) for day in range(last_day - count + 1, last_day + 1)]


def _active(records: Mapping[int, DayRecord], first: int, last: int) -> set[bytes]:
    active: set[bytes] = set()
    for day in range(first, last + 1):
        record = records.get(day)
        if record is not None:
            active |= record.active
    return active


def _supply_at(records: Mapping[int, DayRecord], day: int) -> int:
    before = [d for d in records if d <= day]
    return records[max(before)].supply_end if before else 0


def _figures_of(records: Mapping[int, DayRecord], day: int) -> DayFigures:
    record = records.get(day) or DayRecord(day, 0, 0)
    recent = _active(records, day - WINDOW_DAYS + 1, day)
    earlier = _active(records, day - 2 * WINDOW_DAYS + 1, day - WINDOW_DAYS)
    retained = len(earlier & recent)
    volume = sum(
        r.transfer_volume
        for d in range(day - WINDOW_DAYS + 1, day + 1)
        if (r := records.get(d)) is not None
    )
    supply = _supply_at(records, day)
    return DayFigures(
        day=day,
        date=day_text(day),
        checkpoints=record.checkpoints,
        ops=record.ops,
        new_accounts=record.new_accounts,
        daily_active=len(record.active),
        monthly_active=len(recent),
        retention_base=len(earlier),
        retained=retained,
        retention=retained / len(earlier) if earlier else None,
        transfer_volume_30d=volume,
        supply=supply,
        velocity=volume / supply if supply > 0 else None,
        burns=dict(record.burns),
    )


#: (oldest day kept, its first final height, final checkpoints counted on the days kept).
Since = tuple[int, int, int]


def since_of(records: Mapping[int, DayRecord]) -> Since | None:
    """`Since` of in-memory records (the store reads its own)."""
    if not records:
        return None
    day = min(records)
    return day, records[day].first_height, sum(r.checkpoints for r in records.values())


def report(
    records: Mapping[int, DayRecord], count: int, since: Since | None, final_height: int
) -> dict[str, object]:
    """The JSON document of GET /v1/telemetry: the `count` days ending at the newest recorded
    day. `since_height` is the first final height of the oldest day kept: a node that joined
    by state sync (or was upgraded, or pruned old days) counts nothing before it, so windows
    reaching before `since_day` undercount. `missing_heights` counts the final heights after
    it up to `final_height` (the node's, read before the records) that the node never counted
    (a state sync over a gap installs a state without its ops): non-zero means its figures
    undercount."""
    if not records or since is None:
        return {
            "since_height": None,
            "since_day": None,
            "latest_day": None,
            "latest_height": None,
            "missing_heights": 0,
            "window_days": WINDOW_DAYS,
            "days": [],
        }
    last_day = max(records)
    days: Sequence[DayFigures] = figures(records, last_day, count)
    return {
        "since_height": since[1],
        "since_day": day_text(since[0]),
        "latest_day": day_text(last_day),
        "latest_height": records[last_day].last_height,
        "missing_heights": max(0, final_height - since[1] + 1 - since[2]),
        "window_days": WINDOW_DAYS,
        "days": [day.to_json() for day in days],
    }
