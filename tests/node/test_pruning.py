"""`[storage].retain_heights` on a real daemon: after each final checkpoint the node prunes op
bodies and bundles older than N final heights (never above the oldest snapshot a restart may
use); a restart after pruning restores from the snapshot; the API answers `pruned` (410)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from swarmd.node.config import load_config
from swarmd.node.runtime.driver import Daemon
from swarmd.node.runtime.errors import DaemonError
from swarmd.node.runtime.persistence import PRUNED_THROUGH_META_KEY, StoreLog
from swarmd.protocol import crypto
from swarmd.protocol.wallet import Author

from .test_api import Node, close_node, open_node
from .test_snapshot_cli import HISTORY_TIMEOUT_S, rewrite_snapshot

#: A snapshot at every final height, two kept, and the last two heights' bodies kept.
PRUNING: dict[str, Any] = {
    "consensus": {"checkpoint_interval_s": 0.05, "timeout_propose_s": 0.2, "snapshot_interval": 1},
    "sync": {"bundles_kept": 4},
    "storage": {"snapshots_kept": 2, "retain_heights": 2},
}


async def run_rounds(daemon: Daemon, rounds: int) -> None:
    """Each round: a grant to a fresh account, then wait until it is final. The council's
    chain continues from its head in the ledger (so this runs again after a restart)."""
    account = daemon.core.ledger.state.accounts.get(daemon.keypair.public_key)
    seq, head = (account.seq, account.head) if account is not None else (0, b"")
    council = Author(daemon.keypair, daemon.genesis.network_id, seq=seq, head=head)
    for _ in range(rounds):
        person = crypto.KeyPair.from_seed(os.urandom(32)).public_key
        target = daemon.core.final_height + 1  # read first: see test_snapshot_cli.run_rounds
        grant = council.grant(person, daemon.genesis.signup_reward)
        assert (await daemon.submit(grant.envelope)).status == "accepted"
        async with asyncio.timeout(HISTORY_TIMEOUT_S):
            while daemon.core.final_height < target or daemon.core.ledger.unfinalized_count():
                await asyncio.sleep(0.02)  # polling the daemon's own state; bounded above


async def settle(node: Node) -> None:
    async with asyncio.timeout(HISTORY_TIMEOUT_S):
        await node.daemon.snapshot_builds.wait_idle()
    await node.daemon.committer.barrier()


def store_log(node: Node) -> StoreLog:
    node_log = node.daemon.node_log
    assert isinstance(node_log, StoreLog)
    return node_log


async def pruned_rows(node: Node) -> tuple[list[bytes], list[bytes]]:
    """(ids of logged ops whose body was pruned, ids of those kept)."""
    rows = await store_log(node).store.read_log(0, 4096)
    return [r.op_id for r in rows if not r.envelope], [r.op_id for r in rows if r.envelope]


async def test_old_bodies_and_bundles_are_pruned_and_a_restart_answers_pruned(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    node = await open_node(home, crypto.KeyPair.from_seed(os.urandom(32)), **PRUNING)
    try:
        await run_rounds(node.daemon, 8)
        await settle(node)
        final_height = node.daemon.core.final_height
        # The core serves no bundle of a pruned range either: a peer that far behind is
        # offered state sync (finality.serve_bundles; tests/protocol/test_state_sync.py).
        served = node.daemon.core.config.bundles_kept
        assert served == 2 and node.daemon.core.bundle(final_height - 2) is None
        assert node.daemon.core.bundle(final_height) is not None
        state_root = node.daemon.core.ledger.final_state.root()
        pruned, kept = await pruned_rows(node)
        through = await store_log(node).pruned_through()
        snapshots = await store_log(node).snapshot_heights()
        checkpoints = await store_log(node).store.read_checkpoints(0, 4096)
    finally:
        await close_node(node)
    assert pruned and kept
    # Never above final - retain_heights, nor above the oldest snapshot a restart may try.
    assert 1 <= through <= min(final_height - 2, snapshots[0])
    assert checkpoints[0].height == through  # its bundle stays; the ones below are gone
    node = await open_node(home)
    try:
        daemon = node.daemon
        assert daemon.restore_info["snapshot_height"] in snapshots
        assert daemon.core.final_height == final_height
        assert daemon.core.ledger.final_state.root() == state_root
        for op_id in pruned[:3]:
            status, body = await node.get(f"/v1/ops/{op_id.hex()}")
            assert (status, body["code"]) == (410, "pruned")
        status, body = await node.get(f"/v1/ops/{bytes(32).hex()}")
        assert (status, body["code"]) == (404, "op_not_found")  # never seen: not "pruned"
        if through > 1:
            status, body = await node.get("/v1/checkpoints/1")
            assert (status, body["code"]) == (410, "pruned")
        status, body = await node.get(f"/v1/checkpoints/{through}")
        assert status == 200 and body["height"] == through
        # The node goes on: new ops become final and pruning continues past a restart.
        await run_rounds(daemon, 2)
        await settle(node)
        assert daemon.core.final_height > final_height
        assert await store_log(node).pruned_through() >= through
    finally:
        await close_node(node)


async def test_an_archive_node_prunes_nothing(tmp_path: Path) -> None:
    overrides = {**PRUNING, "storage": {"snapshots_kept": 2}}  # retain_heights = 0: archive
    node = await open_node(tmp_path / "home", crypto.KeyPair.from_seed(os.urandom(32)), **overrides)
    try:
        await run_rounds(node.daemon, 5)
        await settle(node)
        pruned, kept = await pruned_rows(node)
        assert not pruned and kept
        assert await store_log(node).store.get_meta(PRUNED_THROUGH_META_KEY) is None
        checkpoints = await store_log(node).store.read_checkpoints(0, 4096)
        assert checkpoints[0].height == 1
    finally:
        await close_node(node)


async def test_junk_pending_ops_are_bounded_on_disk_as_in_memory(tmp_path: Path) -> None:
    """Junk (ops waiting for a credit nobody made) beyond the pending pool's bound is evicted
    in memory and marked EXPIRED in the log; the next checkpoint deletes the expired rows
    beyond the same bound, so junk does not pile up on disk either."""
    overrides = {**PRUNING, "limits": {"pending_ops_max": 3, "pending_ops_per_author_max": 3}}
    node = await open_node(tmp_path / "home", crypto.KeyPair.from_seed(os.urandom(32)), **overrides)
    try:
        daemon = node.daemon
        for index in range(12):
            key = crypto.KeyPair.from_seed(os.urandom(32))
            junk = Author(key, daemon.genesis.network_id).transfer(
                crypto.KeyPair.from_seed(os.urandom(32)).public_key,
                1,
                receive=[crypto.sha256(b"no such credit %d" % index)],
            )
            assert (await daemon.submit(junk.envelope)).status == "pending"
        assert len(daemon.core.ledger.pending) == 3
        await run_rounds(daemon, 2)  # checkpoints: each runs one bounded trim pass
        await settle(node)
        rows = await store_log(node).store.read_log(0, 4096)
        expired = [r for r in rows if r.status is store_log(node).api.OpStatus.EXPIRED]
        assert len(expired) <= 3
        deleted = await store_log(node).store.get_meta(store_log(node).api.META_OP_LOG_DELETED)
        assert deleted is not None and int(deleted) >= 12 - 3 - 3  # evicted junk, trimmed
        assert len([r for r in rows if r.status is store_log(node).api.OpStatus.APPLIED]) >= 2
        assert (await store_log(node).store.integrity_check()).ok
    finally:
        await close_node(node)


async def test_a_pruned_log_without_a_restorable_snapshot_refuses_to_start(tmp_path: Path) -> None:
    """A full replay of a pruned log would rebuild a wrong state: the node says so instead."""
    home = tmp_path / "home"
    node = await open_node(home, crypto.KeyPair.from_seed(os.urandom(32)), **PRUNING)
    try:
        await run_rounds(node.daemon, 6)
        await settle(node)
        assert await store_log(node).pruned_through() >= 1
        snapshots = await store_log(node).snapshot_heights()
    finally:
        await close_node(node)
    for height in snapshots:
        rewrite_snapshot(home, height, keep_checksum=False)
    with pytest.raises(DaemonError, match="pruned"):
        await Daemon.open(load_config(home / "swarmd.toml"))
