"""`swarmd bench onboarding` end to end, small: one tester on a one-node swarm (its council
alone binds a handle), through the command line as BENCHMARKS.md runs it."""

from __future__ import annotations

import json

import pytest

from swarmd.node.cli import main

pytestmark = pytest.mark.integration


def test_the_onboarding_bench_prints_its_figures(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--json", "bench", "onboarding", "--runs", "1", "--nodes", "1"]
    argv += ["--load-ops-per-s", "5", "--pow-bits", "8"]

    assert main(argv) == 0

    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1])
    assert result["runs"] == 1 and result["ui_inputs"] >= 7
    assert 0 < result["onboarding_s_p50"] <= result["onboarding_s_p95"] < 60
    assert 0 < result["ui_ms_p50"] <= result["ui_ms_p95"]
    assert 0 < result["notification_ms_p95"] < 10_000
    assert result["load_ops_sent"] >= 1
