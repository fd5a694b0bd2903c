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

import functools
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from . import limits
from .errors import BadSignatureError, LocalProtocolError, RemoteProtocolError
from .genesis import Genesis
from .ledger_state import Claim, EndorsementKey, LedgerState
from .ops import Kind, Op, decode_op, op_id_of, verify_op
from .pending import MissingKey, PendingPool

#: Cut closures and cut derivations remembered between a proposal, the votes and the
#: decision of one height (a few rounds may propose different cuts).
CUT_CACHE_ENTRIES_MAX = 4

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
    claims_by_handle: dict[str, list[bytes]]
    #: What the rules computed for each applied non-final op (see `Ledger._cut_derivation`).
    checked: dict[bytes, _Checked] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> _Derivation:
        return cls(LedgerState(), set(), {}, {}, {})

    @classmethod
    def around(cls, state: LedgerState) -> _Derivation:
        """A derivation whose state came from elsewhere (a snapshot): no op is known, and the
        per-handle index is rebuilt from the claims."""
        return cls(state, set(), {}, {}, state.claims_by_handle())

    def copy(self) -> _Derivation:
        return _Derivation(
            self.state.copy(),
            set(self.applied),
            dict(self.excluded),
            dict(self.conflicts),
            {handle: list(claims) for handle, claims in self.claims_by_handle.items()},
            dict(self.checked),
        )


@dataclass
class LedgerStats:
    accepted: int = 0
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
        #: Each author's seq in the state this ledger started from (empty unless restored):
        #: the ops up to it are final and were never seen here.
        self._base_seqs: dict[bytes, int] = {}
        #: Complete cut closures by their heads, and cut derivations by closure (see
        #: `cut_closure`, `derive_cut`); both forgotten whenever the final state changes.
        self._closures: dict[tuple[bytes, ...], tuple[set[bytes], tuple[bytes, ...]]] = {}
        self._derivations: list[tuple[set[bytes], _Derivation]] = []

    @classmethod
    def restore_final(
        cls,
        genesis: Genesis,
        state: LedgerState,
        height: int,
        config: LedgerConfig | None = None,
    ) -> Ledger:
        """A ledger continuing from `state`, the final state at checkpoint `height` (rebuilt
        from a snapshot whose root the caller checked against the checkpoint's).

        The final ops themselves are unknown here; later ops that name them are admitted from
        the state alone (see `_is_state_final`). `state` is copied, not aliased.
        """
        if height < 0:
            raise LocalProtocolError(f"restore height {height} is negative")
        ledger = cls(genesis, config)
        ledger._final = _Derivation.around(state.copy())
        ledger._live = ledger._final.copy()
        ledger.final_height = height
        ledger._base_seqs = {key: account.seq for key, account in state.accounts.items()}
        return ledger

    # --- the pipeline ----------------------------------------------------------------------

    def receive_op(self, envelope: bytes, now: float) -> Outcome:
        """Run the whole pipeline on one envelope (decode, verify, then `receive_verified`).

        A duplicate is answered from the envelope's hash before decoding: gossip brings most
        ops to a node several times. An undecodable envelope is never remembered by id (see
        `_reject_undecodable`), so answering by id first changes no outcome.
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
            if op.seq > self._base_seqs.get(op.author, 0):  # not a final op from before restore
                seqs.setdefault(op.author, []).append(op.seq)
        for account in state.accounts.values():
            assert 0 <= account.spendable <= account.balance, "spendable within balance"
        for author, author_seqs in seqs.items():
            base = self._base_seqs.get(author, 0)
            expected = list(range(base + 1, base + len(author_seqs) + 1))
            assert sorted(author_seqs) == expected, "seq gap"
            assert state.accounts[author].seq == base + len(author_seqs), "head seq"

    # --- admission -------------------------------------------------------------------------

    def _seen(self, op_id: bytes) -> bool:
        return op_id in self._known or op_id in self.pending or op_id in self._rejected

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
                code = "prev_rejected" if parent == op.prev else "dep_rejected"
                return self._emit_rejection(op.op_id, code, f"parent {parent.hex()} rejected")
            else:
                missing.add(parent)
        if op.basis > self.final_height:
            missing.add(op.basis)
        if missing and self._below_final_seq(op):
            # It can never apply (its seq is final), so waiting for its parents is pointless;
            # on a restored node they may be final ops that never arrive.
            code = "fork_lost_final"
            return self._emit_rejection(op.op_id, code, "seq at or below the final head")
        if missing:
            return self._park(op, missing, now)
        self._known[op.op_id] = op
        self._depth[op.op_id] = self._depth_of(op)
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
                outcome = self._admit(ready, now)
                if _releases_waiters(outcome):
                    work.append(ready.op_id)

    # --- rules -----------------------------------------------------------------------------

    def _check_chain_position(self, op: Op) -> None:
        if op.seq == 1:
            return
        prev = self._known.get(op.prev)
        if prev is not None:
            prev_author, prev_seq, prev_basis = prev.author, prev.seq, prev.basis
        else:
            # An unknown prev was admitted as final (`_is_state_final`); it is valid only as the
            # author's final head, whose seq and basis (window_basis is the head's basis) the
            # account record holds.
            head = self._final.state.accounts.get(op.author)
            if head is None or head.head != op.prev:
                raise _Rejection("bad_prev", "prev is not the author's op at seq - 1")
            prev_author, prev_seq, prev_basis = op.author, head.seq, head.window_basis
        if prev_author != op.author or prev_seq != op.seq - 1:
            raise _Rejection("bad_prev", "prev is not the author's op at seq - 1")
        if op.basis < prev_basis:
            raise _Rejection("basis_regressed", "basis is older than the previous op's basis")

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
        if op.kind in _CREDIT_KINDS:
            recipient = final.accounts.get(op.to)
            return recipient is not None and op.op_id in recipient.unreceived
        return op.op_id in final.claims

    def _parent_applied(self, op: Op, parent: bytes) -> bool:
        return parent in self._live.applied or self._is_state_final(op, parent)

    def _below_final_seq(self, op: Op) -> bool:
        account = self._final.state.accounts.get(op.author)
        return account is not None and op.seq <= account.seq

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
        unfinal = [op_id for op_id in self._known if op_id not in final]
        for op_id in sorted(unfinal, key=self._canonical_key):
            self._depth[op_id] = self._depth_of(self._known[op_id])

    def _conflict_keys(self, op: Op) -> tuple[ConflictKey, ...]:
        if op.kind is Kind.GRANT:
            return (("seq", op.author, op.seq), ("grant", op.to, 0))
        return (("seq", op.author, op.seq),)

    def _canonical_key(self, op_id: bytes) -> CanonicalKey:
        return (self._depth[op_id], op_id)

    def _conflict_winner_check(self, op: Op) -> Literal["none", "newcomer", "holder", "final"]:
        """Which side loses if `op` contends for a conflict key that is already held.

        "final": the holder is final, so the newcomer can never win (a permanent rejection).
        """
        if self._below_final_seq(op):
            return "final"
        if op.kind is Kind.GRANT:
            recipient = self._final.state.accounts.get(op.to)
            if recipient is not None and recipient.granted:
                return "final"
        verdict: Literal["none", "newcomer", "holder", "final"] = "none"
        conflicts = self._live.conflicts
        for key in self._conflict_keys(op):
            holder = conflicts.get(key)
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
        unreceived = record.unreceived if record else {}
        final_record = self._final.state.accounts.get(author)
        received: list[bytes] = []
        for dep in op.deps:
            dep_op = self._known.get(dep)
            if dep_op is not None:
                is_credit = dep_op.kind in _CREDIT_KINDS and dep_op.to == author
            else:  # a final op we never saw: a credit to the author iff unreceived at final
                is_credit = final_record is not None and dep in final_record.unreceived
            if is_credit:
                if dep not in unreceived:
                    raise _Rejection("credit_already_received", f"credit {dep.hex()} reused")
                spendable += unreceived[dep]
                received.append(dep)
            elif (dep_op is None or dep in self._final.applied) and not self._is_claim(dep):
                # A final dep is only useful as a credit to receive or a claim to endorse or
                # revoke; anything else says nothing and would be unresolvable on a node
                # restored from a snapshot, so it is refused everywhere alike.
                raise _Rejection("dep_final_unusable", f"final dep {dep.hex()} is not usable")
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

    def _is_claim(self, op_id: bytes) -> bool:
        op = self._known.get(op_id)
        if op is not None:
            return op.kind is Kind.HANDLE_CLAIM
        return op_id in self._live.state.claims

    def _require_council(self, op: Op) -> None:
        if op.author not in self.council:
            raise _Rejection("not_council", f"{op.kind.label} needs a council member")

    def _check_endorse(self, op: Op) -> None:
        self._require_council(op)
        claim_id: bytes = op.fields["claim"]
        # Every parent is applied (or final) by now, so a parent that is a claim op is in the
        # state's claims, known or not.
        claim = self._live.state.claims.get(claim_id) if claim_id in op.parents else None
        if claim is None:
            raise _Rejection("endorse_without_claim", "prev or deps must name the claim")
        if op.author in claim.endorsers:
            raise _Rejection("already_endorsed", "this member endorsed this claim already")

    def _check_revoke(self, op: Op) -> None:
        self._require_council(op)
        targets = self._revoke_targets(op)
        if len(targets) != 1:
            raise _Rejection("revoke_without_claim", "deps must include exactly one claim")
        if op.author in self._live.state.claims[targets[0]].revokers:
            raise _Rejection("already_revoked", "this member revoked this claim already")

    def _revoke_targets(self, op: Op) -> list[bytes]:
        """The parents of a revoke that are claims of its handle (in state, known or not)."""
        claims = self._live.state.claims
        handle = op.fields["handle"]
        return [
            parent for parent in op.parents if parent in claims and claims[parent].handle == handle
        ]

    # --- applying --------------------------------------------------------------------------

    def _apply(self, op: Op, checked: _Checked) -> None:
        live = self._live
        state = live.state
        author = op.author
        op_id = op.op_id
        live.applied.add(op_id)
        live.checked[op_id] = checked
        conflicts = live.conflicts
        for key in self._conflict_keys(op):
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
        elif kind is Kind.HANDLE_CLAIM:
            handle = op.fields["handle"]
            state.put_claim(op.op_id, Claim(handle, author))
            self._live.claims_by_handle.setdefault(handle, []).append(op.op_id)
        elif kind is Kind.HANDLE_ENDORSE:
            claim_id = op.fields["claim"]
            depth, _ = self._canonical_key(op.op_id)
            endorsement = (self.final_height, depth, op.op_id)
            state.add_endorsement(claim_id, author, endorsement, self.quorum)
            self._settle_handle(state.claims[claim_id].handle)
        elif kind is Kind.HANDLE_REVOKE:
            state.add_revocation(self._revoke_targets(op)[0], author)
            self._settle_handle(op.fields["handle"])
        else:
            self._apply_mode_vote(op)
        self.stats.accepted += 1
        if not self._replaying:
            self._emit(OpAccepted(op.op_id, kind, author, op.seq))

    def _apply_mode_vote(self, op: Op) -> None:
        state = self._live.state
        state.set_mode_vote(op.author, op.kind is Kind.COUNCIL_QUIESCE)
        quiesced = sum(state.mode_votes.values()) >= self.quorum
        if quiesced != state.quiesced:
            state.set_quiesced(quiesced)
            self._emit(CouncilModeChanged(quiesced))

    def _eligible_claims(
        self, derivation: _Derivation, handle: str
    ) -> list[tuple[EndorsementKey, bytes]]:
        """The claims of `handle` with a quorum of endorsements and without a quorum of
        revocations, by the key of their quorum-th endorsement: the first one wins."""
        eligible: list[tuple[EndorsementKey, bytes]] = []
        claims = derivation.state.claims
        for claim_id in derivation.claims_by_handle.get(handle, []):
            claim = claims[claim_id]
            quorum_key = claim.quorum_key(self.quorum)
            if quorum_key is not None and len(claim.revokers) < self.quorum:
                eligible.append((quorum_key, claim_id))
        eligible.sort()
        return eligible

    def _settle_handle(self, handle: str) -> None:
        """Bind `handle` to its rightful claim: among claims with a quorum of endorsements and
        without a quorum of revocations, the one whose quorum-th endorsement comes first in
        canonical order. A pure function of the applied set, hence order-independent."""
        eligible = self._eligible_claims(self._live, handle)
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
        self._forget_cuts()  # the replay may drop ops a remembered closure holds
        before = set(self._live.applied)
        bindings_before = {h: b.claim_id for h, b in self._live.state.bindings.items()}
        final = self._final.applied
        ordered = sorted(
            (op for op in self._known.values() if op.op_id not in final),
            key=lambda op: self._canonical_key(op.op_id),
        )
        handles = self._handles_of(ordered)
        conflicts_before = self._handle_conflicts(self._live, handles)
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
        # A conflict the replay brought about is reported as applying the ops in order would.
        conflicts_after = self._handle_conflicts(self._live, handles)
        for handle, loser, winner in sorted(conflicts_after - conflicts_before):
            self._emit(HandleConflictRaised(handle, loser, winner))
        self._emit(StateRederived(len(self._live.applied), len(self._live.excluded)))

    def _handles_of(self, ops: list[Op]) -> list[str]:
        """The handles that claims, endorsements and revocations among `ops` touch."""
        handles: set[str] = set()
        claims = self._live.state.claims
        for op in ops:
            kind = op.kind
            if kind is Kind.HANDLE_CLAIM or kind is Kind.HANDLE_REVOKE:
                handles.add(op.fields["handle"])
            elif kind is Kind.HANDLE_ENDORSE:
                claim = claims.get(op.fields["claim"])
                target = self._known.get(op.fields["claim"])
                if claim is not None:
                    handles.add(claim.handle)
                elif target is not None and target.kind is Kind.HANDLE_CLAIM:
                    handles.add(target.fields["handle"])
        return sorted(handles)

    def _handle_conflicts(
        self, derivation: _Derivation, handles: list[str]
    ) -> set[tuple[str, bytes, bytes]]:
        """(handle, losing claim, winning claim) of each conflict `_settle_handle` reports."""
        conflicts: set[tuple[str, bytes, bytes]] = set()
        for handle in handles:
            eligible = self._eligible_claims(derivation, handle)
            for _, loser in eligible[1:]:
                conflicts.add((handle, loser, eligible[0][1]))
        return conflicts

    def _replay(
        self, base: _Derivation, ordered: list[Op], step: Callable[[Op], None] | None = None
    ) -> _Derivation:
        """A copy of `base` with `ordered` (canonical order) applied by `step` (default: a
        non-strict `_replay_one`); the live derivation is untouched (it is swapped out while
        the replay runs)."""
        if step is None:
            step = functools.partial(self._replay_one, strict=False)
        live, self._live = self._live, base.copy()
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

    def _cut_derivation(self, closure: set[bytes]) -> _Derivation:
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
            except _Rejection as rejection:
                raise CutInvalidError(f"the cut holds an invalid op: {rejection.code}") from None
        if len(self._derivations) >= CUT_CACHE_ENTRIES_MAX:
            self._derivations.pop(0)
        self._derivations.append((closure, derivation))
        return derivation

    def _replay_strict(self, ordered: list[Op]) -> _Derivation:
        return self._replay(self._final, ordered, functools.partial(self._replay_one, strict=True))

    def _replay_checked(self, ordered: list[Op]) -> _Derivation:
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
        - the cut is exactly the provisional state: the final state is a copy of it;
        - the cut is a part of a conflict-free provisional state and what stays provisional
          does not depend on where the final line is (`_remainder_is_stable`): the cut's
          derivation (kept from `derive_cut`) becomes final and the provisional state stays
          as it is; only causal depths are re-counted from the new final checkpoint;
        - otherwise the cut is replayed onto the previous final state and the provisional
          state is re-derived above the new final one.
        """
        if height != self.final_height + 1:
            raise LocalProtocolError(f"finalize height {height} after {self.final_height}")
        if self._is_whole_live(closure):
            self._final = self._live.copy()
            self._final.checked = {}
            self._live.checked = {}
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
                self._remember_rejected(op_id, code + "_final")
            derivation.excluded = {}
            derivation.checked = {}
            self._final = derivation
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
                self._rederive()
        self.final_height = height
        return sorted(closure)

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
                if not (dep_op.kind in _CREDIT_KINDS and dep_op.to == op.author):
                    return False
        return True

    def _recount_depths(self, ordered: list[bytes]) -> None:
        """Re-count causal depths of the still-provisional ops (parents first) from the new
        final checkpoint, as a re-derivation would."""
        for op_id in ordered:
            self._depth[op_id] = self._depth_of(self._known[op_id])

    def _forget_cuts(self) -> None:
        self._closures.clear()
        self._derivations.clear()

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
#: The detail of a "duplicate" outcome for a final op a restored ledger meets for the first time.
_FINAL_DETAIL = "final"


def _releases_waiters(outcome: Outcome) -> bool:
    """Whether ops waiting for this one may now be admitted."""
    return outcome.status in ("accepted", "excluded") or (
        outcome.status == "duplicate" and outcome.detail == _FINAL_DETAIL
    )


def _conflict_code(op: Op) -> str:
    return "grant_conflict_lost" if op.kind is Kind.GRANT else "fork_lost"


def _missing_sort_key(key: MissingKey) -> tuple[int, bytes]:
    return (0, key) if isinstance(key, bytes) else (1, key.to_bytes(8, "big"))
