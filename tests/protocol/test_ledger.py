"""The ledger: rules, pending pool, conflicts, handles, and order independence."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmd.protocol import limits
from swarmd.protocol.ledger import (
    CreditReceived,
    HandleBound,
    HandleConflictRaised,
    Ledger,
    LedgerConfig,
    OpEvicted,
)
from swarmd.protocol.ops import Op

from .helpers import author, feed, fund, make_council

GENESIS, MEMBERS = make_council(4, signup_reward=100, grants_per_member_per_window=3)


def fresh(**config: int) -> Ledger:
    return Ledger(GENESIS, LedgerConfig(**config) if config else None)


def members() -> list:
    # Authors keep chain positions, so every test needs its own copies.
    return make_council(4, signup_reward=100, grants_per_member_per_window=3)[1]


def test_grant_transfer_burn_balances_and_events() -> None:
    ledger = fresh()
    council = members()
    alice, bob = author(GENESIS, "alice"), author(GENESIS, "bob")
    grant = council[0].grant(alice.key, 100)
    pay = alice.transfer(bob.key, 30, receive=[grant.op_id])
    burn = bob.burn(10, "rocket", receive=[pay.op_id])
    outcomes = feed(ledger, [grant, pay, burn])
    assert [o.status for o in outcomes] == ["accepted"] * 3
    assert (ledger.balance(alice.key), ledger.balance(bob.key)) == (70, 20)
    assert ledger.state.burn_tallies == {"rocket": 10}
    assert (ledger.state.granted, ledger.state.burned) == (100, 10)
    credits = [e for e in ledger.drain_events() if isinstance(e, CreditReceived)]
    assert [(e.account, e.amount) for e in credits] == [(alice.key, 100), (bob.key, 30)]
    ledger.check_invariants()


def test_spending_needs_received_credits() -> None:
    ledger = fresh()
    council = members()
    alice, bob = author(GENESIS, "alice"), author(GENESIS, "bob")
    grant = council[0].grant(alice.key, 100)
    unreceived = alice.transfer(bob.key, 1)  # the grant is not listed in deps
    outcomes = feed(ledger, [grant, unreceived])
    assert outcomes[1].code == "insufficient_funds"


@pytest.mark.gate("cc-double-spend")
def test_overdraft_and_double_receive_are_rejected() -> None:
    ledger = fresh()
    council = members()
    alice, bob = author(GENESIS, "alice"), author(GENESIS, "bob")
    grant = council[0].grant(alice.key, 100)
    over = alice.transfer(bob.key, 101, receive=[grant.op_id])
    assert feed(ledger, [grant, over])[1].code == "insufficient_funds"
    alice2 = author(GENESIS, "alice")
    first = alice2.transfer(bob.key, 60, receive=[grant.op_id])
    again = alice2.transfer(bob.key, 30, receive=[grant.op_id])
    outcomes = feed(ledger, [first, again])
    assert outcomes[0].status == "accepted"
    assert outcomes[1].code == "credit_already_received"
    ledger.check_invariants()


def test_grant_rules() -> None:
    ledger = fresh()
    council = members()
    alice = author(GENESIS, "alice")
    outsider = author(GENESIS, "outsider")
    assert feed(ledger, [outsider.grant(alice.key, 100)])[0].code == "not_council"
    assert feed(ledger, [council[0].grant(alice.key, 99)])[0].code == "bad_grant_amount"
    council = members()
    targets = [author(GENESIS, f"new-{i}").key for i in range(4)]
    outcomes = feed(ledger, [council[1].grant(key, 100) for key in targets])
    assert [o.status for o in outcomes[:3]] == ["accepted"] * 3
    assert outcomes[3].code == "grant_cap_exceeded"


def test_self_transfer_and_not_council_rules() -> None:
    ledger = fresh()
    council = members()
    alice = author(GENESIS, "alice")
    grant = council[0].grant(alice.key, 100)
    assert feed(ledger, [grant, alice.transfer(alice.key, 5, receive=[grant.op_id])])[1].code == (
        "self_transfer"
    )
    assert feed(ledger, [author(GENESIS, "x").quiesce("no")])[0].code == "not_council"


def test_pending_ops_are_released_when_parents_arrive() -> None:
    ledger = fresh()
    council = members()
    alice, bob = author(GENESIS, "alice"), author(GENESIS, "bob")
    grant = council[0].grant(alice.key, 100)
    ops = [alice.transfer(bob.key, 1, receive=[grant.op_id] if i == 0 else []) for i in range(5)]
    outcomes = feed(ledger, list(reversed(ops)))
    assert [o.status for o in outcomes] == ["pending"] * 5
    assert len(ledger.pending) == 5
    assert feed(ledger, [grant])[0].status == "accepted"
    assert len(ledger.pending) == 0
    assert ledger.balance(bob.key) == 5
    ledger.check_invariants()


def test_descendants_of_a_rejected_op_are_rejected() -> None:
    ledger = fresh()
    alice, bob = author(GENESIS, "alice"), author(GENESIS, "bob")
    bad = alice.transfer(bob.key, 5)  # nothing to spend
    child = alice.transfer(bob.key, 1)
    assert feed(ledger, [child])[0].status == "pending"
    assert feed(ledger, [bad])[0].code == "insufficient_funds"
    assert ledger.status_of(child.op_id) == ("rejected", "prev_rejected")
    grandchild = alice.transfer(bob.key, 1)
    assert feed(ledger, [grandchild])[0].code == "prev_rejected"


def test_pending_pool_evicts_oldest_first_and_per_author() -> None:
    ledger = fresh(pending_ops_max=4, pending_ops_per_author_max=3)
    orphans = []
    for name in ("a", "b"):
        writer = author(GENESIS, name)
        writer.seq, writer.head = 10, b"\x09" * 32  # parents that never arrive
        orphans.append([writer.transfer(MEMBERS[0].key, 1) for _ in range(3)])
    feed(ledger, orphans[0])
    assert len(ledger.pending) == 3
    feed(ledger, orphans[1][:1])  # pool now full (4)
    feed(ledger, orphans[1][1:2])  # evicts a's oldest
    evicted = [e.op_id for e in ledger.drain_events() if isinstance(e, OpEvicted)]
    assert evicted == [orphans[0][0].op_id]
    assert len(ledger.pending) == 4
    # Per-author bound: b's third op would make 3 for b, fine; a 4th evicts b's oldest.
    writer_b = author(GENESIS, "b")
    writer_b.seq, writer_b.head = 20, b"\x08" * 32
    feed(ledger, [orphans[1][2], writer_b.transfer(MEMBERS[0].key, 1)])
    evicted = [e.op_id for e in ledger.drain_events() if isinstance(e, OpEvicted)]
    assert orphans[1][0].op_id in evicted
    assert ledger.stats.evicted >= 2


def test_pending_ops_expire() -> None:
    ledger = fresh(pending_op_ttl_s=10)
    writer = author(GENESIS, "a")
    writer.seq, writer.head = 3, b"\x07" * 32
    feed(ledger, [writer.transfer(MEMBERS[0].key, 1)], now=0.0)
    assert ledger.expire_pending(5.0) == 0
    assert ledger.expire_pending(10.0) == 1
    assert len(ledger.pending) == 0


def test_duplicates_are_reported_not_reapplied() -> None:
    ledger = fresh()
    council = members()
    grant = council[0].grant(author(GENESIS, "alice").key, 100)
    assert [o.status for o in feed(ledger, [grant, grant])] == ["accepted", "duplicate"]
    assert ledger.state.granted == 100


@pytest.mark.gate("cc-fork-same-seq")
def test_fork_lowest_canonical_key_wins_in_any_order() -> None:
    council = members()
    alice, bob, carol = (author(GENESIS, n) for n in ("alice", "bob", "carol"))
    grant = council[0].grant(alice.key, 100)
    twin = author(GENESIS, "alice")
    spend_a = alice.transfer(bob.key, 80, receive=[grant.op_id])
    spend_b = twin.transfer(carol.key, 80, receive=[grant.op_id])  # same seq: a fork
    follow_a = alice.transfer(bob.key, 10)
    roots = set()
    for order in ([grant, spend_a, follow_a, spend_b], [grant, spend_b, spend_a, follow_a]):
        ledger = fresh()
        feed(ledger, order)
        ledger.check_invariants()
        roots.add(ledger.state_root())
        winner = min([spend_a, spend_b], key=lambda op: op.op_id)
        assert ledger.status_of(winner.op_id) == ("applied", "")
        loser = spend_b if winner is spend_a else spend_a
        assert ledger.status_of(loser.op_id) == ("excluded", "fork_lost")
    assert len(roots) == 1


def test_two_grants_to_one_account_only_one_counts() -> None:
    council = members()
    alice = author(GENESIS, "alice")
    g1, g2 = council[0].grant(alice.key, 100), council[1].grant(alice.key, 100)
    roots = set()
    for order in ([g1, g2], [g2, g1]):
        ledger = fresh()
        feed(ledger, order)
        assert ledger.balance(alice.key) == 100
        roots.add(ledger.state_root())
    assert len(roots) == 1


def test_handle_binds_with_quorum_and_conflicts_are_reported() -> None:
    ledger = fresh()
    council = members()
    alice, bob = author(GENESIS, "alice"), author(GENESIS, "bob")
    grants = [fund(GENESIS, council[0], alice), fund(GENESIS, council[0], bob)]
    claim_a = alice.claim("neo", deps=[grants[0].op_id])
    claim_b = bob.claim("neo", deps=[grants[1].op_id])
    ops = [*grants, claim_a, claim_b]
    ops += [member.endorse(claim_a) for member in council[: GENESIS.quorum]]
    ops += [member.endorse(claim_b) for member in council[: GENESIS.quorum]]
    feed(ledger, ops)
    events = ledger.drain_events()
    assert ledger.handle_owner("neo") == alice.key
    assert any(isinstance(e, HandleBound) and e.owner == alice.key for e in events)
    assert any(
        isinstance(e, HandleConflictRaised) and e.losing_claim == claim_b.op_id for e in events
    )
    # A quorum of revocations unbinds; the competing claim then binds.
    feed(ledger, [member.revoke(claim_a) for member in council[: GENESIS.quorum]])
    assert ledger.handle_owner("neo") == bob.key


def test_endorse_rules() -> None:
    ledger = fresh()
    council = members()
    alice = author(GENESIS, "alice")
    grant = fund(GENESIS, council[0], alice)
    claim = alice.claim("trinity", deps=[grant.op_id])
    feed(ledger, [grant, claim])
    assert feed(ledger, [author(GENESIS, "eve").endorse(claim)])[0].code == "not_council"
    endorse = council[0].endorse(claim)
    again = council[0].endorse(claim)
    assert [o.code for o in feed(ledger, [endorse, again])] == ["", "already_endorsed"]


def test_a_claim_from_an_unfunded_key_is_refused_and_a_funded_one_applies() -> None:
    ledger = fresh()
    council = members()
    stranger, alice = author(GENESIS, "stranger"), author(GENESIS, "alice")
    unfunded = stranger.claim("free")
    assert feed(ledger, [unfunded])[0].code == "claim_unfunded"
    assert ledger.state.accounts.get(stranger.key) is None  # it created no account record
    assert unfunded.op_id not in ledger.state.claims
    grant = fund(GENESIS, council[0], alice)
    # A grant not received (absent from the claim's deps) is not spendable: still unfunded.
    early = author(GENESIS, "alice").claim("paid")
    assert [o.code for o in feed(ledger, [grant, early])] == ["", "claim_unfunded"]
    claim = alice.claim("paid", deps=[grant.op_id])
    assert feed(ledger, [claim])[0].status == "accepted"
    assert claim.op_id in ledger.state.claims
    assert ledger.balance(alice.key) == 100  # a claim spends nothing
    member_claim = council[1].claim("council")  # the genesis names the council: no funds needed
    assert feed(ledger, [member_claim])[0].status == "accepted"
    ledger.check_invariants()


def test_a_claim_after_spending_everything_is_unfunded() -> None:
    ledger = fresh()
    council = members()
    alice, bob = author(GENESIS, "alice"), author(GENESIS, "bob")
    grant = fund(GENESIS, council[0], alice)
    spend_all = alice.transfer(bob.key, 100, receive=[grant.op_id])
    broke = alice.claim("broke")
    outcomes = feed(ledger, [grant, spend_all, broke])
    assert [o.code for o in outcomes] == ["", "", "claim_unfunded"]


def test_a_claim_needs_exactly_CLAIM_MIN_SPENDABLE_credits_left() -> None:
    """An author left with CLAIM_MIN_SPENDABLE spendable credits may claim; one less may not."""
    ledger = fresh()
    council = members()
    alice, carol, bob = author(GENESIS, "alice"), author(GENESIS, "carol"), author(GENESIS, "bob")
    grants = [fund(GENESIS, council[0], alice), fund(GENESIS, council[0], carol)]
    keep = limits.CLAIM_MIN_SPENDABLE
    at_bound = alice.transfer(bob.key, 100 - keep, receive=[grants[0].op_id])
    below = carol.transfer(bob.key, 100 - keep + 1, receive=[grants[1].op_id])
    feed(ledger, [*grants, at_bound, below])
    assert (ledger.balance(alice.key), ledger.balance(carol.key)) == (keep, keep - 1)
    outcomes = feed(ledger, [alice.claim("kept"), carol.claim("short")])
    assert [o.code for o in outcomes] == ["", "claim_unfunded"]
    assert outcomes[0].status == "accepted"
    assert ledger.balance(alice.key) == keep  # the claim spent nothing
    ledger.check_invariants()


def test_council_quiesce_needs_quorum() -> None:
    ledger = fresh()
    council = members()
    feed(ledger, [m.quiesce("drill") for m in council[: GENESIS.quorum - 1]])
    assert not ledger.state.quiesced
    feed(ledger, [council[GENESIS.quorum - 1].quiesce("drill")])
    assert ledger.state.quiesced
    feed(ledger, [council[0].resume("done")])
    assert not ledger.state.quiesced


def scenario_ops(seed: int) -> list[Op]:
    """A random workload with grants, transfers, burns, forks, handles and endorsements."""
    rng = random.Random(seed)
    council = members()
    people = [author(GENESIS, f"p{seed}-{i}") for i in range(5)]
    ops: list[Op] = []
    credits: dict[bytes, list[Op]] = {p.key: [] for p in people}
    for person in people:
        grant = council[rng.randrange(len(council))].grant(person.key, 100)
        ops.append(grant)
        credits[person.key].append(grant)
    for _ in range(25):
        payer, payee = rng.sample(people, 2)
        receive = [c.op_id for c in credits[payer.key][:3]]
        credits[payer.key] = credits[payer.key][3:]
        roll = rng.random()
        if roll < 0.6:
            op = payer.transfer(payee.key, rng.randint(1, 60), receive=receive)
            credits[payee.key].append(op)
        elif roll < 0.8:
            op = payer.burn(rng.randint(1, 30), rng.choice(["a", "b"]), receive=receive)
        elif roll < 0.9:
            op = payer.claim(rng.choice(["zed", "yan"]), deps=receive)
            ops.append(op)
            ops.extend(m.endorse(op) for m in rng.sample(council, GENESIS.quorum))
            continue
        else:  # a fork: a second op at the same seq
            twin = author(GENESIS, "")  # placeholder replaced below
            twin.keypair, twin.seq, twin.head = payer.keypair, payer.seq, payer.head
            ops.append(twin.transfer(payee.key, 1, receive=receive))
            op = payer.transfer(payee.key, 2, receive=receive)
        ops.append(op)
    return ops


@pytest.mark.gate("cc-order-independent-root")
@given(st.integers(min_value=0, max_value=10_000), st.randoms(use_true_random=False))
def test_same_op_set_any_order_same_state_root(seed: int, rnd: random.Random) -> None:
    ops = scenario_ops(seed)
    reference = fresh()
    feed(reference, ops)
    reference.check_invariants()
    shuffled = list(ops)
    rnd.shuffle(shuffled)
    other = fresh()
    feed(other, shuffled)
    other.check_invariants()
    assert other.state_root() == reference.state_root()
    assert sorted(other.applied_ids()) == sorted(reference.applied_ids())
    assert len(other.pending) == len(reference.pending) == 0


def test_many_permutations_of_one_workload() -> None:
    ops = scenario_ops(7)
    roots = set()
    rng = random.Random(1)
    for _ in range(30):
        order = list(ops)
        rng.shuffle(order)
        ledger = fresh()
        feed(ledger, order)
        ledger.check_invariants()
        roots.add(ledger.state_root())
    assert len(roots) == 1


def test_state_root_changes_with_state_and_is_incremental() -> None:
    ledger = fresh()
    council = members()
    empty_root = ledger.state_root()
    feed(ledger, [council[0].grant(author(GENESIS, "z").key, 100)])
    assert ledger.state_root() != empty_root
    assert ledger.state.tree.root() == ledger.state_root()


def test_limits_are_consistent() -> None:
    assert limits.PENDING_OPS_PER_AUTHOR_MAX <= limits.PENDING_OPS_MAX


# --- above a final checkpoint ----------------------------------------------------------------


def checkpoint(ledger: Ledger) -> None:
    """Finalize every applied chain, as protocol/node_core.py does with a decided cut."""
    heads = ledger.unfinalized_heads()
    closure, missing = ledger.cut_closure([head for _, _, head in heads])
    assert not missing
    root, _ = ledger.derive_cut(heads)
    ledger.finalize(ledger.final_height + 1, closure)
    assert ledger.final_state.root() == root


def test_depth_counts_from_the_last_final_checkpoint() -> None:
    ledger = fresh()
    council = members()
    alice = author(GENESIS, "alice")
    grant = fund(GENESIS, council[3], alice)
    claim = alice.claim("depth", deps=[grant.op_id])
    pads = [member.claim(f"pad{i}") for i, member in enumerate(council) for _ in range(3)]
    feed(ledger, [grant, claim, *pads])
    checkpoint(ledger)
    endorse = council[0].endorse(claim)  # prev and claim are final: depth 1
    feed(ledger, [endorse])
    assert ledger.state.claims[claim.op_id].endorsement_keys == [(1, 1, endorse.op_id)]
    late = council[1].claim("late")  # depth 1 (its prev is final)
    follow = council[0].endorse(late)  # depth 2: one non-final parent at depth 1
    feed(ledger, [late, follow])
    assert ledger.state.claims[late.op_id].endorsement_keys == [(1, 2, follow.op_id)]


def test_a_handle_bound_at_a_checkpoint_is_not_taken_by_a_later_shallow_quorum() -> None:
    ledger = fresh()
    council = members()
    alice, bob = author(GENESIS, "alice"), author(GENESIS, "bob")
    grants = [fund(GENESIS, council[3], alice), fund(GENESIS, council[3], bob)]
    claim_a = alice.claim("first", deps=[grants[0].op_id])
    # Deep member chains make the first quorum's endorsements deep (depth 4).
    pads = [member.claim(f"pad{i}-{j}") for i, member in enumerate(council) for j in range(3)]
    endorsements = [member.endorse(claim_a) for member in council[: GENESIS.quorum]]
    feed(ledger, [*grants, claim_a, *pads, *endorsements])
    assert ledger.handle_owner("first") == alice.key
    checkpoint(ledger)
    claim_b = bob.claim("first", deps=[grants[1].op_id])
    later = [member.endorse(claim_b) for member in council[: GENESIS.quorum]]  # depth 2
    feed(ledger, [claim_b, *later])
    assert ledger.handle_owner("first") == alice.key
    conflicts = [e for e in ledger.drain_events() if isinstance(e, HandleConflictRaised)]
    assert conflicts and conflicts[-1].losing_claim == claim_b.op_id


@given(st.integers(min_value=0, max_value=10_000), st.randoms(use_true_random=False))
def test_same_op_set_above_a_checkpoint_any_order_same_state_root(
    seed: int, rnd: random.Random
) -> None:
    ops = scenario_ops(seed)
    cut = len(ops) // 2
    base = fresh()
    feed(base, ops[:cut])
    checkpoint(base)
    roots = set()
    for order in (ops[cut:], rnd.sample(ops[cut:], len(ops) - cut)):
        ledger = fresh()
        feed(ledger, ops[:cut])
        checkpoint(ledger)
        feed(ledger, order)
        ledger.check_invariants()
        roots.add(ledger.state_root())
        assert len(ledger.pending) == 0
    assert len(roots) == 1
