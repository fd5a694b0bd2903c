"""Arbitration between valid ops that exclude each other, and re-derivation.

Two valid ops can exclude each other: a fork (same author and seq) or two grants to one
account. Each such op holds a *conflict key* (`conflict_keys`); among the contenders for one
key, the op with the smallest *canonical key* (causal depth from the last final checkpoint,
op id) wins, and the loser and everything that depends on it are *excluded* (kept, reported
with a code, never applied). A newcomer that would win over an applied op means arrival
order disagreed with canonical order: the ledger then re-derives the state by replaying every
known op in canonical order (`_rederive`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Literal

from ..codes import RejectCode, final_code
from ..ops import Kind, Op
from . import handles
from .base import _LedgerBase
from .events import HandleConflictRaised, OpAccepted, OpExcluded, StateRederived
from .overlay import OverlaySet
from .rules import Rejection
from .state import CanonicalKey, ConflictKey, Derivation

Verdict = Literal["none", "newcomer", "holder", "final"]


def conflict_keys(op: Op) -> tuple[ConflictKey, ...]:
    if op.kind is Kind.GRANT:
        return (("seq", op.author, op.seq), ("grant", op.to, 0))
    return (("seq", op.author, op.seq),)


def conflict_code(op: Op) -> RejectCode:
    """The code of an op that loses one of its conflict keys."""
    return RejectCode.GRANT_CONFLICT_LOST if op.kind is Kind.GRANT else RejectCode.FORK_LOST


class _Arbitration(_LedgerBase):
    """Canonical keys, conflict verdicts, exclusion and re-derivation (module docstring)."""

    def _depth_of(self, op: Op) -> int:
        """Causal depth counted from the last final checkpoint: final parents count as depth 0
        (whether this node knows them or not), so every node at the same final height gives an
        op the same depth, replayed or restored."""
        final = self._final.applied
        depths = self._depth
        deepest = 0
        for parent in op.parents:
            if parent not in final:
                depth = depths.get(parent)
                if depth is not None and depth > deepest:
                    deepest = depth
        return 1 + deepest

    def _recompute_depths(self) -> None:
        """Re-count the depth of every known non-final op from the (new) final checkpoint,
        parents first (the old keys already order parents before children)."""
        final = self._final.applied
        # `_depth` holds the known non-final ops (and no final one but those of the cut being
        # made final): O(non-final ops), not O(history).
        unfinal = [op_id for op_id in self._depth if op_id not in final]
        for op_id in sorted(unfinal, key=self._canonical_key):
            self._depth[op_id] = self._depth_of(self._known[op_id])

    def _canonical_key(self, op_id: bytes) -> CanonicalKey:
        return (self._depth[op_id], op_id)

    def _conflict_winner_check(self, op: Op) -> Verdict:
        """Which side loses if `op` contends for a conflict key that is already held.

        "final": the holder is final, so the newcomer can never win (a permanent rejection).
        """
        if self._below_final_seq(op):
            return "final"
        if op.kind is Kind.GRANT:
            recipient = self._final.state.accounts.get(op.to)
            if recipient is not None and recipient.granted:
                return "final"
        verdict: Verdict = "none"
        conflicts = self._live.conflicts
        for key in conflict_keys(op):
            holder = conflicts.get(key)
            if holder is None or holder == op.op_id:
                continue
            if holder in self._final.applied:
                return "final"
            if self._canonical_key(op.op_id) > self._canonical_key(holder):
                return "newcomer"
            verdict = "holder"
        return verdict

    def _rederive(
        self, applied_before: set[bytes] | None = None, newly_final: Iterable[bytes] = ()
    ) -> None:
        """Replay every known op above the final state in canonical order (`applied_before`:
        the non-final ids the live derivation held, when the final state changed under it
        since, by making `newly_final` final). Only non-final ids are compared, never the
        final set: an op is reported accepted when it is applied now and was not before."""
        self.stats.rederivations += 1
        self._forget_cuts()  # the replay may drop ops a remembered closure holds
        before = self._non_final_ids() if applied_before is None else applied_before
        bindings_before = {h: b.claim_id for h, b in self._live.state.bindings.items()}
        final = self._final.applied
        known = self._known
        ordered = sorted(
            (known[op_id] for op_id in self._depth if op_id not in final),  # see above
            key=lambda op: self._canonical_key(op.op_id),
        )
        touched = handles.handles_of(ordered, self._live.state.claims, self._known)
        conflicts_before = handles.conflicts(self._live, touched, self.quorum)
        self._live = self._replay(self._final, ordered)
        now_final = [op_id for op_id in newly_final if op_id in final]
        now_applied = [*self._non_final_view(), *now_final]
        for op_id in sorted({op_id for op_id in now_applied if op_id not in before}):
            op = self._known[op_id]
            self._emit(OpAccepted(op_id, op.kind, op.author, op.seq))
        for op_id, code in self._live.excluded.items():
            if op_id in before:
                self._emit(OpExcluded(op_id, code))
        for event in handles.binding_changes(bindings_before, self._live):
            self._emit(event)
        # A conflict the replay brought about is reported as applying the ops in order would.
        conflicts_after = handles.conflicts(self._live, touched, self.quorum)
        for handle, loser, winner in sorted(conflicts_after - conflicts_before):
            self._emit(HandleConflictRaised(handle, loser, winner))
        applied = len(self._live.applied) + self._final_dropped
        self._emit(StateRederived(applied, len(self._live.excluded)))

    def _non_final_view(self) -> set[bytes]:
        """The ids the live derivation applied above the final state (not a copy)."""
        applied = self._live.applied
        assert isinstance(applied, OverlaySet)  # the live derivation is an overlay (overlay.py)
        return applied.local

    def _non_final_ids(self) -> set[bytes]:
        """A copy of `_non_final_view`: O(non-final ops), never O(history)."""
        return set(self._non_final_view())

    def _replay(
        self, base: Derivation, ordered: list[Op], step: Callable[[Op], None] | None = None
    ) -> Derivation:
        """An overlay on `base` (the final derivation) with `ordered` (canonical order) applied
        by `step` (default: a non-strict `_replay_one`); the live derivation is untouched (it
        is swapped out while the replay runs)."""
        if step is None:
            step = functools.partial(self._replay_one, strict=False)
        live, self._live = self._live, base.over(self.stats.work)
        self._replaying = True
        try:
            for op in ordered:
                step(op)
            return self._live
        finally:
            self._replaying = False
            self._live = live

    def _replay_one(self, op: Op, *, strict: bool) -> None:
        """Apply `op` during a replay. Outside strict mode a rule failure rejects the op for
        good; in strict mode (checking a proposed cut) it raises, since a cut holding an
        invalid op is itself invalid."""
        if not all(self._parent_applied(op, parent) for parent in op.parents):
            self._live.excluded[op.op_id] = RejectCode.DEPENDS_ON_EXCLUDED
            return
        try:
            self._check_chain_position(op)
            verdict = self._conflict_winner_check(op)
            if verdict != "none":
                code = final_code(conflict_code(op)) if verdict == "final" else conflict_code(op)
                self._live.excluded[op.op_id] = code
                return
            checked = self._check_rules(op)
        except Rejection as rejection:
            if strict:
                raise
            del self._known[op.op_id], self._depth[op.op_id]
            self._remember_rejected(op.op_id, rejection.code)
            return
        self._apply(op, checked)
