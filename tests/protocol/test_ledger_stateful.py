"""A Hypothesis state machine drives one Ledger with every kind of delivery and checks the ledger
invariants after each step: supply, no negative balance, gap-free chains, credits that exist,
and that a second ledger fed the same op set in another order reaches the same state root."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from swarmd.protocol import limits
from swarmd.protocol.ledger import Ledger, Outcome
from swarmd.protocol.ledger.snapshot import state_from_records, state_records
from swarmd.protocol.ops import Kind, Op
from swarmd.protocol.wallet import Author

from .helpers import author, make_council

GENESIS, _ = make_council(4, signup_reward=100, grants_per_member_per_window=1_000)
HANDLES = ("neo", "zed")
#: Bounds that keep one run small: people created, ops held back at once.
PEOPLE_MAX = 10
HELD_MAX = 3
#: The order-independence replay runs every this many steps (and at teardown).
REPLAY_EVERY_STEPS = 25

choices = st.integers(min_value=0, max_value=2**16)


@dataclass
class Held:
    """An op held back from delivery, and the delivered ops that wait for it."""

    op: Op
    waiters: list[Op]


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger(GENESIS)
        self.council = make_council(4, signup_reward=100, grants_per_member_per_window=1_000)[1]
        self.people: list[Author] = []
        self.delivered: list[Op] = []
        self.held: list[Held] = []
        self.steps = 0

    # --- helpers ---------------------------------------------------------------------------

    def deliver(self, op: Op) -> Outcome:
        outcome = self.ledger.receive_op(op.envelope, 0.0)
        self.delivered.append(op)
        return outcome

    def busy(self, writer: Author) -> bool:
        """Whether `writer` has ops held back or parked (its local chain runs ahead)."""
        for held in self.held:
            if writer.key in {held.op.author, *(op.author for op in held.waiters)}:
                return True
        return False

    def idle(self, writers: list[Author]) -> list[Author]:
        return [writer for writer in writers if not self.busy(writer)]

    def resync(self) -> None:
        """Idle authors restart from the ledger's chain head, so a rejected or excluded op of
        theirs does not wedge their later ops."""
        for writer in self.idle(self.council + self.people):
            account = self.ledger.state.accounts.get(writer.key)
            writer.seq, writer.head = (account.seq, account.head) if account else (0, b"")

    def new_person(self) -> Author:
        person = author(GENESIS, f"person-{len(self.people)}")
        self.people.append(person)
        return person

    def funds(self, writer: Author, receive_count: int) -> tuple[list[bytes], int]:
        """Credits to receive (up to `receive_count`) and what is spendable after them."""
        account = self.ledger.state.accounts.get(writer.key)
        if account is None:
            return [], 0
        receive = sorted(account.unreceived)[: min(receive_count, limits.OP_DEPS_MAX)]
        credits = [self.ledger.op(credit_id) for credit_id in receive]
        return receive, account.spendable + sum(op.amount for op in credits if op is not None)

    def payee_for(self, payer: Author, choice: int) -> Author:
        others = [p for p in self.people + self.council if p.key != payer.key]
        return others[choice % len(others)]

    # --- rules -----------------------------------------------------------------------------

    @initialize()
    def two_funded_people(self) -> None:
        for member in self.council[:2]:
            assert self.deliver(member.grant(self.new_person().key, 100)).status == "accepted"
        self.resync()

    @precondition(lambda self: len(self.people) < PEOPLE_MAX)
    @rule(choice=choices)
    def grant_to_new_account(self, choice: int) -> None:
        members = self.idle(self.council)
        if not members:
            return
        grant = members[choice % len(members)].grant(self.new_person().key, 100)
        assert self.deliver(grant).status == "accepted"
        self.resync()

    @rule(choice=choices, receive_count=st.integers(0, 3), overdraw=st.booleans())
    def transfer(self, choice: int, receive_count: int, overdraw: bool) -> None:
        payers = self.idle(self.people)
        if not payers:
            return
        payer = payers[choice % len(payers)]
        receive, available = self.funds(payer, receive_count)
        payee = self.payee_for(payer, choice // 7)
        amount = available + 1 if overdraw or available == 0 else 1 + choice % available
        outcome = self.deliver(payer.transfer(payee.key, amount, receive=receive))
        expected = "insufficient_funds" if amount > available else ""
        assert outcome.code == expected, outcome
        self.resync()

    @rule(choice=choices, receive_count=st.integers(0, 3), tally=st.sampled_from(["a", "b"]))
    def burn(self, choice: int, receive_count: int, tally: str) -> None:
        burners = [p for p in self.idle(self.people) if self.funds(p, receive_count)[1] > 0]
        if not burners:
            return
        burner = burners[choice % len(burners)]
        receive, available = self.funds(burner, receive_count)
        before = self.ledger.state.burn_tallies.get(tally, 0)
        amount = 1 + choice % available
        assert self.deliver(burner.burn(amount, tally, receive=receive)).status == "accepted"
        assert self.ledger.state.burn_tallies[tally] == before + amount
        self.resync()

    @rule(choice=choices, handle=st.sampled_from(HANDLES))
    def claim_handle(self, choice: int, handle: str) -> None:
        claimants = self.idle(self.people)
        if not claimants:
            return
        claimant = claimants[choice % len(claimants)]
        receive, available = self.funds(claimant, 3)
        outcome = self.deliver(claimant.claim(handle, deps=receive))
        assert outcome.code == ("" if available > 0 else "claim_unfunded"), outcome
        self.resync()

    @rule(choice=choices)
    def endorse(self, choice: int) -> None:
        members = self.idle(self.council)
        claim_ids = sorted(self.ledger.state.claims)
        if not members or not claim_ids:
            return
        member = members[choice % len(members)]
        claim_id = claim_ids[(choice // 5) % len(claim_ids)]
        claim = self.ledger.op(claim_id)
        assert claim is not None
        already = member.key in self.ledger.state.claims[claim_id].endorsers
        outcome = self.deliver(member.endorse(claim))
        assert outcome.code == ("already_endorsed" if already else ""), outcome
        self.resync()

    @rule(choice=choices)
    def endorse_to_quorum(self, choice: int) -> None:
        """Every idle member endorses one claim, so handles bind and claims compete."""
        claim_ids = sorted(self.ledger.state.claims)
        if not claim_ids:
            return
        claim_id = claim_ids[choice % len(claim_ids)]
        claim = self.ledger.op(claim_id)
        assert claim is not None
        for member in self.idle(self.council):
            if member.key not in self.ledger.state.claims[claim_id].endorsers:
                assert self.deliver(member.endorse(claim)).status == "accepted"
        self.resync()

    @rule(choice=choices, quiesce=st.booleans())
    def mode_vote(self, choice: int, quiesce: bool) -> None:
        members = self.idle(self.council)
        if not members:
            return
        member = members[choice % len(members)]
        op = member.quiesce("drill") if quiesce else member.resume("done")
        assert self.deliver(op).status == "accepted"
        self.resync()

    @rule(choice=choices, twin_first=st.booleans())
    def fork(self, choice: int, twin_first: bool) -> None:
        """A double spend: two ops at the same seq receiving and spending the same credits."""
        payers = [p for p in self.idle(self.people) if self.funds(p, 3)[1] > 0]
        if not payers:
            return
        payer = payers[choice % len(payers)]
        receive, available = self.funds(payer, 3)
        twin = Author(payer.keypair, payer.network_id, seq=payer.seq, head=payer.head)
        spend = payer.transfer(self.payee_for(payer, choice).key, available, receive=receive)
        double = twin.burn(available, "fork", receive=receive)
        pair = [double, spend] if twin_first else [spend, double]
        for op in pair:
            self.deliver(op)
        winner, loser = sorted(pair, key=lambda op: op.op_id)  # same parents, same depth
        assert self.ledger.status_of(winner.op_id) == ("applied", "")
        assert self.ledger.status_of(loser.op_id) == ("excluded", "fork_lost")
        self.resync()

    @precondition(lambda self: len(self.held) < HELD_MAX)
    @rule(choice=choices)
    def hold_back_prev(self, choice: int) -> None:
        """An author's second op arrives before its first (a missing prev)."""
        payers = [p for p in self.idle(self.people) if self.funds(p, 2)[1] >= 2]
        if not payers:
            return
        payer = payers[choice % len(payers)]
        receive, _ = self.funds(payer, 2)
        first = payer.transfer(self.payee_for(payer, choice).key, 1, receive=receive)
        second = payer.burn(1, "late")
        assert self.deliver(second).status == "pending"
        self.held.append(Held(first, [second]))

    @precondition(lambda self: len(self.held) < HELD_MAX and len(self.people) < PEOPLE_MAX)
    @rule(choice=choices)
    def hold_back_dep(self, choice: int) -> None:
        """A new account spends its grant before the grant arrives (a missing dep)."""
        members = self.idle(self.council)
        if not members:
            return
        person = self.new_person()
        grant = members[choice % len(members)].grant(person.key, 100)
        spend = person.transfer(self.people[0].key, 1 + choice % 100, receive=[grant.op_id])
        assert self.deliver(spend).status == "pending"
        self.held.append(Held(grant, [spend]))

    @precondition(lambda self: bool(self.held))
    @rule(choice=choices)
    def deliver_held(self, choice: int) -> None:
        held = self.held.pop(choice % len(self.held))
        assert self.deliver(held.op).status == "accepted"
        for waiter in held.waiters:
            assert self.ledger.status_of(waiter.op_id) == ("applied", "")
        self.resync()

    @rule()
    def checkpoint(self) -> None:
        """Finalize every applied chain, as protocol/node_core.py does with a decided cut."""
        heads = self.ledger.unfinalized_heads()
        if not heads:
            return
        closure, missing = self.ledger.cut_closure([head for _, _, head in heads])
        assert not missing
        root, _ = self.ledger.derive_cut(heads)
        self.ledger.finalize(self.ledger.final_height + 1, closure)
        assert self.ledger.final_state.root() == root
        assert self.ledger.unfinalized_heads() == []

    @precondition(lambda self: bool(self.delivered))
    @rule(choice=choices)
    def duplicate_delivery(self, choice: int) -> None:
        root = self.ledger.state_root()
        op = self.delivered[choice % len(self.delivered)]
        assert self.deliver(op).status == "duplicate"
        assert self.ledger.state_root() == root

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def ledger_invariants(self) -> None:
        self.ledger.check_invariants()
        state = self.ledger.state
        assert sum(a.balance for a in state.accounts.values()) == state.granted - state.burned
        assert sum(state.burn_tallies.values()) == state.burned
        for key, account in state.accounts.items():
            assert 0 <= account.spendable <= account.balance
            for credit_id in account.unreceived:
                credit = self.ledger.op(credit_id)
                assert credit is not None and credit.to == key
                assert credit.kind in (Kind.GRANT, Kind.TRANSFER)
                assert self.ledger.status_of(credit_id) == ("applied", "")

    @invariant()
    def handles_bind_to_quorum_claims(self) -> None:
        """No revocations here, so a handle is bound exactly when one of its claims has a
        quorum of endorsements, and then to such a claim by its claimant."""
        state = self.ledger.state
        quorum = GENESIS.quorum
        for handle in HANDLES:
            claims = [c for c in state.claims.values() if c.handle == handle]
            binding = state.bindings.get(handle)
            assert (binding is not None) == any(len(c.endorsers) >= quorum for c in claims)
            if binding is not None:
                bound = state.claims[binding.claim_id]
                assert len(bound.endorsers) >= quorum and bound.claimant == binding.owner

    @invariant()
    def chains_are_gap_free(self) -> None:
        chains: dict[bytes, dict[int, Op]] = {}
        for op_id in self.ledger.applied_ids():
            op = self.ledger.op(op_id)
            assert op is not None
            assert op.seq not in chains.setdefault(op.author, {}), "two applied ops at one seq"
            chains[op.author][op.seq] = op
        for writer, chain in chains.items():
            assert sorted(chain) == list(range(1, len(chain) + 1))
            for seq, op in chain.items():
                assert op.prev == (chain[seq - 1].op_id if seq > 1 else b"")
            assert self.ledger.state.accounts[writer].head == chain[len(chain)].op_id

    @invariant()
    def replay_every_few_steps(self) -> None:
        self.steps += 1
        if self.steps % REPLAY_EVERY_STEPS == 0:
            self.check_replay()

    def check_replay(self) -> None:
        """A second ledger reaches the same state from the known non-final ops sorted by id
        (mostly before their parents): a fresh one before any checkpoint, else one restored
        from a snapshot of the last final state. The state also survives a snapshot round
        trip."""
        ledger = self.ledger
        if ledger.final_height == 0:
            other = Ledger(GENESIS)
        else:
            final = state_from_records(state_records(ledger.final_state))
            other = Ledger.restore_final(GENESIS, final, ledger.final_height)
        unfinal = [op for op in ledger.known_ops() if not ledger.is_final(op.op_id)]
        for op in sorted(unfinal, key=lambda op: op.op_id):
            other.receive_verified(op, 0.0)  # signatures were checked on first delivery
        assert len(other.pending) == 0
        assert other.state_root() == ledger.state_root()
        assert state_records(other.state) == state_records(ledger.state)
        final_ids = {op.op_id for op in ledger.known_ops() if ledger.is_final(op.op_id)}
        assert set(other.applied_ids()) == set(ledger.applied_ids()) - final_ids
        rebuilt = state_from_records(state_records(ledger.state))
        assert rebuilt.root() == ledger.state_root()

    def teardown(self) -> None:
        if self.held:  # once with ops still parked, once after they all arrived
            self.check_replay()
        for held in self.held:  # late deliveries still complete the chains
            assert self.deliver(held.op).status == "accepted"
        self.held.clear()
        assert len(self.ledger.pending) == 0
        self.ledger.check_invariants()
        self.check_replay()


TestLedgerMachine = LedgerMachine.TestCase
