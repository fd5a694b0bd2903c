"""The divergence halt and the rejoin confirmation.

Divergence: every time a node finalizes a height it compares its own final state root with the
root the council signed in that height's cut, and before it proposes or checks a cut it
compares the root of its final state with the signed root of its last final height (a state
corrupted in between, e.g. by a disk fault, is caught before the node signs a cut derived from
it). A mismatch means this node's state is wrong: it emits `RootDiverged` (the shell logs an
error naming the first divergent height), goes read-only with reason `root_divergence`, stops
serving its snapshot, forgets its final state and catches up again from its peers: bundles,
or a state sync from a peer's snapshot when they no longer keep the bundles (the existing
state-sync path). Nothing of the bad state is signed, persisted as a checkpoint or served.

Rejoin: a node coming out of a rollback (online revert), a rollback resync or a divergence
stays read-only until it has confirmed its final root:
- its final height reached the height the episode needs (H of the certificate, or the
  divergent height);
- the signed bundle at its final height carries its own final root;
- at least REJOIN_PEERS_MIN peers (every other council member when the council is smaller)
  hold the same checkpoint at that height: the node asks every
  peer for its bundle of that one height (the existing BUNDLE_REQUEST; a peer answers with the
  bundle it finalized there) and counts the distinct peers whose bundle has our checkpoint id.
When the final height moves on meanwhile, the confirmation starts again at the new height.
Then the node returns to the mode it was in before the episode. `NodeStatus.rejoin` shows the
step (`catching up to H`, `confirming 1/2`).

Restart: `Rejoin.record()` is the episode in progress as bytes (b"" when none) for the shell to
store whenever it changes, and `Rejoin.restore(record, now)` resumes it after
`NodeCore.restore` and the stored mode: a node restarted mid-rejoin is read-only again with the
episode's reason and confirms again (the peers' confirmations are not kept: they are asked
again). It returns to the mode it restarted in (the stored operator mode), not the one it had
before the episode, so a mode an operator set on the stopped node wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import consensus, encoding
from ..checkpoint import Cut
from ..codes import RejectCode
from ..errors import LocalProtocolError, RemoteProtocolError
from ..framing import Priority
from ..ledger import Ledger
from ..limits import REJOIN_PEERS_MIN, REJOIN_QUERY_RETRY_S
from ..messages import BundleRequestMessage, encode_message
from ..reconcile import IdSet
from .config import Mode
from .events import RootDiverged

if TYPE_CHECKING:
    from .core import NodeCore

#: The mode reason of a node whose own root differed from a council-signed one.
REASON_DIVERGENCE = "root_divergence"
#: The mode reason a rollback sets (rollbacks.py).
REASON_ROLLBACK = "rollback"


@dataclass
class Confirmation:
    """Peers that confirmed our checkpoint at `height` (ids, in arrival order)."""

    height: int
    checkpoint_id: bytes
    asked_at: float
    peers: list[bytes] = field(default_factory=list)


class Rejoin:
    """The episode in progress (if any): the height to reach, the mode to return to, the first
    divergent height, and the confirmation by peers."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        #: Final height to reach before confirming; None when no episode is in progress.
        self.target: int | None = None
        self.resume: tuple[Mode, str] = (Mode.NORMAL, "")
        #: The first height whose signed root differed from ours (0: no divergence).
        self.divergent_height = 0
        self.confirmation: Confirmation | None = None
        #: The mode reason the episode set (one of REJOIN_REASONS), for `record`.
        self.reason = ""

    # --- episodes --------------------------------------------------------------------------

    def begin(self, target: int, resume: tuple[Mode, str], now: float) -> None:
        """Stay read-only (as the caller set it) until final at `target` and confirmed, then
        return to `resume` (kept from an episode already in progress)."""
        if self.target is None:
            self.resume = resume
        # Callers set the episode's mode first; `record` writes only a reason `restore` reads.
        if self.core.mode_reason in REJOIN_REASONS:
            self.reason = self.core.mode_reason
        elif not self.reason:
            self.reason = REASON_ROLLBACK
        self.target = target if self.target is None else max(self.target, target)
        self.confirmation = None
        self.reached_final(now)

    def diverged(self, height: int, own_root: bytes, signed_root: bytes, now: float) -> None:
        """Our root at `height` is not the council-signed one: halt and catch up again."""
        core = self.core
        core.stats.root_divergences += 1
        if not self.divergent_height:
            self.divergent_height = height
        core._emit(RootDiverged(height, own_root, signed_root, self.divergent_height))
        resume = (core.mode, core.mode_reason)
        if core.mode_reason in REJOIN_REASONS:
            resume = self.resume
        core.set_mode(Mode.READ_ONLY, REASON_DIVERGENCE, now)
        forget_final_state(core, keep_unfinal=True)
        self.target = None
        self.begin(height, resume, now)
        core.finality.continue_catch_up(now, persist=True)

    def check_final_root(self, now: float) -> bool:
        """False (and the node halts) when our final state's root is not the signed root of
        our final height; True when it is or no signed root is held to compare with."""
        core = self.core
        signed = signed_root_at(core, core.final_height)
        if signed is None:
            return True
        own = core.ledger.final_state.root()
        if own == signed:
            return True
        self.diverged(core.final_height, own, signed, now)
        return False

    # --- confirmation ----------------------------------------------------------------------

    def reached_final(self, now: float) -> None:
        """After the final height moved (or an episode began): start confirming once at the
        target, again at the new height when it moved on."""
        core = self.core
        if self.target is None or core.final_height < self.target:
            return
        height = core.final_height
        if self.confirmation is not None and self.confirmation.height == height:
            return
        if not self.check_final_root(now):
            return
        checkpoint_id = core.rollbacks.checkpoint_id_at(height)
        if checkpoint_id is None:
            return
        self.confirmation = Confirmation(height, checkpoint_id, now)
        if self.peers_needed() == 0:
            self._finish(now)
            return
        self._ask(height)

    def on_peer_bundle(self, source: bytes, bundle: consensus.CheckpointBundle, now: float) -> None:
        """A bundle a peer sent at or below our final height: a confirmation when it is the
        one we finalized at the height being confirmed."""
        confirmation = self.confirmation
        if confirmation is None or bundle.height != confirmation.height or not source:
            return
        if source in confirmation.peers:
            return
        try:
            checkpoint_id = Cut.decode(bundle.value).checkpoint_id
        except RemoteProtocolError:
            return
        if checkpoint_id != confirmation.checkpoint_id:
            return
        confirmation.peers.append(source)
        if len(confirmation.peers) >= self.peers_needed():
            self._finish(now)

    def peers_needed(self) -> int:
        """REJOIN_PEERS_MIN, or every other council member when the council is smaller (a
        one-member council has no one to ask: the signed bundle alone confirms its root)."""
        core = self.core
        others = len(core.genesis.council) - (1 if core.is_validator else 0)
        return min(REJOIN_PEERS_MIN, others)

    def next_retry_at(self) -> float | None:
        """When the confirmation asks its peers again (None: nothing to ask)."""
        confirmation = self.confirmation
        return None if confirmation is None else confirmation.asked_at + REJOIN_QUERY_RETRY_S

    def handle_timer(self, now: float) -> None:
        """Ask again when the answers did not come within REJOIN_QUERY_RETRY_S. Due exactly
        when `next_retry_at` says: `now - asked_at` may round to just below the interval at
        the very deadline `asked_at + interval` (a timer that never moved on, re-armed at the
        same past time: a busy loop)."""
        confirmation = self.confirmation
        retry_at = self.next_retry_at()
        if confirmation is not None and retry_at is not None and now >= retry_at:
            confirmation.asked_at = now
            self._ask(confirmation.height)

    def catching_up(self) -> bool:
        """True while the final height is below the episode's target."""
        return self.target is not None and self.core.final_height < self.target

    def step(self) -> str:
        """The step shown in NodeStatus.rejoin ("" when no episode is in progress)."""
        if self.target is None:
            return ""
        if self.confirmation is None:
            return f"catching up to {self.target}"
        return f"confirming {len(self.confirmation.peers)}/{self.peers_needed()}"

    # --- restart ---------------------------------------------------------------------------

    def record(self) -> bytes:
        """The episode in progress, to store (b"" when none): its reason, target height and
        first divergent height. The shell stores it whenever it changes."""
        if self.target is None:
            return b""
        return encoding.encode([self.reason, self.target, self.divergent_height])

    def restore(self, record: bytes, now: float) -> None:
        """At start, after the stored mode was set: resume the stored episode (read-only with
        its reason until final at its target and confirmed again), returning to the mode the
        node restarted in. Raises RejoinRecordError for a record `record()` cannot write."""
        if not record:
            return
        reason, target, divergent_height = decode_record(record)
        resume = (self.core.mode, self.core.mode_reason)
        self.core.set_mode(Mode.READ_ONLY, reason, now)
        self.divergent_height = divergent_height
        self.begin(target, resume, now)

    def _ask(self, height: int) -> None:
        request = encode_message(BundleRequestMessage(height, 1))
        for peer_id in self.core._peer_order:
            self.core._peers[peer_id].encoder.queue_message(request, Priority.CONTROL)

    def _finish(self, now: float) -> None:
        mode, reason = self.resume
        self.target = None
        self.confirmation = None
        self.divergent_height = 0
        self.reason = ""
        self.resume = (Mode.NORMAL, "")
        self.core.set_mode(mode, reason, now)


#: The mode reasons of the episodes a node rejoins from (rollbacks.py's and ours).
REJOIN_REASONS = frozenset({REASON_ROLLBACK, "rollback_resync", REASON_DIVERGENCE})


class RejoinRecordError(LocalProtocolError):
    """A stored rejoin record that `Rejoin.record` cannot have written (a corrupt store)."""

    code = RejectCode.REJOIN_RECORD_INVALID


def decode_record(record: bytes) -> tuple[str, int, int]:
    """(reason, target, divergent height) of a stored record; RejoinRecordError otherwise."""
    try:
        value = encoding.decode(record)
    except RemoteProtocolError as exc:
        raise RejoinRecordError(f"rejoin record: {exc.message}") from None
    match value:
        case [str(reason), int(target), int(divergent)] if (
            reason in REJOIN_REASONS and target >= 0 and divergent >= 0
        ):
            return reason, target, divergent
    raise RejoinRecordError("rejoin record: not [reason, target, divergent height]")


def signed_root_at(core: NodeCore, height: int) -> bytes | None:
    """The council-signed state root of our final cut at `height`, None when we do not hold
    its bundle (or for height 0)."""
    data = core.finality.bundles.get(height)
    if height == 0 or data is None:
        return None
    return Cut.decode(consensus.CheckpointBundle.decode(data).value).state_root


def forget_final_state(core: NodeCore, *, keep_unfinal: bool = False) -> None:
    """Drop the final state and the final ops: catch up again from genesis or a peer's
    snapshot (bundles, or a state sync). The unfinalized ops are kept when `keep_unfinal`
    (re-admitted without checking their signatures again; most wait on forgotten parents until
    the state is back), else they come back by delta sync."""
    finality = core.finality
    old = core.ledger
    held = []
    if keep_unfinal:
        held = [op for op in old.known_ops() if not old.is_final(op.op_id)]
        held += [entry.op for entry in old.pending.entries()]
    core.ledger = Ledger(core.genesis, core.config.ledger)
    finality.bundles.clear()
    finality.final_ids_by_height.clear()
    finality.future_bundles.clear()
    finality.awaiting_decision = None
    finality.validation_waiting.clear()
    finality.last_checkpoint_id = b""
    finality.consensus_height = 0
    core.state_sync.snapshot = None
    core.snapshot_base_height = 0
    core._unfinal_ids = IdSet()
    finality.first_unfinal_at = None
    for op in held:
        outcome = core.ledger.receive_verified(op, core._now)
        if outcome.status in ("accepted", "pending", "excluded"):
            core._unfinal_ids.add(outcome.op_id)
    core.ledger.drain_events()  # reported when first admitted
