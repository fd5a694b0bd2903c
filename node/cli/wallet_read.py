"""`swarmd wallet show|balance|history|watch|hype|handle`: what a tester reads about accounts,
handles and hype targets through a node's public API (no key needed; `--key` names one's own
account). `watch` follows the node's event stream and can resume with `--since ID`."""

from __future__ import annotations

import argparse
import asyncio
import json
import urllib.parse
from typing import Any

import aiohttp

from swarmd.protocol import limits
from swarmd.protocol.ops import check_handle

from .addressing import account_or_handle, subject
from .client import ClientError, NodeClient
from .common import EXIT_OK, CliError, Output, positive_int, shown, sub

DEFAULT_NODE = "http://127.0.0.1:7000"
#: Leaderboard rows `hype` shows by default.
HYPE_TOP_DEFAULT = 10


def explain_balance(view: dict[str, Any]) -> str:
    """The account view in words: what "spendable" means and how credits become spendable."""
    balance, spendable = int(view["balance"]), int(view["spendable"])
    waiting = int(view.get("unreceived_count", len(view.get("unreceived", []))))
    lines = [
        f"account {view['account']}",
        f"balance {balance} (spendable {spendable}; final {view.get('final_balance', 0)})",
    ]
    if waiting:
        lines.append(
            f"{balance - spendable} of it arrived in {waiting} credit(s) not received yet: "
            "your next op (send, burn, claim) receives up to "
            f"{limits.OP_DEPS_MAX} of them and can spend them at once; "
            "after it they are spendable"
        )
    else:
        lines.append("every credit is received: all of the balance is spendable")
    lines.append(
        "final: settled by a council checkpoint; the rest is provisional (it may still change)"
    )
    return "\n".join(lines)


def cmd_wallet_show(args: argparse.Namespace, out: Output) -> int:
    client = NodeClient(args.node)
    view = client.account(subject(client, args))
    view["explained"] = explain_balance(view)
    out.result(view, view["explained"])
    return EXIT_OK


def cmd_wallet_history(args: argparse.Namespace, out: Output) -> int:
    client = NodeClient(args.node)
    account = subject(client, args)
    query = {"limit": str(args.limit)}
    if args.cursor:
        query["cursor"] = args.cursor
    path = f"/v1/accounts/{urllib.parse.quote(account)}/ops?{urllib.parse.urlencode(query)}"
    page: dict[str, Any] = client.get(path)
    lines = [_history_line(entry) for entry in page["ops"]] or ["no ops yet"]
    if page.get("next_cursor"):
        lines.append(f"more: --cursor {page['next_cursor']}")
    out.result(page, "\n".join(lines))
    return EXIT_OK


def _history_line(entry: dict[str, Any]) -> str:
    op = entry.get("op") or {}
    words = [f"#{op.get('seq', '?')}", str(op.get("kind", "?")), str(entry["status"])]
    if entry.get("code"):
        words.append(f"[{entry['code']}]")
    for field in ("amount", "to", "target", "handle"):
        if op.get(field) not in (None, ""):
            words.append(f"{field}={shown(op[field])}")
    words.append(str(op.get("op_id", ""))[:16])
    return " ".join(words)


def cmd_wallet_hype(args: argparse.Namespace, out: Output) -> int:
    client = NodeClient(args.node)
    if args.target is not None:
        view: dict[str, Any] = client.get(f"/v1/hype/{urllib.parse.quote(args.target, safe='')}")
        out.result(view, f"{view['target']!r}: {view['total']} (final {view['final_total']})")
        return EXIT_OK
    board: dict[str, Any] = client.get(f"/v1/hype?top={args.top}")
    lines = [
        f"{rank:>3}. {row['total']:>8} (final {row['final_total']})  {row['target']!r}"
        for rank, row in enumerate(board["targets"], 1)
    ] or ["nothing burned yet"]
    lines.append(f"{board['burned']} burned toward {board['target_count']} targets")
    out.result(board, "\n".join(lines))
    return EXIT_OK


def cmd_wallet_handle(args: argparse.Namespace, out: Output) -> int:
    name = args.name.removeprefix("@")
    check_handle(name)
    try:
        view: dict[str, Any] = NodeClient(args.node).get(f"/v1/handles/{name}")
    except ClientError as exc:
        if exc.code != "handle_not_found":
            raise
        view = {"handle": name, "owner": None, "claim_id": None, "final": False, "claims": []}
    if view["owner"]:
        state = "final" if view["final"] else "provisional"
        text = f"@{name} is bound to {view['owner']} ({state})"
    elif view["claims"]:
        text = f"@{name} is claimed, not bound yet ({view.get('quorum')} endorsements bind it)"
    else:
        text = f"@{name} is free"
    claims = [
        f"  claim {c['claim_id'][:16]} by {c['claimant']}: {c['endorsements']} endorsements"
        for c in view["claims"]
    ]
    out.result(view, "\n".join([text, *claims]))
    return EXIT_OK


def cmd_wallet_watch(args: argparse.Namespace, out: Output) -> int:
    client = NodeClient(args.node)
    account = subject(client, args) if (args.account or args.key) else None
    query: dict[str, str] = {}
    if account is not None:
        query["account"] = account
    if args.since is not None:
        query["since"] = str(args.since)
    url = client.url.replace("http", "ws", 1) + "/v1/events"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    seen = asyncio.run(_watch(url, args, out))
    if not out.as_json:
        print(f"{seen['events']} events; resume with --since {seen['last_id']}")
    return EXIT_OK


#: Event ids are non-negative 64-bit signed integers (node/http/events.py).
EVENT_ID_MAX = 2**63 - 1


async def _watch(url: str, args: argparse.Namespace, out: Output) -> dict[str, Any]:
    """Print each event (one JSON object a line with --json) until --count or --timeout."""
    seen = {"events": 0, "last_id": args.since or 0}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url) as ws,
            asyncio.timeout(args.timeout),
        ):
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                event = json.loads(message.data)
                if event.get("type") == "subscribed":
                    seen["last_id"] = max(seen["last_id"], int(event.get("last_id") or 0))
                    continue
                seen["events"] += 1
                seen["last_id"] = event.get("id", seen["last_id"])
                if out.as_json:
                    print(json.dumps(event, sort_keys=True), flush=True)
                else:
                    print(_event_line(event), flush=True)
                if args.count is not None and seen["events"] >= args.count:
                    break
    except TimeoutError:
        pass  # --timeout: the watch ends normally
    except aiohttp.WSServerHandshakeError as exc:
        refusal = f"the node refused the event stream: HTTP {exc.status}"
        raise CliError(refusal, "http_error") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise ClientError(f"cannot reach node at {url}: {exc}", code="node_unreachable") from None
    return seen


def event_id(text: str) -> int:
    """An event id as the node takes it in `?since=` (0..2**63-1); the node would refuse any
    other with a 400 the WebSocket handshake cannot carry the code of."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an event id (an integer)") from None
    if not 0 <= value <= EVENT_ID_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is not an event id (0..2**63-1)")
    return value


def _event_line(event: dict[str, Any]) -> str:
    fields = {k: v for k, v in event.items() if k not in ("type", "id", "accounts")}
    detail = " ".join(f"{key}={shown(value)}" for key, value in fields.items())
    return shown(f"#{event.get('id', '-')} {event['type']} {detail}")


def register(actions: Any) -> None:
    """Add the read commands to the `wallet` group."""
    read: list[tuple[str, Any, str]] = [
        ("show", cmd_wallet_show, "show an account and what its balance means"),
        ("balance", cmd_wallet_show, "the same as show"),
        ("history", cmd_wallet_history, "an account's ops, newest first"),
        ("watch", cmd_wallet_watch, "print the node's events (an account's, or all)"),
    ]
    for name, handler, help_text in read:
        parser = sub(actions, name, handler, help_text)
        parser.add_argument("--node", default=DEFAULT_NODE)
        parser.add_argument(
            "account", nargs="?", type=account_or_handle, help="account id or @handle"
        )
        parser.add_argument("--key", help="wallet key file: its account")
        if name == "history":
            parser.add_argument("--cursor", help="next_cursor of the previous page")
            parser.add_argument("--limit", type=positive_int, default=20)
        if name == "watch":
            parser.add_argument("--since", type=event_id, help="resume after this event id")
            parser.add_argument("--count", type=positive_int, help="stop after N events")
            parser.add_argument("--timeout", type=float, default=None, help="stop after S s")
    hype = sub(actions, "hype", cmd_wallet_hype, "the hype leaderboard, or one target")
    hype.add_argument("--node", default=DEFAULT_NODE)
    hype.add_argument("--top", type=positive_int, default=HYPE_TOP_DEFAULT)
    hype.add_argument("target", nargs="?")
    handle = sub(actions, "handle", cmd_wallet_handle, "who a handle is bound to, its claims")
    handle.add_argument("--node", default=DEFAULT_NODE)
    handle.add_argument("name", help="handle (with or without @)")
