"""`swarmd council` against four real council daemons on loopback: a quorum of quiesce votes
from three members' nodes makes every node refuse client ops; a quorum of resume votes brings
them back (issue 12's quiesce -> resume round trip, driven by the CLI as an operator would)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from swarmd.node.cli.devnet import NodeHome, Swarm, wait_until
from swarmd.protocol import crypto
from swarmd.protocol.wallet import Author

pytestmark = pytest.mark.integration

FAST = {
    "consensus": {"checkpoint_interval_s": 0.2},
    "sync": {"delta_sync_interval_s": 0.5},
    "log": {"level": "info"},
}
WAIT_S = 30.0
CLI = "import sys; from swarmd.node.cli import main; sys.exit(main())"


@pytest.fixture
async def swarm(tmp_path: Path) -> AsyncIterator[Swarm]:
    swarm = Swarm.create(tmp_path / "swarm", 4, transport="websocket", config_overrides=FAST)
    try:
        await swarm.start()
        await swarm.wait_connected()
        yield swarm
    finally:
        await swarm.stop()


async def council_cli(*argv: str) -> tuple[int, dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-P", "-c", CLI, "--json", "council", *argv, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    value: dict[str, Any] = json.loads(out)
    return process.returncode, value


def stranger(swarm: Swarm) -> Author:
    return Author(crypto.KeyPair.from_seed(os.urandom(32)), swarm.genesis.network_id)


async def claim_status(
    swarm: Swarm, node: NodeHome, funder: Author | None = None
) -> tuple[int, Any]:
    """A client op (a fresh account's claim, so no chain to keep) submitted to `node`. State
    costs credits: with a `funder` (a council member) the claim receives its signup grant."""
    claimant = stranger(swarm)
    if funder is None:
        return await swarm.submit(node, claimant.claim("nobody"))
    grant = funder.grant(claimant.key, swarm.genesis.signup_reward)
    status, body = await swarm.submit(node, grant)
    assert status == 202, body
    return await swarm.submit(node, claimant.claim("nobody", deps=[grant.op_id]))


async def vote(swarm: Swarm, action: str, members: list[NodeHome]) -> None:
    for node in members:
        code, result = await council_cli(action, "--home", str(node.home), "--reason", "drill")
        assert code == 0, result
        assert result["kind"] == f"council.{action}"


@pytest.mark.gate("s1-play-read-only")
@pytest.mark.gate("sn-play-quiescence")
async def test_council_quiesce_and_resume_from_three_members(swarm: Swarm) -> None:
    async with asyncio.timeout(4 * WAIT_S):
        await vote(swarm, "quiesce", swarm.nodes[:3])

        async def refused_everywhere() -> bool:
            statuses = await swarm.statuses()
            return all(s is not None and s["mode"] == "quiesced" for s in statuses)

        await wait_until(refused_everywhere, WAIT_S, "every node quiesced by the council")
        for node in swarm.nodes:
            status, body = await claim_status(swarm, node)
            assert (status, body["code"]) == (503, "quiesced"), node.index
        code, council = await council_cli("status", "--home", str(swarm.nodes[3].home))
        assert code == 0 and council["questions"][0]["decided"] is True

        await vote(swarm, "resume", swarm.nodes[:3])

        async def normal_everywhere() -> bool:
            statuses = await swarm.statuses()
            return all(s is not None and s["mode"] == "normal" for s in statuses)

        await wait_until(normal_everywhere, WAIT_S, "every node resumed by the council")
        funder = Author(swarm.nodes[3].keypair, swarm.genesis.network_id)  # it cast no vote
        for node in swarm.nodes:
            status, body = await claim_status(swarm, node, funder)
            assert status == 202, (node.index, body)
        await swarm.wait_converged(min_height=1)
