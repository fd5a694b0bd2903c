"""The ledger's common part: configuration, counters, the op and rejection memories, the
event queue, and what the final state says about ops this node never saw.

`Ledger` (facade.py) is built from layers, each in its own module, each inheriting the one
below: `_LedgerBase` (here) <- `_Arbitration` (arbitration.py: canonical keys, conflicts,
exclusion, re-derivation) <- `_Applying` (apply.py: running the rules, applying an op) <-
`_Cuts` (cuts.py: closure, derive, finalize) <- `Ledger`. The three methods arbitration's
replay needs from apply.py are declared here.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from .. import limits
from ..codes import RejectCode
from ..errors import LocalProtocolError, RemoteProtocolError
from ..genesis import Genesis
from ..ops import Op, op_id_of
from .events import LedgerEvent, OpExcluded, OpRejected, Outcome
from .overlay import WorkCount
from .pending import PendingPool
from .rules import CREDIT_KINDS
from .state import Checked, Derivation, LedgerState


@dataclass(frozen=True)
class LedgerConfig:
    pending_ops_max: int = limits.PENDING_OPS_MAX
    pending_ops_per_author_max: int = limits.PENDING_OPS_PER_AUTHOR_MAX
    pending_op_ttl_s: float = limits.PENDING_OP_TTL_S
    rejected_ids_remembered_max: int = limits.REJECTED_IDS_REMEMBERED_MAX
    events_max: int = limits.LEDGER_EVENTS_MAX
    #: Final heights whose op bodies stay in RAM (the newest ones); older final bodies leave
    #: (`Ledger.op` answers None for them; the shell reads them from its store).
    final_bodies_heights: int = limits.FINAL_OP_BODIES_HEIGHTS_MAX

    def __post_init__(self) -> None:
        if not 1 <= self.final_bodies_heights <= limits.FINAL_OP_BODIES_HEIGHTS_MAX:
            raise LocalProtocolError(
                "need 1 <= final_bodies_heights <= FINAL_OP_BODIES_HEIGHTS_MAX"
            )


class CutInvalidError(RemoteProtocolError):
    """A proposed or received checkpoint cut cannot be final."""

    code: str = RejectCode.CUT_INVALID


@dataclass
class LedgerStats:
    accepted: int = 0
    duplicate: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    excluded: int = 0
    evicted: int = 0
    rederivations: int = 0
    events_dropped: int = 0
    #: Op signatures checked by `receive_op` (a restart checks none at or below its snapshot).
    verified: int = 0
    #: Ops at or below their author's final seq whose final op is not among the held heights
    #: (`Ledger._final_line_unheld`): answered "duplicate" unverified, never admitted.
    below_final_line: int = 0
    #: Records copied on write and merged into the final state (overlay.py), cumulative:
    #: what a checkpoint costs in records, for tests that it is bounded by the cut.
    work: WorkCount = field(default_factory=WorkCount)


class _LedgerBase:
    """What every layer of the ledger reads and writes (see the module docstring)."""

    def __init__(self, genesis: Genesis, config: LedgerConfig | None = None) -> None:
        self.genesis = genesis
        self.network_id = genesis.network_id
        self.config = config or LedgerConfig()
        self.council = frozenset(genesis.council)
        self.quorum = genesis.quorum
        self.final_height = 0
        self.stats = LedgerStats()
        self.pending = PendingPool(
            ops_max=self.config.pending_ops_max,
            per_author_max=self.config.pending_ops_per_author_max,
            ttl_s=self.config.pending_op_ttl_s,
        )
        #: The derivation at the last final checkpoint (whole), and the live (provisional) one
        #: above it, an overlay on it (overlay.py).
        self._final = Derivation.empty()
        self._live = self._final.over(self.stats.work)
        #: Ops applied or excluded, in arrival order: every non-final one, and the final ones
        #: of the newest `config.final_bodies_heights` heights (listed in `_final_bodies`).
        self._known: dict[bytes, Op] = {}
        self._final_bodies: OrderedDict[int, list[bytes]] = OrderedDict()
        #: The final ids are held for the same heights as the bodies (issue 13): the final
        #: derivation's applied set holds the ids of `_final_bodies` only, and
        #: `_final_dropped` counts the ids that left with their height. `_final_lines` holds
        #: their (author, seq) once an id has left (None before: nothing reads it until then,
        #: so a window that covers the whole history costs nothing more).
        self._final_lines: set[tuple[bytes, int]] | None = None
        self._final_dropped = 0
        #: The final state handed to another thread by `freeze_final` (None: none).
        self._frozen: LedgerState | None = None
        #: Causal depths of the non-final ops (final ones leave at finalize); the depths of
        #: the last final cut's ops stay readable by `canonical_order` until the next one.
        self._depth: dict[bytes, int] = {}
        self._last_cut_depth: dict[bytes, int] = {}
        self._rejected: OrderedDict[bytes, str] = OrderedDict()
        self._events: deque[LedgerEvent] = deque()
        self._replaying = False
        #: Complete cut closures by their heads, and cut derivations by closure (see
        #: `cut_closure`, `derive_cut`); both forgotten whenever the final state changes.
        self._closures: dict[tuple[bytes, ...], tuple[set[bytes], tuple[bytes, ...]]] = {}
        self._derivations: list[tuple[set[bytes], Derivation]] = []

    # --- hooks (implemented in apply.py) ------------------------------------------------------

    def _check_chain_position(self, op: Op) -> None:
        raise NotImplementedError

    def _check_rules(self, op: Op) -> Checked:
        raise NotImplementedError

    def _apply(self, op: Op, checked: Checked) -> None:
        raise NotImplementedError

    # --- what the final state says ---------------------------------------------------------

    def _is_state_final(self, op: Op, parent: bytes) -> bool:
        """Whether `parent`, which `op` names, is final by the final state alone: the author's
        final head (as prev), an unreceived credit to the author, or a claim. A node restored
        from a snapshot never saw these ops; a node that replayed everything also holds them
        in the final applied set, so both admit the same ops."""
        final = self._final.state
        account = final.accounts.get(op.author)
        if account is not None and (account.head == parent or parent in account.unreceived):
            return True
        return parent in final.claims

    def _described_final(self, op: Op) -> bool:
        """Whether the final state names `op` itself: an author's final head, an unreceived
        credit, or a claim (only a restored node can meet such an op without knowing it)."""
        final = self._final.state
        author = final.accounts.get(op.author)
        if author is not None and author.head == op.op_id:
            return True
        if op.kind in CREDIT_KINDS:
            recipient = final.accounts.get(op.to)
            return recipient is not None and op.op_id in recipient.unreceived
        return op.op_id in final.claims

    def _parent_applied(self, op: Op, parent: bytes) -> bool:
        return parent in self._live.applied or self._is_state_final(op, parent)

    def _below_final_seq(self, op: Op) -> bool:
        account = self._final.state.accounts.get(op.author)
        return account is not None and op.seq <= account.seq

    def _hold_final_bodies(self, height: int, op_ids: list[bytes]) -> None:
        """Keep the bodies and ids of `op_ids`, final at `height`, among the newest heights'
        only: the oldest height's bodies leave `_known`, and its ids the final applied set,
        once more heights than the config's are held (issue 13: final ids do not grow with
        history). No non-final op needs a dropped id: its final parents are named by the final
        state (`_is_state_final`), since a replay rejects an op whose other deps turned final."""
        known = self._known
        lines = self._final_lines
        if lines is not None:
            for op_id in op_ids:
                op = known.get(op_id)
                if op is not None:
                    lines.add((op.author, op.seq))
        self._final_bodies.setdefault(height, []).extend(op_ids)
        while len(self._final_bodies) > self.config.final_bodies_heights:
            _, old = self._final_bodies.popitem(last=False)
            if self._final_lines is None:  # the first ids leave: index the held ones, once
                self._final_lines = {
                    (op.author, op.seq)
                    for ids in self._final_bodies.values()
                    for op_id in ids
                    if (op := known.get(op_id)) is not None
                }
            self._drop_final_ids(old, self._final_lines)

    def _drop_final_ids(self, op_ids: list[bytes], lines: set[tuple[bytes, int]]) -> None:
        final = self._final.applied
        assert isinstance(final, set)
        known, depth = self._known, self._depth
        for op_id in op_ids:
            op = known.pop(op_id, None)
            if op is not None:
                lines.discard((op.author, op.seq))
            if op_id in final:
                final.discard(op_id)
                self._final_dropped += 1
            depth.pop(op_id, None)  # (a final op met after a restore has a depth of 0)

    def _final_line_unheld(self, op: Op) -> bool:
        """Whether `op` is at or below its author's final seq while the final op at that seq
        is not among the held heights: it is that final op or a fork of it (which one, only
        the shell's store can tell), so it can never apply.

        Only once this ledger has let a height of final ids go: until then it holds every id it
        made final, and such an op goes through the pipeline as it always did (a fork is
        rejected `fork_lost_final`; on a restored ledger, an op below the snapshot too), so a
        core whose window covers its history (the default, the simulator) answers as before.
        The final state's own description (`_described_final`) still answers a final op it
        names (a final head, an unreceived credit, a claim)."""
        lines = self._final_lines
        return (
            lines is not None
            and self._below_final_seq(op)
            and (op.author, op.seq) not in lines
            and not self._described_final(op)
        )

    def _forget_cuts(self) -> None:
        """Forget remembered cut closures and derivations (see cuts.py)."""
        self._closures.clear()
        self._derivations.clear()

    # --- rejection and events --------------------------------------------------------------

    def _exclude(self, op_id: bytes, code: str) -> Outcome:
        self._live.excluded[op_id] = code
        self.stats.excluded += 1
        self._emit(OpExcluded(op_id, code))
        return Outcome(op_id, "excluded", code)

    def _reject_undecodable(self, envelope: bytes, exc: RemoteProtocolError) -> Outcome:
        op_id = op_id_of(envelope) if isinstance(envelope, bytes) else b""
        return self._emit_rejection(op_id, exc.code, exc.message, remember=False)

    def _emit_rejection(
        self, op_id: bytes, code: str, detail: str, *, remember: bool = True
    ) -> Outcome:
        code = str(code)  # the plain string (see errors.ProtocolError)
        self.stats.rejected[code] = self.stats.rejected.get(code, 0) + 1
        if remember:
            self._remember_rejected(op_id, code)
        self._emit(OpRejected(op_id, code, detail))
        if remember:
            self._reject_waiters(op_id)
        return Outcome(op_id, "rejected", code, detail)

    def _remember_rejected(self, op_id: bytes, code: str) -> None:
        self._rejected[op_id] = str(code)
        while len(self._rejected) > self.config.rejected_ids_remembered_max:
            self._rejected.popitem(last=False)

    def _reject_waiters(self, op_id: bytes) -> None:
        """Ops parked on a rejected parent can never become valid: reject them too."""
        work = [op_id]
        while work:
            parent = work.pop()
            for waiter in self.pending.drop_waiters(parent):
                prev = waiter.prev == parent
                code = str(RejectCode.PREV_REJECTED if prev else RejectCode.DEP_REJECTED)
                self.stats.rejected[code] = self.stats.rejected.get(code, 0) + 1
                self._remember_rejected(waiter.op_id, code)
                self._emit(OpRejected(waiter.op_id, code, f"parent {parent.hex()} rejected"))
                work.append(waiter.op_id)

    def _emit(self, event: LedgerEvent) -> None:
        if self._replaying:  # _rederive reports the net changes itself
            return
        if len(self._events) >= self.config.events_max:
            self._events.popleft()
            self.stats.events_dropped += 1
        self._events.append(event)
