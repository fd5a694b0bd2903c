"""The recovery drill against a real daemon's SQLite store: reset, recover, parity."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from swarmd.node.cli import main
from swarmd.node.cli.home import init_home
from swarmd.node.config import load_config
from swarmd.node.runtime.driver import Daemon
from swarmd.protocol import crypto
from swarmd.storage import api

from .test_snapshot_cli import run_rounds

FAST = {"consensus": {"checkpoint_interval_s": 0.05, "timeout_propose_s": 0.2}}


async def make_history(home: Path, rounds: int = 3) -> tuple[int, str]:
    init_home(home, keypair=crypto.KeyPair.from_seed(os.urandom(32)), config_overrides=FAST)
    daemon = await Daemon.open(load_config(home / "swarmd.toml"))
    daemon.create_transports()
    await daemon.start()
    try:
        await run_rounds(daemon, rounds)
        return daemon.core.final_height, daemon.core.state_root().hex()
    finally:
        await daemon.stop()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.gate("s0-recovery-drills")
@pytest.mark.gate("s0-play-reset")
@pytest.mark.gate("s0-play-replay")
@pytest.mark.gate("la-replay-parity")
def test_reset_then_recover_restores_the_same_state(tmp_path: Path, capsys) -> None:
    home = tmp_path / "node"
    height, live_root = asyncio.run(make_history(home))
    capsys.readouterr()  # the daemon's log lines
    assert height >= 3
    code, reset = run_cli(capsys, "reset", "--home", str(home), "--yes")
    assert code == 0 and reset["reset"] is True
    code, report = run_cli(capsys, "recover", "--home", str(home))
    assert code == 0, report
    assert report["parity"] is True
    assert report["checkpoint_height"] == height == report["checkpoints_checked"]
    assert report["state_root"] == live_root
    assert report["replayed_ops"] == 12
    assert report["integrity_ok"] is True
    # The node recorded its live root at the clean stop; the replay reaches the same root.
    assert report["live_parity"] is True and report["live_state_root"] == live_root


@pytest.mark.gate("s0-play-reissue")
def test_a_different_live_root_breaks_parity(tmp_path: Path, capsys) -> None:
    from swarmd.node.runtime.persistence import LIVE_STATE_META_KEY
    from swarmd.protocol import encoding

    home = tmp_path / "node"
    height, _ = asyncio.run(make_history(home))
    capsys.readouterr()
    config = load_config(home / "swarmd.toml")
    with sqlite3.connect(config.node.data_file) as db:
        (value,) = db.execute(
            "SELECT value FROM meta WHERE key = ?", (LIVE_STATE_META_KEY,)
        ).fetchone()
        log_seq, _root = encoding.decode(value)
        forged = encoding.encode([log_seq, b"\x07" * 32])
        db.execute("UPDATE meta SET value = ? WHERE key = ?", (forged, LIVE_STATE_META_KEY))
    code, report = run_cli(capsys, "recover", "--home", str(home))
    assert code == 1 and report["parity"] is False and report["live_parity"] is False
    assert report["first_divergence"]["code"] == "live_root_mismatch"
    assert report["checkpoint_height"] == height


@pytest.mark.gate("s0-play-reissue")
def test_a_tampered_checkpoint_root_is_the_first_divergence(tmp_path: Path, capsys) -> None:
    home = tmp_path / "node"
    height, _ = asyncio.run(make_history(home))
    capsys.readouterr()
    config = load_config(home / "swarmd.toml")
    bundle_of_2 = (
        sqlite3.connect(config.node.data_file)
        .execute("SELECT bundle FROM checkpoints WHERE height = 2")
        .fetchone()[0]
    )
    # Swap checkpoint 2's bundle for checkpoint 3's: signed, but not what height 2 decided.
    with sqlite3.connect(config.node.data_file) as db:
        other = db.execute("SELECT bundle FROM checkpoints WHERE height = 3").fetchone()[0]
        db.execute("UPDATE checkpoints SET bundle = ? WHERE height = 2", (other,))
    assert bundle_of_2 != other and height >= 3
    code, report = run_cli(capsys, "recover", "--home", str(home))
    assert code != 0
    if "parity" in report:
        assert report["parity"] is False
        assert report["first_divergence"]["height"] == 2
    else:  # the store's own checksums caught the edit first: a typed corruption error
        assert report["code"] in ("corrupt_database", "corrupt_row")


def test_recover_without_a_home_is_a_typed_error(tmp_path: Path, capsys) -> None:
    code, report = run_cli(capsys, "recover", "--home", str(tmp_path / "nowhere"))
    assert code == 1 and report["code"] == "no_home"


def test_reset_needs_yes_without_a_terminal(tmp_path: Path, capsys, monkeypatch) -> None:
    home = tmp_path / "node"
    init_home(home, keypair=crypto.KeyPair.from_seed(os.urandom(32)))
    code, report = run_cli(capsys, "reset", "--home", str(home))
    assert code == 1 and report["code"] == "confirm"


async def copy_store_without(home: Path, target: Path, drop_height: int) -> dict:
    """Copy a node's store into `target`, leaving out one op of checkpoint `drop_height`."""
    from swarmd.node.cli.common import load_genesis, load_key_file
    from swarmd.node.cli.recovery import recover_store
    from swarmd.protocol.checkpoint import Cut
    from swarmd.protocol.consensus import CheckpointBundle
    from swarmd.storage.store import Store

    config = load_config(home / "swarmd.toml")
    genesis = load_genesis(Path(config.node.genesis_file))
    key = load_key_file(Path(config.node.key_file)).public_key
    source = await Store.open(config.node.data_file, network_id=genesis.network_id, node_key=key)
    copy = await Store.open(target, network_id=genesis.network_id, node_key=key)
    try:
        rows = await source.read_log(0, 4096)
        checkpoints = await source.read_checkpoints(0, 4096)
        cut = Cut.decode(CheckpointBundle.decode(bytes(checkpoints[drop_height - 1].bundle)).value)
        dropped = cut.heads[0][2]
        kept = [r for r in rows if r.op_id != dropped]
        for row in kept:
            await copy.append_ops(
                [api.NewOp(row.op_id, row.author, row.author_seq, row.envelope, row.status, 0)]
            )
        for checkpoint in checkpoints:
            await copy.put_checkpoint(checkpoint, b"")
        return await recover_store(copy, genesis)
    finally:
        await source.close()
        await copy.close()


@pytest.mark.gate("la-lost-op-detected")
def test_a_lost_op_is_reported_at_the_first_height_that_needs_it(tmp_path: Path, capsys) -> None:
    home = tmp_path / "node"
    asyncio.run(make_history(home))
    report = asyncio.run(copy_store_without(home, tmp_path / "copy.sqlite3", drop_height=2))
    assert report["parity"] is False
    assert report["first_divergence"]["height"] == 2
    assert report["checkpoint_height"] == 1


# --- the drill from a stored snapshot ----------------------------------------------------------


@pytest.fixture(scope="module")
def snapshot_history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A home with snapshots at its last two final heights (see test_snapshot_cli)."""
    from .test_snapshot_cli import make_history as make_snapshot_history

    home = tmp_path_factory.mktemp("recover-snapshots") / "node"
    made = asyncio.run(make_snapshot_history(home))
    assert made["final_height"] >= 4
    return home, made


@pytest.fixture
def copied(snapshot_history, tmp_path: Path) -> tuple[Path, dict, int]:
    """A copy of the snapshot home to damage: (home, what made it, its final height)."""
    import shutil

    source, made = snapshot_history
    home = tmp_path / "node"
    shutil.copytree(source, home)
    return home, made, made["final_height"]


def recover_json(capsys, home: Path, *extra: str) -> tuple[int, dict]:
    capsys.readouterr()
    return run_cli(capsys, "recover", "--home", str(home), *extra)


def db_path(home: Path) -> Path:
    return Path(load_config(home / "swarmd.toml").node.data_file)


@pytest.mark.gate("s0-recovery-drills")
def test_the_drill_from_the_newest_snapshot_reaches_the_live_state(copied, capsys) -> None:
    home, made, height = copied
    code, report = recover_json(capsys, home, "--from-snapshot")
    assert code == 0, report
    assert report["parity"] is True and report["first_divergence"] is None
    assert report["from_snapshot_height"] == height == report["checkpoint_height"]
    assert report["checkpoints_checked"] == report["stored_checkpoints"] == 1
    # Every logged op is final at the snapshot: none replayed, none verified.
    assert report["replayed_ops"] == 0 and report["skipped_ops"] == 16
    assert report["final_state_root"] == made["final_root"]
    assert report["state_root"] == made["state_root"]
    assert report["live_parity"] is True and report["integrity_ok"] is True


@pytest.mark.gate("s0-recovery-drills")
def test_the_drill_from_an_older_snapshot_replays_and_checks_what_is_above_it(
    copied, capsys
) -> None:
    home, made, height = copied
    # How many ops the last checkpoint took depends on when it was cut: count them.
    with sqlite3.connect(db_path(home)) as db:
        (log_seq,) = db.execute(
            "SELECT log_seq FROM checkpoints WHERE height = ?", (height - 1,)
        ).fetchone()
        (above,) = db.execute("SELECT COUNT(*) FROM op_log WHERE seq > ?", (log_seq,)).fetchone()
    assert 0 < above < 16
    code, report = recover_json(capsys, home, "--from-snapshot", "--height", str(height - 1))
    assert code == 0, report
    assert report["from_snapshot_height"] == height - 1
    assert report["checkpoint_height"] == height
    assert report["checkpoints_checked"] == report["stored_checkpoints"] == 2
    assert report["replayed_ops"] == above and report["skipped_ops"] == 16 - above
    assert report["state_root"] == made["state_root"] and report["live_parity"] is True
    # The same home from genesis: the same roots, and no snapshot named.
    code, full = recover_json(capsys, home)
    assert code == 0 and full["from_snapshot_height"] is None
    assert full["replayed_ops"] == 16 and full["skipped_ops"] == 0
    assert (full["state_root"], full["final_state_root"]) == (
        report["state_root"],
        report["final_state_root"],
    )


def test_a_flipped_byte_in_an_op_above_the_snapshot_fails_at_its_height(copied, capsys) -> None:
    home, _, height = copied
    with sqlite3.connect(db_path(home)) as db:
        (log_seq,) = db.execute(
            "SELECT log_seq FROM checkpoints WHERE height = ?", (height - 1,)
        ).fetchone()
        seq, op_id, author, author_seq, envelope = db.execute(
            "SELECT seq, op_id, author, author_seq, envelope FROM op_log WHERE seq > ? "
            "ORDER BY seq LIMIT 1",
            (log_seq,),
        ).fetchone()
        damaged = envelope[:-1] + bytes([envelope[-1] ^ 0x01])  # in the signature
        crc = api.op_crc(seq, op_id, author, author_seq, damaged)  # the store reads it
        db.execute("UPDATE op_log SET envelope = ?, crc = ? WHERE seq = ?", (damaged, crc, seq))
    code, report = recover_json(capsys, home, "--from-snapshot", "--height", str(height - 1))
    assert code == 1, report
    assert report["parity"] is False
    assert report["first_divergence"]["height"] == height
    assert "not in the log" in report["first_divergence"]["reason"]
    assert sum(report["rejected_ops"].values()) == 1
    assert report["checkpoint_height"] == height - 1


def test_a_tampered_checkpoint_root_above_the_snapshot_fails_at_its_height(copied, capsys) -> None:
    home, _, height = copied
    with sqlite3.connect(db_path(home)) as db:
        row = db.execute(
            "SELECT height, checkpoint_id, state_root, bundle, log_seq FROM checkpoints "
            "WHERE height = ?",
            (height,),
        ).fetchone()
        forged = api.Checkpoint(row[0], row[1], b"\x07" * 32, row[3], row[4])
        db.execute(
            "UPDATE checkpoints SET state_root = ?, crc = ? WHERE height = ?",
            (forged.state_root, api.checkpoint_crc(forged), height),
        )
    # The snapshot at `height` no longer matches its checkpoint, so the newest usable one is
    # the one before, and the drill checks the tampered checkpoint above it.
    code, report = recover_json(capsys, home, "--from-snapshot")
    assert code == 1, report
    assert report["from_snapshot_height"] == height - 1
    assert report["first_divergence"]["height"] == height
    assert "stored state root" in report["first_divergence"]["reason"]


def test_a_snapshot_that_is_not_its_checkpoint_fails_parity_at_its_height(copied, capsys) -> None:
    home, _, height = copied
    with sqlite3.connect(db_path(home)) as db:
        (older,) = db.execute(
            "SELECT blob FROM state_snapshots WHERE height = ?", (height - 1,)
        ).fetchone()
        (root,) = db.execute(
            "SELECT state_root FROM state_snapshots WHERE height = ?", (height,)
        ).fetchone()
        crc = api.snapshot_crc(api.StateSnapshot(height, root, older))
        db.execute(
            "UPDATE state_snapshots SET blob = ?, crc = ? WHERE height = ?", (older, crc, height)
        )
    code, report = recover_json(capsys, home, "--from-snapshot")
    assert code == 1, report
    assert report["parity"] is False and report["from_snapshot_height"] == height
    assert report["first_divergence"]["height"] == height
    assert report["checkpoints_checked"] == 0 and report["replayed_ops"] == 0


@pytest.mark.parametrize("keep_checksum", [False, True], ids=["bad_checksum", "bad_blob"])
def test_a_corrupt_snapshot_is_a_typed_error_naming_an_older_one(
    copied, capsys, keep_checksum: bool
) -> None:
    from .test_snapshot_cli import rewrite_snapshot

    home, _, height = copied
    rewrite_snapshot(home, height, keep_checksum=keep_checksum)
    code, error = recover_json(capsys, home, "--from-snapshot")
    assert code == 1 and error["code"] == "snapshot_corrupt"
    assert f"height {height}" in error["error"] and f"--height {height - 1}" in error["error"]
    code, report = recover_json(capsys, home, "--from-snapshot", "--height", str(height - 1))
    assert code == 0 and report["parity"] is True


def test_without_a_snapshot_the_drill_from_a_snapshot_is_refused(copied, capsys) -> None:
    home, _, height = copied
    code, error = recover_json(capsys, home, "--from-snapshot", "--height", "1")
    assert code == 1 and error["code"] == "no_snapshot" and "height 1" in error["error"]
    code, error = recover_json(capsys, home, "--height", str(height))
    assert code == 2 and error["code"] == "usage"
    code, reset = run_cli(capsys, "reset", "--home", str(home), "--yes")
    assert code == 0 and reset["snapshots_deleted"] == 2
    code, error = recover_json(capsys, home, "--from-snapshot")
    assert code == 1 and error["code"] == "no_snapshot" and "--from-snapshot" in error["error"]


async def copy_as_state_synced(source: Path, target: Path, synced_at: int) -> tuple[int, int]:
    """Rewrite `target`'s store as a node's that stopped after height 1 and came back by state
    sync at `synced_at`: checkpoint 1 and its ops, then the snapshot at `synced_at` with its
    checkpoint, then the ops and checkpoints above it; nothing in between. Returns how many
    ops it kept at or below height 1 and above `synced_at` (how many ops a checkpoint holds
    depends on when the checkpoints were cut)."""
    from dataclasses import replace

    from swarmd.node.cli.common import load_genesis, load_key_file
    from swarmd.node.runtime.persistence import LIVE_STATE_META_KEY
    from swarmd.protocol import encoding
    from swarmd.storage.store import Store

    config = load_config(source / "swarmd.toml")
    genesis = load_genesis(Path(config.node.genesis_file))
    key = load_key_file(Path(config.node.key_file)).public_key
    for path in target.glob("swarmd.sqlite3*"):
        if path.is_dir():  # the signing state's precommit records
            shutil.rmtree(path)
        else:
            path.unlink()
    old = await Store.open(config.node.data_file, network_id=genesis.network_id, node_key=key)
    new = await Store.open(db_path(target), network_id=genesis.network_id, node_key=key)
    try:
        rows = await old.read_log(0, 4096)
        checkpoints = await old.read_checkpoints(0, 4096)
        kept = [c for c in checkpoints if c.height == 1 or c.height >= synced_at]
        first, synced = kept[0], next(c for c in kept if c.height == synced_at)
        # The ops a node logs while it is behind (up to its stop) or after its state sync.
        logged = [r for r in rows if r.seq <= first.log_seq or r.seq > synced.log_seq]
        below = sum(1 for r in logged if r.seq <= first.log_seq)
        blob = bytes((await old.get_snapshot(synced_at)).blob)
        for checkpoint in kept:
            ops = [
                api.NewOp(r.op_id, r.author, r.author_seq, r.envelope, r.status, 0)
                for r in logged
                if r.seq <= checkpoint.log_seq
            ]
            fresh = [op for op in ops if await new.get_op(op.op_id) is None]
            if fresh:
                await new.append_ops(fresh)
            snapshot = blob if checkpoint is synced else b""
            await new.put_checkpoint(replace(checkpoint, log_seq=new.last_seq), snapshot)
        log_seq, root = encoding.decode(await old.get_meta(LIVE_STATE_META_KEY))
        assert log_seq == old.last_seq
        await new.set_meta(LIVE_STATE_META_KEY, encoding.encode([new.last_seq, root]))
    finally:
        await old.close()
        await new.close()
    return below, len(logged) - below


@pytest.mark.gate("s0-recovery-drills")
@pytest.mark.gate("s2-play-resync")
def test_a_state_synced_home_needs_the_drill_from_its_snapshot(
    snapshot_history, copied, capsys
) -> None:
    home, made, height = copied
    source = snapshot_history[0]
    below, above = asyncio.run(copy_as_state_synced(source, home, synced_at=height - 1))
    assert below > 0 and above > 0
    # From genesis the ops below the snapshot are missing: a typed error, not a parity failure.
    code, error = recover_json(capsys, home)
    assert code == 1 and error["code"] == "log_not_from_genesis"
    assert f"from height 1 to {height - 1}" in error["error"]
    assert "--from-snapshot" in error["error"]
    # Reset would delete the only state its log cannot rebuild: refused the same way.
    code, error = run_cli(capsys, "reset", "--home", str(home), "--yes")
    assert code == 1 and error["code"] == "log_not_from_genesis"
    code, report = recover_json(capsys, home, "--from-snapshot")
    assert code == 0, report
    assert report["from_snapshot_height"] == height - 1 and report["checkpoint_height"] == height
    assert report["replayed_ops"] == above and report["skipped_ops"] == below
    assert report["state_root"] == made["state_root"] and report["live_parity"] is True
