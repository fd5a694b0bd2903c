"""Every simulator scenario over 100 seeds, replay determinism and failure reporting.

A failing seed's assertion message carries the one command that replays it exactly:
`swarmd chaos --scenario NAME --seed S --json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from swarmd.protocol.node_core import NodeCore
from swarmd.protocol.sim import scenarios
from swarmd.protocol.sim.scenarios import NetworkConfig, ScenarioParams

#: Seeds per scenario in CI (the design asks for at least 100).
CI_SEEDS = range(1, 101)

#: Seeds that fail today because of a known, open bug, each with its reason. They are not
#: hidden: `test_known_failures_still_fail` runs each one and fails as soon as it passes, so a
#: fix must remove it from here.
KNOWN_FAILURES: dict[tuple[str, int], str] = {}


@pytest.mark.slow
@pytest.mark.gate("s0-reconciliation")
@pytest.mark.parametrize("name", scenarios.scenario_names())
def test_scenario_over_100_seeds(name: str) -> None:
    seeds = [seed for seed in CI_SEEDS if (name, seed) not in KNOWN_FAILURES]
    results = [scenarios.run_scenario(name, seed) for seed in seeds]
    failing = [scenarios.format_failure(result) for result in results if not result.ok]
    assert not failing, "\n".join(failing)
    summary = scenarios.summarize(name, results)
    assert summary["seeds"] == len(seeds) >= len(CI_SEEDS) - 1
    assert summary["ops_acked"] > 0
    assert summary["sync_sessions"] > 0
    assert len({result.trace_hash for result in results}) == len(results)
    # Every scenario reaches council finality (a checkpoint bundle verified offline).
    assert all(result.final_height >= 1 for result in results)
    assert summary["finality_latency_s"]["p50"] is not None


def test_known_failures_still_fail() -> None:
    # One test over the list (not parametrized: an empty list would show as a skipped test).
    for name, seed in sorted(KNOWN_FAILURES):
        result = scenarios.run_scenario(name, seed)
        assert not result.ok, f"{name} seed {seed} passes now: remove it from KNOWN_FAILURES"


def test_fault_scenarios_report_mttd_and_mttr() -> None:
    for name in ("partition-heal", "crash-restart", "fork", "flood"):
        result = scenarios.run_scenario(name, 7)
        assert result.ok, scenarios.format_failure(result)
        assert result.mttd_s, f"{name}: no fault was detected"
        assert all(value >= 0 for value in result.mttd_s)
        assert result.mttr_s is not None and result.mttr_s >= 0


def test_same_seed_same_trace_different_seed_different_trace() -> None:
    first = scenarios.run_scenario("partition-heal", 11)
    again = scenarios.run_scenario("partition-heal", 11)
    other = scenarios.run_scenario("partition-heal", 12)
    assert first.trace_hash == again.trace_hash
    assert first.summary() == again.summary()
    assert first.trace_hash != other.trace_hash


def _trace_in_subprocess(name: str, seed: int, hash_seed: str) -> str:
    code = (
        "from swarmd.protocol.sim import scenarios;"
        f"print(scenarios.run_scenario({name!r}, {seed}).trace_hash)"
    )
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    trace = done.stdout.strip()
    assert len(trace) == 64, (done.stdout, done.stderr)
    return trace


@pytest.mark.parametrize("name", ["fork", "crash-restart"])
def test_replay_is_identical_across_processes(name: str) -> None:
    """The replay command runs in a fresh process with another hash seed: same trace."""
    here = scenarios.run_scenario(name, 5).trace_hash
    assert _trace_in_subprocess(name, 5, "1") == here
    assert _trace_in_subprocess(name, 5, "2") == here


def test_a_failing_seed_prints_its_replay_command() -> None:
    # A network that loses 99% of frames cannot converge within 2 virtual seconds.
    params = ScenarioParams(
        ops=6, accounts=3, converge_within_s=2.0, network=NetworkConfig(loss=0.99)
    )
    result = scenarios.run_scenario("signup", 42, params)
    assert not result.ok
    assert any("failed reconciliation" in failure for failure in result.failures)
    message = scenarios.format_failure(result)
    assert "swarmd chaos --scenario signup --seed 42 --json" in message
    summary = scenarios.summarize("signup", [result])
    assert summary["failures"] == [
        {
            "scenario": "signup",
            "seed": 42,
            "reasons": result.failures,
            "replay": "swarmd chaos --scenario signup --seed 42 --json",
        }
    ]
    json.dumps(summary)


def test_unknown_scenario_is_a_typed_error() -> None:
    with pytest.raises(scenarios.SimulationError):
        scenarios.run_scenario("no-such-scenario", 1)


def test_percentiles() -> None:
    assert scenarios.percentiles([]) == {"p50": None, "p95": None, "max": None}
    values = [float(v) for v in range(1, 101)]
    assert scenarios.percentiles(values) == {"p50": 51.0, "p95": 96.0, "max": 100.0}


#: The council-finality scenarios of the issue "Council finality: Tendermint checkpoints,
#: signed bundles, conflict arbitration and handles".
FINALITY_SCENARIOS = (
    "council-crash",
    "council-partition",
    "equivocating-member",
    "handle-race",
    "fork-finality",
)


def test_finality_scenarios_are_registered() -> None:
    for name in FINALITY_SCENARIOS:
        assert name in scenarios.scenario_names()


#: The council control plane scenarios of issue 12 (docs/PROTOCOL.md, "Council control plane").
CONTROL_SCENARIOS = ("council-quiesce", "claims-paused")


def test_control_scenarios_are_registered() -> None:
    for name in CONTROL_SCENARIOS:
        assert name in scenarios.scenario_names()


def test_equivocating_member_leaves_verifiable_evidence_on_every_honest_node() -> None:
    result = scenarios.run_scenario("equivocating-member", 3)
    assert result.ok, scenarios.format_failure(result)
    assert result.evidence_recorded >= 4  # at least one piece on each of the 4 honest nodes
    assert result.mttd_s  # EquivocationRecorded detects the fault


@pytest.mark.gate("s1-conflicts-72h")
def test_handle_race_reports_the_age_of_the_oldest_conflict() -> None:
    result = scenarios.run_scenario("handle-race", 4)
    assert result.ok, scenarios.format_failure(result)
    assert result.open_conflict_age_s is not None and result.open_conflict_age_s > 0
    summary = scenarios.summarize("handle-race", [result])
    assert summary["open_conflict_age_s"]["max"] == round(result.open_conflict_age_s, 6)


@pytest.mark.gate("s2-quorum-endorsements")
def test_finality_recovers_after_a_council_partition() -> None:
    result = scenarios.run_scenario("council-partition", 2)
    assert result.ok, scenarios.format_failure(result)
    assert result.finality_recovered_s is not None
    assert (
        result.finality_recovered_s <= scenarios.SCENARIOS["council-partition"][1].converge_within_s
    )
    assert set(result.summary()["finality_latency_s"]) == {"p50", "p95", "max"}


def test_the_finality_checkers_can_fail() -> None:
    """Bundles checked against another council, and a second checkpoint at one height."""
    swarm = scenarios.build_swarm("test", 1, scenarios.ScenarioParams())
    swarm.workload.grant(swarm.workload.new_account(), node=0)
    swarm.sim.run_until(5.0)
    core = swarm.sim.nodes[0].core
    assert isinstance(core, NodeCore) and core.final_height >= 1
    assert scenarios.check_finality(swarm) == []
    strangers = [scenarios.node_keypair(100 + i) for i in range(4)]
    foreign = dataclasses.replace(swarm, genesis=scenarios.sim_genesis(strangers))
    assert any("does not verify" in f for f in scenarios.check_finality(foreign))
    first = swarm.finality.finalizations[0]
    swarm.finality.finalizations.append(dataclasses.replace(first, checkpoint_id=bytes(32), node=1))
    failures = scenarios.check_finality(swarm)
    assert any(f"different checkpoints at height {first.height}" in f for f in failures)
