"""Dialing the configured peers: until connected, and again whenever a peer is gone."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from swarmd.protocol.crypto import account_id_text
from swarmd.protocol.errors import LocalProtocolError, ProtocolError

from ..logs import get_logger
from ..transport import LinkTransport

log = get_logger("swarmd.dialer")

#: Dialing a configured peer: first retry delay and the cap (doubled per failure, jittered).
DIAL_BACKOFF_INITIAL_S = 0.25
DIAL_BACKOFF_MAX_S = 5.0


@dataclass
class DialState:
    """One configured peer as the dialer sees it (for `swarmd status`)."""

    url: str
    node_id: bytes | None
    failures: int = 0  # failed dials since the last success
    last_error: str = ""  # the error code of the last failed dial ("" when none since)
    last_error_detail: str = ""
    last_error_at: float | None = None  # wall clock (seconds since the epoch)


class Dialer:
    """One task per configured peer. `connected(node_id)` says whether a peer is connected now;
    `peer_changed()` is called by the driver whenever a peer comes or goes. `refusal(node_id)`
    names why a link to that node would be refused now (e.g. `peer_banned`): such a peer is
    not dialed, and is looked at again after the usual backoff."""

    def __init__(
        self,
        connected: Callable[[bytes], bool],
        refusal: Callable[[bytes], str | None] | None = None,
    ) -> None:
        self._connected = connected
        self._refusal = refusal
        self._peer_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: The configured peers in configuration order, with their last dial error.
        self.states: list[DialState] = []

    def dial(self, transport: LinkTransport, node_id: bytes | None, url: str) -> None:
        state = DialState(url, node_id)
        self.states.append(state)
        self._tasks.append(asyncio.create_task(self._keep_dialing(transport, state)))

    def peer_changed(self) -> None:
        self._peer_changed.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _keep_dialing(self, transport: LinkTransport, state: DialState) -> None:
        """Dial until connected, wait while connected, and again: one log line per failed
        dial (the transport's own re-dials of a lost link log below info)."""
        delay_s = DIAL_BACKOFF_INITIAL_S
        rng = random.Random()
        while True:
            if state.node_id is not None and self._connected(state.node_id):
                self._peer_changed.clear()
                await self._peer_changed.wait()
                continue
            refused = self._refused(state.node_id)
            try:
                if refused is not None:
                    raise DialRefusedError(f"not dialed: {refused}", code=refused)
                state.node_id = await transport.connect(state.node_id, state.url)
                state.failures = 0
                delay_s = DIAL_BACKOFF_INITIAL_S
                continue
            except (ProtocolError, OSError, TimeoutError) as exc:
                state.failures += 1
                state.last_error = getattr(exc, "code", type(exc).__name__)
                state.last_error_detail = str(exc)
                state.last_error_at = time.time()
            retry_s = delay_s * rng.uniform(0.5, 1.0)
            log.warning(
                "dial_failed",
                url=state.url,
                error=state.last_error,
                detail=state.last_error_detail,
                failures=state.failures,
                retry_in_s=round(retry_s, 3),
            )
            await asyncio.sleep(retry_s)
            delay_s = min(delay_s * 2, DIAL_BACKOFF_MAX_S)

    def _refused(self, node_id: bytes | None) -> str | None:
        if node_id is None or self._refusal is None:
            return None
        return self._refusal(node_id)


class DialRefusedError(LocalProtocolError):
    """We do not dial this peer now (its `code`: e.g. `peer_banned` until its ban ends)."""

    code = "dial_refused"


def dial_state_dict(state: DialState) -> dict[str, Any]:
    """`state` as JSON for /v1/status (`dial`)."""
    return {
        "url": state.url,
        "node_id": None if state.node_id is None else account_id_text(state.node_id),
        "failures": state.failures,
        "last_error": state.last_error or None,
        "last_error_detail": state.last_error_detail or None,
        "last_error_at": state.last_error_at,
    }
