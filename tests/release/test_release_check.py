"""`swarmd release check`: the release gate runs its steps and fails when one fails (no mocks:
the failing step is a real chaos run of a scenario that does not exist)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swarmd.node.cli import main
from swarmd.node.cli.release_check import BENCH_ROWS
from swarmd.protocol.sim import scenarios

ROOT = Path(__file__).resolve().parents[2]


def release_check(capsys: pytest.CaptureFixture[str], out: Path, *argv: str) -> tuple[int, dict]:
    code = main(["release", "check", "--json", "--root", str(ROOT), "--out", str(out), *argv])
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text(encoding="utf-8")) == printed
    return code, printed


def test_a_failing_step_fails_the_release(tmp_path: Path, capsys) -> None:
    code, report = release_check(
        capsys,
        tmp_path / "report.json",
        "--seeds",
        "2",
        "--only",
        "chaos:",
        "--scenario",
        "signup",
        "--scenario",
        "no-such-scenario",
    )
    assert code == 1 and report["ok"] is False
    assert report["failed"] == ["chaos:no-such-scenario"]
    good, bad = report["steps"]
    assert (good["name"], good["ok"], good["detail"]["runs"]) == ("chaos:signup", True, 2)
    assert bad["ok"] is False
    assert (
        bad["detail"]["code"] == "unknown_scenario" and "no-such-scenario" in bad["detail"]["error"]
    )
    assert all(step["seconds"] >= 0 for step in report["steps"])


def test_a_selection_of_no_step_is_not_a_pass(tmp_path: Path, capsys) -> None:
    code, report = release_check(capsys, tmp_path / "report.json", "--only", "nothing")
    assert code == 1 and report["ok"] is False and report["steps"] == []


@pytest.mark.slow
@pytest.mark.gate("sn-rc-chaos-and-drills")
@pytest.mark.gate("sn-ci-rollback-verification")
def test_the_quick_release_check_runs_every_step_and_passes(tmp_path: Path, capsys) -> None:
    code, report = release_check(capsys, tmp_path / "report.json", "--quick", "--seeds", "2")
    failed = [step for step in report["steps"] if not step["ok"]]
    assert report["failed"] == [], json.dumps(failed, indent=1)[:6000]  # the failures first
    assert code == 0 and report["ok"] is True and report["quick"] is True
    names = [step["name"] for step in report["steps"]]
    assert names == [
        *(f"chaos:{name}" for name in scenarios.scenario_names()),
        "drills",
        "rollback-plays",
        *(f"bench:{name}" for name, _ in BENCH_ROWS),
        "chaos-trend",
        "status-doc",
    ]
    steps = {step["name"]: step for step in report["steps"]}
    assert steps["chaos:fork"]["detail"]["runs"] == 2
    drills = steps["drills"]["detail"]
    assert drills["passed"] == drills["tests"] >= len(drills["test_ids"]) >= 4
    assert any("test_recovery.py" in test for test in drills["test_ids"])
    plays = steps["rollback-plays"]["detail"]
    assert plays["passed"] == plays["tests"] >= len(plays["test_ids"]) >= 4
    assert any(test.startswith("tests/integration/") for test in plays["test_ids"])
    assert any("test_rollback.py" in test for test in plays["test_ids"])
    assert steps["chaos-trend"]["detail"]["output"]["regressions"] == []
    assert steps["status-doc"]["detail"]["output"]["up_to_date"] is True
