"""The admin interface: loopback TCP and/or a unix socket, guarded by a cookie token.

At every start the daemon writes a fresh random token to `[admin].cookie_file` (mode 0600,
like Bitcoin Core's `.cookie`) and removes it at a clean stop. Admin clients read that file
and send `Authorization: Bearer <token>`; anything else gets 401.

Routes:
  POST /v1/admin/mode   {"mode": "normal" | "read-only" | "quiesced", "reason": "..."}
  GET  /v1/admin/status the public status (handy when the public API is firewalled)
  /v1/admin/council...  council broadcasts signed by the node's key, and the council's votes
                        (http/admin_council.py)
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from aiohttp import web

from swarmd.protocol import limits
from swarmd.protocol.node_core import Mode

from ..runtime.driver import Daemon
from .admin_council import add_council_routes
from .body import read_json_object
from .errors import ApiError, DaemonKey, Handler, call, error_response

#: Admin request bodies are tiny JSON objects (room for the bound's own 413 answer).
ADMIN_REQUEST_SIZE_BYTES_MAX = 2 * limits.ADMIN_JSON_BODY_SIZE_BYTES_MAX
#: Random bytes of the token (hex in the file).
COOKIE_TOKEN_BYTES = 32

_TokenKey = web.AppKey("admin_token", str)


def write_cookie(path: Path) -> str:
    """Write a fresh token to `path` (0600, replacing any old file) and return it."""
    token = secrets.token_hex(COOKIE_TOKEN_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    os.replace(temporary, path)
    return token


def remove_cookie(path: Path, token: str) -> None:
    """Remove the cookie if it still holds our token (a newer daemon may have replaced it)."""
    with contextlib.suppress(OSError):
        if path.read_text().strip() == token:
            path.unlink()


def build_admin_app(daemon: Daemon, token: str) -> web.Application:
    @web.middleware
    async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme != "Bearer" or not secrets.compare_digest(given.strip(), token):
            return error_response(401, "unauthorized", "missing or wrong admin token")
        return await call(request, handler)

    app = web.Application(client_max_size=ADMIN_REQUEST_SIZE_BYTES_MAX, middlewares=[authorize])
    app[DaemonKey] = daemon
    app[_TokenKey] = token
    app.router.add_post("/v1/admin/mode", post_mode)
    app.router.add_get("/v1/admin/status", get_admin_status)
    add_council_routes(app)
    return app


async def post_mode(request: web.Request) -> web.Response:
    daemon = request.app[DaemonKey]
    value = await read_json_object(request, limits.ADMIN_JSON_BODY_SIZE_BYTES_MAX)
    try:
        mode = Mode(str(value.get("mode")))
    except ValueError:
        modes = ", ".join(m.value for m in Mode)
        raise ApiError(400, "bad_mode", f"mode must be one of {modes}") from None
    reason = value.get("reason", "")
    if not isinstance(reason, str) or len(reason.encode()) > limits.REASON_SIZE_BYTES_MAX:
        raise ApiError(
            400,
            "bad_reason",
            f"reason must be text of at most {limits.REASON_SIZE_BYTES_MAX} bytes",
        )
    await daemon.set_mode(mode, reason)
    status = daemon.status()
    return web.json_response({"mode": status["mode"], "mode_reason": status["mode_reason"]})


async def get_admin_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[DaemonKey].status())
