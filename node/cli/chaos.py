"""`swarmd chaos`: run the deterministic simulator's scenarios over many seeds.

    swarmd chaos --list
    swarmd chaos --scenario transfers --seeds 100 [--seed 1] [--json]
    swarmd chaos --scenario all --seeds 100 --json
    swarmd chaos --scenario fork --seed 17 --json        # replay one seed exactly
    swarmd chaos --scenario all --seeds 10 --record CHAOS_HISTORY.jsonl   # append a record
    swarmd chaos --trend CHAOS_HISTORY.jsonl       # exit 1 when MTTD/MTTR rose > 20 %

It prints one JSON object (or text) with the failing seeds, each with the command that replays
it, the digest of all trace hashes (equal digests = identical runs), MTTD/MTTR percentiles in
virtual seconds, finality latency percentiles (`finality_latency_s`: first unfinalized op of
a cut to its checkpoint being final, per node, virtual seconds) and the fraction of delta-sync
sessions within cadence. Exit status 1 when any
seed fails. The simulation itself is pure (swarmd.protocol.simulator); only the runtime figure
reads the wall clock.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swarmd.protocol.sim import scenarios
from swarmd.protocol.sim.scenarios import RunResult

from . import chaos_trend
from .common import EXIT_FAILED, EXIT_OK, CliError, Handler, Output

#: Seeds run when neither --seeds nor --seed is given (the CI count per scenario).
DEFAULT_SEEDS = 100
#: The most seeds one invocation runs (a typo like --seeds 1000000 should not run for days).
SEEDS_MAX = 100_000
#: Failing seeds listed in the text output (the JSON lists all of them).
TEXT_FAILURES_SHOWN = 20


def register(add: Callable[[str, Handler, str], argparse.ArgumentParser]) -> None:
    """Add the `chaos` subcommand (registered by cli/main.py's `build_parser`)."""
    chaos = add("chaos", cmd_chaos, "run simulator scenarios over many seeds")
    chaos.add_argument("--list", action="store_true", help="list the scenarios")
    chaos.add_argument("--scenario", help="a scenario name, or 'all'")
    chaos.add_argument("--seeds", type=int, help=f"how many seeds (default {DEFAULT_SEEDS})")
    chaos.add_argument("--seed", type=int, help="the first seed (alone: run only this seed)")
    chaos.add_argument("--verbose", action="store_true", help="include every run's summary")
    chaos.add_argument("--record", type=Path, help="append this run's trend record to FILE")
    chaos.add_argument("--trend", type=Path, help="print the trend of FILE's records")


def seed_range(seed: int | None, count: int | None) -> list[int]:
    if count is not None and not 1 <= count <= SEEDS_MAX:
        raise CliError(f"--seeds must be 1..{SEEDS_MAX}", "usage")
    if seed is not None and seed < 0:
        raise CliError("--seed must be non-negative", "usage")
    first = 1 if seed is None else seed
    if count is None:
        count = 1 if seed is not None else DEFAULT_SEEDS
    return list(range(first, first + count))


def run_chaos(names: list[str], seeds: list[int], *, verbose: bool = False) -> dict[str, Any]:
    started = time.perf_counter()
    per_scenario: dict[str, Any] = {}
    everything: list[RunResult] = []
    for name in names:
        begun = time.perf_counter()
        results = [scenarios.run_scenario(name, seed) for seed in seeds]
        everything.extend(results)
        summary = scenarios.summarize(name, results)
        summary["runtime_s"] = round(time.perf_counter() - begun, 3)
        if verbose:
            summary["runs"] = [result.summary() for result in results]
        per_scenario[name] = summary
    label = names[0] if len(names) == 1 else "all"
    report = scenarios.summarize(label, everything)
    report["seeds"] = len(seeds)
    report["first_seed"] = seeds[0]
    report["runs"] = len(everything)
    report["runtime_s"] = round(time.perf_counter() - started, 3)
    if len(names) > 1 or verbose:
        report["scenarios"] = per_scenario
    return report


def cmd_chaos(args: argparse.Namespace, out: Output) -> int:
    names = scenarios.scenario_names()
    if args.list:
        out.result({"scenarios": names}, "\n".join(names))
        return EXIT_OK
    if args.trend is not None and not args.scenario:
        report = chaos_trend.trend(chaos_trend.read_records(args.trend))
        out.result(report, chaos_trend.trend_text(report))
        return EXIT_FAILED if report["regressions"] else EXIT_OK
    if not args.scenario:
        raise CliError("pass --scenario NAME (or 'all'), or --list", "usage")
    if args.scenario != "all" and args.scenario not in names:
        raise CliError(
            f"unknown scenario {args.scenario!r}; known: {', '.join(names)}",
            "unknown_scenario",
            usage=True,
        )
    chosen = names if args.scenario == "all" else [args.scenario]
    report = run_chaos(chosen, seed_range(args.seed, args.seeds), verbose=args.verbose)
    if args.record is not None:
        chaos_trend.append_record(args.record, chaos_trend.build_record(report, chosen))
    out.result(report, _as_text(report))
    return EXIT_FAILED if report["failures"] else EXIT_OK


def _as_text(report: dict[str, Any]) -> str:
    lines = [
        f"scenario {report['scenario']}: {report['runs']} runs, "
        f"{len(report['failures'])} failed, {report['runtime_s']}s",
        f"trace digest {report['trace_digest']}",
        f"mttd_s {report['mttd_s']}",
        f"mttr_s {report['mttr_s']}",
        f"finality_latency_s {report['finality_latency_s']}",
        f"syncs within cadence {report['syncs_within_cadence']}",
    ]
    for failure in report["failures"][:TEXT_FAILURES_SHOWN]:
        lines.append(f"FAIL {failure['scenario']} seed {failure['seed']}: {failure['reasons']}")
        lines.append(f"  replay: {failure['replay']}")
    return "\n".join(lines)
