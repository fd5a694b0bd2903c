"""`swarmd chaos` end to end through the CLI entry point."""

from __future__ import annotations

import json

import pytest

from swarmd.node.cli import chaos, main
from swarmd.node.cli.common import EXIT_OK, EXIT_USAGE
from swarmd.protocol.sim import scenarios


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = main(["chaos", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, value = run_json(capsys, "--list")
    assert code == EXIT_OK
    assert value["scenarios"] == scenarios.scenario_names()
    for name in ("signup", "transfers", "hype-burns", "ledger-replay", "partition-heal"):
        assert name in value["scenarios"]
    for name in ("crash-restart", "flood", "fork"):
        assert name in value["scenarios"]


def test_one_seed_replays_the_library_run(capsys: pytest.CaptureFixture[str]) -> None:
    code, value = run_json(capsys, "--scenario", "fork", "--seed", "3")
    assert code == EXIT_OK
    expected = scenarios.summarize("fork", [scenarios.run_scenario("fork", 3)])
    assert value["trace_digest"] == expected["trace_digest"]
    assert value["scenario"] == "fork"
    assert value["seeds"] == 1 and value["first_seed"] == 3
    assert value["failures"] == []
    for key in ("mttd_s", "mttr_s"):
        assert set(value[key]) == {"p50", "p95", "max"}
    assert 0.0 <= value["syncs_within_cadence"] <= 1.0
    assert value["runtime_s"] >= 0


@pytest.mark.slow
def test_all_scenarios_with_a_few_seeds(capsys: pytest.CaptureFixture[str]) -> None:
    code, value = run_json(capsys, "--scenario", "all", "--seeds", "2", "--seed", "10")
    assert code == EXIT_OK
    assert value["scenario"] == "all"
    assert value["runs"] == 2 * len(scenarios.scenario_names())
    assert set(value["scenarios"]) == set(scenarios.scenario_names())
    assert value["mttr_s"]["max"] is not None


def test_unknown_scenario_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, value = run_json(capsys, "--scenario", "nope")
    assert code == EXIT_USAGE
    assert value["code"] == "unknown_scenario"


def test_bad_seed_count_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, value = run_json(capsys, "--scenario", "fork", "--seeds", "0")
    assert code == EXIT_USAGE
    assert value["code"] == "usage"


def test_text_report_lists_failures_with_replay() -> None:
    result = scenarios.RunResult("fork", 9, failures=["failed reconciliation: x"])
    report = scenarios.summarize("fork", [result])
    report.update(runs=1, runtime_s=0.1)
    text = chaos._as_text(report)
    assert "swarmd chaos --scenario fork --seed 9 --json" in text
