"""The public HTTP API (aiohttp, JSON) and the WebSocket event stream.

Routes (docs/parts/daemon.md is the reference):
  GET  /v1/status                   node, mode, heights, peers, sync lag, pool size, version
  GET  /v1/accounts/{account_id}    balance, spendable, seq, head, unreceived credit ids
  GET  /v1/handles/{name}           binding and open claims
  GET  /v1/ops/{op_id}              status and decoded view
  GET  /v1/checkpoints/{height}     bundle hex and cut fields ("latest" for the newest)
  POST /v1/ops                      a signed envelope; 202 once durable
  POST /v1/ops/batch                up to OPS_PER_BATCH_MAX envelopes (msgpack array); 202
                                    with one result per op once all are durable
  GET  /v1/events                   WebSocket of JSON events (optional ?account=, ?since=ID)
  GET  /metrics                     Prometheus ([metrics].path)
  GET  /v1/openapi.json             the OpenAPI 3.1 document of all of these (http/openapi.py)
plus the peer transports' routes (signaling, /v1/ws).

Every error is JSON `{"error": message, "code": stable code}`; no input crashes a handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from swarmd.protocol import consensus, crypto, encoding, limits
from swarmd.protocol.checkpoint import Cut
from swarmd.protocol.errors import ProtocolError
from swarmd.protocol.ledger import Outcome
from swarmd.protocol.ops import Op, check_handle, decode_op

from ..logs import get_logger
from ..metrics import CONTENT_TYPE
from ..runtime.driver import Daemon
from ..runtime.observe import telemetry_gauges
from ..web.routes import add_web_routes
from .body import parse_json
from .errors import ApiError, DaemonKey, Handler, call, error_response, route_name
from .openapi import OPENAPI_PATH, document

log = get_logger("swarmd.api")

#: Client IPs whose token buckets are remembered; the least recently seen are forgotten first
#: (a forgotten client starts again with a full bucket, which errs on the side of serving).
RATE_LIMIT_CLIENTS_MAX = 10_000
#: Events queued per WebSocket client; a client that falls this far behind is disconnected
#: (it can reconnect and read state) rather than holding memory for everyone.
EVENTS_QUEUED_PER_CLIENT_MAX = 1024
#: Unreceived credit ids listed in an account view (the count is always given).
UNRECEIVED_LISTED_MAX = 1024
#: Open claims listed per handle.
CLAIMS_LISTED_MAX = 64
#: Largest JSON body for the {"envelope": hex} form: the hex of the largest envelope plus room.
JSON_BODY_SIZE_BYTES_MAX = 2 * limits.OP_ENVELOPE_SIZE_BYTES_MAX + 1024
#: Days GET /v1/telemetry returns without `?days` (one rolling window).
TELEMETRY_DAYS_DEFAULT = 30


class RateLimiter:
    """A token bucket per client IP, bounded in the number of clients."""

    def __init__(self, per_s: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.per_s, self.burst, self.clock = per_s, float(burst), clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, client: str) -> bool:
        now = self.clock()
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.per_s)
        allowed = tokens >= 1
        self._buckets[client] = (tokens - 1 if allowed else tokens, now)
        while len(self._buckets) > RATE_LIMIT_CLIENTS_MAX:
            self._buckets.popitem(last=False)
        return allowed


def build_app(daemon: Daemon, *, extra_routes: bool = True) -> web.Application:
    """The public application, with the transports' routes mounted when `extra_routes`."""
    config = daemon.config
    limiter = RateLimiter(config.api.rate_limit_per_s, config.api.rate_limit_burst)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = route_name(request)
        client = request.remote or "unknown"
        if not limiter.allow(client):
            response: web.StreamResponse = error_response(
                429, "rate_limited", "too many requests from this address; slow down"
            )
        else:
            response = await call(request, handler)
        daemon.metrics.http_request(route, response.status)
        return response

    app = web.Application(client_max_size=config.api.request_size_bytes_max, middlewares=[guard])
    app[DaemonKey] = daemon
    app[_CLIENTS] = set()
    app.router.add_get("/v1/status", get_status)
    app.router.add_get("/v1/accounts/{account_id}", get_account)
    app.router.add_get("/v1/handles/{name}", get_handle)
    app.router.add_get("/v1/ops/{op_id}", get_op)
    app.router.add_get("/v1/checkpoints/{height}", get_checkpoint)
    app.router.add_post("/v1/ops", post_op)
    app.router.add_post("/v1/ops/batch", post_ops_batch)
    app.router.add_get("/v1/events", get_events)
    app.router.add_get("/v1/telemetry", get_telemetry)
    add_web_routes(app, daemon)
    app.router.add_get(OPENAPI_PATH, get_openapi)
    if config.metrics.enabled:
        app.router.add_get(config.metrics.path, get_metrics)
    if extra_routes:
        for transport in daemon.transports.values():
            app.add_routes(transport.routes)
        if daemon.exchange is not None:
            app.add_routes(daemon.exchange.routes)
    app.on_shutdown.append(_close_event_clients)
    return app


# --- reads -----------------------------------------------------------------------------------


def _daemon(request: web.Request) -> Daemon:
    return request.app[DaemonKey]


def _account_key(text: str) -> bytes:
    try:
        return crypto.parse_account_id(text)
    except ProtocolError as exc:
        raise ApiError(400, exc.code, f"not an account id: {exc.message}") from None


def _hash_param(text: str, name: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != limits.HASH_SIZE_BYTES:
        raise ApiError(400, f"bad_{name}", f"{name} must be {limits.HASH_SIZE_BYTES} bytes hex")
    return value


async def get_status(request: web.Request) -> web.Response:
    return web.json_response(_daemon(request).status())


async def get_account(request: web.Request) -> web.Response:
    daemon = _daemon(request)
    key = _account_key(request.match_info["account_id"])
    ledger = daemon.core.ledger
    account = ledger.state.accounts.get(key)
    final = ledger.final_state.accounts.get(key)
    unreceived = sorted(account.unreceived) if account else []
    return web.json_response(
        {
            "account": crypto.account_id_text(key),
            "balance": account.balance if account else 0,
            "spendable": account.spendable if account else 0,
            "final_balance": final.balance if final else 0,
            "seq": account.seq if account else 0,
            "head": account.head.hex() if account else "",
            "unreceived": [op_id.hex() for op_id in unreceived[:UNRECEIVED_LISTED_MAX]],
            "unreceived_count": len(unreceived),
            "council": key in daemon.genesis.council,
            "granted": account.granted if account else False,
        }
    )


async def get_handle(request: web.Request) -> web.Response:
    daemon = _daemon(request)
    name = request.match_info["name"]
    try:
        check_handle(name)
    except ProtocolError as exc:
        raise ApiError(400, exc.code, exc.message) from None
    state = daemon.core.ledger.state
    binding = state.bindings.get(name)
    final_binding = daemon.core.ledger.final_state.bindings.get(name)
    claims = [
        {
            "claim_id": claim_id.hex(),
            "claimant": crypto.account_id_text(claim.claimant),
            "endorsements": len(claim.endorsers),
        }
        for claim_id, claim in state.claims.items()
        if claim.handle == name
    ][:CLAIMS_LISTED_MAX]
    if binding is None and not claims:
        raise ApiError(404, "handle_not_found", f"no claim or binding for handle {name!r}")
    return web.json_response(
        {
            "handle": name,
            "owner": crypto.account_id_text(binding.owner) if binding else None,
            "claim_id": binding.claim_id.hex() if binding else None,
            "final": final_binding is not None and binding is not None,
            "claims": claims,
            "quorum": daemon.genesis.quorum,
        }
    )


async def get_op(request: web.Request) -> web.Response:
    daemon = _daemon(request)
    op_id = _hash_param(request.match_info["op_id"], "op_id")
    ledger = daemon.core.ledger
    status, code = ledger.status_of(op_id)
    op = ledger.op(op_id) or ledger.pending.get(op_id)
    if op is None and (status == "unknown" or daemon.core.rollbacks.is_reverted(op_id)):
        reverted = await _reverted_op(daemon, op_id)
        if reverted is not None:
            return web.json_response(reverted)
    if op is None and status in ("unknown", "applied"):
        # Final, its body and id out of the ledger's memory (FINAL_OP_BODIES_HEIGHTS_DAEMON):
        # the store has it, unless it was pruned. A logged op the ledger does not hold is
        # final when it is at or below its author's final seq (the ledger rejects a fork of
        # a final op; one it no longer remembers would read as final: ARCHITECTURE.md).
        op = await _stored_op(daemon, op_id)
        if op is not None and status == "unknown":
            if ledger.below_final_line(op):
                status = "final"
            else:
                op = None  # logged, not in the state (an expired pending op): not found
    if status in ("unknown", "applied") and op is None and await daemon.node_log.is_pruned(op_id):
        raise ApiError(
            410, "pruned", "the op is final and its body was pruned ([storage].retain_heights)"
        )
    if status == "unknown" and op is None:
        raise ApiError(404, "op_not_found", "no such op on this node")
    if status == "applied" and ledger.is_final(op_id):
        status = "final"
    return web.json_response(
        {
            "op_id": op_id.hex(),
            "status": status,
            "code": code,
            "op": op.describe() if op is not None else None,
        }
    )


async def _stored_op(daemon: Daemon, op_id: bytes) -> Op | None:
    """A logged op read from the store (None: not logged, or its body pruned)."""
    envelopes = await daemon.node_log.envelopes([op_id])
    if not envelopes:
        return None
    try:
        return decode_op(envelopes[0], op_id)
    except ProtocolError:
        return None


async def _reverted_op(daemon: Daemon, op_id: bytes) -> dict[str, Any] | None:
    """The view of an op a council rollback certificate reverted (from the store, so it
    survives a restart), or None."""
    if daemon.core.rollbacks.is_reverted(op_id):
        with contextlib.suppress(Exception):  # a failed commit: the store answers what it has
            await daemon.committer.barrier()  # its record may still be on its way
    record = await daemon.node_log.reverted_op(op_id)
    if record is None:
        return None
    op = None
    if record.envelope is not None:
        with contextlib.suppress(ProtocolError):
            op = decode_op(record.envelope, op_id).describe()
    return {
        "op_id": op_id.hex(),
        "status": "reverted",
        "code": "op_reverted",
        "op": op,
        "reverted": {"height": record.height, "epoch": record.epoch},
    }


async def get_checkpoint(request: web.Request) -> web.Response:
    daemon = _daemon(request)
    text = request.match_info["height"]
    if text == "latest":
        height = daemon.core.final_height
    else:
        try:
            height = int(text)
        except ValueError:
            raise ApiError(400, "bad_height", "height must be an integer or 'latest'") from None
        if height < 1:  # (heights start at 1: -5 is a bad request, not a missing checkpoint)
            raise ApiError(400, "bad_height", "height must be at least 1 or 'latest'")
    if height < 1:
        raise ApiError(404, "checkpoint_not_found", "no checkpoint yet")
    bundle = daemon.core.bundle(height)
    if bundle is None and height <= daemon.core.final_height:
        bundle = await daemon.node_log.get_bundle(height)
    if bundle is None and height < await daemon.node_log.pruned_through():
        raise ApiError(410, "pruned", f"the bundle of height {height} was pruned")
    if bundle is None:
        raise ApiError(404, "checkpoint_not_found", f"no checkpoint at height {height}")
    decoded = consensus.CheckpointBundle.decode(bundle)
    cut = Cut.decode(decoded.value)
    return web.json_response(
        {
            "height": cut.height,
            "round": decoded.round,
            "checkpoint_id": cut.checkpoint_id.hex(),
            "parent_id": cut.parent_id.hex(),
            "state_root": cut.state_root.hex(),
            "time_ms": cut.time_ms,
            "heads": [
                {"author": crypto.account_id_text(author), "seq": seq, "op_id": op_id.hex()}
                for author, seq, op_id in cut.heads
            ],
            "signers": [crypto.account_id_text(key) for key, _ in decoded.precommits],
            "bundle": bundle.hex(),
        }
    )


async def get_openapi(request: web.Request) -> web.Response:
    metrics = _daemon(request).config.metrics
    return web.json_response(document(metrics.path if metrics.enabled else None))


async def get_metrics(request: web.Request) -> web.Response:
    daemon = _daemon(request)
    metrics = daemon.metrics
    status = daemon.core.node_status()
    metrics.observe_status(status, asyncio.get_running_loop().time())
    metrics.set_peer_rtts(
        {
            crypto.account_id_text(peer_id): None if info.rtt_ms is None else info.rtt_ms / 1000
            for peer_id, info in daemon.peers().items()
        }
    )
    gauges = telemetry_gauges(metrics.registry)
    current = (status.epoch, await daemon.node_log.latest_height())
    if current != gauges.current:  # (a read of the telemetry rows only after a checkpoint)
        gauges.set(await daemon.node_log.telemetry(1))
        gauges.current = current
    return web.Response(body=daemon.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def get_telemetry(request: web.Request) -> web.Response:
    """Product telemetry from final state (protocol/telemetry.py): `?days=N` newest UTC days
    (default TELEMETRY_DAYS_DEFAULT, at most limits.TELEMETRY_DAYS_QUERY_MAX)."""
    text = request.query.get("days", str(TELEMETRY_DAYS_DEFAULT))
    if not text.isdigit() or not 1 <= int(text) <= limits.TELEMETRY_DAYS_QUERY_MAX:
        raise ApiError(
            400, "bad_days", f"days must be an integer in 1..{limits.TELEMETRY_DAYS_QUERY_MAX}"
        )
    return web.json_response(await _daemon(request).node_log.telemetry(int(text)))


# --- submit ----------------------------------------------------------------------------------


async def _read_envelope(request: web.Request) -> bytes:
    content_type = request.content_type
    body = await request.read()
    if content_type == "application/octet-stream":
        return body
    if content_type == "application/json":
        if len(body) > JSON_BODY_SIZE_BYTES_MAX:
            raise ApiError(400, "malformed_op", "envelope larger than the op size limit")
        value = parse_json(body, JSON_BODY_SIZE_BYTES_MAX)
        envelope_hex = value.get("envelope") if isinstance(value, dict) else None
        if not isinstance(envelope_hex, str):
            raise ApiError(400, "bad_request", 'expected {"envelope": "<hex>"}')
        try:
            return bytes.fromhex(envelope_hex)
        except ValueError as exc:
            raise ApiError(400, "bad_request", f'expected {{"envelope": "<hex>"}}: {exc}') from None
    raise ApiError(
        415,
        "unsupported_media_type",
        "send application/octet-stream (raw envelope) or application/json",
    )


async def post_op(request: web.Request) -> web.Response:
    daemon = _daemon(request)
    length = request.content_length
    if length is not None and length > daemon.config.api.request_size_bytes_max:
        raise ApiError(413, "request_too_large", "request body too large")
    envelope = await _read_envelope(request)
    try:
        outcome = await daemon.submit(envelope)
    except (ProtocolError, OSError, sqlite3.Error) as exc:
        code = getattr(exc, "code", "storage_error")
        raise ApiError(503, code, "the node could not store the op; try again later") from None
    body: dict[str, Any] = {"op_id": outcome.op_id.hex(), "status": outcome.status}
    if outcome.code:
        body["code"] = outcome.code
    if _refused(outcome):
        if outcome.code in ("read_only", "quiesced"):
            reason = daemon.core.mode_reason
            message = f"node is {outcome.code.replace('_', '-')}" + (
                f": {reason}" if reason else ""
            )
            raise ApiError(503, outcome.code, message, reason=reason)
        message = outcome.detail or outcome.code
        if outcome.status == "duplicate":
            message = f"this op was already rejected: {outcome.code}"
        raise ApiError(400, outcome.code, message, op_id=body["op_id"])
    return web.json_response(body, status=202)


#: Envelopes per batch submission: one commit and one HTTP round trip for all of them. The
#: request size limit ([api].request_size_bytes_max) bounds the bytes as well.
OPS_PER_BATCH_MAX = 512


async def post_ops_batch(request: web.Request) -> web.Response:
    """Submit many envelopes at once (`application/msgpack`: an array of byte strings).

    Each op gets its own result ({op_id, status[, code]}); rejected ops do not fail the batch.
    The response comes once every accepted op is durable (one group commit).
    """
    daemon = _daemon(request)
    length = request.content_length
    if length is not None and length > daemon.config.api.request_size_bytes_max:
        raise ApiError(413, "request_too_large", "request body too large")
    if request.content_type != "application/msgpack":
        raise ApiError(415, "unsupported_media_type", "send an application/msgpack array")
    data = await request.content.read(daemon.config.api.request_size_bytes_max + 1)
    if len(data) > daemon.config.api.request_size_bytes_max:
        raise ApiError(413, "request_too_large", "request body too large")
    try:
        envelopes = encoding.decode(data)
    except ProtocolError as exc:
        raise ApiError(
            400, "bad_request", f"body is not canonical msgpack: {exc.message}"
        ) from None
    if (
        type(envelopes) is not list
        or not 1 <= len(envelopes) <= OPS_PER_BATCH_MAX
        or not all(type(item) is bytes for item in envelopes)
    ):
        raise ApiError(400, "bad_request", f"send an array of 1..{OPS_PER_BATCH_MAX} envelopes")
    try:
        outcomes = await daemon.submit_many(envelopes)
    except (ProtocolError, OSError, sqlite3.Error) as exc:
        code = getattr(exc, "code", "storage_error")
        raise ApiError(503, code, "the node could not store the ops; try again later") from None
    if outcomes and all(o.code in ("read_only", "quiesced") for o in outcomes):
        code = outcomes[0].code
        raise ApiError(
            503, code, f"node is {code.replace('_', '-')}", reason=daemon.core.mode_reason
        )
    results = []
    for outcome in outcomes:
        result: dict[str, Any] = {"op_id": outcome.op_id.hex(), "status": outcome.status}
        if outcome.code:
            result["code"] = outcome.code
        results.append(result)
    if all(_refused(outcome) for outcome in outcomes):
        # Nothing was accepted: not a 202. The first op's code stands for the batch.
        code = outcomes[0].code
        raise ApiError(400, code, "every op of the batch was rejected", results=results)
    return web.json_response({"results": results}, status=202)


def _refused(outcome: Outcome) -> bool:
    """The op was rejected now, or is a re-submission of an op this node rejected before
    (answered as the rejection again, never as an accepted duplicate)."""
    return outcome.status == "rejected" or (
        outcome.status == "duplicate" and outcome.detail == "rejected"
    )


# --- events ----------------------------------------------------------------------------------

_CLIENTS = web.AppKey("event_clients", set["_EventClient"])


class _EventClient:
    """One event-stream subscriber. The daemon matches events to its account filter (raw
    keys) and calls it only with the events it should get."""

    def __init__(self, account: bytes | None) -> None:
        self.account = account
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(
            EVENTS_QUEUED_PER_CLIENT_MAX
        )
        self.overflowed = False

    def __call__(self, event: dict[str, Any]) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(None)


async def get_events(request: web.Request) -> web.StreamResponse:
    daemon = _daemon(request)
    account_text = request.query.get("account")
    account = None if account_text is None else _account_key(account_text)
    since = _since_param(request.query.get("since"))
    clients: set[_EventClient] = request.app[_CLIENTS]
    if len(clients) >= daemon.config.api.websocket_clients_max:
        raise ApiError(503, "too_many_subscribers", "event stream client limit reached")
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=4096)
    await ws.prepare(request)
    client = _EventClient(account)
    clients.add(client)
    # Replayed and subscribed in one step: no event can fall between the two.
    missed = [] if since is None else daemon.events.replay(since, account)
    daemon.add_listener(client, account)
    daemon.metrics.set_websocket_clients(len(clients))
    reader = asyncio.create_task(_drain_incoming(ws))
    try:
        subscribed = None if account is None else crypto.account_id_text(account)
        last_id = daemon.events.last_id
        await ws.send_json({"type": "subscribed", "account": subscribed, "last_id": last_id})
        for replayed in missed:
            await ws.send_json(replayed)
        while not ws.closed:
            getter = asyncio.create_task(client.queue.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            event = getter.result()
            if event is None:
                await ws.close(code=1008, message=b"slow consumer: events dropped")
                break
            await ws.send_json(event)
    except (ConnectionError, RuntimeError):
        pass  # the client went away mid-send
    finally:
        reader.cancel()
        daemon.remove_listener(client, account)
        clients.discard(client)
        daemon.metrics.set_websocket_clients(len(clients))
        await ws.close()
    return ws


def _since_param(text: str | None) -> int | None:
    """`?since=ID`: resume after the event with this id (0: from the oldest retained)."""
    if text is None:
        return None
    if not text.isdigit() or len(text) > 19:
        raise ApiError(400, "bad_since", "since must be an event id (a non-negative integer)")
    return int(text)


async def _drain_incoming(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) what the client sends, so close frames are processed."""
    async for message in ws:
        if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break


async def _close_event_clients(app: web.Application) -> None:
    clients: set[_EventClient] = app[_CLIENTS]
    for client in list(clients):
        with contextlib.suppress(asyncio.QueueFull):
            client.queue.put_nowait(None)
