"""Simulator scenarios: the registry, and every name the chaos CLI, the tests and the
benchmarks use (one module per scenario family beside this one).

Every scenario is a function ``(seed, params, factory) -> RunResult``: it builds a small swarm
(4 council nodes and 1 full node by default), drives a client workload and faults on virtual
time, waits for the swarm to converge after the last fault heals, and runs every checker
(checkers.py; docs/parts/simulator.md explains each). A failing run names the one command that
replays it exactly (`replay_command`).

MTTD is fault injection -> first detection (a lost peer, a misbehaviour report, a sync that
found missing ops, an exclusion); MTTR is heal -> convergence; both in virtual seconds.
"""

from __future__ import annotations

from collections.abc import Callable

from ..checkers import check_finality, converged
from ..errors import SimulationError
from ..network import NetworkConfig
from ..swarm import (
    FactoryBuilder,
    ScenarioParams,
    Swarm,
    build_swarm,
    node_core_factory,
    node_keypair,
    sim_genesis,
)
from .bank import scenario_hype_burns, scenario_signup, scenario_transfers
from .control import scenario_claims_paused, scenario_council_quiesce
from .council import (
    scenario_council_crash,
    scenario_council_partition,
    scenario_equivocating_member,
)
from .divergence import scenario_root_divergence
from .faults import scenario_crash_restart, scenario_ledger_replay, scenario_partition_heal
from .flood import scenario_flood
from .forks import scenario_fork, scenario_fork_finality
from .handles import scenario_handle_race
from .misbehaving import scenario_misbehaving_peer
from .opennet import scenario_eclipse, scenario_open_network
from .report import RunResult, format_failure, percentiles, replay_command, summarize
from .rollback import scenario_network_rollback
from .state_sync import scenario_state_sync

__all__ = [
    "SCENARIOS",
    "FactoryBuilder",
    "NetworkConfig",
    "RunResult",
    "Scenario",
    "ScenarioParams",
    "SimulationError",
    "Swarm",
    "build_swarm",
    "check_finality",
    "converged",
    "format_failure",
    "node_core_factory",
    "node_keypair",
    "percentiles",
    "replay_command",
    "run_scenario",
    "scenario_names",
    "sim_genesis",
    "summarize",
]

Scenario = Callable[[int, ScenarioParams, FactoryBuilder | None], RunResult]


#: Each scenario with the network it runs on by default. Loss, duplication and jitter are on in
#: the fault scenarios; clock skew everywhere but signup.
SCENARIOS: dict[str, tuple[Scenario, ScenarioParams]] = {
    "signup": (scenario_signup, ScenarioParams(ops=24)),
    "transfers": (
        scenario_transfers,
        ScenarioParams(network=NetworkConfig(loss=0.01, duplicate=0.01, clock_skew_s_max=0.2)),
    ),
    "hype-burns": (
        scenario_hype_burns,
        ScenarioParams(network=NetworkConfig(clock_skew_s_max=0.2)),
    ),
    "ledger-replay": (
        scenario_ledger_replay,
        ScenarioParams(network=NetworkConfig(clock_skew_s_max=0.2)),
    ),
    "partition-heal": (
        scenario_partition_heal,
        ScenarioParams(
            network=NetworkConfig(loss=0.02, duplicate=0.02, jitter_s=0.05, clock_skew_s_max=0.2)
        ),
    ),
    "crash-restart": (
        scenario_crash_restart,
        ScenarioParams(network=NetworkConfig(commit_delay_s=0.005, clock_skew_s_max=0.2)),
    ),
    "flood": (scenario_flood, ScenarioParams(network=NetworkConfig(clock_skew_s_max=0.2))),
    "fork": (
        scenario_fork,
        ScenarioParams(network=NetworkConfig(loss=0.01, clock_skew_s_max=0.2)),
    ),
    "council-crash": (
        scenario_council_crash,
        ScenarioParams(
            workload_s=8.0, network=NetworkConfig(commit_delay_s=0.005, clock_skew_s_max=0.2)
        ),
    ),
    "council-partition": (
        scenario_council_partition,
        ScenarioParams(network=NetworkConfig(loss=0.01, jitter_s=0.05, clock_skew_s_max=0.2)),
    ),
    "equivocating-member": (
        scenario_equivocating_member,
        ScenarioParams(network=NetworkConfig(clock_skew_s_max=0.2)),
    ),
    "handle-race": (
        scenario_handle_race,
        ScenarioParams(network=NetworkConfig(loss=0.01, clock_skew_s_max=0.2)),
    ),
    "fork-finality": (
        scenario_fork_finality,
        ScenarioParams(network=NetworkConfig(loss=0.01, clock_skew_s_max=0.2)),
    ),
    "council-quiesce": (
        scenario_council_quiesce,
        ScenarioParams(network=NetworkConfig(loss=0.01, jitter_s=0.05, clock_skew_s_max=0.2)),
    ),
    "claims-paused": (
        scenario_claims_paused,
        ScenarioParams(network=NetworkConfig(loss=0.01, jitter_s=0.05, clock_skew_s_max=0.2)),
    ),
    "state-sync": (
        scenario_state_sync,
        ScenarioParams(
            ops=24, workload_s=6.0, network=NetworkConfig(loss=0.01, clock_skew_s_max=0.2)
        ),
    ),
    "network-rollback": (
        scenario_network_rollback,
        ScenarioParams(ops=24, network=NetworkConfig(loss=0.01, clock_skew_s_max=0.2)),
    ),
    # netguard (issue 16): a peer sending bad frames is banned and its reconnects refused.
    "misbehaving-peer": (
        scenario_misbehaving_peer,
        ScenarioParams(network=NetworkConfig(loss=0.01, clock_skew_s_max=0.2)),
    ),
    "root-divergence": (
        scenario_root_divergence,
        ScenarioParams(
            ops=24, workload_s=6.0, network=NetworkConfig(loss=0.01, clock_skew_s_max=0.2)
        ),
    ),
    # mesh (issue 16): bounded-degree meshes built through address books. CI sizes; the
    # documented large run is `swarmd chaos --scenario open-network --council 7 --full-nodes 40`
    # (docs/OPERATIONS.md, BENCHMARKS.md).
    "open-network": (
        scenario_open_network,
        ScenarioParams(
            council=4,
            full_nodes=8,
            ops=16,
            workload_s=5.0,
            network=NetworkConfig(loss=0.01, clock_skew_s_max=0.2),
        ),
    ),
    "eclipse": (
        scenario_eclipse,
        ScenarioParams(full_nodes=4, network=NetworkConfig(loss=0.01, clock_skew_s_max=0.2)),
    ),
}


def scenario_names() -> list[str]:
    return list(SCENARIOS)


def run_scenario(
    name: str,
    seed: int,
    params: ScenarioParams | None = None,
    factory: FactoryBuilder | None = None,
) -> RunResult:
    """Run one scenario for one seed. An exception from a core is a failure, not a crash."""
    if name not in SCENARIOS:
        raise SimulationError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    function, defaults = SCENARIOS[name]
    try:
        return function(seed, params or defaults, factory)
    except SimulationError:
        raise
    except Exception as exc:  # a bug in a core: report it with the seed that shows it
        result = RunResult(name, seed)
        result.failures.append(f"exception: {type(exc).__name__}: {exc}")
        return result
