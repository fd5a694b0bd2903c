"""Release trend of the chaos figures: `swarmd chaos ... --record FILE` appends one JSON line
(version, commit, seeds, per-scenario MTTD/MTTR/finality percentiles and failures) and
`swarmd chaos --trend FILE` prints them oldest first and fails when, against the previous
comparable record (same seeds), a scenario's MTTD or MTTR (p50 or p95) rose by more than
TREND_RISE_MAX. The figures are virtual seconds of the deterministic simulator, so equal code
and seeds give equal records: any rise is the code's doing.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
from pathlib import Path
from typing import Any

from .common import CliError

#: A rise of MTTD or MTTR above this fraction of the previous release's value is a regression.
TREND_RISE_MAX = 0.20
#: Rises smaller than this (virtual seconds) never count: the convergence probe's resolution
#: (PROBE_INTERVAL_S), below which a figure moves by one probe, not by a slower recovery.
TREND_FLOOR_S = 0.1
TRENDED = ("mttd_s", "mttr_s")
PERCENTILES = ("p50", "p95")


def build_record(report: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The trend record of one chaos report (`run_chaos`) over the scenarios `names`."""
    per_scenario = report.get("scenarios") or {names[0]: report}
    return {
        "version": _version(),
        "commit": _commit(),
        "seeds": report["seeds"],
        "first_seed": report["first_seed"],
        "failures": len(report["failures"]),
        "scenarios": {
            name: {
                "mttd_s": summary["mttd_s"],
                "mttr_s": summary["mttr_s"],
                "finality_latency_s": summary["finality_latency_s"],
                "failures": len(summary["failures"]),
            }
            for name, summary in sorted(per_scenario.items())
        },
    }


def append_record(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(json.dumps(record, sort_keys=True) + "\n")


def read_records(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", "file_unreadable") from exc
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise CliError(f"{path}:{number}: not JSON ({exc.msg})", "bad_history") from exc
    return records


def regressions(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What rose by more than TREND_RISE_MAX from `previous` to `current` (same seeds)."""
    found = []
    for name, now in sorted(current["scenarios"].items()):
        before = previous["scenarios"].get(name)
        if before is None:
            continue
        for figure in TRENDED:
            for pct in PERCENTILES:
                old, new = before[figure].get(pct), now[figure].get(pct)
                if old is None or new is None or new - old < TREND_FLOOR_S:
                    continue
                if new > old * (1 + TREND_RISE_MAX):
                    found.append(f"{name} {figure} {pct} rose {old} -> {new}")
    return found


def trend(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The trend report: one row per record, and the regressions of the newest record
    against the newest earlier one with the same seeds."""
    rows = [
        {
            "version": r["version"],
            "commit": r["commit"][:12],
            "seeds": r["seeds"],
            "failures": r["failures"],
            "mttd_p50_max": _worst(r, "mttd_s"),
            "mttr_p50_max": _worst(r, "mttr_s"),
        }
        for r in records
    ]
    found: list[str] = []
    compared_with = None
    if records:
        newest = records[-1]
        key = (newest["seeds"], newest["first_seed"])
        earlier = [r for r in records[:-1] if (r["seeds"], r["first_seed"]) == key]
        if earlier:
            compared_with = earlier[-1]["version"]
            found = regressions(earlier[-1], newest)
    return {"records": rows, "compared_with": compared_with, "regressions": found}


def trend_text(report: dict[str, Any]) -> str:
    lines = ["version commit seeds failures mttd_p50_max mttr_p50_max"]
    for row in report["records"]:
        lines.append(
            f"{row['version']} {row['commit']} {row['seeds']} {row['failures']} "
            f"{row['mttd_p50_max']} {row['mttr_p50_max']}"
        )
    if report["compared_with"] is None:
        lines.append("no earlier record with the same seeds to compare with")
    lines.extend(f"REGRESSION {item}" for item in report["regressions"])
    return "\n".join(lines)


def _worst(record: dict[str, Any], figure: str) -> float | None:
    values = [
        s[figure]["p50"] for s in record["scenarios"].values() if s[figure]["p50"] is not None
    ]
    return max(values, default=None)


def _version() -> str:
    try:
        return importlib.metadata.version("swarmd")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _commit() -> str:
    """The commit of the checkout this runs from (git), or "unknown"."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"
