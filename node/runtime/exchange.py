"""Peer exchange in the daemon (issue 16): learn peers beyond `[network].peers`.

The node serves its own signed address record and a random sample of its address book at
GET /v1/peers/records (canonical msgpack: a list of encoded records): the records of nodes it
dialed successfully ("tried": learned or configured peers it holds or held an outbound link
to) first, at most ADDRESS_SHARE_NEW_MAX it only heard of (protocol/addresses.py). The tried
mark is not stored: after a restart a record is tried again once a link to it comes up. Every
`[network].exchange_interval_s` it fetches that list from its connected peers and its
configured peers (at most EXCHANGE_SOURCES_PER_ROUND of them), keeps the records that verify
in its `AddressBook` (protocol/addresses.py: bounded, per-source quotas), and while fewer than
`[network].peers_target` peers are connected it dials learned ones: per-address backoff, at
most ADDRESS_DIALS_PER_MINUTE_MAX dials a minute, never a banned id, and only URLs in the
scope of its own address (`dialable`): a loopback devnet never fetches from, nor dials, an
address outside loopback, whatever a peer advertises.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
from aiohttp import web

from swarmd.protocol import crypto, encoding, limits
from swarmd.protocol.addresses import (
    ADDRESS_RELAY_SCHEMES,
    AddressBook,
    AddressRecord,
    AddressRecordError,
    DialBudget,
    dialable,
    url_group,
    url_scope,
)
from swarmd.protocol.crypto import KeyPair
from swarmd.protocol.errors import ProtocolError
from swarmd.protocol.node_core.peers import REFUSED_BANNED
from swarmd.protocol.peering import (
    EXCHANGE_RECORDS_MAX,
    EXCHANGE_SOURCES_PER_ROUND,
    plan_dials,
    records_to_share,
)

from ..config import NetworkSection
from ..logs import get_logger
from ..transport import LinkTransport, PeerInfo
from .persistence import NodeLog, StoreLog

log = get_logger("swarmd.exchange")

EXCHANGE_PATH = "/v1/peers/records"
# EXCHANGE_RECORDS_MAX and EXCHANGE_SOURCES_PER_ROUND live in protocol/peering.py (the
# simulator's mesh uses them too).
EXCHANGE_RESPONSE_SIZE_BYTES_MAX = EXCHANGE_RECORDS_MAX * limits.ADDRESS_RECORD_SIZE_BYTES_MAX + 64
#: One fetch (an HTTP GET on a peer we already talk to) takes well under a second.
EXCHANGE_FETCH_TIMEOUT_S = 5.0


def offered_relays(network: NetworkSection) -> tuple[str, ...]:
    """The TURN relays this node offers in its address record: `[network].turn_urls` and
    the turn:/turns: URLs of `[network].ice_servers`, URIs only (never a username, secret or
    credential), sorted, at most ADDRESS_RELAYS_MAX (longer ones are left out)."""
    urls = list(network.turn_urls)
    urls += [url for server in network.ice_servers for url in server.urls]
    usable = sorted(
        {
            url
            for url in urls
            if url.startswith(ADDRESS_RELAY_SCHEMES)
            and "@" not in url
            and len(url.encode()) <= limits.ADDRESS_RELAY_URL_SIZE_BYTES_MAX
        }
    )
    return tuple(usable[: limits.ADDRESS_RELAYS_MAX])


class PeerExchange:
    """See the module docstring. `peers()` is the daemon's connected peers; `refusal(id)` the
    core's reason to refuse a link to `id` (a banned one is never dialed)."""

    def __init__(
        self,
        *,
        keypair: KeyPair,
        public_url: str | None,
        transport: LinkTransport,
        peers: Callable[[], dict[bytes, PeerInfo]],
        refusal: Callable[[bytes], str | None],
        configured: Sequence[str],
        interval_s: float,
        peers_target: int,
        node_log: NodeLog | None = None,
        advertise: bool = True,
        relays: tuple[str, ...] = (),
    ) -> None:
        self.keypair = keypair
        self.public_url = public_url
        self.transport = transport
        self._peers = peers
        self._refusal = refusal
        self.configured = list(configured)
        self.interval_s = interval_s
        self.peers_target = peers_target
        #: False on a sentry-protected validator: it never tells anyone its address (nor its
        #: book), so only its configured peers know where it is.
        self.advertise = advertise
        #: The TURN relays our record offers (`offered_relays`).
        self.relays = relays
        self.own_scope = url_scope(public_url) if public_url else "public"
        self.book = AddressBook(keypair.public_key)
        self.budget = DialBudget(now=time.monotonic())
        self._rng = random.Random()
        self._record: AddressRecord | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0
        self.dials = 0
        #: The store the book is kept in across restarts (`address_book`), if any.
        self._store: Any = node_log.store if isinstance(node_log, StoreLog) else None
        self._api: Any = node_log.api if isinstance(node_log, StoreLog) else None

    @property
    def routes(self) -> list[web.RouteDef]:
        return [web.get(EXCHANGE_PATH, self._serve)]

    async def start(self) -> None:
        if self.interval_s <= 0:
            return
        await self.load()
        timeout = aiohttp.ClientTimeout(total=EXCHANGE_FETCH_TIMEOUT_S)
        self._session = aiohttp.ClientSession(timeout=timeout)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def own_record(self, now: float) -> AddressRecord | None:
        """Our signed record (re-signed once half its lifetime is gone); None without a
        public URL (nobody could dial us back)."""
        if self.public_url is None:
            return None
        record = self._record
        if record is None or record.expires_at - now < limits.ADDRESS_RECORD_TTL_S / 2:
            urls = {"webrtc": self.public_url, "websocket": self.public_url}
            record = self._record = AddressRecord.sign(self.keypair, urls, now, relays=self.relays)
        return record

    def records_to_share(self, now: float) -> list[bytes]:
        if not self.advertise:
            return []
        shared = records_to_share(self.own_record(now), self.book, now, self._rng)
        return [record.encode() for record in shared]

    async def _serve(self, request: web.Request) -> web.Response:
        body = encoding.encode(self.records_to_share(time.time()))
        return web.Response(body=body, content_type="application/octet-stream")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s * self._rng.uniform(0.8, 1.2))
            try:
                await self.exchange_round()
            except Exception as exc:  # one bad round must not end the exchange
                log.warning("exchange_round_failed", error=repr(exc))

    async def exchange_round(self) -> None:
        """Fetch records from a few peers, then dial learned ones up to the target."""
        self.rounds += 1
        now = time.time()
        self.book.expire(now)
        sources = self._sources()
        answers = await asyncio.gather(*(self._fetch(url) for _, url in sources))
        for (source, _), records in zip(sources, answers, strict=True):
            for data in records:
                try:
                    self.book.add(AddressRecord.decode(data, now), source, now)
                except AddressRecordError:
                    continue
        for peer_id, info in sorted(self._peers().items()):
            if info.direction == "outbound":  # configured peers too: we dialed, it came up
                self.book.dial_succeeded(peer_id)
        for node_id in sorted(self.book.entries):
            if self._refusal(node_id) == REFUSED_BANNED:
                self.book.demote(node_id)  # it misbehaved: our answers stop vouching for it
        await self._dial_learned()
        await self.save()

    async def load(self) -> int:
        """Refill the book from the store (records that no longer verify are skipped)."""
        if self._store is None:
            return 0
        now = time.time()
        for row in await self._store.load_address_book():
            try:
                record = AddressRecord.decode(row.record, now)
            except AddressRecordError:
                continue
            if self.book.add(record, row.source or None, now):
                self.book.entries[record.node_id].failures = row.failures
        return len(self.book)

    async def save(self) -> None:
        """Write the whole book (at most ADDRESS_BOOK_MAX rows); a failure is logged only."""
        if self._store is None:
            return
        rows = []
        for node_id in sorted(self.book.entries):
            entry = self.book.entries[node_id]
            source = b"" if entry.source is None else entry.source
            rows.append(
                self._api.AddressEntry(node_id, entry.record.encode(), source, entry.failures)
            )
        try:
            await self._store.replace_address_book(rows)
        except Exception as exc:
            log.warning("address_book_not_stored", error=repr(exc))

    def _sources(self) -> list[tuple[bytes, str]]:
        """(source key, URL) of connected and configured peers within our scope."""
        found: dict[str, bytes] = {}
        for peer_id, info in sorted(self._peers().items()):
            if info.remote_url is not None:
                found.setdefault(info.remote_url, peer_id)
        for url in self.configured:
            found.setdefault(url, crypto.sha256(url.encode()))
        usable = sorted(
            (source, url) for url, source in found.items() if dialable(url, self.own_scope)
        )
        return self._rng.sample(usable, min(EXCHANGE_SOURCES_PER_ROUND, len(usable)))

    async def _fetch(self, url: str) -> list[bytes]:
        session = self._session
        if session is None:
            return []
        try:
            async with session.get(url.rstrip("/") + EXCHANGE_PATH) as response:
                length = response.content_length
                if response.status != 200 or length is None:
                    return []
                if length > EXCHANGE_RESPONSE_SIZE_BYTES_MAX:
                    return []
                value = encoding.decode(
                    await response.read(), size_max=EXCHANGE_RESPONSE_SIZE_BYTES_MAX
                )
        except (aiohttp.ClientError, TimeoutError, ProtocolError) as exc:
            log.debug("exchange_fetch_failed", url=url, error=repr(exc))
            return []
        if not isinstance(value, list):
            return []
        return [item for item in value[:EXCHANGE_RECORDS_MAX] if isinstance(item, bytes)]

    async def _dial_learned(self) -> None:
        """Dial what the shared policy (protocol/peering.py `plan_dials`) picks: diverse by
        the source and scope of our outbound links, up to the target."""
        peers = self._peers()
        connected = set(peers)
        if len(connected) >= self.peers_target:
            return
        skip = connected | {n for n in self.book.entries if self._refusal(n) is not None}
        linked = []
        for peer_id, info in sorted(peers.items()):
            entry = self.book.entries.get(peer_id)
            if info.direction == "outbound" and entry is not None:
                url = entry.record.url(self.transport.name) or ""
                linked.append((entry.source, url_group(url)))
        candidates = plan_dials(
            self.book,
            now=time.time(),
            transport=self.transport.name,
            own_scope=self.own_scope,
            skip=skip,
            linked=linked,
            want=self.peers_target - len(connected),
            rng=self._rng,
        )
        for node_id, url in candidates:
            if len(set(self._peers())) >= self.peers_target:
                return
            if not self.budget.take(time.monotonic()):
                return
            self.dials += 1
            try:
                await self.transport.connect(node_id, url)
                self.book.dial_succeeded(node_id)
            except (ProtocolError, OSError, TimeoutError) as exc:
                self.book.dial_failed(node_id, time.time())
                log.debug("exchange_dial_failed", url=url, error=getattr(exc, "code", repr(exc)))
