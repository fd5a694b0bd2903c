"""JSON routes the web wallet needs that the core API does not have (open to any client).

  GET  /v1/genesis                    the genesis file (the browser recomputes the network id)
  GET  /v1/hype?top=N                 the leaderboard: targets by live total, with final totals
  GET  /v1/hype/{target}              one target's live and final totals
  GET  /v1/accounts/{id}/ops?cursor=  the account's own ops, newest first, a page at a time
  GET  /v1/onboarding                 whether this node runs onboarding, and its puzzle cost
  POST /v1/onboarding/signup          the signup reward for a new account (see onboarding.py)

They read the daemon's ledger and store through their public methods only.
"""

from __future__ import annotations

import heapq
import json
from typing import Any

from aiohttp import web

from swarmd.protocol import crypto, limits
from swarmd.protocol.errors import ProtocolError
from swarmd.protocol.ops import Op, decode_op

from ..http.body import json_depth
from ..runtime.driver import Daemon
from .errors import WebApiError, json_errors
from .onboarding import Onboarding

#: Targets one leaderboard request may ask for (sorting is O(targets log N) per request).
HYPE_TOP_MAX = 100
HYPE_TOP_DEFAULT = 10
#: Ops per history page: each older op may cost one store read.
HISTORY_PAGE_OPS_MAX = 100
HISTORY_PAGE_OPS_DEFAULT = 20
#: Largest signup request body (an account id and a nonce).
SIGNUP_BODY_SIZE_BYTES_MAX = 1024

DaemonKey = web.AppKey("web_daemon", Daemon)
OnboardingKey = web.AppKey("web_onboarding", Onboarding)


def add_api_routes(app: web.Application, daemon: Daemon) -> None:
    app[DaemonKey] = daemon
    app[OnboardingKey] = Onboarding(daemon)
    app.router.add_get("/v1/genesis", get_genesis)
    app.router.add_get("/v1/hype", get_hype)
    app.router.add_get("/v1/hype/{target}", get_hype_target)
    app.router.add_get("/v1/accounts/{account_id}/ops", get_account_ops)
    app.router.add_get("/v1/onboarding", get_onboarding)
    app.router.add_post("/v1/onboarding/signup", post_signup)


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise WebApiError(400, f"bad_{name}", f"{name} must be an integer {low}..{high}")
    return value


def _account_key(text: str) -> bytes:
    try:
        return crypto.parse_account_id(text)
    except ProtocolError as exc:
        raise WebApiError(400, exc.code, f"not an account id: {exc.message}") from None


@json_errors
async def get_genesis(request: web.Request) -> web.Response:
    # Exactly the genesis file, so the browser's hash of it is the network id (nothing added).
    return web.Response(
        text=request.app[DaemonKey].genesis.to_json(), content_type="application/json"
    )


@json_errors
async def get_hype(request: web.Request) -> web.Response:
    ledger = request.app[DaemonKey].core.ledger
    top = _int_query(request, "top", HYPE_TOP_DEFAULT, 1, HYPE_TOP_MAX)
    live, final = ledger.state.burn_tallies, ledger.final_state.burn_tallies
    # Ties go to the target that sorts first, so every node shows the same order.
    best = heapq.nsmallest(top, live.items(), key=lambda item: (-item[1], item[0]))
    return web.json_response(
        {
            "targets": [
                {"target": target, "total": total, "final_total": final.get(target, 0)}
                for target, total in best
            ],
            "target_count": len(live),
            "burned": sum(live.values()),
        }
    )


@json_errors
async def get_hype_target(request: web.Request) -> web.Response:
    ledger = request.app[DaemonKey].core.ledger
    target = request.match_info["target"]
    if not target or len(target.encode()) > limits.BURN_TARGET_SIZE_BYTES_MAX:
        raise WebApiError(400, "bad_target", "a target is 1..128 bytes of text")
    total = ledger.state.burn_tallies.get(target)
    if total is None:
        raise WebApiError(404, "target_not_found", "nothing was burned toward this target")
    final_total = ledger.final_state.burn_tallies.get(target, 0)
    return web.json_response({"target": target, "total": total, "final_total": final_total})


@json_errors
async def get_account_ops(request: web.Request) -> web.Response:
    """The account's chain, newest first: from its head (or `cursor`, an op id of that chain
    returned as `next_cursor` by the previous page) back along each op's `prev`."""
    daemon = request.app[DaemonKey]
    key = _account_key(request.match_info["account_id"])
    limit = _int_query(request, "limit", HISTORY_PAGE_OPS_DEFAULT, 1, HISTORY_PAGE_OPS_MAX)
    cursor = request.query.get("cursor")
    if cursor:
        try:
            next_id = bytes.fromhex(cursor)
        except ValueError:
            next_id = b""
        if len(next_id) != limits.HASH_SIZE_BYTES:
            raise WebApiError(400, "bad_cursor", "cursor must be an op id (hex) from a page")
    else:
        account = daemon.core.ledger.state.accounts.get(key)
        next_id = account.head if account else b""
    ops: list[dict[str, Any]] = []
    while next_id and len(ops) < limit:
        found = await _find_op(daemon, next_id)
        if found is None or found[0].author != key:
            raise WebApiError(404, "op_not_found", "the cursor names no op of this account")
        op, stored_status = found
        ops.append(_history_entry(daemon, op, stored_status))
        next_id = op.prev
    return web.json_response(
        {
            "account": crypto.account_id_text(key),
            "ops": ops,
            "next_cursor": next_id.hex() if next_id else None,
        }
    )


async def _find_op(daemon: Daemon, op_id: bytes) -> tuple[Op, str] | None:
    """The op from the ledger's memory, else from the store (final ops leave memory)."""
    ledger = daemon.core.ledger
    op = ledger.op(op_id) or ledger.pending.get(op_id)
    if op is not None:
        return op, ""
    # NodeLog has no op read; its StoreLog implementation exposes the OpStore (public).
    store = getattr(daemon.node_log, "store", None)
    if store is None:
        return None
    logged = await store.get_op(op_id)
    if logged is None or not logged.envelope:  # (an empty envelope: pruned, nothing to show)
        return None
    return decode_op(logged.envelope, op_id), logged.status.name.lower()


def _history_entry(daemon: Daemon, op: Op, stored_status: str) -> dict[str, Any]:
    ledger = daemon.core.ledger
    status, code = ledger.status_of(op.op_id)
    if status == "unknown" and stored_status:
        status = stored_status
        if status == "applied" and ledger.below_final_line(op):
            status = "final"  # final, its id out of the ledger's memory (issue 13)
    if status == "applied" and ledger.is_final(op.op_id):
        status = "final"
    return {"status": status, "code": code, "op": op.describe()}


@json_errors
async def get_onboarding(request: web.Request) -> web.Response:
    return web.json_response(request.app[OnboardingKey].describe())


@json_errors
async def post_signup(request: web.Request) -> web.Response:
    length = request.content_length
    if length is not None and length > SIGNUP_BODY_SIZE_BYTES_MAX:
        raise WebApiError(413, "request_too_large", "request body too large")
    raw = await request.content.read(SIGNUP_BODY_SIZE_BYTES_MAX + 1)
    if len(raw) > SIGNUP_BODY_SIZE_BYTES_MAX:
        raise WebApiError(413, "request_too_large", "request body too large")
    if json_depth(raw) > limits.JSON_BODY_DEPTH_MAX:
        raise WebApiError(
            400, "json_too_deep", f"JSON nested deeper than {limits.JSON_BODY_DEPTH_MAX}"
        )
    expected = 'expected {"account": id, "nonce": int} or {"account": id, "invite": code}'
    try:
        value = json.loads(raw)
        account, nonce, invite = value["account"], value.get("nonce"), value.get("invite")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise WebApiError(400, "bad_request", expected) from None
    if nonce is None and invite is None:
        raise WebApiError(400, "bad_request", expected)
    if nonce is not None and (type(nonce) is not int or not 0 <= nonce < 2**64):
        raise WebApiError(400, "bad_request", "nonce must be an integer 0..2**64-1")
    if invite is not None and not isinstance(invite, str):
        raise WebApiError(400, "bad_request", "invite must be a code (text)")
    if not isinstance(account, str):
        raise WebApiError(400, "bad_request", "account must be an account id")
    result = await request.app[OnboardingKey].signup(
        _account_key(account), nonce, request.remote or "unknown", invite
    )
    return web.json_response(result, status=202)
