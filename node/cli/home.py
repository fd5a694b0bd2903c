"""Commands on one node home: `swarmd init`, `swarmd run` (`swarmd status`: status.py).

Every command prints one JSON object with `--json`; a refusal exits 1 (bad usage 2) with
`{"error", "code"}`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from swarmd.protocol import crypto
from swarmd.protocol.genesis import Genesis

from ..config import default_config_text, load_config
from ..logs import configure_logging
from ..runtime.service import run_until_signalled
from .common import (
    CONFIG_FILE_NAME,
    COUNCIL_KEYS_DIR,
    EXIT_OK,
    GENESIS_FILE_NAME,
    KEY_FILE_NAME,
    Add,
    CliError,
    Output,
    config_path,
    key_file_text,
    load_genesis,
    load_home_config,
    load_key_file,
    positive_int,
    write_private_file,
)
from .parent import exit_with_parent

DEFAULT_NETWORK_NAME = "swarmd-local"


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0..65535")
    return value


def init_home(
    home: Path,
    *,
    keypair: crypto.KeyPair | None = None,
    genesis: Genesis | None = None,
    council_size: int = 1,
    force: bool = False,
    config_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Create a node home: key, genesis, config. Returns what was written."""
    target = config_path(home)
    if target.exists() and not force:
        raise CliError(f"{target} exists; pass --force to overwrite", "file_exists")
    home.mkdir(parents=True, exist_ok=True)
    keypair = keypair or crypto.KeyPair.from_seed(os.urandom(32))
    write_private_file(home / KEY_FILE_NAME, key_file_text(keypair))
    written_member_keys = []
    if genesis is None:
        members = [keypair.public_key]
        for index in range(1, council_size):
            member = crypto.KeyPair.from_seed(os.urandom(32))
            path = home / COUNCIL_KEYS_DIR / f"member-{index}.key"
            write_private_file(path, key_file_text(member))
            written_member_keys.append(str(path))
            members.append(member.public_key)
        genesis = Genesis.create(DEFAULT_NETWORK_NAME, members)
    (home / GENESIS_FILE_NAME).write_text(genesis.to_json())
    config_text = default_config_text(**(config_overrides or {}))
    secret = "turn_secret" in (config_overrides or {}).get("network", {})
    if secret:
        write_private_file(target, config_text)  # the TURN secret: owner-only, like the key
    else:
        target.write_text(config_text)
    result: dict[str, Any] = {
        "home": str(home),
        "config_file": str(target),
        "node_id": keypair.account_id,
        "network_id": genesis.network_id.hex(),
        "council": [crypto.account_id_text(key) for key in genesis.council],
        "council_member": keypair.public_key in genesis.council,
        "member_key_files": written_member_keys,
    }
    if secret:
        result["note"] = f"{target} holds [network].turn_secret: written owner-only (0600)"
    return result


def cmd_init(args: argparse.Namespace, out: Output) -> int:
    genesis = load_genesis(Path(args.genesis)) if args.genesis else None
    if genesis is not None and args.council != 1:
        raise CliError("--genesis and --council exclude each other", "usage")
    keypair = load_key_file(Path(args.key)) if args.key else None
    overrides: dict[str, Any] = {
        "api": {"port": args.api_port},
        "admin": {"port": args.admin_port},
        "network": {
            "transport": args.transport,
            "peers": [{"url": url} for url in args.peer],
        },
    }
    value = init_home(
        Path(args.home),
        keypair=keypair,
        genesis=genesis,
        council_size=args.council,
        force=args.force,
        config_overrides=overrides,
    )
    out.result(value)
    return EXIT_OK


def cmd_run(args: argparse.Namespace, out: Output) -> int:
    exit_with_parent(os.environ)
    config = load_config(args.config) if args.config else load_home_config(args.home)
    node_id = _node_id_text(config.node.key_file)
    configure_logging(node_id, config.log.level, config.log.format)
    asyncio.run(run_until_signalled(config))
    return EXIT_OK


def _node_id_text(key_file: Path) -> str:
    return load_key_file(key_file).account_id


def register(add: Add) -> None:
    init = add("init", cmd_init, "create a node home (key, genesis, config)")
    init.add_argument("--home", required=True)
    init.add_argument("--genesis", help="copy this genesis file (join an existing network)")
    init.add_argument("--council", type=positive_int, default=1, help="new council size")
    init.add_argument("--key", help="use this key file instead of a new key")
    init.add_argument("--api-port", type=_port, default=7000)
    init.add_argument("--admin-port", type=_port, default=7100)
    init.add_argument("--transport", choices=("webrtc", "websocket"), default="webrtc")
    init.add_argument("--peer", action="append", default=[], help="peer base URL (repeatable)")
    init.add_argument("--force", action="store_true")

    run = add("run", cmd_run, "run the node in the foreground")
    run.add_argument("--home", default=".")
    run.add_argument("--config", help=f"config file (default: HOME/{CONFIG_FILE_NAME})")
