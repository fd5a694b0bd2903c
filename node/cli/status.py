"""`swarmd status`: one node's status from its HTTP API (`--node URL`, or the API address in
the config of `--home DIR`), as text for an operator or `--json`.

The text leads with the one-line summary scripts already read, then what an operator needs
to know when something is wrong: the mode and why, how far behind the best peer the node is
and whether it is catching up, the consensus position, the pool, open conflicts, the bytes
sent and received over peer links (by message class), and each configured peer's dial state
with its last error (e.g. `no_ice_candidates`).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from swarmd.protocol.node_core.bandwidth import CLASSES

from ..config import NodeConfig
from .client import NodeClient
from .common import EXIT_OK, Add, Output, load_home_config, shown

DEFAULT_NODE_URL = "http://127.0.0.1:7000"


def cmd_status(args: argparse.Namespace, out: Output) -> int:
    url = args.node or (api_url(load_home_config(args.home)) if args.home else DEFAULT_NODE_URL)
    status = NodeClient(url).status()
    out.result(status, status_text(status, time.time()))
    return EXIT_OK


def api_url(config: NodeConfig) -> str:
    """The URL this host reaches the node's API at (a wildcard listen address -> loopback)."""
    host = config.api.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.api.port}"


def _consensus_line(status: dict[str, Any]) -> str:
    """A validator's consensus position; a full node (no council key) only follows the
    council's checkpoints, and its idle round state (height 0, propose) would read as stuck."""
    if status.get("validator") is False:
        return f"  consensus: not a validator (follows checkpoints), epoch={status.get('epoch', 0)}"
    return (
        f"  consensus: epoch={status.get('epoch', 0)} height={status.get('consensus_height', 0)} "
        f"round={status.get('consensus_round', 0)} step={status.get('consensus_step', '-')}"
    )


def status_text(status: dict[str, Any], now: float) -> str:
    """The text of `swarmd status`; `now` (wall clock) ages the dial errors."""
    conflicts = status.get("conflicts") or {}
    lines = [
        f"node {status['node_id']} mode={status['mode']} height={status['final_height']} "
        f"peers={len(status['peers'])} root={status['state_root'][:16]}",
        f"  mode: {status['mode']} (reason: {shown(status.get('mode_reason') or '-')})",
        f"  sync: lag={status.get('sync_lag', 0)} "
        f"catching_up={'yes' if status.get('catching_up') else 'no'}",
        _consensus_line(status),
        f"  pool: unfinalized={status.get('unfinalized_ops', 0)} "
        f"pending={status.get('pending_ops', 0)}",
        f"  conflicts: contested={conflicts.get('contested_handles', 0)} "
        f"below_quorum={conflicts.get('claims_below_quorum', 0)} "
        f"stuck={conflicts.get('stuck_handles', 0)} "
        f"forks={conflicts.get('unresolved_forks', 0)} "
        f"oldest={status.get('oldest_open_conflict_age_s', 0.0)}s",
    ]
    if status.get("rejoin") or status.get("root_divergence_height"):
        # Issue 12: the way back to normal after a rollback, a resync or a root divergence.
        lines.append(
            f"  rejoin: {status.get('rejoin') or '-'} "
            f"root_divergence_height={status.get('root_divergence_height', 0)}"
        )
    if status.get("signing_halted"):
        lines.append(
            "  SIGNING HALTED: another process signs with this node's key (a copy of its home?);"
            " stop it, then restart this node (docs/OPERATIONS.md, 'One key, one process')"
        )
    sent, received = status.get("bytes_sent"), status.get("bytes_received")
    if sent is not None:
        lines.append(_bytes_line(sent, received or {}))
    connected = {peer["node_id"] for peer in status.get("peers", [])}
    lines.extend(_dial_line(dial, connected, now) for dial in status.get("dial", []))
    return "\n".join(lines)


def _bytes_line(sent: dict[str, int], received: dict[str, int]) -> str:
    """Frame bytes over every peer: the totals, then sent/received by message class."""
    classes = " ".join(
        f"{kind}={sent.get(kind, 0)}/{received.get(kind, 0)}"
        for kind in sorted(set(sent) | set(received), key=_class_order)
    )
    return (
        f"  bytes: sent={sum(sent.values())} received={sum(received.values())} "
        f"(sent/received by class: {classes or '-'})"
    )


def _class_order(kind: str) -> tuple[int, str]:
    return (CLASSES.index(kind) if kind in CLASSES else len(CLASSES), kind)


def _dial_line(dial: dict[str, Any], connected: set[str], now: float) -> str:
    state = "connected" if dial.get("node_id") in connected else "not connected"
    line = f"  peer {dial['url']}: {state}"
    if dial.get("last_error"):
        age = ""
        if dial.get("last_error_at") is not None:
            age = f", {max(0.0, now - dial['last_error_at']):.0f}s ago"
        detail = f" ({dial['last_error_detail']})" if dial.get("last_error_detail") else ""
        line += (
            f", last dial error {dial['last_error']}{detail}{age}, "
            f"{dial.get('failures', 0)} failed since the last success"
        )
    return line


def register(add: Add) -> None:
    status = add("status", cmd_status, "show a node's status")
    where = status.add_mutually_exclusive_group()
    where.add_argument("--node", help=f"the node's API URL (default {DEFAULT_NODE_URL})")
    where.add_argument("--home", help="find the node's API from this node home's config")
