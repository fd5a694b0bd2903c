"""Dialing the configured peers: until connected, and again whenever a peer is gone."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from swarmd.protocol.errors import ProtocolError

from ..logs import get_logger
from ..transport import LinkTransport

log = get_logger("swarmd.dialer")

#: Dialing a configured peer: first retry delay and the cap (doubled per failure, jittered).
DIAL_BACKOFF_INITIAL_S = 0.25
DIAL_BACKOFF_MAX_S = 5.0


class Dialer:
    """One task per configured peer. `connected(node_id)` says whether a peer is connected now;
    `peer_changed()` is called by the driver whenever a peer comes or goes."""

    def __init__(self, connected: Callable[[bytes], bool]) -> None:
        self._connected = connected
        self._peer_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def dial(self, transport: LinkTransport, node_id: bytes | None, url: str) -> None:
        self._tasks.append(asyncio.create_task(self._keep_dialing(transport, node_id, url)))

    def peer_changed(self) -> None:
        self._peer_changed.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _keep_dialing(
        self, transport: LinkTransport, node_id: bytes | None, url: str
    ) -> None:
        delay_s = DIAL_BACKOFF_INITIAL_S
        rng = random.Random()
        while True:
            if node_id is not None and self._connected(node_id):
                self._peer_changed.clear()
                await self._peer_changed.wait()
                continue
            try:
                connected = await transport.connect(node_id, url)
                node_id = connected
                delay_s = DIAL_BACKOFF_INITIAL_S
                continue
            except (ProtocolError, OSError, TimeoutError) as exc:
                log.warning(
                    "dial_failed",
                    url=url,
                    error=getattr(exc, "code", type(exc).__name__),
                    detail=str(exc),
                )
            await asyncio.sleep(delay_s * rng.uniform(0.5, 1.0))
            delay_s = min(delay_s * 2, DIAL_BACKOFF_MAX_S)
