"""Product telemetry on a real 4-node swarm (separate daemons on loopback, WebSocket): after a
burst of activity spread over the nodes, every node's GET /v1/telemetry is the same, counted
on the council-agreed checkpoint times, and its swarmd_telemetry_* gauges agree."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from swarmd.node.cli.devnet import Swarm, wait_until
from swarmd.protocol import crypto
from swarmd.protocol.wallet import Author

pytestmark = pytest.mark.integration

FAST = {"consensus": {"checkpoint_interval_s": 0.2}, "sync": {"delta_sync_interval_s": 0.5}}
TEST_TIMEOUT_S = 90.0


@pytest.fixture
async def swarm(tmp_path: Path) -> AsyncIterator[Swarm]:
    created = Swarm.create(tmp_path / "swarm", 4, transport="websocket", config_overrides=FAST)
    await created.start()
    try:
        yield created
    finally:
        await created.stop()


def _gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} missing")


@pytest.mark.gate("s2-retention")
@pytest.mark.gate("s2-credits-velocity")
async def test_every_node_of_a_real_swarm_reports_the_same_telemetry(swarm: Swarm) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        await swarm.wait_connected()
        network = swarm.genesis.network_id
        people = [Author(crypto.KeyPair.from_seed(os.urandom(32)), network) for _ in range(4)]
        for index, (node, person) in enumerate(zip(swarm.nodes, people, strict=True)):
            member = Author(node.keypair, network)
            grant = member.grant(person.key, 100)
            status, body = await swarm.submit(node, grant)
            assert status == 202, body
            await swarm.wait_op(node, grant.op_id, ("applied", "final"))
            spend = person.transfer(people[(index + 1) % 4].key, 10 + index, receive=[grant.op_id])
            status, body = await swarm.submit(node, spend)
            assert status == 202, body
            await swarm.wait_op(node, spend.op_id, ("final",))
        statuses = await swarm.wait_converged(min_height=1)
        height = statuses[0]["final_height"]
        reports: list[dict[str, Any]] = []

        async def stored() -> bool:  # (the checkpoint's write lands just after it is final)
            reports[:] = [await swarm.get(node, "/v1/telemetry?days=2") for node in swarm.nodes]
            return all(report["latest_height"] == height for report in reports)

        await wait_until(stored, 10.0, "telemetry stored at the converged height")
        assert all(report["missing_heights"] == 0 for report in reports)
        assert all(report["days"] == reports[0]["days"] for report in reports)
        totals = reports[0]["days"]
        assert sum(day["ops"] for day in totals) == 8
        assert totals[-1]["monthly_active"] == 8  # four members and four people
        assert totals[-1]["transfer_volume_30d"] == 10 + 11 + 12 + 13
        assert totals[-1]["supply"] == 400
        gauges = []
        for node in swarm.nodes:
            assert swarm.session is not None
            async with swarm.session.get(node.url + "/metrics") as response:
                text = await response.text()
            gauges.append(_gauge(text, "swarmd_telemetry_credits_velocity"))
        assert gauges == [46 / 400] * 4
