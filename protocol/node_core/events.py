"""The events the node core raises for its shell (`NodeCore.next_event`), the frames it hands
over (`NodeCore.outgoing`), and its errors.

Durability before send, the contract between the core and its shell: every `Persist*` event
carries a `write_id` the core assigns (1, 2, 3, ... in emission order, per core instance), and
every `OutgoingFrame` carries `after_write`, the write it must wait for (0: none). The shell
commits writes in `write_id` order; it sends a frame only once the write `after_write` (and so
every write before it) is durable, in the order the core handed the frames over, and drops
the frames waiting on a write whose commit failed or that a crash lost. What that protects: a
restarted validator always finds every vote it sent in its durable signing state (no
equivocation), and a peer never holds a checkpoint or rollback certificate from this node that
this node forgets on restart.

Which writes a frame waits for: `PersistPrecommit`, `PersistConsensusState`, `PersistCheckpoint`
and `PersistRollback` are *send barriers*: every frame handed over after one of them waits for
the newest barrier (frames are batched per peer, so the core does not tell one message's
dependencies from another's; waiting for the newest barrier keeps frames in order too).
`PersistOps` is not a barrier: a relayed op needs no local durability (a client is
acknowledged only once its op's write is durable, which the shell tracks itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import LocalProtocolError, RemoteProtocolError
from ..ledger import LedgerEvent
from ..ledger.state import LedgerState
from ..telemetry import Activity
from .observed import Observed


@dataclass(frozen=True, slots=True)
class OutgoingFrame:
    """One frame for `peer`. `control` frames (consensus, bundles, evidence) should jump ahead
    of bulk frames already queued in the transport. `after_write`: the `write_id` that must
    be durable before this frame leaves (0: none; see the module comment)."""

    peer: bytes
    frame: bytes
    control: bool
    after_write: int


@dataclass(frozen=True, slots=True)
class PersistOps:
    """Make these envelopes durable (the op log); acknowledge submissions after that."""

    envelopes: tuple[bytes, ...]
    #: This write's id (see the module comment); 0 only on an event built outside a core.
    write_id: int = field(default=0, kw_only=True)


@dataclass(frozen=True, slots=True)
class PersistCheckpoint:
    height: int
    checkpoint_id: bytes
    state_root: bytes
    bundle: bytes
    final_op_ids: tuple[bytes, ...]
    #: Empty, or the state snapshot at this height (`snapshot.encode_blob`): store it with the
    #: checkpoint in one write and pass the latest one to `NodeCore.restore(snapshot=...)`.
    snapshot: bytes = b""
    #: This write's id: frames handed over after it wait for it (see the module comment).
    write_id: int = field(default=0, kw_only=True)
    #: What this checkpoint adds to the product telemetry (protocol/telemetry.py): stored in
    #: the same write, so a restart keeps it and nothing is recomputed from history.
    telemetry: Activity | None = field(default=None, kw_only=True)
    #: Participation and open conflicts at this height, stored in the same write (observed.py).
    observed: Observed | None = field(default=None, kw_only=True)


@dataclass(frozen=True, slots=True)
class SnapshotDue:
    """Build the state snapshot at `height` (config snapshot_build = "deferred"): run
    `ledger.snapshot.build_snapshot(state, height, checkpoint_id, state_root)` off the event
    loop, then pass the result and `bundle` to `NodeCore.snapshot_built`, and store the blob
    (`snapshot.encode_blob`) with `put_snapshot` when that returns True. `state` is a private
    copy of the final state at `height`, so a worker thread may read it while the core goes
    on. The PersistCheckpoint of the same height comes before this event."""

    height: int
    checkpoint_id: bytes
    state_root: bytes
    bundle: bytes = field(repr=False)
    state: LedgerState = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class PersistPrecommit:
    """Make one of this validator's kept precommits durable (its record: the signed message
    and the value, `consensus.encode_kept_precommit`) under `precommit_id`, once: records are
    never rewritten. It always comes before the `PersistConsensusState` that names it. Pass the
    records the latest durable state names (its `precommit_ids`; from the bytes alone:
    `consensus.signing_state_precommit_ids`) to `NodeCore.restore(precommits=...)`."""

    precommit_id: bytes
    data: bytes = field(repr=False)
    write_id: int = field(default=0, kw_only=True)


@dataclass(frozen=True, slots=True)
class PersistConsensusState:
    """Make this validator's consensus signing state durable (replacing the previous one)
    BEFORE sending any frame handed over after this event (their `after_write` is at least
    this `write_id`): the shell must not let a message this node signed leave it before the
    state that records it survives a crash. Pass the latest durable one to
    `NodeCore.restore(consensus_state=...)`. The state is compact: it names the kept
    precommits by id (`precommit_ids`, whose records `PersistPrecommit` wrote before it); once
    it is durable, the records of any other id may be deleted."""

    data: bytes
    precommit_ids: tuple[bytes, ...] = ()
    write_id: int = field(default=0, kw_only=True)


@dataclass(frozen=True, slots=True)
class CheckpointFinalized:
    height: int
    checkpoint_id: bytes
    state_root: bytes
    ops: int
    latency_s: float  # from the first unfinalized op of this cut to finality, on this node


@dataclass(frozen=True, slots=True)
class SyncSessionFinished:
    peer: bytes
    duration_s: float
    rounds: int
    bytes: int
    within_cadence: bool
    missing: int  # ops the peer lacked that we pushed, plus ops we lacked


@dataclass(frozen=True, slots=True)
class CatchUpStarted:
    """A peer is final at a greater height than we are: we fetch bundles and their ops."""

    peer: bytes
    peer_height: int
    own_height: int


@dataclass(frozen=True, slots=True)
class PeerMisbehaved:
    peer: bytes
    code: str
    score: int


@dataclass(frozen=True, slots=True)
class EquivocationRecorded:
    evidence: bytes
    validator: bytes


@dataclass(frozen=True, slots=True)
class HandleConflictRejected:
    """The `handle.conflict` rejection: final at `height`, the handle belongs to the winning
    claim and each losing claim is rejected. Raised once per handle and winner, whether this
    node derived it at finality or received it from a peer (and checked it). Also raised, once
    per claim, when a quorum of `handle.revoke` on a claim becomes final: `losing_claims` is
    the revoked claim and `winning_claim` the handle's final binding then (empty when unbound).
    `holders` are the claimants of `losing_claims`, in the same order: the accounts whose
    subscribers the shell tells."""

    handle: str
    winning_claim: bytes
    losing_claims: tuple[bytes, ...]
    height: int
    holders: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class StateSyncFinished:
    """The node restored the final state at `height` from a snapshot fetched from peers (in
    `chunks` chunks from `peers` peers); a PersistCheckpoint with the snapshot came before."""

    height: int
    chunks: int
    peers: int


@dataclass(frozen=True, slots=True)
class StateSyncFailed:
    """A state sync to `height` failed; catch-up tries again after STATE_SYNC_RETRY_S."""

    height: int
    reason: str


class SnapshotRestoreError(LocalProtocolError):
    """The snapshot given to `NodeCore.restore` is unusable (corrupt blob, no bundle of its
    height, or a root or bundle mismatch): restore without it (full replay)."""

    code = "snapshot_restore_failed"


class SnapshotOfferMismatchError(RemoteProtocolError):
    """A snapshot whose manifest does not match the checkpoint bundle offered with it, or
    whose records do not rebuild the bundle's state root."""

    code = "snapshot_mismatch"


@dataclass(frozen=True, slots=True)
class FinalityStalled:
    """A warning: the final height has not moved for FINALITY_STALL_INTERVALS checkpoint
    intervals while ops wait. `consensus_height` and `round` are where this node's consensus
    is (0 and 0 outside the council); `silent_members` are the council members (this node
    aside) whose consensus messages for height `final_height + 1` never arrived here, sorted.
    Raised once per stalled final height."""

    final_height: int
    consensus_height: int
    round: int
    silent_members: tuple[bytes, ...]
    stalled_s: float


@dataclass(frozen=True, slots=True)
class SigningHalted:
    """An error: a message signed with this validator's key that this node did not sign
    arrived (its `kind` in `round` of `height`): another process holds the key, most likely a
    copy of this node's home. The node signs nothing more until it is restarted (finality.py);
    the operator stops the other copy first (docs/OPERATIONS.md, "One key, one process")."""

    height: int
    round: int
    kind: str


@dataclass(frozen=True, slots=True)
class ModeChanged:
    mode: str
    reason: str


@dataclass(frozen=True, slots=True)
class PersistRollback:
    """Store this accepted rollback certificate (`RollbackCertificate.encode()`) after the
    ones stored before: `NodeCore.restore(certificates=[...])` takes them back in that order.
    `epoch` is the epoch it starts."""

    certificate: bytes
    epoch: int
    #: This write's id: frames handed over after it wait for it (see the module comment).
    write_id: int = field(default=0, kw_only=True)


@dataclass(frozen=True, slots=True)
class OpsReverted:
    """A rollback certificate reverted these ops (final above `height` in the epoch it
    ended): report them as `reverted` (code `op_reverted`) to clients and subscribers, and
    pass their ids to `NodeCore.restore(reverted_ops=...)`; they are never applied again."""

    op_ids: tuple[bytes, ...]
    height: int
    epoch: int


@dataclass(frozen=True, slots=True)
class EpochEntered:
    """The node entered `epoch`, consensus continuing at `height` + 1 (`reverted` ops were
    reverted here; 0 for a node that was behind H and catches up to it)."""

    epoch: int
    height: int
    reverted: int


@dataclass(frozen=True, slots=True)
class RollbackRevertFailed:
    """The certificate was accepted but this node cannot re-derive the state at `height`
    locally (the bundles it needs are no longer kept, or it was restored from a snapshot above
    H): it forgets its final state and catches up again from its peers, read-only with reason
    `rollback_resync` until it is final at `height` (its final height was `final_height`)."""

    height: int
    final_height: int


@dataclass(frozen=True, slots=True)
class RollbackVoteReceived:
    """A valid rollback vote of council member `signer` (for `council status`)."""

    signer: bytes
    from_epoch: int
    height: int


@dataclass(frozen=True, slots=True)
class RootDiverged:
    """Our own final state root at `height` is not the council-signed `signed_root` (a
    corrupt state): the node went read-only with reason `root_divergence`, forgot its final
    state and catches up again from its peers (rejoin.py). The shell logs an error naming
    `first_height`, the first divergent height of this episode."""

    height: int
    own_root: bytes
    signed_root: bytes
    first_height: int


@dataclass(frozen=True, slots=True)
class StoredOpsWanted:
    """`peer` asked for final ops whose bodies the ledger no longer holds in memory (older than
    its `final_bodies_heights`): the shell reads them from its store and hands them back with
    `NodeCore.send_stored_ops`, which sends them within the bulk send rate (held, never
    dropped: serve_rate.py). Pruned ones are simply not sent; the peer then state-syncs."""

    peer: bytes
    op_ids: tuple[bytes, ...]


#: The write events (each with a `write_id`).
PersistEvent = (
    PersistOps | PersistCheckpoint | PersistPrecommit | PersistConsensusState | PersistRollback
)

#: The write events frames handed over after them wait for (see the module comment).
SEND_BARRIERS = (PersistCheckpoint, PersistPrecommit, PersistConsensusState, PersistRollback)

NodeEvent = (
    LedgerEvent
    | PersistOps
    | PersistCheckpoint
    | SnapshotDue
    | PersistPrecommit
    | PersistConsensusState
    | CheckpointFinalized
    | SyncSessionFinished
    | CatchUpStarted
    | PeerMisbehaved
    | EquivocationRecorded
    | HandleConflictRejected
    | ModeChanged
    | SigningHalted
    | FinalityStalled
    | StateSyncFinished
    | StateSyncFailed
    | PersistRollback
    | OpsReverted
    | EpochEntered
    | RollbackRevertFailed
    | RollbackVoteReceived
    | RootDiverged
    | StoredOpsWanted
)
