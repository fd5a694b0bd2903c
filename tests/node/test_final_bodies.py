"""Final op bodies leave the daemon's memory (issue 13): its ledger keeps the newest heights'
bodies only (limits.FINAL_OP_BODIES_HEIGHTS_DAEMON, no more than the bundles it serves), and
`GET /v1/ops/{id}` reads older ones from the store, answering `pruned` at once for a pruned
body on a running node."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from swarmd.node.runtime.persistence import StoredOps
from swarmd.protocol import crypto, limits

from .test_api import close_node, open_node
from .test_pruning import PRUNING, pruned_rows, run_rounds, settle, store_log

#: Archive mode, four bundles served: the ledger keeps four heights of final bodies.
ARCHIVE: dict[str, Any] = {**PRUNING, "sync": {"bundles_kept": 4}, "storage": {}}
#: Archive mode, a snapshot every 4 final heights (a restart restores the newest).
RESTARTED: dict[str, Any] = {
    "consensus": {"checkpoint_interval_s": 0.05, "timeout_propose_s": 0.2, "snapshot_interval": 4},
    "storage": {"snapshots_kept": 2},
}


async def test_old_final_bodies_leave_memory_and_are_read_from_the_store(tmp_path: Path) -> None:
    node = await open_node(tmp_path / "home", crypto.KeyPair.from_seed(os.urandom(32)), **ARCHIVE)
    try:
        daemon = node.daemon
        ledger = daemon.core.ledger
        assert ledger.config.final_bodies_heights == 4
        await run_rounds(daemon, 10)
        await settle(node)
        held = ledger.bodies_held()
        await run_rounds(daemon, 6)
        await settle(node)
        # One grant a height: the bodies held do not grow with the history.
        assert ledger.bodies_held() <= 4 * 2 and ledger.bodies_held() == held
        rows = await store_log(node).store.read_log(0, 4096)
        oldest = rows[0].op_id
        # Its id left memory with its body (issue 13): the store answers "final".
        assert ledger.op(oldest) is None and not ledger.is_final(oldest)
        assert ledger.bookkeeping_counts()["final_ids"] <= 4 * 2
        status, body = await node.get(f"/v1/ops/{oldest.hex()}")
        assert status == 200 and body["status"] == "final"
        assert body["op"]["author"] == crypto.account_id_text(daemon.keypair.public_key)
    finally:
        await close_node(node)


async def test_a_running_node_answers_pruned_at_once(tmp_path: Path) -> None:
    node = await open_node(tmp_path / "home", crypto.KeyPair.from_seed(os.urandom(32)), **PRUNING)
    try:
        await run_rounds(node.daemon, 8)
        await settle(node)
        pruned, kept = await pruned_rows(node)
        assert pruned and kept
        for op_id in pruned[:3]:
            assert node.daemon.core.ledger.op(op_id) is None
            status, body = await node.get(f"/v1/ops/{op_id.hex()}")
            assert (status, body["code"]) == (410, "pruned")
        status, body = await node.get(f"/v1/ops/{kept[-1].hex()}")
        assert status == 200
    finally:
        await close_node(node)


async def test_store_reads_for_peers_are_bounded(tmp_path: Path) -> None:
    """At most STORED_OPS_READS_INFLIGHT_MAX reads of old final ops run at once; the requests
    beyond are refused (the peers ask again) and counted."""
    node = await open_node(tmp_path / "home", crypto.KeyPair.from_seed(os.urandom(32)), **ARCHIVE)
    try:
        await run_rounds(node.daemon, 2)
        await settle(node)
        rows = await store_log(node).store.read_log(0, 4096)
        ids = [row.op_id for row in rows]
        reader = StoredOps(node.daemon.node_log)
        extra = 3
        results = await asyncio.gather(
            *(reader.read(ids) for _ in range(limits.STORED_OPS_READS_INFLIGHT_MAX + extra))
        )
        answered = [result for result in results if result is not None]
        assert len(answered) == limits.STORED_OPS_READS_INFLIGHT_MAX and reader.refused == extra
        assert all(envelopes == [row.envelope for row in rows] for envelopes in answered)
        assert reader.inflight == 0 and reader.served == len(ids) * len(answered)
        assert await reader.read(ids) is not None  # free again
    finally:
        await close_node(node)


async def test_a_restarted_node_answers_final_for_ops_below_its_snapshot(tmp_path: Path) -> None:
    """A node restored from its snapshot never held the ids final below it: the op status
    comes from the store (logged, at or below its author's final seq: final), not 404."""
    home = tmp_path / "home"
    node = await open_node(home, crypto.KeyPair.from_seed(os.urandom(32)), **RESTARTED)
    try:
        await run_rounds(node.daemon, 10)
        await settle(node)
        rows = await store_log(node).store.read_log(0, 4096)
    finally:
        await close_node(node)
    node = await open_node(home)
    try:
        assert node.daemon.restore_info["snapshot_height"] >= 4
        ledger = node.daemon.core.ledger
        oldest = rows[0].op_id
        assert ledger.status_of(oldest) == ("unknown", "") and not ledger.is_final(oldest)
        status, body = await node.get(f"/v1/ops/{oldest.hex()}")
        assert status == 200 and body["status"] == "final", body
        status, body = await node.get(f"/v1/ops/{bytes(32).hex()}")
        assert (status, body["code"]) == (404, "op_not_found")
    finally:
        await close_node(node)
