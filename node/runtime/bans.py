"""Misbehaviour costs in the daemon: the core's bans kept across restarts, and admission.

The core (protocol/node_core/peers.py) drops a peer whose score falls to PEER_SCORE_MIN and
bans its node id; this shell side then closes that peer's link, writes every ban to the store
(`peer_bans`, wall-clock expiry: a ban outlives the process) and, at start, hands the stored
bans back to the core. `admit` is what the transports ask on every inbound handshake: a banned
id gets `peer_banned`, an id a sentry does not list `peer_not_allowed`, and one for whom no
slot of its kind is free `signal_busy` (typed errors, docs/parts/transport.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from swarmd.protocol import crypto
from swarmd.protocol.node_core import NodeCore, PeerMisbehaved
from swarmd.protocol.node_core.peers import REFUSED_BANNED, REFUSED_NOT_ALLOWED, REFUSED_SELF

from ..logs import get_logger
from ..transport.errors import (
    SignalBannedError,
    SignalBusyError,
    SignalNotAllowedError,
    SignalWrongPeerError,
)
from .persistence import NodeLog, StoreLog

log = get_logger("swarmd.daemon")


class PeerGuard:
    """Persists and restores the core's bans; answers the transports' admission question.

    `close_link(peer_id)` closes a peer's link (the driver's transports)."""

    def __init__(
        self, core: NodeCore, node_log: NodeLog, close_link: Callable[[bytes], None]
    ) -> None:
        self.core = core
        self._store: Any = node_log.store if isinstance(node_log, StoreLog) else None
        self._api: Any = node_log.api if isinstance(node_log, StoreLog) else None
        self._close_link = close_link
        self._loop = asyncio.get_running_loop()
        self._writing: asyncio.Task[None] | None = None
        self._dirty = False
        self.bans_restored = 0
        #: Link closes in flight (kept referenced until done).
        self._closing: set[asyncio.Task[None]] = set()

    async def restore(self) -> int:
        """Hand the stored bans to the core (expired ones too: their count keeps doubling)."""
        if self._store is None:
            return 0
        now_wall, now = time.time(), self._loop.time()
        for row in await self._store.load_peer_bans():
            until = now + (row.until_ms / 1000.0 - now_wall)
            self.core.peer_rules.restore_ban(row.node_id, until, row.bans)
        self.bans_restored = len(self.core.peer_rules.bans)
        return self.bans_restored

    def admit(self, peer_id: bytes) -> None:
        """Raise the typed refusal of a new link to `peer_id`, or return when it may come."""
        code = self.core.peer_rules.refusal(peer_id, self._loop.time())
        if code is None:
            return
        if code == REFUSED_BANNED:
            raise SignalBannedError("this node id is banned here for misbehaviour")
        if code == REFUSED_NOT_ALLOWED:
            raise SignalNotAllowedError("this node accepts only its configured peers")
        if code == REFUSED_SELF:
            raise SignalWrongPeerError("signaling message comes from our own node id")
        raise SignalBusyError(f"no free peer slot ({code})")

    def status(self, exchange: Any) -> dict[str, Any]:
        """Bans in force and remembered, and the peer exchange's counters (None when off)."""
        now = self._loop.time()
        bans = self.core.peer_rules.bans
        return {
            "bans_active": sum(1 for ban in bans.values() if ban.until > now),
            "bans_remembered": len(bans),
            "address_book": None if exchange is None else len(exchange.book),
            "exchange_rounds": None if exchange is None else exchange.rounds,
            "exchange_dials": None if exchange is None else exchange.dials,
            "anchor_dials": None if exchange is None else exchange.anchor_dials,
            "inbound_refused": None if exchange is None else exchange.inbound_refused,
        }

    def refusal(self, peer_id: bytes) -> str | None:
        """The core's refusal code for a link to `peer_id` now (the dialer asks it)."""
        return self.core.peer_rules.refusal(peer_id, self._loop.time())

    def misbehaved(self, event: PeerMisbehaved) -> None:
        """The core dropped and banned `event.peer`: close its link and store the bans."""
        ban = self.core.peer_rules.bans.get(event.peer)
        log.warning(
            "peer_banned",
            peer=crypto.account_id_text(event.peer),
            code=event.code,
            bans=None if ban is None else ban.count,
            ban_s=None if ban is None else round(ban.until - self._loop.time(), 3),
        )
        self._close_link(event.peer)
        self._save_soon()

    def spawn(self, closing: Coroutine[Any, Any, None]) -> None:
        """Run a link close in the background, referenced until it is done."""
        task = asyncio.create_task(closing)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def stop(self) -> None:
        """Wait for the link closes and the ban write in flight (and the one queued)."""
        await asyncio.gather(*self._closing, return_exceptions=True)
        while self._writing is not None:
            await asyncio.gather(self._writing, return_exceptions=True)

    def _save_soon(self) -> None:
        if self._store is None:
            return
        self._dirty = True
        if self._writing is None:
            self._writing = asyncio.create_task(self._save())

    async def _save(self) -> None:
        try:
            while self._dirty:
                self._dirty = False
                try:
                    await self._store.replace_peer_bans(self._rows())
                except Exception as exc:  # a failed write must not take the node down
                    log.error("peer_bans_not_stored", error=repr(exc))
                    return
        finally:
            self._writing = None

    def _rows(self) -> list[Any]:
        now_wall, now = time.time(), self._loop.time()
        bans = self.core.peer_rules.bans
        rows = []
        for node_id in sorted(bans):
            ban = bans[node_id]
            rows.append(self._api.PeerBan(node_id, _unix_ms(now_wall + ban.until - now), ban.count))
        return rows


def _unix_ms(unix_s: float) -> int:
    return max(0, int(unix_s * 1000))
