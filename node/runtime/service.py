"""The composition root: the daemon with its public HTTP API and admin interface.

`NodeService` opens the daemon (runtime/driver.py), serves http/api.py and http/admin.py, and
undoes it all in `stop`; `run_until_signalled` is `swarmd run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal

from aiohttp import web

from ..config import NodeConfig
from ..http.admin import build_admin_app, remove_cookie, write_cookie
from ..http.api import build_app
from ..http.server import JsonErrorRunner
from ..logs import get_logger
from ..metrics import NodeMetrics
from .driver import Daemon
from .errors import ListenError

log = get_logger("swarmd.daemon")


class NodeService:
    """Opens the daemon and serves its HTTP API and admin interface; `stop` undoes it all."""

    def __init__(self, config: NodeConfig, *, metrics: NodeMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.daemon: Daemon | None = None
        self.api_url = ""
        self.admin_url: str | None = None
        self._runners: list[web.AppRunner] = []
        self._token = ""

    async def start(self) -> Daemon:
        config = self.config
        daemon = self.daemon = await Daemon.open(config, metrics=self.metrics)
        try:
            daemon.create_transports()
            runner = JsonErrorRunner(build_app(daemon), access_log=None, shutdown_timeout=2.0)
            await runner.setup()
            self._runners.append(runner)
            await daemon.start()
            await _listen(web.TCPSite(runner, config.api.host, config.api.port))
            host, port = runner.addresses[0][:2]
            self.api_url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
            await self._serve_admin(daemon)
        except BaseException:
            await self.stop()
            raise
        log.info("node_ready", api=self.api_url, admin=self.admin_url, mode=daemon.core.mode.value)
        return daemon

    async def _serve_admin(self, daemon: Daemon) -> None:
        config = self.config
        self._token = write_cookie(config.admin.cookie_file)
        admin = JsonErrorRunner(build_admin_app(daemon, self._token), access_log=None)
        await admin.setup()
        self._runners.append(admin)
        if config.admin.port:
            await _listen(web.TCPSite(admin, config.admin.host, config.admin.port))
            self.admin_url = f"http://{config.admin.host}:{admin.addresses[0][1]}"
        if config.admin.unix_socket is not None:
            with contextlib.suppress(FileNotFoundError):
                config.admin.unix_socket.unlink()
            await _listen(web.UnixSite(admin, str(config.admin.unix_socket)))

    async def stop(self) -> None:
        if self._token:
            remove_cookie(self.config.admin.cookie_file, self._token)
            self._token = ""
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self.daemon is not None:
            daemon, self.daemon = self.daemon, None
            await daemon.stop()


async def _listen(site: web.BaseSite) -> None:
    """Start `site`; an address that cannot be listened on is a typed one-line refusal."""
    try:
        await site.start()
    except OSError as exc:
        where = site.name.removeprefix("http://").rstrip("/")
        code = "address_in_use" if exc.errno == errno.EADDRINUSE else "listen_failed"
        reason = exc.strerror or str(exc)
        raise ListenError(f"cannot listen on {where}: {reason}", code=code) from None


async def run_until_signalled(config: NodeConfig) -> None:
    """`swarmd run`: serve until SIGINT or SIGTERM, then stop cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    service = NodeService(config, metrics=NodeMetrics())
    await service.start()
    try:
        await stop.wait()
    finally:
        log.info("node_stopping")
        await service.stop()
