"""`swarmd release check`: the release-candidate gate, one JSON report.

Steps, two at a time on the machine kind's 2 cores, each in a process of its own; any
exception or crash of a step is that step's failure (a crashed simulator worker fails the
chaos steps still to run):

- `chaos:<scenario>`: every registered scenario over `--seeds` seeds (`swarmd chaos`'s runner
  in two spawned worker processes, which import the simulator once);
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
import multiprocessing
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmd.protocol.sim import scenarios

from . import chaos
from .release_gates import DRILL_GATES, REAL_DAEMON_TEST_DIRS, play_gates
from .release_status import HISTORY_FILE, scan_gate_markers

#: Seeds per scenario of a release check, and of `--quick` (a pipeline check for CI).
RELEASE_SEEDS = 1_000
QUICK_SEEDS = 20
#: Steps run at once (the machine kind has 2 cores).
WORKERS = 2
#: A step that runs longer than this failed (a hung daemon must not hang the release).
STEP_TIMEOUT_S = 4 * 3600
#: Failing seeds a chaos step's detail lists (each with its replay command).
CHAOS_FAILURES_SHOWN = 20
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
    heavy: bool = False  # started first: the longest steps should not be the last to start


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


def _chaos_in_worker(name: str, seeds: int) -> dict[str, Any]:
    """One scenario over seeds 1..`seeds` in a worker process (the `swarmd chaos` runner)."""
    try:
        return chaos.run_chaos([name], list(range(1, seeds + 1)))
    except Exception as exc:  # any crash of the simulator is this step's failure, reported
        return {"error": f"{type(exc).__name__}: {exc}", "failures": [], "crashed": True}


def _chaos_step(name: str, options: Options, pool: Executor) -> Step:
    def run() -> tuple[bool, dict[str, Any]]:
        if name not in scenarios.scenario_names():
            return False, {"error": f"unknown scenario {name!r}", "code": "unknown_scenario"}
        report = pool.submit(_chaos_in_worker, name, options.seeds).result(STEP_TIMEOUT_S)
        keep = ("runs", "trace_digest", "mttd_s", "mttr_s", "finality_latency_s", "error")
        detail = {key: report[key] for key in keep if key in report}
        detail["failures"] = report["failures"][:CHAOS_FAILURES_SHOWN]
        detail["replay"] = f"swarmd chaos --scenario {name} --seeds {options.seeds}"
        return not report["failures"] and "crashed" not in report, detail

    return Step(f"chaos:{name}", run, heavy=False)


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
                # Its own basetemp: a pytest session running beside another (the suite that
                # runs this check) must not share or clean up the numbered /tmp/pytest-of-*.
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 f"--basetemp={Path(folder) / 'tmp'}", f"--junitxml={junit}", *node_ids],
                capture_output=True, text=True, cwd=options.root, timeout=STEP_TIMEOUT_S,
                check=False,
            )  # fmt: skip
            counts = _junit_counts(junit)
        detail: dict[str, Any] = {"gates": list(gates), "test_ids": node_ids, "exit_code":
                                  result.returncode, **counts}  # fmt: skip
        # A skipped drill verified nothing: every collected case must have run and passed
        # (a parametrized test is several cases).
        ok = result.returncode == 0 and counts["passed"] == counts["tests"] >= len(node_ids)
        if not ok:
            detail["output"] = _tail(result.stdout + result.stderr)
        return ok, detail

    return Step(name, run, heavy=True)


def _junit_counts(path: Path) -> dict[str, Any]:
    """passed/failed/errors/skipped from pytest's JUnit XML, and the failing test names."""
    if not path.exists():
        return {"tests": 0, "passed": 0, "failed_tests": []}
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


def plan_steps(options: Options, pool: Executor) -> list[Step]:
    """Every step of a release check, in report order, filtered by --only; the chaos steps
    run in `pool`'s worker processes."""
    names = list(options.scenarios) or scenarios.scenario_names()
    steps = [_chaos_step(name, options, pool) for name in names]
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
    except Exception as exc:  # a step that cannot run (timeout, broken worker pool) failed
        ok, detail = False, {"error": f"{type(exc).__name__}: {exc}"}
    seconds = round(time.perf_counter() - started, 3)
    return {"name": step.name, "ok": ok, "seconds": seconds, "detail": detail}


def run_check(options: Options) -> dict[str, Any]:
    """Run the steps two at a time, the heavy ones first; the report lists them in plan order.
    The simulator runs in WORKERS spawned processes (spawn: this process has threads)."""
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(WORKERS, mp_context=context) as workers:
        steps = plan_steps(options, workers)
        order = sorted(steps, key=lambda step: not step.heavy)
        with ThreadPoolExecutor(WORKERS, thread_name_prefix="swarmd-release") as pool:
            done = dict(zip((step.name for step in order), pool.map(_timed, order), strict=True))
    results = [done[step.name] for step in steps]
    return {
        "ok": bool(results) and all(step["ok"] for step in results),
        "seeds": options.seeds,
        "quick": options.quick,
        "steps": results,
        "failed": [step["name"] for step in results if not step["ok"]],
        "seconds": round(time.perf_counter() - started, 3),
    }
