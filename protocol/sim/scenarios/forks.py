"""Double-spend scenarios: forks resolved by arbitration, and forks settled by finality across
a partition.
"""

from __future__ import annotations

from ..simulator import FaultKind
from ..swarm import (
    FactoryBuilder,
    ScenarioParams,
    Swarm,
    build_swarm,
    honest_cores,
)
from .common import (
    bank_workload,
    council_split,
    finish,
    times,
)
from .report import RunResult


def scenario_fork(seed: int, params: ScenarioParams, factory: FactoryBuilder | None) -> RunResult:
    """An author double-spends: two transfers at the same seq sent to different nodes."""
    swarm = build_swarm("fork", seed, params, factory)
    sim, workload = swarm.sim, swarm.workload
    fund_end = bank_workload(swarm, params)
    forks = 2
    for when in times(sim.rng, forks, fund_end + 0.5, params.workload_s):

        def double_spend() -> None:
            if len(workload.wallets) < 3:
                return
            cheat, *payees = sim.rng.sample(workload.wallets, 3)
            nodes = sim.rng.sample(range(params.nodes), 2)
            sim.record_fault(FaultKind.FORK, tuple(nodes))
            workload.fork(cheat, (payees[0], payees[1]), (nodes[0], nodes[1]))

        sim.at(when, double_spend)
    swarm.extra_checks.append(_check_forks_resolved)
    swarm.healed_at = params.workload_s
    sim.run_until(params.workload_s)
    return finish(swarm)


def _check_forks_resolved(swarm: Swarm) -> list[str]:
    """Of each forked pair exactly one op is applied, the same one on every node."""
    failures = []
    pairs: dict[tuple[bytes, int], list[bytes]] = {}
    for op_id in sorted(swarm.workload.expect_excluded):
        op = swarm.workload.submissions[op_id].op
        pairs.setdefault((op.author, op.seq), []).append(op_id)
    for index, core in honest_cores(swarm):
        for pair in pairs.values():
            applied = [i for i in pair if core.ledger.status_of(i)[0] == "applied"]
            if len(applied) > 1:
                failures.append(f"node {index}: both sides of a fork applied")
    return failures


def scenario_fork_finality(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    """An author double-spends into the two sides of a partition; after the heal exactly one
    side's op is final everywhere and the other is rejected with a *_final code everywhere."""
    swarm = build_swarm("fork-finality", seed, params, factory)
    sim, workload = swarm.sim, swarm.workload
    fund_end = bank_workload(swarm, params)
    side_a, side_b = council_split(swarm, quorum_side=sim.rng.random() < 0.5)
    split_at = fund_end + 0.5
    heal_at = params.workload_s + sim.rng.uniform(0.0, 1.0)
    sim.at(split_at, lambda: sim.partition(side_a, side_b))
    sim.at(heal_at, sim.heal)
    for when in times(sim.rng, 2, split_at + 0.2, params.workload_s):

        def double_spend() -> None:
            if len(workload.wallets) < 3:
                return
            cheat, *payees = sim.rng.sample(workload.wallets, 3)
            nodes = (sim.rng.choice(side_a), sim.rng.choice(side_b))
            sim.record_fault(FaultKind.FORK, nodes)
            workload.fork(cheat, (payees[0], payees[1]), nodes)

        sim.at(when, double_spend)
    swarm.extra_checks.append(_check_forks_resolved)
    swarm.extra_checks.append(_check_forks_final)
    swarm.healed_at = heal_at
    sim.run_until(heal_at)
    return finish(swarm)


def _check_forks_final(swarm: Swarm) -> list[str]:
    """One side of each fork is final on every node, the other rejected for good everywhere."""
    pairs: dict[tuple[bytes, int], list[bytes]] = {}
    for op_id in sorted(swarm.workload.expect_excluded):
        op = swarm.workload.submissions[op_id].op
        pairs.setdefault((op.author, op.seq), []).append(op_id)
    winners: set[bytes] = set()
    failures = []
    for index, core in honest_cores(swarm):
        for pair in pairs.values():
            final = [i for i in pair if core.ledger.is_final(i)]
            losers = [core.ledger.status_of(i) for i in pair if i not in final]
            if len(final) != 1 or any(
                status not in ("rejected", "excluded") or not code.endswith("_final")
                for status, code in losers
            ):
                failures.append(f"node {index}: fork not settled by finality: {losers}")
            winners.update(final)
    if len(winners) > len(pairs):
        failures.append("different sides of a fork are final on different nodes")
    return failures[:3]
