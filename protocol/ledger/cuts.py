"""Checkpoint cuts: which ops a cut holds (`cut_closure`), the state it gives (`derive_cut`),
and making it final (`finalize`).

A cut is named by its heads (author, seq, head id); its closure is every non-final op the heads
reach. Closures and cut derivations are remembered between a proposal, the votes and the
decision of one height (`CUT_CACHE_ENTRIES_MAX`), and forgotten whenever the final state or
the set of known ops changes.
"""

from __future__ import annotations

import functools

from .. import limits
from ..codes import final_code
from ..errors import LocalProtocolError
from ..ops import Kind, Op
from . import rules
from .apply import _Applying
from .base import CutInvalidError
from .overlay import OverlaySet
from .rules import Rejection
from .state import Derivation

CUT_CACHE_ENTRIES_MAX = limits.CUT_CACHE_ENTRIES_MAX  # why: see limits.py


class _Cuts(_Applying):
    """Cut closures, cut derivations and finalization (see the module docstring)."""

    def unfinalized_heads(self) -> list[tuple[bytes, int, bytes]]:
        """(author, seq, head id) of every author whose applied chain moved since the last
        final checkpoint, sorted by author: the heads of the cut this node would propose."""
        # An author's chain moved iff it has an applied op above the final state. (Reading
        # those authors off the non-final ops, rather than comparing every account written
        # above the final state with its final record, leaves the final records of accounts
        # that only received credits untouched: at a million accounts each such read is a
        # few cache misses; BENCHMARKS.md, session 9.)
        known = self._known
        authors = {known[op_id].author for op_id in self._non_final_view()}
        accounts = self._live.state.accounts
        return sorted((a, accounts[a].seq, accounts[a].head) for a in authors)

    def canonical_order(self, op_ids: list[bytes] | set[bytes]) -> list[bytes]:
        """Known non-final ids, or ids of the last final cut, sorted parents-first (by causal
        depth, then id); other ids dropped."""
        depth, last_cut = self._depth, self._last_cut_depth
        keyed = []
        for op_id in op_ids:
            found = depth.get(op_id)
            if found is None:
                found = last_cut.get(op_id)
            if found is not None:
                keyed.append((found, op_id))
        keyed.sort()
        return [op_id for _, op_id in keyed]

    def unfinalized_count(self) -> int:
        return len(self._non_final_view())

    def cut_closure(self, heads: list[bytes]) -> tuple[set[bytes], list[bytes]]:
        """The non-final ops a cut with these heads contains, and the ids we lack (if any).

        The answer is remembered for the heads it was asked for until the final state or the
        set of known ops changes (a cut is asked for by the proposal, the votes, the decision,
        and on every input while ops of it are missing): an incomplete one is walked again
        only once one of its missing ids has arrived.
        """
        key = tuple(heads)
        cached = self._closures.get(key)
        if cached is not None:
            known = self._known
            if not any(op_id in known for op_id in cached[1]):
                return cached[0], list(cached[1])
        closure: set[bytes] = set()
        missing: list[bytes] = []
        lacking: set[bytes] = set()
        stack = list(heads)
        final = self._final.applied
        while stack:
            op_id = stack.pop()
            if op_id in closure or op_id in final:
                continue
            op = self._known.get(op_id)
            if op is None:
                if op_id not in lacking:
                    lacking.add(op_id)
                    missing.append(op_id)
                continue
            closure.add(op_id)
            stack.extend(p for p in op.parents if not self._is_state_final(op, p))
        if key not in self._closures and len(self._closures) >= CUT_CACHE_ENTRIES_MAX:
            self._closures.pop(next(iter(self._closures)))
        self._closures[key] = (closure, tuple(missing))
        return closure, missing

    def derive_cut(self, heads: list[tuple[bytes, int, bytes]]) -> tuple[bytes, set[bytes]]:
        """Check a proposed cut whose ops we all hold; returns (state root, closure).

        Raises CutInvalidError when the cut cannot be final (a head that is not the author's op
        at that seq, an op that breaks a rule, a head excluded by a conflict in the cut).
        The derivation of a cut that is not exactly the provisional state is kept for
        `finalize` (bounded: CUT_CACHE_ENTRIES_MAX), so a decided cut is replayed once.
        """
        closure, missing = self.cut_closure([head for _, _, head in heads])
        if missing:
            raise CutInvalidError(f"{len(missing)} ops of the cut are unknown")
        for author, seq, head in heads:
            op = self._known[head]
            if op.author != author or op.seq != seq:
                raise CutInvalidError("a head is not its author's op at that seq")
        if self._is_whole_live(closure):
            # The common case: the cut is exactly our provisional state.
            return self._live.state.root(), closure
        derivation = self._cut_derivation(closure)
        if any(head not in derivation.applied for _, _, head in heads):
            raise CutInvalidError("a head of the cut loses a conflict inside the cut")
        return derivation.state.root(), closure

    def _is_whole_live(self, closure: set[bytes]) -> bool:
        """Whether `closure` is exactly the provisional (applied, non-final) ops, with nothing
        excluded: then the cut's state is the live state itself."""
        if self._live.excluded or len(closure) != self.unfinalized_count():
            return False
        applied = self._live.applied
        return all(op_id in applied for op_id in closure)

    def _cut_derivation(self, closure: set[bytes]) -> Derivation:
        """The final state with `closure` replayed onto it (strict), remembered per closure."""
        for cached_closure, derivation in self._derivations:
            if cached_closure == closure:
                return derivation
        ordered = sorted(
            (self._known[op_id] for op_id in closure), key=lambda o: self._canonical_key(o.op_id)
        )
        checked = self._live.checked
        if not self._live.excluded and all(op_id in checked for op_id in closure):
            derivation = self._replay_checked(ordered)
        else:
            try:
                derivation = self._replay_strict(ordered)
            except Rejection as rejection:
                raise CutInvalidError(f"the cut holds an invalid op: {rejection.code}") from None
        if len(self._derivations) >= CUT_CACHE_ENTRIES_MAX:
            self._derivations.pop(0)
        self._derivations.append((closure, derivation))
        return derivation

    def _replay_strict(self, ordered: list[Op]) -> Derivation:
        return self._replay(self._final, ordered, functools.partial(self._replay_one, strict=True))

    def _replay_checked(self, ordered: list[Op]) -> Derivation:
        """`_replay_strict` for a cut of a conflict-free provisional state, without re-checking.

        Every op of the cut was applied to the provisional state above the same final state,
        and what its rules computed depends only on its causal past (its author's chain and the
        credits it receives), all inside the cut: replaying it onto the final state computes
        the same `_Checked` and passes the same rules, so the stored one is applied as is.
        (An op whose checks could depend on the final line keeps a current `_Checked`: each
        `finalize` that moves the line under such an op re-derives; see `_remainder_is_stable`.)
        """
        checked = self._live.checked
        return self._replay(self._final, ordered, lambda op: self._apply(op, checked[op.op_id]))

    def finalize(self, height: int, closure: set[bytes]) -> list[bytes]:
        """Make a checked cut final (its closure from `cut_closure`); returns the final ids.

        Three ways, cheapest first, all giving the state a full re-derivation would:
        - the cut is exactly the provisional state: it is merged into the final state (an
          overlay merge: O(records it changed)) and a fresh overlay starts above it;
        - the cut is a part of a conflict-free provisional state and what stays provisional
          does not depend on where the final line is (`_remainder_is_stable`): the cut's
          derivation (kept from `derive_cut`, an overlay on the final state) is merged into
          the final state and the provisional state stays as it is (it wrote every record the
          cut wrote, so what it reads through to the final state did not change); only causal
          depths are re-counted from the new final checkpoint;
        - otherwise the cut is replayed onto the previous final state and the provisional
          state is re-derived above the new final one.
        """
        if height != self.final_height + 1:
            raise LocalProtocolError(f"finalize height {height} after {self.final_height}")
        if self._is_whole_live(closure):
            self._live.merge(self._final)
            self._live = self._final.over(self.stats.work)
            self._forget_cuts()
        else:
            derivation = self._cut_derivation(closure)
            remainder = self._remainder(closure)
            stable = (
                not derivation.excluded
                and not self._live.excluded
                and len(remainder) + len(closure) == self.unfinalized_count()
                and self._remainder_is_stable(closure, remainder)
            )
            for op_id, code in list(derivation.excluded.items()):
                # A loser inside a final cut can never win any more.
                self._known.pop(op_id, None)
                self._depth.pop(op_id, None)
                self._remember_rejected(op_id, final_code(code))
            # The provisional state keeps what it read (the old final records) until it is
            # re-derived, exactly as when it was a copy; and the non-final ids it held before.
            applied_before = self._non_final_ids()
            self._live.pin(derivation)
            derivation.merge(self._final)
            live_applied = self._live.applied
            if isinstance(live_applied, OverlaySet):  # the cut's ids are final ones now
                live_applied.forget(closure)
            live_checked = self._live.checked
            for op_id in closure:
                live_checked.pop(op_id, None)
            self._forget_cuts()
            # Depths and endorsement epochs count from the new final checkpoint from now on.
            self.final_height = height
            if stable:
                self._recount_depths(remainder)
            else:
                self._recompute_depths()
                self._rederive(applied_before, closure)
        self.final_height = height
        self._forget_final_depths(closure)
        final_ids = sorted(closure)
        self._hold_final_bodies(height, final_ids)
        return final_ids

    def _forget_final_depths(self, closure: set[bytes]) -> None:
        """Per-op bookkeeping is for non-final ops only: the cut's depths move aside for
        `canonical_order` (the caller orders the final ids next) until the next cut."""
        depth = self._depth
        self._last_cut_depth = {op_id: depth.pop(op_id) for op_id in closure if op_id in depth}

    def _remainder(self, closure: set[bytes]) -> list[bytes]:
        """The applied, non-final ops outside `closure`, in canonical order.

        Read from the stored check results, which exist for exactly the applied non-final ops
        (O(provisional ops), not O(history)); should one be missing, the caller's count check
        fails and it re-derives, which is always right."""
        final = self._final.applied
        remainder = [
            op_id for op_id in self._live.checked if op_id not in final and op_id not in closure
        ]
        remainder.sort(key=self._canonical_key)
        return remainder

    def _remainder_is_stable(self, closure: set[bytes], remainder: list[bytes]) -> bool:
        """Whether applying `remainder` above the cut gives what it gave above the old final
        state. Rules that look at the final line are: an endorsement's key (final height and
        depth), a revocation settling by those keys, and a dep that turns final (only a credit
        to the author or a claim may be named once final). Ops of those shapes force the full
        re-derivation."""
        known = self._known
        for op_id in remainder:
            op = known[op_id]
            if op.kind is Kind.HANDLE_ENDORSE or op.kind is Kind.HANDLE_REVOKE:
                return False
            for dep in op.deps:
                if dep not in closure:
                    continue
                dep_op = known[dep]
                if not (rules.is_credit_to(dep_op, op.author)):
                    return False
        return True

    def _recount_depths(self, ordered: list[bytes]) -> None:
        """Re-count causal depths of the still-provisional ops (parents first) from the new
        final checkpoint, as a re-derivation would."""
        for op_id in ordered:
            self._depth[op_id] = self._depth_of(self._known[op_id])
