"""Serving the web wallet at `/`, on the API's origin, from the built `dist/` folder.

Only the files the build writes are served (a fixed list, so no request path reaches the file
system). Every response carries a Content-Security-Policy that allows scripts, styles and
connections to this origin only, so even a rendering bug could not load or send anything
elsewhere; the app never uses innerHTML either.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ..runtime.driver import Daemon
from .api_routes import add_api_routes
from .errors import Handler, WebApiError, json_errors

DIST = Path(__file__).with_name("dist")
#: The built files and their content types (what build.mjs writes).
ASSETS = {
    "app.js": "text/javascript",
    "app.js.map": "application/json",
    "app.css": "text/css",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' blob: data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The page is small and changes with the node's version: always revalidate.
    "Cache-Control": "no-cache",
}


def add_web_routes(app: web.Application, daemon: Daemon, *, dist: Path = DIST) -> None:
    """Mount the wallet page, its assets and the JSON routes it needs on the public app."""
    app.router.add_get("/", _file_handler(dist / "index.html", "text/html"))
    for name, content_type in ASSETS.items():
        app.router.add_get(f"/{name}", _file_handler(dist / name, content_type))
    add_api_routes(app, daemon)


def _file_handler(path: Path, content_type: str) -> Handler:
    """Serve one built file, read once (they are small) so no request blocks on the disk; a
    rebuilt app is served after the node restarts."""
    cached: list[bytes] = []

    @json_errors
    async def get_file(request: web.Request) -> web.StreamResponse:
        if not cached:
            try:
                cached.append(path.read_bytes())
            except FileNotFoundError:
                raise WebApiError(
                    503,
                    "web_app_not_built",
                    "the web wallet is not built: run `make` (npm run build)",
                ) from None
        body = cached[0]
        return web.Response(
            body=body, content_type=content_type, charset="utf-8", headers=SECURITY_HEADERS
        )

    return get_file
