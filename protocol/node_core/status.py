"""Status: the node's counters (`NodeStats`, mutable, bumped by every sub-machine) and a
frozen, typed picture of the node (`NodeStatus`) that `NodeCore.status()` renders as a dict."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .bandwidth import by_name
from .config import Mode
from .rollbacks import REASON_ROLLBACK

if TYPE_CHECKING:
    from .core import NodeCore


@dataclass
class NodeStats:
    messages_received: int = 0
    messages_malformed: int = 0
    messages_rate_limited: int = 0
    ops_gossiped: int = 0  # envelopes pushed in full (OPS gossip)
    ops_announced: int = 0  # ids announced (ANNOUNCE)
    ops_received: int = 0  # envelopes received in OPS messages (gossip, fetch and sync answers)
    ops_duplicate: int = 0  # of those, already known
    ops_fetched: int = 0
    announced_fetched: int = 0  # announced ids fetched because no push brought them in time
    announces_ignored: int = 0  # announced ids over ANNOUNCED_IDS_MAX or a peer's share
    sync_sessions_skipped: int = 0
    sync_sessions: int = 0
    sync_sessions_within_cadence: int = 0
    #: Sessions this node started that never finished (replaced, abandoned, failed, or the
    #: peer left): none of them was within the cadence.
    sync_sessions_lost: int = 0
    sync_bytes: int = 0  # reconciliation bytes of finished sessions started here (both ways)
    sync_bytes_sent: int = 0
    sync_bytes_received: int = 0
    checkpoints: int = 0
    events_dropped: int = 0
    equivocations: int = 0
    snapshots_made: int = 0
    snapshots_failed: int = 0  # states too large for a snapshot
    snapshots_stale: int = 0  # deferred builds ignored: a newer snapshot was installed first
    snapshots_skipped: int = 0  # frozen builds not started: the previous one still ran
    snapshot_offers_sent: int = 0
    snapshot_chunks_served: int = 0
    snapshot_chunks_fetched: int = 0
    state_syncs_started: int = 0
    state_syncs_finished: int = 0
    state_syncs_failed: int = 0
    bundles_refused_epoch: int = 0  # bundles the epoch history refused (reverted or future)
    ops_refused_reverted: int = 0  # ops refused because a rollback reverted them
    #: Bundles of reverted heights whose ops could not be reverted here (final in the new
    #: epoch already: only two quorums deciding the same op in both epochs can cause it).
    reverted_bundles_refused: int = 0
    root_divergences: int = 0  # final roots that differed from the council-signed one
    #: What this node serves and the bulk sync send rate held (chunk, bundle and checkpoint-ops
    #: requests, stored-ops answers, bundles pushed with a certificate), and what was dropped
    #: because the peer's queue was full (serve_rate.py `ServedRequest`).
    serve_requests_deferred: int = 0
    serve_requests_dropped: int = 0
    cuts_refused_time: int = 0  # proposals prevoted nil for their time (checkpoint.time_valid)
    #: Bundle signature checks (received or replayed at a restart; a restart checks none at
    #: or below its snapshot's height).
    bundles_verified: int = 0


@dataclass(frozen=True, slots=True)
class PeerStatus:
    peer_id: bytes
    score: int
    final_height: int
    #: Frame bytes to / from this peer since it connected, by message class (bandwidth.py).
    bytes_sent: dict[str, int] = dataclasses.field(default_factory=dict)
    bytes_received: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SnapshotStatus:
    """Our newest snapshot (the one served to peers)."""

    height: int
    manifest_id: bytes
    chunks: int
    size_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "manifest_id": self.manifest_id.hex(),
            "chunks": self.chunks,
            "size_bytes": self.size_bytes,
        }


@dataclass(frozen=True, slots=True)
class StateSyncStatus:
    """The state sync in progress."""

    height: int
    manifest_id: bytes
    chunks: int
    chunks_verified: int
    size_bytes: int
    peers: int
    started_at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "manifest_id": self.manifest_id.hex(),
            "chunks": self.chunks,
            "chunks_verified": self.chunks_verified,
            "size_bytes": self.size_bytes,
            "peers": self.peers,
            "started_at": self.started_at,
        }


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """One council member's part in the final checkpoints this process saw (participation.py)."""

    key: bytes
    signed: int
    missed: int
    last_signed_height: int
    last_signed_at: float | None  # the core's clock


@dataclass(frozen=True, slots=True)
class ConflictStatus:
    """Open conflicts by kind. `contested_handles`: handles with a raised conflict whose
    binding is not final (aged in `NodeStatus.oldest_open_conflict_age_s`). Of the handles not
    bound in the final state: `claims_below_quorum` counts their endorsed claims (some, fewer
    than a quorum of endorsements), `stuck_handles` those no claim can still bind: its most
    endorsed claim plus every member that endorsed none of the handle's claims stays below
    the quorum (e.g. a 4-member council split 2/2). `unresolved_forks`: an account signed two
    ops at one seq and neither is final yet (`Ledger.unresolved_forks`)."""

    contested_handles: int
    claims_below_quorum: int
    stuck_handles: int
    unresolved_forks: int = 0


@dataclass(frozen=True, slots=True)
class NodeStatus:
    node_id: bytes
    mode: Mode  # the effective mode
    mode_reason: str
    validator: bool
    final_height: int
    consensus_height: int
    state_root: bytes
    applied_ops: int
    unfinalized_ops: int
    pending_ops: int
    peers: tuple[PeerStatus, ...]  # by peer id
    stats: NodeStats  # a copy, not the live counters
    evidence: int
    open_conflicts: int
    oldest_open_conflict_age_s: float  # rounded to the millisecond
    #: Seconds the final height has not moved while ops that could become final wait (0.0
    #: when none waits), rounded to the millisecond: stall.py.
    finality_stalled_s: float
    fragments: dict[str, int]  # frame decoder counters summed over the peers (a copy)
    snapshot: SnapshotStatus | None
    state_sync: StateSyncStatus | None
    now: float  # the core's clock at its last input
    last_final_at: float  # the core's clock when the last checkpoint became final (or start)
    catching_up: bool
    best_peer_height: int  # the highest final height a connected peer announced
    sync_lag: int  # best_peer_height - final_height, at least 0
    consensus_round: int
    consensus_step: str  # propose, prevote, precommit
    conflicts: ConflictStatus
    council: tuple[MemberStatus, ...]  # by key
    epoch: int = 0  # the consensus epoch (rollback certificates accepted)
    reverted_ops: int = 0  # ops remembered as reverted by rollback certificates
    #: The first height whose council-signed root differed from ours, while the node recovers
    #: from that divergence (0 otherwise); see rejoin.py.
    root_divergence_height: int = 0
    #: The rejoin step after a rollback, a resync or a divergence: "" (none), "catching up to
    #: H", "confirming k/2" (peers that confirmed our final checkpoint).
    rejoin: str = ""
    #: True once a message signed with this validator's key that it did not sign arrived: it
    #: signs nothing more until restarted (finality.py, `SigningHalted`).
    signing_halted: bool = False
    #: Frame bytes by message class over every peer this core has had (bandwidth.py).
    bytes_sent: dict[str, int] = dataclasses.field(default_factory=dict)
    bytes_received: dict[str, int] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready dict of `NodeCore.status()`: ids in hex, the mode as its value."""
        return {
            "node_id": self.node_id.hex(),
            "mode": self.mode.value,
            "mode_reason": self.mode_reason,
            "validator": self.validator,
            "final_height": self.final_height,
            "consensus_height": self.consensus_height,
            "state_root": self.state_root.hex(),
            "applied_ops": self.applied_ops,
            "unfinalized_ops": self.unfinalized_ops,
            "pending_ops": self.pending_ops,
            "peers": {
                peer.peer_id.hex(): {
                    "score": peer.score,
                    "final_height": peer.final_height,
                    "bytes_sent": dict(peer.bytes_sent),
                    "bytes_received": dict(peer.bytes_received),
                }
                for peer in self.peers
            },
            "stats": dataclasses.asdict(self.stats),
            "evidence": self.evidence,
            "open_conflicts": self.open_conflicts,
            "oldest_open_conflict_age_s": self.oldest_open_conflict_age_s,
            "finality_stalled_s": self.finality_stalled_s,
            "fragments": dict(self.fragments),
            "snapshot": None if self.snapshot is None else self.snapshot.as_dict(),
            "state_sync": None if self.state_sync is None else self.state_sync.as_dict(),
            "last_final_at": self.last_final_at,
            "catching_up": self.catching_up,
            "best_peer_height": self.best_peer_height,
            "sync_lag": self.sync_lag,
            "consensus_round": self.consensus_round,
            "consensus_step": self.consensus_step,
            "conflicts": dataclasses.asdict(self.conflicts),
            "council": {
                member.key.hex(): {
                    "signed": member.signed,
                    "missed": member.missed,
                    "last_signed_height": member.last_signed_height,
                    "last_signed_at": member.last_signed_at,
                }
                for member in self.council
            },
            "epoch": self.epoch,
            "reverted_ops": self.reverted_ops,
            "root_divergence_height": self.root_divergence_height,
            "rejoin": self.rejoin,
            "signing_halted": self.signing_halted,
            "bytes_sent": dict(self.bytes_sent),
            "bytes_received": dict(self.bytes_received),
        }


def build_status(core: NodeCore) -> NodeStatus:
    ledger = core.ledger
    best = max((peer.final_height for peer in core._peers.values()), default=0)
    bytes_sent, bytes_received = core.bandwidth.totals(
        [peer.traffic for _, peer in sorted(core._peers.items())]
    )
    return NodeStatus(
        node_id=core.node_id,
        mode=core.effective_mode,
        mode_reason=core.mode_reason or (REASON_ROLLBACK if core.rollbacks.awaiting_resume else ""),
        validator=core.is_validator,
        final_height=core.final_height,
        consensus_height=core.finality.consensus_height,
        state_root=core.state_root(),
        applied_ops=ledger.applied_count(),
        unfinalized_ops=ledger.unfinalized_count(),
        pending_ops=len(ledger.pending),
        peers=tuple(
            PeerStatus(
                peer_id,
                peer.score,
                peer.final_height,
                by_name(peer.traffic.sent.by_class),
                by_name(peer.traffic.received.by_class),
            )
            for peer_id, peer in sorted(core._peers.items())
        ),
        stats=dataclasses.replace(core.stats),
        evidence=len(core.evidence),
        open_conflicts=len(core.conflicts.open_conflicts),
        oldest_open_conflict_age_s=round(core.oldest_open_conflict_age_s(), 3),
        finality_stalled_s=round(core.stall.stalled_s(core._now), 3),
        fragments=core.peer_rules.fragment_stats(),
        snapshot=_snapshot_status(core),
        state_sync=_state_sync_status(core),
        now=core._now,
        last_final_at=core.finality.last_final_at,
        catching_up=core.finality.catching_up,
        best_peer_height=best,
        sync_lag=max(0, best - core.final_height),
        consensus_round=core.consensus.round,
        consensus_step=core.consensus.step,
        conflicts=_conflict_status(core),
        council=tuple(
            MemberStatus(key, m.signed, m.missed, m.last_signed_height, m.last_signed_at)
            for key, m in sorted(core.finality.participation.members.items())
        ),
        epoch=core.rollbacks.history.current_epoch,
        reverted_ops=len(core.rollbacks.reverted),
        root_divergence_height=core.rejoin.divergent_height,
        rejoin=core.rejoin.step(),
        signing_halted=core.consensus.signing_halted,
        bytes_sent=bytes_sent,
        bytes_received=bytes_received,
    )


def _conflict_status(core: NodeCore) -> ConflictStatus:
    """See ConflictStatus; one pass over the final state's claims (at each status read)."""
    state = core.ledger.final_state
    endorsed: dict[str, list[set[bytes]]] = {}
    for claim in state.claims.values():
        if claim.endorsers and claim.handle not in state.bindings:
            endorsed.setdefault(claim.handle, []).append(claim.endorsers)
    quorum = core.genesis.quorum
    council = len(core.genesis.council)
    below = stuck = 0
    for endorser_sets in endorsed.values():
        below += sum(1 for endorsers in endorser_sets if len(endorsers) < quorum)
        undecided = council - len(set().union(*endorser_sets))
        if max(len(endorsers) for endorsers in endorser_sets) + undecided < quorum:
            stuck += 1
    forks = core.ledger.unresolved_forks()
    return ConflictStatus(len(core.conflicts.open_conflicts), below, stuck, forks)


def _snapshot_status(core: NodeCore) -> SnapshotStatus | None:
    snapshot = core.state_sync.snapshot
    if snapshot is None:
        return None
    manifest = snapshot.manifest
    return SnapshotStatus(
        manifest.height, manifest.manifest_id, manifest.chunk_count, manifest.total_size_bytes
    )


def _state_sync_status(core: NodeCore) -> StateSyncStatus | None:
    sync = core.state_sync.run
    if sync is None:
        return None
    manifest = sync.manifest
    return StateSyncStatus(
        height=manifest.height,
        manifest_id=manifest.manifest_id,
        chunks=manifest.chunk_count,
        chunks_verified=sync.fetcher.verified_count,
        size_bytes=manifest.total_size_bytes,
        peers=len(sync.fetcher.peers),
        started_at=sync.started_at,
    )
