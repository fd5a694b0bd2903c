"""A checkpoint costs O(ops in the cut + records they touch), not O(accounts) (issue 13).

Proven by counting the records the ledger copies and merges (`LedgerStats.work`), never by
timing: the state holds 50,000 accounts and each cut a few dozen ops.
"""

from __future__ import annotations

import pytest

from swarmd.protocol import crypto, limits
from swarmd.protocol.errors import LocalProtocolError
from swarmd.protocol.ledger import Ledger, LedgerConfig
from swarmd.protocol.ledger.snapshot import state_from_records, state_records
from swarmd.protocol.ledger.state import LedgerState
from swarmd.protocol.wallet import Author

from .helpers import author, make_council

ACCOUNTS = 50_000
SIGNERS = 20
FUNDS = 1_000

GENESIS, _ = make_council(signup_reward=FUNDS)


def big_ledger(config: LedgerConfig | None = None) -> tuple[Ledger, list[Author]]:
    """A ledger restored over ACCOUNTS funded accounts (the signers' first), built directly."""
    signers = [author(GENESIS, f"scale-{index}") for index in range(SIGNERS)]
    state = LedgerState()
    keys = [signer.key for signer in signers]
    keys += [crypto.sha256(b"scale/%d" % index) for index in range(ACCOUNTS - SIGNERS)]
    for key in keys:
        account = state.account(key)
        account.balance = account.spendable = FUNDS
        account.granted = True
    state.add_granted(FUNDS * ACCOUNTS)
    return Ledger.restore_final(GENESIS, state, 0, config), signers


def transfer_round(ledger: Ledger, signers: list[Author], shift: int) -> None:
    for index, signer in enumerate(signers):
        to = signers[(index + shift) % len(signers)].key
        assert ledger.receive_verified(signer.transfer(to, 1), 0.0).status == "accepted"


def work(ledger: Ledger) -> int:
    return ledger.stats.work.copied + ledger.stats.work.merged


def checkpoint(ledger: Ledger, heads: list[tuple[bytes, int, bytes]]) -> int:
    """Finalize the cut with these heads as node_core does; returns the records it cost."""
    before = work(ledger)
    root, closure = ledger.derive_cut(heads)
    ledger.finalize(ledger.final_height + 1, closure)
    assert ledger.final_state.root() == root
    return work(ledger) - before


def test_whole_cut_checkpoints_touch_only_the_cut() -> None:
    ledger, signers = big_ledger()
    for shift in (1, 2, 3):
        before = work(ledger)
        transfer_round(ledger, signers, shift)
        admitted = work(ledger) - before
        heads = ledger.unfinalized_heads()
        assert len(heads) == SIGNERS
        cost = checkpoint(ledger, heads)
        # Each transfer writes its author's and its recipient's account and one conflict key.
        assert SIGNERS <= admitted <= 2 * SIGNERS
        assert SIGNERS <= cost <= 3 * SIGNERS, cost
        assert ledger.unfinalized_count() == 0
    assert len(ledger.final_state.accounts) == ACCOUNTS
    assert ledger.final_state.balance(signers[0].key) == FUNDS
    # The final state is the one a whole copy would give (same root from scratch).
    assert ledger.final_state.copy().root() == ledger.final_state.root()


def test_partial_cut_checkpoint_touches_only_the_cut() -> None:
    """The cut holds the first half of the authors; the rest stays provisional, untouched."""
    ledger, signers = big_ledger()
    transfer_round(ledger, signers, 1)
    provisional_root = ledger.state_root()
    heads = ledger.unfinalized_heads()
    half = [head for head in heads if head[0] in {s.key for s in signers[: SIGNERS // 2]}]
    # Credits received nothing, so no op of the rest depends on the cut: the stable way.
    rederivations = ledger.stats.rederivations
    cost = checkpoint(ledger, half)
    assert ledger.stats.rederivations == rederivations
    assert cost <= 3 * SIGNERS, cost
    assert ledger.unfinalized_count() == SIGNERS - len(half)
    assert ledger.state_root() == provisional_root
    assert sorted(head[0] for head in ledger.unfinalized_heads()) == sorted(
        s.key for s in signers[SIGNERS // 2 :]
    )
    cost = checkpoint(ledger, ledger.unfinalized_heads())
    assert cost <= 3 * SIGNERS, cost
    assert ledger.final_state.root() == provisional_root


def root_from_scratch(state: LedgerState) -> bytes:
    """The root of `state`'s records hashed into a new tree (no shared buckets or pages)."""
    return state_from_records(state_records(state), check_keys=False).root()


def test_a_partial_cut_decided_elsewhere_keeps_the_provisional_tree_exact() -> None:
    """A cut finalized straight from a decision (no `derive_cut` here first): its derivation's
    records reach its tree only when it is merged, and the provisional state, an overlay on
    the same final state, must keep its view of those buckets (state_tree.StateTree.pin): one
    it reads through would already hold the value it then writes, stay clean, and keep its
    old hash in the root."""
    ledger, signers = big_ledger()
    transfer_round(ledger, signers, 1)
    # (No root asked for since the ops were applied: the provisional records are not in its
    # tree yet, and those the cut wrote will be found there unchanged after the merge.)
    half = {s.key for s in signers[: SIGNERS // 2]}
    heads = [head for head in ledger.unfinalized_heads() if head[0] in half]
    closure, missing = ledger.cut_closure([head for _, _, head in heads])
    assert not missing
    rederivations = ledger.stats.rederivations
    ledger.finalize(1, closure)
    assert ledger.stats.rederivations == rederivations  # the stable way: the live state kept
    assert ledger.state_root() == root_from_scratch(ledger.state)
    assert ledger.final_state.root() == root_from_scratch(ledger.final_state)


def test_final_ops_leave_the_per_op_bookkeeping() -> None:
    """After many checkpoints, depths and conflict keys are held for the last cut at most,
    not for every op ever applied."""
    ledger, signers = big_ledger()
    rounds = 5
    for shift in range(1, rounds + 1):
        transfer_round(ledger, signers, shift)
        checkpoint(ledger, ledger.unfinalized_heads())
    counts = ledger.bookkeeping_counts()
    assert ledger.applied_count() == rounds * SIGNERS
    assert counts["depths"] <= SIGNERS, counts  # the last cut's, for canonical_order
    assert counts["final_conflict_keys"] == 0, counts
    assert counts["live_conflict_keys"] == 0, counts
    assert counts["checked"] == counts["excluded"] == 0, counts
    # One provisional op: its bookkeeping is there, and it leaves at the next checkpoint.
    assert ledger.receive_verified(signers[0].transfer(signers[1].key, 1), 0.0).status == (
        "accepted"
    )
    counts = ledger.bookkeeping_counts()
    assert counts["live_conflict_keys"] == counts["checked"] == 1, counts
    checkpoint(ledger, ledger.unfinalized_heads())
    assert ledger.bookkeeping_counts()["depths"] == 1


def test_final_op_bodies_held_are_bounded_whatever_the_history() -> None:
    """After N checkpoints the ledger holds the bodies of the newest `final_bodies_heights`
    heights only (the ids stay: a final op sent again is a duplicate, not a new op)."""
    window = 3
    signers = [author(GENESIS, f"bodies-{index}") for index in range(SIGNERS)]
    state = LedgerState()
    for signer in signers:
        account = state.account(signer.key)
        account.balance = account.spendable = FUNDS
        account.granted = True
    state.add_granted(FUNDS * SIGNERS)
    ledger = Ledger.restore_final(GENESIS, state, 0, LedgerConfig(final_bodies_heights=window))
    first_ids: list[bytes] = []
    held_after: dict[int, int] = {}
    for height in range(1, 31):
        ops = [
            signer.transfer(signers[(index + 1) % SIGNERS].key, 1)
            for index, signer in enumerate(signers)
        ]
        for op in ops:
            assert ledger.receive_verified(op, 0.0).status == "accepted"
        if height == 1:
            first_ids = [op.op_id for op in ops]
            first_envelope = ops[0].envelope
        checkpoint(ledger, ledger.unfinalized_heads())
        held_after[height] = ledger.bodies_held()
    # SIGNERS ops a height: never more than the window's heights of bodies, at 10 or 30.
    assert held_after[10] == held_after[30] == window * SIGNERS
    assert all(held <= window * SIGNERS for held in held_after.values())
    # The ids left with the bodies (tests/protocol/test_final_ids.py): a final op sent again
    # is still never a new op. This one is a credit its recipient has not received, so the
    # final state names it and it is held as final again, as on a restored ledger.
    assert ledger.op(first_ids[0]) is None and not ledger.is_final(first_ids[0])
    assert ledger.applied_count() == 30 * SIGNERS
    outcome = ledger.receive_op(first_envelope, 0.0)
    assert (outcome.status, outcome.detail) == ("duplicate", "final")
    assert ledger.is_final(first_ids[0])
    ledger.check_invariants()


def test_the_final_bodies_window_is_bounded_by_the_bundles_a_core_may_serve() -> None:
    """By default every bundle a core may keep has its ops' bodies in memory (so a core
    without a store serves catch-up as before); no config may ask for more."""
    assert LedgerConfig().final_bodies_heights == limits.FINAL_OP_BODIES_HEIGHTS_MAX
    assert limits.FINAL_OP_BODIES_HEIGHTS_MAX == limits.BUNDLES_KEPT_MAX
    LedgerConfig(final_bodies_heights=limits.FINAL_OP_BODIES_HEIGHTS_MAX)
    for heights in (0, limits.FINAL_OP_BODIES_HEIGHTS_MAX + 1):
        with pytest.raises(LocalProtocolError, match="final_bodies_heights"):
            LedgerConfig(final_bodies_heights=heights)


def small_ledger() -> tuple[Ledger, list[Author]]:
    signers = [author(GENESIS, f"frozen-{index}") for index in range(SIGNERS)]
    state = LedgerState()
    for signer in signers:
        account = state.account(signer.key)
        account.balance = account.spendable = FUNDS
        account.granted = True
    state.add_granted(FUNDS * SIGNERS)
    return Ledger.restore_final(GENESIS, state, 0), signers


def test_a_frozen_final_state_is_read_while_checkpoints_go_on_without_a_copy() -> None:
    """`freeze_final` hands the final state to a snapshot builder as it is: later checkpoints
    write into a layer above it (no record copied to freeze), and `thaw_final` writes the
    layer back; every root is the one a ledger that never froze computes."""
    ledger, signers = small_ledger()
    control, control_signers = small_ledger()
    for shift in (1, 2):
        transfer_round(ledger, signers, shift)
        transfer_round(control, control_signers, shift)
        checkpoint(ledger, ledger.unfinalized_heads())
        checkpoint(control, control.unfinalized_heads())
    copied, merged = ledger.stats.work.copied, ledger.stats.work.merged
    frozen = ledger.freeze_final()
    assert frozen is not None and frozen is ledger.final_state.base
    assert (ledger.stats.work.copied, ledger.stats.work.merged) == (copied, merged)
    records = state_records(frozen)
    assert ledger.freeze_final() is None  # one frozen version at a time
    for shift in (3, 4, 5):
        transfer_round(ledger, signers, shift)
        transfer_round(control, control_signers, shift)
        checkpoint(ledger, ledger.unfinalized_heads())
        checkpoint(control, control.unfinalized_heads())
        assert ledger.final_state.root() == control.final_state.root()
    assert state_records(frozen) == records  # nothing wrote the frozen state
    merged = ledger.stats.work.merged
    assert not ledger.thaw_final(LedgerState())  # not its frozen version
    assert ledger.thaw_final(frozen)
    assert ledger.final_state is frozen and ledger.stats.work.merged - merged <= 3 * SIGNERS
    assert frozen.root() == control.final_state.root()
    transfer_round(ledger, signers, 6)
    transfer_round(control, control_signers, 6)
    assert ledger.state_root() == control.state_root()
    checkpoint(ledger, ledger.unfinalized_heads())
    checkpoint(control, control.unfinalized_heads())
    assert ledger.final_state.root() == control.final_state.root()
    ledger.check_invariants()


def test_final_ids_held_are_bounded_whatever_the_history() -> None:
    """On 50k accounts, the final ids (duplicate detection, `is_final`) are held for the
    newest `final_bodies_heights` heights only: the same count after 10 and 30 checkpoints,
    while `applied_count` still counts every op ever applied."""
    window = 4
    ledger, signers = big_ledger(LedgerConfig(final_bodies_heights=window))
    held: dict[int, dict[str, int]] = {}
    for height in range(1, 31):
        transfer_round(ledger, signers, height % (SIGNERS - 1) + 1)
        checkpoint(ledger, ledger.unfinalized_heads())
        held[height] = ledger.bookkeeping_counts()
    assert held[10] == held[30], (held[10], held[30])
    assert held[30]["final_ids"] == held[30]["final_lines"] == window * SIGNERS, held[30]
    assert all(counts["final_ids"] <= window * SIGNERS for counts in held.values())
    assert ledger.applied_count() == 30 * SIGNERS
    assert len(ledger.applied_ids()) == window * SIGNERS
    assert ledger.unfinalized_count() == 0
    ledger.check_invariants()


def test_an_account_without_unreceived_credits_holds_no_dict_for_them() -> None:
    """Most accounts of a large state have no unreceived credit: they share one read-only
    empty mapping instead of an empty dict each (64 bytes, and one more object to copy and
    free per checkpointed account)."""
    state = LedgerState()
    first, second = state.account(b"\x01" * 32), state.account(b"\x02" * 32)
    assert first.unreceived is second.unreceived and len(first.unreceived) == 0
    empty_sum = first.unreceived_sum
    first.add_unreceived(b"c" * 32, 5)
    assert dict(first.unreceived) == {b"c" * 32: 5} and len(second.unreceived) == 0
    copy = first.copy()
    assert first.remove_unreceived(b"c" * 32) == 5
    assert first.unreceived is second.unreceived and first.unreceived_sum == empty_sum
    assert dict(copy.unreceived) == {b"c" * 32: 5} and copy.unreceived_sum != empty_sum
    with pytest.raises(KeyError):
        first.remove_unreceived(b"c" * 32)
    with pytest.raises(TypeError):
        first.unreceived[b"d" * 32] = 1  # type: ignore[index]
