"""Two daemons (issue 13): node A, a one-member council with `[storage].retain_heights`, runs
past pruning; a fresh node B joins it, catches up by state sync (the bodies and bundles it
would need for a replay are gone from A) and ends with A's state, then sees a new op final."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from swarmd.node.cli.home import init_home
from swarmd.protocol import crypto, limits
from swarmd.protocol.wallet import Author

from .test_api import FAST, Node, close_node, open_node
from .test_pruning import pruned_rows, run_rounds, settle, store_log
from .test_snapshot_cli import HISTORY_TIMEOUT_S

#: A snapshot every 2 final heights, bodies and bundles of the last 2 heights kept.
PRUNED: dict[str, Any] = {
    "consensus": {"checkpoint_interval_s": 0.05, "timeout_propose_s": 0.2, "snapshot_interval": 2},
    "sync": {"bundles_kept": 2, "delta_sync_interval_s": 0.2},
    "storage": {"snapshots_kept": 2, "retain_heights": 2},
    "network": {"transport": "websocket"},
}


async def until(predicate: Any) -> None:
    async with asyncio.timeout(HISTORY_TIMEOUT_S):
        while not predicate():
            await asyncio.sleep(0.02)  # polling the daemons' own state; bounded above


async def open_joiner(home: Path, a: Node, config: dict[str, Any] = PRUNED) -> Node:
    """A fresh non-council node of A's network that dials A."""
    url = f"http://127.0.0.1:{a.api.port}"
    network = {
        "transport": "websocket",
        "peers": [{"url": url, "node_id": a.daemon.keypair.public_key}],
    }
    init_home(
        home,
        keypair=crypto.KeyPair.from_seed(os.urandom(32)),
        genesis=a.daemon.genesis,
        config_overrides={**FAST, **config, "network": network},
    )
    return await open_node(home)


async def test_a_fresh_node_joins_a_pruned_node_by_state_sync(tmp_path: Path) -> None:
    a = await open_node(tmp_path / "a", crypto.KeyPair.from_seed(os.urandom(32)), **PRUNED)
    try:
        await run_rounds(a.daemon, 10)
        await settle(a)
        pruned, _ = await pruned_rows(a)
        assert pruned and await store_log(a).pruned_through() >= 1
        b = await open_joiner(tmp_path / "b", a)
        try:
            target = a.daemon.core.final_height
            await until(lambda: b.daemon.core.final_height >= target)
            assert b.daemon.core.stats.state_syncs_finished >= 1  # not by bundles: pruned
            await until(lambda: b.daemon.core.final_height == a.daemon.core.final_height)
            assert (
                b.daemon.core.ledger.final_state.root() == a.daemon.core.ledger.final_state.root()
            )
            council = a.daemon.core.ledger.state.accounts[a.daemon.keypair.public_key]
            author = Author(a.daemon.keypair, a.network_id, seq=council.seq, head=council.head)
            grant = author.grant(crypto.KeyPair.from_seed(os.urandom(32)).public_key, 100)
            assert (await a.submit(grant))[0] == 202
            await until(lambda: b.daemon.core.ledger.is_final(grant.op_id))
            status, body = await b.get(f"/v1/ops/{grant.op_id.hex()}")
            assert status == 200 and body["status"] == "final"
        finally:
            await close_node(b)
    finally:
        await close_node(a)


async def test_a_fresh_node_catches_up_by_bundles_with_old_ops_read_from_the_store(
    tmp_path: Path,
) -> None:
    """A serves 100 bundles but keeps only 64 heights of final op bodies in memory: B's
    catch-up asks for ops older than that, which A's shell reads from its store
    (StoredOpsWanted)."""
    archive: dict[str, Any] = {
        "sync": {"bundles_kept": 100, "delta_sync_interval_s": 0.2},
        "network": {"transport": "websocket"},
    }
    a = await open_node(tmp_path / "a", crypto.KeyPair.from_seed(os.urandom(32)), **archive)
    try:
        window = a.daemon.core.ledger.config.final_bodies_heights
        assert window == limits.FINAL_OP_BODIES_HEIGHTS_DAEMON < 100
        await run_rounds(a.daemon, window + 6)
        await settle(a)
        assert a.daemon.core.ledger.bodies_held() <= window
        # The ids left with the bodies: the ops asked of the store are ids A does not hold.
        assert a.daemon.core.ledger.bookkeeping_counts()["final_ids"] <= window
        b = await open_joiner(tmp_path / "b", a, archive)
        try:
            await until(lambda: b.daemon.core.final_height == a.daemon.core.final_height)
            assert b.daemon.core.stats.state_syncs_finished == 0  # by bundles and their ops
            assert a.daemon.stored_ops.served >= 1  # the oldest heights' ops came from the store
            assert (
                b.daemon.core.ledger.final_state.root() == a.daemon.core.ledger.final_state.root()
            )
        finally:
            await close_node(b)
    finally:
        await close_node(a)
