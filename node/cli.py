"""The `swarmd` command line. Every command takes `--json` for scripts.

Errors are typed: a bad argument, file or input prints one line (or one JSON object with
`error` and `code`) and exits 2; nothing prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from swarmd.protocol import crypto
from swarmd.protocol.errors import ProtocolError
from swarmd.protocol.genesis import Genesis

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and reports a negative result (e.g. parity false)
EXIT_USAGE = 2  # bad arguments, files or input

BENCHMARKS = (
    "pipeline",
    "storage",
    "recovery",
    "sync",
    "framing",
    "state_tree",
    "swarm",
    "api",
    "scale",
)


class CliError(Exception):
    """A user-facing error with a stable code."""

    def __init__(self, message: str, code: str = "cli_error") -> None:
        super().__init__(message)
        self.code = code


class Output:
    """Prints either human text or exactly one JSON object."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def result(self, value: dict[str, Any], text: str | None = None) -> None:
        if self.as_json:
            print(json.dumps(value, sort_keys=True, default=str))
        else:
            print(text if text is not None else _as_text(value))


def _as_text(value: dict[str, Any]) -> str:
    return "\n".join(f"{key}: {item}" for key, item in value.items())


# --- keys and genesis ----------------------------------------------------------------------


def write_private_file(path: Path, text: str) -> None:
    """Write `text` to `path` readable by the owner only (keys, tokens)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
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


def cmd_keygen(args: argparse.Namespace, out: Output) -> int:
    keypair = crypto.KeyPair.from_seed(os.urandom(32))
    if args.out:
        path = Path(args.out)
        if path.exists() and not args.force:
            raise CliError(f"{path} exists; pass --force to overwrite", "file_exists")
        write_private_file(path, key_file_text(keypair))
    value = {"account_id": keypair.account_id, "key_file": args.out}
    if not args.out:
        value["seed"] = keypair.seed.hex()
    out.result(value, keypair.account_id)
    return EXIT_OK


def cmd_genesis(args: argparse.Namespace, out: Output) -> int:
    council: list[bytes] = []
    for item in args.council:
        path = Path(item)
        if path.exists():
            council.append(load_key_file(path).public_key)
        else:
            council.append(crypto.parse_account_id(item))
    if not council:
        raise CliError("at least one --council member is required", "council_empty")
    genesis = Genesis.create(
        args.name,
        council,
        signup_reward=args.signup_reward,
        grants_per_member_per_window=args.grant_cap,
        created_at=args.created_at,
    )
    text = genesis.to_json()
    if args.out:
        Path(args.out).write_text(text)
    value = {"network_id": genesis.network_id.hex(), "genesis_file": args.out}
    out.result(value, text if not args.out else genesis.network_id.hex())
    return EXIT_OK


def cmd_bench(args: argparse.Namespace, out: Output) -> int:
    module = importlib.import_module(f"swarmd.benchmarks.{args.name}")
    rest = list(args.rest)
    if out.as_json and "--json" not in rest:
        rest.append("--json")
    result: int = module.main(rest)
    return result


def read_bundle_file(path: Path) -> bytes:
    """A bundle file holds the raw bundle bytes or their hex (as the HTTP API returns it)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc}", "bundle_unreadable") from exc
    text = data.strip()
    try:
        return bytes.fromhex(text.decode("ascii")) if text else data
    except (UnicodeDecodeError, ValueError):
        return data


def cmd_checkpoint_verify(args: argparse.Namespace, out: Output) -> int:
    """Verify a checkpoint bundle offline with only the genesis keys."""
    from swarmd.protocol import consensus
    from swarmd.protocol.checkpoint import Cut

    genesis = load_genesis(Path(args.genesis))
    data = read_bundle_file(Path(args.file))
    result: dict[str, Any] = {"file": args.file, "network_id": genesis.network_id.hex()}
    try:
        bundle = consensus.CheckpointBundle.decode(data)
        consensus.verify_bundle(bundle, genesis.network_id, list(genesis.council))
        cut = Cut.decode(bundle.value)
    except ProtocolError as exc:
        result.update(valid=False, code=exc.code, error=exc.message)
        out.result(result, f"INVALID: {exc.message} [{exc.code}]")
        return EXIT_FAILED
    result.update(
        valid=True,
        height=bundle.height,
        round=bundle.round,
        checkpoint_id=cut.checkpoint_id.hex(),
        parent_id=cut.parent_id.hex(),
        state_root=cut.state_root.hex(),
        heads=len(cut.heads),
        signers=[crypto.account_id_text(key) for key, _ in bundle.precommits],
        quorum=genesis.quorum,
    )
    out.result(result, f"valid: height {bundle.height}, {len(bundle.precommits)} signatures")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, out: Output) -> int:
    from .demo import run_demo

    value = run_demo(seed=args.seed)
    out.result(value)
    return EXIT_OK


# --- parser --------------------------------------------------------------------------------

Handler = Callable[[argparse.Namespace, Output], int]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse that raises CliError instead of exiting, so --json gets a JSON error."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{self.prog}: {message}", "usage")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="swarmd", description="Swarm Credits validator daemon")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.add_argument("--json", action="store_true", help="print one JSON object")
        command.set_defaults(handler=handler)
        return command

    keygen = add("keygen", cmd_keygen, "create an Ed25519 key (account)")
    keygen.add_argument("--out", help="write the key file here (mode 0600)")
    keygen.add_argument("--force", action="store_true")

    genesis = add("genesis", cmd_genesis, "write a genesis file for a council")
    genesis.add_argument("--name", required=True, help="network name")
    genesis.add_argument(
        "--council", action="append", default=[], help="member account id or key file"
    )
    genesis.add_argument("--signup-reward", type=_positive_int, default=100)
    genesis.add_argument("--grant-cap", type=_positive_int, default=1000)
    genesis.add_argument("--created-at", type=int, default=0, help="unix seconds")
    genesis.add_argument("--out", help="write the genesis file here")

    demo = add("demo", cmd_demo, "run an in-process ledger demo")
    demo.add_argument("--seed", type=int, default=1)

    checkpoint = add("checkpoint", cmd_checkpoint_verify, "checkpoint bundles (offline)")
    checkpoint.add_argument("action", choices=["verify"])
    checkpoint.add_argument("file", help="bundle file: raw bytes or hex")
    checkpoint.add_argument("--genesis", required=True, help="genesis file of the network")

    bench = add("bench", cmd_bench, "run a benchmark (see BENCHMARKS.md)")
    bench.add_argument("name", choices=BENCHMARKS)
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own options")

    # The other subcommands live beside the code they drive; imported here, when a command
    # line is parsed, so that importing this module stays cheap.
    from . import chaos, commands, recovery, rollback, snapshots

    for module in (chaos, recovery, rollback, snapshots, commands):
        module.register(add)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    out = Output(as_json)
    try:
        args = build_parser().parse_args(argv)
        handler: Handler = args.handler
        return handler(args, Output(as_json or args.json))
    except CliError as exc:
        return _fail(out, str(exc), exc.code)
    except ProtocolError as exc:
        return _fail(out, exc.message, exc.code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`swarmd ... | head`): not an error of ours. Point stdout at
        # /dev/null so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _fail(out: Output, message: str, code: str) -> int:
    if out.as_json:
        print(json.dumps({"error": message, "code": code}))
    else:
        print(f"swarmd: error: {message} [{code}]", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
