"""The council rollback records (schema v4): certificates by epoch and reverted ops, run
against both stores, plus what only SQLite has (a reopen, a flipped certificate byte)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from swarmd.storage import api
from swarmd.storage.api import OpStatus, RevertedOp, StoredRollback
from swarmd.storage.errors import CorruptDatabaseError, RollbackConflictError, StoreUsageError
from swarmd.storage.store import Store

from .test_store import NETWORK_ID, NODE_KEY, make_checkpoint, make_op


async def _four_checkpoints(store: api.OpStore) -> None:
    await store.append_ops([make_op(index) for index in range(8)])
    for height in range(1, 5):
        await store.put_checkpoint(make_checkpoint(height, height * 2), b"state %d" % height)


async def test_a_rollback_moves_the_checkpoints_above_it_and_keeps_the_certificate(
    store: api.OpStore,
) -> None:
    await _four_checkpoints(store)
    first = StoredRollback(1, 2, b"certificate one")
    assert await store.put_rollback(first) == 2
    assert await store.put_rollback(first) == 0  # the same again (a restart): a no-op
    assert [c.height for c in await store.read_checkpoints(0, 10)] == [1, 2]
    moved = await store.read_reverted_checkpoints(0, 10)
    assert [(r.checkpoint.height, r.rolled_back_to) for r in moved] == [(3, 2), (4, 2)]
    assert await store.snapshot_heights() == [1, 2]
    # The new epoch finalizes height 3 again, with another checkpoint.
    await store.put_checkpoint(make_checkpoint(3, 8, b"epoch 1"), b"")
    second = StoredRollback(2, 3, b"certificate two")
    assert await store.put_rollback(second) == 0
    assert await store.read_rollbacks(0, 10) == [first, second]
    assert await store.read_rollbacks(1, 10) == [second]
    assert await store.read_rollbacks(0, 1) == [first]
    with pytest.raises(RollbackConflictError):
        await store.put_rollback(StoredRollback(2, 3, b"another certificate"))
    assert await store.read_rollbacks(0, 10) == [first, second]


async def test_reverted_ops_are_recorded_in_order_and_marked_in_the_log(
    store: api.OpStore,
) -> None:
    ops = [make_op(index) for index in range(6)]
    await store.append_ops(ops)
    unlogged = hashlib.sha256(b"never logged").digest()
    ids = [ops[4].op_id, ops[2].op_id, unlogged]
    assert await store.mark_reverted(ids, 7, 1) == 2  # the unlogged id is recorded, not marked
    assert await store.mark_reverted([], 7, 1) == 0
    statuses = {op.op_id: op.status for op in await store.read_log(0, 10)}
    assert statuses[ops[4].op_id] is OpStatus.REVERTED
    assert statuses[ops[2].op_id] is OpStatus.REVERTED
    assert statuses[ops[3].op_id] is OpStatus.APPLIED
    recorded = await store.read_reverted_ops(0, 10)
    assert [(r.op_id, r.height, r.epoch) for r in recorded] == [(i, 7, 1) for i in ids]
    assert [r.op_id for r in await store.read_reverted_ops(recorded[0].seq, 1)] == [ids[1]]
    found = await store.get_reverted(ops[2].op_id)
    assert found is not None and (found.height, found.epoch) == (7, 1)
    assert await store.get_reverted(ops[0].op_id) is None
    # Reverted again by a later certificate: the newer height and epoch, recorded last.
    await store.mark_reverted([ops[4].op_id], 5, 2)
    again = await store.read_reverted_ops(0, 10)
    assert [r.op_id for r in again] == [ids[1], ids[2], ids[0]]
    assert (again[-1].height, again[-1].epoch) == (5, 2)


async def test_many_reverted_ops_span_several_statements(store: api.OpStore) -> None:
    ops = [make_op(index) for index in range(1_000)]
    await store.append_ops(ops)
    assert await store.mark_reverted([op.op_id for op in ops], 0, 1) == 1_000
    recorded: list[RevertedOp] = []
    while page := await store.read_reverted_ops(recorded[-1].seq if recorded else 0, 256):
        recorded += page
    assert [r.op_id for r in recorded] == [op.op_id for op in ops]


async def test_rollback_record_misuse_is_a_typed_error(store: api.OpStore) -> None:
    with pytest.raises(StoreUsageError):
        await store.put_rollback(StoredRollback(0, 1, b"epoch 0 has no certificate"))
    with pytest.raises(StoreUsageError):
        await store.put_rollback(StoredRollback(1, -1, b"x"))
    with pytest.raises(StoreUsageError):
        await store.mark_reverted([b"short"], 1, 1)
    with pytest.raises(StoreUsageError):
        await store.mark_reverted([bytes(32)], 1, 0)
    with pytest.raises(StoreUsageError):
        await store.read_rollbacks(0, 0)
    assert await store.read_rollbacks(0, 10) == []


async def test_rollback_records_survive_a_reopen_and_a_flipped_byte_is_caught(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db"
    store = await Store.open(path, network_id=NETWORK_ID, node_key=NODE_KEY)
    await _four_checkpoints(store)
    await store.put_rollback(StoredRollback(1, 1, b"certificate"))
    await store.mark_reverted([make_op(5).op_id], 1, 1)
    await store.close()
    store = await Store.open(path, network_id=NETWORK_ID, node_key=NODE_KEY)
    assert await store.read_rollbacks(0, 10) == [StoredRollback(1, 1, b"certificate")]
    assert [r.op_id for r in await store.read_reverted_ops(0, 10)] == [make_op(5).op_id]
    assert (await store.read_log(5, 1))[0].status is OpStatus.REVERTED
    await store.close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE rollback_certificates SET certificate = ?", (b"certificatf",))
    store = await Store.open(path, network_id=NETWORK_ID, node_key=NODE_KEY)
    with pytest.raises(CorruptDatabaseError):
        await store.read_rollbacks(0, 10)
    report = await store.integrity_check()
    assert report.problems == ("rollback certificate of epoch 1: checksum mismatch",)
    await store.close()


async def test_an_op_reverted_by_a_certificate_is_no_longer_final(store: api.OpStore) -> None:
    """A reverted op loses its final height: if it comes back (logged again by sync) it is
    pending, so a prune pass does not empty its body as if it were still final."""
    ops = [make_op(index) for index in range(3)]
    await store.append_ops(ops)
    await store.put_checkpoint(make_checkpoint(1, 3), b"")
    await store.put_checkpoint(make_checkpoint(2, 3), b"")
    await store.mark_final([op.op_id for op in ops], 1)
    assert await store.mark_reverted([ops[1].op_id], 0, 1) == 1
    await store.mark_status([ops[1].op_id], OpStatus.APPLIED)  # it came back
    assert await store.prune_final(2, 10) == (2, 1)  # ops 0 and 2; op 1 is pending again
    bodies = [bool(op.envelope) for op in await store.read_log(0, 10)]
    assert bodies == [False, True, False]
