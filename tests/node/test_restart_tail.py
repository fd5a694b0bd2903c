"""A restart from a stored snapshot plus the log above it (issue 13): the log and the bundles
are streamed in pages, nothing at or below the snapshot is verified again (the counters the
code exposes say so), and the state is the one the node stopped with."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from swarmd.protocol import crypto
from swarmd.protocol.crypto import InvalidKeyError
from swarmd.protocol.ledger.snapshot import SnapshotRecordError, state_from_records, state_records
from swarmd.protocol.ledger.state import LedgerState

from .test_api import close_node, open_node
from .test_pruning import run_rounds, settle, store_log

#: Archive mode (every bundle and body kept, so the ones below the snapshot are there to be
#: skipped), a snapshot every 4 final heights.
ARCHIVE: dict[str, Any] = {
    "consensus": {"checkpoint_interval_s": 0.05, "timeout_propose_s": 0.2, "snapshot_interval": 4},
    "storage": {"snapshots_kept": 2},
}


async def test_a_restart_verifies_only_what_is_above_its_snapshot(tmp_path: Path) -> None:
    home = tmp_path / "home"
    node = await open_node(home, crypto.KeyPair.from_seed(os.urandom(32)), **ARCHIVE)
    try:
        await run_rounds(node.daemon, 10)
        await settle(node)
        final_height = node.daemon.core.final_height
        state_root = node.daemon.core.ledger.final_state.root()
        snapshots = await store_log(node).snapshot_heights()
        logged = await store_log(node).store.read_log(0, 4096)
        bundles = await store_log(node).store.read_checkpoints(0, 4096)
        tail = await store_log(node).store.replay_seqs(snapshots[-1])
    finally:
        await close_node(node)
    snapshot_height = snapshots[-1]
    assert 4 <= snapshot_height < final_height
    assert len(bundles) == final_height  # archive: the bundles below the snapshot are stored
    node = await open_node(home)
    try:
        core = node.daemon.core
        assert node.daemon.restore_info["snapshot_height"] == snapshot_height
        assert core.final_height == final_height
        assert core.ledger.final_state.root() == state_root
        # Only the bundles above the snapshot had their signatures checked...
        assert core.stats.bundles_verified == final_height - snapshot_height
        # ...and only the ops above it (the rest were skipped by seq, undecoded by crypto).
        replayed = core.ledger.applied_count()
        assert 1 <= replayed < len(logged)
        assert core.ledger.stats.verified == replayed
        assert node.daemon.restore_info["replayed_ops"] == replayed
        # The log rows read are the tail's (final above the snapshot, or not final), through
        # the store's indexes: the rows final at or below the snapshot were not even read.
        assert node.daemon.restore_info["logged_ops"] == len(tail) == replayed
        assert store_log(node).store.rows_read == len(tail) < len(logged)
        # The node goes on from there.
        await run_rounds(node.daemon, 1)
        assert core.final_height > final_height
    finally:
        await close_node(node)


async def test_rows_final_before_final_heights_were_recorded_are_read_and_skipped(
    tmp_path: Path,
) -> None:
    """A store upgraded from before schema v6 has no final height on the ops final back then.
    A restart cannot tell them from live ops by the column, so it reads them (the unsettled
    index holds them) and skips them by author seq, undecoded by crypto: the state is right
    and only the tail is replayed, as before this change."""
    home = tmp_path / "home"
    node = await open_node(home, crypto.KeyPair.from_seed(os.urandom(32)), **ARCHIVE)
    try:
        await run_rounds(node.daemon, 10)
        await settle(node)
        final_height = node.daemon.core.final_height
        state_root = node.daemon.core.ledger.final_state.root()
        snapshot_height = (await store_log(node).snapshot_heights())[-1]
        data_file = node.daemon.config.node.data_file
        logged = await store_log(node).store.read_log(0, 4096)
    finally:
        await close_node(node)
    with sqlite3.connect(data_file) as connection:  # as a v5 store upgraded in place
        connection.execute("UPDATE op_log SET final_height = NULL")
    connection.close()
    node = await open_node(home)
    try:
        core = node.daemon.core
        assert node.daemon.restore_info["snapshot_height"] == snapshot_height
        assert core.final_height == final_height
        assert core.ledger.final_state.root() == state_root
        applied = [row for row in logged if row.status == 1 and row.envelope]
        assert node.daemon.restore_info["logged_ops"] == len(applied)
        replayed = core.ledger.applied_count()
        assert 1 <= replayed < len(applied)
        assert core.ledger.stats.verified == replayed
    finally:
        await close_node(node)


def _not_a_point() -> bytes:
    """32 bytes that are no curve point (found by trying: about half of all values are)."""
    for index in range(256):
        candidate = crypto.sha256(b"not a point %d" % index)
        try:
            crypto.check_public_key(candidate)
        except InvalidKeyError:
            return candidate
    raise AssertionError("no invalid key found")


def test_account_keys_are_checked_as_points_unless_the_snapshot_is_our_own() -> None:
    state = LedgerState()
    account = state.account(_not_a_point())
    account.balance = account.spendable = 5
    state.add_granted(5)
    records = state_records(state)
    try:
        state_from_records(records)
    except SnapshotRecordError as exc:
        assert "account" in exc.message
    else:
        raise AssertionError("a snapshot from a peer is checked key by key")
    rebuilt = state_from_records(records, check_keys=False)
    assert rebuilt.root() == state.root()
