"""Product telemetry on a real daemon (driver, SQLite store, HTTP API on loopback): after an
activity burst, GET /v1/telemetry and the swarmd_telemetry_* gauges of /metrics show it, the
figures survive a restart (stored with their checkpoints), and `swarmd telemetry` prints them."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest

from swarmd.node.cli.main import main
from swarmd.protocol.limits import TELEMETRY_DAYS_QUERY_MAX

from .test_api import FAST, WAIT_S, Node, close_node, make_node, open_node

__all__ = ["make_node"]  # the fixture, used by name

GAUGES = (
    "swarmd_telemetry_new_accounts",
    "swarmd_telemetry_daily_active_accounts",
    "swarmd_telemetry_monthly_active_accounts",
    "swarmd_telemetry_retention_ratio",
    "swarmd_telemetry_credits_velocity",
    "swarmd_telemetry_transfer_volume_30d",
    "swarmd_telemetry_circulating_supply",
    "swarmd_telemetry_ops",
    "swarmd_telemetry_burned_credits",
    "swarmd_telemetry_since_height",
    "swarmd_telemetry_day",
)


async def _gauges(node: Node) -> dict[str, float]:
    text = await (await node.api.get("/metrics")).text()
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in GAUGES:
            values[name] = float(value)
    return values


async def _burst(node: Node) -> int:
    """Three signups, a transfer and a burn: 5 final ops by 3 authors (the council and two of
    the new accounts, each with its first op); returns the ops submitted."""
    people = [node.new_author() for _ in range(3)]
    grants = [node.council.grant(person.key, 100) for person in people]
    ops = [
        *grants,
        people[0].transfer(people[1].key, 30, receive=[grants[0].op_id]),
        people[1].burn(5, "post:1", receive=[grants[1].op_id]),
    ]
    for op in ops:
        status, body = await node.submit(op)
        assert status == 202 and body["status"] == "accepted", body
    return len(ops)


async def _final_telemetry(node: Node, ops: int) -> dict[str, Any]:
    async with asyncio.timeout(WAIT_S):
        while True:
            status, report = await node.get("/v1/telemetry?days=1")
            assert status == 200
            if report["days"] and report["days"][-1]["ops"] >= ops:
                return dict(report)
            await asyncio.sleep(0.05)


@pytest.mark.gate("s2-retention")
@pytest.mark.gate("s2-credits-velocity")
async def test_a_burst_moves_the_telemetry_and_its_gauges(
    make_node: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    node = await make_node()
    before = await _gauges(node)
    assert set(before) == set(GAUGES)  # registered before any checkpoint
    assert before["swarmd_telemetry_daily_active_accounts"] == 0.0
    ops = await _burst(node)
    report = await _final_telemetry(node, ops)
    day = report["days"][-1]
    assert report["since_height"] == 1 and report["latest_height"] >= 1
    assert report["missing_heights"] == 0
    assert (day["ops"], day["new_accounts"], day["daily_active"]) == (5, 3, 3)
    assert day["monthly_active"] == 3 and day["retention"] is None
    assert (day["supply"], day["transfer_volume_30d"], day["burns"]) == (295, 30, {"post:1": 5})
    assert day["velocity"] == 30 / 295
    after = await _gauges(node)
    assert after["swarmd_telemetry_daily_active_accounts"] == 3.0
    assert after["swarmd_telemetry_new_accounts"] == 3.0
    assert after["swarmd_telemetry_circulating_supply"] == 295.0
    assert after["swarmd_telemetry_credits_velocity"] == pytest.approx(30 / 295)
    assert after["swarmd_telemetry_burned_credits"] == 5.0
    assert math.isnan(after["swarmd_telemetry_retention_ratio"])  # no earlier window yet
    assert after["swarmd_telemetry_since_height"] == 1.0 and after["swarmd_telemetry_day"] > 0
    url = str(node.api.make_url("")).rstrip("/")
    code = await asyncio.to_thread(main, ["telemetry", "--node", url, "--days", "1", "--json"])
    assert code == 0
    printed = capsys.readouterr().out.splitlines()[-1]  # (the daemon logs to stdout too)
    assert json.loads(printed)["days"] == report["days"]
    code = await asyncio.to_thread(main, ["telemetry", "--node", url, "--days", "1"])
    assert code == 0
    assert f"{day['date']}       5     3      3      3" in capsys.readouterr().out


async def test_the_telemetry_survives_a_restart(make_node: Any) -> None:
    node = await make_node()
    ops = await _burst(node)
    report = await _final_telemetry(node, ops)
    await close_node(node)
    restarted = await open_node(node.home)
    try:
        status, again = await restarted.get("/v1/telemetry?days=1")
        assert status == 200 and again == report
    finally:
        await close_node(restarted)


async def test_days_out_of_bounds_get_a_typed_error(make_node: Any) -> None:
    node = await make_node()
    for days in ("0", str(TELEMETRY_DAYS_QUERY_MAX + 1), "x", "-1"):
        status, body = await node.get(f"/v1/telemetry?days={days}")
        assert (status, body["code"]) == (400, "bad_days")
    status, body = await node.get(f"/v1/telemetry?days={TELEMETRY_DAYS_QUERY_MAX}")
    assert status == 200 and body["days"] == []


async def test_participation_counts_survive_a_restart_from_a_snapshot(make_node: Any) -> None:
    """Restored from a snapshot, the node replays only the bundles above it; the participation
    stored with the last checkpoint keeps the counts of every height."""
    consensus = {**FAST["consensus"], "snapshot_interval": 2}
    node = await make_node(consensus=consensus)
    core = node.daemon.core
    for _ in range(3):
        height = core.final_height
        ops = await _burst(node)
        async with asyncio.timeout(WAIT_S):
            while core.final_height == height or core.ledger.unfinalized_count():
                await asyncio.sleep(0.02)
    assert ops == 5
    (before,) = node.daemon.core.node_status().council
    assert before.signed >= 3 and before.missed == 0
    await close_node(node)
    restarted = await open_node(node.home)
    try:
        assert restarted.daemon.restore_info["snapshot_height"]  # restored from a snapshot
        status = restarted.daemon.core.node_status()
        (after,) = status.council
        assert after.signed == before.signed == status.final_height
        assert after.last_signed_height == before.last_signed_height
        assert after.last_signed_at is not None
        text = await (await restarted.api.get("/metrics")).text()
        assert f'swarmd_council_heights_signed{{member="{restarted.daemon.node_id_text}"}} ' in text
    finally:
        await close_node(restarted)
