"""Product telemetry in the store (schema v8): folded in the checkpoint's own write, kept
across a reopen, pruned at TELEMETRY_DAYS_KEPT, and the same records in SQLite as the in-memory
fold of protocol/telemetry.py."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from pathlib import Path

from swarmd.protocol.limits import TELEMETRY_DAYS_KEPT, TELEMETRY_DAYS_QUERY_MAX
from swarmd.protocol.node_core import MemberRecord, Observed
from swarmd.protocol.telemetry import Activity, DayRecord, fold, report, since_of
from swarmd.storage import api
from swarmd.storage.memory import MemoryDatabase, MemoryStore
from swarmd.storage.store import Store

from .test_store import NETWORK_ID, NODE_KEY, make_checkpoint

DAY = 20_454  # 2026-01-01


def _key(index: int) -> bytes:
    return hashlib.sha256(b"account %d" % index).digest()


def _activities() -> list[Activity]:
    """Eight checkpoints over days DAY .. DAY+70 with overlapping authors and burns."""
    result = []
    for height in range(1, 9):
        day = DAY + (height - 1) * 10
        authors = tuple(sorted(_key(i) for i in range(height % 3, height % 3 + 3)))
        burns = (("post:1", height), ("post:2", 1)) if height % 2 else ()
        result.append(
            Activity(height, day, 3 + height, authors, height % 2, 7 * height, burns, 1000 - height)
        )
    # A second checkpoint on the last day, with one author already active that day.
    last = result[-1]
    result.append(Activity(9, last.day, 2, last.authors[:1], 0, 5, (("post:1", 4),), 980))
    return result


async def test_sqlite_keeps_the_records_of_the_in_memory_fold_across_a_reopen(
    tmp_path: Path,
) -> None:
    expected: dict[int, DayRecord] = {}
    store = await Store.open(tmp_path / "db", network_id=NETWORK_ID, node_key=NODE_KEY)
    for activity in _activities():
        fold(expected, activity, TELEMETRY_DAYS_KEPT)
        checkpoint = make_checkpoint(activity.height, activity.height)
        await store.put_checkpoint(checkpoint, b"", telemetry=activity)
        # Storing the same checkpoint again (a replayed write) counts nothing twice.
        await store.put_checkpoint(checkpoint, b"", telemetry=activity)
    await store.close()
    store = await Store.open(tmp_path / "db", network_id=NETWORK_ID, node_key=NODE_KEY)
    records, since = await store.read_telemetry(TELEMETRY_DAYS_QUERY_MAX)
    await store.close()
    assert records == expected
    assert since == since_of(expected) == (DAY, 1, 9)
    assert report(records, 90, since, 9) == report(expected, 90, since_of(expected), 9)


async def test_the_memory_store_gives_the_same_report() -> None:
    memory = await MemoryStore.open(MemoryDatabase(), network_id=NETWORK_ID, node_key=NODE_KEY)
    expected: dict[int, DayRecord] = {}
    for activity in _activities():
        fold(expected, activity, TELEMETRY_DAYS_KEPT)
        await memory.put_checkpoint(make_checkpoint(activity.height, 1), b"", telemetry=activity)
    records, since = await memory.read_telemetry(30)
    assert report(records, 30, since, 9) == report(expected, 30, since_of(expected), 9)
    await memory.close()


async def test_a_read_loads_only_the_window_it_needs(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db", network_id=NETWORK_ID, node_key=NODE_KEY)
    for activity in _activities():
        await store.put_checkpoint(make_checkpoint(activity.height, 1), b"", telemetry=activity)
    records, since = await store.read_telemetry(1)
    await store.close()
    # One day ending at DAY+70 needs DAY+11 .. DAY+70 and the newest day before (the supply).
    assert sorted(records) == [DAY + 10, DAY + 20, DAY + 30, DAY + 40, DAY + 50, DAY + 60, DAY + 70]
    assert records[DAY + 10].active == set()  # (outside the window: its supply only)
    assert since == (DAY, 1, 9)


async def test_days_beyond_telemetry_days_kept_are_deleted_in_the_same_write(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "db", network_id=NETWORK_ID, node_key=NODE_KEY)
    one = (_key(1),)
    await store.put_checkpoint(
        make_checkpoint(1, 1), b"", telemetry=Activity(1, DAY, 1, one, 1, 0, (("t", 1),), 5)
    )
    late = DAY + TELEMETRY_DAYS_KEPT
    await store.put_checkpoint(
        make_checkpoint(2, 1), b"", telemetry=Activity(2, late, 1, one, 0, 0, (("t", 1),), 5)
    )
    records, since = await store.read_telemetry(TELEMETRY_DAYS_QUERY_MAX)
    await store.close()
    assert sorted(records) == [late] and since == (late, 2, 1)
    with contextlib.closing(sqlite3.connect(tmp_path / "db")) as db:
        for table in ("telemetry_days", "telemetry_active", "telemetry_burns"):
            assert db.execute(f"SELECT min(day), count(*) FROM {table}").fetchone() == (late, 1)


async def test_the_observed_record_is_replaced_with_each_checkpoint(store: api.OpStore) -> None:
    assert await store.read_observed() is None
    await store.note_conflict("neo", 1_000)
    await store.note_conflict("neo", 2_000)  # the first raise counts
    noted = await store.read_observed()
    assert noted is not None and noted.conflicts == (("neo", 1_000),) and noted.members == ()
    records = [MemberRecord(_key(1), 3, 1, 3, 5_000), MemberRecord(_key(2), 0, 4, 0, 0)]
    members = tuple(sorted(records, key=lambda m: m.key))  # (the core hands them by key)
    first = Observed(4, members, (("a", 7), ("neo", 1_000)))
    await store.put_checkpoint(make_checkpoint(4, 1), b"", observed=first)
    assert await store.read_observed() == first
    second = Observed(5, members[:1], ())
    await store.put_checkpoint(make_checkpoint(5, 1), b"", observed=second)
    await store.note_conflict("late", 9)
    assert await store.read_observed() == Observed(5, members[:1], (("late", 9),))


async def test_a_rollback_drops_the_days_that_counted_reverted_heights(store: api.OpStore) -> None:
    one = (_key(1),)
    for height, day in ((1, DAY), (2, DAY + 1), (3, DAY + 1), (4, DAY + 2)):
        activity = Activity(height, day, 1, one, 0, 0, (("t", 1),), 5)
        await store.put_checkpoint(make_checkpoint(height, 1), b"", telemetry=activity)
    await store.put_rollback(api.StoredRollback(1, 2, b"certificate"))
    records, since = await store.read_telemetry(TELEMETRY_DAYS_QUERY_MAX)
    # Day DAY+1 counted height 3 (reverted): it goes, height 2 with it; DAY+2 goes too.
    assert sorted(records) == [DAY] and since == (DAY, 1, 1)
    doc = report(records, 1, since, 2)
    assert doc["missing_heights"] == 1  # height 2: final, no longer counted


async def test_an_offline_rollback_drops_the_same_days(store: api.OpStore) -> None:
    """`swarmd rollback` on a stopped node (Store.roll_back_to) cuts telemetry back like an
    accepted certificate: no day keeps counting a reverted height."""
    one = (_key(1),)
    for height, day in ((1, DAY), (2, DAY + 1), (3, DAY + 1), (4, DAY + 2)):
        activity = Activity(height, day, 1, one, 0, 0, (("t", 1),), 5)
        await store.put_checkpoint(make_checkpoint(height, 1), b"", telemetry=activity)
    await store.roll_back_to(2)
    records, since = await store.read_telemetry(TELEMETRY_DAYS_QUERY_MAX)
    assert sorted(records) == [DAY] and since == (DAY, 1, 1)
