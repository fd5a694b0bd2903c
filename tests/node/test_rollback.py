"""The rollback play: `swarmd rollback` on a real daemon's store, and the store's roll_back_to."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarmd.node.cli import main
from swarmd.node.cli.common import load_genesis, load_key_file
from swarmd.node.cli.recovery import recover_store
from swarmd.node.config import load_config
from swarmd.node.runtime.driver import Daemon
from swarmd.protocol import crypto
from swarmd.protocol.wallet import Author
from swarmd.storage import api
from swarmd.storage.api import Checkpoint, NewOp, NodeMode, OpStatus, StoredRollback
from swarmd.storage.errors import StoreUsageError
from swarmd.storage.memory import MemoryDatabase, MemoryStore
from swarmd.storage.store import Store

from .test_recovery import make_history


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


async def open_home_store(home: Path) -> Store:
    config = load_config(home / "swarmd.toml")
    genesis = load_genesis(Path(config.node.genesis_file))
    key = load_key_file(Path(config.node.key_file)).public_key
    return await Store.open(config.node.data_file, network_id=genesis.network_id, node_key=key)


async def set_mode(home: Path, mode: NodeMode) -> None:
    store = await open_home_store(home)
    try:
        await store.set_mode(mode, "rollback drill")
    finally:
        await store.close()


async def read_store(home: Path) -> tuple[list[api.LoggedOp], list[Checkpoint], list]:
    store = await open_home_store(home)
    try:
        log = await store.read_log(0, api.READ_LOG_LIMIT_MAX)
        checkpoints = await store.read_checkpoints(0, api.READ_LOG_LIMIT_MAX)
        reverted = await store.read_reverted_checkpoints(0, api.READ_LOG_LIMIT_MAX)
        return log, checkpoints, reverted
    finally:
        await store.close()


async def recover_home(home: Path) -> dict:
    config = load_config(home / "swarmd.toml")
    store = await open_home_store(home)
    try:
        return await recover_store(store, load_genesis(Path(config.node.genesis_file)))
    finally:
        await store.close()


async def open_daemon(home: Path) -> tuple[int, str, str]:
    daemon = await Daemon.open(load_config(home / "swarmd.toml"))
    try:
        core = daemon.core
        final_root = core.ledger.final_state.root().hex()
        # Reverted ops are not loaded: nothing sits above the final state.
        assert core.ledger.unfinalized_count() == 0 and core.state_root().hex() == final_root
        return core.final_height, final_root, core.mode.value
    finally:
        await daemon.node_log.close()


@pytest.fixture(scope="module")
def history_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """One node history with >= 3 checkpoints, copied by each test (it takes seconds)."""
    home = tmp_path_factory.mktemp("history") / "node"
    height, _ = asyncio.run(make_history(home))
    assert height >= 3
    return home, height


@pytest.fixture
def home(history_template: tuple[Path, int], tmp_path: Path) -> Path:
    import shutil

    source, _ = history_template
    target = tmp_path / "node"
    shutil.copytree(source, target)
    # The config names absolute paths inside the template: point them at the copy.
    config = (target / "swarmd.toml").read_text()
    (target / "swarmd.toml").write_text(config.replace(str(source), str(target)))
    assert str(source) not in (target / "swarmd.toml").read_text()
    return target


@pytest.mark.gate("sn-play-quiescence")
def test_rollback_is_refused_unless_quiesced(home: Path, capsys) -> None:
    capsys.readouterr()
    code, report = run_cli(capsys, "rollback", "--home", str(home), "--to-height", "1", "--yes")
    assert code == 1 and report["code"] == "not_quiesced"
    log, checkpoints, reverted = asyncio.run(read_store(home))
    assert not any(op.status is OpStatus.REVERTED for op in log)
    assert len(checkpoints) >= 3 and reverted == []


def test_rollback_to_a_height_without_a_checkpoint_is_refused(home: Path, capsys) -> None:
    asyncio.run(set_mode(home, NodeMode.QUIESCED))
    capsys.readouterr()
    code, report = run_cli(capsys, "rollback", "--home", str(home), "--to-height", "99", "--yes")
    assert code == 1 and report["code"] == "unknown_checkpoint"
    code, report = run_cli(capsys, "rollback", "--home", str(home), "--to-height", "-1", "--yes")
    assert code == 1 and report["code"] == "bad_height"
    log, _, reverted = asyncio.run(read_store(home))
    assert not any(op.status is OpStatus.REVERTED for op in log) and reverted == []


async def store_certificate(home: Path, epoch: int, height: int) -> None:
    """Record a council certificate to `height` as the daemon does on accepting one (the store
    keeps it opaque: the offline rollback reads only its epoch and height)."""
    store = await open_home_store(home)
    try:
        await store.put_rollback(StoredRollback(epoch, height, b"certificate"))
    finally:
        await store.close()


def test_an_offline_rollback_below_the_current_epoch_is_refused(home: Path, capsys) -> None:
    """Epoch 1 started after height 2 by a council certificate: an offline rollback to 1 would
    undo a council-settled history, so it is refused with a typed error naming the council
    command; to 2 (inside the epoch) it runs and reports the epoch."""
    asyncio.run(set_mode(home, NodeMode.QUIESCED))
    asyncio.run(store_certificate(home, epoch=1, height=2))
    capsys.readouterr()
    code, report = run_cli(capsys, "rollback", "--home", str(home), "--to-height", "1", "--yes")
    assert code == 1 and report["code"] == "rollback_crosses_epoch"
    assert "swarmd council rollback" in report["error"]
    log, checkpoints, _ = asyncio.run(read_store(home))
    assert not any(op.status is OpStatus.REVERTED for op in log)
    assert [c.height for c in checkpoints] == [1, 2]
    code, report = run_cli(capsys, "rollback", "--home", str(home), "--to-height", "2", "--yes")
    assert code == 0 and report["epoch"] == 1 and report["rolled_back_to"] == 2


def test_rollback_is_refused_while_the_store_is_held(home: Path, capsys) -> None:
    async def attempt() -> tuple[int, dict]:
        held = await open_home_store(home)  # what a running daemon holds: the file lock
        try:
            await held.set_mode(NodeMode.QUIESCED, "drill")
            return await asyncio.to_thread(
                run_cli, capsys, "rollback", "--home", str(home), "--to-height", "1", "--yes"
            )
        finally:
            await held.close()

    capsys.readouterr()
    code, report = asyncio.run(attempt())
    assert code == 1 and report["code"] == "database_locked"


def test_rollback_needs_yes_without_a_terminal(home: Path, capsys) -> None:
    capsys.readouterr()
    code, report = run_cli(capsys, "rollback", "--home", str(home), "--to-height", "1")
    assert code == 1 and report["code"] == "confirm"


@pytest.mark.gate("s2-play-revert")
def test_rollback_to_height_1_keeps_the_ops_and_restarts_at_1(
    home: Path, history_template: tuple[Path, int], capsys
) -> None:
    _, height = history_template
    log_before, checkpoints_before, _ = asyncio.run(read_store(home))
    first = checkpoints_before[0]
    after_first = [op for op in log_before if op.seq > first.log_seq]
    assert first.height == 1 and after_first
    asyncio.run(set_mode(home, NodeMode.QUIESCED))
    capsys.readouterr()

    code, report = run_cli(capsys, "rollback", "--home", str(home), "--to-height", "1", "--yes")
    assert code == 0, report
    assert report["rolled_back_to"] == 1
    assert report["reverted_ops"] == len(after_first)
    assert report["reverted_checkpoints"] == height - 1
    assert report["parity"] is True
    assert report["final_state_root"] == first.state_root.hex() == report["checkpoint_state_root"]
    # Nothing after checkpoint 1 is left to replay, so the provisional root is the final one.
    assert report["state_root"] == report["final_state_root"]

    log, checkpoints, reverted = asyncio.run(read_store(home))
    assert [op.op_id for op in log] == [op.op_id for op in log_before]  # kept, same bytes
    assert [op.envelope for op in log] == [op.envelope for op in log_before]
    assert {op.status for op in log if op.seq > first.log_seq} == {OpStatus.REVERTED}
    assert {op.status for op in log if op.seq <= first.log_seq} == {OpStatus.APPLIED}
    assert [c.height for c in checkpoints] == [1]
    assert [r.checkpoint for r in reverted] == checkpoints_before[1:]  # the bundles are kept
    assert {r.rolled_back_to for r in reverted} == {1}

    recovered = asyncio.run(recover_home(home))
    assert recovered["parity"] is True and recovered["checkpoint_height"] == 1
    assert recovered["final_state_root"] == first.state_root.hex()

    final_height, final_root, mode = asyncio.run(open_daemon(home))
    assert final_height == 1 and final_root == first.state_root.hex()
    assert mode == "quiesced"


def test_rollback_to_genesis_reverts_every_op(home: Path, capsys) -> None:
    log_before, checkpoints_before, _ = asyncio.run(read_store(home))
    asyncio.run(set_mode(home, NodeMode.QUIESCED))
    capsys.readouterr()
    code, report = run_cli(capsys, "rollback", "--home", str(home), "--to-height", "0", "--yes")
    assert code == 0, report
    assert report["reverted_ops"] == len(log_before)
    assert report["reverted_checkpoints"] == len(checkpoints_before)
    assert report["parity"] is True and report["checkpoint_state_root"] is None
    final_height, _, _ = asyncio.run(open_daemon(home))
    assert final_height == 0


@pytest.mark.gate("s2-play-revert")
def test_an_op_that_returns_by_sync_after_a_rollback_is_live_again(home: Path, capsys) -> None:
    """The daemon's log un-reverts an op it receives again, so a restart keeps it."""
    from swarmd.node.runtime.persistence import StoreLog
    from swarmd.storage import errors

    asyncio.run(set_mode(home, NodeMode.QUIESCED))
    capsys.readouterr()
    code, _ = run_cli(capsys, "rollback", "--home", str(home), "--to-height", "1", "--yes")
    assert code == 0
    log, _, _ = asyncio.run(read_store(home))
    returned = next(row for row in log if row.status == OpStatus.REVERTED)

    async def append_again() -> api.LoggedOp | None:
        store = await open_home_store(home)
        try:
            await StoreLog(store, api, errors).append_ops([bytes(returned.envelope)])
            return await store.get_op(returned.op_id)
        finally:
            await store.close()

    logged = asyncio.run(append_again())
    assert logged is not None and logged.status == OpStatus.APPLIED


# --- the store's roll_back_to, for both stores -------------------------------------------------

NETWORK_ID = hashlib.sha256(b"rollback test network").digest()
NODE_KEY = crypto.KeyPair.from_seed(bytes(32)).public_key


@pytest.fixture(params=["sqlite", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[api.OpStore]:
    opened: api.OpStore
    if request.param == "sqlite":
        opened = await Store.open(tmp_path / "db", network_id=NETWORK_ID, node_key=NODE_KEY)
    else:
        opened = await MemoryStore.open(MemoryDatabase(), network_id=NETWORK_ID, node_key=NODE_KEY)
    yield opened
    await opened.close()


def make_op(index: int, status: OpStatus = OpStatus.APPLIED) -> NewOp:
    envelope = b"op %d " % index + os.urandom(4)
    return NewOp(hashlib.sha256(envelope).digest(), NODE_KEY, index, envelope, status, index)


def make_checkpoint(height: int, log_seq: int) -> Checkpoint:
    checkpoint_id = hashlib.sha256(b"checkpoint %d" % height).digest()
    return Checkpoint(height, checkpoint_id, hashlib.sha256(checkpoint_id).digest(), b"b", log_seq)


async def test_roll_back_to_moves_checkpoints_and_marks_ops(store: api.OpStore) -> None:
    ops = [make_op(i) for i in range(4)] + [make_op(4, OpStatus.REJECTED)]
    ops += [make_op(i) for i in range(5, 8)]
    await store.append_ops(ops[:5])
    await store.append_ops(ops[5:])
    for height, (start, log_seq) in enumerate(((0, 2), (2, 5), (5, 8)), start=1):
        await store.put_checkpoint(make_checkpoint(height, log_seq), b"")
        # What the daemon records with each checkpoint: the ops it made final.
        await store.mark_final([op.op_id for op in ops[start:log_seq]], height)
    with pytest.raises(StoreUsageError):
        await store.roll_back_to(7)
    assert await store.roll_back_to(1) == (5, 2)  # seqs 3, 4, 6, 7, 8; seq 5 stays rejected
    statuses = [op.status for op in await store.read_log(0, 10)]
    applied, reverted_, rejected = OpStatus.APPLIED, OpStatus.REVERTED, OpStatus.REJECTED
    assert statuses == [applied] * 2 + [reverted_] * 2 + [rejected] + [reverted_] * 3
    assert [c.height for c in await store.read_checkpoints(0, 10)] == [1]
    reverted = await store.read_reverted_checkpoints(0, 10)
    assert [(r.revert_seq, r.rolled_back_to) for r in reverted] == [(1, 1), (2, 1)]
    assert [r.checkpoint for r in reverted] == [make_checkpoint(2, 5), make_checkpoint(3, 8)]
    # The same height can be finalized again (e.g. by sync) and rolled back again.
    await store.put_checkpoint(make_checkpoint(2, 8), b"")
    await store.mark_status([ops[5].op_id], OpStatus.APPLIED)  # seq 6 came back by sync
    await store.mark_final([ops[5].op_id], 2)
    assert await store.roll_back_to(0) == (3, 2)  # seqs 1, 2 (final at 1) and 6
    assert await store.read_checkpoints(0, 10) == []
    later = await store.read_reverted_checkpoints(2, 10)
    assert [(r.revert_seq, r.rolled_back_to, r.checkpoint.height) for r in later] == [
        (3, 0, 1),
        (4, 0, 2),
    ]
    assert len(await store.read_log(0, 10)) == 8  # nothing was deleted


async def test_roll_back_to_reverts_by_finality_not_by_log_position(store: api.OpStore) -> None:
    """Which ops a rollback to H reverts is decided by their final height, not by where they
    sit in the log: an op logged before checkpoint H's log position but final above H is
    reverted; an op logged after it that was never final stays pending (APPLIED: replayed at
    the next start); an op final at or below H stays final wherever it was logged."""
    ops = [make_op(i) for i in range(1, 7)]
    await store.append_ops(ops[:3])  # seqs 1-3
    await store.put_checkpoint(make_checkpoint(1, 3), b"")
    await store.append_ops(ops[3:])  # seqs 4-6
    await store.put_checkpoint(make_checkpoint(2, 6), b"")
    await store.mark_final([ops[0].op_id], 1)
    await store.mark_final([ops[3].op_id], 1)  # logged after checkpoint 1's position, final at 1
    await store.mark_final([ops[1].op_id, ops[4].op_id], 2)  # seq 2 logged before, final at 2
    # seq 3 and seq 6 were never final: pending ops.
    assert await store.roll_back_to(1) == (2, 1)
    statuses = [op.status for op in await store.read_log(0, 10)]
    applied, reverted = OpStatus.APPLIED, OpStatus.REVERTED
    assert statuses == [applied, reverted, applied, applied, reverted, applied]
    # A reverted op that comes back (by sync) is pending, no longer final at its old height:
    # a later rollback or a prune pass must not treat it as final.
    await store.mark_status([ops[1].op_id], OpStatus.APPLIED)
    assert await store.prune_final(2, 10) == (2, 1)  # seqs 1 and 4 (final at 1) only
    after = await store.read_log(0, 10)
    assert [op.status for op in after] == [applied, applied, applied, applied, reverted, applied]
    assert [bool(op.envelope) for op in after] == [False, True, True, False, True, True]


async def submit_pending(home: Path) -> bytes:
    """Run the node once more and submit an op waiting for a dependency that never comes: it
    is logged (after every checkpoint's log position) but never final."""
    daemon = await Daemon.open(load_config(home / "swarmd.toml"))
    daemon.create_transports()
    await daemon.start()
    try:
        author = Author(crypto.KeyPair.from_seed(os.urandom(32)), daemon.genesis.network_id)
        waiting = author.transfer(NODE_KEY, 1, receive=[hashlib.sha256(b"never sent").digest()])
        assert (await daemon.submit(waiting.envelope)).status == "pending"
        await daemon.committer.barrier()
        return waiting.op_id
    finally:
        await daemon.stop()


def test_an_offline_rollback_keeps_a_pending_op_pending(home: Path, capsys) -> None:
    """By finality, not log position: the pending op logged after checkpoint 1 was never final,
    so the rollback to 1 keeps it (APPLIED, replayed as pending), and reverts exactly the
    ops final above 1."""
    waiting = asyncio.run(submit_pending(home))
    log_before, checkpoints_before, _ = asyncio.run(read_store(home))
    first = checkpoints_before[0]
    final_above = [op for op in log_before if op.seq > first.log_seq and op.op_id != waiting]
    asyncio.run(set_mode(home, NodeMode.QUIESCED))
    capsys.readouterr()
    code, report = run_cli(capsys, "rollback", "--home", str(home), "--to-height", "1", "--yes")
    assert code == 0, report
    assert report["reverted_ops"] == len(final_above) and report["pending_ops"] >= 1
    log, _, _ = asyncio.run(read_store(home))
    status = {op.op_id: op.status for op in log}
    assert status[waiting] is OpStatus.APPLIED
    assert {status[op.op_id] for op in final_above} == {OpStatus.REVERTED}
