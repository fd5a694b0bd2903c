"""`swarmd telemetry`: a node's product telemetry (GET /v1/telemetry) from `--node URL` or the
API address in the config of `--home DIR`, as a table for an operator or `--json`.

The figures come from final state only and are the same on every node that holds the same
checkpoints (protocol/telemetry.py; formulas in docs/OPERATIONS.md, "Product telemetry").
"""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

from swarmd.protocol.limits import TELEMETRY_DAYS_QUERY_MAX

from .client import NodeClient
from .common import EXIT_OK, Add, CliError, Output, load_home_config, shown
from .status import DEFAULT_NODE_URL, api_url

#: Days shown without `--days`.
DAYS_DEFAULT = 7


def cmd_telemetry(args: argparse.Namespace, out: Output) -> int:
    if not 1 <= args.days <= TELEMETRY_DAYS_QUERY_MAX:
        raise CliError(f"--days must be in 1..{TELEMETRY_DAYS_QUERY_MAX}", usage=True)
    url = args.node or (api_url(load_home_config(args.home)) if args.home else DEFAULT_NODE_URL)
    query = urllib.parse.urlencode({"days": args.days})
    report: dict[str, Any] = NodeClient(url).get(f"/v1/telemetry?{query}")
    out.result(report, telemetry_text(report))
    return EXIT_OK


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def telemetry_text(report: dict[str, Any]) -> str:
    """One line of totals, then one row per UTC day (oldest first)."""
    if not report.get("days"):
        return "no final checkpoint recorded yet"
    lines = [
        f"telemetry since height {report['since_height']} ({report['since_day']}), "
        f"latest {report['latest_day']} at height {report['latest_height']}; "
        f"windows of {report['window_days']} days",
        f"{'date':<10} {'ops':>7} {'new':>5} {'dau':>6} {'mau':>6} {'retention':>9} "
        f"{'velocity':>8} {'supply':>10} burns",
    ]
    for day in report["days"]:
        burns = ",".join(f"{shown(target)}={amount}" for target, amount in day["burns"].items())
        lines.append(
            f"{day['date']:<10} {day['ops']:>7} {day['new_accounts']:>5} "
            f"{day['daily_active']:>6} {day['monthly_active']:>6} "
            f"{_ratio(day['retention']):>9} {_ratio(day['velocity']):>8} {day['supply']:>10} "
            f"{burns or '-'}"
        )
    return "\n".join(lines)


def register(add: Add) -> None:
    command = add("telemetry", cmd_telemetry, "show a node's product telemetry by UTC day")
    where = command.add_mutually_exclusive_group()
    where.add_argument("--node", help=f"the node's API URL (default {DEFAULT_NODE_URL})")
    where.add_argument("--home", help="find the node's API from this node home's config")
    command.add_argument(
        "--days",
        type=int,
        default=DAYS_DEFAULT,
        help=f"newest days to show (default {DAYS_DEFAULT})",
    )
