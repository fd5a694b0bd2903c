"""The store's contract, run against both Store (SQLite) and MemoryStore, plus what only the
SQLite store has: reopening, identity checks, migrations, corrupt files and locking."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from swarmd.storage import api
from swarmd.storage.api import Checkpoint, NewOp, NodeMode, OpStatus, PendingOp
from swarmd.storage.errors import (
    CheckpointConflictError,
    CorruptDatabaseError,
    DatabaseLockedError,
    DuplicateOpError,
    ForeignDatabaseError,
    SchemaTooNewError,
    SnapshotWithoutCheckpointError,
    StorageError,
    StoreClosedError,
    StoreUsageError,
    WrongNetworkError,
    WrongNodeKeyError,
)
from swarmd.storage.schema import MIGRATIONS, SCHEMA_VERSION
from swarmd.storage.store import Store

NETWORK_ID = hashlib.sha256(b"network").digest()
OTHER_NETWORK_ID = hashlib.sha256(b"other network").digest()
NODE_KEY = hashlib.sha256(b"node").digest()


def make_op(index: int, status: OpStatus = OpStatus.APPLIED) -> NewOp:
    envelope = b"envelope %d " % index + bytes(150)
    return NewOp(hashlib.sha256(envelope).digest(), NODE_KEY, index, envelope, status, index)


def make_checkpoint(height: int, log_seq: int, tag: bytes = b"") -> Checkpoint:
    checkpoint_id = hashlib.sha256(b"checkpoint %d" % height + tag).digest()
    return Checkpoint(height, checkpoint_id, hashlib.sha256(checkpoint_id).digest(), b"b", log_seq)


Opener = Callable[[], Awaitable[api.OpStore]]


# (the `store` fixture, both stores: conftest.py)


# --- the contract, for both stores ---------------------------------------------------------


async def test_append_assigns_contiguous_seqs_and_reads_back_exact_bytes(
    store: api.OpStore,
) -> None:
    ops = [make_op(index) for index in range(10)]
    assert await store.append_ops(ops[:3]) == [1, 2, 3]
    assert await store.append_ops(ops[3:]) == list(range(4, 11))
    assert store.last_seq == 10
    logged = await store.read_log(0, 100)
    assert [(op.seq, op.op_id, op.envelope) for op in logged] == [
        (index + 1, op.op_id, op.envelope) for index, op in enumerate(ops)
    ]
    assert [op.seq for op in await store.read_log(7, 2)] == [8, 9]
    found = await store.get_op(ops[4].op_id)
    assert found is not None and found.seq == 5 and found.author_seq == 4
    assert await store.get_op(bytes(32)) is None
    assert [op.seq for op in await store.get_ops([ops[9].op_id, bytes(32), ops[0].op_id])] == [
        1,
        10,
    ]


async def test_a_duplicate_op_fails_the_whole_batch(store: api.OpStore) -> None:
    await store.append_ops([make_op(1)])
    with pytest.raises(DuplicateOpError):
        await store.append_ops([make_op(2), make_op(1)])
    with pytest.raises(DuplicateOpError):
        await store.append_ops([make_op(3), make_op(3)])
    assert store.last_seq == 1
    assert await store.append_ops([make_op(2)]) == [2]


async def test_status_marks_and_rollback_keep_the_ops(store: api.OpStore) -> None:
    ops = [make_op(index) for index in range(6)]
    await store.append_ops(ops)
    assert await store.mark_status([ops[1].op_id, bytes(32)], OpStatus.REJECTED) == 1
    assert await store.mark_reverted_after(1) == 4  # seqs 3..6; seq 2 stays rejected
    statuses = [op.status for op in await store.read_log(0, 10)]
    assert statuses == [OpStatus.APPLIED, OpStatus.REJECTED] + [OpStatus.REVERTED] * 4
    assert [op.envelope for op in await store.read_log(0, 10)] == [op.envelope for op in ops]


async def test_checkpoints_and_snapshots(store: api.OpStore) -> None:
    assert await store.latest_checkpoint() is None
    first, second = make_checkpoint(1, 0), make_checkpoint(2, 0)
    await store.put_checkpoint(first, b"state one")
    await store.put_checkpoint(first, b"state one")  # idempotent after a restart
    await store.put_checkpoint(second, b"state two")
    assert await store.latest_checkpoint() == second
    assert await store.get_checkpoint(1) == first
    assert await store.read_checkpoints(0, 10) == [first, second]
    snapshot = await store.get_snapshot(2)
    assert snapshot is not None and snapshot.blob == b"state two"
    with pytest.raises(CheckpointConflictError):
        await store.put_checkpoint(make_checkpoint(2, 0, b"fork"), b"x")
    assert await store.delete_snapshots_below(2) == 1
    assert await store.get_snapshot(1) is None
    assert await store.get_checkpoint(1) == first


async def test_pending_pool_is_cleared_by_appending(store: api.OpStore) -> None:
    ops = [make_op(index) for index in range(3)]
    parked = [PendingOp(op.op_id, op.envelope, 10 - index) for index, op in enumerate(ops)]
    assert await store.put_pending(parked) == 3
    assert await store.put_pending(parked) == 0
    assert [op.received_at_ms for op in await store.load_pending()] == [8, 9, 10]
    await store.append_ops(ops[:1])
    assert {op.op_id for op in await store.load_pending()} == {ops[1].op_id, ops[2].op_id}
    assert await store.put_pending(parked[:1]) == 0  # already logged
    assert await store.delete_pending([ops[1].op_id]) == 1
    assert [op.op_id for op in await store.load_pending()] == [ops[2].op_id]


async def test_meta_and_mode(store: api.OpStore) -> None:
    assert await store.get_mode() == (NodeMode.NORMAL, "")
    await store.set_mode(NodeMode.READ_ONLY, "disk nearly full")
    assert await store.get_mode() == (NodeMode.READ_ONLY, "disk nearly full")
    assert await store.get_meta("peer_book") is None
    await store.set_meta("peer_book", b"\x01\x02")
    assert await store.get_meta("peer_book") == b"\x01\x02"
    assert await store.get_meta(api.META_NETWORK_ID) == NETWORK_ID
    with pytest.raises(StoreUsageError):
        await store.set_meta(api.META_NETWORK_ID, OTHER_NETWORK_ID)


async def test_misuse_is_a_typed_error(store: api.OpStore) -> None:
    bad_ops = [
        make_op(1)._replace(op_id=b"short"),
        make_op(1)._replace(envelope="text"),
        make_op(1)._replace(author_seq=-1),
        make_op(1)._replace(status=1),
        make_op(1)._replace(envelope=bytes(api.limits.OP_ENVELOPE_SIZE_BYTES_MAX + 1)),
    ]
    for bad in bad_ops:
        with pytest.raises(StoreUsageError):
            await store.append_ops([bad])
    with pytest.raises(StoreUsageError):
        await store.read_log(0, api.READ_LOG_LIMIT_MAX + 1)
    with pytest.raises(StoreUsageError):
        await store.mark_status([make_op(1).op_id], 3)  # type: ignore[arg-type]
    assert store.last_seq == 0
    report = await store.integrity_check()
    assert report.ok and report.ops_checked == 0


async def test_a_closed_store_refuses_calls(store: api.OpStore) -> None:
    await store.close()
    with pytest.raises(StoreClosedError):
        await store.append_ops([make_op(1)])
    with pytest.raises(StoreClosedError):
        await store.read_log(0, 1)


# --- SQLite only ---------------------------------------------------------------------------


async def open_store(path: Path, **overrides: object) -> Store:
    arguments: dict[str, object] = {"network_id": NETWORK_ID, "node_key": NODE_KEY}
    arguments.update(overrides)
    return await Store.open(path, **arguments)  # type: ignore[arg-type]


async def make_database(path: Path, ops: int = 3000) -> list[NewOp]:
    written = [make_op(index) for index in range(ops)]
    store = await open_store(path)
    await store.append_ops(written[:1])
    await store.append_ops(written[1:])  # above OPS_PER_STATEMENT_MAX: several statements
    await store.put_checkpoint(make_checkpoint(1, ops), b"snapshot")
    await store.close()
    return written


async def test_everything_survives_a_reopen(tmp_path: Path) -> None:
    written = await make_database(tmp_path / "db")
    store = await open_store(tmp_path / "db", node_key=None)
    assert store.last_seq == len(written)
    assert (await store.read_log(2999, 1))[0].envelope == written[2999].envelope
    assert await store.latest_checkpoint() == make_checkpoint(1, len(written))
    assert (await store.integrity_check()).ok
    await store.close()


async def test_normal_synchronous_mode_opens(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "db", synchronous="NORMAL")
    assert await store.append_ops([make_op(1)]) == [1]
    await store.close()
    with pytest.raises(StoreUsageError):
        await open_store(tmp_path / "db", synchronous="OFF")


async def test_identity_checks(tmp_path: Path) -> None:
    await make_database(tmp_path / "db", ops=2)
    with pytest.raises(WrongNetworkError) as wrong_network:
        await open_store(tmp_path / "db", network_id=OTHER_NETWORK_ID)
    assert wrong_network.value.code == "wrong_network"
    with pytest.raises(WrongNodeKeyError):
        await open_store(tmp_path / "db", node_key=OTHER_NETWORK_ID)
    with pytest.raises(StoreUsageError):
        await open_store(tmp_path / "new", node_key=None)
    store = await open_store(tmp_path / "db")
    assert store.last_seq == 2
    await store.close()


async def test_a_second_open_is_refused_while_the_first_is_open(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "db")
    with pytest.raises(DatabaseLockedError):
        await open_store(tmp_path / "db")
    await store.close()
    await (await open_store(tmp_path / "db")).close()


async def test_a_read_only_store_reads_beside_the_owner_and_refuses_writes(
    tmp_path: Path,
) -> None:
    written = await make_database(tmp_path / "db", ops=5)
    owner = await open_store(tmp_path / "db")  # holds the lock, as a running node does
    reader = await Store.open_read_only(tmp_path / "db", network_id=NETWORK_ID)
    assert reader.read_only and reader.last_seq == len(written)
    await owner.append_ops([make_op(99)])  # the owner writes on; the reader sees it
    assert [op.op_id for op in await reader.read_log(5, 10)] == [make_op(99).op_id]
    assert (await reader.latest_snapshot()) == await owner.latest_snapshot()
    for write in (
        reader.append_ops([make_op(100)]),
        reader.put_checkpoint(make_checkpoint(2, 6), b""),
        reader.set_meta("note", b"x"),
    ):
        with pytest.raises(StoreUsageError, match="read-only"):
            await write
    await reader.close()
    await reader.close()  # idempotent, and the owner's lock was never touched
    assert await owner.append_ops([make_op(101)]) == [7]
    await owner.close()


async def test_a_read_only_open_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(StoreUsageError, match="does not exist"):
        await Store.open_read_only(tmp_path / "missing", network_id=NETWORK_ID)
    assert not (tmp_path / "missing").exists()  # nothing created
    await make_database(tmp_path / "db", ops=2)
    with pytest.raises(WrongNetworkError):
        await Store.open_read_only(tmp_path / "db", network_id=OTHER_NETWORK_ID)
    with sqlite3.connect(tmp_path / "db") as connection:
        connection.execute(
            "UPDATE meta SET value = ? WHERE key = ?",
            (str(SCHEMA_VERSION - 1).encode(), api.META_SCHEMA_VERSION),
        )
    connection.close()
    with pytest.raises(StoreUsageError, match="schema version"):
        await Store.open_read_only(tmp_path / "db", network_id=NETWORK_ID)


async def test_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    await make_database(tmp_path / "db", ops=2)
    with sqlite3.connect(tmp_path / "db") as connection:
        connection.execute(
            "UPDATE meta SET value = ? WHERE key = ?",
            (str(SCHEMA_VERSION + 1).encode(), api.META_SCHEMA_VERSION),
        )
    before = (tmp_path / "db").read_bytes()
    with pytest.raises(SchemaTooNewError) as error:
        await open_store(tmp_path / "db")
    assert error.value.code == "schema_too_new"
    assert (tmp_path / "db").read_bytes() == before


async def test_migrations_from_v1_keep_the_data(tmp_path: Path) -> None:
    # Build the database exactly as version-1 code did, with rows in it.
    path = tmp_path / "db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        for sql in MIGRATIONS[0]:
            connection.execute(sql)
        connection.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [
                (api.META_SCHEMA_VERSION, b"1"),
                (api.META_NETWORK_ID, NETWORK_ID),
                (api.META_NODE_KEY, NODE_KEY),
            ],
        )
        op = make_op(1)
        crc = api.op_crc(1, *op[:4])
        connection.execute(
            "INSERT INTO op_log VALUES (1, ?, ?, ?, ?, 1, ?, ?)", (*op[:4], op.received_at_ms, crc)
        )
        connection.execute("INSERT INTO pending_ops VALUES (?, ?, 5)", (bytes(32), b"parked"))
    connection.close()
    store = await open_store(path)
    assert await store.get_meta(api.META_SCHEMA_VERSION) == str(SCHEMA_VERSION).encode()
    assert (await store.read_log(0, 5))[0].envelope == op.envelope
    assert [parked.envelope for parked in await store.load_pending()] == [b"parked"]
    assert await store.get_mode() == (NodeMode.NORMAL, "")
    assert (await store.integrity_check()).ok
    await store.close()
    with sqlite3.connect(path) as connection:
        indexes = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    connection.close()
    assert "pending_ops_by_received_at" in indexes


async def test_a_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "db") as connection:
        connection.execute("CREATE TABLE users (name TEXT)")
    connection.close()
    with pytest.raises(ForeignDatabaseError):
        await open_store(tmp_path / "db")


async def assert_refused_as_corrupt(path: Path) -> None:
    before = path.read_bytes()
    with pytest.raises(CorruptDatabaseError) as error:
        await open_store(path)
    assert error.value.code == "corrupt_database"
    assert isinstance(error.value, StorageError)
    assert path.read_bytes() == before, "a refused database must be left as it was"
    # Refusing again is the same typed error: no crash loop, nothing deleted.
    with pytest.raises(CorruptDatabaseError):
        await open_store(path)


@pytest.mark.parametrize("keep_fraction", [0.5, 0.1, 0.001])
async def test_a_truncated_database_is_corrupt(tmp_path: Path, keep_fraction: float) -> None:
    path = tmp_path / "db"
    await make_database(path)
    data = path.read_bytes()
    path.write_bytes(data[: max(int(len(data) * keep_fraction), 10)])
    await assert_refused_as_corrupt(path)


@pytest.mark.parametrize("offset", [0, 16, 100, 4096 + 3])
async def test_a_bit_flip_in_the_file_structure_is_corrupt(tmp_path: Path, offset: int) -> None:
    path = tmp_path / "db"
    await make_database(path)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))
    await assert_refused_as_corrupt(path)


async def test_a_bit_flip_inside_an_envelope_is_caught_by_its_checksum(tmp_path: Path) -> None:
    path = tmp_path / "db"
    written = await make_database(path)
    data = bytearray(path.read_bytes())
    offset = data.index(written[1234].envelope[:14])  # SQLite cannot see this flip
    data[offset + 2] ^= 0x01
    path.write_bytes(bytes(data))
    store = await open_store(path)
    report = await store.integrity_check()
    assert not report.ok
    assert any("seq 1235" in problem for problem in report.problems), report.problems
    with pytest.raises(CorruptDatabaseError):
        await store.read_log(1200, 100)
    assert (await store.read_log(0, 100))[-1].seq == 100  # the rest stays readable
    await store.close()


async def test_a_missing_directory_is_an_io_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as error:
        await open_store(tmp_path / "missing" / "db")
    assert error.value.code == "storage_io_error"
    assert not os.path.exists(tmp_path / "missing")


# --- state snapshots: pruning, the newest one, corruption --------------------------------------


async def test_snapshots_kept_prunes_older_snapshots_in_the_same_write(
    store: api.OpStore,
) -> None:
    for height in range(1, 6):
        await store.put_checkpoint(
            make_checkpoint(height, 0), b"state %d" % height, snapshots_kept=2
        )
    assert await store.snapshot_heights() == [4, 5]
    assert await store.get_snapshot(3) is None
    assert [c.height for c in await store.read_checkpoints(0, 10)] == [1, 2, 3, 4, 5]
    latest = await store.latest_snapshot()
    assert latest is not None and (latest.height, latest.blob) == (5, b"state 5")
    # A checkpoint without a snapshot stores no snapshot and prunes nothing.
    await store.put_checkpoint(make_checkpoint(6, 0), b"", snapshots_kept=1)
    assert await store.get_snapshot(6) is None
    assert await store.snapshot_heights() == [4, 5]
    # Without a limit every snapshot stays.
    await store.put_checkpoint(make_checkpoint(7, 0), b"state 7")
    assert await store.snapshot_heights() == [4, 5, 7]
    await store.put_checkpoint(make_checkpoint(8, 0), b"state 8", snapshots_kept=1)
    assert await store.snapshot_heights() == [8]


@pytest.mark.parametrize("kept", [0, -1, api.SNAPSHOTS_KEPT_MAX + 1, True, "2"])
async def test_snapshots_kept_out_of_range_is_a_usage_error(store: api.OpStore, kept) -> None:
    with pytest.raises(StoreUsageError):
        await store.put_checkpoint(make_checkpoint(1, 0), b"state", snapshots_kept=kept)
    assert await store.latest_checkpoint() is None  # nothing written
    await store.put_checkpoint(
        make_checkpoint(1, 0), b"state", snapshots_kept=api.SNAPSHOTS_KEPT_MAX
    )
    assert await store.snapshot_heights() == [1]


async def test_no_snapshot_is_latest_in_an_empty_store_or_after_a_rollback(
    store: api.OpStore,
) -> None:
    assert await store.latest_snapshot() is None
    assert await store.snapshot_heights() == []
    await store.append_ops([make_op(index) for index in range(1, 5)])
    await store.put_checkpoint(make_checkpoint(1, 2), b"state one", snapshots_kept=3)
    await store.put_checkpoint(make_checkpoint(2, 4), b"state two", snapshots_kept=3)
    await store.roll_back_to(1)
    latest = await store.latest_snapshot()
    assert latest is not None and latest.height == 1
    # Another checkpoint at the reverted height: the old snapshot never comes back.
    await store.put_checkpoint(make_checkpoint(2, 4, b"new branch"), b"", snapshots_kept=3)
    assert await store.snapshot_heights() == [1]


async def test_a_corrupted_snapshot_row_is_a_typed_error_and_the_rest_stays_usable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db"
    store = await open_store(path)
    blob = b"snapshot bytes " * 100
    await store.put_checkpoint(make_checkpoint(1, 0), b"older snapshot", snapshots_kept=2)
    await store.put_checkpoint(make_checkpoint(2, 0), blob, snapshots_kept=2)
    await store.close()
    data = bytearray(path.read_bytes())
    offset = data.index(blob)
    data[offset + 7] ^= 0x01  # SQLite cannot see this flip; the row's checksum can
    path.write_bytes(bytes(data))
    store = await open_store(path)
    try:
        assert await store.snapshot_heights() == [1, 2]  # listing reads no blob
        with pytest.raises(CorruptDatabaseError) as error:
            await store.latest_snapshot()
        assert error.value.code == "corrupt_database" and "snapshot 2" in error.value.message
        older = await store.get_snapshot(1)
        assert older is not None and older.blob == b"older snapshot"
        report = await store.integrity_check()
        assert not report.ok and any("snapshot 2" in p for p in report.problems)
    finally:
        await store.close()


# --- put_snapshot: a snapshot built after its checkpoint was stored ----------------------------


async def test_put_snapshot_stores_beside_its_checkpoint_and_prunes_like_put_checkpoint(
    store: api.OpStore,
) -> None:
    for height in range(1, 5):
        await store.put_checkpoint(make_checkpoint(height, 0), b"")
    assert await store.snapshot_heights() == []
    for height in range(1, 4):
        checkpoint = make_checkpoint(height, 0)
        await store.put_snapshot(height, checkpoint.state_root, b"built %d" % height)
    assert await store.snapshot_heights() == [1, 2, 3]
    fourth = make_checkpoint(4, 0)
    await store.put_snapshot(4, fourth.state_root, b"built 4", snapshots_kept=2)
    assert await store.snapshot_heights() == [3, 4]
    latest = await store.latest_snapshot()
    assert latest is not None and (latest.height, latest.blob) == (4, b"built 4")
    # Storing it again (a retried write) replaces it with the same bytes.
    await store.put_snapshot(4, fourth.state_root, b"built 4", snapshots_kept=2)
    assert await store.snapshot_heights() == [3, 4]


async def test_put_snapshot_without_its_checkpoint_is_a_typed_error_and_writes_nothing(
    store: api.OpStore,
) -> None:
    checkpoint = make_checkpoint(1, 0)
    with pytest.raises(SnapshotWithoutCheckpointError) as error:
        await store.put_snapshot(1, checkpoint.state_root, b"too early")
    assert error.value.code == "snapshot_without_checkpoint"
    await store.put_checkpoint(checkpoint, b"", snapshots_kept=1)
    with pytest.raises(SnapshotWithoutCheckpointError):
        await store.put_snapshot(1, bytes(32), b"another root", snapshots_kept=1)
    with pytest.raises(SnapshotWithoutCheckpointError):
        await store.put_snapshot(2, checkpoint.state_root, b"no such height")
    assert await store.get_snapshot(1) is None and await store.get_snapshot(2) is None
    # After a rollback reverted the checkpoint, its snapshot is refused too.
    await store.put_checkpoint(make_checkpoint(2, 0), b"")
    await store.roll_back_to(1)
    with pytest.raises(SnapshotWithoutCheckpointError):
        await store.put_snapshot(2, make_checkpoint(2, 0).state_root, b"reverted")
    await store.put_snapshot(1, checkpoint.state_root, b"in time", snapshots_kept=1)
    assert await store.snapshot_heights() == [1]


@pytest.mark.parametrize(
    ("height", "state_root", "blob", "kept"),
    [
        (0, bytes(32), b"x", None),
        (1, bytes(31), b"x", None),
        (1, bytes(32), b"", None),
        (1, bytes(32), b"x", 0),
        (1, bytes(32), "x", None),
    ],
)
async def test_put_snapshot_misuse_is_a_usage_error(
    store: api.OpStore, height: int, state_root: bytes, blob: bytes, kept: int | None
) -> None:
    await store.put_checkpoint(Checkpoint(1, bytes(32), bytes(32), b"b", 0), b"")
    with pytest.raises(StoreUsageError):
        await store.put_snapshot(height, state_root, blob, snapshots_kept=kept)
    assert await store.snapshot_heights() == []
