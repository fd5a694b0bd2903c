"""State snapshots in the shell: `swarmd snapshot list|show|diff` over a real node's store, and a
restart that restores from the newest snapshot, or falls back (older snapshot, then the whole
log) when one is corrupt."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from swarmd.node.cli import main
from swarmd.node.cli.home import init_home
from swarmd.node.config import load_config
from swarmd.node.runtime.driver import Daemon
from swarmd.node.runtime.persistence import SnapshotBuildQueue, SnapshotBuilds
from swarmd.protocol import crypto
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.ledger.state import LedgerState
from swarmd.protocol.node_core import NodeCore, SnapshotDue
from swarmd.protocol.wallet import Author
from swarmd.storage import api

#: A snapshot at every final height, two kept: each round of history makes one.
SNAPSHOTS = {
    "consensus": {"checkpoint_interval_s": 0.05, "timeout_propose_s": 0.2, "snapshot_interval": 1},
    "sync": {"bundles_kept": 4},
    "storage": {"snapshots_kept": 2},
}
HISTORY_TIMEOUT_S = 10


async def run_rounds(daemon: Daemon, rounds: int) -> None:
    """Each round: three grants and a transfer, then wait until they are all final."""
    council = Author(daemon.keypair, daemon.genesis.network_id)
    for _ in range(rounds):
        people = [
            Author(crypto.KeyPair.from_seed(os.urandom(32)), council.network_id) for _ in range(3)
        ]
        grants = [council.grant(p.key, daemon.genesis.signup_reward) for p in people]
        # Read before submitting: the checkpoint holding them can become final while a
        # submission waits for its commit, and then no later height would ever come.
        target = daemon.core.final_height + 1
        pay = people[0].transfer(people[1].key, 7, receive=[grants[0].op_id])
        # One batch (one pump): no checkpoint can be cut between the round's ops, so each
        # checkpoint takes whole rounds and no op is logged before a checkpoint it is not in
        # (test_rollback's rollback by log position relies on that).
        outcomes = await daemon.submit_many([op.envelope for op in (*grants, pay)])
        assert [outcome.status for outcome in outcomes] == ["accepted"] * 4
        async with asyncio.timeout(HISTORY_TIMEOUT_S):
            while daemon.core.final_height < target or daemon.core.ledger.unfinalized_count():
                await asyncio.sleep(0.02)  # polling the daemon's own state; bounded above
        # The checkpoint is durable before the next round's ops are logged (one group commit
        # would otherwise hold both, and the checkpoint's log_seq would cover the next round).
        await daemon.committer.barrier()


async def make_history(home: Path, rounds: int = 4) -> dict[str, Any]:
    init_home(home, keypair=crypto.KeyPair.from_seed(os.urandom(32)), config_overrides=SNAPSHOTS)
    daemon = await Daemon.open(load_config(home / "swarmd.toml"))
    daemon.create_transports()
    await daemon.start()
    try:
        await run_rounds(daemon, rounds)
        # The daemon builds snapshots in a worker thread (snapshot_build = "frozen") and
        # stores each one after its checkpoint's commit.
        async with asyncio.timeout(HISTORY_TIMEOUT_S):
            await daemon.snapshot_builds.wait_idle()
        await daemon.committer.barrier()
        status = daemon.status()
        return {
            "final_height": daemon.core.final_height,
            "state_root": daemon.core.state_root().hex(),
            "final_root": daemon.core.ledger.final_state.root().hex(),
            "snapshot": status["snapshot"],
            "snapshot_build": daemon.core.config.snapshot_build,
            "builds_stored": daemon.snapshot_builds.builds_stored,
            "builds_skipped": daemon.snapshot_builds.queue.skipped,
            "metrics": daemon.metrics.render().decode(),
        }
    finally:
        await daemon.stop()


async def reopen(home: Path) -> dict[str, Any]:
    daemon = await Daemon.open(load_config(home / "swarmd.toml"))
    try:
        return {
            "final_height": daemon.core.final_height,
            "state_root": daemon.core.state_root().hex(),
            "restore": dict(daemon.restore_info),
            "status_restore": daemon.status()["restore"],
            "metrics": daemon.metrics.render().decode(),
        }
    finally:
        await daemon.node_log.close()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def database(home: Path) -> Path:
    return home / "swarmd.sqlite3"


def rewrite_snapshot(home: Path, height: int, *, keep_checksum: bool) -> None:
    """Flip a byte in the middle of the stored blob. keep_checksum=False: the row no longer
    matches its checksum (the store sees it); True: the checksum is recomputed, so the store
    reads it and only decoding the blob can tell."""
    with sqlite3.connect(database(home)) as connection:
        state_root, blob = connection.execute(
            "SELECT state_root, blob FROM state_snapshots WHERE height = ?", (height,)
        ).fetchone()
        damaged = bytearray(blob)
        damaged[len(damaged) // 2] ^= 0x01
        crc = api.snapshot_crc(api.StateSnapshot(height, state_root, bytes(damaged)))
        connection.execute(
            "UPDATE state_snapshots SET blob = ?, crc = CASE WHEN ? THEN ? ELSE crc END "
            "WHERE height = ?",
            (bytes(damaged), keep_checksum, crc, height),
        )
    connection.close()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    home = tmp_path_factory.mktemp("snapshots") / "node"
    return home, asyncio.run(make_history(home))


@pytest.mark.gate("sn-play-snapshot-catalog")
def test_list_shows_the_kept_snapshots_newest_matching_the_final_state(history, capsys) -> None:
    home, made = history
    height = made["final_height"]
    assert height >= 4
    code, listed = run_cli(capsys, "snapshot", "list", "--home", str(home))
    assert code == 0, listed
    entries = listed["snapshots"]
    assert [entry["height"] for entry in entries] == [height - 1, height]  # snapshots_kept = 2
    assert all(entry["valid"] for entry in entries)
    newest = entries[-1]
    assert newest["state_root"] == made["final_root"]
    assert newest["records"] > 0 and newest["chunks"] >= 1
    assert newest["stored_size_bytes"] > newest["size_bytes"] > 0
    # The node's own status named the same snapshot.
    assert made["snapshot"]["height"] == height
    assert made["snapshot"]["manifest_id"] == newest["manifest_id"]


def test_the_daemon_builds_snapshots_off_the_loop_and_stores_each_one(history) -> None:
    _, made = history
    assert made["snapshot_build"] == "frozen"
    # One SnapshotDue per final height (snapshot_interval = 1); a skipped one is never built.
    assert made["builds_stored"] + made["builds_skipped"] == made["final_height"]
    assert f"swarmd_snapshot_height {float(made['final_height'])}" in made["metrics"]


def due(height: int) -> SnapshotDue:
    return SnapshotDue(height, bytes(32), bytes(32), b"", LedgerState())


def test_snapshot_build_queue_runs_one_at_a_time_and_skips_older_waiting_ones() -> None:
    """The rule "newest due waits": a due arriving during a build waits, a newer one replaces
    it (skipped), and the running build is never dropped."""
    queue = SnapshotBuildQueue()
    first, second, third, fourth = due(1), due(2), due(3), due(4)
    assert queue.offer(first) is first
    assert queue.offer(second) is None and queue.offer(third) is None
    assert queue.skipped == 1 and queue.running is first and queue.waiting is third
    assert queue.finished() is third
    assert queue.offer(fourth) is None
    assert queue.finished() is fourth and queue.finished() is None
    assert queue.running is None and queue.waiting is None and queue.skipped == 1
    assert queue.offer(first) is first  # idle again: starts at once


def test_a_build_that_raises_is_counted_and_the_next_one_still_runs() -> None:
    """A snapshot is derived data: whatever a build raises, the node logs it, counts it and
    goes on with the next due (the queue must not stay busy forever)."""
    keypair = crypto.KeyPair.from_seed(bytes(32))
    genesis = Genesis.create("builds", [keypair.public_key], signup_reward=100)
    core = NodeCore(genesis=genesis, keypair=keypair, rng=random.Random(1), now=0.0)
    broken = SnapshotDue(1, bytes(32), bytes(32), b"", None)  # type: ignore[arg-type]

    async def scenario() -> None:
        builds = SnapshotBuilds(core, None, asyncio.sleep, lambda height, size: None)  # type: ignore[arg-type]
        builds.due(broken)
        builds.due(due(2))  # waits for the broken one, then runs
        async with asyncio.timeout(HISTORY_TIMEOUT_S):
            await builds.wait_idle()
        await builds.stop()

    asyncio.run(scenario())
    assert core.stats.snapshots_failed == 1
    # The second one was built and handed back (a height this core has not reached: stale).
    assert core.stats.snapshots_stale == 1


def test_list_reads_beside_a_running_node_without_its_lock(history, capsys) -> None:
    """A running node holds `<db>.lock` and a WAL writer; the catalog is read read-only."""
    home, made = history
    lock = os.open(str(database(home)) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    writer = sqlite3.connect(database(home))
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        writer.execute("BEGIN IMMEDIATE")  # a write transaction in progress
        code, listed = run_cli(capsys, "snapshot", "list", "--home", str(home))
        assert code == 0, listed
        assert listed["snapshots"][-1]["height"] == made["final_height"]
        # The recovery drill writes nothing either but needs the node stopped: it is refused.
        code, refused = run_cli(capsys, "recover", "--home", str(home))
        assert code == 1 and refused["code"] == "database_locked"
    finally:
        writer.rollback()
        writer.close()
        os.close(lock)


def test_show_lists_every_chunk_hash(history, capsys) -> None:
    home, made = history
    height = made["final_height"]
    code, listed = run_cli(capsys, "snapshot", "list", "--home", str(home))
    code, shown = run_cli(capsys, "snapshot", "show", "--home", str(home), "--height", str(height))
    assert code == 0, shown
    assert shown["manifest_id"] == listed["snapshots"][-1]["manifest_id"]
    assert len(shown["chunk_hashes"]) == shown["chunks"] == len(shown["chunk_sizes_bytes"])
    assert sum(shown["chunk_sizes_bytes"]) == shown["size_bytes"]


@pytest.mark.gate("sn-play-snapshot-catalog")
def test_diff_counts_shared_chunks_and_bytes_to_fetch(history, capsys) -> None:
    home, made = history
    a, b = str(made["final_height"] - 1), str(made["final_height"])
    code, diff = run_cli(capsys, "snapshot", "diff", "--home", str(home), a, b)
    assert code == 0, diff
    assert diff["same_state_root"] is False  # a round of ops lies between them
    assert diff["chunks_shared"] + len(diff["chunks_only_in_b"]) == diff["b"]["chunks"]
    assert 0 < diff["bytes_to_fetch"] <= diff["b"]["size_bytes"]
    code, same = run_cli(capsys, "snapshot", "diff", "--home", str(home), b, b)
    assert code == 0 and same["same_state_root"] is True
    assert same["bytes_to_fetch"] == 0 and same["chunks_only_in_a"] == []
    assert same["chunks_shared"] == same["b"]["chunks"]


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["snapshot", "show", "--height", "1"], "no_snapshot"),
        (["snapshot", "diff", "1", "2"], "no_snapshot"),
        (["snapshot", "show", "--height", "0"], "usage"),
        (["snapshot", "show", "--height", "x"], "usage"),
        (["snapshot", "show"], "usage"),
        (["snapshot", "diff", "1"], "usage"),
        (["snapshot", "drop"], "usage"),
    ],
)
def test_bad_arguments_exit_2_and_missing_heights_1_with_a_code(
    history, capsys, argv: list[str], code: str
) -> None:
    home, _ = history
    exit_code, error = run_cli(capsys, *argv, "--home", str(home))
    assert exit_code == (2 if code == "usage" else 1)
    assert error["code"] == code


def test_a_missing_home_is_a_typed_error(tmp_path: Path, capsys) -> None:
    code, error = run_cli(capsys, "snapshot", "list", "--home", str(tmp_path / "nowhere"))
    assert code == 1 and error["code"] == "no_home"


# --- restart from a snapshot -------------------------------------------------------------------


def copy_home(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def test_restart_restores_from_the_newest_snapshot(history, tmp_path: Path) -> None:
    home = copy_home(history[0], tmp_path / "node")
    made = history[1]
    restored = asyncio.run(reopen(home))
    assert restored["state_root"] == made["state_root"]
    assert restored["final_height"] == made["final_height"]
    assert restored["restore"]["snapshot_height"] == made["final_height"]
    # Only the ops above the snapshot were replayed: none (all were final at the stop), and
    # none were even read (the store names the log rows above the snapshot, issue 13).
    assert restored["restore"]["replayed_ops"] == 0 == restored["restore"]["logged_ops"]
    assert restored["status_restore"] == restored["restore"]
    height = float(made["final_height"])
    assert f"swarmd_restore_snapshot_height {height}" in restored["metrics"]
    assert f"swarmd_snapshot_height {height}" in restored["metrics"]


@pytest.mark.parametrize("keep_checksum", [False, True], ids=["bad_checksum", "bad_blob"])
def test_a_corrupt_newest_snapshot_falls_back_to_the_one_before(
    history, tmp_path: Path, capsys, keep_checksum: bool
) -> None:
    home = copy_home(history[0], tmp_path / "node")
    made = history[1]
    height = made["final_height"]
    rewrite_snapshot(home, height, keep_checksum=keep_checksum)
    capsys.readouterr()
    restored = asyncio.run(reopen(home))
    output = capsys.readouterr().out
    assert restored["state_root"] == made["state_root"]
    assert restored["restore"]["snapshot_height"] == height - 1
    # The ops of the last height were read and replayed, not the whole log (issue 13: the
    # rows final at or below the snapshot used are not read).
    assert 0 < restored["restore"]["replayed_ops"] == restored["restore"]["logged_ops"]
    warning = next(line for line in output.splitlines() if "snapshot_restore_failed" in line)
    assert str(height) in warning and "older snapshot" in warning
    code = "corrupt_database" if not keep_checksum else "snapshot_restore_failed"
    assert code in warning
    # The CLI reports the damaged one and still lists the other.
    exit_code, listed = run_cli(capsys, "snapshot", "list", "--home", str(home))
    assert exit_code == 1
    assert [entry["valid"] for entry in listed["snapshots"]] == [True, False]
    exit_code, error = run_cli(
        capsys, "snapshot", "show", "--home", str(home), "--height", str(height)
    )
    assert exit_code == 1 and error["code"] != "usage"


def test_with_every_snapshot_corrupt_the_whole_log_is_replayed(
    history, tmp_path: Path, capsys
) -> None:
    home = copy_home(history[0], tmp_path / "node")
    made = history[1]
    height = made["final_height"]
    rewrite_snapshot(home, height, keep_checksum=False)
    rewrite_snapshot(home, height - 1, keep_checksum=True)
    capsys.readouterr()
    restored = asyncio.run(reopen(home))
    output = capsys.readouterr().out
    assert restored["state_root"] == made["state_root"]
    assert restored["final_height"] == height
    assert restored["restore"]["snapshot_height"] is None
    assert restored["restore"]["replayed_ops"] == restored["restore"]["logged_ops"] == 16
    warnings = [line for line in output.splitlines() if "snapshot_restore_failed" in line]
    assert len(warnings) == 2 and "full replay" in warnings[-1]


# --- metrics -----------------------------------------------------------------------------------


def test_snapshot_and_state_sync_metrics_render_and_refuse_unknown_results() -> None:
    from swarmd.node.metrics import MetricsUsageError, NodeMetrics

    metrics = NodeMetrics(process_metrics=False)
    metrics.snapshot_made(128, 4096)
    metrics.state_sync("finished", chunks=3)
    metrics.state_sync("failed")
    metrics.restored(128, 7, 0.25)
    text = metrics.render().decode()
    for line in (
        "swarmd_snapshots_total 1.0",
        "swarmd_snapshot_height 128.0",
        "swarmd_snapshot_size_bytes 4096.0",
        'swarmd_state_sync_sessions_total{result="finished"} 1.0',
        'swarmd_state_sync_sessions_total{result="failed"} 1.0',
        "swarmd_state_sync_chunks_total 3.0",
        "swarmd_restore_snapshot_height 128.0",
        "swarmd_restore_replayed_ops 7.0",
        "swarmd_restore_seconds 0.25",
    ):
        assert line in text, line
    with pytest.raises(MetricsUsageError):
        metrics.state_sync("timed out by a peer")  # free text never becomes a label
