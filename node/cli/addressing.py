"""Who a wallet command is about, and waiting for an op to become final.

`--to @handle` (and every other place an account is taken) resolves the handle through the
node's `GET /v1/handles/{name}`: an unclaimed or not yet bound handle is a typed refusal
(`handle_unbound`, exit 1), never a guess. `--wait-final` polls `GET /v1/ops/{id}` until the
op is final (exit 0), rejected or reverted (exit 1 with its code), or the timeout passes
(`wait_timeout`, exit 1).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from swarmd.protocol import crypto
from swarmd.protocol.errors import ProtocolError
from swarmd.protocol.ops import check_handle

from .client import ClientError, NodeClient
from .common import CliError, load_key_file

#: Seconds between two polls of an op's status while waiting for finality (a checkpoint
#: takes ~1 s on a devnet; the poll is one small GET).
WAIT_POLL_S = 0.2
#: Default bound of `--wait-final`, in seconds (`--timeout` changes it).
WAIT_TIMEOUT_S_DEFAULT = 60.0
#: Statuses after which an op will never become final.
FAILED_STATUSES = ("rejected", "reverted")


def account_or_handle(text: str) -> str:
    """argparse type: an account id (checksum checked) or `@handle` (syntax checked)."""
    if text.startswith("@"):
        try:
            check_handle(text[1:])
        except ProtocolError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not a handle: {exc.message}") from None
        return text
    try:
        crypto.parse_account_id(text)
    except ProtocolError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an account id or @handle: {exc.message}"
        ) from None
    return text


def resolve(client: NodeClient, text: str) -> bytes:
    """The raw account key `text` (an account id or `@handle`) names on this node."""
    if not text.startswith("@"):
        return crypto.parse_account_id(text)
    name = text[1:]
    try:
        view = client.get(f"/v1/handles/{name}")
    except ClientError as exc:
        if exc.code == "handle_not_found":
            raise CliError(f"@{name} is not claimed by anyone", "handle_unbound") from None
        raise
    if not view.get("owner"):
        claims = len(view.get("claims", []))
        raise CliError(
            f"@{name} is claimed ({claims} open claims) but not bound to anyone yet",
            "handle_unbound",
        )
    return crypto.parse_account_id(str(view["owner"]))


def subject(client: NodeClient, args: argparse.Namespace) -> str:
    """The account id a read command is about: its ACCOUNT argument or the --key file's."""
    if args.account is not None:
        return crypto.account_id_text(resolve(client, args.account))
    if args.key is not None:
        return load_key_file(Path(args.key)).account_id
    raise CliError("give an account id, an @handle or --key", "usage", usage=True)


def add_wait_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait-final", action="store_true", help="wait until the op is final (exit 1 if not)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=WAIT_TIMEOUT_S_DEFAULT,
        help=f"seconds --wait-final waits (default {WAIT_TIMEOUT_S_DEFAULT:g})",
    )


def wait_final(client: NodeClient, op_id: str, timeout_s: float) -> dict[str, Any]:
    """Poll the op until it is final; its view. Raises CliError with the op's code when it
    is rejected or reverted, `wait_timeout` when `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {"status": "unknown", "code": ""}
    while True:
        try:
            view: dict[str, Any] = client.get(f"/v1/ops/{op_id}")
        except ClientError as exc:
            if exc.code != "op_not_found":
                raise
            view = {"status": "unknown", "code": ""}
        status, code = str(view.get("status")), str(view.get("code") or "")
        if status == "final":
            return view
        if status in FAILED_STATUSES:
            raise CliError(f"op {op_id} was {status}: {code or status}", code or status)
        last = view
        if time.monotonic() >= deadline:
            raise CliError(
                f"op {op_id} not final after {timeout_s:g} s (last status {last['status']}"
                + (f", {last['code']}" if last.get("code") else "")
                + ")",
                "wait_timeout",
            )
        time.sleep(WAIT_POLL_S)
