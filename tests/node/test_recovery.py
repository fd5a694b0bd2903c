"""The recovery drill against a real daemon's SQLite store: reset, recover, parity."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path

import pytest

from swarmd.node.cli import main
from swarmd.node.commands import init_home
from swarmd.node.config import load_config
from swarmd.node.daemon import Daemon
from swarmd.protocol import crypto
from swarmd.protocol.wallet import Author

FAST = {"consensus": {"checkpoint_interval_s": 0.05, "timeout_propose_s": 0.2}}


async def make_history(home: Path, rounds: int = 3) -> tuple[int, str]:
    init_home(home, keypair=crypto.KeyPair.from_seed(os.urandom(32)), config_overrides=FAST)
    daemon = await Daemon.open(load_config(home / "swarmd.toml"))
    daemon.create_transports()
    await daemon.start()
    try:
        council = Author(daemon.keypair, daemon.genesis.network_id)
        for round_ in range(rounds):
            people = [
                Author(crypto.KeyPair.from_seed(os.urandom(32)), council.network_id)
                for _ in range(3)
            ]
            grants = [council.grant(p.key, daemon.genesis.signup_reward) for p in people]
            for grant in grants:
                assert (await daemon.submit(grant.envelope)).status == "accepted"
            pay = people[0].transfer(people[1].key, 7, receive=[grants[0].op_id])
            assert (await daemon.submit(pay.envelope)).status == "accepted"
            target = daemon.core.final_height + 1
            async with asyncio.timeout(10):
                while daemon.core.final_height < target or daemon.core.ledger.unfinalized_count():
                    await asyncio.sleep(0.02)  # polling the daemon's own state; bounded above
            del round_
        return daemon.core.final_height, daemon.core.state_root().hex()
    finally:
        await daemon.stop()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


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


def test_a_different_live_root_breaks_parity(tmp_path: Path, capsys) -> None:
    from swarmd.node.persistence import LIVE_STATE_META_KEY
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
    assert code == 2 and report["code"] == "no_home"


def test_reset_needs_yes_without_a_terminal(tmp_path: Path, capsys, monkeypatch) -> None:
    home = tmp_path / "node"
    init_home(home, keypair=crypto.KeyPair.from_seed(os.urandom(32)))
    code, report = run_cli(capsys, "reset", "--home", str(home))
    assert code == 2 and report["code"] == "confirm"


async def copy_store_without(home: Path, target: Path, drop_height: int) -> dict:
    """Copy a node's store into `target`, leaving out one op of checkpoint `drop_height`."""
    from swarmd.node.cli import load_genesis, load_key_file
    from swarmd.node.recovery import recover_store
    from swarmd.protocol.checkpoint import Cut
    from swarmd.protocol.consensus import CheckpointBundle
    from swarmd.storage import api
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


def test_a_lost_op_is_reported_at_the_first_height_that_needs_it(tmp_path: Path, capsys) -> None:
    home = tmp_path / "node"
    asyncio.run(make_history(home))
    report = asyncio.run(copy_store_without(home, tmp_path / "copy.sqlite3", drop_height=2))
    assert report["parity"] is False
    assert report["first_divergence"]["height"] == 2
    assert report["checkpoint_height"] == 1
