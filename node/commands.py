"""Daemon subcommands of `swarmd`: init, run, status, wallet, admin, devnet.

Registered by `cli.build_parser` through `register(add)`. Every
command prints one JSON object with `--json`; bad input exits 2 with `{"error", "code"}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swarmd.protocol import crypto, limits
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.ops import Kind

from . import cli
from .cli import EXIT_OK, CliError, Handler, Output

CONFIG_FILE_NAME = "swarmd.toml"
KEY_FILE_NAME = "node.key"
GENESIS_FILE_NAME = "genesis.json"
COUNCIL_KEYS_DIR = "council-keys"
DEFAULT_NETWORK_NAME = "swarmd-local"

Add = Callable[[str, Handler, str], argparse.ArgumentParser]


# --- helpers ---------------------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0..65535")
    return value


def _amount(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer amount") from None
    if not 1 <= value <= limits.AMOUNT_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1..{limits.AMOUNT_MAX}")
    return value


def _account(text: str) -> bytes:
    try:
        return crypto.parse_account_id(text)
    except Exception as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an account id: {exc}") from None


def config_path(home: Path) -> Path:
    return home / CONFIG_FILE_NAME


def load_home_config(home: str) -> Any:
    from .config import load_config

    path = config_path(Path(home))
    if not path.exists():
        raise CliError(f"{path} does not exist; run `swarmd init --home {home}` first", "no_home")
    return load_config(path)


# --- init ------------------------------------------------------------------------------------


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
    from .config import default_config_text

    target = config_path(home)
    if target.exists() and not force:
        raise CliError(f"{target} exists; pass --force to overwrite", "file_exists")
    home.mkdir(parents=True, exist_ok=True)
    keypair = keypair or crypto.KeyPair.from_seed(os.urandom(32))
    cli.write_private_file(home / KEY_FILE_NAME, cli.key_file_text(keypair))
    written_member_keys = []
    if genesis is None:
        members = [keypair.public_key]
        for index in range(1, council_size):
            member = crypto.KeyPair.from_seed(os.urandom(32))
            path = home / COUNCIL_KEYS_DIR / f"member-{index}.key"
            cli.write_private_file(path, cli.key_file_text(member))
            written_member_keys.append(str(path))
            members.append(member.public_key)
        genesis = Genesis.create(DEFAULT_NETWORK_NAME, members)
    (home / GENESIS_FILE_NAME).write_text(genesis.to_json())
    target.write_text(default_config_text(**(config_overrides or {})))
    return {
        "home": str(home),
        "config_file": str(target),
        "node_id": keypair.account_id,
        "network_id": genesis.network_id.hex(),
        "council": [crypto.account_id_text(key) for key in genesis.council],
        "council_member": keypair.public_key in genesis.council,
        "member_key_files": written_member_keys,
    }


def cmd_init(args: argparse.Namespace, out: Output) -> int:
    genesis = cli.load_genesis(Path(args.genesis)) if args.genesis else None
    if genesis is not None and args.council != 1:
        raise CliError("--genesis and --council exclude each other", "usage")
    keypair = cli.load_key_file(Path(args.key)) if args.key else None
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


# --- run and status --------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, out: Output) -> int:
    from .config import load_config
    from .daemon import run_until_signalled
    from .logs import configure_logging
    from .parent import exit_with_parent

    exit_with_parent(os.environ)
    config = load_config(args.config) if args.config else load_home_config(args.home)
    node_id = _node_id_text(config.node.key_file)
    configure_logging(node_id, config.log.level, config.log.format)
    asyncio.run(run_until_signalled(config))
    return EXIT_OK


def _node_id_text(key_file: Path) -> str:
    return cli.load_key_file(key_file).account_id


def cmd_status(args: argparse.Namespace, out: Output) -> int:
    from .client import NodeClient

    status = NodeClient(args.node).status()
    text = (
        f"node {status['node_id']} mode={status['mode']} height={status['final_height']} "
        f"peers={len(status['peers'])} root={status['state_root'][:16]}"
    )
    out.result(status, text)
    return EXIT_OK


# --- wallet ----------------------------------------------------------------------------------


def cmd_wallet_new(args: argparse.Namespace, out: Output) -> int:
    path = Path(args.out)
    if path.exists() and not args.force:
        raise CliError(f"{path} exists; pass --force to overwrite", "file_exists")
    keypair = crypto.KeyPair.from_seed(os.urandom(32))
    cli.write_private_file(path, cli.key_file_text(keypair))
    out.result({"account_id": keypair.account_id, "key_file": str(path)}, keypair.account_id)
    return EXIT_OK


def cmd_wallet_balance(args: argparse.Namespace, out: Output) -> int:
    from .client import NodeClient

    view = NodeClient(args.node).account(crypto.account_id_text(args.account))
    out.result(view, f"balance {view['balance']} (spendable {view['spendable']})")
    return EXIT_OK


def _wallet_submit(args: argparse.Namespace, out: Output, kind: Kind, **fields: Any) -> int:
    from .client import NodeClient, author_from_node, submit_op

    keypair = cli.load_key_file(Path(args.key))
    client = NodeClient(args.node)
    author, unreceived = author_from_node(client, keypair)
    deps = list(fields.pop("deps", ())) + unreceived
    op = author.sign(kind, deps=deps[: limits.OP_DEPS_MAX], **fields)
    result = submit_op(client, op)
    result["kind"] = kind.label
    result["received_credits"] = len(unreceived)
    out.result(result, f"{result['status']} {result['op_id']}")
    return EXIT_OK


def cmd_wallet_send(args: argparse.Namespace, out: Output) -> int:
    return _wallet_submit(args, out, Kind.TRANSFER, to=args.to, amount=args.amount)


def cmd_wallet_burn(args: argparse.Namespace, out: Output) -> int:
    if not 0 < len(args.target.encode()) <= limits.BURN_TARGET_SIZE_BYTES_MAX:
        raise CliError(f"--target must be 1..{limits.BURN_TARGET_SIZE_BYTES_MAX} bytes", "usage")
    return _wallet_submit(args, out, Kind.BURN, amount=args.amount, target=args.target)


def cmd_wallet_claim(args: argparse.Namespace, out: Output) -> int:
    from swarmd.protocol.ops import check_handle

    check_handle(args.handle)
    return _wallet_submit(args, out, Kind.HANDLE_CLAIM, handle=args.handle)


def cmd_wallet_grant(args: argparse.Namespace, out: Output) -> int:
    from .client import NodeClient

    amount = args.amount
    if amount is None:
        amount = int(NodeClient(args.node).status().get("signup_reward", 0)) or None
    if amount is None:
        raise CliError("--amount is required", "usage")
    return _wallet_submit(args, out, Kind.GRANT, to=args.to, amount=amount)


def cmd_wallet_endorse(args: argparse.Namespace, out: Output) -> int:
    try:
        claim = bytes.fromhex(args.claim)
    except ValueError:
        claim = b""
    if len(claim) != limits.HASH_SIZE_BYTES:
        raise CliError("--claim must be a 32-byte op id in hex", "usage")
    return _wallet_submit(args, out, Kind.HANDLE_ENDORSE, claim=claim, deps=[claim])


# --- admin -----------------------------------------------------------------------------------

ADMIN_MODES = {"read-only": "read-only", "quiesce": "quiesced", "resume": "normal"}


def cmd_admin(args: argparse.Namespace, out: Output) -> int:
    from .client import NodeClient, read_cookie

    config = load_home_config(args.home)
    token = read_cookie(config.admin.cookie_file)
    if not config.admin.port:
        raise CliError("[admin].port is 0: the TCP admin interface is off", "admin_disabled")
    client = NodeClient(f"http://{config.admin.host}:{config.admin.port}", token=token)
    mode = ADMIN_MODES[args.action]
    result = client.post_json("/v1/admin/mode", {"mode": mode, "reason": args.reason})
    out.result(result, f"mode {result['mode']}")
    return EXIT_OK


# --- devnet ----------------------------------------------------------------------------------


def cmd_devnet(args: argparse.Namespace, out: Output) -> int:
    from .devnet import DevnetOptions, run_devnet

    if not 1 <= args.nodes <= 32:
        raise CliError("--nodes must be 1..32", "usage")
    if args.turn and shutil.which("turnserver") is None:
        raise CliError("--turn needs coturn's `turnserver` (apt-get install coturn)", "no_coturn")
    if args.turn and args.transport != "webrtc":
        raise CliError("--turn needs --transport webrtc", "usage")
    options = DevnetOptions(
        nodes=args.nodes,
        home=Path(args.home),
        transport=args.transport,
        turn=args.turn,
        activity=not args.no_activity,
        as_json=out.as_json,
        exit_when_ready=args.exit_when_ready,
    )
    return asyncio.run(run_devnet(options, out))


# --- registration ----------------------------------------------------------------------------


def _nested(parser: argparse.ArgumentParser, dest: str) -> Any:
    return parser.add_subparsers(dest=dest, required=True, parser_class=type(parser))


def _sub(group: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = group.add_parser(name, help=help_text, description=help_text)
    command.add_argument("--json", action="store_true", help="print one JSON object")
    command.set_defaults(handler=handler)
    return command


def register(add: Add) -> None:
    init = add("init", cmd_init, "create a node home (key, genesis, config)")
    init.add_argument("--home", required=True)
    init.add_argument("--genesis", help="copy this genesis file (join an existing network)")
    init.add_argument("--council", type=cli._positive_int, default=1, help="new council size")
    init.add_argument("--key", help="use this key file instead of a new key")
    init.add_argument("--api-port", type=_port, default=7000)
    init.add_argument("--admin-port", type=_port, default=7100)
    init.add_argument("--transport", choices=("webrtc", "websocket"), default="webrtc")
    init.add_argument("--peer", action="append", default=[], help="peer base URL (repeatable)")
    init.add_argument("--force", action="store_true")

    run = add("run", cmd_run, "run the node in the foreground")
    run.add_argument("--home", default=".")
    run.add_argument("--config", help=f"config file (default: HOME/{CONFIG_FILE_NAME})")

    status = add("status", cmd_status, "show a node's status")
    status.add_argument("--node", default="http://127.0.0.1:7000")

    wallet = add("wallet", _no_handler, "wallet actions (keys, balance, send, burn, claim)")
    actions = _nested(wallet, "wallet_action")
    new = _sub(actions, "new", cmd_wallet_new, "create a wallet key file")
    new.add_argument("--out", required=True)
    new.add_argument("--force", action="store_true")
    balance = _sub(actions, "balance", cmd_wallet_balance, "show an account")
    balance.add_argument("--node", default="http://127.0.0.1:7000")
    balance.add_argument("account", type=_account)
    signed: list[tuple[str, Handler, str]] = [
        ("send", cmd_wallet_send, "transfer credits"),
        ("burn", cmd_wallet_burn, "burn credits toward a hype target"),
        ("claim", cmd_wallet_claim, "claim a handle"),
        ("grant", cmd_wallet_grant, "council: grant the signup reward"),
        ("endorse", cmd_wallet_endorse, "council: endorse a handle claim"),
    ]
    parsers = {}
    for name, handler, help_text in signed:
        parser = _sub(actions, name, handler, help_text)
        parser.add_argument("--node", default="http://127.0.0.1:7000")
        parser.add_argument("--key", required=True, help="wallet key file")
        parsers[name] = parser
    parsers["send"].add_argument("--to", required=True, type=_account)
    parsers["send"].add_argument("--amount", required=True, type=_amount)
    parsers["burn"].add_argument("--amount", required=True, type=_amount)
    parsers["burn"].add_argument("--target", required=True)
    parsers["claim"].add_argument("--handle", required=True)
    parsers["grant"].add_argument("--to", required=True, type=_account)
    parsers["grant"].add_argument("--amount", type=_amount)
    parsers["endorse"].add_argument("--claim", required=True, help="claim op id (hex)")

    admin = add("admin", _no_handler, "change the node's mode through the admin interface")
    modes = _nested(admin, "admin_action")
    for action, help_text in (
        ("read-only", "refuse client writes (503); reads and sync go on"),
        ("quiesce", "no new state, no votes"),
        ("resume", "back to normal"),
    ):
        parser = _sub(modes, action, cmd_admin, help_text)
        parser.add_argument("--home", required=True)
        parser.add_argument("--reason", default="")
        parser.set_defaults(action=action)

    devnet = add("devnet", cmd_devnet, "run a local multi-node swarm on loopback")
    devnet.add_argument("--nodes", type=cli._positive_int, default=4)
    devnet.add_argument("--home", default=".devnet")
    devnet.add_argument("--transport", choices=("webrtc", "websocket"), default="webrtc")
    devnet.add_argument("--turn", action="store_true", help="relay-only through a local coturn")
    devnet.add_argument("--no-activity", action="store_true", help="skip the scripted burst")
    devnet.add_argument(
        "--exit-when-ready", action="store_true", help="stop the swarm after printing (tests)"
    )


def _no_handler(args: argparse.Namespace, out: Output) -> int:
    raise CliError("a subcommand is required", "usage")


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
