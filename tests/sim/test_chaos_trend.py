"""`swarmd chaos --record FILE` / `--trend FILE`: the release trend of MTTD, MTTR and finality,
failing on a synthetic regression (> 20 % rise against the previous comparable record)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from swarmd.node.cli import chaos_trend, main
from swarmd.node.cli.common import EXIT_FAILED, EXIT_OK


def record(version: str, mttr_p50: float, *, seeds: int = 10) -> dict[str, Any]:
    figures = {"p50": mttr_p50, "p95": mttr_p50 * 2, "max": mttr_p50 * 3}
    return {
        "version": version,
        "commit": "0" * 40,
        "seeds": seeds,
        "first_seed": 1,
        "failures": 0,
        "scenarios": {
            "partition-heal": {
                "mttd_s": {"p50": 0.5, "p95": 0.6, "max": 0.7},
                "mttr_s": figures,
                "finality_latency_s": {"p50": 0.6, "p95": 1.0, "max": 2.0},
                "failures": 0,
            }
        },
    }


def write(path: Path, *records: dict[str, Any]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def trend_json(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, Any]:
    code = main(["chaos", "--trend", str(path), "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.gate("sn-mttd-mttr-trend")
def test_a_rise_over_20_percent_fails_the_trend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = tmp_path / "history.jsonl"
    write(history, record("0.1.0", 1.0), record("0.2.0", 1.1))
    code, value = trend_json(capsys, history)
    assert code == EXIT_OK and value["regressions"] == []
    assert value["compared_with"] == "0.1.0"
    write(history, record("0.1.0", 1.0), record("0.2.0", 1.1), record("0.3.0", 1.5))
    code, value = trend_json(capsys, history)
    assert code == EXIT_FAILED
    assert "partition-heal mttr_s p50 rose 1.1 -> 1.5" in value["regressions"]
    assert [row["version"] for row in value["records"]] == ["0.1.0", "0.2.0", "0.3.0"]


def test_records_with_other_seeds_are_not_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = tmp_path / "history.jsonl"
    write(history, record("0.1.0", 1.0, seeds=100), record("0.2.0", 9.0, seeds=10))
    code, value = trend_json(capsys, history)
    assert code == EXIT_OK and value["compared_with"] is None


def test_rises_below_the_probe_resolution_do_not_count() -> None:
    assert chaos_trend.regressions(record("a", 0.1), record("b", 0.15)) == []
    assert chaos_trend.regressions(record("a", 0.1), record("b", 0.3)) != []


def test_record_appends_one_line_per_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = tmp_path / "history.jsonl"
    for _ in range(2):
        code = main(
            ["chaos", "--scenario", "fork", "--seed", "3", "--record", str(history), "--json"]
        )
        assert code == EXIT_OK
        capsys.readouterr()
    lines = history.read_text().splitlines()
    assert len(lines) == 2
    entry = json.loads(lines[0])
    assert set(entry) == {"version", "commit", "seeds", "first_seed", "failures", "scenarios"}
    assert set(entry["scenarios"]["fork"]) == {"mttd_s", "mttr_s", "finality_latency_s", "failures"}
    code, value = trend_json(capsys, history)
    assert code == EXIT_OK and value["regressions"] == []
