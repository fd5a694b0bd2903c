"""Finalizing a cut that is only part of the provisional state (the loaded case: ops keep
arriving between a proposal and its decision) gives exactly the states a node that saw only the
cut before the checkpoint has, whichever of finalize's three ways it takes."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmd.protocol.ledger import CUT_CACHE_ENTRIES_MAX, Ledger
from swarmd.protocol.ops import Op

from .helpers import author, feed, make_council
from .test_ledger import GENESIS, fresh, members, scenario_ops


def finalize_heads(ledger: Ledger, heads: list[tuple[bytes, int, bytes]]) -> bytes:
    """Check and finalize the cut with these heads, as node_core does; returns its root."""
    root, closure = ledger.derive_cut(heads)
    ledger.finalize(ledger.final_height + 1, closure)
    return root


def states(ledger: Ledger) -> tuple[bytes, bytes, list[bytes]]:
    return ledger.final_state.root(), ledger.state_root(), sorted(ledger.applied_ids())


def reference_for(ops: list[Op], cut_at: int) -> Ledger:
    """A node that had only the cut's ops when the checkpoint came, then got the rest."""
    ledger = fresh()
    feed(ledger, ops[:cut_at])
    finalize_heads(ledger, ledger.unfinalized_heads())
    feed(ledger, ops[cut_at:])
    return ledger


@pytest.mark.gate("la-partial-cut")
@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=40))
def test_a_partial_cut_finalizes_to_the_same_states(seed: int, cut_at: int) -> None:
    ops = scenario_ops(seed)
    cut_at = min(cut_at, len(ops) - 1)
    ledger = fresh()
    feed(ledger, ops[:cut_at])
    heads = ledger.unfinalized_heads()  # proposed now ...
    feed(ledger, ops[cut_at:])  # ... decided after more ops arrived
    root = finalize_heads(ledger, heads)
    ledger.check_invariants()
    reference = reference_for(ops, cut_at)
    assert ledger.final_state.root() == root
    assert states(ledger) == states(reference)


def transfers_workload(rng: random.Random, people: int, steps: int) -> list[Op]:
    """Grants, then transfers that receive their credits: nothing depends on the final line."""
    council = members()
    folks = [author(GENESIS, f"t{rng.random()}-{i}") for i in range(people)]
    ops: list[Op] = []
    unreceived: dict[bytes, list[bytes]] = {p.key: [] for p in folks}
    for i, person in enumerate(folks):
        grant = council[i % len(council)].grant(person.key, 100)
        ops.append(grant)
        unreceived[person.key].append(grant.op_id)
    for _ in range(steps):
        payer, payee = rng.sample(folks, 2)
        receive, unreceived[payer.key] = unreceived[payer.key], []
        op = payer.transfer(payee.key, 1, receive=receive)
        unreceived[payee.key].append(op.op_id)
        ops.append(op)
    return ops


def test_a_stable_remainder_is_kept_without_a_rederivation() -> None:
    rng = random.Random(3)
    for _ in range(10):
        ops = transfers_workload(rng, 6, 40)
        cut_at = rng.randrange(7, len(ops) - 1)
        ledger = fresh()
        feed(ledger, ops[:cut_at])
        heads = ledger.unfinalized_heads()
        feed(ledger, ops[cut_at:])
        before = ledger.stats.rederivations
        root = finalize_heads(ledger, heads)
        assert ledger.stats.rederivations == before  # the provisional state was kept
        assert ledger.unfinalized_count() == len(ops) - cut_at
        assert ledger.final_state.root() == root
        assert states(ledger) == states(reference_for(ops, cut_at))
        # The depths were re-counted from the new final line: the next cut agrees too.
        assert finalize_heads(ledger, ledger.unfinalized_heads()) == ledger.state_root()
        ledger.check_invariants()


def test_a_remainder_naming_a_now_final_non_credit_is_rederived() -> None:
    """A dep that turns final must be a credit or a claim: the full re-derivation rejects the
    op (dep_final_unusable) exactly as a node receiving it after the checkpoint does."""
    _, council = make_council(4, signup_reward=100, grants_per_member_per_window=3)
    alice, bob = author(GENESIS, "fin-alice"), author(GENESIS, "fin-bob")
    grant_a, grant_b = council[0].grant(alice.key, 100), council[1].grant(bob.key, 100)
    burn = alice.burn(5, "x", receive=[grant_a.op_id])
    naming = bob.transfer(alice.key, 1, receive=[grant_b.op_id, burn.op_id])
    ops = [grant_a, grant_b, burn, naming]
    ledger = fresh()
    feed(ledger, ops[:3])
    heads = [h for h in ledger.unfinalized_heads() if h[0] != bob.key]  # bob's grant stays out
    assert [o.status for o in feed(ledger, ops[3:])] == ["accepted"]
    before = ledger.stats.rederivations
    finalize_heads(ledger, heads)
    assert ledger.stats.rederivations == before + 1
    assert ledger.status_of(naming.op_id)[0] != "applied"
    late = fresh()
    feed(late, ops[:3])
    finalize_heads(late, [h for h in late.unfinalized_heads() if h[0] != bob.key])
    assert feed(late, ops[3:])[0].code == "dep_final_unusable"
    assert states(ledger) == states(late)


def test_more_cuts_than_the_cache_holds_still_derive_correctly() -> None:
    rng = random.Random(5)
    ops = transfers_workload(rng, 8, 30)
    ledger = fresh()
    snapshots = []
    fed = 0
    for stop in range(10, len(ops), 3):
        feed(ledger, ops[fed:stop])
        fed = stop
        snapshots.append((stop, ledger.unfinalized_heads()))
    assert len(snapshots) > CUT_CACHE_ENTRIES_MAX + 1
    feed(ledger, ops[fed:])
    roots = [ledger.derive_cut(heads)[0] for _, heads in snapshots]
    roots_again = [ledger.derive_cut(heads)[0] for _, heads in snapshots]  # evicted, recomputed
    assert roots == roots_again
    for (stop, _), root in zip(snapshots, roots, strict=True):
        other = fresh()
        feed(other, ops[:stop])
        assert other.state_root() == root
    stop, heads = snapshots[2]
    assert finalize_heads(ledger, heads) == roots[2]
    assert states(ledger) == states(reference_for(ops, stop))


def test_an_incomplete_closure_is_walked_again_once_a_missing_op_arrives() -> None:
    rng = random.Random(9)
    ops = transfers_workload(rng, 4, 12)
    full = fresh()
    feed(full, ops)
    heads = full.unfinalized_heads()
    expected, _ = full.cut_closure([head for _, _, head in heads])
    ledger = fresh()
    feed(ledger, ops[:-3])
    head_ids = [head for _, _, head in heads]
    for arrived in range(3, -1, -1):
        closure, missing = ledger.cut_closure(head_ids)
        again = ledger.cut_closure(head_ids)  # remembered: the same answer
        assert (closure, missing) == again
        assert missing and len(closure) < len(expected) if arrived else not missing
        if arrived:
            feed(ledger, [ops[-arrived]])
    assert ledger.cut_closure(head_ids)[0] == expected
    assert ledger.derive_cut(heads)[0] == full.state_root()
