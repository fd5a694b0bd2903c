"""`swarmd release check`: the release-candidate gate, one JSON report.

Steps, each a subprocess of this interpreter (so a crash or hang of one is its failure alone,
and two run at a time on the machine kind's 2 cores):

- `chaos:<scenario>`: every registered scenario over `--seeds` seeds (`swarmd chaos`);
- `drills`: the recovery drills (reset + recover, recover --from-snapshot) on real daemons:
  the tests under tests/node and tests/integration marked with a drill gate
  (release_gates.DRILL_GATES), run by pytest node id;
- `rollback-plays`: the same for every rollback-play gate (quiesce, claims pause, rollback,
  resync);
- `bench:<row>`: the benchmarks' quick rows (`swarmd bench NAME ... --json`, small sizes);
- `chaos-trend`: `swarmd chaos --trend CHAOS_HISTORY.jsonl` (MTTD/MTTR rose > 20 %?);
- `status-doc`: `swarmd release status --check` (docs/CURRENT_STATUS.md is up to date).

Each step reports name, ok, seconds and detail; the report's `ok` is every step's, and the
exit status is 1 when any step failed. It needs a checkout (tests/ and CHAOS_HISTORY.jsonl):
run it from the repository root, or pass --root.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmd.protocol.sim import scenarios

from .release_gates import DRILL_GATES, REAL_DAEMON_TEST_DIRS, play_gates
from .release_status import HISTORY_FILE, scan_gate_markers

#: Seeds per scenario of a release check, and of `--quick` (a pipeline check for CI).
RELEASE_SEEDS = 1_000
QUICK_SEEDS = 20
#: Steps run at once (the machine kind has 2 cores).
WORKERS = 2
#: A step that runs longer than this failed (a hung daemon must not hang the release).
STEP_TIMEOUT_S = 4 * 3600
#: How much of a failed step's output its detail keeps.
OUTPUT_TAIL_CHARS = 2_000
#: The benchmarks' quick rows: small sizes of BENCHMARKS.md's commands. The swarm row starts
#: 4 daemons, so `--quick` leaves it out.
BENCH_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pipeline", ("pipeline", "--ops", "2000", "--repeat", "1", "--workers", "2")),
    ("storage", ("storage", "--ops", "5000", "--runs", "1")),
    ("recovery", ("recovery", "--ops", "2000", "--repeat", "1")),
    ("recovery-snapshot", ("recovery", "--ops", "2000", "--repeat", "1", "--from-snapshot", "0.9")),
    ("sync", ("sync", "--items", "20000", "--diff", "100")),
    ("state_tree", ("state_tree", "--accounts", "10000", "--updates", "1000")),
    ("framing", ("framing", "--messages", "5000", "--size", "200", "--repeat", "1")),
    ("api", ("api", "--requests", "50")),
    ("scale", ("scale", "--accounts", "2000", "--cut-ops", "50", "--rounds", "3")),
)
SWARM_ROW = (
    "swarm",
    ("swarm", "--nodes", "4", "--transport", "websocket", "--ops", "200", "--accounts", "20"),
)


@dataclass(frozen=True)
class Options:
    root: Path
    seeds: int
    quick: bool
    scenarios: tuple[str, ...]  # empty: every registered scenario
    only: tuple[str, ...]  # step name prefixes; empty: every step


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[], tuple[bool, dict[str, Any]]]


def _swarmd(*argv: str, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarmd.node.cli", *argv],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=STEP_TIMEOUT_S,
        check=False,
    )


def _tail(text: str) -> str:
    return text[-OUTPUT_TAIL_CHARS:]


def _json_step(result: subprocess.CompletedProcess[str]) -> tuple[bool, dict[str, Any]]:
    """A `swarmd ... --json` run: ok when it exits 0 and prints one JSON object."""
    try:
        value = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        value = None
    detail: dict[str, Any] = {"exit_code": result.returncode}
    if isinstance(value, dict):
        detail["output"] = value
    else:
        detail["stdout"] = _tail(result.stdout)
    if result.returncode != 0:
        detail["stderr"] = _tail(result.stderr)
    return result.returncode == 0 and isinstance(value, dict), detail


def _chaos_step(name: str, options: Options) -> Step:
    def run() -> tuple[bool, dict[str, Any]]:
        result = _swarmd(
            "chaos", "--scenario", name, "--seeds", str(options.seeds), "--json", root=options.root
        )
        ok, detail = _json_step(result)
        report = detail.pop("output", None)
        if report is not None:
            keep = (
                "runs",
                "trace_digest",
                "mttd_s",
                "mttr_s",
                "finality_latency_s",
                "error",
                "code",
            )
            detail.update({key: report[key] for key in keep if key in report})
            detail["failures"] = report.get("failures", [])[:20]
        return ok, detail

    return Step(f"chaos:{name}", run)


def _pytest_step(name: str, gates: tuple[str, ...], options: Options) -> Step:
    def run() -> tuple[bool, dict[str, Any]]:
        marked = scan_gate_markers(options.root)
        node_ids = sorted(
            {
                test
                for gate in gates
                for test in marked.get(gate, [])
                if test.startswith(REAL_DAEMON_TEST_DIRS)
            }
        )
        if not node_ids:
            return False, {"error": f"no test under {REAL_DAEMON_TEST_DIRS} marks {gates}"}
        with tempfile.TemporaryDirectory(prefix="swarmd-release-") as folder:
            junit = Path(folder) / "junit.xml"
            result = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 f"--junitxml={junit}", *node_ids],
                capture_output=True, text=True, cwd=options.root, timeout=STEP_TIMEOUT_S,
                check=False,
            )  # fmt: skip
            counts = _junit_counts(junit)
        detail: dict[str, Any] = {"gates": list(gates), "tests": node_ids, "exit_code":
                                  result.returncode, **counts}  # fmt: skip
        ok = result.returncode == 0 and counts.get("passed", 0) == len(node_ids)
        if not ok:
            detail["output"] = _tail(result.stdout + result.stderr)
        return ok, detail

    return Step(name, run)


def _junit_counts(path: Path) -> dict[str, Any]:
    """passed/failed/errors/skipped from pytest's JUnit XML, and the failing test names."""
    if not path.exists():
        return {"passed": 0, "failed_tests": []}
    suite = ElementTree.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    failed = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "passed": passed, "failed_tests": failed}


def _bench_step(name: str, argv: tuple[str, ...], options: Options) -> Step:
    def run() -> tuple[bool, dict[str, Any]]:
        ok, detail = _json_step(_swarmd("bench", *argv, "--json", root=options.root))
        detail["command"] = "swarmd bench " + " ".join(argv)
        return ok, detail

    return Step(f"bench:{name}", run)


def _trend_step(options: Options) -> Step:
    def run() -> tuple[bool, dict[str, Any]]:
        result = _swarmd("chaos", "--trend", HISTORY_FILE, "--json", root=options.root)
        return _json_step(result)

    return Step("chaos-trend", run)


def _status_doc_step(options: Options) -> Step:
    def run() -> tuple[bool, dict[str, Any]]:
        result = _swarmd("release", "status", "--check", "--json", root=options.root)
        return _json_step(result)

    return Step("status-doc", run)


def plan_steps(options: Options) -> list[Step]:
    """Every step of a release check, in report order, filtered by --only."""
    names = list(options.scenarios) or scenarios.scenario_names()
    steps = [_chaos_step(name, options) for name in names]
    steps.append(_pytest_step("drills", DRILL_GATES, options))
    steps.append(_pytest_step("rollback-plays", play_gates(), options))
    rows = BENCH_ROWS if options.quick else (*BENCH_ROWS, SWARM_ROW)
    steps += [_bench_step(name, argv, options) for name, argv in rows]
    steps.append(_trend_step(options))
    steps.append(_status_doc_step(options))
    if options.only:
        steps = [step for step in steps if step.name.startswith(options.only)]
    return steps


def _timed(step: Step) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        ok, detail = step.run()
    except (OSError, subprocess.SubprocessError) as exc:
        ok, detail = False, {"error": f"{type(exc).__name__}: {exc}"}
    seconds = round(time.perf_counter() - started, 3)
    return {"name": step.name, "ok": ok, "seconds": seconds, "detail": detail}


def run_check(options: Options) -> dict[str, Any]:
    """Run the steps two at a time; the report lists them in plan order."""
    started = time.perf_counter()
    steps = plan_steps(options)
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="swarmd-release") as pool:
        results = list(pool.map(_timed, steps))
    return {
        "ok": bool(results) and all(step["ok"] for step in results),
        "seeds": options.seeds,
        "quick": options.quick,
        "steps": results,
        "failed": [step["name"] for step in results if not step["ok"]],
        "seconds": round(time.perf_counter() - started, 3),
    }
