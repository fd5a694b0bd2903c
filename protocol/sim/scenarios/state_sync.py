"""The state-sync scenario: a node falls out of bundle range and restores from a snapshot."""

from __future__ import annotations

from ...genesis import Genesis
from ...node_core import (
    NodeCoreConfig,
    StateSyncFinished,
)
from ..simulator import CoreFactory
from ..swarm import (
    FactoryBuilder,
    ScenarioParams,
    Swarm,
    build_swarm,
    node_core_factory,
)
from .common import (
    bank_workload,
    finish,
    signups,
)
from .report import RunResult

# --- state sync ------------------------------------------------------------------------------

#: The state-sync scenario's core settings: bundles are trimmed after this many heights and a
#: snapshot is made every STATE_SYNC_SNAPSHOT_INTERVAL heights, so that a node away for a few
#: seconds of fast checkpoints falls out of bundle range and must fetch a snapshot.
STATE_SYNC_BUNDLES_KEPT = 2
STATE_SYNC_SNAPSHOT_INTERVAL = 2
STATE_SYNC_CHECKPOINT_INTERVAL_S = 0.25
#: The late joiner is cut off from everyone until the others are STATE_SYNC_LAG_HEIGHTS
#: ahead (checked every STATE_SYNC_POLL_S, at most STATE_SYNC_AWAY_S_MAX), with one signup
#: per check meanwhile, sent to a node of the others, so that heights keep coming; then
#: signups after it returns (new ops it must finalize together with the others). (A signup
#: sent to the cut-off node would block the granting member's chain everywhere else: its
#: next grants chain on an op only that node holds. Fixed-time signups to any node left the
#: others two heights ahead after the whole STATE_SYNC_AWAY_S_MAX on 6 seeds in 1,000.)
STATE_SYNC_LAG_HEIGHTS = STATE_SYNC_BUNDLES_KEPT + 2
STATE_SYNC_POLL_S = 0.25
STATE_SYNC_AWAY_S_MAX = 10.0
STATE_SYNC_SIGNUPS_AFTER = 4


def state_sync_factory(genesis: Genesis) -> CoreFactory:
    config = NodeCoreConfig(
        bundles_kept=STATE_SYNC_BUNDLES_KEPT,
        snapshot_interval=STATE_SYNC_SNAPSHOT_INTERVAL,
        checkpoint_interval_s=STATE_SYNC_CHECKPOINT_INTERVAL_S,
    )
    return node_core_factory(genesis, config)


def scenario_state_sync(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    """A node (council member or not) is cut off while the others finalize more heights than
    they keep bundles for; back, it restores the state from a snapshot fetched from its peers
    (state sync), then finalizes new ops together with them."""
    swarm = build_swarm("state-sync", seed, params, factory or state_sync_factory)
    sim = swarm.sim
    fund_end = bank_workload(swarm, params)
    late = sim.rng.randrange(params.nodes)
    others = [i for i in range(params.nodes) if i != late]
    away_at = sim.rng.uniform(fund_end, params.workload_s / 2)
    lag: list[int] = []
    synced: list[int] = []
    back: list[float] = []

    def leave() -> None:
        sim.partition([late], others)

    def poll() -> None:
        heights = [sim.nodes[i].core.ledger.final_height for i in range(params.nodes)]  # type: ignore[union-attr]
        behind = max(heights) - heights[late]
        if behind >= STATE_SYNC_LAG_HEIGHTS or sim.now >= away_at + STATE_SYNC_AWAY_S_MAX:
            lag.append(behind)
            back.append(sim.now)
            sim.heal()
            signups(swarm, STATE_SYNC_SIGNUPS_AFTER, sim.now + 1.0, sim.now + 2.0)
        else:
            swarm.workload.grant(swarm.workload.new_account(), sim.rng.choice(others))
            sim.at(sim.now + STATE_SYNC_POLL_S, poll)

    def hook(node: int, event: object) -> None:
        if node == late and isinstance(event, StateSyncFinished):
            synced.append(event.height)

    sim.event_hooks.append(hook)
    sim.at(away_at, leave)
    sim.at(away_at + STATE_SYNC_POLL_S, poll)
    sim.run_until(away_at)
    while not back:
        sim.run_until(sim.now + STATE_SYNC_POLL_S)
    # The checks start once the signups after the return are in.
    swarm.healed_at = max(back[0] + 2.0, params.workload_s)

    def check(swarm: Swarm) -> list[str]:
        if not lag or lag[0] <= STATE_SYNC_BUNDLES_KEPT:
            return [f"node {late} fell only {lag} heights behind: state sync not exercised"]
        if not synced:
            return [f"node {late} was {lag[0]} heights behind and never finished a state sync"]
        return []

    swarm.extra_checks.append(check)
    sim.run_until(swarm.healed_at)
    return finish(swarm)


#: Each scenario with the network it runs on by default. Loss, duplication and jitter are on in
