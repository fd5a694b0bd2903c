"""Running an op's rules against its causal past, and applying it to the provisional state.

The pure checks are in rules.py (one per kind) and handles.py (the handle kinds); this layer
gathers their inputs from the ledger (the author's account, the credits the op receives, the
claims) and writes the result into the live derivation.
"""

from __future__ import annotations

from ..codes import RejectCode
from ..ops import Kind, Op
from . import handles, rules
from .arbitration import _Arbitration, conflict_keys
from .events import ClaimsModeChanged, CouncilModeChanged, CreditReceived, HypeBurned, OpAccepted
from .rules import Rejection
from .state import Checked

#: The council's votes on a question (quiesce/resume, pause/resume claims).
_VOTE_KINDS = frozenset(
    {
        Kind.COUNCIL_QUIESCE,
        Kind.COUNCIL_RESUME,
        Kind.COUNCIL_PAUSE_CLAIMS,
        Kind.COUNCIL_RESUME_CLAIMS,
    }
)


class _Applying(_Arbitration):
    """The rules as the ledger runs them, and `_apply` (see the module docstring)."""

    def _check_chain_position(self, op: Op) -> None:
        if op.seq == 1:
            return
        rules.check_chain_position(
            op, self._known.get(op.prev), self._final.state.accounts.get(op.author)
        )

    def _check_rules(self, op: Op) -> Checked:
        """Check the kind's rules against the causal past; return what applying needs.

        The chain-position and conflict checks passed, so `op` extends its author's head and
        the author's account record is exactly the state after `op.prev`.
        """
        author = op.author
        record = self._live.state.accounts.get(author)
        spendable, received = self._receive_credits(op, record.spendable if record else 0)
        window_basis = op.basis
        window_grants = record.window_grants if record and record.window_basis == op.basis else 0
        kind = op.kind
        if kind is Kind.TRANSFER or kind is Kind.BURN:
            spendable = rules.check_spend(op, spendable)
        elif kind is Kind.GRANT:
            window_grants = rules.check_grant(op, self.council, self.genesis, window_grants)
        elif kind is Kind.HANDLE_CLAIM:
            rules.check_claim_funded(op, spendable, self.council)
        elif kind is Kind.HANDLE_ENDORSE:
            handles.check_endorse(op, self._live.state.claims, self.council)
        elif kind is Kind.HANDLE_REVOKE:
            handles.check_revoke(op, self._live.state.claims, self.council)
        elif kind in _VOTE_KINDS:
            rules.check_mode_vote(op, self.council)
        return Checked(spendable, window_basis, window_grants, tuple(received))

    def _receive_credits(self, op: Op, spendable: int) -> tuple[int, list[bytes]]:
        """The author's spendable credits after receiving the credits `op` lists in its deps,
        and their ids. A dep is either a credit to the author not received yet, or (when not
        final) any op of the causal past, or a final claim."""
        author = op.author
        record = self._live.state.accounts.get(author)
        unreceived = record.unreceived if record else {}
        final_record = self._final.state.accounts.get(author)
        received: list[bytes] = []
        for dep in op.deps:
            dep_op = self._known.get(dep)
            if dep_op is not None:
                is_credit = rules.is_credit_to(dep_op, author)
            else:  # a final op we never saw: a credit to the author iff unreceived at final
                is_credit = final_record is not None and dep in final_record.unreceived
            if is_credit:
                if dep not in unreceived:
                    raise Rejection(
                        RejectCode.CREDIT_ALREADY_RECEIVED, f"credit {dep.hex()} reused"
                    )
                spendable += unreceived[dep]
                received.append(dep)
            elif (dep_op is None or dep in self._final.applied) and not self._is_claim(dep):
                # A final dep is only useful as a credit to receive or a claim to endorse or
                # revoke; anything else says nothing and would be unresolvable on a node
                # restored from a snapshot, so it is refused everywhere alike.
                raise Rejection(
                    RejectCode.DEP_FINAL_UNUSABLE, f"final dep {dep.hex()} is not usable"
                )
        return spendable, received

    def _is_claim(self, op_id: bytes) -> bool:
        op = self._known.get(op_id)
        if op is not None:
            return op.kind is Kind.HANDLE_CLAIM
        return op_id in self._live.state.claims

    def _apply(self, op: Op, checked: Checked) -> None:
        live = self._live
        state = live.state
        author = op.author
        op_id = op.op_id
        live.applied.add(op_id)
        live.checked[op_id] = checked
        conflicts = live.conflicts
        for key in conflict_keys(op):
            conflicts[key] = op_id
        account = state.account(author)
        account.seq = op.seq
        account.head = op.op_id
        account.spendable = checked.spendable_after
        account.window_basis = checked.window_basis
        account.window_grants = checked.window_grants
        for credit_id in checked.received:
            account.remove_unreceived(credit_id)
        kind = op.kind
        if kind is Kind.TRANSFER:
            account.balance -= op.amount
            recipient = state.account(op.to)
            recipient.balance += op.amount
            recipient.add_unreceived(op.op_id, op.amount)
            if not self._replaying:  # (a replay's events are dropped: do not build them)
                self._emit(CreditReceived(op.to, op.amount, op.op_id, author))
        elif kind is Kind.GRANT:
            recipient = state.account(op.to)
            recipient.balance += op.amount
            recipient.add_unreceived(op.op_id, op.amount)
            recipient.granted = True
            state.add_granted(op.amount)
            if not self._replaying:
                self._emit(CreditReceived(op.to, op.amount, op.op_id, author))
        elif kind is Kind.BURN:
            account.balance -= op.amount
            total = state.add_burn(op.fields["target"], op.amount)
            self._emit(HypeBurned(op.fields["target"], op.amount, total, op.op_id))
        else:
            self._apply_other(op)
        self.stats.accepted += 1
        if not self._replaying:
            self._emit(OpAccepted(op.op_id, kind, author, op.seq))

    def _apply_other(self, op: Op) -> None:
        """Apply a handle op or a mode vote (after the chain and credit bookkeeping)."""
        live = self._live
        kind = op.kind
        if kind is Kind.HANDLE_CLAIM:
            handles.apply_claim(live, op)
            return
        if kind is Kind.HANDLE_ENDORSE:
            depth, _ = self._canonical_key(op.op_id)
            key = handles.endorsement_key(self.final_height, depth, op.op_id)
            events = handles.apply_endorse(live, op, key, self.quorum)
        elif kind is Kind.HANDLE_REVOKE:
            events = handles.apply_revoke(live, op, self.quorum)
        else:
            self._apply_mode_vote(op)
            return
        for event in events:
            self._emit(event)

    def _apply_mode_vote(self, op: Op) -> None:
        state = self._live.state
        if op.kind is Kind.COUNCIL_PAUSE_CLAIMS or op.kind is Kind.COUNCIL_RESUME_CLAIMS:
            was_paused = state.claims_paused(self.quorum)
            state.set_claims_vote(op.author, op.kind is Kind.COUNCIL_PAUSE_CLAIMS)
            if state.claims_paused(self.quorum) != was_paused:
                self._emit(ClaimsModeChanged(not was_paused))
            return
        state.set_mode_vote(op.author, op.kind is Kind.COUNCIL_QUIESCE)
        quiesced = sum(state.mode_votes.values()) >= self.quorum
        if quiesced != state.quiesced:
            state.set_quiesced(quiesced)
            self._emit(CouncilModeChanged(quiesced))
