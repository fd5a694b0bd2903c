"""Finality: driving Tendermint on checkpoint cuts (council members), finalizing decided cuts
and gossiped bundles, catching up from peers further ahead, serving our bundles, and
recording equivocation evidence."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import consensus
from ..checkpoint import CUT_HEADS_MAX, Cut, proposal_time_ms, time_valid
from ..crypto import sha256
from ..errors import RemoteProtocolError
from ..framing import Priority
from ..ledger import CutInvalidError
from ..limits import (
    CONSENSUS_DRAIN_PASSES_MAX,
    CONSENSUS_SEEN_MAX,
    EVIDENCE_KEPT_MAX,
    FUTURE_BUNDLES_MAX,
)
from ..messages import (
    BUNDLES_PER_MESSAGE_MAX,
    BundleRequestMessage,
    BundlesMessage,
    CheckpointOpsRequest,
    ConsensusEnvelope,
    EvidenceMessage,
    encode_message,
)
from ..rollback import BundleRevertedError, RollbackError
from ..telemetry import activity_of
from . import council
from .config import Mode
from .events import (
    CatchUpStarted,
    CheckpointFinalized,
    EquivocationRecorded,
    PersistCheckpoint,
    PersistConsensusState,
    PersistPrecommit,
    SigningHalted,
    SnapshotDue,
)
from .observed import observed_of
from .participation import Participation
from .peers import PENALTY_MALFORMED_MESSAGE, Peer
from .serve_rate import answer_size_max, ops_answer_size_max

if TYPE_CHECKING:
    from .core import NodeCore


class Finality:
    """Consensus heights, decisions, kept and buffered bundles, and evidence."""

    def __init__(self, core: NodeCore, now: float) -> None:
        self.core = core
        self.consensus_height = 0  # the height consensus runs at (0 = none started)
        # A restored signing state for a height above final_height + 1 (see resume_consensus).
        self.signing_state_pending: tuple[int, bytes] | None = None
        self.consensus_seen: OrderedDict[bytes, None] = OrderedDict()
        #: Bundles (and the canonical order of their final ops) kept to serve lagging peers.
        self.bundles: OrderedDict[int, bytes] = OrderedDict()
        self.final_ids_by_height: OrderedDict[int, tuple[bytes, ...]] = OrderedDict()
        #: A decided cut whose ops are still being fetched.
        self.awaiting_decision: tuple[int, Cut, bytes] | None = None
        #: Bundles above the next height, buffered while catching up.
        self.future_bundles: dict[int, bytes] = {}
        self.catching_up = False
        #: Proposals whose validation waits for their ops: value id -> (height, round, cut).
        self.validation_waiting: dict[bytes, tuple[int, int, Cut]] = {}
        self.last_checkpoint_id = b""
        self.last_final_at = now
        self.first_unfinal_at: float | None = None
        self.evidence_seen: set[bytes] = set()
        #: During `NodeCore.restore`'s bundle replay: the one height whose snapshot is rebuilt.
        self.replay_snapshot_height = -1
        self.participation = Participation(core.genesis.council)
        #: (checkpoint id, its cut's time_ms): parent_time_ms's cache.
        self._parent_time: tuple[bytes, int] = (b"", 0)

    def resume_consensus(self, data: bytes, now: float, precommits: Sequence[bytes]) -> None:
        """See NodeCore.resume_consensus."""
        if not self.core.is_validator:
            return
        state = consensus.decode_signing_state(
            data, self.core.genesis.network_id, self.core.node_id
        )
        # Our kept precommits first, whatever the state's height: the settlement needs them.
        self.core.consensus.restore_precommits(data, precommits)
        self.core.rollbacks.settlement.restored()
        if state.height <= max(self.core.final_height, self.consensus_height):
            return
        self.signing_state_pending = (state.height, data)
        if state.height == self.core.final_height + 1:
            self.start_height(state.height, now)

    def note_peer_height(self, peer: Peer, height: int) -> None:
        peer.final_height = max(peer.final_height, height)
        if height > self.core.final_height and not self.catching_up:
            self.catching_up = True
            self.core._emit(CatchUpStarted(peer.peer_id, height, self.core.final_height))
        self.request_bundles(peer)

    def request_bundles(self, peer: Peer) -> None:
        """Ask `peer` for the bundles after what we hold (final or buffered)."""
        if self.core.state_sync.run is not None:
            return  # the snapshot's bundles come after it is installed
        have = max([self.core.final_height, *self.future_bundles])
        if peer.final_height > have and self.awaiting_decision is None:
            count = min(peer.final_height - have, BUNDLES_PER_MESSAGE_MAX)
            request = BundleRequestMessage(have + 1, count)
            peer.encoder.queue_message(encode_message(request), Priority.CONTROL)

    def checkpoint_due_at(self) -> float | None:
        if not self.core.is_validator or self.consensus_height > self.core.final_height:
            return None
        if self.core.final_height + 1 < self.core.rollbacks.epoch_first_height():
            return None  # behind a rollback's H: caught up by bundles, not decided again
        if self.core.rejoin.catching_up():
            return None  # re-fetching a forgotten state (rejoin.py)
        if self.core.mode is not Mode.QUIESCED and self.core.rollbacks.settlement.due():
            return self.core._now  # the epoch's settlement: decided first, with or without ops
        if self.core.mode is Mode.QUIESCED or self.core.ledger.unfinalized_count() == 0:
            return None
        if council.proposes_council_only(self.core):
            # Council-quiesced (final, or provisional: council.py): council-only cuts.
            if not council.council_heads(self.core):
                return None
        elif self.core.ledger.unfinalized_count() >= self.core.config.checkpoint_ops_trigger:
            return self.core._now
        return self.last_final_at + self.core.config.checkpoint_interval_s

    def maybe_start_height(self, now: float) -> None:
        due = self.checkpoint_due_at()
        if due is not None and now >= due:
            self.start_height(self.core.final_height + 1, now)

    def start_height(self, height: int, now: float) -> None:
        if self.consensus_height >= height or self.core.mode is Mode.QUIESCED:
            return
        if height < self.core.rollbacks.epoch_first_height():
            return  # behind a rollback: heights up to H are the old epoch's, caught up by bundles
        if self.core.rejoin.catching_up():
            return  # re-fetching a forgotten state (rejoin.py): those heights are decided
        engine = self.core.consensus.height
        if engine is not None and engine >= height and self.signing_state_pending is None:
            # Caught up again (rejoin.py) to the height the engine still runs: it goes on.
            self.consensus_height = height
            self.drain_consensus(now)
            return
        pending, self.signing_state_pending = self.signing_state_pending, None
        self.consensus_height = height
        if pending is not None and pending[0] == height:
            self.core.consensus.restore_signing_state(pending[1], now)
        else:
            if pending is not None and pending[0] > height:
                self.signing_state_pending = pending
            self.core.consensus.start_height(height, now)
        self.drain_consensus(now)

    def on_consensus(self, peer: Peer, message: ConsensusEnvelope, now: float) -> None:
        payload = message.payload
        digest = sha256(payload)
        if digest in self.consensus_seen:
            return
        self.consensus_seen[digest] = None
        while len(self.consensus_seen) > CONSENSUS_SEEN_MAX:
            self.consensus_seen.popitem(last=False)
        if self.core.mode is Mode.QUIESCED:
            return  # locally quiesced: out of consensus (a council quiesce is not: council.py)
        try:
            decoded = consensus.decode_message(payload)
        except RemoteProtocolError as exc:
            # Never relayed: our peers would penalize us for it.
            self.core.peer_rules.penalize(peer, PENALTY_MALFORMED_MESSAGE, exc.code)
            return
        # Relay (once: `consensus_seen`) to every peer but its sender, so that nodes of a
        # bounded mesh, not linked to every member, still follow.
        relay = encode_message(ConsensusEnvelope(payload))
        for peer_id in self.core._peer_order:
            if peer_id != peer.peer_id:
                self.core._peers[peer_id].encoder.queue_message(relay, Priority.CONTROL)
        self.core.stall.note(decoded)
        height = decoded.height
        if height == self.core.final_height + 1:
            self.start_height(height, now)
        self.core.consensus.receive_message(payload, now)
        self.drain_consensus(now)

    def drain_consensus(self, now: float) -> None:
        for _ in range(CONSENSUS_DRAIN_PASSES_MAX):
            payloads = self.core.consensus.messages_to_send()
            if payloads:
                self.persist_signing_state()
            for payload in payloads:
                digest = sha256(payload)
                self.consensus_seen[digest] = None
                message = encode_message(ConsensusEnvelope(payload))
                for peer_id in sorted(self.core._peers):
                    self.core._peers[peer_id].encoder.queue_message(message, Priority.CONTROL)
            handled = False
            while (event := self.core.consensus.next_event()) is not None:
                handled = True
                self.on_consensus_event(event, now)
            if not payloads and not handled:
                return

    def persist_signing_state(self) -> None:
        """The last sign state goes to the shell before the messages it records: the shell
        makes it durable before it sends any of the frames queued after it. It is compact (a
        step's write does not grow with the kept precommits' values): each new kept precommit
        goes first, once, as a record of its own that the state names."""
        tendermint = self.core.consensus
        for precommit_id, record in tendermint.take_unsaved_precommits():
            self.core._emit(PersistPrecommit(precommit_id, record))
        state = tendermint.signing_state_compact()
        self.core._emit(PersistConsensusState(state, tendermint.kept_precommit_ids()))

    def on_consensus_event(self, event: consensus.Event, now: float) -> None:
        if isinstance(event, consensus.ValueRequested):
            self.propose(event.height, event.round, now)
        elif isinstance(event, consensus.ValidationRequested):
            self.validate(event.height, event.round, event.value_id, event.value, now)
        elif isinstance(event, consensus.Decided):
            self.on_decided(event.bundle.encode(), event.value, now, persist=True)
        elif isinstance(event, consensus.EquivocationDetected):
            self.record_evidence(event.evidence)
        elif isinstance(event, consensus.ForeignOwnSignature):
            self.on_foreign_own_signature(event)

    def on_foreign_own_signature(self, event: consensus.ForeignOwnSignature) -> None:
        """Another process signs with our key (a copy of this node's home): stop signing, so
        that the two never equivocate, and say so (`SigningHalted`). Not while a restored
        signing state waits for its height: the engine then runs heights it may have signed
        before the restart, and its own old messages prove nothing."""
        consensus_core = self.core.consensus
        if self.signing_state_pending is not None or consensus_core.signing_halted:
            return
        consensus_core.halt_signing()
        self.core._emit(SigningHalted(event.height, event.round, event.kind))

    def propose(self, height: int, round_: int, now: float) -> None:
        if height != self.core.final_height + 1 or not self.core.rejoin.check_final_root(now):
            return  # (a final state that is not the signed one: never signed into a cut)
        if self.core.rollbacks.settlement.is_height(height):
            value = self.core.rollbacks.settlement.value(height, now)
            if value is not None:
                self.core.consensus.provide_value(height, round_, value, now)
                self.drain_consensus(now)
            return
        ledger = self.core.ledger
        if council.proposes_council_only(self.core):
            heads = council.council_heads(self.core)[:CUT_HEADS_MAX]
        else:
            heads = ledger.unfinalized_heads()[:CUT_HEADS_MAX]
        if not heads:
            return  # nothing moved: no empty checkpoints (the propose timeout moves on)
        if ledger.cut_closure([head for _, _, head in heads])[1]:
            return
        try:
            root, _ = ledger.derive_cut(heads)
        except CutInvalidError:
            return  # (a council-only subset whose head loses a conflict inside it)
        time_ms = proposal_time_ms(self.core.wall_ms(now), self.parent_time_ms())
        cut = Cut(self.last_checkpoint_id, height, tuple(heads), root, time_ms)
        value = cut.encode()
        if len(value) > consensus.CONSENSUS_VALUE_SIZE_BYTES_MAX:
            return
        self.core.consensus.provide_value(height, round_, value, now)
        self.drain_consensus(now)

    def validate(self, height: int, round_: int, value_id: bytes, value: bytes, now: float) -> None:
        try:
            cut = Cut.decode(value)
        except RemoteProtocolError:
            self.core.consensus.report_validity(value_id, False, now)
            return
        if cut.height != height or cut.parent_id != self.last_checkpoint_id:
            self.core.consensus.report_validity(value_id, False, now)
            return
        if not time_valid(cut.time_ms, self.parent_time_ms(), self.core.wall_ms(now)):
            self.core.stats.cuts_refused_time += 1
            self.core.consensus.report_validity(value_id, False, now)
            return
        if not self.core.rejoin.check_final_root(now):
            return  # halted: the propose timeout moves consensus on without our vote
        settlement = self.core.rollbacks.settlement
        if settlement.is_height(height) or cut.settled is not None:
            valid = settlement.is_height(height) and settlement.valid(cut, now)
            self.core.consensus.report_validity(value_id, valid, now)
            return
        _, missing = self.core.ledger.cut_closure([head for _, _, head in cut.heads])
        if missing:
            # Answer once the ops arrive (fetched now); the propose timeout still applies.
            self.validation_waiting[value_id] = (height, round_, cut)
            self.core.gossip.request_missing(now)
            return
        self.validation_waiting.pop(value_id, None)
        try:
            root, closure = self.core.ledger.derive_cut(list(cut.heads))
            valid = root == cut.state_root and council.cut_admissible(self.core, closure)
        except CutInvalidError:
            valid = False
        self.core.consensus.report_validity(value_id, valid, now)

    def parent_time_ms(self) -> int:
        """The agreed time of our final cut (0 at height 0): read from its bundle, which every
        path that moves the final line keeps (finalize, state sync, rollback), cached by id."""
        if self.core.final_height == 0 or not self.last_checkpoint_id:
            return 0
        cached_id, cached_time = self._parent_time
        if cached_id == self.last_checkpoint_id:
            return cached_time
        data = self.bundles.get(self.core.final_height)
        if data is None:
            return 0  # (not reached: the final height's bundle is always kept)
        time_ms = Cut.decode(consensus.CheckpointBundle.decode(data).value).time_ms
        self._parent_time = (self.last_checkpoint_id, time_ms)
        return time_ms

    def retry_waiting(self, now: float) -> None:
        for value_id, (height, round_, cut) in list(self.validation_waiting.items()):
            if height != self.core.final_height + 1:
                del self.validation_waiting[value_id]
                continue
            if not self.core.ledger.cut_closure([head for _, _, head in cut.heads])[1]:
                self.validate(height, round_, value_id, cut.encode(), now)
                self.drain_consensus(now)
        if self.awaiting_decision is not None:
            height, cut, bundle = self.awaiting_decision
            if height != self.core.final_height + 1:
                # Finalized meanwhile by another path (the same decision arriving again, as a
                # bundle, once its ops were in): finalizing it twice would raise.
                self.awaiting_decision = None
            elif not self.core.ledger.cut_closure([head for _, _, head in cut.heads])[1]:
                self.awaiting_decision = None
                self.finalize(height, cut, bundle, now, persist=True)

    def receive_bundle(self, source: bytes, data: bytes, now: float, *, persist: bool) -> None:
        try:
            bundle = consensus.CheckpointBundle.decode(data)
            self.core.stats.bundles_verified += 1
            consensus.verify_bundle(
                bundle, self.core.genesis.network_id, list(self.core.genesis.council)
            )
        except RemoteProtocolError as exc:
            peer = self.core._peers.get(source)
            if peer is not None:
                self.core.peer_rules.penalize(peer, PENALTY_MALFORMED_MESSAGE, exc.code)
            return
        history = self.core.rollbacks.history
        if bundle.epoch < history.current_epoch:
            try:
                history.check_bundle(bundle)
            except BundleRevertedError:
                # Final somewhere before a certificate reverted its height: revert its ops.
                self.core.stats.bundles_refused_epoch += 1
                self.core.rollbacks.on_reverted_bundle(source, data, bundle, now)
                return
            except RollbackError:
                pass  # refused below
        if bundle.height <= self.core.final_height:
            self.core.rejoin.on_peer_bundle(source, bundle, now)
            return
        if not history.bundle_admissible(bundle):
            # A reverted height, or an epoch we hold no certificate for yet: refused, not
            # penalized (a peer that missed or is ahead of a rollback sends these in good faith).
            self.core.stats.bundles_refused_epoch += 1
            return
        if bundle.height > self.core.final_height + 1:
            # Ahead of us: keep it (bounded) until the heights below it are final.
            if len(self.future_bundles) < FUTURE_BUNDLES_MAX:
                self.future_bundles[bundle.height] = data
            return
        self.on_decided(data, bundle.value, now, persist=persist)

    def on_decided(self, bundle: bytes, value: bytes, now: float, *, persist: bool) -> None:
        try:
            cut = Cut.decode(value)
        except RemoteProtocolError:
            return  # a quorum decided an undecodable value: impossible with honest quorums
        if cut.height != self.core.final_height + 1 or cut.parent_id != self.last_checkpoint_id:
            return
        if self.core.ledger.cut_closure([head for _, _, head in cut.heads])[1]:
            self.awaiting_decision = (cut.height, cut, bundle)
            # Ask for the whole cut at once (parents first) rather than walking it id by id.
            request = encode_message(CheckpointOpsRequest(cut.height))
            for peer_id in sorted(self.core._peers):
                if self.core._peers[peer_id].final_height >= cut.height:
                    self.core._peers[peer_id].encoder.queue_message(request, Priority.BULK)
                    break
            self.core.gossip.request_missing(now)
            return
        self.finalize(cut.height, cut, bundle, now, persist=persist)

    def finalize(self, height: int, cut: Cut, bundle: bytes, now: float, *, persist: bool) -> None:
        closure, _ = self.core.ledger.cut_closure([head for _, _, head in cut.heads])
        try:
            final_ids = self.core.ledger.finalize(height, closure)
        except CutInvalidError:
            return
        root = self.core.ledger.final_state.root()
        if root != cut.state_root:
            # Not the council-signed root: nothing of this state is persisted or served.
            self.core.rejoin.diverged(height, root, cut.state_root, now)
            return
        for op_id in final_ids:
            self.core._unfinal_ids.discard(op_id)
        self.core._drain_ledger_events()
        self.last_checkpoint_id = cut.checkpoint_id
        self.participation.observe(height, bundle, now)
        self.bundles[height] = bundle
        while len(self.bundles) > self.core.config.bundles_kept:
            self.bundles.popitem(last=False)
        self.final_ids_by_height[height] = tuple(self.core.ledger.canonical_order(final_ids))
        if cut.settled is not None:
            self.core.rollbacks.settlement.apply(cut, now)
        if self.core.rollbacks.awaiting_resume:
            self.core.rollbacks.note_final(height, self.final_ids_by_height[height])
        while len(self.final_ids_by_height) > self.core.config.bundles_kept:
            self.final_ids_by_height.popitem(last=False)
        blob = b""
        due = None
        interval = self.core.config.snapshot_interval
        # A replay at start rebuilds (in memory, to serve peers) only the newest snapshot it
        # passes: building every one would cost a full state walk per interval of history.
        if (
            interval
            and height % interval == 0
            and (persist or height == self.replay_snapshot_height)
        ):
            if persist and self.core.config.snapshot_build != "inline":
                due = self.snapshot_due(height, cut, bundle)
            else:
                blob = self.core.state_sync.make_snapshot(height, cut, bundle, encode=persist)
        started = self.first_unfinal_at if self.first_unfinal_at is not None else now
        self.last_final_at = now
        self.first_unfinal_at = now if self.core.ledger.unfinalized_count() else None
        self.core.stats.checkpoints += 1
        if persist:
            self.core._emit(self.persist_event(cut, bundle, final_ids, blob, now))
        if due is not None:
            self.core._emit(due)  # after its checkpoint: the shell stores the snapshot beside it
        self.core._emit(
            CheckpointFinalized(
                height, cut.checkpoint_id, cut.state_root, len(final_ids), now - started
            )
        )
        self.future_bundles.pop(height, None)
        if self.core.rollbacks.history.certificates:
            self.core.rollbacks.reached_final(height, cut.checkpoint_id, now)
        if self.core.rejoin.target is not None:
            self.core.rejoin.reached_final(now)
        self.core.conflicts.settle()
        self.core.conflicts.settle_revocations(final_ids)
        self.continue_catch_up(now, persist=persist)
        # Share the bundle so that nodes outside the council finalize too.
        message = encode_message(BundlesMessage((bundle,)))
        for peer_id in sorted(self.core._peers):
            peer = self.core._peers[peer_id]
            if peer.final_height < height:
                peer.encoder.queue_message(message, Priority.CONTROL)

    def persist_event(
        self, cut: Cut, bundle: bytes, final_ids: list[bytes], blob: bytes, now: float
    ) -> PersistCheckpoint:
        """The write of a checkpoint just final, with what it adds to the product telemetry
        (protocol/telemetry.py; O(its ops)) and the participation and conflict record
        (observed.py; O(council + open conflicts))."""
        ledger = self.core.ledger
        ops = [op for op_id in final_ids if (op := ledger.op(op_id)) is not None]
        final = ledger.final_state
        return PersistCheckpoint(
            *(cut.height, cut.checkpoint_id, cut.state_root, bundle, tuple(final_ids), blob),
            telemetry=activity_of(cut.height, cut.time_ms, ops, final.granted - final.burned),
            observed=observed_of(self.core, now),
        )

    def snapshot_due(self, height: int, cut: Cut, bundle: bytes) -> SnapshotDue | None:
        """The SnapshotDue a shell builds: with a copy of the final state ("deferred"), or
        with the final state itself, frozen until the shell releases it ("frozen": no copy;
        None while the previous frozen version is still being built, counted skipped)."""
        ledger = self.core.ledger
        if self.core.config.snapshot_build == "deferred":
            state = ledger.final_state.copy()
        else:
            frozen = ledger.freeze_final()
            if frozen is None:
                self.core.stats.snapshots_skipped += 1
                return None
            state = frozen
        return SnapshotDue(height, cut.checkpoint_id, cut.state_root, bundle, state)

    def continue_catch_up(self, now: float, *, persist: bool) -> None:
        """After a height became final: apply the next buffered bundle, or ask for more."""
        next_bundle = self.future_bundles.pop(self.core.final_height + 1, None)
        if next_bundle is not None:
            self.receive_bundle(b"", next_bundle, now, persist=persist)
            return
        ahead = [p for p in self.core._peers.values() if p.final_height > self.core.final_height]
        if not ahead:
            self.catching_up = False
            return
        self.request_bundles(max(ahead, key=lambda p: (p.final_height, p.peer_id)))

    def on_bundles(self, peer: Peer, message: BundlesMessage, now: float) -> None:
        for data in message.bundles:
            self.receive_bundle(peer.peer_id, data, now, persist=True)

    def on_bundle_request(self, peer: Peer, message: BundleRequestMessage, now: float) -> None:
        if self.core.rollbacks.history.certificates:
            self.core.rollbacks.serve(peer)  # the epochs first: they decide what it admits
        self.serve_bundles(peer, message)

    def on_checkpoint_ops_request(
        self, peer: Peer, message: CheckpointOpsRequest, now: float
    ) -> None:
        """Send the final ops of a height we keep, in canonical order (parents first),
        within the bulk send rate (serve_rate.py: held when over it; the ops whose bodies
        left memory are read by the shell and metered when it hands them back)."""
        ids = list(self.final_ids_by_height.get(message.height, ()))
        ledger = self.core.ledger
        held = [op.envelope for op_id in ids if (op := ledger.op(op_id)) is not None]
        if held and not self.core.serve_rate.admit(peer, message, ops_answer_size_max(held)):
            return
        self.core.gossip.send_ops(peer, ids, Priority.BULK)

    def serve_bundles(self, peer: Peer, request: BundleRequestMessage) -> None:
        bundles = []
        for height in range(request.first_height, request.first_height + request.count):
            data = self.bundles.get(height)
            if data is None:
                break
            bundles.append(data)
        if bundles:
            if self.core.serve_rate.admit(peer, request, answer_size_max(bundles)):  # else held
                message = encode_message(BundlesMessage(tuple(bundles)))
                peer.encoder.queue_message(message, Priority.BULK)
        elif request.first_height <= self.core.final_height:
            self.core.state_sync.offer(peer, request.first_height)

    def record_evidence(self, evidence: consensus.Evidence, source: bytes = b"") -> None:
        """Record proof that a member equivocated, once, and gossip it to every other peer so
        that nodes which never saw both messages know too."""
        data = evidence.encode()
        digest = sha256(data)
        if digest in self.evidence_seen or len(self.core.evidence) >= EVIDENCE_KEPT_MAX:
            return
        self.evidence_seen.add(digest)
        self.core.evidence.append(data)
        self.core.stats.equivocations += 1
        self.core._emit(EquivocationRecorded(data, evidence.validator))
        message = encode_message(EvidenceMessage((data,)))
        for peer_id in sorted(self.core._peers):
            if peer_id != source:
                self.core._peers[peer_id].encoder.queue_message(message, Priority.CONTROL)

    def on_evidence(self, peer: Peer, message: EvidenceMessage, now: float) -> None:
        items = message.evidence
        for data in items:
            if sha256(data) in self.evidence_seen:
                continue
            try:
                evidence = consensus.Evidence.decode(data)
                consensus.verify_evidence(
                    evidence, self.core.genesis.network_id, list(self.core.genesis.council)
                )
            except RemoteProtocolError as exc:
                self.core.peer_rules.penalize(peer, PENALTY_MALFORMED_MESSAGE, exc.code)
                continue
            self.record_evidence(evidence, source=peer.peer_id)
