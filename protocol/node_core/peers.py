"""Peers: the per-peer record, and the rules on connection slots, rate limits and scores.

The peer table itself (`NodeCore._peers`, `_peer_order`) belongs to the façade; every
sub-machine reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import limits
from ..framing import FrameDecoder, FrameEncoder
from ..reconcile import Reconciler
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


class PeerRules:
    """Connection slots, the per-peer token bucket and misbehaviour scores."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        #: Frame decoder counters of peers since dropped, so the totals never go backwards.
        self.retired_fragment_stats: dict[str, int] = {}

    def connect(self, peer_id: bytes, now: float) -> bool:
        """Register a peer; False (and nothing changes) when the peer limit is reached."""
        core = self.core
        if peer_id in core._peers:
            return True
        if len(core._peers) >= core.config.peers_max or peer_id == core.node_id:
            return False
        jitter = core.rng.random() * core.config.delta_sync_interval_s
        core._peers[peer_id] = Peer(
            peer_id=peer_id,
            encoder=FrameEncoder(),
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
            self.core._emit(PeerMisbehaved(peer.peer_id, code, peer.score))


def _fragment_counters(peer: Peer) -> dict[str, int]:
    """The peer's frame decoder counters, plus the fragments its encoder sent."""
    counters = dict(peer.decoder.stats.__dict__)
    counters["fragments_sent"] = peer.encoder.stats.fragments_sent
    return counters
