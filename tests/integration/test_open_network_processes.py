"""Issue 16's open network with real processes on loopback: 4 council and 4 community
`swarmd run` daemons (WebSocket transport). Every community node is configured with one seed
only (council node 0); through peer exchange each ends with at least three peers, and an op is
final on all eight. Then the seed stops: the community nodes keep making new ops final
through the peers they learned, and their status shows the bytes each link carried."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from swarmd.benchmarks.swarm import nodes_bytes
from swarmd.node.cli.devnet import NodeHome, Swarm, free_ports, wait_until
from swarmd.node.cli.home import init_home
from swarmd.protocol import crypto
from swarmd.protocol.ops import Op
from swarmd.protocol.wallet import Author

pytestmark = pytest.mark.integration

COUNCIL = 4
COMMUNITY = 4
#: Each wait of the test (connections, finality): the whole test stays well under a minute
#: on an idle machine; this bound only turns a hang into a failure that says what it waited for.
WAIT_S = 40.0
#: Fast peer exchange and checkpoints, so the test spends its time on the network, not timers.
FAST: dict[str, dict[str, Any]] = {
    "network": {"exchange_interval_s": 0.3},
    "consensus": {"checkpoint_interval_s": 0.1},
    "api": {"rate_limit_per_s": 1_000_000.0, "rate_limit_burst": 10_000_000},
}


def add_community(swarm: Swarm, seed: NodeHome, count: int) -> list[NodeHome]:
    """`count` community homes on `swarm`'s network, each with `seed` as its only peer."""
    ports = free_ports(2 * count)
    homes = []
    for offset in range(count):
        index = len(swarm.nodes) + offset
        keypair = crypto.KeyPair.from_seed(os.urandom(32))
        node = NodeHome(
            index,
            swarm.directory / f"node-{index}",
            keypair,
            ports[2 * offset],
            ports[2 * offset + 1],
        )
        seed_entry = {"url": seed.url, "node_id": seed.keypair.public_key}
        overrides = {
            **FAST,
            "api": {**FAST["api"], "port": node.api_port},
            "admin": {"port": node.admin_port},
            "network": {
                **FAST["network"],
                "transport": "websocket",
                "peers": [seed_entry],
                "ice_host_addresses": ["127.0.0.1"],
            },
        }
        init_home(node.home, keypair=keypair, genesis=swarm.genesis, config_overrides=overrides)
        homes.append(node)
    swarm.nodes.extend(homes)
    return homes


@pytest.fixture
async def open_network(tmp_path: Path) -> AsyncIterator[Swarm]:
    swarm = Swarm.create(tmp_path / "net", COUNCIL, transport="websocket", config_overrides=FAST)
    add_community(swarm, swarm.nodes[0], COMMUNITY)
    try:
        await swarm.start()
        yield swarm
    finally:
        await swarm.stop()


def grant(swarm: Swarm, member: int) -> Op:
    council = Author(swarm.nodes[member].keypair, swarm.genesis.network_id)
    someone = crypto.KeyPair.from_seed(os.urandom(32)).public_key
    return council.grant(someone, swarm.genesis.signup_reward)


async def wait_peers(swarm: Swarm, nodes: list[NodeHome], at_least: int) -> None:
    async def connected() -> bool:
        statuses = await swarm.statuses(nodes)
        return all(s is not None and len(s["peers"]) >= at_least for s in statuses)

    await wait_until(connected, WAIT_S, f"every node to see {at_least} peers")


async def wait_final(swarm: Swarm, nodes: list[NodeHome], op: Op) -> None:
    async def final() -> bool:
        views = [await swarm.try_get(node, f"/v1/ops/{op.op_id.hex()}") for node in nodes]
        return all(view is not None and view.get("status") == "final" for view in views)

    await wait_until(final, WAIT_S, f"op {op.op_id.hex()[:12]} final on {len(nodes)} nodes")


async def test_community_nodes_with_one_seed_connect_finalize_and_survive_the_seed(
    open_network: Swarm,
) -> None:
    started = time.monotonic()
    swarm = open_network
    seed, community = swarm.nodes[0], swarm.nodes[COUNCIL:]
    await wait_peers(swarm, swarm.nodes, 3)
    first = grant(swarm, 1)
    status, body = await swarm.submit(swarm.nodes[1], first)
    assert status == 202, body
    await wait_final(swarm, swarm.nodes, first)
    # Every community node learned peers beyond its seed, and its links' bytes are counted.
    for status in await swarm.statuses(community):
        assert status is not None
        assert {p["node_id"] for p in status["peers"]} - {seed.node_id}
        assert status["bytes_received"]["gossip"] + status["bytes_received"]["bundle"] > 0
        by_peer = {p["node_id"]: p for p in status["peers"]}
        if seed.node_id in by_peer:  # the link that brought the op in carried bytes
            assert sum(by_peer[seed.node_id]["bytes_received"].values()) > 0
    assert swarm.session is not None
    totals = await nodes_bytes(swarm.session, community)
    assert all(node["sent"] > 0 and node["received"] > 0 for node in totals)
    # The seed stops; new ops still become final on every community node.
    await swarm.stop_node(seed)
    running = swarm.nodes[1:]
    for member in (2, 3):
        later = grant(swarm, member)
        status, body = await swarm.submit(swarm.nodes[member], later)
        assert status == 202, body
        await wait_final(swarm, running, later)
    for status in await swarm.statuses(community):
        assert status is not None and len(status["peers"]) >= 2
    assert time.monotonic() - started < 2 * WAIT_S
