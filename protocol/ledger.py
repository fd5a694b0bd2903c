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
`0 <= spendable <= balance`. Everything validation needs lives in the account records, so a
state restored from a snapshot validates future ops exactly like a replayed one.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Literal

from . import limits
from .errors import BadSignatureError, RemoteProtocolError
from .genesis import Genesis
from .ledger_state import Claim, LedgerState
from .ops import Kind, Op, decode_op, op_id_of, verify_op
from .pending import MissingKey, PendingPool

# --- results and events --------------------------------------------------------------------

Status = Literal["accepted", "pending", "duplicate", "rejected", "excluded"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one submitted op. `code` is empty unless rejected or excluded."""

    op_id: bytes
    status: Status
    code: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class OpAccepted:
    op_id: bytes
    kind: Kind
    author: bytes
    seq: int


@dataclass(frozen=True, slots=True)
class OpPending:
    op_id: bytes
    missing: tuple[MissingKey, ...]


@dataclass(frozen=True, slots=True)
class OpRejected:
    op_id: bytes
    code: str
    detail: str


@dataclass(frozen=True, slots=True)
class OpExcluded:
    """A valid op lost a conflict (or depends on a loser); it may win again after finality."""

    op_id: bytes
    code: str


@dataclass(frozen=True, slots=True)
class OpEvicted:
    op_id: bytes
    code: str  # "pending_evicted" or "pending_expired"


@dataclass(frozen=True, slots=True)
class CreditReceived:
    account: bytes
    amount: int
    op_id: bytes
    sender: bytes  # the granting council member or the paying account


@dataclass(frozen=True, slots=True)
class HypeBurned:
    target: str
    amount: int
    total: int
    op_id: bytes


@dataclass(frozen=True, slots=True)
class HandleBound:
    handle: str
    owner: bytes
    claim_id: bytes


@dataclass(frozen=True, slots=True)
class HandleUnbound:
    handle: str
    claim_id: bytes


@dataclass(frozen=True, slots=True)
class HandleConflictRaised:
    handle: str
    losing_claim: bytes
    winning_claim: bytes


@dataclass(frozen=True, slots=True)
class CouncilModeChanged:
    quiesced: bool


@dataclass(frozen=True, slots=True)
class StateRederived:
    applied: int
    excluded: int


LedgerEvent = (
    OpAccepted
    | OpPending
    | OpRejected
    | OpExcluded
    | OpEvicted
    | CreditReceived
    | HypeBurned
    | HandleBound
    | HandleUnbound
    | HandleConflictRaised
    | CouncilModeChanged
    | StateRederived
)


@dataclass(frozen=True)
class LedgerConfig:
    pending_ops_max: int = limits.PENDING_OPS_MAX
    pending_ops_per_author_max: int = limits.PENDING_OPS_PER_AUTHOR_MAX
    pending_op_ttl_s: float = limits.PENDING_OP_TTL_S
    rejected_ids_remembered_max: int = limits.REJECTED_IDS_REMEMBERED_MAX
    #: Events waiting for the caller; the oldest are dropped (and counted) beyond this.
    events_max: int = 1_000_000


class _Rejection(Exception):
    """Internal: a rule failed. Carries the stable code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(slots=True)
class _Checked:
    """What the rules computed for an op about to be applied."""

    spendable_after: int
    window_basis: int
    window_grants: int
    received: tuple[bytes, ...]


@dataclass
class LedgerStats:
    accepted: int = 0
    pending: int = 0
    duplicate: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    excluded: int = 0
    evicted: int = 0
    rederivations: int = 0
    events_dropped: int = 0


CanonicalKey = tuple[int, bytes]
ConflictKey = tuple[str, bytes, int]


class Ledger:
    """The deterministic ledger of one network. Feed it ops; read state and events."""

    def __init__(self, genesis: Genesis, config: LedgerConfig | None = None) -> None:
        self.genesis = genesis
        self.network_id = genesis.network_id
        self.config = config or LedgerConfig()
        self.council = frozenset(genesis.council)
        self.quorum = genesis.quorum
        self.final_height = 0
        self.state = LedgerState()
        self.stats = LedgerStats()
        self.pending = PendingPool(
            ops_max=self.config.pending_ops_max,
            per_author_max=self.config.pending_ops_per_author_max,
            ttl_s=self.config.pending_op_ttl_s,
        )
        self._final_state = LedgerState()
        self._known: dict[bytes, Op] = {}  # applied or excluded, in arrival order
        self._depth: dict[bytes, int] = {}
        self._applied: set[bytes] = set()
        self._excluded: dict[bytes, str] = {}
        self._conflicts: dict[ConflictKey, bytes] = {}
        self._endorsement_keys: dict[bytes, list[CanonicalKey]] = {}
        self._claims_by_handle: dict[str, list[bytes]] = {}
        self._revokes: dict[bytes, set[bytes]] = {}
        self._rejected: OrderedDict[bytes, str] = OrderedDict()
        self._events: deque[LedgerEvent] = deque()
        self._replaying = False

    # --- the pipeline ----------------------------------------------------------------------

    def receive_op(self, envelope: bytes, now: float) -> Outcome:
        """Run the whole pipeline on one envelope (decode, verify, then `receive_verified`)."""
        try:
            op = decode_op(envelope)
        except RemoteProtocolError as exc:
            return self._reject_undecodable(envelope, exc)
        if self._seen(op.op_id):
            return self._duplicate(op.op_id)
        try:
            verify_op(op, self.network_id)
        except BadSignatureError as exc:
            # Not remembered by id: another copy with a valid signature has a different id
            # anyway (the id covers the signature), and forged ids must not fill the memory.
            return self._emit_rejection(op.op_id, exc.code, exc.message, remember=False)
        return self.receive_verified(op, now)

    def receive_verified(self, op: Op, now: float) -> Outcome:
        """Admit an op whose signature was already verified (e.g. on a worker thread)."""
        if self._seen(op.op_id):
            return self._duplicate(op.op_id)
        outcome = self._admit(op, now)
        if outcome.status in ("accepted", "excluded"):
            self._release_waiters(op.op_id, now)
        return outcome

    def expire_pending(self, now: float) -> int:
        """Drop pending ops older than the TTL; returns how many expired."""
        expired = self.pending.expire(now)
        for op in expired:
            self._emit(OpEvicted(op.op_id, "pending_expired"))
        self.stats.evicted += len(expired)
        return len(expired)

    def next_event(self) -> LedgerEvent | None:
        return self._events.popleft() if self._events else None

    def drain_events(self) -> list[LedgerEvent]:
        events = list(self._events)
        self._events.clear()
        return events

    # --- reading ---------------------------------------------------------------------------

    def state_root(self) -> bytes:
        return self.state.root()

    def balance(self, account: bytes) -> int:
        return self.state.balance(account)

    def spendable(self, account: bytes) -> int:
        record = self.state.accounts.get(account)
        return record.spendable if record else 0

    def op(self, op_id: bytes) -> Op | None:
        return self._known.get(op_id)

    def status_of(self, op_id: bytes) -> tuple[str, str]:
        """(status, code) of an op id: applied, excluded, pending, rejected or unknown."""
        if op_id in self._applied:
            return ("applied", "")
        if op_id in self._excluded:
            return ("excluded", self._excluded[op_id])
        if op_id in self.pending:
            return ("pending", "")
        if op_id in self._rejected:
            return ("rejected", self._rejected[op_id])
        return ("unknown", "")

    def applied_ids(self) -> list[bytes]:
        return list(self._applied)

    def known_ops(self) -> list[Op]:
        """Every op that passed the pipeline (applied or excluded), in arrival order."""
        return list(self._known.values())

    def handle_owner(self, handle: str) -> bytes | None:
        binding = self.state.bindings.get(handle)
        return binding.owner if binding else None

    def check_invariants(self) -> None:
        """Raise AssertionError if a ledger invariant is broken (tests and the simulator)."""
        state = self.state
        assert state.total_balances() == state.granted - state.burned, "supply invariant"
        assert all(account.balance >= 0 for account in state.accounts.values()), "negative"
        seqs: dict[bytes, list[int]] = {}
        for op_id in self._applied:
            op = self._known[op_id]
            seqs.setdefault(op.author, []).append(op.seq)
        for account in state.accounts.values():
            assert 0 <= account.spendable <= account.balance, "spendable within balance"
        for author, author_seqs in seqs.items():
            assert sorted(author_seqs) == list(range(1, len(author_seqs) + 1)), "seq gap"
            assert state.accounts[author].seq == len(author_seqs), "head seq"

    # --- admission -------------------------------------------------------------------------

    def _seen(self, op_id: bytes) -> bool:
        return op_id in self._known or op_id in self.pending or op_id in self._rejected

    def _duplicate(self, op_id: bytes) -> Outcome:
        self.stats.duplicate += 1
        status, code = self.status_of(op_id)
        return Outcome(op_id, "duplicate", code, status)

    def _admit(self, op: Op, now: float) -> Outcome:
        missing: set[MissingKey] = set()
        excluded_parent = b""
        for parent in op.parents:
            if parent in self._applied:
                continue
            if parent in self._excluded:
                excluded_parent = parent
            elif parent in self._rejected:
                code = "prev_rejected" if parent == op.prev else "dep_rejected"
                return self._emit_rejection(op.op_id, code, f"parent {parent.hex()} rejected")
            else:
                missing.add(parent)
        if op.basis > self.final_height:
            missing.add(op.basis)
        if missing:
            return self._park(op, missing, now)
        self._known[op.op_id] = op
        self._depth[op.op_id] = 1 + max((self._depth[p] for p in op.parents), default=0)
        if excluded_parent:
            return self._exclude(op.op_id, "depends_on_excluded")
        try:
            self._check_chain_position(op)
        except _Rejection as rejection:
            del self._known[op.op_id], self._depth[op.op_id]
            return self._emit_rejection(op.op_id, rejection.code, rejection.detail)
        loser = self._conflict_winner_check(op)
        if loser == "newcomer":
            return self._exclude(op.op_id, _conflict_code(op))
        if loser == "holder":
            self._rederive()
            status, code = self.status_of(op.op_id)
            return Outcome(op.op_id, "accepted" if status == "applied" else "excluded", code)
        return self._apply_checked(op)

    def _park(self, op: Op, missing: set[MissingKey], now: float) -> Outcome:
        for evicted in self.pending.add(op, missing, now):
            self.stats.evicted += 1
            self._emit(OpEvicted(evicted.op_id, "pending_evicted"))
        self.stats.pending += 1
        self._emit(OpPending(op.op_id, tuple(sorted(missing, key=_missing_sort_key))))
        return Outcome(op.op_id, "pending")

    def _apply_checked(self, op: Op) -> Outcome:
        try:
            checked = self._check_rules(op)
        except _Rejection as rejection:
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
                self.stats.pending -= 1
                outcome = self._admit(ready, now)
                if outcome.status in ("accepted", "excluded"):
                    work.append(ready.op_id)

    # --- rules -----------------------------------------------------------------------------

    def _check_chain_position(self, op: Op) -> None:
        if op.seq == 1:
            return
        prev = self._known[op.prev]
        if prev.author != op.author or prev.seq != op.seq - 1:
            raise _Rejection("bad_prev", "prev is not the author's op at seq - 1")
        if op.basis < prev.basis:
            raise _Rejection("basis_regressed", "basis is older than the previous op's basis")

    def _conflict_keys(self, op: Op) -> list[ConflictKey]:
        keys: list[ConflictKey] = [("seq", op.author, op.seq)]
        if op.kind is Kind.GRANT:
            keys.append(("grant", op.to, 0))
        return keys

    def _canonical_key(self, op_id: bytes) -> CanonicalKey:
        return (self._depth[op_id], op_id)

    def _conflict_winner_check(self, op: Op) -> Literal["none", "newcomer", "holder"]:
        """Which side loses if `op` contends for a conflict key that is already held."""
        verdict: Literal["none", "newcomer", "holder"] = "none"
        for key in self._conflict_keys(op):
            holder = self._conflicts.get(key)
            if holder is None or holder == op.op_id:
                continue
            if self._canonical_key(op.op_id) > self._canonical_key(holder):
                return "newcomer"
            verdict = "holder"
        return verdict

    def _check_rules(self, op: Op) -> _Checked:
        """Check the kind's rules against the causal past; return what applying needs.

        The chain-position and conflict checks passed, so `op` extends its author's head and
        the author's account record is exactly the state after `op.prev`.
        """
        author = op.author
        record = self.state.accounts.get(author)
        spendable = record.spendable if record else 0
        unreceived = record.unreceived if record else set()
        received: list[bytes] = []
        for dep in op.deps:
            dep_op = self._known[dep]
            if dep_op.kind in _CREDIT_KINDS and dep_op.to == author:
                if dep not in unreceived:
                    raise _Rejection("credit_already_received", f"credit {dep.hex()} reused")
                spendable += dep_op.amount
                received.append(dep)
        window_basis = op.basis
        window_grants = record.window_grants if record and record.window_basis == op.basis else 0
        kind = op.kind
        if kind is Kind.TRANSFER or kind is Kind.BURN:
            if kind is Kind.TRANSFER and op.to == author:
                raise _Rejection("self_transfer", "a transfer to oneself moves nothing")
            if op.amount > spendable:
                raise _Rejection("insufficient_funds", f"spends {op.amount}, spendable {spendable}")
            spendable -= op.amount
        elif kind is Kind.GRANT:
            self._require_council(op)
            if op.amount != self.genesis.signup_reward:
                raise _Rejection("bad_grant_amount", "a grant is exactly the signup reward")
            window_grants += 1
            if window_grants > self.genesis.grants_per_member_per_window:
                raise _Rejection("grant_cap_exceeded", "member's grant cap for this window")
        elif kind is Kind.HANDLE_ENDORSE:
            self._check_endorse(op)
        elif kind is Kind.HANDLE_REVOKE:
            self._check_revoke(op)
        elif kind is Kind.COUNCIL_QUIESCE or kind is Kind.COUNCIL_RESUME:
            self._require_council(op)
        return _Checked(spendable, window_basis, window_grants, tuple(received))

    def _require_council(self, op: Op) -> None:
        if op.author not in self.council:
            raise _Rejection("not_council", f"{op.kind.label} needs a council member")

    def _check_endorse(self, op: Op) -> None:
        self._require_council(op)
        claim_id: bytes = op.fields["claim"]
        claim_op = self._known.get(claim_id) if claim_id in op.parents else None
        if claim_op is None or claim_op.kind is not Kind.HANDLE_CLAIM:
            raise _Rejection("endorse_without_claim", "prev or deps must name the claim")
        if op.author in self.state.claims[claim_id].endorsers:
            raise _Rejection("already_endorsed", "this member endorsed this claim already")

    def _check_revoke(self, op: Op) -> None:
        self._require_council(op)
        targets = [
            dep
            for dep in op.parents
            if self._known[dep].kind is Kind.HANDLE_CLAIM
            and self._known[dep].fields["handle"] == op.fields["handle"]
        ]
        if len(targets) != 1:
            raise _Rejection("revoke_without_claim", "deps must include exactly one claim")
        if op.author in self._revokes.get(targets[0], set()):
            raise _Rejection("already_revoked", "this member revoked this claim already")

    # --- applying --------------------------------------------------------------------------

    def _apply(self, op: Op, checked: _Checked) -> None:
        state = self.state
        author = op.author
        self._applied.add(op.op_id)
        for key in self._conflict_keys(op):
            self._conflicts[key] = op.op_id
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
            recipient.add_unreceived(op.op_id)
            self._emit(CreditReceived(op.to, op.amount, op.op_id, author))
        elif kind is Kind.GRANT:
            recipient = state.account(op.to)
            recipient.balance += op.amount
            recipient.add_unreceived(op.op_id)
            state.add_granted(op.amount)
            self._emit(CreditReceived(op.to, op.amount, op.op_id, author))
        elif kind is Kind.BURN:
            account.balance -= op.amount
            total = state.add_burn(op.fields["target"], op.amount)
            self._emit(HypeBurned(op.fields["target"], op.amount, total, op.op_id))
        elif kind is Kind.HANDLE_CLAIM:
            handle = op.fields["handle"]
            state.claims[op.op_id] = Claim(handle, author)
            self._claims_by_handle.setdefault(handle, []).append(op.op_id)
        elif kind is Kind.HANDLE_ENDORSE:
            claim_id = op.fields["claim"]
            state.claims[claim_id].endorsers.add(author)
            keys = self._endorsement_keys.setdefault(claim_id, [])
            keys.append(self._canonical_key(op.op_id))
            keys.sort()
            self._settle_handle(state.claims[claim_id].handle)
        elif kind is Kind.HANDLE_REVOKE:
            claim_id = next(
                parent
                for parent in op.parents
                if self._known[parent].kind is Kind.HANDLE_CLAIM
                and self._known[parent].fields["handle"] == op.fields["handle"]
            )
            self._revokes.setdefault(claim_id, set()).add(author)
            self._settle_handle(op.fields["handle"])
        else:
            self._apply_mode_vote(op)
        self.stats.accepted += 1
        self._emit(OpAccepted(op.op_id, kind, author, op.seq))

    def _apply_mode_vote(self, op: Op) -> None:
        state = self.state
        state.mode_votes[op.author] = op.kind is Kind.COUNCIL_QUIESCE
        quiesced = sum(state.mode_votes.values()) >= self.quorum
        if quiesced != state.quiesced:
            state.set_quiesced(quiesced)
            self._emit(CouncilModeChanged(quiesced))

    def _settle_handle(self, handle: str) -> None:
        """Bind `handle` to its rightful claim: among claims with a quorum of endorsements and
        without a quorum of revocations, the one whose quorum-th endorsement comes first in
        canonical order. A pure function of the applied set, hence order-independent."""
        eligible: list[tuple[CanonicalKey, bytes]] = []
        for claim_id in self._claims_by_handle.get(handle, []):
            keys = self._endorsement_keys.get(claim_id, [])
            if len(keys) >= self.quorum and len(self._revokes.get(claim_id, ())) < self.quorum:
                eligible.append((keys[self.quorum - 1], claim_id))
        eligible.sort()
        binding = self.state.bindings.get(handle)
        winner = eligible[0][1] if eligible else None
        current = binding.claim_id if binding else None
        if winner != current:
            if current is not None:
                self.state.unbind(handle)
                self._emit(HandleUnbound(handle, current))
            if winner is not None:
                owner = self.state.claims[winner].claimant
                self.state.bind(handle, owner, winner)
                self._emit(HandleBound(handle, owner, winner))
        for _, loser in eligible[1:]:
            if winner is not None:
                self._emit(HandleConflictRaised(handle, loser, winner))

    # --- exclusion and re-derivation ---------------------------------------------------------

    def _exclude(self, op_id: bytes, code: str) -> Outcome:
        self._excluded[op_id] = code
        self.stats.excluded += 1
        self._emit(OpExcluded(op_id, code))
        return Outcome(op_id, "excluded", code)

    def _rederive(self) -> None:
        """Replay every known op in canonical order onto the final state."""
        self.stats.rederivations += 1
        before = set(self._applied)
        bindings_before = {h: b.claim_id for h, b in self.state.bindings.items()}
        ordered = sorted(self._known.values(), key=lambda op: self._canonical_key(op.op_id))
        self.state = self._final_state.copy()
        self._applied = set()
        self._excluded = {}
        self._conflicts = {}
        self._endorsement_keys = {}
        self._claims_by_handle = {}
        self._revokes = {}
        self._replaying = True
        try:
            for op in ordered:
                self._replay_one(op)
        finally:
            self._replaying = False
        for op_id in self._applied:
            if op_id not in before:
                op = self._known[op_id]
                self._emit(OpAccepted(op_id, op.kind, op.author, op.seq))
        for op_id, code in self._excluded.items():
            if op_id in before:
                self._emit(OpExcluded(op_id, code))
        bindings_after = {h: b.claim_id for h, b in self.state.bindings.items()}
        for handle in sorted(bindings_before.keys() | bindings_after.keys()):
            old, new = bindings_before.get(handle), bindings_after.get(handle)
            if old != new and old is not None:
                self._emit(HandleUnbound(handle, old))
            if old != new and new is not None:
                self._emit(HandleBound(handle, self.state.bindings[handle].owner, new))
        self._emit(StateRederived(len(self._applied), len(self._excluded)))

    def _replay_one(self, op: Op) -> None:
        if any(parent not in self._applied for parent in op.parents):
            self._excluded[op.op_id] = "depends_on_excluded"
            return
        try:
            self._check_chain_position(op)
            if self._conflict_winner_check(op) != "none":
                self._excluded[op.op_id] = _conflict_code(op)
                return
            checked = self._check_rules(op)
        except _Rejection as rejection:
            del self._known[op.op_id], self._depth[op.op_id]
            self._remember_rejected(op.op_id, rejection.code)
            return
        self._apply(op, checked)

    # --- rejection and events --------------------------------------------------------------

    def _reject_undecodable(self, envelope: bytes, exc: RemoteProtocolError) -> Outcome:
        op_id = op_id_of(envelope) if isinstance(envelope, bytes) else b""
        return self._emit_rejection(op_id, exc.code, exc.message, remember=False)

    def _emit_rejection(
        self, op_id: bytes, code: str, detail: str, *, remember: bool = True
    ) -> Outcome:
        self.stats.rejected[code] = self.stats.rejected.get(code, 0) + 1
        if remember:
            self._remember_rejected(op_id, code)
        self._emit(OpRejected(op_id, code, detail))
        if remember:
            self._reject_waiters(op_id)
        return Outcome(op_id, "rejected", code, detail)

    def _remember_rejected(self, op_id: bytes, code: str) -> None:
        self._rejected[op_id] = code
        while len(self._rejected) > self.config.rejected_ids_remembered_max:
            self._rejected.popitem(last=False)

    def _reject_waiters(self, op_id: bytes) -> None:
        """Ops parked on a rejected parent can never become valid: reject them too."""
        work = [op_id]
        while work:
            parent = work.pop()
            for waiter in self.pending.drop_waiters(parent):
                self.stats.pending -= 1
                code = "prev_rejected" if waiter.prev == parent else "dep_rejected"
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


_CREDIT_KINDS = (Kind.GRANT, Kind.TRANSFER)


def _conflict_code(op: Op) -> str:
    return "grant_conflict_lost" if op.kind is Kind.GRANT else "fork_lost"


def _missing_sort_key(key: MissingKey) -> tuple[int, bytes]:
    return (0, key) if isinstance(key, bytes) else (1, key.to_bytes(8, "big"))
