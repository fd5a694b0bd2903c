"""The validation pipeline and the deterministic ledger (sans-I/O).

Pipeline: decode -> shape -> signature -> chain position -> deps -> rules -> apply. Every
rejection is an `Outcome` with a stable code (docs/PROTOCOL.md lists them) and an `OpRejected`
event; nothing raises out of `receive_op`.

Determinism. The state is a function of the set of valid ops, whatever their arrival order:

- An op's validity depends only on its causal past (prev, deps and, through them, their pasts),
  so checking it when all its parents are applied gives the same answer on every node.
- Two valid ops can still exclude each other: a fork (same author and seq) or two grants to
  one account. Each such op holds a *conflict key*; among the contenders for one key, the op
  with the smallest canonical key (causal depth, op id) wins, and the loser and everything that
  depends on it are *excluded* (kept, reported as rejected with a reason, never applied).
- Incrementally, a newcomer that would lose is excluded at once. A newcomer that would win
  over an applied op means arrival order disagreed with canonical order: the ledger then
  re-derives the state by replaying every known op in canonical order ("rederive"). Forks are
  rare (only a misbehaving author makes them), so the replay is rare.
- Handle bindings are a pure function of the endorsement and revocation sets (the first claim
  by canonical order to gather a quorum of endorsements, not revoked by a quorum), so they need
  no replay.

Credits are received explicitly: an op that lists a grant or transfer *to its author* in its
deps adds that amount to the author's spendable credits (once per credit: the account keeps
the set of credits it has not received yet). Spending (transfer, burn) may not exceed
spendable credits, so validity needs only the author's own chain and its deps. Balances count
every applied credit, so `sum(balances) == granted - burned` always holds and
`0 <= spendable <= balance`.

Restored state. What validation reads about the past lives in the state (account records with
unreceived credit amounts, claims, mode votes), all of it under the state root, so a ledger
built by `Ledger.restore_final` from a snapshot validates later ops like a replayed one: a
parent it never saw counts as applied when the final state shows it (the author's final head
as prev, an unreceived credit to the author, a claim). Causal depth counts from the last final
checkpoint (final parents are depth 0) and is re-counted at every finalization, so canonical
keys agree between nodes that replayed everything and nodes that restored
(docs/PROTOCOL.md section 5).
"""

from __future__ import annotations

from ..codes import RejectCode, final_code
from ..errors import BadSignatureError, LocalProtocolError, RemoteProtocolError
from ..genesis import Genesis
from ..ops import Op, decode_op, op_id_of, verify_op
from .arbitration import conflict_code
from .base import LedgerConfig
from .cuts import _Cuts
from .events import LedgerEvent, OpEvicted, OpPending, Outcome
from .pending import MissingKey
from .rules import Rejection
from .state import Derivation, LedgerState


class Ledger(_Cuts):
    """The deterministic ledger of one network. Feed it ops; read state and events.

    Its layers live in the modules of this package (see base.py); this one holds the pipeline
    (admission, pending ops) and what callers read.
    """

    @classmethod
    def restore_final(
        cls,
        genesis: Genesis,
        state: LedgerState,
        height: int,
        config: LedgerConfig | None = None,
        *,
        owned: bool = False,
    ) -> Ledger:
        """A ledger continuing from `state`, the final state at checkpoint `height` (rebuilt
        from a snapshot whose root the caller checked against the checkpoint's).

        The final ops themselves are unknown here; later ops that name them are admitted from
        the state alone (see `_is_state_final`). `state` is copied, not aliased, unless the
        caller hands it over (`owned`: a state just rebuilt from a snapshot, which nothing
        else holds; copying a million accounts would cost seconds and twice the memory).
        """
        if height < 0:
            raise LocalProtocolError(f"restore height {height} is negative")
        ledger = cls(genesis, config)
        ledger._final = Derivation.around(state if owned else state.copy())
        ledger._live = ledger._final.over(ledger.stats.work)
        ledger.final_height = height
        return ledger

    # --- the pipeline ----------------------------------------------------------------------

    def receive_op(self, envelope: bytes, now: float) -> Outcome:
        """Run the whole pipeline on one envelope (decode, verify, then `receive_verified`).

        A duplicate is answered from the envelope's hash before decoding: gossip brings most
        ops to a node several times. An undecodable envelope is never remembered by id (see
        `_reject_undecodable`), so answering by id first changes no outcome. An op at or below
        its author's final seq whose final op left memory with its height is answered
        "duplicate" (detail `final_line`) before its signature is checked: it is that final op
        or a fork of it, and either way it can never apply (`_final_line_unheld`).
        """
        op_id = None
        if isinstance(envelope, bytes):
            op_id = op_id_of(envelope)
            if self._seen(op_id):
                return self._duplicate(op_id)
        try:
            op = decode_op(envelope, op_id)
        except RemoteProtocolError as exc:
            return self._reject_undecodable(envelope, exc)
        if self._final_line_unheld(op):
            return self._below_final_line_outcome(op.op_id)
        self.stats.verified += 1
        try:
            verify_op(op, self.network_id)
        except BadSignatureError as exc:
            # Not remembered by id: another copy with a valid signature has a different id
            # anyway (the id covers the signature), and forged ids must not fill the memory.
            return self._emit_rejection(op.op_id, exc.code, exc.message, remember=False)
        return self._admit_new(op, now)

    def receive_verified(self, op: Op, now: float) -> Outcome:
        """Admit an op whose signature was already verified (e.g. on a worker thread)."""
        if self._seen(op.op_id):
            return self._duplicate(op.op_id)
        if self._final_line_unheld(op):
            return self._below_final_line_outcome(op.op_id)
        return self._admit_new(op, now)

    def _admit_new(self, op: Op, now: float) -> Outcome:
        """Admit a verified op not seen before, then whatever waited for it."""
        outcome = self._admit(op, now)
        if self.pending and _releases_waiters(outcome):  # nothing waits when nothing is pending
            self._release_waiters(op.op_id, now)
        return outcome

    def expire_pending(self, now: float) -> int:
        """Drop pending ops older than the TTL; returns how many expired."""
        expired = self.pending.expire(now)
        for op in expired:
            self._emit(OpEvicted(op.op_id, RejectCode.PENDING_EXPIRED))
        self.stats.evicted += len(expired)
        return len(expired)

    def drop_pending(self, op_ids: list[bytes]) -> int:
        """Expire these pending ops now (a restart found their TTL ran out while the node was
        down: their TTL counts from when they were first received, not from the restart);
        returns how many were pending."""
        dropped = 0
        for op_id in op_ids:
            if self.pending.discard(op_id):
                self._emit(OpEvicted(op_id, RejectCode.PENDING_EXPIRED))
                dropped += 1
        self.stats.evicted += dropped
        return dropped

    def next_event(self) -> LedgerEvent | None:
        return self._events.popleft() if self._events else None

    def drain_events(self) -> list[LedgerEvent]:
        events = list(self._events)
        self._events.clear()
        return events

    # --- reading ---------------------------------------------------------------------------

    @property
    def state(self) -> LedgerState:
        """The provisional state: the last final state plus every applied op above it."""
        return self._live.state

    @property
    def final_state(self) -> LedgerState:
        return self._final.state

    def is_final(self, op_id: bytes) -> bool:
        """Whether `op_id` is final among the ops of the newest `config.final_bodies_heights`
        heights (the ids whose bodies `op` holds). An older final id is not held (issue 13:
        final ids do not grow with history): the shell's store answers for it, and
        `below_final_line` says whether an op body is at or below its author's final seq."""
        return op_id in self._final.applied

    def below_final_line(self, op: Op) -> bool:
        """Whether `op` is at or below its author's final seq: final already, or a fork that
        can never apply (what the shell checks an op read from its store against)."""
        return self._below_final_seq(op)

    def state_root(self) -> bytes:
        return self._live.state.root()

    def balance(self, account: bytes) -> int:
        return self._live.state.balance(account)

    def spendable(self, account: bytes) -> int:
        record = self._live.state.accounts.get(account)
        return record.spendable if record else 0

    def op(self, op_id: bytes) -> Op | None:
        """The op, if its body is in memory: applied or excluded and not final, or final in
        the newest `config.final_bodies_heights` heights (older ones: the shell's store)."""
        return self._known.get(op_id)

    def bodies_held(self) -> int:
        """How many op bodies the ledger holds (pending ones aside): bounded by the non-final
        ops plus the final ops of the newest `config.final_bodies_heights` heights."""
        return len(self._known)

    def status_of(self, op_id: bytes) -> tuple[str, str]:
        """(status, code) of an op id: applied, excluded, pending, rejected or unknown."""
        if op_id in self._live.applied:
            return ("applied", "")
        if op_id in self._live.excluded:
            return ("excluded", str(self._live.excluded[op_id]))
        if op_id in self.pending:
            return ("pending", "")
        if op_id in self._rejected:
            return ("rejected", self._rejected[op_id])
        return ("unknown", "")

    def applied_ids(self) -> list[bytes]:
        """The applied ids held: the provisional ones and the final ones of the newest
        `config.final_bodies_heights` heights (see `is_final`)."""
        return list(self._live.applied)

    def applied_count(self) -> int:
        """How many ops are applied (final or provisional), including the final ids no longer
        held: O(1), for status and metrics."""
        return len(self._live.applied) + self._final_dropped

    def bookkeeping_counts(self) -> dict[str, int]:
        """How many entries the per-op bookkeeping holds (depths, conflict keys, check
        results, excluded ids): tests assert it is bounded by the non-final ops."""
        return {
            "depths": len(self._depth) + len(self._last_cut_depth),
            "final_conflict_keys": len(self._final.conflicts),
            "live_conflict_keys": len(self._live.conflicts),
            "checked": len(self._live.checked),
            "excluded": len(self._live.excluded),
            "final_ids": len(self._final.applied),
            "final_lines": len(self._final_lines or ()),
        }

    def unresolved_forks(self) -> int:
        """Forks neither side of which is final yet: the (author, seq) pairs where a non-final
        op was excluded because another non-final op holds that seq (once one side is final
        the other is rejected and leaves the count). O(excluded ops), for status and metrics."""
        forks = set()
        final = self._final.applied
        for op_id in self._live.excluded:
            op = self._known.get(op_id)
            if op is None or self._below_final_seq(op):  # its seq is final: resolved
                continue
            holder = self._live.conflicts.get(("seq", op.author, op.seq))
            if holder is not None and holder != op_id and holder not in final:
                forks.add((op.author, op.seq))
        return len(forks)

    def known_ops(self) -> list[Op]:
        """The ops that passed the pipeline (applied or excluded) whose bodies are held (see
        `op`), in arrival order."""
        return list(self._known.values())

    def handle_owner(self, handle: str) -> bytes | None:
        binding = self._live.state.bindings.get(handle)
        return binding.owner if binding else None

    def check_invariants(self) -> None:
        """Raise AssertionError if a ledger invariant is broken (tests and the simulator).

        Seqs are checked for the non-final ops (each author's applied non-final seqs follow
        its final seq without a gap); the final ones were checked when they were applied."""
        state = self._live.state
        assert state.total_balances() == state.granted - state.burned, "supply invariant"
        assert all(account.balance >= 0 for account in state.accounts.values()), "negative"
        seqs: dict[bytes, list[int]] = {}
        for op_id in self._non_final_applied():
            op = self._known[op_id]
            seqs.setdefault(op.author, []).append(op.seq)
        for account in state.accounts.values():
            assert 0 <= account.spendable <= account.balance, "spendable within balance"
        final_accounts = self._final.state.accounts
        for author, author_seqs in seqs.items():
            final_account = final_accounts.get(author)
            base = final_account.seq if final_account is not None else 0
            expected = list(range(base + 1, base + len(author_seqs) + 1))
            assert sorted(author_seqs) == expected, "seq gap"
            assert state.accounts[author].seq == base + len(author_seqs), "head seq"

    def _non_final_applied(self) -> list[bytes]:
        return list(self._non_final_view())

    # --- a frozen final version (snapshots built on another thread) --------------------------

    def freeze_final(self) -> LedgerState | None:
        """The final state as it is now, frozen for a reader on another thread (a snapshot
        build) until `thaw_final(state)`: from now on checkpoints are merged into a layer over
        it (an overlay, O(1) to make) and nothing writes the frozen state, so no O(accounts)
        copy is made. None while a frozen version is still being read (one at a time)."""
        if self._frozen is not None:
            return None
        frozen = self._final.state
        layer = LedgerState.over(frozen, self.stats.work)
        self._final.state = layer
        self._live.state.rebase(layer)
        self._forget_cuts()  # remembered cut derivations read the frozen state directly
        self._frozen = frozen
        return frozen

    def thaw_final(self, state: LedgerState) -> bool:
        """The reader of `state` (from `freeze_final`) is done: the layer's checkpoints are
        written back into it (O(records they wrote)) and it is the final state again. False
        when `state` is not this ledger's frozen version."""
        if self._frozen is None or self._frozen is not state:
            return False
        whole = self._final.state.merge()
        self._final.state = whole
        self._live.state.rebase(whole)
        self._forget_cuts()
        self._frozen = None
        return True

    # --- admission -------------------------------------------------------------------------

    def _seen(self, op_id: bytes) -> bool:
        return (
            op_id in self._known
            or op_id in self._final.applied  # final in the window (held like its body)
            or op_id in self.pending
            or op_id in self._rejected
        )

    def _below_final_line_outcome(self, op_id: bytes) -> Outcome:
        """See `receive_op`: not admitted, remembered, relayed or logged (no event of its
        own). Ops parked on it can never apply (a final op the state does not name is no
        usable parent, a fork none at all), so they are rejected as for a rejected parent."""
        self.stats.duplicate += 1
        self.stats.below_final_line += 1
        self._reject_waiters(op_id)
        return Outcome(op_id, "duplicate", "", FINAL_LINE_DETAIL)

    def _duplicate(self, op_id: bytes) -> Outcome:
        self.stats.duplicate += 1
        status, code = self.status_of(op_id)
        return Outcome(op_id, "duplicate", code, status)

    def _admit(self, op: Op, now: float) -> Outcome:
        if self._described_final(op):
            # A final op this node never saw (it restored a snapshot). The state names its id,
            # so it is that op: hold it as final, and answer "duplicate" as a node that had it
            # all along does.
            self._known[op.op_id] = op
            self._hold_final_bodies(self.final_height, [op.op_id])
            self._depth[op.op_id] = 0
            self._final.applied.add(op.op_id)
            self._live.applied.add(op.op_id)
            self.stats.duplicate += 1
            return Outcome(op.op_id, "duplicate", "", _FINAL_DETAIL)
        missing: set[MissingKey] = set()
        excluded_parent = b""
        applied = self._live.applied
        for parent in op.parents:
            if parent in applied or self._is_state_final(op, parent):  # _parent_applied
                continue
            if parent in self._live.excluded:
                excluded_parent = parent
            elif parent in self._rejected:
                code = RejectCode.PREV_REJECTED if parent == op.prev else RejectCode.DEP_REJECTED
                return self._emit_rejection(op.op_id, code, f"parent {parent.hex()} rejected")
            else:
                missing.add(parent)
        if op.basis > self.final_height:
            missing.add(op.basis)
        if missing and self._below_final_seq(op):
            # It can never apply (its seq is final), so waiting for its parents is pointless;
            # on a restored node they may be final ops that never arrive.
            return self._emit_rejection(
                op.op_id, RejectCode.FORK_LOST_FINAL, "seq at or below the final head"
            )
        if missing:
            return self._park(op, missing, now)
        self._known[op.op_id] = op
        self._depth[op.op_id] = self._depth_of(op)
        if excluded_parent:
            return self._exclude(op.op_id, RejectCode.DEPENDS_ON_EXCLUDED)
        try:
            self._check_chain_position(op)
        except Rejection as rejection:
            del self._known[op.op_id], self._depth[op.op_id]
            return self._emit_rejection(op.op_id, rejection.code, rejection.detail)
        loser = self._conflict_winner_check(op)
        if loser == "final":
            del self._known[op.op_id], self._depth[op.op_id]
            return self._emit_rejection(op.op_id, final_code(conflict_code(op)), "final conflict")
        if loser == "newcomer":
            return self._exclude(op.op_id, conflict_code(op))
        if loser == "holder":
            self._rederive()
            status, now_code = self.status_of(op.op_id)
            accepted = status == "applied"
            return Outcome(op.op_id, "accepted" if accepted else "excluded", now_code)
        return self._apply_checked(op)

    def _park(self, op: Op, missing: set[MissingKey], now: float) -> Outcome:
        for evicted in self.pending.add(op, missing, now):
            self.stats.evicted += 1
            self._emit(OpEvicted(evicted.op_id, RejectCode.PENDING_EVICTED))
        self._emit(OpPending(op.op_id, tuple(sorted(missing, key=_missing_sort_key))))
        return Outcome(op.op_id, "pending")

    def _apply_checked(self, op: Op) -> Outcome:
        try:
            checked = self._check_rules(op)
        except Rejection as rejection:
            del self._known[op.op_id], self._depth[op.op_id]
            return self._emit_rejection(op.op_id, rejection.code, rejection.detail)
        self._apply(op, checked)
        return Outcome(op.op_id, "accepted")

    def _release_waiters(self, op_id: bytes, now: float) -> None:
        """Admit every pending op that waited only for `op_id`, transitively (a worklist, not
        recursion, so long chains cannot overflow the stack)."""
        work = [op_id]
        while work:
            arrived = work.pop()
            for ready in self.pending.resolve(arrived):
                outcome = self._admit(ready, now)
                if _releases_waiters(outcome):
                    work.append(ready.op_id)


#: The detail of a "duplicate" outcome for a final op a restored ledger meets for the first time.
_FINAL_DETAIL = "final"
#: The detail of a "duplicate" outcome for an op at or below its author's final seq whose final
#: op is no longer held (older than `config.final_bodies_heights`): the final op or a fork of it.
FINAL_LINE_DETAIL = "final_line"


def _releases_waiters(outcome: Outcome) -> bool:
    """Whether ops waiting for this one may now be admitted."""
    return outcome.status in ("accepted", "excluded") or (
        outcome.status == "duplicate" and outcome.detail == _FINAL_DETAIL
    )


def _missing_sort_key(key: MissingKey) -> tuple[int, bytes]:
    return (0, key) if isinstance(key, bytes) else (1, key.to_bytes(8, "big"))
