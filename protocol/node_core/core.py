"""NodeCore: one swarm node's protocol logic (see the package docstring)."""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from .. import consensus
from ..checkpoint import CUT_HEADS_MAX, Cut
from ..crypto import KeyPair, sha256
from ..errors import RemoteProtocolError
from ..framing import Priority
from ..genesis import Genesis
from ..ledger import (
    CutInvalidError,
    HandleConflictRaised,
    Ledger,
    OpEvicted,
    OpExcluded,
    OpRejected,
    Outcome,
)
from ..limits import (
    CONSENSUS_DRAIN_PASSES_MAX,
    CONSENSUS_SEEN_MAX,
    EVIDENCE_KEPT_MAX,
    FETCH_RETRY_S,
    FUTURE_BUNDLES_MAX,
    NODE_EVENTS_MAX,
)
from ..messages import (
    BUNDLES_PER_MESSAGE_MAX,
    CONFLICT_LOSERS_PER_MESSAGE_MAX,
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
    SnapshotOfferMessage,
    SyncDoneMessage,
    SyncHelloMessage,
    decode_message,
    encode_message,
)
from ..ops import decode_op
from ..reconcile import IdSet
from ..snapshot import (
    Manifest,
)
from .config import Mode, NodeCoreConfig
from .delta_sync import DeltaSync
from .events import (
    CatchUpStarted,
    CheckpointFinalized,
    EquivocationRecorded,
    HandleConflictRejected,
    ModeChanged,
    NodeEvent,
    PersistCheckpoint,
    PersistConsensusState,
    SnapshotDue,
)
from .gossip import Gossip
from .peers import (
    PENALTY_MALFORMED_FRAME,
    PENALTY_MALFORMED_MESSAGE,
    Peer,
    PeerRules,
)
from .state_sync import StateSync


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
    sync_bytes: int = 0
    checkpoints: int = 0
    events_dropped: int = 0
    equivocations: int = 0
    snapshots_made: int = 0
    snapshots_failed: int = 0  # states too large for a snapshot
    snapshots_stale: int = 0  # deferred builds ignored: a newer snapshot was installed first
    snapshot_offers_sent: int = 0
    snapshot_chunks_served: int = 0
    snapshot_chunks_fetched: int = 0
    state_syncs_started: int = 0
    state_syncs_finished: int = 0
    state_syncs_failed: int = 0


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
        self._consensus_height = 0  # the height consensus runs at (0 = none started)
        # A restored signing state for a height above final_height + 1 (see resume_consensus).
        self._signing_state_pending: tuple[int, bytes] | None = None
        self._peers: dict[bytes, Peer] = {}
        self.peer_rules = PeerRules(self)
        self.gossip = Gossip(self, now)
        self.delta_sync = DeltaSync(self)
        self.state_sync = StateSync(self, now)
        #: Connected peer ids, sorted (the per-op paths iterate them in a stable order).
        self._peer_order: list[bytes] = []
        self._unfinal_ids = IdSet()
        self._consensus_seen: OrderedDict[bytes, None] = OrderedDict()
        self._bundles: OrderedDict[int, bytes] = OrderedDict()
        self._final_ids_by_height: OrderedDict[int, tuple[bytes, ...]] = OrderedDict()
        self._awaiting_decision: tuple[int, Cut, bytes] | None = None
        self._future_bundles: dict[int, bytes] = {}
        self._catching_up = False
        self._validation_waiting: dict[bytes, tuple[int, int, Cut]] = {}
        self._last_checkpoint_id = b""
        self._last_final_at = now
        self._first_unfinal_at: float | None = None
        self._events: deque[NodeEvent] = deque()
        self._now = now
        self._evidence_seen: set[bytes] = set()
        #: Handles with a raised conflict whose binding is not final yet -> first raised at.
        self._open_conflicts: dict[str, float] = {}
        #: (handle, winning claim) pairs whose rejection was raised (one per binding).
        self._conflicts_rejected: set[tuple[str, bytes]] = set()
        self.evidence: list[bytes] = []
        #: 0 when the ledger holds the whole history; else the height of the snapshot it was
        #: restored from (ops final at or below it may be unknown to this node: only the
        #: state says they happened).
        self.snapshot_base_height = 0
        #: During `restore`'s bundle replay: the one height whose snapshot is rebuilt.
        self._replay_snapshot_height = -1

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
        snapshot: bytes | None = None,
    ) -> NodeCore:
        """Rebuild a core from its durable op log, checkpoint bundles and the latest
        `PersistConsensusState` data (after a crash). Raises consensus.SigningStateError when
        `consensus_state` is not a signing state of this node's key on this network.

        `snapshot`, when given, is the latest stored `PersistCheckpoint.snapshot` blob; its
        checkpoint's bundle must be among `bundles`. The ledger then starts from the snapshot's
        state, ops at or below the final line are skipped without verifying their signatures,
        and only bundles above its height are replayed. Raises SnapshotRestoreError when the
        blob is corrupt, its bundle is missing, or bundle, manifest and rebuilt root disagree
        (the shell then restores without it)."""
        core = cls(genesis=genesis, keypair=keypair, config=config, rng=rng, now=now)
        by_height = _bundles_by_height(bundles)
        if snapshot is not None:
            core.state_sync.restore_from_blob(snapshot, by_height)
        for envelope in envelopes:
            if core.state_sync.snapshot is not None and core._below_final_line(envelope):
                continue
            outcome = core.ledger.receive_op(envelope, now)
            if outcome.status in ("accepted", "pending", "excluded"):
                core._unfinal_ids.add(outcome.op_id)
        core.ledger.drain_events()
        core._replay_snapshot_height = _last_snapshot_height(by_height, core.config)
        for data in bundles:
            core._receive_bundle(b"", data, now, persist=False)
        core._replay_snapshot_height = -1
        core._events.clear()
        if consensus_state is not None:
            core.resume_consensus(consensus_state, now)
        return core

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

    def resume_consensus(self, data: bytes, now: float) -> None:
        """Resume consensus from a durable signing state (Tendermint's last sign state).

        A state for a decided height (at most final_height) is ignored. One for the height in
        progress resumes there, lock and signed messages included, so a restart is never
        equivocation. One further ahead (its checkpoints were not durable yet) waits until
        that height starts (so does one for the height in progress while quiesced). Ignored
        when consensus already runs at or above its height, so
        a shell may hand the same state over twice.
        """
        if not self.is_validator:
            return
        state = consensus.decode_signing_state(data, self.genesis.network_id, self.node_id)
        if state.height <= max(self.final_height, self._consensus_height):
            return
        self._signing_state_pending = (state.height, data)
        if state.height == self.final_height + 1:
            self._start_height(state.height, now)

    # --- peers -------------------------------------------------------------------------------

    def peer_connected(self, peer_id: bytes, now: float) -> bool:
        """Register a peer; False (and nothing changes) when the peer limit is reached."""
        self._now = now
        return self.peer_rules.connect(peer_id, now)

    def peer_disconnected(self, peer_id: bytes, now: float) -> None:
        self._now = now
        self.peer_rules.drop(peer_id)
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
        """A local client's op. Refused in read-only and quiesced modes (code = the mode)."""
        self._now = now
        if self.effective_mode is not Mode.NORMAL:
            return Outcome(b"", "rejected", self.effective_mode.value.replace("-", "_"), "")
        outcome = self.gossip.admit_op(envelope, now, source=None)
        self._after_input(now)
        return outcome

    def set_mode(self, mode: Mode, reason: str, now: float) -> None:
        self._now = now
        if mode is not self.mode or reason != self.mode_reason:
            self.mode, self.mode_reason = mode, reason
            self._emit(ModeChanged(self.effective_mode.value, reason))

    @property
    def effective_mode(self) -> Mode:
        """Quiesced when set locally or by a council broadcast signed by a quorum."""
        if self.mode is Mode.QUIESCED or self.ledger.state.quiesced:
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
        self._maybe_start_height(now)
        self.gossip.request_missing(now)
        self._after_input(now)

    def get_timer(self) -> float | None:
        deadlines = [peer.next_sync_at for peer in self._peers.values()]
        deadlines += [
            t for peer in self._peers.values() if (t := peer.decoder.get_timer()) is not None
        ]
        for candidate in (
            self.ledger.pending.next_expiry(),
            self.consensus.get_timer(),
            self._checkpoint_due_at(),
            self.state_sync.run.fetcher.get_timer() if self.state_sync.run is not None else None,
        ):
            if candidate is not None:
                deadlines.append(candidate)
        if self.ledger.pending.missing_count() or self._awaiting_decision:
            deadlines.append(self._now + FETCH_RETRY_S)
        deadlines += self.gossip.deadlines()
        return min(deadlines, default=None)

    # --- outputs -----------------------------------------------------------------------------

    def frames_to_send(self) -> list[tuple[bytes, bytes]]:
        return [(peer_id, frame) for peer_id, frame, _ in self.frames_with_priority()]

    def frames_with_priority(self) -> list[tuple[bytes, bytes, bool]]:
        """(peer, frame, control): control frames (consensus, bundles, evidence) should jump
        ahead of bulk frames already queued in the transport."""
        self.gossip.flush()
        frames: list[tuple[bytes, bytes, bool]] = []
        for peer_id in self._peer_order:
            for priority, frame in self._peers[peer_id].encoder.frames_with_priority():
                frames.append((peer_id, frame, priority is Priority.CONTROL))
        return frames

    def next_event(self) -> NodeEvent | None:
        return self._events.popleft() if self._events else None

    # --- reading -----------------------------------------------------------------------------

    @property
    def final_height(self) -> int:
        return self.ledger.final_height

    def state_root(self) -> bytes:
        return self.ledger.state_root()

    def bundle(self, height: int) -> bytes | None:
        return self._bundles.get(height)

    def status(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id.hex(),
            "mode": self.effective_mode.value,
            "mode_reason": self.mode_reason,
            "validator": self.is_validator,
            "final_height": self.final_height,
            "consensus_height": self._consensus_height,
            "state_root": self.state_root().hex(),
            "applied_ops": len(self.ledger.applied_ids()),
            "unfinalized_ops": self.ledger.unfinalized_count(),
            "pending_ops": len(self.ledger.pending),
            "peers": {
                peer_id.hex(): {"score": peer.score, "final_height": peer.final_height}
                for peer_id, peer in sorted(self._peers.items())
            },
            "stats": dict(self.stats.__dict__),
            "evidence": len(self.evidence),
            "open_conflicts": len(self._open_conflicts),
            "oldest_open_conflict_age_s": round(self.oldest_open_conflict_age_s(), 3),
            "fragments": self.peer_rules.fragment_stats(),
            "snapshot": self._snapshot_status(),
            "state_sync": self._state_sync_status(),
        }

    def _snapshot_status(self) -> dict[str, Any] | None:
        if self.state_sync.snapshot is None:
            return None
        manifest = self.state_sync.snapshot.manifest
        return {
            "height": manifest.height,
            "manifest_id": manifest.manifest_id.hex(),
            "chunks": manifest.chunk_count,
            "size_bytes": manifest.total_size_bytes,
        }

    def _state_sync_status(self) -> dict[str, Any] | None:
        sync = self.state_sync.run
        if sync is None:
            return None
        return {
            "height": sync.manifest.height,
            "manifest_id": sync.manifest.manifest_id.hex(),
            "chunks": sync.manifest.chunk_count,
            "chunks_verified": sync.fetcher.verified_count,
            "size_bytes": sync.manifest.total_size_bytes,
            "peers": len(sync.fetcher.peers),
            "started_at": sync.started_at,
        }

    # --- dispatch ----------------------------------------------------------------------------

    def _dispatch(self, peer: Peer, message: Message, now: float) -> None:
        if isinstance(message, OpsMessage):
            quiesced = self.effective_mode is Mode.QUIESCED
            self.stats.ops_received += len(message.envelopes)
            for envelope in message.envelopes:
                self.gossip.admit_op(envelope, now, source=peer, council_only=quiesced)
        elif isinstance(message, AnnounceMessage):
            self.gossip.on_announce(peer, message, now)
        elif isinstance(message, FetchMessage):
            self.gossip.serve_fetch(peer, message.op_ids)
        elif isinstance(message, SyncHelloMessage):
            self.delta_sync.on_hello(peer, message, now)
        elif isinstance(message, ReconcileMessage):
            self.delta_sync.on_reconcile(peer, message, now)
        elif isinstance(message, SyncDoneMessage):
            pass
        elif isinstance(message, ConsensusEnvelope):
            self._on_consensus(peer, message.payload, now)
        elif isinstance(message, BundlesMessage):
            for data in message.bundles:
                self._receive_bundle(peer.peer_id, data, now, persist=True)
        elif isinstance(message, BundleRequestMessage):
            self._serve_bundles(peer, message)
        elif isinstance(message, EvidenceMessage):
            self._on_evidence(peer, message.evidence)
        elif isinstance(message, HandleConflictMessage):
            self._on_handle_conflict(peer, message)
        elif isinstance(message, CheckpointOpsRequest):
            ids = self._final_ids_by_height.get(message.height, ())
            self.gossip.send_ops(peer, list(ids), Priority.BULK)
        elif isinstance(message, SnapshotOfferMessage):
            self.state_sync.on_offer(peer, message, now)
        elif isinstance(message, ChunkRequestMessage):
            self.state_sync.serve_chunk(peer, message)
        elif isinstance(message, (ChunkMessage, ChunkMissingMessage)):
            self.state_sync.on_chunk(peer, message)

    # --- ops ---------------------------------------------------------------------------------

    # --- lazy relay: announcements -----------------------------------------------------------

    # --- delta sync --------------------------------------------------------------------------

    def _note_peer_height(self, peer: Peer, height: int) -> None:
        peer.final_height = max(peer.final_height, height)
        if height > self.final_height and not self._catching_up:
            self._catching_up = True
            self._emit(CatchUpStarted(peer.peer_id, height, self.final_height))
        self._request_bundles(peer)

    def _request_bundles(self, peer: Peer) -> None:
        """Ask `peer` for the bundles after what we hold (final or buffered)."""
        if self.state_sync.run is not None:
            return  # the snapshot's bundles come after it is installed
        have = max([self.final_height, *self._future_bundles])
        if peer.final_height > have and self._awaiting_decision is None:
            count = min(peer.final_height - have, BUNDLES_PER_MESSAGE_MAX)
            request = BundleRequestMessage(have + 1, count)
            peer.encoder.queue_message(encode_message(request), Priority.CONTROL)

    # --- finality ----------------------------------------------------------------------------

    def _checkpoint_due_at(self) -> float | None:
        if not self.is_validator or self._consensus_height > self.final_height:
            return None
        if self.effective_mode is Mode.QUIESCED or self.ledger.unfinalized_count() == 0:
            return None
        if self.ledger.unfinalized_count() >= self.config.checkpoint_ops_trigger:
            return self._now
        return self._last_final_at + self.config.checkpoint_interval_s

    def _maybe_start_height(self, now: float) -> None:
        due = self._checkpoint_due_at()
        if due is not None and now >= due:
            self._start_height(self.final_height + 1, now)

    def _start_height(self, height: int, now: float) -> None:
        if self._consensus_height >= height or self.effective_mode is Mode.QUIESCED:
            return
        pending, self._signing_state_pending = self._signing_state_pending, None
        self._consensus_height = height
        if pending is not None and pending[0] == height:
            self.consensus.restore_signing_state(pending[1], now)
        else:
            if pending is not None and pending[0] > height:
                self._signing_state_pending = pending
            self.consensus.start_height(height, now)
        self._drain_consensus(now)

    def _on_consensus(self, peer: Peer, payload: bytes, now: float) -> None:
        digest = sha256(payload)
        if digest in self._consensus_seen:
            return
        self._consensus_seen[digest] = None
        while len(self._consensus_seen) > CONSENSUS_SEEN_MAX:
            self._consensus_seen.popitem(last=False)
        if self.effective_mode is Mode.QUIESCED:
            return
        # Relay, so that nodes not directly connected to every member still follow.
        relay = encode_message(ConsensusEnvelope(payload))
        for peer_id in self._peer_order:
            if peer_id != peer.peer_id:
                self._peers[peer_id].encoder.queue_message(relay, Priority.CONTROL)
        try:
            height = consensus.decode_message(payload).height
        except RemoteProtocolError as exc:
            self.peer_rules.penalize(peer, PENALTY_MALFORMED_MESSAGE, exc.code)
            return
        if height == self.final_height + 1:
            self._start_height(height, now)
        self.consensus.receive_message(payload, now)
        self._drain_consensus(now)

    def _drain_consensus(self, now: float) -> None:
        for _ in range(CONSENSUS_DRAIN_PASSES_MAX):
            payloads = self.consensus.messages_to_send()
            if payloads:
                # The last sign state goes to the shell before the messages it records: the
                # shell makes it durable before it sends any of the frames queued below.
                self._emit(PersistConsensusState(self.consensus.signing_state()))
            for payload in payloads:
                digest = sha256(payload)
                self._consensus_seen[digest] = None
                message = encode_message(ConsensusEnvelope(payload))
                for peer_id in sorted(self._peers):
                    self._peers[peer_id].encoder.queue_message(message, Priority.CONTROL)
            handled = False
            while (event := self.consensus.next_event()) is not None:
                handled = True
                self._on_consensus_event(event, now)
            if not payloads and not handled:
                return

    def _on_consensus_event(self, event: consensus.Event, now: float) -> None:
        if isinstance(event, consensus.ValueRequested):
            self._propose(event.height, event.round, now)
        elif isinstance(event, consensus.ValidationRequested):
            self._validate(event.height, event.round, event.value_id, event.value, now)
        elif isinstance(event, consensus.Decided):
            self._on_decided(event.bundle.encode(), event.value, now, persist=True)
        elif isinstance(event, consensus.EquivocationDetected):
            self._record_evidence(event.evidence)

    def _propose(self, height: int, round_: int, now: float) -> None:
        if height != self.final_height + 1:
            return
        heads = self.ledger.unfinalized_heads()[:CUT_HEADS_MAX]
        if not heads:
            return  # nothing moved: no empty checkpoints (the propose timeout moves on)
        if self.ledger.cut_closure([head for _, _, head in heads])[1]:
            return
        root, _ = self.ledger.derive_cut(heads)
        cut = Cut(self._last_checkpoint_id, height, tuple(heads), root)
        value = cut.encode()
        if len(value) > consensus.CONSENSUS_VALUE_SIZE_BYTES_MAX:
            return
        self.consensus.provide_value(height, round_, value, now)
        self._drain_consensus(now)

    def _validate(
        self, height: int, round_: int, value_id: bytes, value: bytes, now: float
    ) -> None:
        try:
            cut = Cut.decode(value)
        except RemoteProtocolError:
            self.consensus.report_validity(value_id, False, now)
            return
        if cut.height != height or cut.parent_id != self._last_checkpoint_id:
            self.consensus.report_validity(value_id, False, now)
            return
        _, missing = self.ledger.cut_closure([head for _, _, head in cut.heads])
        if missing:
            # Answer once the ops arrive (fetched now); the propose timeout still applies.
            self._validation_waiting[value_id] = (height, round_, cut)
            self.gossip.request_missing(now)
            return
        self._validation_waiting.pop(value_id, None)
        try:
            root, _ = self.ledger.derive_cut(list(cut.heads))
            valid = root == cut.state_root
        except CutInvalidError:
            valid = False
        self.consensus.report_validity(value_id, valid, now)

    def _retry_waiting(self, now: float) -> None:
        for value_id, (height, round_, cut) in list(self._validation_waiting.items()):
            if height != self.final_height + 1:
                del self._validation_waiting[value_id]
                continue
            if not self.ledger.cut_closure([head for _, _, head in cut.heads])[1]:
                self._validate(height, round_, value_id, cut.encode(), now)
                self._drain_consensus(now)
        if self._awaiting_decision is not None:
            height, cut, bundle = self._awaiting_decision
            if height != self.final_height + 1:
                # Finalized meanwhile by another path (the same decision arriving again, as a
                # bundle, once its ops were in): finalizing it twice would raise.
                self._awaiting_decision = None
            elif not self.ledger.cut_closure([head for _, _, head in cut.heads])[1]:
                self._awaiting_decision = None
                self._finalize(height, cut, bundle, now, persist=True)

    def _receive_bundle(self, source: bytes, data: bytes, now: float, *, persist: bool) -> None:
        try:
            bundle = consensus.CheckpointBundle.decode(data)
            consensus.verify_bundle(bundle, self.genesis.network_id, list(self.genesis.council))
        except RemoteProtocolError as exc:
            peer = self._peers.get(source)
            if peer is not None:
                self.peer_rules.penalize(peer, PENALTY_MALFORMED_MESSAGE, exc.code)
            return
        if bundle.height <= self.final_height:
            return
        if bundle.height > self.final_height + 1:
            # Ahead of us: keep it (bounded) until the heights below it are final.
            if len(self._future_bundles) < FUTURE_BUNDLES_MAX:
                self._future_bundles[bundle.height] = data
            return
        self._on_decided(data, bundle.value, now, persist=persist)

    def _on_decided(self, bundle: bytes, value: bytes, now: float, *, persist: bool) -> None:
        try:
            cut = Cut.decode(value)
        except RemoteProtocolError:
            return  # a quorum decided an undecodable value: impossible with honest quorums
        if cut.height != self.final_height + 1 or cut.parent_id != self._last_checkpoint_id:
            return
        if self.ledger.cut_closure([head for _, _, head in cut.heads])[1]:
            self._awaiting_decision = (cut.height, cut, bundle)
            # Ask for the whole cut at once (parents first) rather than walking it id by id.
            request = encode_message(CheckpointOpsRequest(cut.height))
            for peer_id in sorted(self._peers):
                if self._peers[peer_id].final_height >= cut.height:
                    self._peers[peer_id].encoder.queue_message(request, Priority.BULK)
                    break
            self.gossip.request_missing(now)
            return
        self._finalize(cut.height, cut, bundle, now, persist=persist)

    def _finalize(self, height: int, cut: Cut, bundle: bytes, now: float, *, persist: bool) -> None:
        closure, _ = self.ledger.cut_closure([head for _, _, head in cut.heads])
        try:
            final_ids = self.ledger.finalize(height, closure)
        except CutInvalidError:
            return
        for op_id in final_ids:
            self._unfinal_ids.discard(op_id)
        self._drain_ledger_events()
        self._last_checkpoint_id = cut.checkpoint_id
        self._bundles[height] = bundle
        while len(self._bundles) > self.config.bundles_kept:
            self._bundles.popitem(last=False)
        self._final_ids_by_height[height] = tuple(self.ledger.canonical_order(final_ids))
        while len(self._final_ids_by_height) > self.config.bundles_kept:
            self._final_ids_by_height.popitem(last=False)
        blob = b""
        due = None
        interval = self.config.snapshot_interval
        # A replay at start rebuilds (in memory, to serve peers) only the newest snapshot it
        # passes: building every one would cost a full state walk per interval of history.
        if (
            interval
            and height % interval == 0
            and (persist or height == self._replay_snapshot_height)
        ):
            if persist and self.config.snapshot_build == "deferred":
                state = self.ledger.final_state.copy()
                due = SnapshotDue(height, cut.checkpoint_id, cut.state_root, bundle, state)
            else:
                blob = self.state_sync.make_snapshot(height, cut, bundle, encode=persist)
        started = self._first_unfinal_at if self._first_unfinal_at is not None else now
        self._last_final_at = now
        self._first_unfinal_at = now if self.ledger.unfinalized_count() else None
        self.stats.checkpoints += 1
        if persist:
            self._emit(
                PersistCheckpoint(
                    height, cut.checkpoint_id, cut.state_root, bundle, tuple(final_ids), blob
                )
            )
        if due is not None:
            self._emit(due)  # after its checkpoint: the shell stores the snapshot beside it
        self._emit(
            CheckpointFinalized(
                height, cut.checkpoint_id, cut.state_root, len(final_ids), now - started
            )
        )
        self._future_bundles.pop(height, None)
        self._settle_open_conflicts()
        self._continue_catch_up(now, persist=persist)
        # Share the bundle so that nodes outside the council finalize too.
        message = encode_message(BundlesMessage((bundle,)))
        for peer_id in sorted(self._peers):
            peer = self._peers[peer_id]
            if peer.final_height < height:
                peer.encoder.queue_message(message, Priority.CONTROL)

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

    def snapshot_build_failed(self, height: int) -> None:
        """A deferred build raised (a state over the snapshot limits): counted like inline."""
        self.stats.snapshots_failed += 1

    def _continue_catch_up(self, now: float, *, persist: bool) -> None:
        """After a height became final: apply the next buffered bundle, or ask for more."""
        next_bundle = self._future_bundles.pop(self.final_height + 1, None)
        if next_bundle is not None:
            self._receive_bundle(b"", next_bundle, now, persist=persist)
            return
        ahead = [p for p in self._peers.values() if p.final_height > self.final_height]
        if not ahead:
            self._catching_up = False
            return
        self._request_bundles(max(ahead, key=lambda p: (p.final_height, p.peer_id)))

    def _serve_bundles(self, peer: Peer, request: BundleRequestMessage) -> None:
        bundles = []
        for height in range(request.first_height, request.first_height + request.count):
            data = self._bundles.get(height)
            if data is None:
                break
            bundles.append(data)
        if bundles:
            peer.encoder.queue_message(
                encode_message(BundlesMessage(tuple(bundles))), Priority.BULK
            )
        elif request.first_height <= self.final_height:
            self.state_sync.offer(peer, request.first_height)

    # --- state sync --------------------------------------------------------------------------

    def _record_evidence(self, evidence: consensus.Evidence, source: bytes = b"") -> None:
        """Record proof that a member equivocated, once, and gossip it to every other peer so
        that nodes which never saw both messages know too."""
        data = evidence.encode()
        digest = sha256(data)
        if digest in self._evidence_seen or len(self.evidence) >= EVIDENCE_KEPT_MAX:
            return
        self._evidence_seen.add(digest)
        self.evidence.append(data)
        self.stats.equivocations += 1
        self._emit(EquivocationRecorded(data, evidence.validator))
        message = encode_message(EvidenceMessage((data,)))
        for peer_id in sorted(self._peers):
            if peer_id != source:
                self._peers[peer_id].encoder.queue_message(message, Priority.CONTROL)

    def _on_evidence(self, peer: Peer, items: tuple[bytes, ...]) -> None:
        for data in items:
            if sha256(data) in self._evidence_seen:
                continue
            try:
                evidence = consensus.Evidence.decode(data)
                consensus.verify_evidence(
                    evidence, self.genesis.network_id, list(self.genesis.council)
                )
            except RemoteProtocolError as exc:
                self.peer_rules.penalize(peer, PENALTY_MALFORMED_MESSAGE, exc.code)
                continue
            self._record_evidence(evidence, source=peer.peer_id)

    # --- bookkeeping -------------------------------------------------------------------------

    def _after_input(self, now: float) -> None:
        if self.state_sync.run is not None:
            self.state_sync.pump(now)
        if self.gossip.announced or self.gossip.announce_retries:
            self.gossip.fetch_announced(now)
        self._retry_waiting(now)
        self.gossip.scan_missing(now)
        self._drain_consensus(now)

    def _drain_ledger_events(self) -> None:
        for event in self.ledger.drain_events():
            if isinstance(event, (OpEvicted, OpRejected)):
                self._unfinal_ids.discard(event.op_id)
            elif isinstance(event, OpExcluded):
                self._unfinal_ids.add(event.op_id)
            elif isinstance(event, HandleConflictRaised):
                self._open_conflicts.setdefault(event.handle, self._now)
            self._emit(event)

    def _settle_open_conflicts(self) -> None:
        """A handle conflict is resolved once the handle's binding is final: then the losing
        claims get their `handle.conflict` rejection, raised here and gossiped."""
        bindings = self.ledger.final_state.bindings
        for handle in [h for h in sorted(self._open_conflicts) if h in bindings]:
            del self._open_conflicts[handle]
            self._reject_losers(handle, bindings[handle].claim_id, source=b"")

    def _reject_losers(self, handle: str, winner: bytes, *, source: bytes) -> None:
        if (handle, winner) in self._conflicts_rejected:
            return
        claims = self.ledger.final_state.claims
        losers = tuple(
            sorted(c for c, claim in claims.items() if claim.handle == handle and c != winner)
        )[:CONFLICT_LOSERS_PER_MESSAGE_MAX]
        if not losers:
            return
        self._conflicts_rejected.add((handle, winner))
        self._emit(HandleConflictRejected(handle, winner, losers, self.final_height))
        message = encode_message(HandleConflictMessage(handle, winner, losers, self.final_height))
        for peer_id in sorted(self._peers):
            if peer_id != source:
                self._peers[peer_id].encoder.queue_message(message, Priority.NORMAL)

    def _on_handle_conflict(self, peer: Peer, message: HandleConflictMessage) -> None:
        """Check a peer's rejection against our own final state: at or above its height the
        handle must be bound to the winner and every loser must be a claim for that handle.
        A node not final at that height yet derives it itself when it gets there."""
        if message.height > self.final_height:
            return
        binding = self.ledger.final_state.bindings.get(message.handle)
        claims = self.ledger.final_state.claims
        consistent = (
            binding is not None
            and binding.claim_id == message.winning_claim
            and all(
                loser in claims and claims[loser].handle == message.handle
                for loser in message.losing_claims
            )
        )
        if not consistent:
            self.peer_rules.penalize(peer, PENALTY_MALFORMED_MESSAGE, "handle_conflict_unfounded")
            return
        self._open_conflicts.pop(message.handle, None)
        self._reject_losers(message.handle, message.winning_claim, source=peer.peer_id)

    def oldest_open_conflict_age_s(self) -> float:
        if not self._open_conflicts:
            return 0.0
        return self._now - min(self._open_conflicts.values())

    def _emit(self, event: NodeEvent) -> None:
        if len(self._events) >= NODE_EVENTS_MAX:
            self._events.popleft()
            self.stats.events_dropped += 1
        self._events.append(event)


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
