"""Snapshots and state sync with real daemons on loopback (WebSocket transport).

(a) A node restarted after snapshots exist restores from the newest one (its status and its
"restored" log line say from which height) and reaches the same state root as its peers.
(b) A node stopped while the others finalize more heights than they keep bundles of cannot
catch up by bundles; after its restart it catches up by state sync from a peer's snapshot.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from swarmd.node.cli.devnet import NodeHome, Swarm, wait_until
from swarmd.protocol import crypto
from swarmd.protocol.wallet import Author

pytestmark = pytest.mark.integration

SNAPSHOT_INTERVAL = 2
BUNDLES_KEPT = 4
#: Small values so that a test makes snapshots every other height and a node falls out of the
#: peers' bundle window after a few heights.
SMALL = {
    "consensus": {"checkpoint_interval_s": 0.2, "snapshot_interval": SNAPSHOT_INTERVAL},
    "sync": {"delta_sync_interval_s": 0.5, "bundles_kept": BUNDLES_KEPT},
    "storage": {"snapshots_kept": 2},
    "log": {"level": "info"},
}
TEST_TIMEOUT_S = 90.0
HEIGHT_TIMEOUT_S = 30.0


@pytest.fixture
async def swarm(tmp_path: Path) -> AsyncIterator[Swarm]:
    created = Swarm.create(tmp_path / "swarm", 4, transport="websocket", config_overrides=SMALL)
    await created.start()
    try:
        yield created
    finally:
        await created.stop()


def log_events(node: NodeHome, event: str) -> list[dict[str, Any]]:
    lines = (node.home / "node.log").read_text(errors="replace").splitlines()
    found = []
    for line in lines:
        if f'"{event}"' not in line:
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if value.get("event") == event:
            found.append(value)
    return found


async def final_height(swarm: Swarm, node: NodeHome) -> int:
    status = await swarm.try_get(node, "/v1/status")
    return -1 if status is None else int(status["final_height"])


async def finalize_heights(swarm: Swarm, via: NodeHome, heights: int) -> int:
    """Submit a grant per height through `via` and wait for each to be final there."""
    member = Author(via.keypair, swarm.genesis.network_id)
    for _ in range(heights):
        target = await final_height(swarm, via) + 1
        person = crypto.KeyPair.from_seed(os.urandom(32))
        status, body = await swarm.submit(via, member.grant(person.public_key, 100))
        assert status == 202, body

        async def reached(target: int = target) -> bool:
            return await final_height(swarm, via) >= target

        await wait_until(reached, HEIGHT_TIMEOUT_S, f"height {target} on node {via.index}")
    return await final_height(swarm, via)


async def test_restart_restores_from_the_newest_snapshot(swarm: Swarm) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        await swarm.wait_connected()
        await finalize_heights(swarm, swarm.nodes[0], 2 * SNAPSHOT_INTERVAL + 1)
        await swarm.wait_converged(min_height=2 * SNAPSHOT_INTERVAL + 1)
        victim = swarm.nodes[3]
        before = await swarm.get(victim, "/v1/status")
        assert before["snapshot"] is not None
        assert before["snapshot"]["height"] % SNAPSHOT_INTERVAL == 0
        await swarm.stop_node(victim)

        await swarm.start_node(victim)
        await swarm.wait_connected()
        statuses = await swarm.wait_converged(min_height=before["final_height"])
        assert len({status["state_root"] for status in statuses}) == 1
        after = statuses[3]
        assert after["restore"]["snapshot_height"] == before["snapshot"]["height"]
        restored = log_events(victim, "restored")
        assert len(restored) == 2  # the first start, then the restart
        assert restored[0]["snapshot_height"] is None
        assert restored[-1]["snapshot_height"] == before["snapshot"]["height"]
        # From the snapshot only the log's tail is read (and replayed), not the whole log.
        assert restored[-1]["replayed_ops"] <= restored[-1]["ops"] < before["applied_ops"]


@pytest.mark.gate("s2-play-resync")
async def test_a_node_beyond_the_bundle_window_catches_up_by_state_sync(swarm: Swarm) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        await swarm.wait_connected()
        await finalize_heights(swarm, swarm.nodes[0], 1)
        await swarm.wait_converged(min_height=1)
        victim = swarm.nodes[3]
        await swarm.stop_node(victim)
        stopped_at = (await swarm.statuses([swarm.nodes[0]]))[0]["final_height"]

        # The other three (a quorum of 4) finalize more heights than they keep bundles of.
        reached = await finalize_heights(swarm, swarm.nodes[1], 3 * BUNDLES_KEPT)
        assert reached - stopped_at > BUNDLES_KEPT

        await swarm.start_node(victim)
        await swarm.wait_connected()
        statuses = await swarm.wait_converged(min_height=reached)
        assert len({status["state_root"] for status in statuses}) == 1
        finished = log_events(victim, "state_sync_finished")
        assert finished, "the restarted node caught up without a state sync"
        assert finished[0]["height"] > stopped_at + 1
        assert finished[0]["height"] % SNAPSHOT_INTERVAL == 0
        metrics = await fetch_text(swarm, victim, "/metrics")
        assert 'swarmd_state_sync_sessions_total{result="finished"}' in metrics
        status = statuses[3]
        assert (
            status["snapshot"] is not None and status["snapshot"]["height"] >= finished[0]["height"]
        )


async def fetch_text(swarm: Swarm, node: NodeHome, path: str) -> str:
    assert swarm.session is not None
    async with swarm.session.get(node.url + path) as response:
        return await response.text()
