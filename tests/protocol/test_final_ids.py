"""Final op ids leave memory with their height (issue 13): the ledger holds the final ids of
the newest `final_bodies_heights` heights, as it holds their bodies. An op at or below its
author's final seq is answered as before while the final op at that seq is held; once it is
not, the ledger cannot tell that final op from a fork of it, and answers both "duplicate"
(detail `final_line`) without admitting, remembering or reporting them."""

from __future__ import annotations

from swarmd.protocol.ledger import Ledger, LedgerConfig
from swarmd.protocol.wallet import Author

from .helpers import author, feed, fund, make_council

GENESIS, _ = make_council(signup_reward=1_000)
WINDOW = 2


def finalize_all(ledger: Ledger) -> None:
    _, closure = ledger.derive_cut(ledger.unfinalized_heads())
    ledger.finalize(ledger.final_height + 1, closure)


def burns_one_a_height(ledger: Ledger, alice: Author, heights: int) -> list:
    """Alice's signup grant, then one burn of hers per height (a burn names nothing in the
    state once it is not her head)."""
    burns = []
    council = make_council(signup_reward=1_000)[1]  # fresh signers: seqs count from 0
    grant = fund(GENESIS, council[0], alice)
    assert feed(ledger, [grant])[0].status == "accepted"
    finalize_all(ledger)
    for index in range(heights):
        deps = [grant.op_id] if index == 0 else []
        burn = alice.burn(1, "x", receive=deps)
        assert feed(ledger, [burn])[0].status == "accepted"
        finalize_all(ledger)
        burns.append(burn)
    ledger.drain_events()
    return burns


def fork_of(alice: Author, seq: int, prev: bytes) -> Author:
    """A second signer of alice's key, at `seq - 1` with head `prev`: its next op forks."""
    return Author(alice.keypair, GENESIS.network_id, seq=seq - 1, head=prev)


def test_ops_inside_the_window_are_answered_as_before() -> None:
    ledger = Ledger(GENESIS, LedgerConfig(final_bodies_heights=WINDOW))
    alice = author(GENESIS, "ids-alice")
    burns = burns_one_a_height(ledger, alice, 6)
    held = burns[-2]  # final at the previous height: in the window, not alice's head
    assert ledger.is_final(held.op_id) and ledger.op(held.op_id) == held
    outcome = feed(ledger, [held])[0]
    assert (outcome.status, outcome.detail) == ("duplicate", "applied")
    fork = fork_of(alice, held.seq, held.prev).burn(2, "y")
    outcome = feed(ledger, [fork])[0]
    assert (outcome.status, outcome.code) == ("rejected", "fork_lost_final")
    assert ledger.status_of(fork.op_id) == ("rejected", "fork_lost_final")
    assert ledger.stats.below_final_line == 0


def test_ops_outside_the_window_are_never_admitted_nor_remembered() -> None:
    ledger = Ledger(GENESIS, LedgerConfig(final_bodies_heights=WINDOW))
    alice, bob = author(GENESIS, "ids-alice"), author(GENESIS, "ids-bob")
    burns = burns_one_a_height(ledger, alice, 6)
    old = burns[0]
    assert not ledger.is_final(old.op_id) and ledger.op(old.op_id) is None
    assert ledger.below_final_line(old)
    verified = ledger.stats.verified
    fork = fork_of(alice, old.seq, old.prev).burn(2, "y")
    for op in (old, fork):
        outcome = feed(ledger, [op])[0]
        assert (outcome.status, outcome.code, outcome.detail) == ("duplicate", "", "final_line")
        assert ledger.status_of(op.op_id) == ("unknown", "")
    assert ledger.stats.verified == verified  # answered before the signature check
    assert ledger.stats.below_final_line == 2
    assert ledger.drain_events() == []  # nothing to report, relay or log
    # An op waiting for such an op can never apply: it is rejected when that op arrives.
    waiter = bob.burn(1, "z", receive=[old.op_id])
    assert feed(ledger, [waiter])[0].status == "pending"
    feed(ledger, [old])
    assert ledger.status_of(waiter.op_id) == ("rejected", "dep_rejected")
    assert len(ledger.pending) == 0
    # The chain goes on from the head the final state names.
    assert feed(ledger, [alice.burn(1, "x")])[0].status == "accepted"
    finalize_all(ledger)
    ledger.check_invariants()


def test_a_ledger_that_holds_every_final_id_judges_old_ops_by_the_pipeline() -> None:
    """Until a ledger lets final ids go (the default window holds every height a core may
    serve), an op below the final line goes through the pipeline as before, on a restored
    ledger too (whose final ids below its snapshot it never had)."""
    full = Ledger(GENESIS)
    alice = author(GENESIS, "ids-alice")
    burns = burns_one_a_height(full, alice, 3)
    restored = Ledger.restore_final(GENESIS, full.final_state, full.final_height)
    fork = fork_of(alice, burns[0].seq, burns[0].prev).burn(2, "y")
    for ledger in (full, restored):
        outcome = feed(ledger, [fork])[0]
        assert (outcome.status, outcome.code) == ("rejected", "fork_lost_final")
        assert ledger.stats.below_final_line == 0
    assert feed(full, [burns[0]])[0].detail == "applied"
    assert feed(restored, [burns[0]])[0].code == "fork_lost_final"  # (as before issue 13)


def test_dropping_final_ids_changes_no_state_outcome_or_event() -> None:
    """The same ops and cuts (whole and partial ones, a fork that forces re-derivation at a
    partial cut) on a ledger holding one height of final ids and on one holding them all:
    the same outcomes, events and roots at every step."""
    small = Ledger(GENESIS, LedgerConfig(final_bodies_heights=1))
    whole = Ledger(GENESIS)
    alice, bob = author(GENESIS, "drop-alice"), author(GENESIS, "drop-bob")
    council = make_council(signup_reward=1_000)[1]
    grants = [fund(GENESIS, council[0], alice), fund(GENESIS, council[1], bob)]

    def both(ops: list) -> None:
        for op in ops:
            assert feed(small, [op]) == feed(whole, [op])
        assert small.drain_events() == whole.drain_events()
        assert small.state_root() == whole.state_root()

    def cut(authors: list[Author]) -> None:
        keys = {a.key for a in authors}
        for ledger in (small, whole):
            heads = [head for head in ledger.unfinalized_heads() if head[0] in keys]
            _, closure = ledger.derive_cut(heads)
            ledger.finalize(ledger.final_height + 1, closure)
        assert small.drain_events() == whole.drain_events()
        assert small.final_state.root() == whole.final_state.root()
        assert small.state_root() == whole.state_root()
        assert small.unfinalized_count() == whole.unfinalized_count()

    both(grants)
    cut([council[0], council[1]])
    both(
        [alice.burn(1, "x", receive=[grants[0].op_id]), bob.burn(1, "x", receive=[grants[1].op_id])]
    )
    cut([alice, bob])
    for _ in range(3):
        both([alice.transfer(bob.key, 2), bob.burn(1, "y")])
        cut([alice])  # partial: bob's stays provisional
        cut([bob])
    assert small.bookkeeping_counts()["final_ids"] < whole.bookkeeping_counts()["final_ids"]
    # A fork of alice's provisional op: one side is excluded, so the next partial cut
    # re-derives the provisional state above the new final one.
    head = alice.head
    both([alice.burn(1, "z"), fork_of(alice, alice.seq, head).burn(2, "z"), bob.burn(1, "y")])
    rederivations = whole.stats.rederivations
    cut([bob])
    assert whole.stats.rederivations > rederivations
    assert small.stats.rederivations == whole.stats.rederivations
    cut([alice])
    assert small.applied_count() == whole.applied_count()
    small.check_invariants()
    whole.check_invariants()
