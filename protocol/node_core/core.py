"""NodeCore, the façade: inputs, outputs, the peer table, dispatch by message type and the
merge of the sub-machines' deadlines into one timer.

The sub-machines (peers, gossip, delta_sync, finality, conflicts, state_sync) each hold their
own state and a reference to the façade; they read and call its underscore members (`_peers`,
`_peer_order`, `_unfinal_ids`, `_now`, `_emit`, `_drain_ledger_events`), which nothing outside
this package touches. Every call order is the one of the single-module core it was split
from: the simulator's trace hashes are unchanged.
"""

from __future__ import annotations

import dataclasses
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .. import consensus
from ..checkpoint import VIRTUAL_EPOCH_MS
from ..codes import RejectCode
from ..crypto import KeyPair
from ..errors import RemoteProtocolError
from ..framing import Priority
from ..genesis import Genesis
from ..ledger import HandleConflictRaised, Ledger, OpEvicted, OpExcluded, OpRejected, Outcome
from ..ledger.state import LedgerState
from ..limits import FETCH_RETRY_S, NODE_EVENTS_MAX
from ..messages import (
    AnnounceMessage,
    BundleRequestMessage,
    BundlesMessage,
    CheckpointOpsRequest,
    ChunkMessage,
    ChunkMissingMessage,
    ChunkRequestMessage,
    ConsensusEnvelope,
    EvidenceMessage,
    FetchMessage,
    HandleConflictMessage,
    Message,
    OpsMessage,
    ReconcileMessage,
    RollbackMessage,
    SettlementMessage,
    SnapshotOfferMessage,
    SyncDoneMessage,
    SyncHelloMessage,
    decode_message,
)
from ..ops import decode_op, op_id_of
from ..reconcile import IdSet
from ..rollback import RollbackCertificate, RollbackVote
from ..snapshot import Manifest
from . import council
from .bandwidth import Bandwidth
from .config import Mode, NodeCoreConfig
from .conflicts import HandleConflicts
from .delta_sync import DeltaSync
from .events import SEND_BARRIERS, ModeChanged, NodeEvent, OutgoingFrame, PersistEvent
from .finality import Finality
from .gossip import Gossip
from .observed import Observed, restore_observed
from .peers import PENALTY_MALFORMED_FRAME, PENALTY_MALFORMED_MESSAGE, Peer, PeerRules
from .rejoin import Rejoin
from .rollbacks import Rollbacks
from .serve_rate import ServeRate, StoredOpsAnswer, ops_answer_size_max
from .stall import StallWatch
from .state_sync import StateSync
from .status import NodeStats, NodeStatus, build_status

#: A handler of one message type: (peer, message, now).
Handler = Callable[[Peer, Any, float], None]


def _ignore(peer: Peer, message: Message, now: float) -> None:
    """SYNC_DONE: nothing to do (a session ends with its last RECONCILE)."""


class NodeCore:
    """One swarm node's protocol logic, driven by a shell or the simulator."""

    def __init__(
        self,
        *,
        genesis: Genesis,
        keypair: KeyPair,
        config: NodeCoreConfig | None = None,
        rng: random.Random,
        now: float,
    ) -> None:
        self.genesis = genesis
        self.keypair = keypair
        self.node_id = keypair.public_key
        self.config = config or NodeCoreConfig()
        self.rng = rng
        self.ledger = Ledger(genesis, self.config.ledger)
        self.stats = NodeStats()
        self.mode = Mode.NORMAL
        self.mode_reason = ""
        self.is_validator = self.node_id in genesis.council
        self.consensus = consensus.Tendermint(
            network_id=genesis.network_id,
            validators=list(genesis.council),
            keypair=keypair if self.is_validator else None,
            config=self.config.consensus,
        )
        self._peers: dict[bytes, Peer] = {}
        #: Connected peer ids, sorted (the per-op paths iterate them in a stable order).
        self._peer_order: list[bytes] = []
        #: Peers whose encoder had a message queued since the last `outgoing()`.
        self._queued_peers: set[bytes] = set()
        self._unfinal_ids = IdSet()
        self._events: deque[NodeEvent] = deque()
        #: The `write_id` of the newest Persist* event, and of the newest send barrier: the
        #: `after_write` of every frame handed over now (events.py's module comment).
        self._write_id = 0
        self._barrier_write_id = 0
        self._now = now
        #: Wall time (UTC ms) = round(now * 1000) + this; see `set_wall_clock`.
        self.wall_offset_ms = VIRTUAL_EPOCH_MS
        self.evidence: list[bytes] = []
        #: 0 when the ledger holds the whole history; else the height of the snapshot it was
        #: restored from (ops final at or below it may be unknown to this node: only the
        #: state says they happened).
        self.snapshot_base_height = 0
        self.peer_rules = PeerRules(self)
        self.bandwidth = Bandwidth()
        self.gossip = Gossip(self, now)
        self.delta_sync = DeltaSync(self)
        self.finality = Finality(self, now)
        self.conflicts = HandleConflicts(self)
        self.state_sync = StateSync(self, now)
        self.serve_rate = ServeRate(self, now)
        self.rollbacks = Rollbacks(self)
        self.rejoin = Rejoin(self)
        self.stall = StallWatch(self)
        #: Message type -> handler (`_dispatch`).
        self._handlers = self._message_handlers()

    # --- restart -----------------------------------------------------------------------------

    @classmethod
    def restore(
        cls,
        *,
        genesis: Genesis,
        keypair: KeyPair,
        config: NodeCoreConfig | None = None,
        rng: random.Random,
        now: float,
        envelopes: list[bytes],
        bundles: list[bytes] = (),  # type: ignore[assignment]
        consensus_state: bytes | None = None,
        precommits: list[bytes] = (),  # type: ignore[assignment]
        snapshot: bytes | None = None,
        certificates: list[bytes] = (),  # type: ignore[assignment]
        reverted_ops: list[bytes] = (),  # type: ignore[assignment]
    ) -> NodeCore:
        """Rebuild a core from its durable op log, checkpoint bundles and the latest
        `PersistConsensusState` data (after a crash), with the `PersistPrecommit` records it
        names (`precommits`). Raises consensus.SigningStateError when `consensus_state` is not
        a signing state of this node's key on this network, or a record it names is missing.

        `snapshot`, when given, is the latest stored `PersistCheckpoint.snapshot` blob; its
        checkpoint's bundle must be among `bundles`. The ledger then starts from the snapshot's
        state, ops at or below the final line are skipped without verifying their signatures,
        and only bundles above its height are replayed. Raises SnapshotRestoreError when the
        blob is corrupt, its bundle is missing, or bundle, manifest and rebuilt root disagree
        (the shell then restores without it).

        `certificates` are the stored `PersistRollback` certificates in the order accepted
        (the epoch history is rebuilt from them first, so the bundle replay refuses reverted
        heights and consensus runs in the current epoch; raises rollback.RollbackError when
        they do not verify or chain), `reverted_ops` the ids of every `OpsReverted` event
        (their envelopes in the op log are skipped and refused ever after).

        The daemon runs the same steps itself, streaming the log and the bundles above its
        snapshot in pages: `begin_restore`, `replay_ops` (any number of pages),
        `replay_bundles` (any number of pages), `finish_restore`."""
        by_height = _bundles_by_height(bundles)
        core = cls.begin_restore(
            genesis=genesis,
            keypair=keypair,
            config=config,
            rng=rng,
            now=now,
            snapshot=snapshot,
            snapshot_bundles=by_height,
            certificates=certificates,
            reverted_ops=reverted_ops,
        )
        core.replay_ops(envelopes, now)
        core.replay_bundles(bundles, now, _last_snapshot_height(by_height, core.config))
        core.finish_restore(consensus_state, now, precommits)
        return core

    @classmethod
    def begin_restore(
        cls,
        *,
        genesis: Genesis,
        keypair: KeyPair,
        config: NodeCoreConfig | None = None,
        rng: random.Random,
        now: float,
        snapshot: bytes | None = None,
        snapshot_bundles: dict[int, bytes] | None = None,
        certificates: list[bytes] = (),  # type: ignore[assignment]
        reverted_ops: list[bytes] = (),  # type: ignore[assignment]
    ) -> NodeCore:
        """The first step of `restore`: the epoch history, the reverted ids and the snapshot
        (its bundle among `snapshot_bundles`, by height)."""
        core = cls(genesis=genesis, keypair=keypair, config=config, rng=rng, now=now)
        core.rollbacks.restore([RollbackCertificate.decode(data) for data in certificates])
        core.rollbacks.restore_reverted(reverted_ops)
        if snapshot is not None:
            core.state_sync.restore_from_blob(snapshot, snapshot_bundles or {})
        return core

    def replay_ops(self, envelopes: Iterable[bytes], now: float) -> None:
        """Replay logged ops (one page or all): those at or below the snapshot's final line
        are skipped without verifying their signatures."""
        for envelope in envelopes:
            if self.state_sync.snapshot is not None and self._below_final_line(envelope):
                continue
            if self.rollbacks.reverted and self.rollbacks.is_reverted(op_id_of(envelope)):
                continue
            outcome = self.ledger.receive_op(envelope, now)
            if outcome.status in ("accepted", "pending", "excluded"):
                self._unfinal_ids.add(outcome.op_id)
        self.ledger.drain_events()

    def replay_bundles(self, bundles: Iterable[bytes], now: float, snapshot_height: int) -> None:
        """Replay stored bundles (one page or all, ascending); `snapshot_height`: the newest
        snapshot height among all of them (rebuilt in memory to serve peers). A bundle at or
        below the final height of this epoch is skipped before its signatures are checked
        (`stats.bundles_verified` counts the checks): below a snapshot it is final already."""
        finality = self.finality
        finality.replay_snapshot_height = snapshot_height
        epoch = self.rollbacks.history.current_epoch
        for data in bundles:
            try:
                bundle = consensus.CheckpointBundle.decode(data)
            except RemoteProtocolError:
                bundle = None  # left to receive_bundle, which refuses it
            if bundle is not None and bundle.height <= self.final_height and bundle.epoch == epoch:
                continue  # what receive_bundle would do after verifying it: nothing
            finality.receive_bundle(b"", data, now, persist=False)
        finality.replay_snapshot_height = -1

    def finish_restore(
        self, consensus_state: bytes | None, now: float, precommits: Sequence[bytes] = ()
    ) -> None:
        """The last step of `restore`: no event or write is due for what came from the store;
        consensus resumes from the signing state (and the kept precommits' records)."""
        self._events.clear()
        # The replay's writes are durable already (they came from the store): none is due.
        self._write_id = self._barrier_write_id = 0
        if consensus_state is not None:
            self.resume_consensus(consensus_state, now, precommits)

    def send_stored_ops(
        self, peer_id: bytes, envelopes: list[bytes], now: float | None = None
    ) -> None:
        """Send final ops the shell read from its store to `peer_id` (the answer to a
        `StoredOpsWanted`; bulk priority, like the catch-up answers they complete) within
        the bulk send rate (serve_rate.py): over it the answer is held, not dropped, and
        sent when the buckets allow (the timer). `now` is the shell's clock (default: the
        last input's time)."""
        if now is not None:
            self._now = now
        peer = self._peers.get(peer_id)
        if peer is not None and envelopes:
            self.serve_stored_ops(peer, StoredOpsAnswer(tuple(envelopes)))

    def serve_stored_ops(self, peer: Peer, answer: StoredOpsAnswer) -> None:
        """Send `answer` if the send rate allows it now (else serve_rate holds it)."""
        envelopes = list(answer.envelopes)
        if self.serve_rate.admit(peer, answer, ops_answer_size_max(envelopes)):
            self.gossip.send_envelopes(peer, envelopes, Priority.BULK)

    def below_final_line(self, envelope: bytes) -> bool:
        """Public form of `_below_final_line` (for checkers of a node restored from a
        snapshot: such an op is covered by the final state even when the node never saw it)."""
        return self._below_final_line(envelope)

    def _below_final_line(self, envelope: bytes) -> bool:
        """Whether an op is at or below its author's final seq: final already, or a fork that
        lost to a final op (read without verifying the signature; an undecodable envelope is
        left to the pipeline, which rejects it)."""
        try:
            op = decode_op(envelope)
        except RemoteProtocolError:
            return False
        return self._seq_below_final_line(op.author, op.seq)

    def _seq_below_final_line(self, author: bytes, seq: int) -> bool:
        account = self.ledger.final_state.accounts.get(author)
        return account is not None and account.seq >= seq

    def set_wall_clock(self, wall_ms: int, now: float) -> None:
        """The wall-clock input (UTC ms read at core time `now`): the core's clock is monotonic,
        a cut's time is wall time (checkpoint.py). A daemon calls this at start and before its
        timer inputs; without it the core's time 0.0 is VIRTUAL_EPOCH_MS."""
        self.wall_offset_ms = wall_ms - round(now * 1000)

    def wall_ms(self, now: float) -> int:
        """The wall time (UTC ms) at core time `now`."""
        return round(now * 1000) + self.wall_offset_ms

    def restore_observed(self, observed: Observed, now: float) -> bool:
        """After `restore` (and `set_wall_clock`): continue the participation counts and the
        open conflicts' ages from the stored record (observed.py)."""
        return restore_observed(self, observed, now)

    def resume_consensus(self, data: bytes, now: float, precommits: Sequence[bytes] = ()) -> None:
        """Resume consensus from a durable signing state (Tendermint's last sign state).

        A state for a decided height (at most final_height) is ignored. One for the height in
        progress resumes there, lock and signed messages included, so a restart is never
        equivocation. One further ahead (its checkpoints were not durable yet) waits until
        that height starts (so does one for the height in progress while quiesced). Ignored
        when consensus already runs at or above its height, so
        a shell may hand the same state over twice. `precommits`: the `PersistPrecommit`
        records the state names (consensus.Tendermint.restore_precommits).
        """
        self.finality.resume_consensus(data, now, precommits)

    # --- peers -------------------------------------------------------------------------------

    def peer_connected(self, peer_id: bytes, now: float) -> bool:
        """Register a peer; False (and nothing changes) when the peer limit is reached."""
        self._now = now
        connected = self.peer_rules.connect(peer_id, now)
        if connected and self.rollbacks.history.certificates:
            self.rollbacks.serve(self._peers[peer_id])
        return connected

    def peer_disconnected(self, peer_id: bytes, now: float) -> None:
        self._now = now
        self.peer_rules.drop(peer_id)
        self.rollbacks.peer_dropped(peer_id)
        self.state_sync.pump(now)

    def peer_ids(self) -> list[bytes]:
        return list(self._peer_order)

    # --- inputs ------------------------------------------------------------------------------

    def receive_frame(self, peer_id: bytes, frame: bytes, now: float) -> None:
        self._now = now
        peer = self._peers.get(peer_id)
        if peer is None:
            return
        peer.frames_received += 1
        peer.traffic.received.count(frame)
        try:
            messages = peer.decoder.receive_frame(frame, now)
        except RemoteProtocolError as exc:
            self.peer_rules.penalize(peer, PENALTY_MALFORMED_FRAME, exc.code)
            return
        for data in messages:
            if peer_id not in self._peers:
                return  # disconnected for misbehaving while handling this frame
            if not self.peer_rules.take_token(peer, now):
                continue
            self.stats.messages_received += 1
            try:
                message = decode_message(data)
            except RemoteProtocolError as exc:
                self.stats.messages_malformed += 1
                self.peer_rules.penalize(peer, PENALTY_MALFORMED_MESSAGE, exc.code)
                continue
            self._dispatch(peer, message, now)
        self._after_input(now)

    def submit_op(self, envelope: bytes, now: float) -> Outcome:
        """A local client's op. Refused in read-only mode (`read_only`); while quiesced only
        the council kinds are admitted (`quiesced`), and while claims are paused no new claim
        (`claims_paused`): see council.py."""
        self._now = now
        if self.mode is Mode.READ_ONLY:
            return Outcome(b"", "rejected", RejectCode.READ_ONLY, "")
        code = council.refusal(self, envelope)
        if code is not None:
            return Outcome(b"", "rejected", code, "")
        outcome = self.gossip.admit_op(envelope, now, source=None)
        self._after_input(now)
        return outcome

    def propose_rollback(self, height: int, reason: str, now: float) -> RollbackVote:
        """As a council member, sign a vote to end the current epoch at our final height
        `height` (its checkpoint id is ours) and gossip it to every peer. Any node holding a
        quorum of matching votes forms the certificate, gossips it and acts on it (events
        PersistRollback, ModeChanged, OpsReverted, EpochEntered). Raises
        RollbackSignerError (`rollback_not_signable`) for a non-member or a height whose
        checkpoint this node does not hold, LocalProtocolError for an out-of-bounds reason."""
        self._now = now
        vote = self.rollbacks.propose(height, reason, now)
        self._after_input(now)
        return vote

    def receive_rollback_certificate(self, data: bytes, now: float) -> None:
        """A certificate from outside the peer protocol (e.g. `swarmd council` handing over
        one it assembled): handled like one gossiped by a peer."""
        self._now = now
        self.rollbacks.on_certificate(data, None, now)
        self._after_input(now)

    @property
    def epoch(self) -> int:
        """The current consensus epoch (the number of rollback certificates accepted)."""
        return self.rollbacks.history.current_epoch

    def op_status(self, op_id: bytes) -> tuple[str, str]:
        """(status, code) of an op: ("reverted", "op_reverted") for an op a rollback
        certificate reverted, else the ledger's `status_of`."""
        if self.rollbacks.is_reverted(op_id):
            return "reverted", "op_reverted"
        return self.ledger.status_of(op_id)

    def set_mode(self, mode: Mode, reason: str, now: float) -> None:
        self._now = now
        if mode is not self.mode or reason != self.mode_reason:
            self.mode, self.mode_reason = mode, reason
            self._emit(ModeChanged(self.effective_mode.value, reason))

    @property
    def effective_mode(self) -> Mode:
        """Quiesced when set locally or by council broadcasts of a quorum (provisional or
        final state)."""
        if council.quiesced(self):
            return Mode.QUIESCED
        return self.mode

    def handle_timer(self, now: float) -> None:
        self._now = now
        self.ledger.expire_pending(now)
        for peer in [self._peers[p] for p in self._peer_order]:
            peer.decoder.handle_timer(now)
            self.delta_sync.maybe_abandon(peer, now)
            if now >= peer.next_sync_at:
                self.delta_sync.start(peer, now)
        self.consensus.handle_timer(now)
        if self.state_sync.run is not None:
            self.state_sync.run.fetcher.handle_timer(now)
        self.finality.maybe_start_height(now)
        self.gossip.request_missing(now)
        self.rejoin.handle_timer(now)
        self.serve_rate.pump(now)
        self._after_input(now)
        self.stall.check(now)

    def get_timer(self) -> float | None:
        deadlines = [peer.next_sync_at for peer in self._peers.values()]
        deadlines += [
            t for peer in self._peers.values() if (t := peer.decoder.get_timer()) is not None
        ]
        for candidate in (
            self.ledger.pending.next_expiry(),
            self.consensus.get_timer(),
            self.finality.checkpoint_due_at(),
            self.state_sync.run.fetcher.get_timer() if self.state_sync.run is not None else None,
            self.rejoin.next_retry_at(),
            self.serve_rate.next_at(),
        ):
            if candidate is not None:
                deadlines.append(candidate)
        if self.ledger.pending.missing_count() or self.finality.awaiting_decision:
            deadlines.append(self._now + FETCH_RETRY_S)
        deadlines += self.gossip.deadlines()
        return min(deadlines, default=None)

    # --- outputs -----------------------------------------------------------------------------

    def outgoing(self) -> list[OutgoingFrame]:
        """The frames to send, each with the write it waits for (`after_write`: the newest
        send barrier emitted so far; events.py's module comment states the contract)."""
        self.gossip.flush()
        after = self._barrier_write_id
        frames: list[OutgoingFrame] = []
        # Only the peers something was queued for since the last call (every encoder is
        # drained here), in peer id order like `_peer_order`: O(busy peers), not O(peers).
        # (The set is cleared, never replaced: each encoder holds its `add`.)
        queued = sorted(self._queued_peers)
        self._queued_peers.clear()
        for peer_id in queued:
            peer = self._peers.get(peer_id)
            if peer is None:
                continue  # dropped since: its encoder went with it
            count = peer.traffic.sent.count
            for priority, frame in peer.encoder.frames_with_priority():
                count(frame)
                frames.append(OutgoingFrame(peer_id, frame, priority is Priority.CONTROL, after))
        return frames

    def frames_to_send(self) -> list[tuple[bytes, bytes]]:
        """`outgoing()` as (peer, frame), for a shell whose writes are durable the moment it
        reads them (the test harnesses): it ignores `after_write`."""
        return [(out.peer, out.frame) for out in self.outgoing()]

    def frames_with_priority(self) -> list[tuple[bytes, bytes, bool]]:
        """`outgoing()` as (peer, frame, control), ignoring `after_write` like
        `frames_to_send`."""
        return [(out.peer, out.frame, out.control) for out in self.outgoing()]

    def next_event(self) -> NodeEvent | None:
        return self._events.popleft() if self._events else None

    # --- reading -----------------------------------------------------------------------------

    @property
    def final_height(self) -> int:
        return self.ledger.final_height

    def state_root(self) -> bytes:
        return self.ledger.state_root()

    def bundle(self, height: int) -> bytes | None:
        return self.finality.bundles.get(height)

    def node_status(self) -> NodeStatus:
        """A typed, frozen picture of this node (see status.py)."""
        return build_status(self)

    def status(self) -> dict[str, Any]:
        """`node_status()` rendered as the dict the shell and the simulator read."""
        return build_status(self).as_dict()

    # --- dispatch ----------------------------------------------------------------------------

    def _dispatch(self, peer: Peer, message: Message, now: float) -> None:
        handler = self._handlers.get(type(message))
        if handler is not None:
            handler(peer, message, now)

    def _message_handlers(self) -> dict[type[Message], Handler]:
        """The sub-machine that handles each message type a peer may send."""
        gossip, sync, finality, state_sync = (
            self.gossip,
            self.delta_sync,
            self.finality,
            self.state_sync,
        )
        return {
            OpsMessage: gossip.on_ops,
            AnnounceMessage: gossip.on_announce,
            FetchMessage: gossip.on_fetch,
            SyncHelloMessage: sync.on_hello,
            ReconcileMessage: sync.on_reconcile,
            SyncDoneMessage: _ignore,
            ConsensusEnvelope: finality.on_consensus,
            BundlesMessage: finality.on_bundles,
            BundleRequestMessage: finality.on_bundle_request,
            EvidenceMessage: finality.on_evidence,
            HandleConflictMessage: self.conflicts.on_message,
            CheckpointOpsRequest: finality.on_checkpoint_ops_request,
            SnapshotOfferMessage: state_sync.on_offer,
            ChunkRequestMessage: state_sync.serve_chunk,
            ChunkMessage: state_sync.on_chunk,
            ChunkMissingMessage: state_sync.on_chunk,
            RollbackMessage: self.rollbacks.on_message,
            SettlementMessage: self.rollbacks.settlement.on_message,
        }

    # --- snapshots built by the shell --------------------------------------------------------

    def snapshot_built(
        self, manifest: Manifest, chunks: list[bytes], bundle: bytes, now: float
    ) -> bool:
        """Install the snapshot a shell built for a SnapshotDue, to serve it to peers.

        Returns True when installed: the shell then stores its blob. A build that finishes
        after a snapshot of the same or a later height was installed is ignored (False): a
        state sync that replaced the ledger meanwhile installs its own, later snapshot, and a
        shell may hand builds back out of order. A height above the final one is ignored too
        (not a snapshot of this ledger's history)."""
        self._now = now
        return self.state_sync.built(manifest, chunks, bundle)

    def snapshot_state_released(self, state: LedgerState) -> None:
        """The shell's worker no longer reads the state of a "frozen" SnapshotDue: the ledger
        writes its later checkpoints back into it (nothing happens when the ledger was
        replaced meanwhile, or for a "deferred" copy)."""
        self.ledger.thaw_final(state)

    def snapshot_build_failed(self, height: int) -> None:
        """A deferred build raised (a state over the snapshot limits): counted like inline."""
        self.stats.snapshots_failed += 1

    # --- bookkeeping -------------------------------------------------------------------------

    def _after_input(self, now: float) -> None:
        if self.state_sync.run is not None:
            self.state_sync.pump(now)
        if self.gossip.announced or self.gossip.announce_retries:
            self.gossip.fetch_announced(now)
        self.finality.retry_waiting(now)
        self.gossip.scan_missing(now)
        self.finality.drain_consensus(now)

    def _drain_ledger_events(self) -> None:
        for event in self.ledger.drain_events():
            if isinstance(event, (OpEvicted, OpRejected)):
                self._unfinal_ids.discard(event.op_id)
            elif isinstance(event, OpExcluded):
                self._unfinal_ids.add(event.op_id)
            elif isinstance(event, HandleConflictRaised):
                self.conflicts.open_conflicts.setdefault(event.handle, self._now)
            self._emit(event)

    def oldest_open_conflict_age_s(self) -> float:
        if not self.conflicts.open_conflicts:
            return 0.0
        return self._now - min(self.conflicts.open_conflicts.values())

    def _emit(self, event: NodeEvent) -> None:
        if isinstance(event, PersistEvent):
            event = self._number_write(event)
        if len(self._events) >= NODE_EVENTS_MAX:
            self._events.popleft()
            self.stats.events_dropped += 1
        self._events.append(event)

    def _number_write(self, event: PersistEvent) -> PersistEvent:
        """Give a write event the next `write_id`; a send barrier becomes what every frame
        handed over from now on waits for."""
        self._write_id += 1
        if isinstance(event, SEND_BARRIERS):
            self._barrier_write_id = self._write_id
        return dataclasses.replace(event, write_id=self._write_id)


def _bundles_by_height(bundles: list[bytes]) -> dict[int, bytes]:
    """The decodable `bundles` by height (the last one of a height wins); an undecodable one
    is left to the replay, which rejects it in its turn."""
    by_height: dict[int, bytes] = {}
    for data in bundles:
        try:
            by_height[consensus.CheckpointBundle.decode(data).height] = data
        except RemoteProtocolError:
            continue
    return by_height


def _last_snapshot_height(by_height: dict[int, bytes], config: NodeCoreConfig) -> int:
    """The highest snapshot height (a multiple of the interval) among the bundles' heights."""
    interval = config.snapshot_interval
    if not interval:
        return -1
    return max((h for h in by_height if h % interval == 0), default=-1)
