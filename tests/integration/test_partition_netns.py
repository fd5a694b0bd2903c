"""A real partition: four `swarmd run` processes over WebRTC, each in its own network namespace.

The lab (see `netns.py`): namespaces n0..n3 joined by veths to a Linux bridge in a fourth
namespace, addresses SUBNET.1..4. Each node's API binds its lab address, ICE gathers only that
address, and node i dials the nodes below it. Node 3's bridge port is taken down: the three
others (quorum 3 of 4) must keep finalizing, node 3 must finalize nothing new (while still
acknowledging client writes); after the port comes back up node 3 must reach the same final
height and state root, and every acknowledged op, on either side, must be final everywhere.

Skipped only when namespaces cannot be created (not root, no `ip`, kernel refuses).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from swarmd.node.cli.home import init_home
from swarmd.protocol import crypto
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.ops import Op
from swarmd.protocol.wallet import Author

from .netns import NetnsClient, NetnsLab, exec_prefix, netns_unavailable_reason

pytestmark = pytest.mark.integration

NODES = 4
ISOLATED = 3
#: Every node sits in its own namespace, so all of them use the same ports.
API_PORT = 7000
ADMIN_PORT = 7001
#: Short consensus and sync intervals so that a checkpoint takes well under a second, and a
#: short reconnect backoff and connect budget so that a healed link is re-dialed within a
#: second or two instead of the production default's 10 s backoff ceiling.
FAST: dict[str, dict[str, Any]] = {
    "consensus": {"checkpoint_interval_s": 0.2},
    "sync": {"delta_sync_interval_s": 0.5},
    "log": {"level": "info"},
}
FAST_NETWORK = {"connect_timeout_s": 3.0, "reconnect_backoff_max_s": 1.0}
#: Bounds. The whole test must stay well under ~90 s; each wait has its own budget.
TEST_TIMEOUT_S = 90.0
START_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 30.0
FINAL_TIMEOUT_S = 20.0
#: The heartbeat declares a silent peer dead after 2 s (limits.HEARTBEAT_DEAD_AFTER_S).
LINK_LOSS_TIMEOUT_S = 10.0
#: How long node 3 may take to rejoin and catch up once the link is back.
CATCH_UP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
#: Polling interval: the nodes are other processes in other namespaces, so there is no event
#: to await; each poll is one HTTP request per node from inside its namespace.
POLL_INTERVAL_S = 0.1
#: Checkpoints the majority must finalize while node 3 is cut off.
HEIGHTS_WHILE_PARTITIONED = 2

RUN_NODE = "import sys; from swarmd.node.cli import main; sys.exit(main())"


@dataclass
class LabNode:
    index: int
    home: Path
    keypair: crypto.KeyPair
    address: str
    namespace: str
    client: NetnsClient | None = None
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{API_PORT}"


@dataclass
class LabSwarm:
    lab: NetnsLab
    genesis: Genesis
    nodes: list[LabNode]
    acknowledged: list[bytes] = field(default_factory=list)

    async def status(self, node: LabNode) -> Any:
        assert node.client is not None
        return await node.client.get_json(node.url + "/v1/status")

    async def statuses(self, nodes: list[LabNode] | None = None) -> list[Any]:
        targets = self.nodes if nodes is None else nodes
        return list(await asyncio.gather(*(self.status(node) for node in targets)))

    async def op_status(self, node: LabNode, op_id: bytes) -> str | None:
        assert node.client is not None
        view = await node.client.get_json(f"{node.url}/v1/ops/{op_id.hex()}")
        return None if view is None else view.get("status")

    async def submit(self, node: LabNode, op: Op) -> None:
        """Submit and require an acknowledgement (202); the op id joins `acknowledged`."""
        assert node.client is not None
        result = await node.client.request(
            "POST",
            node.url + "/v1/ops",
            body=op.envelope,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert result.status == 202, (node.index, result)
        self.acknowledged.append(op.op_id)


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL_S)


def node_overrides(node: LabNode, nodes: list[LabNode]) -> dict[str, Any]:
    # As in devnet: each node dials the lower indexes, so the mesh forms without glare and a
    # node that lost its links re-dials the lower ones and is re-dialed by the higher ones.
    peers = [
        {"url": other.url, "node_id": other.keypair.public_key}
        for other in nodes
        if other.index < node.index
    ]
    overrides: dict[str, Any] = {
        "api": {"host": node.address, "port": API_PORT},
        "admin": {"port": ADMIN_PORT},
        "network": {
            "transport": "webrtc",
            "peers": peers,
            "ice_host_addresses": [node.address],
            **FAST_NETWORK,
        },
    }
    overrides.update(FAST)
    return overrides


def create_homes(lab: NetnsLab, directory: Path) -> tuple[Genesis, list[LabNode]]:
    keypairs = [crypto.KeyPair.from_seed(os.urandom(32)) for _ in range(NODES)]
    genesis = Genesis.create(
        "netns-partition", [k.public_key for k in keypairs], created_at=int(time.time())
    )
    nodes = [
        LabNode(i, directory / f"node-{i}", keypairs[i], lab.address(i), lab.namespace(i))
        for i in range(NODES)
    ]
    for node in nodes:
        init_home(
            node.home,
            keypair=node.keypair,
            genesis=genesis,
            config_overrides=node_overrides(node, nodes),
        )
    return genesis, nodes


async def start_node(node: LabNode) -> None:
    log_file = open(node.home / "node.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        # `ip netns exec` execs the command after entering the namespace, so the process we
        # hold is the daemon itself.
        node.process = await asyncio.create_subprocess_exec(
            *exec_prefix(node.namespace),
            sys.executable,
            "-P",
            "-c",
            RUN_NODE,
            "run",
            "--home",
            str(node.home),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
            cwd=node.home,
        )
    finally:
        log_file.close()


async def stop_node(node: LabNode) -> None:
    process = node.process
    if process is None or process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()


def log_tails(nodes: list[LabNode], lines: int = 15) -> str:
    parts = []
    for node in nodes:
        path = node.home / "node.log"
        if path.exists():
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- node {node.index} ({path})\n" + "\n".join(tail))
    return "\n".join(parts)


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(f"network namespaces unavailable: {reason}")
    network = NetnsLab(NODES)
    network.create()
    try:
        yield network
    finally:
        network.remove()
        assert network.leftovers() == []


@pytest.fixture
async def lab_swarm(lab: NetnsLab, tmp_path: Path) -> AsyncIterator[LabSwarm]:
    genesis, nodes = create_homes(lab, tmp_path)
    swarm = LabSwarm(lab, genesis, nodes)
    try:
        for node in nodes:
            node.client = await NetnsClient.start(node.namespace)
            await start_node(node)
        yield swarm
    except BaseException:
        print(log_tails(nodes), file=sys.stderr)
        raise
    finally:
        # Daemons and clients first: a namespace with live processes outlives `ip netns del`.
        await asyncio.gather(*(stop_node(node) for node in nodes))
        for node in nodes:
            if node.client is not None:
                await node.client.stop()


def council(swarm: LabSwarm, index: int) -> Author:
    return Author(swarm.nodes[index].keypair, swarm.genesis.network_id)


def new_author(swarm: LabSwarm) -> Author:
    return Author(crypto.KeyPair.from_seed(os.urandom(32)), swarm.genesis.network_id)


async def wait_connected(swarm: LabSwarm) -> None:
    async def connected() -> bool:
        statuses = await swarm.statuses()
        return all(
            s is not None
            and len(s["peers"]) == NODES - 1
            and {peer["transport"] for peer in s["peers"]} == {"webrtc"}
            and {peer["candidate_pair"] for peer in s["peers"]} == {"host/host"}
            for s in statuses
        )

    await wait_until(connected, CONNECT_TIMEOUT_S, "a full WebRTC mesh across namespaces")


async def wait_link_lost(swarm: LabSwarm, isolated: LabNode) -> None:
    """The heartbeat notices the cut: the isolated node has no peer, the others lost it."""
    isolated_id = crypto.account_id_text(isolated.keypair.public_key)

    async def lost() -> bool:
        statuses = await swarm.statuses()
        if any(s is None for s in statuses):
            return False
        return all(
            (s["peers"] == [])
            if node is isolated
            else (isolated_id not in {peer["node_id"] for peer in s["peers"]})
            for node, s in zip(swarm.nodes, statuses, strict=True)
        )

    await wait_until(lost, LINK_LOSS_TIMEOUT_S, f"peers to notice node {isolated.index} is cut off")


async def wait_final(swarm: LabSwarm, nodes: list[LabNode], op_ids: list[bytes]) -> None:
    async def final() -> bool:
        for node in nodes:
            for op_id in op_ids:
                if await swarm.op_status(node, op_id) != "final":
                    return False
        return True

    where = [node.index for node in nodes]
    await wait_until(final, FINAL_TIMEOUT_S, f"{len(op_ids)} op(s) final on nodes {where}")


async def wait_converged(swarm: LabSwarm, min_height: int, timeout_s: float) -> list[Any]:
    """Every node at one final height >= min_height, one state root, nothing unfinalized."""
    result: list[Any] = []

    async def converged() -> bool:
        statuses = await swarm.statuses()
        if any(s is None for s in statuses):
            return False
        result[:] = statuses
        return (
            len({s["final_height"] for s in statuses}) == 1
            and len({s["state_root"] for s in statuses}) == 1
            and statuses[0]["final_height"] >= min_height
            and sum(s["unfinalized_ops"] + s["pending_ops"] for s in statuses) == 0
        )

    await wait_until(converged, timeout_s, f"all nodes converged at height >= {min_height}")
    return result


async def test_isolated_node_stalls_majority_finalizes_and_heal_converges(
    lab_swarm: LabSwarm,
) -> None:
    swarm, lab = lab_swarm, lab_swarm.lab
    nodes = swarm.nodes
    majority = [node for node in nodes if node.index != ISOLATED]
    isolated = nodes[ISOLATED]
    members = [council(swarm, i) for i in range(NODES)]
    async with asyncio.timeout(TEST_TIMEOUT_S):
        await wait_until(
            lambda: _all_answer(swarm), START_TIMEOUT_S, "every node's API in its namespace"
        )
        await wait_connected(swarm)
        before = members[0].grant(new_author(swarm).key, 100)
        await swarm.submit(nodes[0], before)
        statuses = await wait_converged(swarm, 1, FINAL_TIMEOUT_S)
        height_before = statuses[0]["final_height"]

        lab.isolate(ISOLATED)
        await wait_link_lost(swarm, isolated)
        # An op in flight when the cable was cut may still finalize on the isolated node, so
        # its frozen height is read once the majority has finalized something without it.
        first = members[1].grant(new_author(swarm).key, 100)
        await swarm.submit(nodes[1], first)
        await wait_final(swarm, majority, [first.op_id])
        frozen = (await swarm.status(isolated))["final_height"]
        # The isolated node still acknowledges client writes; they must survive the partition.
        stranded = [members[ISOLATED].grant(new_author(swarm).key, 100) for _ in range(2)]
        for op in stranded:
            await swarm.submit(isolated, op)
        majority_ops = []
        for step in range(HEIGHTS_WHILE_PARTITIONED):
            op = members[step % len(majority)].grant(new_author(swarm).key, 100)
            await swarm.submit(majority[step % len(majority)], op)
            await wait_final(swarm, majority, [op.op_id])
            majority_ops.append(op.op_id)
        majority_heights = [s["final_height"] for s in await swarm.statuses(majority)]
        isolated_status = await swarm.status(isolated)

        assert min(majority_heights) >= frozen + HEIGHTS_WHILE_PARTITIONED, majority_heights
        assert isolated_status["final_height"] == frozen
        for op_id in [first.op_id, *majority_ops]:
            assert await swarm.op_status(isolated, op_id) != "final"
        for op in stranded:
            assert await swarm.op_status(isolated, op.op_id) in ("applied", "pending")
            assert await swarm.op_status(nodes[0], op.op_id) is None

        lab.heal(ISOLATED)
        healed_at = time.monotonic()
        statuses = await wait_converged(swarm, max(majority_heights) + 1, CATCH_UP_TIMEOUT_S)
        catch_up_s = time.monotonic() - healed_at
        await wait_final(swarm, nodes, swarm.acknowledged)
        await wait_connected(swarm)

    assert height_before >= 1
    assert len({s["state_root"] for s in statuses}) == 1
    assert len(swarm.acknowledged) == 1 + 1 + len(stranded) + HEIGHTS_WHILE_PARTITIONED
    print(
        f"partition: majority finalized heights {frozen}..{min(majority_heights)} without "
        f"node {ISOLATED}; caught up at height {statuses[0]['final_height']} "
        f"{catch_up_s:.1f} s after heal"
    )


async def _all_answer(swarm: LabSwarm) -> bool:
    return all(status is not None for status in await swarm.statuses())
