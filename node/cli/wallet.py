"""`swarmd wallet new|send|burn|claim|grant|endorse`: wallet keys and signed ops submitted
through a node's public API; every op command takes `--wait-final` and every account
`@handle` (cli/addressing.py). The read commands (show, balance, history, watch, hype, handle)
are in cli/wallet_read.py."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from swarmd.protocol import crypto, limits
from swarmd.protocol.codes import RejectCode
from swarmd.protocol.ops import Kind, check_handle

from . import wallet_read
from .addressing import account_or_handle, add_wait_arguments, resolve, wait_final
from .client import ClientError, NodeClient, author_from_node, submit_op
from .common import (
    EXIT_OK,
    Add,
    CliError,
    Handler,
    Output,
    key_file_text,
    load_key_file,
    nested,
    no_handler,
    sub,
    write_private_file,
)


def _amount(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer amount") from None
    if not 1 <= value <= limits.AMOUNT_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1..{limits.AMOUNT_MAX}")
    return value


def cmd_wallet_new(args: argparse.Namespace, out: Output) -> int:
    path = Path(args.out)
    if path.exists() and not args.force:
        raise CliError(f"{path} exists; pass --force to overwrite", "file_exists")
    keypair = crypto.KeyPair.from_seed(os.urandom(32))
    write_private_file(path, key_file_text(keypair))
    out.result({"account_id": keypair.account_id, "key_file": str(path)}, keypair.account_id)
    return EXIT_OK


def _wallet_submit(args: argparse.Namespace, out: Output, kind: Kind, **fields: Any) -> int:
    keypair = load_key_file(Path(args.key))
    client = NodeClient(args.node)
    author, unreceived = author_from_node(client, keypair)
    deps = list(fields.pop("deps", ())) + unreceived
    op = author.sign(kind, deps=deps[: limits.OP_DEPS_MAX], **fields)
    result = submit_op(client, op)
    result["kind"] = kind.label
    result["received_credits"] = len(unreceived)
    if args.wait_final and result.get("status") != "rejected":
        view = wait_final(client, result["op_id"], args.timeout)
        result["status"] = view["status"]
    out.result(result, f"{result['status']} {result['op_id']}")
    return EXIT_OK


def cmd_wallet_send(args: argparse.Namespace, out: Output) -> int:
    to = resolve(NodeClient(args.node), args.to)
    return _wallet_submit(args, out, Kind.TRANSFER, to=to, amount=args.amount)


def cmd_wallet_burn(args: argparse.Namespace, out: Output) -> int:
    if not 0 < len(args.target.encode()) <= limits.BURN_TARGET_SIZE_BYTES_MAX:
        raise CliError(f"--target must be 1..{limits.BURN_TARGET_SIZE_BYTES_MAX} bytes", "usage")
    return _wallet_submit(args, out, Kind.BURN, amount=args.amount, target=args.target)


def cmd_wallet_claim(args: argparse.Namespace, out: Output) -> int:
    check_handle(args.handle)
    return _wallet_submit(args, out, Kind.HANDLE_CLAIM, handle=args.handle)


def cmd_wallet_grant(args: argparse.Namespace, out: Output) -> int:
    amount = args.amount
    if amount is None:
        amount = int(NodeClient(args.node).status().get("signup_reward", 0)) or None
    if amount is None:
        raise CliError("--amount is required", "usage")
    to = resolve(NodeClient(args.node), args.to)
    tester = crypto.account_id_text(to)
    if NodeClient(args.node).account(tester).get("granted"):
        raise CliError(f"{tester} already received the signup reward", "already_granted")
    try:
        return _wallet_submit(args, out, Kind.GRANT, to=to, amount=amount)
    except ClientError as exc:
        if exc.code in GRANT_CONFLICT_CODES:  # another grant to them won the race
            raise CliError(
                f"{tester} already received the signup reward [{exc.code}]", "already_granted"
            ) from None
        raise


#: Rejections of a grant that mean the tester got another grant first.
GRANT_CONFLICT_CODES = (RejectCode.GRANT_CONFLICT_LOST, RejectCode.GRANT_CONFLICT_LOST_FINAL)


def cmd_wallet_endorse(args: argparse.Namespace, out: Output) -> int:
    try:
        claim = bytes.fromhex(args.claim)
    except ValueError:
        claim = b""
    if len(claim) != limits.HASH_SIZE_BYTES:
        raise CliError("--claim must be a 32-byte op id in hex", "usage")
    return _wallet_submit(args, out, Kind.HANDLE_ENDORSE, claim=claim, deps=[claim])


def register(add: Add) -> None:
    wallet = add("wallet", no_handler, "wallet actions (keys, balance, send, burn, claim)")
    actions = nested(wallet, "wallet_action")
    new = sub(actions, "new", cmd_wallet_new, "create a wallet key file")
    new.add_argument("--out", required=True)
    new.add_argument("--force", action="store_true")
    wallet_read.register(actions)
    signed: list[tuple[str, Handler, str]] = [
        ("send", cmd_wallet_send, "transfer credits"),
        ("burn", cmd_wallet_burn, "burn credits toward a hype target"),
        ("claim", cmd_wallet_claim, "claim a handle"),
        ("grant", cmd_wallet_grant, "council: grant the signup reward"),
        ("endorse", cmd_wallet_endorse, "council: endorse a handle claim"),
    ]
    parsers = {}
    for name, handler, help_text in signed:
        parser = sub(actions, name, handler, help_text)
        parser.add_argument("--node", default="http://127.0.0.1:7000")
        parser.add_argument("--key", required=True, help="wallet key file")
        add_wait_arguments(parser)
        parsers[name] = parser
    parsers["send"].add_argument(
        "--to", required=True, type=account_or_handle, help="account id or @handle"
    )
    parsers["send"].add_argument("--amount", required=True, type=_amount)
    parsers["burn"].add_argument("--amount", required=True, type=_amount)
    parsers["burn"].add_argument("--target", required=True)
    parsers["claim"].add_argument("--handle", required=True)
    parsers["grant"].add_argument(
        "--to", required=True, type=account_or_handle, help="account id or @handle"
    )
    parsers["grant"].add_argument("--amount", type=_amount)
    parsers["endorse"].add_argument("--claim", required=True, help="claim op id (hex)")
