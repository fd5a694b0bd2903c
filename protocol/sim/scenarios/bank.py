"""Healthy-network scenarios: signups, random transfers and hype burns."""

from __future__ import annotations

from ..swarm import (
    FactoryBuilder,
    ScenarioParams,
    Swarm,
    build_swarm,
    honest_cores,
)
from .common import (
    bank_workload,
    finish,
    fund_accounts,
    signups,
    times,
)
from .report import RunResult


def scenario_signup(seed: int, params: ScenarioParams, factory: FactoryBuilder | None) -> RunResult:
    swarm = build_swarm("signup", seed, params, factory)
    signups(swarm, params.ops, 0.0, params.workload_s)
    swarm.healed_at = params.workload_s
    swarm.sim.run_until(params.workload_s)
    return finish(swarm)


def scenario_transfers(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    swarm = build_swarm("transfers", seed, params, factory)
    bank_workload(swarm, params)
    swarm.healed_at = params.workload_s
    swarm.sim.run_until(params.workload_s)
    return finish(swarm)


HYPE_TARGETS = ("launch-party", "bugfix-bounty", "mascot")


def scenario_hype_burns(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    swarm = build_swarm("hype-burns", seed, params, factory)
    workload, rng = swarm.workload, swarm.sim.rng
    fund_end = params.workload_s / 4
    fund_accounts(swarm, params.accounts, fund_end)

    def one() -> None:
        if workload.wallets:
            wallet = rng.choice(workload.wallets)
            workload.burn(wallet, rng.choice(HYPE_TARGETS))

    for when in times(rng, params.ops, fund_end, params.workload_s):
        swarm.sim.at(when, one)
    swarm.healed_at = params.workload_s
    swarm.extra_checks.append(_check_tallies_agree)
    swarm.sim.run_until(params.workload_s)
    return finish(swarm)


def _check_tallies_agree(swarm: Swarm) -> list[str]:
    tallies = set()
    for _index, core in honest_cores(swarm):
        tallies.add(tuple(sorted(core.ledger.state.burn_tallies.items())))
    return ["hype tallies differ between nodes"] if len(tallies) > 1 else []
