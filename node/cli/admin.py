"""`swarmd admin read-only|quiesce|resume`: change a node's mode.

A running node is asked through its admin interface (the token is read from the home's cookie
file). A stopped node has its persisted mode written straight into its store, so the next start
honours it: that is how the offline rollback drill begins (quiesce while stopped, `swarmd
rollback`, start, resume). Opening the store takes its file lock, so a node that is running
but whose admin interface cannot be reached is never written behind its back
(`database_locked`).

`admin_client` is shared with the council commands (cli/council.py).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from swarmd.protocol import limits
from swarmd.storage import api as storage_api

from ..config import NodeConfig
from .client import ClientError, NodeClient, read_cookie
from .common import (
    EXIT_OK,
    Add,
    CliError,
    Output,
    load_home_config,
    nested,
    no_handler,
    open_home_store,
    sub,
)

ADMIN_MODES = {"read-only": "read-only", "quiesce": "quiesced", "resume": "normal"}
#: Codes that mean "no node is serving this home's admin interface right now".
NOT_RUNNING_CODES = ("cookie_missing", "node_unreachable")


def admin_client(config: NodeConfig) -> NodeClient:
    """A client of the home's running node's admin interface (loopback TCP + cookie token)."""
    if not config.admin.port:
        raise CliError("[admin].port is 0: the TCP admin interface is off", "admin_disabled")
    token = read_cookie(config.admin.cookie_file)
    return NodeClient(f"http://{config.admin.host}:{config.admin.port}", token=token)


def cmd_admin(args: argparse.Namespace, out: Output) -> int:
    config = load_home_config(args.home)
    mode = ADMIN_MODES[args.action]
    if len(args.reason.encode()) > limits.REASON_SIZE_BYTES_MAX:
        raise CliError(f"--reason is at most {limits.REASON_SIZE_BYTES_MAX} bytes", "bad_reason")
    try:
        client = admin_client(config)
        result = client.post_json("/v1/admin/mode", {"mode": mode, "reason": args.reason})
        result["node"] = "running"
    except (ClientError, CliError) as exc:
        if exc.code not in (*NOT_RUNNING_CODES, "admin_disabled"):
            raise
        result = asyncio.run(set_stopped_mode(args.home, mode, args.reason))
    text = f"mode {result['mode']}"
    if result["node"] == "stopped":
        text += " (written to the stopped node's store; the next start honours it)"
    out.result(result, text)
    return EXIT_OK


async def set_stopped_mode(home: str, mode: str, reason: str) -> dict[str, Any]:
    """Write the persisted mode of a stopped node (the store's lock proves it is stopped)."""
    store, _ = await open_home_store(home)
    try:
        await store.set_mode(storage_api.NodeMode(mode.replace("-", "_")), reason)
        stored, stored_reason = await store.get_mode()
    finally:
        await store.close()
    return {
        "mode": stored.value.replace("_", "-"),
        "mode_reason": stored_reason,
        "node": "stopped",
    }


def register(add: Add) -> None:
    admin = add("admin", no_handler, "change the node's mode (running or stopped)")
    modes = nested(admin, "admin_action")
    for action, help_text in (
        ("read-only", "refuse client writes (503); reads and sync go on"),
        ("quiesce", "no new state, no votes"),
        ("resume", "back to normal"),
    ):
        parser = sub(modes, action, cmd_admin, help_text)
        parser.add_argument("--home", required=True)
        parser.add_argument("--reason", default="")
        parser.set_defaults(action=action)
