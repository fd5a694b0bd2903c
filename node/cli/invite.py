"""`swarmd council invite --home DIR [--count N]`: one-time invite codes for onboarding.

Each code is shown once; the home keeps only its hash (`[onboarding].invite_codes_file`,
web/invites.py), so the node can check and use it while running. Refused (`not_council`, exit
1) on a node whose key is not a council member's: only those grant the signup reward.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..web import invites
from .common import (
    EXIT_OK,
    CliError,
    Output,
    load_genesis,
    load_home_config,
    load_key_file,
    positive_int,
    sub,
)


def cmd_council_invite(args: argparse.Namespace, out: Output) -> int:
    config = load_home_config(args.home)
    keypair = load_key_file(config.node.key_file)
    genesis = load_genesis(config.node.genesis_file)
    if keypair.public_key not in genesis.council:
        raise CliError("this node's key is not a council member's: it cannot grant", "not_council")
    if args.count > invites.INVITES_PER_COMMAND_MAX:
        raise CliError(f"--count is at most {invites.INVITES_PER_COMMAND_MAX}", "usage")
    path = config.onboarding.invite_codes_file
    codes = invites.issue(path, args.count)
    value = {
        "codes": codes,
        "invite_codes_file": str(path),
        "unused": invites.unused_count(path),
        "onboarding_enabled": config.onboarding.enabled,
    }
    text = "\n".join(codes)
    if not config.onboarding.enabled:
        text += "\n(note: [onboarding].enabled is false in this home's swarmd.toml)"
    out.result(value, text)
    return EXIT_OK


def register(actions: Any) -> None:
    invite = sub(actions, "invite", cmd_council_invite, "issue one-time onboarding invite codes")
    invite.add_argument("--home", required=True)
    invite.add_argument("--count", type=positive_int, default=1)
