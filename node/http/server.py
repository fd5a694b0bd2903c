"""The runner that serves the public API and the admin interface.

aiohttp answers a request it cannot parse (a 16 KB request line, 200 headers, garbage on the
port) itself, before any middleware runs: plain text, and an "Error handling request"
traceback in the log for every such request. `JsonErrorRunner` answers those in the API's one
JSON error shape and logs one line without a traceback (bad input is not a bug of ours).

aiohttp builds its protocol objects itself, so the override is a subclass of its
`RequestHandler` (`handle_error` is its documented hook) installed on the objects the runner
and server create; neither subclass adds state.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from ..logs import get_logger
from .errors import error_response

log = get_logger("swarmd.api")

#: Stable codes of the errors aiohttp's parser reports (anything else: `bad_http_request`).
_CODES = {400: "bad_http_request", 413: "request_too_large", 431: "headers_too_large"}


class _JsonErrorHandler(RequestHandler):
    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            log.error("request_failed", status=status, error=repr(exc))
            code, text = "internal_error", "internal error (logged by the node)"
        else:
            code = _CODES.get(status, "bad_http_request")
            text = message or HTTPStatus(status).phrase
            log.info("bad_http_request", status=status, error=text[:200], peer=request.remote)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        response = error_response(status, code, text)
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        handler.__class__ = _JsonErrorHandler
        return handler


class JsonErrorRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer unparseable requests in the JSON shape."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer
        return server
