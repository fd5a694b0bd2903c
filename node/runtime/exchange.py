"""Peer exchange in the daemon (issue 16): learn peers beyond `[network].peers`.

The node serves its own signed address record and a random sample of its address book at
GET /v1/peers/records (canonical msgpack: a list of encoded records): the records of nodes it
dialed successfully ("tried": learned or configured peers it holds or held an outbound link
to) first, at most ADDRESS_SHARE_NEW_MAX it only heard of (protocol/addresses.py). Every
`[network].exchange_interval_s` it fetches that list from its connected peers and its
configured peers (at most EXCHANGE_SOURCES_PER_ROUND of them), keeps the records that verify
in its `AddressBook` (protocol/addresses.py: bounded, per-source quotas), and while it holds
fewer than `[network].outbound_target` outbound links (council links excepted:
protocol/peering.py `MeshTargets`) it dials learned ones: per-address backoff, at most
ADDRESS_DIALS_PER_MINUTE_MAX dials a minute, never a banned id, and only URLs in the scope of
its own address (`dialable`): a loopback devnet never fetches from, nor dials, an address
outside loopback, whatever a peer advertises. At least ADDRESS_DIALS_TRIED_PERCENT of a
round's dials go to tried records while any is due, so a flooded "new" table cannot take
every outbound slot.

Inbound: `admit_inbound` refuses a new inbound link from a non-council peer while
`[network].inbound_max` such links are up (`InboundFullError`, code `inbound_max`); links
between council members never count (reserved slots, protocol/node_core/peers.py).

Kept across restarts (the store's `address_book`, schema v10): each record with its source,
failed dials, its tried mark (so tried records are shared and dialed first again at once),
and the anchors: the ADDRESS_ANCHORS_MAX oldest learned outbound links up when the book was
last written (configured peers are the dialer's). At start the anchors are dialed before
the first exchange round (Bitcoin's anchors): an eclipse attempt timed with a restart finds
the node's last good links up again.
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
    REFUSED_INBOUND_MAX,
    MeshTargets,
    plan_dials,
    records_to_share,
)

from ..config import NetworkSection
from ..logs import get_logger
from ..transport import LinkTransport, PeerInfo
from ..transport.errors import SignalBusyError
from .persistence import NodeLog, StoreLog

log = get_logger("swarmd.exchange")

EXCHANGE_PATH = "/v1/peers/records"
# EXCHANGE_RECORDS_MAX and EXCHANGE_SOURCES_PER_ROUND live in protocol/peering.py (the
# simulator's mesh uses them too).
EXCHANGE_RESPONSE_SIZE_BYTES_MAX = EXCHANGE_RECORDS_MAX * limits.ADDRESS_RECORD_SIZE_BYTES_MAX + 64
#: One fetch (an HTTP GET on a peer we already talk to) takes well under a second.
EXCHANGE_FETCH_TIMEOUT_S = 5.0


class InboundFullError(SignalBusyError):
    """This node holds `[network].inbound_max` inbound links from non-council peers already
    (a link between council members is never refused for it: reserved slots)."""

    code = REFUSED_INBOUND_MAX


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
    core's reason to refuse a link to `id` (a banned one is never dialed); `council_link(id)`
    whether a link to `id` is one between council members (counted in neither target)."""

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
        targets: MeshTargets,
        council_link: Callable[[bytes], bool] = lambda _: False,
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
        #: Outbound links dialed up to, inbound links accepted (non-council peers).
        self.targets = targets
        self._council_link = council_link
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
        #: The anchors read at start (dialed first), then those of the last write.
        self.anchors: list[bytes] = []
        self.anchor_dials = 0
        #: Set once the anchors read at start were dialed (before the first round).
        self.anchors_dialed = asyncio.Event()
        #: Inbound links refused for `inbound_max`.
        self.inbound_refused = 0
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
        """End the rounds and write the book once more (tried marks and anchors as of now:
        the links are still up, the transports stop after us)."""
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        await self.save()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- inbound links ------------------------------------------------------------------------

    def inbound_links(self) -> int:
        """Inbound links from non-council peers up now (what `inbound_max` bounds)."""
        return sum(
            1
            for peer_id, info in self._peers().items()
            if info.direction == "inbound" and not self._council_link(peer_id)
        )

    def outbound_links(self) -> list[bytes]:
        """Peers we dialed (configured ones too), council links excepted, by node id."""
        return [
            peer_id
            for peer_id, info in sorted(self._peers().items())
            if info.direction == "outbound" and not self._council_link(peer_id)
        ]

    def admit_inbound(self, peer_id: bytes) -> None:
        """Raise `InboundFullError` when a new inbound link from `peer_id` would exceed
        `inbound_max` (MeshTargets.accepts_inbound; council links and a peer already
        connected, whose link is being replaced, always pass)."""
        if peer_id in self._peers():
            return
        council = self._council_link(peer_id)
        if self.targets.accepts_inbound(self.inbound_links(), council_link=council):
            return
        self.inbound_refused += 1
        raise InboundFullError(
            f"{self.targets.inbound_max} inbound links from non-council peers held already"
        )

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
        try:
            await self.dial_anchors()
        except Exception as exc:  # a failed anchor dial must not end the exchange
            log.warning("anchor_dials_failed", error=repr(exc))
        self.anchors_dialed.set()
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
        anchors: list[tuple[int, bytes]] = []
        for row in await self._store.load_address_book():
            try:
                record = AddressRecord.decode(row.record, now)
            except AddressRecordError:
                continue
            if self.book.add(record, row.source or None, now):
                entry = self.book.entries[record.node_id]
                entry.failures, entry.tried = row.failures, row.tried
                if row.anchor:
                    anchors.append((row.anchor, record.node_id))
        self.anchors = [node_id for _, node_id in sorted(anchors)][: limits.ADDRESS_ANCHORS_MAX]
        return len(self.book)

    def choose_anchors(self) -> list[bytes]:
        """The anchors to store, at most ADDRESS_ANCHORS_MAX: the learned outbound links up
        now whose records the book holds, longest up first (ties by id), then the anchors
        held before whose last dial did not fail (a blip, or a restart before they came up
        again, keeps them; a node gone is dropped once a dial to it failed). Configured
        peers are left out: the dialer dials them at start anyway."""
        peers = self._peers()
        linked = [
            (peers[peer_id].connected_since, peer_id)
            for peer_id in self.outbound_links()
            if peer_id in self.book.entries
            and peer_id in peers
            and not self._configured(peers[peer_id].remote_url)
        ]
        chosen = [peer_id for _, peer_id in sorted(linked)]
        for peer_id in self.anchors:
            entry = self.book.entries.get(peer_id)
            if peer_id not in chosen and entry is not None and entry.failures == 0:
                chosen.append(peer_id)
        return chosen[: limits.ADDRESS_ANCHORS_MAX]

    def _configured(self, url: str | None) -> bool:
        """Whether `url` is one of `[network].peers` (the dialer's, not an anchor)."""
        if url is None:
            return False
        return url.rstrip("/") in {configured.rstrip("/") for configured in self.configured}

    async def dial_anchors(self) -> int:
        """Dial the anchors read at start, before any exchange round; how many came up."""
        up = 0
        for node_id in list(self.anchors):
            entry = self.book.entries.get(node_id)
            url = None if entry is None else entry.record.url(self.transport.name)
            if url is None or not dialable(url, self.own_scope) or self._configured(url):
                continue
            if node_id in self._peers() or self._refusal(node_id) is not None:
                continue
            if not self.budget.take(time.monotonic()):
                break
            if await self._dial(node_id, url):
                self.anchor_dials += 1
                up += 1
        return up

    async def save(self) -> None:
        """Write the whole book (at most ADDRESS_BOOK_MAX rows); a failure is logged only."""
        if self._store is None:
            return
        self.anchors = self.choose_anchors()
        rank = {node_id: index + 1 for index, node_id in enumerate(self.anchors)}
        rows = []
        for node_id in sorted(self.book.entries):
            entry = self.book.entries[node_id]
            source = b"" if entry.source is None else entry.source
            rows.append(
                self._api.AddressEntry(
                    node_id,
                    entry.record.encode(),
                    source,
                    entry.failures,
                    entry.tried,
                    rank.get(node_id, 0),
                )
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
        the source and scope of our outbound links, tried records first for their share, up
        to the outbound target (council links count in neither target)."""
        peers = self._peers()
        outbound = self.outbound_links()
        want = self.targets.dials_wanted(len(outbound))
        if want == 0:
            return
        skip = set(peers) | {n for n in self.book.entries if self._refusal(n) is not None}
        linked = []
        for peer_id in outbound:
            entry = self.book.entries.get(peer_id)
            if entry is not None:
                url = entry.record.url(self.transport.name) or ""
                linked.append((entry.source, url_group(url)))
        candidates = plan_dials(
            self.book,
            now=time.time(),
            transport=self.transport.name,
            own_scope=self.own_scope,
            skip=skip,
            linked=linked,
            want=want,
            rng=self._rng,
            per_source_max=self.targets.per_source_max,
            tried_percent=limits.ADDRESS_DIALS_TRIED_PERCENT,
        )
        for node_id, url in candidates:
            if self.targets.dials_wanted(len(self.outbound_links())) == 0:
                return
            if not self.budget.take(time.monotonic()):
                return
            await self._dial(node_id, url)

    async def _dial(self, node_id: bytes, url: str) -> bool:
        """One dial of a book entry (the caller took it from the budget); whether its link
        came up."""
        self.dials += 1
        try:
            await self.transport.connect(node_id, url)
        except (ProtocolError, OSError, TimeoutError) as exc:
            self.book.dial_failed(node_id, time.time())
            log.debug("exchange_dial_failed", url=url, error=getattr(exc, "code", repr(exc)))
            return False
        self.book.dial_succeeded(node_id)
        return True
