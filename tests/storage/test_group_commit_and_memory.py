"""GroupCommitter batching and failure isolation; MemoryStore's crash semantics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from swarmd.storage.api import OpStatus
from swarmd.storage.errors import (
    DatabaseLockedError,
    DuplicateOpError,
    StorageOverloadedError,
    StoreClosedError,
    StoreUsageError,
    WrongNetworkError,
)
from swarmd.storage.group_commit import GroupCommitter
from swarmd.storage.memory import MemoryDatabase, MemoryStore
from swarmd.storage.store import Store

from .test_store import NETWORK_ID, NODE_KEY, OTHER_NETWORK_ID, make_checkpoint, make_op


@pytest.mark.gate("cc-concurrent-appends")
async def test_concurrent_appends_share_commits_and_get_their_own_seqs(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db", network_id=NETWORK_ID, node_key=NODE_KEY)
    committer = GroupCommitter(store, batch_ops_max=50)
    requests = [[make_op(index * 3 + k) for k in range(3)] for index in range(100)]
    results = await asyncio.gather(*(committer.append(request) for request in requests))
    assert committer.commits < len(requests) // 2, "requests were not grouped"
    assert committer.ops_committed == 300
    for request, seqs in zip(requests, results, strict=True):
        assert len(seqs) == 3 and seqs == list(range(seqs[0], seqs[0] + 3))
        logged = await store.get_ops([op.op_id for op in request])
        assert [op.seq for op in logged] == seqs
    assert sorted(seq for seqs in results for seq in seqs) == list(range(1, 301))
    await committer.close()
    await store.close()


async def test_a_bad_request_fails_alone() -> None:
    store = await MemoryStore.open(MemoryDatabase(), network_id=NETWORK_ID, node_key=NODE_KEY)
    await store.append_ops([make_op(0)])
    committer = GroupCommitter(store)
    outcomes = await asyncio.gather(
        committer.append([make_op(1)]),
        committer.append([make_op(2), make_op(0)]),  # op 0 is already logged
        committer.append([make_op(3)]),
        committer.append([make_op(3)]),  # the same op from two submitters: the second loses
        return_exceptions=True,
    )
    assert outcomes[0] == [2] and outcomes[2] == [3]
    assert isinstance(outcomes[1], DuplicateOpError)
    assert isinstance(outcomes[3], DuplicateOpError)
    assert store.last_seq == 3
    with pytest.raises(StoreUsageError):
        await committer.append([make_op(4)._replace(envelope="not bytes")])


async def test_a_full_queue_sheds_load_and_close_drains() -> None:
    store = await MemoryStore.open(MemoryDatabase(), network_id=NETWORK_ID, node_key=NODE_KEY)
    committer = GroupCommitter(store, batch_ops_max=2, queue_ops_max=4)
    first = [asyncio.ensure_future(committer.append([make_op(i)])) for i in range(4)]
    await asyncio.sleep(0)  # let the four requests queue (no waiting on time: one loop turn)
    assert committer.queued_ops == 4
    with pytest.raises(StorageOverloadedError):
        await committer.append([make_op(9)])
    with pytest.raises(StoreUsageError):
        await committer.append([make_op(10), make_op(11), make_op(12)])
    await committer.close()
    assert [future.result() for future in first] == [[1], [2], [3], [4]]
    with pytest.raises(StoreClosedError):
        await committer.append([make_op(13)])


async def test_memory_store_crash_keeps_committed_writes_only() -> None:
    database = MemoryDatabase()
    store = await MemoryStore.open(database, network_id=NETWORK_ID, node_key=NODE_KEY)
    assert await store.append_ops([make_op(1), make_op(2)]) == [1, 2]
    await store.put_checkpoint(make_checkpoint(1, 2), b"state")
    in_flight = asyncio.ensure_future(store.append_ops([make_op(3)]))
    status_in_flight = asyncio.ensure_future(
        store.mark_status([make_op(1).op_id], OpStatus.REJECTED)
    )
    await asyncio.sleep(0)  # both writes are past their checks, before their commit point
    store.crash()
    with pytest.raises(StoreClosedError):
        await in_flight  # never acknowledged ...
    with pytest.raises(StoreClosedError):
        await status_in_flight
    with pytest.raises(StoreClosedError):
        await store.read_log(0, 10)
    restarted = await MemoryStore.open(database, network_id=NETWORK_ID)
    logged = await restarted.read_log(0, 10)
    assert [op.op_id for op in logged] == [make_op(1).op_id, make_op(2).op_id]  # ... nor stored
    assert logged[0].status is OpStatus.APPLIED
    assert await restarted.latest_checkpoint() == make_checkpoint(1, 2)
    assert (await restarted.integrity_check()).ok
    assert restarted.append_ops_sync([make_op(3)]) == [3]  # the synchronous variant commits now


async def test_memory_store_identity_and_lock() -> None:
    database = MemoryDatabase()
    store = MemoryStore.open_sync(database, network_id=NETWORK_ID, node_key=NODE_KEY)
    with pytest.raises(DatabaseLockedError):
        MemoryStore.open_sync(database, network_id=NETWORK_ID)
    store.close_sync()
    with pytest.raises(WrongNetworkError):
        MemoryStore.open_sync(database, network_id=OTHER_NETWORK_ID)
