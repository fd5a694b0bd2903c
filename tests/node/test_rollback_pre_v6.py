"""A store upgraded from before schema v6 has no final height for the ops final before the
upgrade: `swarmd rollback` refuses (`final_heights_unknown`) to revert heights whose ops it
would leave applied, and a restart records the final heights of the heights it replays, so
the same rollback then reverts exactly what it reverts on a store that always had them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from swarmd.node.cli.home import init_home
from swarmd.node.config import load_config
from swarmd.node.runtime.driver import Daemon
from swarmd.node.runtime.persistence import StoreLog
from swarmd.protocol import crypto
from swarmd.storage import api, errors
from swarmd.storage.api import NodeMode, OpStatus
from swarmd.storage.memory import MemoryDatabase, MemoryStore
from swarmd.storage.schema import MIGRATIONS

from .test_rollback import (
    NETWORK_ID,
    NODE_KEY,
    make_checkpoint,
    make_op,
    open_daemon,
    open_home_store,
    read_store,
    run_cli,
    set_mode,
)
from .test_snapshot_cli import HISTORY_TIMEOUT_S, run_rounds

#: A snapshot every 2 heights: a restart from the newest (4, of 5) replays only height 5.
SNAPSHOT_EVERY_2 = {
    "consensus": {"checkpoint_interval_s": 0.05, "timeout_propose_s": 0.2, "snapshot_interval": 2},
    "sync": {"bundles_kept": 2},
    "storage": {"snapshots_kept": 2},
}
ROUNDS = 5  # one height a round (test_snapshot_cli.run_rounds)
#: What schema-v5 code wrote: op_log without final_height; the tables of v1 to v5.
V5_TABLES = {
    "meta": "*",
    "op_log": "seq, op_id, author, author_seq, envelope, status, received_at_ms, crc",
    "pending_ops": "*",
    "checkpoints": "*",
    "state_snapshots": "*",
    "reverted_checkpoints": "*",
    "rollback_certificates": "*",
    "reverted_ops": "*",
    "peer_bans": "*",
    "address_book": "node_id, record, source, failures",  # (v10 added tried, anchor)
}


async def make_history(home: Path) -> int:
    init_home(
        home, keypair=crypto.KeyPair.from_seed(os.urandom(32)), config_overrides=SNAPSHOT_EVERY_2
    )
    daemon = await Daemon.open(load_config(home / "swarmd.toml"))
    daemon.create_transports()
    await daemon.start()
    try:
        await run_rounds(daemon, ROUNDS)
        async with asyncio.timeout(HISTORY_TIMEOUT_S):
            await daemon.snapshot_builds.wait_idle()
        await daemon.committer.barrier()
        return daemon.core.final_height
    finally:
        await daemon.stop()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("pre-v6") / "node"
    assert asyncio.run(make_history(home)) == ROUNDS
    return home


def copy_home(template: Path, target: Path) -> Path:
    shutil.copytree(template, target)
    config = (target / "swarmd.toml").read_text()
    (target / "swarmd.toml").write_text(config.replace(str(template), str(target)))
    return target


def rebuild_at_v5(home: Path) -> None:
    """Rewrite the home's store as schema-v5 code wrote it, with the same rows (no final
    heights); the next open migrates it to the current schema, as a store in the field."""
    path = Path(load_config(home / "swarmd.toml").node.data_file)
    v5 = path.with_name("v5.db")
    with contextlib.closing(sqlite3.connect(v5)) as db:
        for migration in MIGRATIONS[:5]:
            for sql in migration:
                db.execute(sql)
        db.execute("ATTACH DATABASE ? AS src", (str(path),))
        for table, columns in V5_TABLES.items():
            db.execute(f"INSERT INTO main.{table} SELECT {columns} FROM src.{table}")
        db.execute("UPDATE meta SET value = ? WHERE key = ?", (b"5", api.META_SCHEMA_VERSION))
        db.commit()
        db.execute("DETACH DATABASE src")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    v5.rename(path)


async def unrecorded(home: Path) -> list[int]:
    """The seqs of the applied ops without a recorded final height (all ops here are final)."""
    store = await open_home_store(home)
    try:
        log = await store.read_log(0, api.READ_LOG_LIMIT_MAX)
        assert log and {op.status for op in log} == {OpStatus.APPLIED}
        missing = set(await store.unrecorded_final([op.op_id for op in log]))
        return [op.seq for op in log if op.op_id in missing]
    finally:
        await store.close()


def rollback(capsys: pytest.CaptureFixture[str], home: Path, height: int) -> tuple[int, dict]:
    capsys.readouterr()
    return run_cli(capsys, "rollback", "--home", str(home), "--to-height", str(height), "--yes")


def test_a_rollback_over_unrecorded_heights_is_refused_until_a_restart_records_them(
    template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same history with final heights (the node wrote them with each checkpoint).
    recorded = copy_home(template, tmp_path / "recorded")
    assert asyncio.run(unrecorded(recorded)) == []
    asyncio.run(set_mode(recorded, NodeMode.QUIESCED))
    code, expected = rollback(capsys, recorded, 4)
    assert code == 0 and expected["reverted_ops"] > 0, expected

    home = copy_home(template, tmp_path / "upgraded")
    rebuild_at_v5(home)
    asyncio.run(set_mode(home, NodeMode.QUIESCED))  # (opening migrates it)
    log, checkpoints, _ = asyncio.run(read_store(home))
    assert asyncio.run(unrecorded(home)) == [op.seq for op in log]
    code, report = rollback(capsys, home, 4)
    assert code == 1 and report["code"] == "final_heights_unknown", report
    assert "from 5 to 5" in report["error"] and "height 5 or above" in report["error"]
    # Refused before anything was written.
    assert asyncio.run(read_store(home)) == (log, checkpoints, [])

    # A restart from the snapshot at 4 replays height 5 and records its final heights only.
    assert asyncio.run(open_daemon(home))[0] == ROUNDS
    below_5 = [op.seq for op in log if op.seq <= checkpoints[3].log_seq]
    assert below_5 and asyncio.run(unrecorded(home)) == below_5
    code, report = rollback(capsys, home, 4)
    assert code == 0 and report["parity"] is True, report
    assert report["reverted_ops"] == expected["reverted_ops"]
    assert report["final_state_root"] == expected["final_state_root"]


def test_a_full_replay_after_reset_records_every_height(
    template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded = copy_home(template, tmp_path / "recorded")
    asyncio.run(set_mode(recorded, NodeMode.QUIESCED))
    code, expected = rollback(capsys, recorded, 1)
    assert code == 0, expected

    home = copy_home(template, tmp_path / "upgraded")
    rebuild_at_v5(home)
    asyncio.run(set_mode(home, NodeMode.QUIESCED))
    asyncio.run(open_daemon(home))  # records height 5 (above the snapshot at 4)
    code, report = rollback(capsys, home, 1)
    assert code == 1 and report["code"] == "final_heights_unknown"
    assert "from 2 to 4" in report["error"] and "swarmd reset" in report["error"]
    # What the error says: reset (drops the snapshots), start once (a full replay), roll back.
    capsys.readouterr()
    code, _ = run_cli(capsys, "reset", "--home", str(home), "--yes")
    assert code == 0
    assert asyncio.run(open_daemon(home))[0] == ROUNDS
    assert asyncio.run(unrecorded(home)) == []
    code, report = rollback(capsys, home, 1)
    assert code == 0 and report["parity"] is True, report
    assert report["reverted_ops"] == expected["reverted_ops"]
    assert report["reverted_checkpoints"] == expected["reverted_checkpoints"] == ROUNDS - 1


async def test_the_backfill_writes_only_missing_heights_in_bounded_writes() -> None:
    """`StoreLog.record_missing_final_heights`: a height whose last op (in canonical order)
    has its final height is left alone; the others are written whole, in writes the store
    accepts (it refuses more than IDS_PER_CALL_MAX ids in one), a height split if need be."""
    database = MemoryDatabase()
    store = await MemoryStore.open(database, network_id=NETWORK_ID, node_key=NODE_KEY)
    node_log = StoreLog(store, api, errors)
    ops = [make_op(index) for index in range(api.IDS_PER_CALL_MAX + 8)]
    for start in range(0, len(ops), api.APPEND_OPS_MAX):
        await store.append_ops(ops[start : start + api.APPEND_OPS_MAX])
    ids = [op.op_id for op in ops]
    await store.put_checkpoint(make_checkpoint(1, 3), b"", final_op_ids=ids[:3])
    await store.put_checkpoint(make_checkpoint(2, len(ids) - 3), b"")  # as before v6: no ids
    await store.put_checkpoint(make_checkpoint(3, len(ids)), b"")
    finals = [(1, ids[:3]), (2, ids[3 : api.IDS_PER_CALL_MAX + 5]), (3, ids[-3:]), (4, [])]
    assert await node_log.record_missing_final_heights(finals) == len(ids) - 3
    for start in range(0, len(ids), api.IDS_PER_CALL_MAX):
        assert await store.unrecorded_final(ids[start : start + api.IDS_PER_CALL_MAX]) == []
    assert await node_log.record_missing_final_heights(finals) == 0
    # What each op got: a rollback to 2 reverts exactly height 3's.
    assert (await store.roll_back_to(2))[0] == 3
