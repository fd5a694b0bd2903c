"""What every `swarmd` command shares: typed errors, output, exit codes, key and genesis files,
node homes.

Errors are typed: a bad argument, file or input raises CliError (or a ProtocolError), which
`cli.main` prints as one line (or one JSON object with `error` and `code`); the exit code is 2
for code "usage" (and config files that do not validate), 1 for every other refusal.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from swarmd.protocol import crypto
from swarmd.protocol.errors import ProtocolError
from swarmd.protocol.genesis import Genesis
from swarmd.storage.store import Store

from ..config import NodeConfig, load_config

EXIT_OK = 0
EXIT_FAILED = 1  # a runtime refusal or failure, or a negative result (e.g. parity false)
EXIT_USAGE = 2  # bad arguments or an invalid config file

CONFIG_FILE_NAME = "swarmd.toml"
KEY_FILE_NAME = "node.key"
GENESIS_FILE_NAME = "genesis.json"
COUNCIL_KEYS_DIR = "council-keys"


class CliError(Exception):
    """A user-facing error with a stable code; `usage` (exit 2) for a bad argument, whatever
    its code (`usage` itself, or a more precise one such as `unknown_scenario`)."""

    def __init__(self, message: str, code: str = "cli_error", *, usage: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.usage = usage or code == "usage"


class Output:
    """Prints either human text or exactly one JSON object."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def result(self, value: dict[str, Any], text: str | None = None) -> None:
        if self.as_json:
            print(json.dumps(value, sort_keys=True, default=str))
        else:
            print(terminal_text(text if text is not None else _as_text(value)))


def shown(text: object) -> str:
    """Text another user wrote (a burn target, a reason), for one line of a terminal: every
    character that is not printable, newlines included, is written as its Python escape
    (`\\x1b`, `\\n`, `\\u202e`), so the text can neither send escape sequences to the
    operator's terminal nor pass for a line of our own output."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in value)


def terminal_text(text: str) -> str:
    """Human output, line by line through `shown`: what a field formatter missed still cannot
    reach the terminal as a control sequence."""
    return "\n".join(shown(line) for line in text.split("\n"))


def _as_text(value: dict[str, Any]) -> str:
    return "\n".join(f"{key}: {item}" for key, item in value.items())


#: A command: parsed arguments and the output in, exit status out.
Handler = Callable[[argparse.Namespace, Output], int]
#: How a command group adds a subcommand (`main.build_parser` passes it to each `register`).
Add = Callable[[str, Handler, str], argparse.ArgumentParser]


class Parser(argparse.ArgumentParser):
    """argparse that raises CliError instead of exiting, so --json gets a JSON error."""

    def error(self, message: str) -> NoReturn:
        # `cli.main` prints "swarmd: error: ..." itself: name the sub-command, not "swarmd".
        command = self.prog.removeprefix("swarmd").strip()
        raise CliError(f"{command}: {message}" if command else message, "usage")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def nested(parser: argparse.ArgumentParser, dest: str) -> Any:
    """A required sub-command group under `parser`."""
    return parser.add_subparsers(dest=dest, required=True, parser_class=type(parser))


def sub(group: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    """One sub-command of a `nested` group, taking --json like every command."""
    command: argparse.ArgumentParser = group.add_parser(name, help=help_text, description=help_text)
    command.add_argument("--json", action="store_true", help="print one JSON object")
    command.set_defaults(handler=handler)
    return command


def no_handler(args: argparse.Namespace, out: Output) -> int:
    raise CliError("a subcommand is required", "usage")


# --- keys and genesis ----------------------------------------------------------------------


def write_private_file(path: Path, text: str) -> None:
    """Write `text` to `path` readable by the owner only (keys, tokens)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def key_file_text(keypair: crypto.KeyPair) -> str:
    return json.dumps({"account_id": keypair.account_id, "seed": keypair.seed.hex()}) + "\n"


def load_key_file(path: Path) -> crypto.KeyPair:
    try:
        value = json.loads(path.read_text())
        seed = bytes.fromhex(value["seed"])
        keypair = crypto.KeyPair.from_seed(seed)
    except FileNotFoundError as exc:
        raise CliError(f"key file {path} does not exist", "key_file_missing") from exc
    except (ValueError, KeyError, TypeError, ProtocolError, OSError) as exc:
        raise CliError(f"key file {path} is not a swarmd key: {exc}", "bad_key_file") from exc
    if value.get("account_id") not in (None, keypair.account_id):
        raise CliError(f"key file {path}: account_id does not match the seed", "bad_key_file")
    return keypair


def load_genesis(path: Path) -> Genesis:
    try:
        return Genesis.from_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise CliError(f"genesis file {path} does not exist", "genesis_missing") from exc
    except OSError as exc:
        raise CliError(f"cannot read genesis {path}: {exc}", "genesis_unreadable") from exc


# --- node homes ------------------------------------------------------------------------------


def config_path(home: Path) -> Path:
    return home / CONFIG_FILE_NAME


def load_home_config(home: str) -> NodeConfig:
    path = config_path(Path(home))
    if not path.exists():
        raise CliError(f"{path} does not exist; run `swarmd init --home {home}` first", "no_home")
    return load_config(path)


async def open_home_store(home: str, *, read_only: bool = False) -> tuple[Store, Genesis]:
    """The home's store, locked for this process (the node must be stopped), or read-only
    beside a running node (`Store.open_read_only`)."""
    config = load_home_config(home)
    genesis = load_genesis(Path(config.node.genesis_file))
    if read_only:
        return await Store.open_read_only(
            config.node.data_file, network_id=genesis.network_id
        ), genesis
    keypair = load_key_file(Path(config.node.key_file))
    store = await Store.open(
        config.node.data_file,
        network_id=genesis.network_id,
        node_key=keypair.public_key,
        synchronous=config.node.synchronous,
    )
    return store, genesis
