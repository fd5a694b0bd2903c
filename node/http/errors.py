"""What the public API and the admin interface share: the JSON error shape
(`{"error": message, "code": stable code}`), the typed error handlers raise, and the wrapper
that turns any exception into that shape (no input crashes a handler)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..logs import get_logger
from ..runtime.driver import Daemon

log = get_logger("swarmd.api")

DaemonKey = web.AppKey("daemon", Daemon)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, "code": code, **extra}, status=status)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


async def call(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, **exc.extra)
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, "request_too_large", exc.text or "request body too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason)
    except Exception:
        # A bug, not bad input: logged with its traceback, answered in the API's own shape.
        log.exception("request_failed", route=route_name(request))
        return error_response(500, "internal_error", "internal error (logged by the node)")
