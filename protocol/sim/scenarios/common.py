"""What every scenario shares: running from the last heal until convergence and checking
(`finish`), and the background client load on the simulation's calendar.
"""

from __future__ import annotations

import random

from ... import consensus
from ..checkers import (
    check_finality,
    check_swarm,
    converged,
    describe_divergence,
    describe_finality,
    finality_settled,
    fragments_dropped,
    mttd,
    sync_sessions_lost,
)
from ..errors import SimulationError
from ..swarm import (
    ScenarioParams,
    Swarm,
    honest_live,
)
from .report import RunResult

#: Convergence is probed this often after the last heal; it is the resolution of MTTR.
PROBE_INTERVAL_S = 0.1


def finish(swarm: Swarm) -> RunResult:
    """Run from the last heal until convergence (or the bound), then check everything."""
    sim = swarm.sim
    result = RunResult(swarm.name, swarm.seed)
    deadline = swarm.healed_at + swarm.params.converge_within_s
    converged_at: list[float] = []

    def probe() -> None:
        if converged(swarm):
            converged_at.append(sim.now)
        elif sim.now + PROBE_INTERVAL_S <= deadline:
            sim.at(sim.now + PROBE_INTERVAL_S, probe)

    final_at: list[float] = []

    def probe_finality() -> None:
        if converged_at and finality_settled(swarm):
            final_at.append(sim.now)
        elif sim.now + PROBE_INTERVAL_S <= deadline:
            sim.at(sim.now + PROBE_INTERVAL_S, probe_finality)

    sim.at(swarm.healed_at, probe)
    sim.at(swarm.healed_at, probe_finality)
    try:
        sim.run_until(deadline, stop=lambda: bool(converged_at) and bool(final_at))
    except SimulationError as exc:
        result.failures.append(f"simulator: {exc.message}")
    if converged_at and sim.faults:
        result.mttr_s = converged_at[0] - swarm.healed_at
    if final_at:
        result.finality_recovered_s = final_at[0] - swarm.healed_at
    elif converged_at:
        result.failures.append(
            f"liveness: honest nodes not all final on the same state "
            f"{swarm.params.converge_within_s}s after the last heal ({describe_finality(swarm)})"
        )
    result.fragments_dropped = fragments_dropped(swarm)
    if not converged_at:
        result.failures.append(
            f"failed reconciliation: honest nodes disagree {swarm.params.converge_within_s}s "
            f"after the last heal at {swarm.healed_at:.3f}s ({describe_divergence(swarm)})"
        )
        if result.fragments_dropped:
            result.failures.append(
                f"{result.fragments_dropped} fragmented messages dropped without recovery"
            )
    result.failures.extend(check_swarm(swarm))
    result.failures.extend(check_finality(swarm))
    for check in swarm.extra_checks:
        result.failures.extend(check(swarm))
    result.failures.extend(f"simulator: {error}" for error in sim.errors[:5])
    result.mttd_s = mttd(sim)
    result.trace_hash = sim.trace_hash()
    result.sync_sessions = sim.sync.sessions + sync_sessions_lost(swarm)
    result.syncs_within_cadence = sim.sync.within_cadence
    result.ops_submitted = len(swarm.workload.submissions)
    result.ops_acked = len(swarm.workload.acked)
    result.frames_delivered = sim.frames_delivered
    result.virtual_s = sim.now
    honest = set(range(len(sim.nodes))) - swarm.dishonest
    log = swarm.finality
    result.finality_latency_s = [r.latency_s for r in log.finalizations if r.node in honest]
    result.final_height = min(
        (sim.nodes[i].core.ledger.final_height for i in honest_live(swarm)),  # type: ignore[union-attr]
        default=0,
    )
    result.evidence_recorded = sum(len(log.evidence.get(i, [])) for i in sorted(honest))
    return result


# --- the background workload and the council split ------------------------------------------


def times(rng: random.Random, count: int, start: float, end: float) -> list[float]:
    return sorted(rng.uniform(start, end) for _ in range(count))


def signups(swarm: Swarm, count: int, start: float, end: float) -> None:
    workload = swarm.workload
    for when in times(swarm.sim.rng, count, start, end):
        swarm.sim.at(when, lambda: workload.grant(workload.new_account()))


def random_transfers(swarm: Swarm, count: int, start: float, end: float) -> None:
    workload, rng = swarm.workload, swarm.sim.rng

    def one() -> None:
        if len(workload.wallets) < 2:
            return
        payer, payee = rng.sample(workload.wallets, 2)
        workload.transfer(payer, payee)

    for when in times(rng, count, start, end):
        swarm.sim.at(when, one)


def fund_accounts(swarm: Swarm, accounts: int, end: float) -> None:
    """Grants to `accounts` new accounts during [0, end]."""
    signups(swarm, accounts, 0.0, end)


def bank_workload(swarm: Swarm, params: ScenarioParams) -> float:
    """The common background load: fund the accounts in the first quarter of the workload,
    then random transfers until its end. Returns when funding ends."""
    fund_end = params.workload_s / 4
    fund_accounts(swarm, params.accounts, fund_end)
    random_transfers(swarm, params.ops, fund_end, params.workload_s)
    return fund_end


def council_split(swarm: Swarm, quorum_side: bool) -> tuple[list[int], list[int]]:
    """Split the council in two (one side with a quorum when `quorum_side`, else neither);
    each full node joins a random side."""
    params, rng = swarm.params, swarm.sim.rng
    members = list(range(params.council))
    rng.shuffle(members)
    quorum = consensus.quorum_size(params.council)
    cut = quorum if quorum_side else params.council // 2
    side_a, side_b = members[:cut], members[cut:]
    for full in range(params.council, params.nodes):
        (side_a if rng.random() < 0.5 else side_b).append(full)
    return sorted(side_a), sorted(side_b)
