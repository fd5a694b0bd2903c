"""The final heights of a checkpoint's ops (op_log.final_height, schema v6) are written in the
checkpoint's own transaction (`put_checkpoint(final_op_ids=...)`): both or neither survive a
crash. `unrecorded_final` tells the final ops whose heights a store lacks (one upgraded from
before v6) and `record_final_heights` backfills them; both stores alike. The SQLite crash at
every write point is in test_crash_safety.py (`final_heights_match`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from pathlib import Path

import pytest

from swarmd.storage import api
from swarmd.storage.errors import StoreClosedError, StoreUsageError
from swarmd.storage.memory import MemoryDatabase, MemoryStore
from swarmd.storage.rollback_sql import IDS_PER_STATEMENT_MAX, SELECT_UNRECORDED_FINAL
from swarmd.storage.schema import MIGRATIONS, SCHEMA_VERSION
from swarmd.storage.store import Store

from .test_store import NETWORK_ID, NODE_KEY, make_checkpoint, make_op


def ids(ops: list[api.NewOp]) -> list[bytes]:
    return [op.op_id for op in ops]


async def test_put_checkpoint_records_the_final_height_of_its_ops(store: api.OpStore) -> None:
    ops = [make_op(index) for index in range(1, 7)]
    await store.append_ops(ops)
    await store.put_checkpoint(make_checkpoint(1, 2), b"", final_op_ids=ids(ops[:2]))
    await store.put_checkpoint(make_checkpoint(2, 4), b"", final_op_ids=ids(ops[2:4]))
    assert await store.unrecorded_final(ids(ops)) == ids(ops[4:])
    # Storing the same checkpoint again writes nothing, final heights included.
    await store.put_checkpoint(make_checkpoint(2, 4), b"", final_op_ids=ids(ops[4:5]))
    assert await store.unrecorded_final(ids(ops)) == ids(ops[4:])
    # What the final heights are for: a restart from the snapshot at 1 replays the ops final
    # above it and the unsettled ones; a rollback to 1 reverts exactly the ops final above it.
    assert await store.replay_seqs(1) == [3, 4, 5, 6]
    assert await store.roll_back_to(1) == (2, 1)
    statuses = [op.status for op in await store.read_log(0, 10)]
    assert (
        statuses
        == [api.OpStatus.APPLIED] * 2 + [api.OpStatus.REVERTED] * 2 + [api.OpStatus.APPLIED] * 2
    )


async def test_a_checkpoint_finalizing_more_ids_than_one_statement_holds_records_all(
    store: api.OpStore,
) -> None:
    count = 2 * IDS_PER_STATEMENT_MAX + 7
    ops = [make_op(index) for index in range(1, count + 1)]
    await store.append_ops(ops)
    await store.put_checkpoint(make_checkpoint(1, count), b"", final_op_ids=ids(ops))
    for start in range(0, count, api.IDS_PER_CALL_MAX):
        assert await store.unrecorded_final(ids(ops[start : start + api.IDS_PER_CALL_MAX])) == []
    assert await store.roll_back_to(0) == (count, 1)


async def test_a_malformed_final_op_id_is_refused_before_anything_is_written(
    store: api.OpStore,
) -> None:
    await store.append_ops([make_op(1)])
    with pytest.raises(StoreUsageError):
        await store.put_checkpoint(make_checkpoint(1, 1), b"", final_op_ids=[b"short"])
    assert await store.latest_checkpoint() is None


async def test_a_crash_inside_put_checkpoint_keeps_neither_the_checkpoint_nor_the_heights() -> None:
    database = MemoryDatabase()
    store = await MemoryStore.open(database, network_id=NETWORK_ID, node_key=NODE_KEY)
    ops = [make_op(index) for index in range(1, 4)]
    await store.append_ops(ops)
    write = asyncio.ensure_future(
        store.put_checkpoint(make_checkpoint(1, 3), b"", final_op_ids=ids(ops))
    )
    await asyncio.sleep(0)  # the write is at its commit point (the real store's hop)
    store.crash()
    with pytest.raises(StoreClosedError):
        await write
    store = await MemoryStore.open(database, network_id=NETWORK_ID, node_key=NODE_KEY)
    assert await store.latest_checkpoint() is None
    assert await store.unrecorded_final(ids(ops)) == ids(ops)
    # The write again, uninterrupted: both.
    await store.put_checkpoint(make_checkpoint(1, 3), b"", final_op_ids=ids(ops))
    assert await store.unrecorded_final(ids(ops)) == []
    assert (await store.latest_checkpoint()) == make_checkpoint(1, 3)


async def test_the_backfill_records_only_missing_heights_of_applied_ops_with_a_body(
    store: api.OpStore,
) -> None:
    ops = [make_op(index) for index in range(1, 7)]
    await store.append_ops(ops)
    # Ops 1-2 final at 1 before v6 (no height), op 5 final at 2 and pruned, op 3 recorded at 3,
    # op 4 expired, op 6 never final.
    await store.put_checkpoint(make_checkpoint(1, 2), b"")
    await store.put_checkpoint(make_checkpoint(2, 5), b"", final_op_ids=ids(ops[4:5]))
    await store.put_checkpoint(make_checkpoint(3, 6), b"", final_op_ids=ids(ops[2:3]))
    assert await store.prune_final(2, api.PRUNE_ROWS_MAX) == (1, 1)
    await store.mark_status([ops[3].op_id], api.OpStatus.EXPIRED)
    assert await store.unrecorded_final(ids(ops)) == ids(ops[:2]) + ids(ops[5:])
    changed = await store.record_final_heights([(1, ids(ops[:2])), (2, ids(ops[2:5]))])
    assert changed == 2  # the pruned, expired and recorded ones are left as they are
    assert await store.unrecorded_final(ids(ops)) == ids(ops[5:])
    assert await store.roll_back_to(2) == (1, 1)  # op 3 kept its height (3)
    assert await store.roll_back_to(0) == (2, 1)  # the backfilled ops are final above 0
    with pytest.raises(StoreUsageError):
        await store.record_final_heights([(0, ids(ops[5:]))])
    too_many = [make_op(index).op_id for index in range(api.IDS_PER_CALL_MAX + 1)]
    with pytest.raises(StoreUsageError):
        await store.record_final_heights([(3, too_many[:5]), (4, too_many[5:])])
    with pytest.raises(StoreUsageError):
        await store.unrecorded_final(too_many)


async def test_unrecorded_final_goes_through_an_index(tmp_path: Path) -> None:
    """The query the rollback check runs for the heads of every checkpoint above its target:
    it searches an index (op_id's), never scans op_log."""
    path = tmp_path / "db"
    store = await Store.open(path, network_id=NETWORK_ID, node_key=NODE_KEY)
    await store.append_ops([make_op(index) for index in range(1, 50)])
    await store.close()
    sql = SELECT_UNRECORDED_FINAL + "(?, ?)"
    with contextlib.closing(sqlite3.connect(path)) as connection:
        plan = [row[-1] for row in connection.execute("EXPLAIN QUERY PLAN " + sql, (b"a", b"b"))]
    steps = [step for step in plan if step.startswith(("SEARCH", "SCAN"))]
    assert steps and all("INDEX" in step for step in steps), plan


async def test_a_store_built_at_schema_v5_has_its_final_ops_unrecorded_after_the_upgrade(
    tmp_path: Path,
) -> None:
    """The v6 migration adds op_log.final_height empty: every op final before it is reported
    by `unrecorded_final` until the backfill records it; checkpoints stored after the upgrade
    record theirs."""
    path = tmp_path / "db"
    ops = [make_op(index) for index in range(1, 5)]
    with contextlib.closing(sqlite3.connect(path)) as connection:
        for migration in MIGRATIONS[:5]:
            for sql in migration:
                connection.execute(sql)
        connection.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [
                (api.META_SCHEMA_VERSION, b"5"),
                (api.META_NETWORK_ID, NETWORK_ID),
                (api.META_NODE_KEY, NODE_KEY),
            ],
        )
        for seq, op in enumerate(ops[:3], start=1):
            crc = api.op_crc(seq, *op[:4])
            connection.execute(
                "INSERT INTO op_log VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                (seq, *op[:4], op.received_at_ms, crc),
            )
        checkpoint = make_checkpoint(1, 3)
        connection.execute(
            "INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?)",
            (*dataclasses.astuple(checkpoint), api.checkpoint_crc(checkpoint)),
        )
        connection.commit()
    store = await Store.open(path, network_id=NETWORK_ID, node_key=NODE_KEY)
    try:
        assert await store.get_meta(api.META_SCHEMA_VERSION) == str(SCHEMA_VERSION).encode()
        assert await store.unrecorded_final(ids(ops[:3])) == ids(ops[:3])
        # What `swarmd rollback`'s check prevents: a revert by final height reverts none.
        assert await store.roll_back_to(0) == (0, 1)
        await store.put_checkpoint(checkpoint, b"")  # (stored again after that rollback)
        await store.append_ops(ops[3:])
        await store.put_checkpoint(make_checkpoint(2, 4), b"", final_op_ids=ids(ops[3:]))
        assert await store.unrecorded_final(ids(ops)) == ids(ops[:3])
        assert await store.record_final_heights([(1, ids(ops[:3]))]) == 3
        assert await store.unrecorded_final(ids(ops)) == []
        assert (await store.integrity_check()).ok
    finally:
        await store.close()
