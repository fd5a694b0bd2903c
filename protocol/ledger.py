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
from .errors import BadSignatureError, LocalProtocolError, RemoteProtocolError
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


class CutInvalidError(RemoteProtocolError):
    """A proposed or received checkpoint cut cannot be final."""

    code = "cut_invalid"


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
class _Derivation:
    """A state plus the indexes that deriving it needs; copied to fork the provisional state
    off the final one, and replaced whole when the state is re-derived."""

    state: LedgerState
    applied: set[bytes]
    excluded: dict[bytes, str]
    conflicts: dict[tuple[str, bytes, int], bytes]
    endorsement_keys: dict[bytes, list[tuple[int, bytes]]]
    claims_by_handle: dict[str, list[bytes]]
    revokes: dict[bytes, set[bytes]]

    @classmethod
    def empty(cls) -> _Derivation:
        return cls(LedgerState(), set(), {}, {}, {}, {}, {})

    def copy(self) -> _Derivation:
        return _Derivation(
            self.state.copy(),
            set(self.applied),
            dict(self.excluded),
            dict(self.conflicts),
            {claim: list(keys) for claim, keys in self.endorsement_keys.items()},
            {handle: list(claims) for handle, claims in self.claims_by_handle.items()},
            {claim: set(members) for claim, members in self.revokes.items()},
        )


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
        self.stats = LedgerStats()
        self.pending = PendingPool(
            ops_max=self.config.pending_ops_max,
            per_author_max=self.config.pending_ops_per_author_max,
            ttl_s=self.config.pending_op_ttl_s,
        )
        #: The derivation at the last final checkpoint, and the live (provisional) one above it.
        self._final = _Derivation.empty()
        self._live = self._final.copy()
        self._known: dict[bytes, Op] = {}  # applied or excluded, in arrival order
        self._depth: dict[bytes, int] = {}
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

    @property
    def state(self) -> LedgerState:
        """The provisional state: the last final state plus every applied op above it."""
        return self._live.state

    @property
    def final_state(self) -> LedgerState:
        return self._final.state

    def is_final(self, op_id: bytes) -> bool:
        return op_id in self._final.applied

    def state_root(self) -> bytes:
        return self._live.state.root()

    def balance(self, account: bytes) -> int:
        return self._live.state.balance(account)

    def spendable(self, account: bytes) -> int:
        record = self._live.state.accounts.get(account)
        return record.spendable if record else 0

    def op(self, op_id: bytes) -> Op | None:
        return self._known.get(op_id)

    def status_of(self, op_id: bytes) -> tuple[str, str]:
        """(status, code) of an op id: applied, excluded, pending, rejected or unknown."""
        if op_id in self._live.applied:
            return ("applied", "")
        if op_id in self._live.excluded:
            return ("excluded", self._live.excluded[op_id])
        if op_id in self.pending:
            return ("pending", "")
        if op_id in self._rejected:
            return ("rejected", self._rejected[op_id])
        return ("unknown", "")

    def applied_ids(self) -> list[bytes]:
        return list(self._live.applied)

    def known_ops(self) -> list[Op]:
        """Every op that passed the pipeline (applied or excluded), in arrival order."""
        return list(self._known.values())

    def handle_owner(self, handle: str) -> bytes | None:
        binding = self._live.state.bindings.get(handle)
        return binding.owner if binding else None

    def check_invariants(self) -> None:
        """Raise AssertionError if a ledger invariant is broken (tests and the simulator)."""
        state = self._live.state
        assert state.total_balances() == state.granted - state.burned, "supply invariant"
        assert all(account.balance >= 0 for account in state.accounts.values()), "negative"
        seqs: dict[bytes, list[int]] = {}
        for op_id in self._live.applied:
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
            if parent in self._live.applied:
                continue
            if parent in self._live.excluded:
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
        if loser == "final":
            del self._known[op.op_id], self._depth[op.op_id]
            return self._emit_rejection(op.op_id, _conflict_code(op) + "_final", "final conflict")
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

    def _conflict_winner_check(self, op: Op) -> Literal["none", "newcomer", "holder", "final"]:
        """Which side loses if `op` contends for a conflict key that is already held.

        "final": the holder is final, so the newcomer can never win (a permanent rejection).
        """
        verdict: Literal["none", "newcomer", "holder", "final"] = "none"
        for key in self._conflict_keys(op):
            holder = self._live.conflicts.get(key)
            if holder is None or holder == op.op_id:
                continue
            if holder in self._final.applied:
                return "final"
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
        record = self._live.state.accounts.get(author)
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
        if op.author in self._live.state.claims[claim_id].endorsers:
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
        if op.author in self._live.revokes.get(targets[0], set()):
            raise _Rejection("already_revoked", "this member revoked this claim already")

    # --- applying --------------------------------------------------------------------------

    def _apply(self, op: Op, checked: _Checked) -> None:
        state = self._live.state
        author = op.author
        self._live.applied.add(op.op_id)
        for key in self._conflict_keys(op):
            self._live.conflicts[key] = op.op_id
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
            self._live.claims_by_handle.setdefault(handle, []).append(op.op_id)
        elif kind is Kind.HANDLE_ENDORSE:
            claim_id = op.fields["claim"]
            state.claims[claim_id].endorsers.add(author)
            keys = self._live.endorsement_keys.setdefault(claim_id, [])
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
            self._live.revokes.setdefault(claim_id, set()).add(author)
            self._settle_handle(op.fields["handle"])
        else:
            self._apply_mode_vote(op)
        self.stats.accepted += 1
        self._emit(OpAccepted(op.op_id, kind, author, op.seq))

    def _apply_mode_vote(self, op: Op) -> None:
        state = self._live.state
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
        for claim_id in self._live.claims_by_handle.get(handle, []):
            keys = self._live.endorsement_keys.get(claim_id, [])
            if len(keys) >= self.quorum and len(self._live.revokes.get(claim_id, ())) < self.quorum:
                eligible.append((keys[self.quorum - 1], claim_id))
        eligible.sort()
        binding = self._live.state.bindings.get(handle)
        winner = eligible[0][1] if eligible else None
        current = binding.claim_id if binding else None
        if winner != current:
            if current is not None:
                self._live.state.unbind(handle)
                self._emit(HandleUnbound(handle, current))
            if winner is not None:
                owner = self._live.state.claims[winner].claimant
                self._live.state.bind(handle, owner, winner)
                self._emit(HandleBound(handle, owner, winner))
        for _, loser in eligible[1:]:
            if winner is not None:
                self._emit(HandleConflictRaised(handle, loser, winner))

    # --- exclusion and re-derivation ---------------------------------------------------------

    def _exclude(self, op_id: bytes, code: str) -> Outcome:
        self._live.excluded[op_id] = code
        self.stats.excluded += 1
        self._emit(OpExcluded(op_id, code))
        return Outcome(op_id, "excluded", code)

    def _rederive(self) -> None:
        """Replay every known op above the final state in canonical order."""
        self.stats.rederivations += 1
        before = set(self._live.applied)
        bindings_before = {h: b.claim_id for h, b in self._live.state.bindings.items()}
        final = self._final.applied
        ordered = sorted(
            (op for op in self._known.values() if op.op_id not in final),
            key=lambda op: self._canonical_key(op.op_id),
        )
        self._live = self._replay(self._final, ordered)
        for op_id in sorted(self._live.applied - before):
            op = self._known[op_id]
            self._emit(OpAccepted(op_id, op.kind, op.author, op.seq))
        for op_id, code in self._live.excluded.items():
            if op_id in before:
                self._emit(OpExcluded(op_id, code))
        bindings_after = {h: b.claim_id for h, b in self._live.state.bindings.items()}
        for handle in sorted(bindings_before.keys() | bindings_after.keys()):
            old, new = bindings_before.get(handle), bindings_after.get(handle)
            if old != new and old is not None:
                self._emit(HandleUnbound(handle, old))
            if old != new and new is not None:
                self._emit(HandleBound(handle, self._live.state.bindings[handle].owner, new))
        self._emit(StateRederived(len(self._live.applied), len(self._live.excluded)))

    def _replay(self, base: _Derivation, ordered: list[Op]) -> _Derivation:
        """A copy of `base` with `ordered` (canonical order) applied; the live derivation is
        untouched (it is swapped out while the replay runs)."""
        live, self._live = self._live, base.copy()
        self._replaying = True
        try:
            for op in ordered:
                self._replay_one(op, strict=False)
            return self._live
        finally:
            self._replaying = False
            self._live = live

    def _replay_one(self, op: Op, *, strict: bool) -> None:
        """Apply `op` during a replay. Outside strict mode a rule failure rejects the op for
        good; in strict mode (checking a proposed cut) it raises, since a cut holding an
        invalid op is itself invalid."""
        if any(parent not in self._live.applied for parent in op.parents):
            self._live.excluded[op.op_id] = "depends_on_excluded"
            return
        try:
            self._check_chain_position(op)
            verdict = self._conflict_winner_check(op)
            if verdict != "none":
                code = _conflict_code(op) + ("_final" if verdict == "final" else "")
                self._live.excluded[op.op_id] = code
                return
            checked = self._check_rules(op)
        except _Rejection as rejection:
            if strict:
                raise
            del self._known[op.op_id], self._depth[op.op_id]
            self._remember_rejected(op.op_id, rejection.code)
            return
        self._apply(op, checked)

    # --- finality ----------------------------------------------------------------------------

    def unfinalized_heads(self) -> list[tuple[bytes, int, bytes]]:
        """(author, seq, head id) of every author whose applied chain moved since the last
        final checkpoint, sorted by author: the heads of the cut this node would propose."""
        final_accounts = self._final.state.accounts
        heads = []
        for author, account in self._live.state.accounts.items():
            final_account = final_accounts.get(author)
            if account.seq > (final_account.seq if final_account else 0):
                heads.append((author, account.seq, account.head))
        heads.sort()
        return heads

    def canonical_order(self, op_ids: list[bytes] | set[bytes]) -> list[bytes]:
        """Known ids sorted parents-first (by causal depth, then id); unknown ids dropped."""
        known = [op_id for op_id in op_ids if op_id in self._depth]
        return sorted(known, key=self._canonical_key)

    def unfinalized_count(self) -> int:
        return len(self._live.applied) - len(self._final.applied)

    def cut_closure(self, heads: list[bytes]) -> tuple[set[bytes], list[bytes]]:
        """The non-final ops a cut with these heads contains, and the ids we lack (if any)."""
        closure: set[bytes] = set()
        missing: list[bytes] = []
        stack = list(heads)
        final = self._final.applied
        while stack:
            op_id = stack.pop()
            if op_id in closure or op_id in final:
                continue
            op = self._known.get(op_id)
            if op is None:
                if op_id not in missing:
                    missing.append(op_id)
                continue
            closure.add(op_id)
            stack.extend(op.parents)
        return closure, missing

    def derive_cut(self, heads: list[tuple[bytes, int, bytes]]) -> tuple[bytes, set[bytes]]:
        """Check a proposed cut whose ops we all hold; returns (state root, closure).

        Raises CutInvalidError when the cut cannot be final (a head that is not the author's op
        at that seq, an op that breaks a rule, a head excluded by a conflict in the cut).
        """
        closure, missing = self.cut_closure([head for _, _, head in heads])
        if missing:
            raise CutInvalidError(f"{len(missing)} ops of the cut are unknown")
        for author, seq, head in heads:
            op = self._known[head]
            if op.author != author or op.seq != seq:
                raise CutInvalidError("a head is not its author's op at that seq")
        live_unfinal = self._live.applied - self._final.applied
        if closure == live_unfinal and not self._live.excluded:
            # The common case: the cut is exactly our provisional state.
            return self._live.state.root(), closure
        ordered = sorted(
            (self._known[op_id] for op_id in closure), key=lambda o: self._canonical_key(o.op_id)
        )
        try:
            derivation = self._replay_strict(ordered)
        except _Rejection as rejection:
            raise CutInvalidError(f"the cut holds an invalid op: {rejection.code}") from None
        if any(head not in derivation.applied for _, _, head in heads):
            raise CutInvalidError("a head of the cut loses a conflict inside the cut")
        return derivation.state.root(), closure

    def _replay_strict(self, ordered: list[Op]) -> _Derivation:
        live, self._live = self._live, self._final.copy()
        self._replaying = True
        try:
            for op in ordered:
                self._replay_one(op, strict=True)
            return self._live
        finally:
            self._replaying = False
            self._live = live

    def finalize(self, height: int, closure: set[bytes]) -> list[bytes]:
        """Make a checked cut final (its closure from `cut_closure`); returns the final ids.

        When the cut is exactly the provisional state (the common case) the final state is a
        copy of it; otherwise the cut is replayed onto the previous final state and the
        provisional state is re-derived above the new final one.
        """
        if height != self.final_height + 1:
            raise LocalProtocolError(f"finalize height {height} after {self.final_height}")
        if closure == self._live.applied - self._final.applied and not self._live.excluded:
            self._final = self._live.copy()
        else:
            ordered = sorted(
                (self._known[op_id] for op_id in closure),
                key=lambda o: self._canonical_key(o.op_id),
            )
            derivation = self._replay_strict(ordered)
            for op_id, code in list(derivation.excluded.items()):
                # A loser inside a final cut can never win any more.
                self._known.pop(op_id, None)
                self._depth.pop(op_id, None)
                self._remember_rejected(op_id, code + "_final")
            derivation.excluded = {}
            self._final = derivation
            self._rederive()
        self.final_height = height
        return sorted(closure)

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
