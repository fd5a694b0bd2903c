"""`[storage].retain_heights` at the storage layer: `mark_final` records the final height of
logged ops, `prune_final` empties the bodies of applied ops final at or below a height and
deletes the checkpoint rows below it, bounded per call; both stores alike."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from swarmd.storage import api
from swarmd.storage.api import OpStatus
from swarmd.storage.errors import StoreUsageError
from swarmd.storage.store import Store

from .test_store import NETWORK_ID, NODE_KEY, make_checkpoint, make_op


async def filled(store: api.OpStore) -> list[api.NewOp]:
    """Six ops: 1-2 final at height 1, 3-4 final at height 2, 5 reverted (final at 2 before the
    rollback marked it), 6 never final; checkpoints at heights 1..3."""
    ops = [make_op(index) for index in range(1, 7)]
    await store.append_ops(ops)
    assert await store.mark_final([op.op_id for op in ops[:2]], 1) == 2
    assert await store.mark_final([op.op_id for op in ops[2:5]], 2) == 3
    await store.mark_status([ops[4].op_id], OpStatus.REVERTED)
    for height in (1, 2, 3):
        await store.put_checkpoint(make_checkpoint(height, 2 * height), b"")
    return ops


async def test_prune_empties_final_bodies_keeps_the_rows_and_drops_old_checkpoints(
    store: api.OpStore,
) -> None:
    ops = await filled(store)
    assert await store.prune_final(1, api.PRUNE_ROWS_MAX) == (2, 0)  # no checkpoint below 1
    logged = await store.read_log(0, 10)
    assert [bool(op.envelope) for op in logged] == [False, False, True, True, True, True]
    pruned = await store.get_op(ops[0].op_id)  # the row (and its checksum) stays readable
    assert pruned is not None and pruned.envelope == b"" and pruned.author_seq == 1
    assert await store.prune_final(1, api.PRUNE_ROWS_MAX) == (0, 0)  # nothing left to do
    assert await store.prune_final(2, api.PRUNE_ROWS_MAX) == (2, 1)
    logged = await store.read_log(0, 10)
    # The reverted op (kept for the audit) and the never-final one keep their bodies.
    assert [bool(op.envelope) for op in logged] == [False, False, False, False, True, True]
    assert [c.height for c in await store.read_checkpoints(0, 10)] == [2, 3]
    if isinstance(store, Store):
        report = await store.integrity_check()
        assert report.ok, report


async def test_prune_is_bounded_per_call(store: api.OpStore) -> None:
    await filled(store)
    assert await store.prune_final(3, 1) == (1, 1)
    assert await store.prune_final(3, 1) == (1, 1)
    assert await store.prune_final(3, 2) == (2, 0)
    assert await store.prune_final(3, 2) == (0, 0)
    with pytest.raises(StoreUsageError):
        await store.prune_final(3, api.PRUNE_ROWS_MAX + 1)
    with pytest.raises(StoreUsageError):
        await store.prune_final(3, 0)


async def test_a_pruned_op_is_not_marked_final_again(store: api.OpStore) -> None:
    ops = await filled(store)
    await store.prune_final(1, api.PRUNE_ROWS_MAX)
    assert await store.mark_final([ops[0].op_id], 3) == 0
    assert await store.prune_final(3, api.PRUNE_ROWS_MAX) == (2, 2)


async def test_pruned_rows_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db"
    store = await Store.open(path, network_id=NETWORK_ID, node_key=NODE_KEY)
    ops = await filled(store)
    await store.prune_final(2, api.PRUNE_ROWS_MAX)
    await store.close()
    store = await Store.open(path, network_id=NETWORK_ID, node_key=NODE_KEY)
    try:
        assert [bool(op.envelope) for op in await store.read_log(0, 10)] == [False] * 4 + [True] * 2
        found = await store.get_op(ops[5].op_id)
        assert found is not None and found.envelope == ops[5].envelope
        assert (await store.integrity_check()).ok
    finally:
        await store.close()


# --- junk: expired ops bounded on disk as in memory -------------------------------------------


async def test_expired_ops_beyond_the_bound_are_deleted_and_the_log_goes_on(
    store: api.OpStore,
) -> None:
    ops = [make_op(index) for index in range(1, 11)]
    await store.append_ops(ops)
    junk = [ops[i].op_id for i in (1, 3, 4, 6, 7)]  # seqs 2, 4, 5, 7, 8
    await store.mark_status(junk, OpStatus.EXPIRED)
    assert await store.trim_expired(2, 1) == 1  # bounded per call
    assert await store.trim_expired(2, api.PRUNE_ROWS_MAX) == 2
    assert await store.trim_expired(2, api.PRUNE_ROWS_MAX) == 0  # the newest two stay
    logged = await store.read_log(0, 100)
    assert [op.seq for op in logged] == [1, 3, 6, 7, 8, 9, 10]
    assert [op.seq for op in await store.read_log(2, 3)] == [3, 6, 7]  # limit counts rows
    assert await store.get_op(ops[1].op_id) is None
    # A deleted junk op that comes back (by sync) is logged afresh; seqs never go back.
    assert await store.append_ops([ops[1]]) == [11]
    if isinstance(store, Store):
        report = await store.integrity_check()
        assert report.ok, report  # the gaps are the trimmed rows, nothing else
    with pytest.raises(StoreUsageError):
        await store.trim_expired(0, 1)


async def test_a_gap_that_trim_did_not_make_is_still_reported(tmp_path: Path) -> None:
    path = tmp_path / "db"
    store = await Store.open(path, network_id=NETWORK_ID, node_key=NODE_KEY)
    ops = [make_op(index) for index in range(1, 6)]
    await store.append_ops(ops)
    await store.mark_status([ops[0].op_id, ops[1].op_id], OpStatus.EXPIRED)
    assert await store.trim_expired(1, api.PRUNE_ROWS_MAX) == 1
    await store.close()
    with sqlite3.connect(path) as connection:  # a row lost outside trim_expired
        connection.execute("DELETE FROM op_log WHERE seq = 4")
    store = await Store.open(path, network_id=NETWORK_ID, node_key=NODE_KEY)
    try:
        report = await store.integrity_check()
        assert not report.ok and any("seq 5 follows 3" in p for p in report.problems)
    finally:
        await store.close()
