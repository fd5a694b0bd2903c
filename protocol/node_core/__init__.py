"""The swarm node core (sans-I/O): ledger + peers + gossip + delta sync + council finality.

Inputs: `peer_connected`, `peer_disconnected`, `receive_frame`, `submit_op`, `handle_timer`,
`set_mode`, all with an explicit `now`. Outputs: `outgoing()` (`OutgoingFrame`s),
`next_event()` and `get_timer()`. The core never touches I/O: it asks the shell to persist
(`PersistOps`, `PersistCheckpoint`, `PersistPrecommit`, `PersistConsensusState`,
`PersistRollback`, each with a
`write_id`), each outgoing frame names the write it must not leave before (`after_write`,
events.py), and the shell feeds results back by calling it. The same
core runs in the daemon (node/) and in the deterministic simulator.

Gossip is push for new ops, lazy for relays (Plumtree-style): an op submitted by a local
client is pushed in full to `gossip_fanout` peers and announced (its id in an ANNOUNCE) to the
others; an op admitted from a peer is pushed in full to `eager_relay_fanout` peers (0 by
default) and announced to the rest, who FETCH it from an announcer if it has not arrived
`ANNOUNCE_FETCH_DELAY_S` later. Delta sync runs with each peer every `delta_sync_interval_s`
(skipped at most `SYNC_SKIPS_MAX` times in a row while the peer's announcements flow at our
final height): the initiator's SYNC_HELLO carries its final height (the
peer that is behind asks for checkpoint bundles) and the first message of a range-based set
reconciliation over the ids of the unfinalized ops; at the end both sides push the ops the
other lacks. Council members run Tendermint on checkpoint cuts (checkpoint.py); everyone
finalizes from decisions or from gossiped bundles.

Modules: `core` (the NodeCore façade), `peers` (slots, rate limits, scores), `gossip` (push,
lazy relay, fetches), `delta_sync`, `finality` (consensus driving, catch-up, bundles,
evidence), `conflicts` (handle-conflict rejections), `council` (the council control plane:
what a quiesced node or one with claims paused admits, council-only cuts), `stall` (the
finality stall warning), `state_sync` (snapshots served and fetched), `status` (counters and
the typed NodeStatus), `events`, `config`. The bounds are in protocol/limits.py.
"""

from __future__ import annotations

from ..ledger import Outcome
from ..limits import (
    ANNOUNCE_FETCH_DELAY_S,
    ANNOUNCED_IDS_MAX,
    ANNOUNCED_IDS_PER_PEER_MAX,
    ANNOUNCERS_PER_ID_MAX,
    BUNDLES_KEPT_MAX,
    CONSENSUS_DRAIN_PASSES_MAX,
    CONSENSUS_SEEN_MAX,
    EVIDENCE_KEPT_MAX,
    FETCH_REQUESTED_MAX,
    FETCH_RETRY_S,
    FETCH_SCAN_S,
    FUTURE_BUNDLES_MAX,
    NODE_EVENTS_MAX,
    SNAPSHOT_INTERVAL_CHECKPOINTS_DEFAULT,
    SNAPSHOT_OFFER_INTERVAL_S,
    STATE_SYNC_CHUNK_TIMEOUT_S,
    STATE_SYNC_RETRY_S,
    SYNC_SESSION_TIMEOUT_INTERVALS,
    SYNC_SKIPS_MAX,
)
from .config import SNAPSHOT_BUILD_MODES, Mode, NodeCoreConfig
from .core import NodeCore
from .events import (
    SEND_BARRIERS,
    CatchUpStarted,
    CheckpointFinalized,
    EpochEntered,
    EquivocationRecorded,
    FinalityStalled,
    HandleConflictRejected,
    ModeChanged,
    NodeEvent,
    OpsReverted,
    OutgoingFrame,
    PeerMisbehaved,
    PersistCheckpoint,
    PersistConsensusState,
    PersistEvent,
    PersistOps,
    PersistPrecommit,
    PersistRollback,
    RollbackRevertFailed,
    RollbackVoteReceived,
    RootDiverged,
    SigningHalted,
    SnapshotDue,
    SnapshotOfferMismatchError,
    SnapshotRestoreError,
    StateSyncFailed,
    StateSyncFinished,
    StoredOpsWanted,
    SyncSessionFinished,
)
from .observed import MemberRecord, Observed
from .peers import (
    PENALTY_BAD_OP,
    PENALTY_BAD_SNAPSHOT,
    PENALTY_MALFORMED_FRAME,
    PENALTY_MALFORMED_MESSAGE,
    PENALTY_RATE_LIMITED,
)
from .rejoin import REASON_DIVERGENCE
from .rollbacks import REASON_RESYNC, REASON_ROLLBACK, RollbackSignerError
from .state_sync import check_snapshot_bundle, rebuild_snapshot_state, signed_snapshot_state
from .status import (
    ConflictStatus,
    MemberStatus,
    NodeStats,
    NodeStatus,
    PeerStatus,
    SnapshotStatus,
    StateSyncStatus,
)

__all__ = [
    "ANNOUNCED_IDS_MAX",
    "ANNOUNCED_IDS_PER_PEER_MAX",
    "ANNOUNCERS_PER_ID_MAX",
    "ANNOUNCE_FETCH_DELAY_S",
    "BUNDLES_KEPT_MAX",
    "CONSENSUS_DRAIN_PASSES_MAX",
    "CONSENSUS_SEEN_MAX",
    "EVIDENCE_KEPT_MAX",
    "FETCH_REQUESTED_MAX",
    "FETCH_RETRY_S",
    "FETCH_SCAN_S",
    "FUTURE_BUNDLES_MAX",
    "NODE_EVENTS_MAX",
    "PENALTY_BAD_OP",
    "PENALTY_BAD_SNAPSHOT",
    "PENALTY_MALFORMED_FRAME",
    "PENALTY_MALFORMED_MESSAGE",
    "PENALTY_RATE_LIMITED",
    "REASON_DIVERGENCE",
    "REASON_RESYNC",
    "REASON_ROLLBACK",
    "SEND_BARRIERS",
    "SNAPSHOT_BUILD_MODES",
    "SNAPSHOT_INTERVAL_CHECKPOINTS_DEFAULT",
    "SNAPSHOT_OFFER_INTERVAL_S",
    "STATE_SYNC_CHUNK_TIMEOUT_S",
    "STATE_SYNC_RETRY_S",
    "SYNC_SESSION_TIMEOUT_INTERVALS",
    "SYNC_SKIPS_MAX",
    "CatchUpStarted",
    "CheckpointFinalized",
    "ConflictStatus",
    "EpochEntered",
    "EquivocationRecorded",
    "FinalityStalled",
    "HandleConflictRejected",
    "MemberRecord",
    "MemberStatus",
    "Mode",
    "ModeChanged",
    "NodeCore",
    "NodeCoreConfig",
    "NodeEvent",
    "NodeStats",
    "NodeStatus",
    "Observed",
    "OpsReverted",
    "Outcome",
    "OutgoingFrame",
    "PeerMisbehaved",
    "PeerStatus",
    "PersistCheckpoint",
    "PersistConsensusState",
    "PersistEvent",
    "PersistOps",
    "PersistPrecommit",
    "PersistRollback",
    "RollbackRevertFailed",
    "RollbackSignerError",
    "RollbackVoteReceived",
    "RootDiverged",
    "SigningHalted",
    "SnapshotDue",
    "SnapshotOfferMismatchError",
    "SnapshotRestoreError",
    "SnapshotStatus",
    "StateSyncFailed",
    "StateSyncFinished",
    "StateSyncStatus",
    "StoredOpsWanted",
    "SyncSessionFinished",
    "check_snapshot_bundle",
    "rebuild_snapshot_state",
    "signed_snapshot_state",
]
