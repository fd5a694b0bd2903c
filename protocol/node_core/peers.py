"""Peers: the per-peer record, and the rules on connection slots, rate limits, scores and bans.

The peer table itself (`NodeCore._peers`, `_peer_order`) belongs to the façade; every
sub-machine reads it.

Misbehaviour costs: a peer whose score falls to limits.PEER_SCORE_MIN is dropped and its node
id banned, PEER_BAN_S_INITIAL the first time and twice as long at each further ban (at most
PEER_BAN_S_MAX); a banned id is refused (`refusal` says `peer_banned`) until the ban ends. The
bans live in `PeerRules.bans` (at most PEER_BANS_MAX ids); the shell persists them after a
PeerMisbehaved event and hands them back with `restore_ban` after a restart.

Slots: a council member keeps `reserved_slots()` slots (one per other member) that only
other council members can take; community peers share the rest of `peers_max`, so the total
never exceeds it. With `NodeCoreConfig.allowed_peers` set (a sentry) only those ids connect.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import limits
from ..framing import FrameDecoder, FrameEncoder
from ..reconcile import Reconciler
from .bandwidth import PeerBytes
from .events import PeerMisbehaved

if TYPE_CHECKING:
    from .core import NodeCore

#: Penalties subtracted from a peer's score; at limits.PEER_SCORE_MIN it is disconnected.
PENALTY_MALFORMED_FRAME = 20
PENALTY_MALFORMED_MESSAGE = 10
PENALTY_BAD_OP = 5
PENALTY_RATE_LIMITED = 1
#: A peer whose offer or chunk is a lie (bad manifest, bundle, chunk or rebuilt root).
PENALTY_BAD_SNAPSHOT = 25


#: Why `PeerRules.refusal` refuses a peer (stable codes the shell reports in its handshake).
REFUSED_BANNED = "peer_banned"
REFUSED_NOT_ALLOWED = "peer_not_allowed"
REFUSED_PEERS_MAX = "peers_max"
REFUSED_SELF = "own_node_id"
#: Doubling stops here (2**32 ban lengths are far above PEER_BAN_S_MAX anyway).
_BAN_DOUBLINGS_MAX = 32


@dataclass
class Ban:
    """A node id's ban: it ends at `until` (core time); `count` bans so far (doubling)."""

    until: float
    count: int


@dataclass
class SyncSession:
    session_id: int
    reconciler: Reconciler
    started_at: float
    initiator: bool


@dataclass
class Peer:
    peer_id: bytes
    encoder: FrameEncoder
    decoder: FrameDecoder
    tokens: float
    tokens_at: float
    score: int = 0
    final_height: int = 0
    next_sync_at: float = 0.0
    outgoing_sync: SyncSession | None = None
    incoming_sync: SyncSession | None = None
    frames_received: int = 0
    messages_dropped: int = 0
    #: Time and final height of the last ANNOUNCE from this peer (for skipping delta sync).
    announced_at: float | None = None
    announced_height: int = 0
    #: Delta sync sessions skipped in a row (at most SYNC_SKIPS_MAX).
    sync_skips: int = 0
    #: Whether a session this node started with the peer finished since it (re)connected:
    #: until then nothing says our sets differ by in-flight ops only (after a partition heals
    #: they differ by everything made on either side), so no session is skipped.
    synced: bool = False
    #: Ids in the announce queues whose first announcer is this peer.
    announced_outstanding: int = 0
    #: When we last offered this peer our snapshot (SNAPSHOT_OFFER_INTERVAL_S apart).
    snapshot_offered_at: float | None = None
    #: Frame bytes to and from this peer by message class (bandwidth.py).
    traffic: PeerBytes = field(default_factory=PeerBytes)


class PeerRules:
    """Connection slots, the per-peer token bucket and misbehaviour scores."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        #: Frame decoder counters of peers since dropped, so the totals never go backwards.
        self.retired_fragment_stats: dict[str, int] = {}
        #: Node id -> its ban (ended ones are kept for their count, up to PEER_BANS_MAX ids).
        self.bans: dict[bytes, Ban] = {}

    def connect(self, peer_id: bytes, now: float) -> bool:
        """Register a peer; False (and nothing changes) when `refusal` refuses it."""
        core = self.core
        if peer_id in core._peers:
            return True
        if self.refusal(peer_id, now) is not None:
            return False
        jitter = core.rng.random() * core.config.delta_sync_interval_s
        core._peers[peer_id] = Peer(
            peer_id=peer_id,
            encoder=FrameEncoder(functools.partial(core._queued_peers.add, peer_id)),
            decoder=FrameDecoder(),
            tokens=core.config.peer_messages_burst,
            tokens_at=now,
            next_sync_at=now + min(0.05, jitter),
        )
        core._peer_order = sorted(core._peers)
        return True

    def drop(self, peer_id: bytes) -> None:
        peer = self.core._peers.pop(peer_id, None)
        if peer is not None:
            self.core._peer_order = sorted(self.core._peers)
            retired = self.retired_fragment_stats
            for name, value in _fragment_counters(peer).items():
                retired[name] = retired.get(name, 0) + value
            self.core.bandwidth.retire(peer.traffic)
            if peer.outgoing_sync is not None:
                self.core.stats.sync_sessions_lost += 1  # never finished: not within cadence
            if self.core.state_sync.run is not None:
                self.core.state_sync.run.fetcher.remove_peer(peer_id, self.core._now)

    def fragment_stats(self) -> dict[str, int]:
        """Frame decoder counters summed over every peer this core has had (cumulative)."""
        totals: dict[str, int] = dict(self.retired_fragment_stats)
        for peer in self.core._peers.values():
            for name, value in _fragment_counters(peer).items():
                totals[name] = totals.get(name, 0) + value
        return totals

    def take_token(self, peer: Peer, now: float) -> bool:
        elapsed = max(0.0, now - peer.tokens_at)
        peer.tokens = min(
            self.core.config.peer_messages_burst,
            peer.tokens + elapsed * self.core.config.peer_messages_per_s,
        )
        peer.tokens_at = now
        if peer.tokens < 1:
            self.core.stats.messages_rate_limited += 1
            peer.messages_dropped += 1
            self.penalize(peer, PENALTY_RATE_LIMITED, "rate_limited")
            return False
        peer.tokens -= 1
        return True

    def penalize(self, peer: Peer, penalty: int, code: str) -> None:
        peer.score -= penalty
        if peer.score <= limits.PEER_SCORE_MIN:
            self.drop(peer.peer_id)
            self.ban(peer.peer_id, self.core._now)
            self.core._emit(PeerMisbehaved(peer.peer_id, code, peer.score))

    # --- admission ---------------------------------------------------------------------------

    def refusal(self, peer_id: bytes, now: float) -> str | None:
        """Why a new link to `peer_id` is refused now, or None when it may connect (a peer
        already connected is never refused: a replaced link keeps its slot)."""
        core = self.core
        if peer_id in core._peers:
            return None
        if peer_id == core.node_id:
            return REFUSED_SELF
        if self.banned(peer_id, now):
            return REFUSED_BANNED
        allowed = core.config.allowed_peers
        if allowed is not None and peer_id not in allowed:
            return REFUSED_NOT_ALLOWED
        reserved = self.reserved_slots()
        if self._is_council_link(peer_id):
            council_links = sum(1 for p in core._peers if p in core.genesis.council)
            return None if council_links < reserved else REFUSED_PEERS_MAX
        community = sum(1 for p in core._peers if not self._is_council_link(p))
        if community >= core.config.peers_max - reserved:
            return REFUSED_PEERS_MAX
        return None

    def reserved_slots(self) -> int:
        """Slots kept for links between council members: one per other member on a council
        node (never more than peers_max), none elsewhere."""
        core = self.core
        if not core.is_validator:
            return 0
        return min(len(core.genesis.council) - 1, core.config.peers_max)

    def _is_council_link(self, peer_id: bytes) -> bool:
        return self.core.is_validator and peer_id in self.core.genesis.council

    # --- bans --------------------------------------------------------------------------------

    def banned(self, peer_id: bytes, now: float) -> bool:
        ban = self.bans.get(peer_id)
        return ban is not None and ban.until > now

    def ban(self, peer_id: bytes, now: float) -> Ban:
        """Ban `peer_id` from `now`: PEER_BAN_S_INITIAL, doubled per earlier ban, capped."""
        previous = self.bans.get(peer_id)
        count = 1 if previous is None else previous.count + 1
        doublings = min(count - 1, _BAN_DOUBLINGS_MAX)
        length = min(limits.PEER_BAN_S_INITIAL * 2**doublings, limits.PEER_BAN_S_MAX)
        return self.restore_ban(peer_id, now + length, count)

    def restore_ban(self, peer_id: bytes, until: float, count: int) -> Ban:
        """Record a ban (one the shell persisted before a restart, or a new one); past
        PEER_BANS_MAX ids the ban that ends first is forgotten (ties: the lowest id)."""
        if peer_id not in self.bans and len(self.bans) >= limits.PEER_BANS_MAX:
            victim = min(self.bans.items(), key=lambda item: (item[1].until, item[0]))[0]
            del self.bans[victim]
        ban = self.bans[peer_id] = Ban(until, max(1, count))
        return ban


def _fragment_counters(peer: Peer) -> dict[str, int]:
    """The peer's frame decoder counters, plus the fragments its encoder sent."""
    counters = dict(peer.decoder.stats.__dict__)
    counters["fragments_sent"] = peer.encoder.stats.fragments_sent
    return counters
