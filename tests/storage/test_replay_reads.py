"""What a restart from a snapshot reads of the log (issue 13): `replay_seqs` names only the rows
final above the snapshot and the applied rows not final, through two indexes (never a scan of
the log), and `read_ops_at` reads those rows; `rows_read` counts what was read. Both stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from swarmd.storage import api
from swarmd.storage.api import OpStatus
from swarmd.storage.errors import StoreUsageError
from swarmd.storage.store import Store
from swarmd.storage.store_records import _REPLAY_SEQS

from .test_store import NETWORK_ID, NODE_KEY, make_op


async def test_replay_seqs_names_the_tail_and_the_unsettled_rows(store: api.OpStore) -> None:
    """1-2 final at height 1, 3-4 at 2, 5 at 3; 6 applied, never final (pending or live);
    7 expired, 8 reverted (both never replayed), 9 final at 1 and pruned."""
    ops = [make_op(index) for index in range(1, 10)]
    await store.append_ops(ops)
    await store.mark_final([op.op_id for op in ops[:2]] + [ops[8].op_id], 1)
    await store.mark_final([op.op_id for op in ops[2:4]], 2)
    await store.mark_final([ops[4].op_id], 3)
    await store.mark_status([ops[6].op_id], OpStatus.EXPIRED)
    await store.mark_status([ops[7].op_id], OpStatus.REVERTED)
    await store.prune_final(1, 1)  # the oldest final row first: seq 1 (ties by seq)
    assert await store.replay_seqs(0) == [2, 3, 4, 5, 6, 9]  # (seq 1 is pruned)
    assert await store.replay_seqs(1) == [3, 4, 5, 6]
    assert await store.replay_seqs(2) == [5, 6]
    assert await store.replay_seqs(3) == [6]
    read_before = store.rows_read
    rows = await store.read_ops_at([6, 3, 5])
    assert [row.seq for row in rows] == [3, 5, 6]
    assert [row.envelope for row in rows] == [ops[2].envelope, ops[4].envelope, ops[5].envelope]
    assert store.rows_read == read_before + 3
    assert await store.read_ops_at([]) == []
    # Becoming final takes a row out of the unsettled ones.
    await store.mark_final([ops[5].op_id], 4)
    assert await store.replay_seqs(3) == [6]
    assert await store.replay_seqs(4) == []


async def test_read_ops_at_is_bounded(store: api.OpStore) -> None:
    with pytest.raises(StoreUsageError):
        await store.read_ops_at(list(range(1, api.READ_LOG_LIMIT_MAX + 2)))
    with pytest.raises(StoreUsageError):
        await store.read_ops_at([0])


async def test_a_long_history_costs_the_tail_only(store: api.OpStore) -> None:
    """3,000 ops final at heights 1..30 and 4 not final: what a restart from the snapshot at
    height 28 reads is the 200 ops final above it and the 4, whatever the history's length."""
    ops = [make_op(index) for index in range(1, 3_005)]
    await store.append_ops(ops)
    for height in range(1, 31):
        chunk = ops[(height - 1) * 100 : height * 100]
        await store.mark_final([op.op_id for op in chunk], height)
    seqs = await store.replay_seqs(28)
    assert seqs == list(range(2_801, 3_005))
    read_before = store.rows_read
    rows = await store.read_ops_at(seqs)
    assert len(rows) == 204
    assert store.rows_read - read_before == 204


async def test_replay_seqs_goes_through_the_indexes(tmp_path: Path) -> None:
    """The query plan: each half of the query searches its index; neither scans op_log."""
    path = tmp_path / "db"
    store = await Store.open(path, network_id=NETWORK_ID, node_key=NODE_KEY)
    await store.append_ops([make_op(index) for index in range(1, 50)])
    await store.close()
    with sqlite3.connect(path) as connection:
        plan = [row[-1] for row in connection.execute("EXPLAIN QUERY PLAN " + _REPLAY_SEQS, (5,))]
    searches = [step for step in plan if step.startswith(("SEARCH", "SCAN"))]
    assert any("op_log_by_final_height" in step for step in searches), plan
    assert any("op_log_unsettled" in step for step in searches), plan
    assert all("INDEX" in step for step in searches), plan
