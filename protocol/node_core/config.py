"""The node core's settings (`NodeCoreConfig`) and operating modes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .. import consensus, limits
from ..errors import LocalProtocolError
from ..ledger import LedgerConfig
from ..limits import BUNDLES_KEPT_MAX, SNAPSHOT_INTERVAL_CHECKPOINTS_DEFAULT

#: How snapshots are built (`NodeCoreConfig.snapshot_build`): in `_finalize` itself, or by the
#: shell off its event loop after a SnapshotDue event.
SNAPSHOT_BUILD_MODES = ("inline", "deferred", "frozen")


class Mode(StrEnum):
    NORMAL = "normal"
    READ_ONLY = "read-only"
    QUIESCED = "quiesced"


@dataclass(frozen=True)
class NodeCoreConfig:
    gossip_fanout: int = limits.GOSSIP_FANOUT
    #: Peers an op admitted from a peer is pushed to in full (Plumtree's eager set); all
    #: other peers get its id in an ANNOUNCE. 0 (lazy only) suits a full council mesh, where
    #: the origin's push reaches everyone; a sparse mesh may trade bandwidth for latency.
    eager_relay_fanout: int = 0
    peers_max: int = limits.PEERS_MAX
    delta_sync_interval_s: float = limits.DELTA_SYNC_INTERVAL_S
    peer_messages_per_s: float = limits.PEER_MESSAGES_PER_S
    peer_messages_burst: float = limits.PEER_MESSAGES_BURST
    checkpoint_interval_s: float = limits.CHECKPOINT_INTERVAL_S
    checkpoint_ops_trigger: int = limits.CHECKPOINT_OPS_TRIGGER
    #: Final heights between state snapshots (0: none are made; the node still restores a
    #: snapshot fetched from peers). See `PersistCheckpoint.snapshot`.
    snapshot_interval: int = SNAPSHOT_INTERVAL_CHECKPOINTS_DEFAULT
    #: "inline": `_finalize` builds the snapshot (a full state walk, ~3 us an account) and
    #: hands its blob over in `PersistCheckpoint.snapshot`. "deferred": it emits SnapshotDue
    #: with a copy of the state instead (~1.6 us an account) and the shell builds it in a
    #: worker thread, then calls `snapshot_built` (node/daemon.py does so). "frozen": like
    #: "deferred" without the copy: SnapshotDue carries the final state itself, frozen
    #: (`Ledger.freeze_final`: later checkpoints write into a layer above it) until the shell
    #: calls `snapshot_state_released` once its worker is done reading (the daemon; issue 13:
    #: no O(accounts) copy on the event loop). `restore` always builds inline.
    snapshot_build: str = "inline"
    #: Checkpoint bundles kept in memory to serve lagging peers (at most BUNDLES_KEPT_MAX);
    #: a peer further behind than this catches up by state sync.
    bundles_kept: int = BUNDLES_KEPT_MAX
    consensus: consensus.ConsensusConfig = field(default_factory=consensus.ConsensusConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    #: A sentry: when set, only these node ids may connect (peers.py `PeerRules.refusal`).
    allowed_peers: frozenset[bytes] | None = None
    #: Send-rate limits of bulk sync serving, per peer and in total (serve_rate.py).
    serve_bytes_per_s_peer: float = limits.SERVE_BYTES_PER_S_PEER
    serve_burst_bytes_peer: float = limits.SERVE_BURST_BYTES_PER_PEER
    serve_bytes_per_s_total: float = limits.SERVE_BYTES_PER_S_TOTAL
    serve_burst_bytes_total: float = limits.SERVE_BURST_BYTES_TOTAL
    #: Whether the shell serves final ops whose bodies left the ledger's memory from its store:
    #: then a peer asking for them raises `StoredOpsWanted` (the daemon; issue 13). Off, they
    #: are not sent (a shell without a store, the simulator).
    stored_ops: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.gossip_fanout <= self.peers_max <= limits.PEERS_MAX:
            raise LocalProtocolError("need 1 <= gossip_fanout <= peers_max <= PEERS_MAX")
        if not 0 <= self.eager_relay_fanout <= self.gossip_fanout:
            raise LocalProtocolError("need 0 <= eager_relay_fanout <= gossip_fanout")
        if self.delta_sync_interval_s <= 0 or self.checkpoint_interval_s <= 0:
            raise LocalProtocolError("intervals must be positive")
        if self.snapshot_interval < 0:
            raise LocalProtocolError("snapshot_interval must be >= 0")
        if self.snapshot_build not in SNAPSHOT_BUILD_MODES:
            raise LocalProtocolError(f"snapshot_build must be one of {SNAPSHOT_BUILD_MODES}")
        if not 1 <= self.bundles_kept <= BUNDLES_KEPT_MAX:
            raise LocalProtocolError("need 1 <= bundles_kept <= BUNDLES_KEPT_MAX")
        if (
            min(self.serve_bytes_per_s_peer, self.serve_bytes_per_s_total) <= 0
            or min(self.serve_burst_bytes_peer, self.serve_burst_bytes_total) <= 0
        ):
            raise LocalProtocolError("serve rates and bursts must be positive")
