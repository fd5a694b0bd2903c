"""JSON errors of the web routes, in the API's shape: `{"error": message, "code": code}`."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebApiError(Exception):
    """An answer other than success; `code` is stable, `message` is for people."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def json_errors(handler: Handler) -> Handler:
    """Turn a raised WebApiError into the API's JSON error shape (the API's middleware turns
    everything else, including bugs, into the same shape)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except WebApiError as exc:
            body = {"error": exc.message, "code": exc.code, **exc.extra}
            return web.json_response(body, status=exc.status)

    return wrapped
