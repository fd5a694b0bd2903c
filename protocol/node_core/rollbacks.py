"""Council rollbacks on a node: votes and certificates gossiped, the epoch history, the online
revert to the certificate's height and the entry into the new epoch.

A council member's shell calls `NodeCore.propose_rollback`; the signed vote goes to every peer
and every node relays each new vote and certificate once (de-duplicated by hash). Any node
holding a quorum of votes for one body forms the certificate and gossips it. A node accepts a
certificate that ends its current epoch (`EpochHistory.accept`), emits `PersistRollback` (the
shell stores it; `NodeCore.restore(certificates=...)` feeds them back in order) and then:

- at or above H (the usual case): goes read-only, reverts the ledger's final state to H, marks
  every op final above H `reverted` (`OpsReverted`), enters the new epoch (Tendermint restarts
  at H+1 in epoch e+1 with a fresh signing guard) and returns to the mode it was in once two
  peers confirmed its checkpoint (rejoin.py), though still council-quiesced (see below); it
  also sends its bundles above H to its peers: a node that accepted the certificate before
  it finalized one of those heights reverts the ops of that bundle too
  (`on_reverted_bundle`), so every node reverts the same set; the bundles above H it held
  without having finalized them yet (waiting for ops or for their heights) go the same way,
  at once (`_revert_held`), instead of being dropped. Both go through `revert_cut`, which
  also remembers the ids of the cut it does not hold (`unresolved`): such an op arriving later
  is reverted then, with the ops it leads to (`refuses`, from `Gossip.admit_op`);
- below H (it was behind): enters the epoch and keeps catching up with bundles of the old epoch
  up to H (still admissible); when its final height reaches H it checks its checkpoint id
  against the certificate's (`check_final`).

Either way the new epoch's first height (H+1) decides its settlement (settlement.py): the
old-epoch values the members precommitted above H, whose ops every node reverts
(`revert_cut`) before any new op is final.

Either way the node entering the new epoch is quiesced, with reason `rollback`, until a
quorum of council members' latest `council.resume`/`council.quiesce` final in the new epoch is
a resume (`awaiting_resume`, `note_final`): the plan's S2 play is quiesce -> rollback ->
confirm hashes -> resume, and the quiesce votes final above H are reverted with everything
else, so without this rule the network left quiesce as soon as the certificate applied, before
operators confirmed hashes. The tally reads only the ops each new-epoch height makes final, so
it is the same on every node at every height of the epoch (cuts are council-only until then,
council.py). On restart the replayed bundles above H tally it again; a node whose final state
jumps to a snapshot above H (restart or state sync) did not finalize the heights below it and
takes the snapshot's council mode instead (`snapshot_installed`).

The revert re-derives the final state at H in a fresh ledger: from the node's snapshot when it
is at or below H, else from genesis (when the ledger holds the whole history), by admitting
every op the ledger knows except the reverted ones (no signature is checked again) and
finalizing the kept bundles up to H in order. It needs the bundles (and final op ids) from the
base to the final height, which a node keeps for `bundles_kept` heights: a rollback deeper than
that, or below a snapshot base the ledger was restored from, cannot be reverted locally; the
node then forgets its final state and catches up again from its peers (bundles or a snapshot),
read-only with reason `rollback_resync` until final at H and confirmed (see RollbackRevertFailed).
The cost is one admission per known op and one finalization per height above the base: bounded
by what the node already holds, and exact (the same code path finalized those heights).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import consensus
from ..checkpoint import Cut
from ..crypto import sha256
from ..errors import LocalProtocolError, RemoteProtocolError
from ..framing import Priority
from ..ledger import CutInvalidError, Ledger
from ..limits import CONSENSUS_SEEN_MAX, REVERT_UNRESOLVED_MAX, REVERTED_OPS_MAX
from ..messages import (
    BUNDLES_PER_MESSAGE_MAX,
    OPS_PER_MESSAGE_MAX,
    ROLLBACK_ITEMS_PER_MESSAGE_MAX,
    BundlesMessage,
    RollbackMessage,
    encode_message,
)
from ..ops import Kind, Op, decode_op
from ..reconcile import IdSet
from ..rollback import (
    EpochHistory,
    RollbackAssembler,
    RollbackBody,
    RollbackCertificate,
    RollbackCheckpointMismatchError,
    RollbackEpochError,
    RollbackError,
    RollbackVote,
    sign_rollback_vote,
)
from .config import Mode
from .events import (
    EpochEntered,
    ModeChanged,
    OpsReverted,
    PersistRollback,
    RollbackRevertFailed,
    RollbackVoteReceived,
)
from .peers import PENALTY_MALFORMED_MESSAGE, Peer
from .rejoin import REASON_ROLLBACK as REASON_ROLLBACK  # re-exported: the reason a rollback sets
from .rejoin import forget_final_state
from .serve_rate import HeldPush, answer_size_max
from .settlement import Settlement
from .state_sync import signed_snapshot_state

if TYPE_CHECKING:
    from .core import NodeCore

#: Peers remembered in `served` (a peer dropped and forgotten is just served again).
PEERS_SERVED_MAX = 1024
#: The mode reasons a rollback sets.
REASON_RESYNC = "rollback_resync"
#: The mode votes `note_final` tallies.
_MODE_KINDS = (Kind.COUNCIL_QUIESCE, Kind.COUNCIL_RESUME)
#: A link of a reverted cut's walk: (op id, author, seq), author b"" when unknown (a dep).
_Link = tuple[bytes, bytes, int]


class Rollbacks:
    """The epoch history, the vote assembler and the ops reverted by certificates."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        genesis = core.genesis
        self.history = EpochHistory(genesis.network_id, list(genesis.council))
        self.assembler = RollbackAssembler(genesis.network_id, list(genesis.council))
        self.seen: OrderedDict[bytes, None] = OrderedDict()
        #: op id -> the epoch whose certificate reverted it (oldest first, bounded).
        self.reverted: OrderedDict[bytes, int] = OrderedDict()
        #: op id -> the epoch whose certificate reverts it: ids of reverted cuts' ops this
        #: node did not hold when it walked the cut (`revert_cut`; oldest first, bounded).
        self.unresolved: OrderedDict[bytes, int] = OrderedDict()
        #: The new epoch's first height (settlement.py).
        self.settlement = Settlement(core)
        #: peer id -> how many of our certificates it was sent (see `serve`).
        self.served: OrderedDict[bytes, int] = OrderedDict()
        #: Quiesced since entering the current epoch by a certificate, until a quorum of the
        #: council's mode votes final in this epoch is resume (module docstring).
        self.awaiting_resume = False
        #: member -> whether its latest mode vote final in the current epoch is a resume.
        self.epoch_mode_votes: dict[bytes, bool] = {}

    # --- inputs ----------------------------------------------------------------------------

    def propose(self, height: int, reason: str, now: float) -> RollbackVote:
        """Sign and gossip a vote to end the current epoch at our final height `height`."""
        core = self.core
        if not core.is_validator:
            raise RollbackSignerError("only a council member signs rollback votes")
        checkpoint_id = self.checkpoint_id_at(height)
        if checkpoint_id is None:
            raise RollbackSignerError(
                f"no final checkpoint id at {height} on this node (final {core.final_height})"
            )
        body = RollbackBody(self.history.current_epoch, height, checkpoint_id, reason)
        vote = sign_rollback_vote(core.keypair, core.genesis.network_id, body)
        self.on_vote(vote.encode(), None, now)
        return vote

    def on_message(self, peer: Peer, message: RollbackMessage, now: float) -> None:
        for data in message.votes:
            self.on_vote(data, peer, now)
        for data in message.certificates:
            self.on_certificate(data, peer, now)

    def on_vote(self, data: bytes, source: Peer | None, now: float) -> None:
        if not self._first_time(data):
            return
        try:
            vote = RollbackVote.decode(data)
            certificate = self.assembler.add(vote)
        except RollbackError as exc:
            if source is not None:
                self.core.peer_rules.penalize(source, PENALTY_MALFORMED_MESSAGE, exc.code)
            return
        self.core._emit(RollbackVoteReceived(vote.signer, vote.body.from_epoch, vote.body.height))
        self._gossip(RollbackMessage((data,), ()), source)
        if certificate is not None:
            self.on_certificate(certificate.encode(), None, now)

    def on_certificate(self, data: bytes, source: Peer | None, now: float) -> None:
        if not self._first_time(data):
            return
        try:
            certificate = RollbackCertificate.decode(data)
            self.accept(certificate, now)
        except RollbackEpochError:
            return  # stale (already entered) or ahead of us: not misbehaviour
        except RollbackError as exc:
            if source is not None and not isinstance(exc, RollbackCheckpointMismatchError):
                self.core.peer_rules.penalize(source, PENALTY_MALFORMED_MESSAGE, exc.code)
            return
        # To every peer but its source, unless it went with our bundles above H already
        # (`_gossip_bundles` sends the certificates first: `serve`).
        total, encoded = (
            len(self.history.certificates),
            encode_message(RollbackMessage((), (data,))),
        )
        for peer_id in self.core._peer_order:
            if self.served.get(peer_id, 0) < total and (
                source is None or peer_id != source.peer_id
            ):
                self.core._peers[peer_id].encoder.queue_message(encoded, Priority.CONTROL)
            self.served[peer_id] = total

    def serve(self, peer: Peer) -> None:
        """Send `peer` the certificates it was not sent yet: on connect, and before bundles it
        asks for (a node offline through a rollback learns it there, before the new epoch's
        bundles, which it would refuse as `bundle_future_epoch` without it)."""
        certificates = self.history.certificates
        sent = self.served.get(peer.peer_id, 0)
        if sent >= len(certificates):
            return
        self.served[peer.peer_id] = len(certificates)
        self.served.move_to_end(peer.peer_id)
        while len(self.served) > PEERS_SERVED_MAX:
            self.served.popitem(last=False)
        encoded = [c.encode() for c in certificates[sent:]]
        for start in range(0, len(encoded), ROLLBACK_ITEMS_PER_MESSAGE_MAX):
            batch = tuple(encoded[start : start + ROLLBACK_ITEMS_PER_MESSAGE_MAX])
            peer.encoder.queue_message(encode_message(RollbackMessage((), batch)), Priority.CONTROL)
        self.settlement.serve(peer)  # after the certificates: before them a peer drops it

    def peer_dropped(self, peer_id: bytes) -> None:
        self.served.pop(peer_id, None)

    # --- accepting a certificate -----------------------------------------------------------

    def accept(self, certificate: RollbackCertificate, now: float) -> None:
        """Accept `certificate` for our current epoch (raises RollbackError subclasses) and act
        on it: revert and enter the new epoch, or (behind) enter it and catch up to H."""
        core = self.core
        height = certificate.height
        behind = height > core.final_height
        own = None if behind else self.checkpoint_id_at(height)
        # A node that no longer holds its checkpoint at H (restored from a later snapshot)
        # cannot compare it: it accepts like a node behind (the quorum vouches for H) and
        # fetches the state again (`_resync`).
        unknown = not behind and own is None
        final = height - 1 if unknown else core.final_height
        self.history = self.history.accept(certificate, final, own)
        self.awaiting_resume, self.epoch_mode_votes = True, {}
        core._emit(PersistRollback(certificate.encode(), certificate.new_epoch))
        finality = core.finality
        held = self._held_bundles_above(height)
        finality.future_bundles.clear()
        finality.awaiting_decision = None
        finality.validation_waiting.clear()
        finality.signing_state_pending = None
        core.consensus.enter_epoch(certificate.new_epoch)
        self.settlement.entered()
        if behind:
            core._emit(EpochEntered(certificate.new_epoch, height, reverted=0))
            self._revert_held(held, now)
            return
        previous = (core.mode, core.mode_reason)
        core.set_mode(Mode.READ_ONLY, REASON_ROLLBACK, now)
        # Our bundles above H: peers that accepted the certificate before they finalized those
        # heights revert the same ops with them (`on_reverted_bundle`).
        above = sorted(h for h in finality.bundles if h > height)
        self._gossip_bundles(
            [finality.bundles[h] for h in above],
            [i for h in above for i in finality.final_ids_by_height.get(h, ())],
        )
        if unknown or not self.revert_to(height, certificate.new_epoch, now):
            self._resync(height, certificate.new_epoch, previous, now)
            self._revert_held(held, now)
            return
        self._revert_held(held, now)
        finality.consensus_height = height
        # Read-only until our root at H is confirmed by the bundle and by peers (rejoin.py).
        core.rejoin.begin(height, previous, now)
        finality.maybe_start_height(now)

    def _held_bundles_above(self, height: int) -> list[bytes]:
        """The council-signed bundles above `height` this node holds but has not finalized:
        the decision waiting for its ops, then the bundles waiting for their heights."""
        finality = self.core.finality
        held = [data for h, data in sorted(finality.future_bundles.items()) if h > height]
        awaiting = finality.awaiting_decision
        if awaiting is not None and awaiting[0] > height:
            held.insert(0, awaiting[2])
        return held

    def _revert_held(self, held: list[bytes], now: float) -> None:
        """Once in the new epoch: the held bundles above H are old-epoch bundles above H like
        the ones peers send later (`on_reverted_bundle`): the ops of theirs we hold are
        reverted and the bundles relayed, rather than dropped while those ops stay live."""
        for data in held:
            self.on_reverted_bundle(b"", data, consensus.CheckpointBundle.decode(data), now)

    def restore(self, certificates: list[RollbackCertificate]) -> None:
        """At start (NodeCore.restore): rebuild the history and run consensus in its epoch."""
        genesis = self.core.genesis
        self.history = EpochHistory.restore(genesis.network_id, list(genesis.council), certificates)
        if self.history.current_epoch:
            self.core.consensus.enter_epoch(self.history.current_epoch)
            self.awaiting_resume, self.epoch_mode_votes = True, {}

    def restore_reverted(self, op_ids: Sequence[bytes]) -> None:
        """At start, after `restore`: the ids of the stored `OpsReverted` events, oldest first;
        the newest REVERTED_OPS_MAX are remembered, as when they were reverted."""
        epoch = self.history.current_epoch
        for op_id in op_ids[-REVERTED_OPS_MAX:]:
            self.reverted[op_id] = epoch
        self._trim_reverted()

    def snapshot_installed(self, height: int) -> None:
        """The final state jumped to a snapshot at `height` (at restart or by state sync): the
        heights of the current epoch below it were not finalized here, so their mode votes
        cannot be tallied; the snapshot's own council mode stands in for the tally (heights
        finalized after it are tallied as usual)."""
        if self.awaiting_resume and height >= self.epoch_first_height():
            self.awaiting_resume = self.core.ledger.final_state.quiesced
            self.epoch_mode_votes = {}

    def note_final(self, height: int, op_ids: Sequence[bytes]) -> None:
        """After finalizing `height` (its ops in canonical order): tally the council's mode
        votes made final in the current epoch; a quorum of resumes ends `awaiting_resume`."""
        if not self.awaiting_resume or height < self.epoch_first_height():
            return
        core = self.core
        council = core.genesis.council
        for op_id in op_ids:
            op = core.ledger.op(op_id)
            if op is not None and op.author in council and op.kind in _MODE_KINDS:
                self.epoch_mode_votes[op.author] = op.kind is Kind.COUNCIL_RESUME
        if sum(self.epoch_mode_votes.values()) >= core.genesis.quorum:
            self.awaiting_resume = False
            core._emit(ModeChanged(core.effective_mode.value, core.mode_reason))

    def reached_final(self, height: int, checkpoint_id: bytes, now: float) -> None:
        """After finalizing `height`: a node that accepted a certificate while behind checks
        its checkpoint at H against the council's (a mismatch: its history diverged); a node
        re-fetching its state after a rollback leaves read-only once it is back at H."""
        try:
            self.history.check_final(height, checkpoint_id)
        except RollbackCheckpointMismatchError as exc:
            self.core.set_mode(Mode.READ_ONLY, exc.code, now)
            return
        # (A node re-fetching its state leaves read-only through rejoin.py.)

    def on_reverted_bundle(
        self, source: bytes, data: bytes, bundle: consensus.CheckpointBundle, now: float
    ) -> None:
        """A council-signed bundle of an ended epoch above the height its certificate ended it
        at (`receive_bundle` verified its signatures): some node finalized that height before
        the certificate reached it, while we accepted the certificate first. Its ops are
        reverted like the ones we finalized above H ourselves (`revert_cut`), so that every
        node reverts the same set (the ops of every old-epoch bundle above H), not just its own
        final ones; we relay it once, after the ops of it we hold, so that it reaches every
        node."""
        if not self._first_time(data):
            return
        try:
            cut = Cut.decode(bundle.value)
        except RemoteProtocolError:
            return  # a quorum signed an undecodable value: impossible with honest quorums
        heads = [(op_id, author, seq) for author, seq, op_id in cut.heads]
        held, _ = self._ops_of_cut(heads)
        self._gossip_bundles([data], held, source)
        self.revert_cut(heads, bundle.epoch, now)

    def revert_cut(
        self, heads: Sequence[_Link], ended: int, now: float, *, arrived: Op | None = None
    ) -> bool:
        """Revert the ops of a cut of the ended epoch `ended` above its H: THE one way a node
        reverts ops it did not finalize itself (a late old-epoch bundle, one it held when the
        certificate came, an op of such a cut arriving later). `heads` are the cut's heads
        (or `arrived`, an op of such a cut that was not admitted: it is reverted with the ops
        it leads to). The walk goes from the heads through parents, over the ops we hold and
        have neither finalized nor reverted (admitted or pending); its ids we do not hold yet
        are remembered as `unresolved` (an op of such a cut may arrive after its bundle: it is
        then reverted on arrival, `refuses`). Both are emitted in `OpsReverted` (durable: a
        restart refuses and walks the unresolved ones like any reverted id). False (nothing changed,
        `reverted_bundles_refused` counts it) when one of the held ops cannot be taken out:
        it is final in the new epoch already (only two quorums deciding it in both epochs can
        cause it: PROTOCOL.md "One reverted set")."""
        held, missing = self._ops_of_cut(heads, arrived)
        skip = {op_id for op_id in held if arrived is None or op_id != arrived.op_id}
        if skip and not self._rebuild(self.core.final_height, skip, now):
            self.core.stats.reverted_bundles_refused += 1
            return False
        new = [op_id for op_id in missing if op_id not in self.unresolved]
        for op_id in missing:
            self.unresolved.pop(op_id, None)  # reached again: the newest, forgotten last
            self.unresolved[op_id] = ended + 1
        while len(self.unresolved) > REVERT_UNRESOLVED_MAX:
            self.unresolved.popitem(last=False)
        if arrived is not None:
            self.unresolved.pop(arrived.op_id, None)
        if held or new:
            _, end = self.history.heights_of(ended)
            assert end is not None  # an ended epoch
            self._mark_reverted(held, end, ended + 1, entered=False, unresolved=new)
        return True

    def refuses(self, op_id: bytes, envelope: bytes, now: float) -> bool:
        """Whether an op arriving (gossip, sync, a client) is refused as reverted: a reverted
        id, or an unresolved one of a reverted cut, which is reverted now with the ops of that
        cut it leads to (`revert_cut` from its parents). A reverted id is walked the same way
        (after a restart the unresolved ids are reverted ids: the walk stops at once at
        reverted or final parents otherwise). An op at or below its author's final line is
        final or a lost fork, not the cut's: left to the ledger."""
        epoch = self.reverted.get(op_id) or self.unresolved.get(op_id)
        if epoch is None:
            return False
        try:
            op = decode_op(envelope)
        except RemoteProtocolError:
            return op_id in self.reverted  # left to the pipeline, which rejects it
        if self._covered(op.author, op.seq):
            self.unresolved.pop(op_id, None)
            return op_id in self.reverted
        if op_id in self.unresolved:
            return self.revert_cut([(op_id, op.author, op.seq)], epoch - 1, now, arrived=op)
        parents = [(op.prev, op.author, op.seq - 1)] if op.prev else []
        self.revert_cut(parents + [(dep, b"", 0) for dep in op.deps], epoch - 1, now)
        return True

    def _covered(self, author: bytes, seq: int) -> bool:
        """Whether `author`'s op at `seq` is at or below its final line (final, or a fork)."""
        account = self.core.ledger.final_state.accounts.get(author)
        return account is not None and account.seq >= seq

    def _ops_of_cut(
        self, heads: Sequence[_Link], arrived: Op | None = None
    ) -> tuple[list[bytes], list[bytes]]:
        """(held, missing): the ops of a reverted cut we hold and have neither finalized nor
        reverted, from its heads through parents, admitted or pending (a pending op may wait
        on a reverted parent while another of its parents is admitted), known ones parents
        first, then pending ones, then `arrived`; and the ids reached that we do not hold
        (neither reverted nor below their author's final line when that is known), in the
        walk's order."""
        ledger = self.core.ledger
        found: set[bytes] = set()
        missing: list[bytes] = []
        seen: set[bytes] = set()
        stack = list(reversed(heads))
        while stack:
            op_id, author, seq = stack.pop()
            if op_id in seen or op_id in self.reverted or ledger.is_final(op_id):
                continue
            seen.add(op_id)
            op = ledger.op(op_id) or ledger.pending.get(op_id)
            if op is None and arrived is not None and op_id == arrived.op_id:
                op = arrived
            if op is None:
                if not (author and self._covered(author, seq)):
                    missing.append(op_id)
                continue
            found.add(op_id)
            links = [(dep, b"", 0) for dep in reversed(op.deps)]
            if op.prev:
                links.append((op.prev, op.author, op.seq - 1))
            stack.extend(links)
        last = [arrived.op_id] if arrived is not None and arrived.op_id in found else []
        found.difference_update(last)
        known = ledger.canonical_order(found)
        admitted = set(known)
        return known + sorted(op_id for op_id in found if op_id not in admitted) + last, missing

    # --- the revert ------------------------------------------------------------------------

    def checkpoint_id_at(self, height: int) -> bytes | None:
        """Our final checkpoint id at `height` (b"" for 0), None when not final or not kept."""
        if height == 0:
            return b""
        if height == self.core.final_height:
            return self.core.finality.last_checkpoint_id
        data = self.core.finality.bundles.get(height)
        if data is None or height > self.core.final_height:
            return None
        return Cut.decode(consensus.CheckpointBundle.decode(data).value).checkpoint_id

    def revert_to(self, height: int, epoch: int, now: float) -> bool:
        """Re-derive the final state at `height` (see the module docstring); False (nothing
        changed) when the bundles or the base it needs are not held."""
        finality = self.core.finality
        final = self.core.final_height
        above = [finality.final_ids_by_height.get(h) for h in range(height + 1, final + 1)]
        if any(ids is None for ids in above):
            return False
        reverted = [op_id for ids in above if ids is not None for op_id in ids]
        if not self._rebuild(height, set(reverted), now):
            return False
        self._mark_reverted(reverted, height, epoch)
        return True

    def _rebuild(self, height: int, skip: set[bytes], now: float) -> bool:
        """Install a fresh ledger final at `height` (at or below ours) that never admitted the
        ops in `skip`; False (nothing changed) when a base, a bundle or an op it needs is not
        held, or a kept bundle no longer applies without the skipped ops."""
        core, finality = self.core, self.core.finality
        base = self._base_at_or_below(height)
        if base is None:
            return False
        ledger, base_height = base
        bundles = [finality.bundles.get(h) for h in range(base_height + 1, height + 1)]
        if any(data is None for data in bundles):
            return False
        old = core.ledger
        for op in self._ops_to_keep(old, skip):
            ledger.receive_verified(op, now)
        checkpoint_id = b"" if height == 0 else finality.last_checkpoint_id
        for data in bundles:
            assert data is not None
            cut = Cut.decode(consensus.CheckpointBundle.decode(data).value)
            closure, missing = ledger.cut_closure([head for _, _, head in cut.heads])
            if missing:
                return False
            try:
                ledger.finalize(cut.height, closure)
            except CutInvalidError:
                return False
            checkpoint_id = cut.checkpoint_id
        ledger.drain_events()
        self._install(ledger, height, checkpoint_id)
        return True

    def _resync(self, height: int, epoch: int, previous: tuple[Mode, str], now: float) -> None:
        """No local way back to H: forget the final state and catch up again from genesis or
        a peer's snapshot (bundles up to H of the old epoch and the new epoch's after it are
        admissible), read-only with reason `rollback_resync` until final at H again. The ops
        we know final above H are reverted; the unfinalized ones come back by delta sync."""
        core, finality = self.core, self.core.finality
        reverted = [
            op_id
            for h, ids in sorted(finality.final_ids_by_height.items())
            if h > height
            for op_id in ids
        ]
        core._emit(RollbackRevertFailed(height, core.final_height))
        forget_final_state(core)
        self._mark_reverted(reverted, height, epoch)
        core.set_mode(Mode.READ_ONLY, REASON_RESYNC, now)
        core.rejoin.begin(height, previous, now)

    def _mark_reverted(
        self,
        reverted: list[bytes],
        height: int,
        epoch: int,
        *,
        entered: bool = True,
        unresolved: Sequence[bytes] = (),
    ) -> None:
        """Remember `reverted` and emit them with the `unresolved` ids (durable with them: a
        restart remembers those as reverted ids, refused and walked on arrival the same)."""
        for op_id in reverted:
            self.reverted.pop(op_id, None)  # reverted again: the newest, forgotten last
            self.reverted[op_id] = epoch
        self._trim_reverted()
        self.core._emit(OpsReverted((*reverted, *unresolved), height, epoch))
        if entered:
            self.core._emit(EpochEntered(epoch, height, reverted=len(reverted)))

    def _trim_reverted(self) -> None:
        while len(self.reverted) > REVERTED_OPS_MAX:
            self.reverted.popitem(last=False)

    def _base_at_or_below(self, height: int) -> tuple[Ledger, int] | None:
        """A fresh ledger at the newest base at or below `height`: our snapshot, or genesis
        when the ledger holds the whole history."""
        core = self.core
        snapshot = core.state_sync.snapshot
        config = core.config.ledger
        if snapshot is not None and snapshot.manifest.height <= height:
            try:
                state = signed_snapshot_state(
                    snapshot.manifest, list(snapshot.chunks), snapshot.bundle, core.genesis
                )
            except RemoteProtocolError:
                return None
            base = snapshot.manifest.height
            return Ledger.restore_final(core.genesis, state, base, config), base
        if core.snapshot_base_height == 0:
            return Ledger(core.genesis, config), 0
        return None

    def _ops_to_keep(self, old: Ledger, skip: set[bytes]) -> list[Op]:
        ops = [op for op in old.known_ops() if op.op_id not in skip]
        ops += [entry.op for entry in old.pending.entries() if entry.op.op_id not in skip]
        return ops

    def _install(self, ledger: Ledger, height: int, checkpoint_id: bytes) -> None:
        core, finality = self.core, self.core.finality
        core.ledger = ledger
        finality.last_checkpoint_id = checkpoint_id
        for table in (finality.bundles, finality.final_ids_by_height):
            for stale in [h for h in table if h > height]:
                del table[stale]
        snapshot = core.state_sync.snapshot
        if snapshot is not None and snapshot.manifest.height > height:
            core.state_sync.snapshot = None  # a snapshot of reverted history: not served
        unfinal = IdSet()
        for op in ledger.known_ops():
            if not ledger.is_final(op.op_id):
                unfinal.add(op.op_id)
        for entry in ledger.pending.entries():
            unfinal.add(entry.op.op_id)
        core._unfinal_ids = unfinal
        finality.first_unfinal_at = core._now if ledger.unfinalized_count() else None

    # --- bundles and ops -------------------------------------------------------------------

    def check_bundle(self, bundle: consensus.CheckpointBundle) -> None:
        """Raise a RollbackError subclass unless the epoch history admits `bundle`."""
        self.history.check_bundle(bundle)

    def epoch_first_height(self) -> int:
        """The first height the current epoch decides (1 in epoch 0, H+1 after a rollback)."""
        return self.history.heights_of(self.history.current_epoch)[0]

    def is_reverted(self, op_id: bytes) -> bool:
        """Reverted, or an op of a reverted cut not held yet (reverted when it arrives)."""
        return op_id in self.reverted or op_id in self.unresolved

    # --- gossip ----------------------------------------------------------------------------

    def _first_time(self, data: bytes) -> bool:
        digest = sha256(data)
        if digest in self.seen:
            return False
        self.seen[digest] = None
        while len(self.seen) > CONSENSUS_SEEN_MAX:
            self.seen.popitem(last=False)
        return True

    def _gossip_bundles(
        self, bundles: list[bytes], op_ids: list[bytes], source: bytes = b""
    ) -> None:
        """Send bundles of reverted heights, after the ops of theirs we hold (`op_ids`, parents
        first), to every peer but `source`: a peer that lacks some of those ops still reaches
        all of them from the cut's heads. Each node relays one such bundle once
        (`on_reverted_bundle` de-duplicates by hash).

        Bulk sync: each peer's copy goes through the serve-rate buckets (serve_rate.py) and
        waits there when they are empty, so it is only ever queued later, never before the
        certificate it follows (queued to every peer before or as it was accepted)."""
        if not bundles:
            return
        for data in bundles:
            self._first_time(data)
        messages = [
            encode_message(BundlesMessage(tuple(bundles[start : start + BUNDLES_PER_MESSAGE_MAX])))
            for start in range(0, len(bundles), BUNDLES_PER_MESSAGE_MAX)
        ]
        ledger = self.core.ledger
        ops = [ledger.op(op_id) or ledger.pending.get(op_id) for op_id in op_ids]
        envelopes = [op.envelope for op in ops if op is not None]  # what send_ops sends
        size = sum(len(encoded) for encoded in messages) + sum(
            answer_size_max(envelopes[start : start + OPS_PER_MESSAGE_MAX])
            for start in range(0, len(envelopes), OPS_PER_MESSAGE_MAX)
        )

        def send(peer: Peer) -> None:
            self.serve(peer)  # the certificates first (when not sent to it yet)
            self.core.gossip.send_ops(peer, op_ids, Priority.CONTROL)
            for encoded in messages:
                peer.encoder.queue_message(encoded, Priority.CONTROL)

        held = HeldPush(size, send)
        for peer_id in self.core._peer_order:
            if peer_id != source:
                self.core.serve_rate.push(self.core._peers[peer_id], held)

    def _gossip(self, message: RollbackMessage, source: Peer | None) -> None:
        encoded = encode_message(message)
        for peer_id in self.core._peer_order:
            if source is None or peer_id != source.peer_id:
                self.core._peers[peer_id].encoder.queue_message(encoded, Priority.CONTROL)


class RollbackSignerError(LocalProtocolError):
    """A local request to sign a rollback vote this node cannot sign."""

    code = "rollback_not_signable"
