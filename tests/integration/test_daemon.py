"""Real `swarmd run` processes on loopback: finality on every node over WebSocket and WebRTC,
kill -9 and restart without losing an acknowledged op, read-only and quiesce, a TURN relay."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from swarmd.node.cli.devnet import Coturn, NodeHome, Swarm, start_coturn, wait_until
from swarmd.protocol import crypto
from swarmd.protocol.ops import Op
from swarmd.protocol.wallet import Author

pytestmark = pytest.mark.integration

#: Short intervals so that a test finalizes in well under a second per checkpoint.
FAST = {
    "consensus": {"checkpoint_interval_s": 0.2},
    "sync": {"delta_sync_interval_s": 0.5},
    "log": {"level": "info"},
}
TEST_TIMEOUT_S = 60.0

SwarmFactory = Callable[..., Awaitable[Swarm]]


@pytest.fixture
async def make_swarm(tmp_path: Path) -> AsyncIterator[SwarmFactory]:
    swarms: list[Swarm] = []

    async def factory(
        count: int = 4, transport: str = "websocket", turn: Coturn | None = None
    ) -> Swarm:
        swarm = Swarm.create(
            tmp_path / f"swarm-{len(swarms)}",
            count,
            transport=transport,
            turn=turn,
            config_overrides=FAST,
        )
        swarms.append(swarm)
        await swarm.start()
        return swarm

    yield factory
    for swarm in swarms:
        await swarm.stop()


def new_author(swarm: Swarm) -> Author:
    return Author(crypto.KeyPair.from_seed(os.urandom(32)), swarm.genesis.network_id)


def council(swarm: Swarm, index: int) -> Author:
    return Author(swarm.nodes[index].keypair, swarm.genesis.network_id)


async def submit_ok(swarm: Swarm, node: NodeHome, op: Op) -> None:
    status, body = await swarm.submit(node, op)
    assert status == 202, body


async def assert_final_everywhere(swarm: Swarm, op_ids: list[bytes]) -> None:
    statuses = await swarm.wait_converged(min_height=1)
    assert len({s["state_root"] for s in statuses}) == 1
    for node in swarm.nodes:
        for op_id in op_ids:
            view = await swarm.get(node, f"/v1/ops/{op_id.hex()}")
            assert view["status"] == "final", (node.index, view)


@pytest.mark.parametrize("transport", ["websocket", "webrtc"])
async def test_transfer_finalizes_on_every_node(make_swarm: SwarmFactory, transport: str) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        swarm = await make_swarm(4, transport)
        await swarm.wait_connected()
        alice, bob = new_author(swarm), new_author(swarm)
        grant = council(swarm, 1).grant(alice.key, 100)
        await submit_ok(swarm, swarm.nodes[1], grant)
        await swarm.wait_op(swarm.nodes[3], grant.op_id, ("applied", "final"))
        transfer = alice.transfer(bob.key, 40, receive=[grant.op_id])
        await submit_ok(swarm, swarm.nodes[3], transfer)

        await assert_final_everywhere(swarm, [grant.op_id, transfer.op_id])
        for node in swarm.nodes:
            view = await swarm.get(node, f"/v1/accounts/{bob.keypair.account_id}")
            assert view["balance"] == 40
            status = await swarm.get(node, "/v1/status")
            assert {peer["transport"] for peer in status["peers"]} == {transport}


async def test_kill_9_and_restart_loses_no_acknowledged_op(make_swarm: SwarmFactory) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        swarm = await make_swarm(4)
        await swarm.wait_connected()
        victim = swarm.nodes[3]
        acknowledged: list[bytes] = []
        members = [council(swarm, i) for i in range(4)]

        async def load(member: int, node: NodeHome, count: int) -> None:
            for _ in range(count):
                op = members[member].grant(new_author(swarm).key, 100)
                status, _ = await swarm.submit(node, op)
                if status == 202:
                    acknowledged.append(op.op_id)

        # The victim acknowledges its own writes right up to the kill.
        await load(3, victim, 10)
        steady = asyncio.create_task(load(0, swarm.nodes[0], 40))
        swarm.kill(victim)
        assert await swarm.wait_exited(victim) == -9
        await steady
        await load(1, swarm.nodes[1], 10)

        await swarm.start_node(victim)
        await swarm.wait_connected()
        await assert_final_everywhere(swarm, acknowledged)
        assert len(acknowledged) == 60


async def admin_mode(swarm: Swarm, node: NodeHome, mode: str, reason: str) -> Any:
    token = (node.home / "admin.cookie").read_text().strip()
    assert swarm.session is not None
    async with swarm.session.post(
        f"http://127.0.0.1:{node.admin_port}/v1/admin/mode",
        json={"mode": mode, "reason": reason},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status == 200
        return await response.json()


async def swarmd_cli(*argv: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-P",
        "-c",
        "import sys; from swarmd.node.cli import main; sys.exit(main())",
        "--json",
        *argv,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, out
    result: dict[str, Any] = json.loads(out)
    return result


async def test_read_only_and_quiesce(make_swarm: SwarmFactory) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        swarm = await make_swarm(4)
        await swarm.wait_connected()
        node0, node1 = swarm.nodes[0], swarm.nodes[1]
        member = council(swarm, 1)

        result = await swarmd_cli("admin", "read-only", "--home", str(node0.home), "--reason", "r")
        assert result["mode"] == "read-only"
        # Refused ops are signed by a throwaway Author, so `member`'s chain stays gap-free.
        status, body = await swarm.submit(node0, council(swarm, 3).grant(new_author(swarm).key, 1))
        assert (status, body["code"], body["reason"]) == (503, "read_only", "r")
        grant = member.grant(new_author(swarm).key, 100)
        await submit_ok(swarm, node1, grant)
        # Reads and sync go on on the read-only node.
        await assert_final_everywhere(swarm, [grant.op_id])

        await admin_mode(swarm, node0, "quiesced", "drill")
        status, body = await swarm.submit(node0, council(swarm, 3).grant(new_author(swarm).key, 1))
        assert (status, body["code"]) == (503, "quiesced")
        assert (await swarm.get(node0, "/v1/status"))["mode"] == "quiesced"
        # Three of four members still decide without the quiesced one.
        grant = member.grant(new_author(swarm).key, 100)
        await submit_ok(swarm, node1, grant)

        async def final_on_others() -> bool:
            views = [await swarm.get(n, f"/v1/ops/{grant.op_id.hex()}") for n in swarm.nodes[1:]]
            return all(view.get("status") == "final" for view in views)

        await wait_until(final_on_others, 30, "finality without the quiesced node")
        result = await swarmd_cli("admin", "resume", "--home", str(node0.home))
        assert result["mode"] == "normal"
        await assert_final_everywhere(swarm, [grant.op_id])


TURNSERVER = shutil.which("turnserver")
needs_coturn = pytest.mark.skipif(
    TURNSERVER is None, reason="coturn's `turnserver` is not installed (CI installs it)"
)


@pytest.fixture
async def coturn(tmp_path: Path) -> AsyncIterator[Coturn]:
    relay = await start_coturn(tmp_path / "coturn")
    yield relay
    await relay.stop()


@needs_coturn
async def test_relay_only_swarm_through_coturn(coturn: Coturn, make_swarm: SwarmFactory) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        swarm = await make_swarm(3, "webrtc", coturn)
        await swarm.wait_connected()
        grant = council(swarm, 0).grant(new_author(swarm).key, 100)
        await submit_ok(swarm, swarm.nodes[2], grant)

        await assert_final_everywhere(swarm, [grant.op_id])
        for node in swarm.nodes:
            status = await swarm.get(node, "/v1/status")
            assert {peer["candidate_pair"] for peer in status["peers"]} == {"relay/relay"}


@needs_coturn
async def test_wrong_turn_credentials_are_reported(
    coturn: Coturn, make_swarm: SwarmFactory
) -> None:
    wrong = Coturn(coturn.process, coturn.url, "not-the-secret", coturn.output, coturn.drain)
    async with asyncio.timeout(TEST_TIMEOUT_S):
        swarm = await make_swarm(2, "webrtc", wrong)
        dialer = swarm.nodes[1]

        async def reported() -> bool:
            text = (dialer.home / "node.log").read_text(errors="replace")
            return any(
                '"dial_failed"' in line and "no_ice_candidates" in line and "credentials" in line
                for line in text.splitlines()
            )

        await wait_until(reported, 30, "the dial_failed log line")
        assert (await swarm.get(dialer, "/v1/status"))["peers"] == []
