"""Peer exchange, sans-I/O: signed address records, the bounded address book and the dial
budget (issue 16). Time (`now`, unix seconds) is an input; nothing here touches a socket.

An `AddressRecord` says where a node can be dialed: its node id, one base URL per transport
("webrtc", "websocket"), the TURN relays it offers (`relays`: turn:/turns: URIs only, never
credentials; at most ADDRESS_RELAYS_MAX) and an expiry, signed by the node's own key under
`ADDRESS_DOMAIN_TAG` (so it can never be confused with an op, a consensus message or a
signaling message). Anyone may relay a record; nobody but the node can forge one.

The `AddressBook` holds at most ADDRESS_BOOK_MAX records; the records learned from one source
(the peer that relayed them) are at most ADDRESS_BOOK_PER_SOURCE_MAX of them, so one peer
(or an attacker with many identities behind one link) cannot fill the book. Configured seeds
(source None) are exempt and never evicted. It hands out dial candidates with a backoff per
address (doubling per failed dial, capped), only for URLs `dialable` allows: a node dials
only addresses in the scope of its own (loopback, private or public), so records learned on
a loopback devnet can never make it dial anything else. `DialBudget` bounds the dials per
minute.

Tried and new (as Bitcoin's addrman): a record is "tried" once a dial to it brought a link up,
"new" while it is only heard of. What a node shares (`sample`, its exchange answers) is its
tried records first and at most ADDRESS_SHARE_NEW_MAX new ones, one per network group, so a
book flooded with an attacker's identities (all new: nobody dialed them) passes on one of them
per answer and network the attacker holds, not a whole answer of them, and a node that joins
while its seeds are full still learns the honest nodes its seeds linked to or heard of (the
eclipse scenario at 7 + 40 failed on exactly this).

Wire compatibility: a record without relays encodes its body as the three fields it always
had ([node id, urls, expiry]), byte for byte; one with relays adds a fourth field (a non-empty
list). A node from before relays refuses a four-field record (it skips it, as any record that
does not verify) and decodes every three-field one, so no version bump is needed.
"""

from __future__ import annotations

import functools
import ipaddress
import random
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import crypto, encoding, limits
from .codes import RejectCode
from .crypto import KeyPair
from .errors import (
    BadSignatureError,
    DecodeError,
    InvalidKeyError,
    LimitExceededError,
    RemoteProtocolError,
)

#: Prefix of every signed address record body (domain separation).
ADDRESS_DOMAIN_TAG = b"swarmd/address/v1\x00"
#: The transports a record may name (node/transport's names).
ADDRESS_TRANSPORTS = ("webrtc", "websocket")
#: URL schemes a record may carry (a node's base HTTP URL).
ADDRESS_URL_SCHEMES = ("http", "https")
#: URI schemes of the TURN relays a record may offer (RFC 7065).
ADDRESS_RELAY_SCHEMES = ("turn:", "turns:")


class AddressRecordError(RemoteProtocolError):
    """An address record that does not decode, is out of bounds, expired, or whose signature
    is not its node's."""

    code = RejectCode.ADDRESS_RECORD_INVALID


@dataclass(frozen=True, slots=True)
class AddressRecord:
    node_id: bytes
    #: (transport, base URL) pairs, sorted by transport, one per transport at most.
    urls: tuple[tuple[str, str], ...]
    #: Unix seconds after which the record is worthless.
    expires_at: int
    signature: bytes
    #: TURN relays offered (sorted, distinct, at most ADDRESS_RELAYS_MAX); () for none.
    relays: tuple[str, ...] = ()

    @staticmethod
    def _body(
        node_id: bytes, urls: tuple[tuple[str, str], ...], expires_at: int, relays: tuple[str, ...]
    ) -> bytes:
        fields: list[object] = [node_id, [list(pair) for pair in urls], expires_at]
        if relays:
            fields.append(list(relays))  # absent when empty: old records stay byte-identical
        return encoding.encode(fields)

    @classmethod
    def sign(
        cls,
        keypair: KeyPair,
        urls: dict[str, str],
        now: float,
        ttl_s: int = limits.ADDRESS_RECORD_TTL_S,
        relays: tuple[str, ...] = (),
    ) -> AddressRecord:
        """This node's own record: `urls` maps transport -> base URL; `relays` the TURN
        URIs it offers."""
        pairs = tuple(sorted(urls.items()))
        _check_urls(pairs)
        offered = tuple(sorted(set(relays)))
        _check_relays(offered)
        expires_at = int(now) + ttl_s
        body = cls._body(keypair.public_key, pairs, expires_at, offered)
        signature = keypair.sign(ADDRESS_DOMAIN_TAG + body)
        return cls(keypair.public_key, pairs, expires_at, signature, offered)

    def encode(self) -> bytes:
        body = self._body(self.node_id, self.urls, self.expires_at, self.relays)
        return encoding.encode([body, self.signature])

    @classmethod
    def decode(cls, data: bytes, now: float) -> AddressRecord:
        """Decode and verify a record; raises AddressRecordError (expired ones included)."""
        try:
            outer = encoding.decode(data, size_max=limits.ADDRESS_RECORD_SIZE_BYTES_MAX)
            _require(isinstance(outer, list) and len(outer) == 2, "shape")
            body, signature = outer
            _require(isinstance(body, bytes) and isinstance(signature, bytes), "shape")
            fields = encoding.decode(body, size_max=limits.ADDRESS_RECORD_SIZE_BYTES_MAX)
        except (DecodeError, LimitExceededError) as exc:
            raise AddressRecordError(f"address record does not decode: {exc.message}") from exc
        _require(isinstance(fields, list) and len(fields) in (3, 4), "body")
        node_id, url_list, expires_at = fields[:3]
        relays = _decode_relays(fields[3]) if len(fields) == 4 else ()
        _require(isinstance(node_id, bytes), "node_id")
        _require(isinstance(expires_at, int) and not isinstance(expires_at, bool), "expiry")
        _require(isinstance(url_list, list), "urls")
        _require(all(_is_pair(item) for item in url_list), "urls")
        urls = tuple((str(t), str(u)) for t, u in url_list)
        _check_urls(urls)
        if expires_at < now:
            raise AddressRecordError("address record has expired")
        if expires_at > now + limits.ADDRESS_RECORD_TTL_S + limits.ADDRESS_CLOCK_SKEW_S:
            raise AddressRecordError("address record expires too far in the future")
        try:
            crypto.check_public_key(node_id)
            crypto.verify(node_id, ADDRESS_DOMAIN_TAG + body, signature)
        except (InvalidKeyError, BadSignatureError) as exc:
            raise AddressRecordError(f"address record not signed by its node: {exc}") from exc
        return cls(node_id, urls, expires_at, signature, relays)

    def url(self, transport: str) -> str | None:
        return dict(self.urls).get(transport)


def _is_pair(item: object) -> bool:
    return (
        isinstance(item, list)
        and len(item) == 2
        and isinstance(item[0], str)
        and isinstance(item[1], str)
    )


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise AddressRecordError(f"malformed address record ({what})")


def _decode_relays(value: object) -> tuple[str, ...]:
    _require(isinstance(value, list) and all(isinstance(item, str) for item in value), "relays")
    assert isinstance(value, list)
    relays = tuple(str(item) for item in value)
    _require(bool(relays), "relays: an empty list is encoded as no field")
    _check_relays(relays)
    return relays


def _check_relays(relays: tuple[str, ...]) -> None:
    _require(len(relays) <= limits.ADDRESS_RELAYS_MAX, "relay count")
    _require(list(relays) == sorted(set(relays)), "relays not sorted or repeated")
    for relay in relays:
        _require(len(relay.encode()) <= limits.ADDRESS_RELAY_URL_SIZE_BYTES_MAX, "relay length")
        _require(relay.startswith(ADDRESS_RELAY_SCHEMES), "relay scheme")
        host = relay.split(":", 1)[1]
        # A host (RFC 7065: turn:host[:port][?transport=...]), never credentials.
        _require(bool(host) and not host.startswith(("?", ":")) and "@" not in relay, "relay")


def _check_urls(urls: tuple[tuple[str, str], ...]) -> None:
    transports = [transport for transport, _ in urls]
    _require(0 < len(urls) <= len(ADDRESS_TRANSPORTS), "url count")
    _require(transports == sorted(set(transports)), "urls not sorted or repeated")
    for transport, url in urls:
        _require(transport in ADDRESS_TRANSPORTS, f"transport {transport!r}")
        _require(len(url.encode()) <= limits.ADDRESS_URL_SIZE_BYTES_MAX, "url length")
        parts = urlsplit(url)
        _require(parts.scheme in ADDRESS_URL_SCHEMES and bool(parts.hostname), "url")


# --- where a node may dial --------------------------------------------------------------------


def url_scope(url: str) -> str:
    """ "loopback", "private" or "public" for the host of `url` ("public" for a DNS name,
    "loopback" for localhost)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return "loopback"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "public"
    if address.is_loopback:
        return "loopback"
    if address.is_private or address.is_link_local:
        return "private"
    return "public"


@functools.lru_cache(maxsize=limits.ADDRESS_GROUP_CACHE_ENTRIES_MAX)  # why: see limits.py
def url_group(url: str) -> str:
    """The network group of `url`'s host, for diversity (protocol/peering.py): its scope and
    IPv4 /16 or IPv6 /32, or the last two labels of a DNS name; "loopback" for every loopback
    host (a devnet on one host is one group that no diversity cap applies to)."""
    scope = url_scope(url)
    host = urlsplit(url).hostname or ""
    if scope == "loopback":
        return scope
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"{scope}:" + ".".join(host.lower().split(".")[-2:])
    prefix = 16 if address.version == 4 else 32
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    return f"{scope}:{network}"


def record_group(record: AddressRecord) -> str:
    """The network group of a record (`url_group` of its first URL), for sharing new records;
    on loopback the URL itself (a devnet is one host, exempt from diversity as in
    protocol/peering.py, so each of its nodes counts as its own group)."""
    url = record.urls[0][1]
    group = url_group(url)
    return url if group == "loopback" else group


def dialable(url: str, own_scope: str) -> bool:
    """Whether a node whose own address is in `own_scope` may dial `url` learned from a peer:
    only within the same scope (a loopback devnet never dials out, a public node never dials
    into private ranges on a peer's word)."""
    return url_scope(url) == own_scope


# --- the address book -------------------------------------------------------------------------


@dataclass
class BookEntry:
    record: AddressRecord
    #: The peer that relayed the record; None for a configured seed (exempt from quotas).
    source: bytes | None
    failures: int = 0
    next_dial_at: float = 0.0
    #: "Tried": we dialed it and the link came up (else "new": only heard of). Exchange
    #: answers share tried records first and at most ADDRESS_SHARE_NEW_MAX new ones.
    tried: bool = False


class AddressBook:
    """Bounded, per-source-quota'd records (see the module docstring). Deterministic: every
    choice is by sorted keys or the caller's `random.Random`."""

    def __init__(
        self,
        own_id: bytes,
        *,
        entries_max: int = limits.ADDRESS_BOOK_MAX,
        per_source_max: int = limits.ADDRESS_BOOK_PER_SOURCE_MAX,
    ) -> None:
        self.own_id = own_id
        self.entries_max = entries_max
        self.per_source_max = per_source_max
        self.entries: dict[bytes, BookEntry] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, record: AddressRecord, source: bytes | None, now: float) -> bool:
        """Keep `record` (learned from `source`); False when refused: our own, expired, older
        than the one held, or its source's quota is used up and nothing can make room."""
        if record.node_id == self.own_id or record.expires_at < now:
            return False
        held = self.entries.get(record.node_id)
        if held is not None:
            if record.expires_at <= held.record.expires_at:
                return False
            held.record = record  # a fresher record of the same node: keep its backoff
            if source is None:
                held.source = None
            return True
        if source is not None and self._from_source(source) >= self.per_source_max:
            return False
        if len(self.entries) >= self.entries_max and not self._make_room(now):
            return False
        self.entries[record.node_id] = BookEntry(record, source)
        return True

    def expire(self, now: float) -> int:
        """Forget expired learned records (seeds stay: their URL is configuration)."""
        gone = [
            node_id
            for node_id, entry in self.entries.items()
            if entry.source is not None and entry.record.expires_at < now
        ]
        for node_id in gone:
            del self.entries[node_id]
        return len(gone)

    def sample(
        self,
        count: int,
        now: float,
        rng: random.Random,
        new_max: int = limits.ADDRESS_SHARE_NEW_MAX,
    ) -> list[AddressRecord]:
        """Up to `count` unexpired records to share with a peer, chosen at random: tried ones
        first, then at most `new_max` new ones, each from a different network group
        (`record_group`): a flooded book is mostly new records of the attacker's few
        networks, so they can neither fill the answer nor crowd out the honest new ones."""
        live = [self.entries[n] for n in sorted(self.entries)]
        live = [entry for entry in live if entry.record.expires_at >= now]
        tried = [entry.record for entry in live if entry.tried]
        chosen = rng.sample(tried, min(count, len(tried)))
        new_by_group: dict[str, list[AddressRecord]] = {}
        for entry in live:
            if not entry.tried:
                new_by_group.setdefault(record_group(entry.record), []).append(entry.record)
        groups = sorted(new_by_group)
        picked = rng.sample(groups, min(count - len(chosen), new_max, len(groups)))
        return chosen + [rng.choice(new_by_group[group]) for group in picked]

    def dial_candidates(
        self, now: float, transport: str, own_scope: str, skip: set[bytes]
    ) -> list[tuple[bytes, str]]:
        """(node id, URL) pairs due for a dial on `transport`, fewest failures first: not in
        `skip` (connected, being dialed, banned), out of backoff, and `dialable`."""
        due = []
        for node_id in sorted(self.entries):
            entry = self.entries[node_id]
            url = entry.record.url(transport)
            if node_id in skip or entry.next_dial_at > now or url is None:
                continue
            if dialable(url, own_scope):
                due.append((entry.failures, node_id, url))
        return [(node_id, url) for _, node_id, url in sorted(due)]

    def dial_failed(self, node_id: bytes, now: float) -> None:
        entry = self.entries.get(node_id)
        if entry is None:
            return
        entry.failures += 1
        doublings = min(entry.failures - 1, 32)
        backoff = min(
            limits.ADDRESS_DIAL_BACKOFF_S_INITIAL * 2**doublings, limits.ADDRESS_DIAL_BACKOFF_S_MAX
        )
        entry.next_dial_at = now + backoff

    def dial_succeeded(self, node_id: bytes) -> None:
        """The link came up: the record is tried from now on."""
        entry = self.entries.get(node_id)
        if entry is not None:
            entry.failures, entry.next_dial_at, entry.tried = 0, 0.0, True

    def demote(self, node_id: bytes) -> None:
        """The node misbehaved (it was banned): its record is new again, so our answers stop
        vouching for it."""
        entry = self.entries.get(node_id)
        if entry is not None:
            entry.tried = False

    def _from_source(self, source: bytes) -> int:
        return sum(1 for entry in self.entries.values() if entry.source == source)

    def _make_room(self, now: float) -> bool:
        """Evict one learned record: an expired one, else the one of the source holding the
        most entries that expires first (ties: lowest id). False when all are seeds."""
        learned = [(n, e) for n, e in sorted(self.entries.items()) if e.source is not None]
        if not learned:
            return False
        counts: dict[bytes, int] = {}
        for _, entry in learned:
            assert entry.source is not None
            counts[entry.source] = counts.get(entry.source, 0) + 1

        def rank(item: tuple[bytes, BookEntry]) -> tuple[bool, int, int, bytes]:
            node_id, entry = item
            assert entry.source is not None
            expired = entry.record.expires_at < now
            return (not expired, -counts[entry.source], entry.record.expires_at, node_id)

        del self.entries[min(learned, key=rank)[0]]
        return True


class DialBudget:
    """At most `per_minute` dials in any 60 s (a token bucket refilled continuously)."""

    def __init__(self, per_minute: int = limits.ADDRESS_DIALS_PER_MINUTE_MAX, now: float = 0.0):
        self.per_minute = per_minute
        self.tokens = float(per_minute)
        self.at = now

    def take(self, now: float) -> bool:
        self.tokens = min(
            float(self.per_minute), self.tokens + max(0.0, now - self.at) * self.per_minute / 60
        )
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
