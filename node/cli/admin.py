"""`swarmd admin read-only|quiesce|resume`: change a node's mode through its admin interface
(the token is read from the home's cookie file)."""

from __future__ import annotations

import argparse

from .client import NodeClient, read_cookie
from .common import EXIT_OK, Add, CliError, Output, load_home_config, nested, no_handler, sub

ADMIN_MODES = {"read-only": "read-only", "quiesce": "quiesced", "resume": "normal"}


def cmd_admin(args: argparse.Namespace, out: Output) -> int:
    config = load_home_config(args.home)
    token = read_cookie(config.admin.cookie_file)
    if not config.admin.port:
        raise CliError("[admin].port is 0: the TCP admin interface is off", "admin_disabled")
    client = NodeClient(f"http://{config.admin.host}:{config.admin.port}", token=token)
    mode = ADMIN_MODES[args.action]
    result = client.post_json("/v1/admin/mode", {"mode": mode, "reason": args.reason})
    out.result(result, f"mode {result['mode']}")
    return EXIT_OK


def register(add: Add) -> None:
    admin = add("admin", no_handler, "change the node's mode through the admin interface")
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
