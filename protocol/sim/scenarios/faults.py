"""Fault scenarios of the ops layer: a wiped store rebuilt by sync, a partition and its heal,
crashes and restarts.
"""

from __future__ import annotations

import functools

from ..swarm import (
    FactoryBuilder,
    ScenarioParams,
    build_swarm,
    crash_with_retry,
)
from .common import (
    bank_workload,
    finish,
)
from .report import RunResult


def scenario_ledger_replay(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    """A node loses its whole store and rebuilds the ledger from its peers by sync."""
    swarm = build_swarm("ledger-replay", seed, params, factory)
    sim = swarm.sim
    bank_workload(swarm, params)
    victim = sim.rng.randrange(params.nodes)
    wipe_at = params.workload_s + 2.0
    restart_at = wipe_at + sim.rng.uniform(0.5, 4.0)
    sim.at(wipe_at, lambda: sim.crash(victim, wipe=True))
    sim.at(restart_at, lambda: sim.restart(victim))
    swarm.healed_at = restart_at
    sim.run_until(restart_at)
    return finish(swarm)


def scenario_partition_heal(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    swarm = build_swarm("partition-heal", seed, params, factory)
    sim = swarm.sim
    fund_end = bank_workload(swarm, params)
    order = list(range(params.nodes))
    sim.rng.shuffle(order)
    cut = sim.rng.randint(1, params.nodes // 2)
    side_a, side_b = sorted(order[:cut]), sorted(order[cut:])
    split_at = sim.rng.uniform(fund_end, params.workload_s / 2)
    heal_at = params.workload_s + sim.rng.uniform(0.0, 2.0)
    sim.at(split_at, lambda: sim.partition(side_a, side_b))
    sim.at(heal_at, sim.heal)
    swarm.healed_at = heal_at
    sim.run_until(heal_at)
    return finish(swarm)


def scenario_crash_restart(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    swarm = build_swarm("crash-restart", seed, params, factory)
    sim = swarm.sim
    fund_end = bank_workload(swarm, params)
    victims = sim.rng.sample(range(params.nodes), 2 if params.nodes >= 5 else 1)
    restart_last = 0.0
    for victim in victims:
        crash_at = sim.rng.uniform(fund_end, params.workload_s)
        restart_at = crash_at + sim.rng.uniform(0.2, 3.0)
        restart_last = max(restart_last, restart_at)
        sim.at(crash_at, functools.partial(crash_with_retry, swarm, victim))
        sim.at(restart_at, functools.partial(sim.restart, victim))
    swarm.healed_at = max(restart_last, params.workload_s)
    sim.run_until(swarm.healed_at)
    return finish(swarm)
