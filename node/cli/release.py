"""`swarmd release`: cutting a release candidate (docs/OPERATIONS.md, "Cutting a release
candidate").

    swarmd release check [--seeds 1000 | --quick] [--out FILE] [--json]
                         [--scenario NAME ...] [--only STEP ...] [--root DIR]
    swarmd release status [--check] [--root DIR]

`check` runs the release gate (release_check) and exits 1 when any step failed; `status`
writes docs/CURRENT_STATUS.md from the code (release_status), or with --check exits 1 when the
committed file differs from what it would write.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

from ..runtime.driver import version
from .common import EXIT_FAILED, EXIT_OK, Add, CliError, Output, nested, positive_int
from .release_check import QUICK_SEEDS, RELEASE_SEEDS, Options, run_check
from .release_status import STATUS_FILE, generate


def register(add: Add) -> None:
    release = add("release", cmd_check, "release candidates: the gate and the status page")
    sub = nested(release, "release_command")
    check = sub.add_parser("check", help="run the release-candidate gate; one JSON report")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument(
        "--seeds", type=positive_int, help=f"seeds per scenario (default {RELEASE_SEEDS})"
    )
    check.add_argument(
        "--quick",
        action="store_true",
        help=f"a pipeline check: {QUICK_SEEDS} seeds, no swarm benchmark",
    )
    check.add_argument("--out", type=Path, help="also write the JSON report to FILE")
    check.add_argument(
        "--scenario", action="append", default=[], help="only this scenario (repeatable)"
    )
    check.add_argument(
        "--only", action="append", default=[], help="only steps whose name starts so"
    )
    check.add_argument("--root", type=Path, default=Path("."), help="the checkout (default .)")
    check.set_defaults(handler=cmd_check)
    status = sub.add_parser("status", help=f"write {STATUS_FILE} from the code")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.add_argument(
        "--check", action="store_true", help=f"exit 1 when {STATUS_FILE} is not up to date"
    )
    status.add_argument("--root", type=Path, default=Path("."), help="the checkout (default .)")
    status.set_defaults(handler=cmd_status)


def _checkout(root: Path) -> Path:
    if not (root / "tests").is_dir() or not (root / "docs").is_dir():
        raise CliError(
            f"{root.resolve()} is not a swarmd checkout (no tests/ and docs/): run from the "
            "repository root or pass --root",
            "not_a_checkout",
        )
    return root.resolve()


def _commit(root: Path) -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=root, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def cmd_check(args: argparse.Namespace, out: Output) -> int:
    root = _checkout(args.root)
    seeds = args.seeds or (QUICK_SEEDS if args.quick else RELEASE_SEEDS)
    options = Options(root, seeds, args.quick, tuple(args.scenario), tuple(args.only))
    report = {"version": version(), "commit": _commit(root), **run_check(options)}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", "utf-8")
    out.result(report, _check_text(report))
    return EXIT_OK if report["ok"] else EXIT_FAILED


def _check_text(report: dict[str, Any]) -> str:
    lines = [
        f"swarmd {report['version']} ({report['commit'][:12]}): release check "
        f"{'PASSED' if report['ok'] else 'FAILED'} in {report['seconds']} s, "
        f"{report['seeds']} seeds per scenario"
    ]
    for step in report["steps"]:
        lines.append(f"  {'ok  ' if step['ok'] else 'FAIL'} {step['name']} ({step['seconds']} s)")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace, out: Output) -> int:
    root = _checkout(args.root)
    text = generate(root)
    path = root / STATUS_FILE
    if args.check:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        fresh = current == text
        hint = "" if fresh else "; run `swarmd release status` (make status-doc) and commit it"
        out.result(
            {"path": STATUS_FILE, "up_to_date": fresh},
            f"{STATUS_FILE} is {'up to date' if fresh else 'out of date'}{hint}",
        )
        return EXIT_OK if fresh else EXIT_FAILED
    path.write_text(text, encoding="utf-8")
    out.result({"path": STATUS_FILE, "written": True}, f"wrote {STATUS_FILE}")
    return EXIT_OK
