"""Ledger state <-> snapshot records: round trips, determinism, splitting, fuzzing, chunking."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmd.protocol import encoding, snapshot
from swarmd.protocol.errors import LocalProtocolError, RemoteProtocolError
from swarmd.protocol.ledger import Ledger
from swarmd.protocol.ledger.snapshot import (
    RECORD_ACCOUNT,
    RECORD_BINDING,
    RECORD_BURN,
    RECORD_CLAIM,
    RECORD_MODE_VOTE,
    RECORD_SIZE_BYTES_MAX,
    RECORD_TOTALS,
    RECORD_UNRECEIVED,
    UNRECEIVED_CREDITS_PER_RECORD_MAX,
    SnapshotRecordError,
    state_from_records,
    state_records,
)
from swarmd.protocol.ledger.state import Claim, LedgerState
from swarmd.protocol.ops import Op
from swarmd.protocol.snapshot import build_manifest, split_chunk

from .helpers import author, feed, keypair, make_council

GENESIS, MEMBERS = make_council(4, signup_reward=100, grants_per_member_per_window=50)
HANDLES = ("zed", "yan", "neo")


def workload(seed: int, people_count: int, steps: int) -> list[Op]:
    """Random ops of every kind: grants, transfers, burns, forks, claims, endorsements,
    revocations and mode votes (some of them invalid, which the ledger rejects)."""
    rng = random.Random(seed)
    council = make_council(4, signup_reward=100, grants_per_member_per_window=50)[1]
    people = [author(GENESIS, f"w{seed}-{i}") for i in range(people_count)]
    credits: dict[bytes, list[bytes]] = {p.key: [] for p in people}
    claims: list[Op] = []
    ops: list[Op] = []
    for person in people:
        grant = rng.choice(council).grant(person.key, 100)
        ops.append(grant)
        credits[person.key].append(grant.op_id)
    for _ in range(steps):
        payer, payee = rng.sample(people, 2)
        receive, credits[payer.key] = credits[payer.key][:3], credits[payer.key][3:]
        roll = rng.random()
        if roll < 0.4:
            op = payer.transfer(payee.key, rng.randint(1, 80), receive=receive)
            credits[payee.key].append(op.op_id)
        elif roll < 0.55:
            op = payer.burn(rng.randint(1, 40), rng.choice(["a", "b", "c"]), receive=receive)
        elif roll < 0.7:
            op = payer.claim(rng.choice(HANDLES), deps=receive)
            claims.append(op)
            ops.extend(m.endorse(op) for m in rng.sample(council, rng.randint(1, len(council))))
        elif roll < 0.78 and claims:
            op = rng.choice(council).revoke(rng.choice(claims))
        elif roll < 0.86:
            member = rng.choice(council)
            op = member.quiesce("drill") if rng.random() < 0.6 else member.resume("done")
        else:  # a fork: two ops at the same seq spending the same credits
            twin = author(GENESIS, "twin")
            twin.keypair, twin.seq, twin.head = payer.keypair, payer.seq, payer.head
            ops.append(twin.transfer(payee.key, rng.randint(1, 50), receive=receive))
            op = payer.burn(rng.randint(1, 50), "fork", receive=receive)
        ops.append(op)
    return ops


def rich_workload() -> list[Op]:
    """A workload (found by trying seeds) that leaves every record type in the state: two bound
    handles, mode votes with the council quiesced, tallies, unreceived credits, and forks."""
    return workload(6, 5, 40)


def ledger_of(ops: list[Op]) -> Ledger:
    ledger = Ledger(GENESIS)
    feed(ledger, ops)
    ledger.check_invariants()
    return ledger


workloads = st.builds(
    workload,
    seed=st.integers(min_value=0, max_value=2**32),
    people_count=st.integers(min_value=2, max_value=6),
    steps=st.integers(min_value=0, max_value=40),
)


def record_type(record: bytes) -> int:
    kind: int = encoding.decode(record)[0]
    return kind


# --- round trips -------------------------------------------------------------------------------


@given(workloads)
def test_round_trip_of_random_ledgers_keeps_the_root_and_every_field(ops: list[Op]) -> None:
    ledger = ledger_of(ops)
    records = state_records(ledger.state)
    assert all(len(record) <= RECORD_SIZE_BYTES_MAX for record in records)
    rebuilt = state_from_records(records)
    assert rebuilt.root() == ledger.state_root()
    assert state_records(rebuilt) == records  # the encoding is canonical
    original = ledger.state
    assert rebuilt.claims == original.claims
    assert rebuilt.bindings == original.bindings
    assert rebuilt.mode_votes == original.mode_votes
    assert rebuilt.burn_tallies == original.burn_tallies
    assert (rebuilt.granted, rebuilt.burned, rebuilt.quiesced) == (
        original.granted,
        original.burned,
        original.quiesced,
    )
    for key, account in original.accounts.items():
        assert rebuilt.accounts[key].as_list() == account.as_list()
        assert rebuilt.accounts[key].unreceived == account.unreceived
    assert rebuilt.accounts.keys() == original.accounts.keys()


@given(workloads, st.randoms(use_true_random=False))
def test_records_are_deterministic_for_one_op_set(ops: list[Op], rnd: random.Random) -> None:
    ledger = ledger_of(ops)
    records = state_records(ledger.state)
    assert state_records(ledger.state) == records
    shuffled = list(ops)
    rnd.shuffle(shuffled)
    assert state_records(ledger_of(shuffled).state) == records


def test_records_are_sorted_by_type_then_key() -> None:
    ops = rich_workload()
    ledger = ledger_of(ops)
    records = state_records(ledger.state)
    kinds = [record_type(record) for record in records]
    assert kinds == sorted(kinds)
    assert kinds[-1] == RECORD_TOTALS and kinds.count(RECORD_TOTALS) == 1
    accounts = [encoding.decode(r)[1] for r in records if record_type(r) == RECORD_ACCOUNT]
    assert accounts == sorted(ledger.state.accounts)
    assert set(kinds) == set(range(RECORD_ACCOUNT, RECORD_TOTALS + 1)) - {RECORD_UNRECEIVED}
    assert len(ledger.state.bindings) == 2 and ledger.state.quiesced


def test_empty_state_round_trips() -> None:
    state = LedgerState()
    records = state_records(state)
    assert [record_type(r) for r in records] == [RECORD_TOTALS]
    assert state_from_records(records).root() == state.root()


# --- large unreceived sets -------------------------------------------------------------------


def state_with_unreceived(count: int, seed: int = 0) -> LedgerState:
    rng = random.Random(seed)
    state = LedgerState()
    account = state.account(keypair("rich").public_key)
    for _ in range(count):
        account.add_unreceived(rng.randbytes(32), 1 + rng.randrange(1000))
    account.balance = sum(account.unreceived.values())
    state.add_granted(account.balance)
    return state


@pytest.mark.parametrize(
    ("count", "record_count"),
    [
        (0, 1),
        (UNRECEIVED_CREDITS_PER_RECORD_MAX, 1),
        (UNRECEIVED_CREDITS_PER_RECORD_MAX + 1, 2),
        (3 * UNRECEIVED_CREDITS_PER_RECORD_MAX, 3),
        (3 * UNRECEIVED_CREDITS_PER_RECORD_MAX + 7, 4),
    ],
)
def test_large_unreceived_sets_are_split_into_parts(count: int, record_count: int) -> None:
    state = state_with_unreceived(count)
    records = state_records(state)
    account_records = records[:-1]  # the last one is the totals record
    assert len(account_records) == record_count
    assert [record_type(r) for r in account_records] == [RECORD_ACCOUNT] + [RECORD_UNRECEIVED] * (
        record_count - 1
    )
    assert all(len(record) <= RECORD_SIZE_BYTES_MAX for record in records)
    rebuilt = state_from_records(records)
    assert rebuilt.root() == state.root()
    key = keypair("rich").public_key
    assert rebuilt.accounts[key].unreceived == state.accounts[key].unreceived


def test_missing_reordered_or_foreign_unreceived_parts_are_rejected() -> None:
    records = state_records(state_with_unreceived(3 * UNRECEIVED_CREDITS_PER_RECORD_MAX + 7))
    account, part1, part2, part3, totals = records
    for broken in (
        [account, part1, part3, totals],  # a gap
        [account, part1, part2, totals],  # the last part missing
        [account, part2, part1, part3, totals],  # out of order
        [account, part1, part1, part2, part3, totals],  # duplicated
        [part1, part2, part3, totals],  # no account
    ):
        with pytest.raises(SnapshotRecordError):
            state_from_records(broken)
    # A part moved to another account.
    value = encoding.decode(part1)
    value[1] = keypair("other").public_key
    with pytest.raises(SnapshotRecordError):
        state_from_records([account, encoding.encode(value), part2, part3, totals])


def test_parts_must_be_full_and_credit_ids_ascending_across_parts() -> None:
    records = state_records(state_with_unreceived(UNRECEIVED_CREDITS_PER_RECORD_MAX + 5))
    account, part1, totals = records
    first, second = encoding.decode(account), encoding.decode(part1)
    # Move one credit from the full first part into the second: both parts are malformed.
    moved = first[10][-40:]
    first[10], second[3] = first[10][:-40], moved + second[3]
    with pytest.raises(SnapshotRecordError):
        state_from_records([encoding.encode(first), encoding.encode(second), totals])
    # Swap the credits of the two parts, keeping sizes: ids are no longer ascending overall.
    first, second = encoding.decode(account), encoding.decode(part1)
    first[10] = second[3] + first[10][len(second[3]) :]
    second[3] = encoding.decode(account)[10][: len(second[3])]
    with pytest.raises(SnapshotRecordError):
        state_from_records([encoding.encode(first), encoding.encode(second), totals])


# --- consistency checks ----------------------------------------------------------------------


def replaced(records: list[bytes], index: int, position: int, new: object) -> list[bytes]:
    value = encoding.decode(records[index])
    value[position] = new
    return [*records[:index], encoding.encode(value), *records[index + 1 :]]


def test_inconsistent_states_are_rejected() -> None:
    ledger = ledger_of(rich_workload())
    records = state_records(ledger.state)
    kinds = [record_type(r) for r in records]
    first_account = kinds.index(RECORD_ACCOUNT)
    binding = kinds.index(RECORD_BINDING)
    totals = len(records) - 1
    balance = encoding.decode(records[first_account])[2]
    for broken in (
        replaced(records, first_account, 2, balance + 1),  # supply no longer adds up
        replaced(records, first_account, 3, balance + 1),  # spendable above balance
        replaced(records, first_account, 1, b"\x00" * 32),  # not a valid key (and order)
        replaced(records, binding, 3, b"\x01" * 32),  # binding names an unknown claim
        replaced(records, totals, 2, ledger.state.burned + 1),  # burned != sum of tallies
        replaced(records, totals, 3, 1),  # quiesced must be a bool
        records[:-1],  # no totals
        [*records, records[-1]],  # two totals
        [encoding.encode([99, b""]), *records],  # unknown type
        [records[1], records[0], *records[2:]],  # out of order
    ):
        with pytest.raises(SnapshotRecordError):
            state_from_records(broken)


def test_binding_must_match_its_claim() -> None:
    state = LedgerState()
    alice, bob = keypair("alice").public_key, keypair("bob").public_key
    state.put_claim(b"\x05" * 32, Claim("neo", alice, {MEMBERS[0].key}, [(0, 1, b"\x06" * 32)]))
    state.bind("neo", bob, b"\x05" * 32)  # owner is not the claimant
    with pytest.raises(SnapshotRecordError):
        state_from_records(state_records(state))
    state.bind("neo", alice, b"\x05" * 32)
    assert state_from_records(state_records(state)).root() == state.root()


# --- fuzzing: parse or raise a RemoteProtocolError subclass ----------------------------------

FUZZ_RECORDS = state_records(ledger_of(rich_workload()).state)


def parses_or_raises_remote_error(records: list[bytes]) -> None:
    try:
        state = state_from_records(records)
    except RemoteProtocolError as exc:
        assert exc.code == "snapshot_record_invalid"
    else:
        state.root()


@given(st.data())
def test_fuzz_byte_mutations(data: st.DataObject) -> None:
    records = list(FUZZ_RECORDS)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        index = data.draw(st.integers(min_value=0, max_value=len(records) - 1))
        record = bytearray(records[index])
        if not record:  # emptied by an earlier truncation
            continue
        action = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
        position = data.draw(st.integers(min_value=0, max_value=len(record) - 1))
        if action == "flip":
            record[position] ^= data.draw(st.integers(min_value=1, max_value=255))
        elif action == "truncate":
            del record[position:]
        else:
            record[position:position] = data.draw(st.binary(min_size=1, max_size=8))
        records[index] = bytes(record)
    parses_or_raises_remote_error(records)


@given(st.data())
def test_fuzz_record_list_mutations(data: st.DataObject) -> None:
    records = list(FUZZ_RECORDS)
    index = data.draw(st.integers(min_value=0, max_value=len(records) - 1))
    action = data.draw(st.sampled_from(["drop", "duplicate", "swap", "replace"]))
    if action == "drop":
        del records[index]
        parses_or_raises_remote_error(records)
        return
    if action == "duplicate":
        records.insert(index, records[index])
    elif action == "swap":
        other = data.draw(st.integers(min_value=0, max_value=len(records) - 1).filter(
            lambda i: records[i] != records[index]
        ))  # fmt: skip
        records[index], records[other] = records[other], records[index]
    else:
        records[index] = encoding.encode(data.draw(record_values))
        parses_or_raises_remote_error(records)
        return
    with pytest.raises(SnapshotRecordError):
        state_from_records(records)


leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.binary(max_size=70),
    st.sampled_from([b"\x00" * 32, MEMBERS[0].key, MEMBERS[1].key, keypair("alice").public_key]),
    st.text(max_size=40),
    st.sampled_from(list(HANDLES)),
)
record_values = st.builds(
    lambda kind, rest: [kind, *rest],
    st.integers(min_value=0, max_value=9),
    st.lists(
        st.one_of(leaves, st.lists(leaves, max_size=3), st.dictionaries(st.text(), leaves)),
        max_size=11,
    ),
)


@given(st.lists(record_values, max_size=6))
def test_fuzz_structured_records(values: list[list[object]]) -> None:
    parses_or_raises_remote_error([encoding.encode(value) for value in values])


@given(st.lists(st.binary(max_size=64), max_size=4))
def test_fuzz_arbitrary_bytes(records: list[bytes]) -> None:
    parses_or_raises_remote_error(records)


def test_non_bytes_and_oversized_records_are_remote_errors() -> None:
    with pytest.raises(SnapshotRecordError):
        state_from_records(["not bytes"])  # type: ignore[list-item]
    with pytest.raises(SnapshotRecordError):
        state_from_records([encoding.encode([RECORD_TOTALS, b"\x00" * RECORD_SIZE_BYTES_MAX])])
    with pytest.raises(SnapshotRecordError):
        state_from_records([])  # no totals record


# --- through the snapshot catalog ------------------------------------------------------------


@given(workloads)
def test_records_through_manifest_and_chunks_rebuild_the_root(ops: list[Op]) -> None:
    ledger = ledger_of(ops)
    root = ledger.state_root()
    records = state_records(ledger.state)
    manifest, chunks = build_manifest(3, b"\x07" * 32, root, records, chunk_size_bytes_max=2048)
    for index, chunk in enumerate(chunks):
        snapshot.verify_chunk(manifest, index, chunk)
    recovered = [record for chunk in chunks for record in split_chunk(chunk)]
    assert len(recovered) == manifest.record_count
    assert state_from_records(recovered).root() == manifest.state_root == root


def test_large_account_through_default_size_chunks() -> None:
    state = state_with_unreceived(5 * UNRECEIVED_CREDITS_PER_RECORD_MAX + 3, seed=4)
    records = state_records(state)
    manifest, chunks = build_manifest(9, b"\x01" * 32, state.root(), records)
    assert manifest.chunk_count >= 3  # 160 KiB of ids cannot fit fewer chunks
    recovered = [record for chunk in chunks for record in split_chunk(chunk)]
    assert state_from_records(recovered).root() == state.root()


# --- continuing from a restored snapshot -----------------------------------------------------


def checkpoint(ledger: Ledger) -> bytes:
    """Finalize every applied chain the way protocol/node_core.py does; returns the root."""
    heads = ledger.unfinalized_heads()
    closure, missing = ledger.cut_closure([head for _, _, head in heads])
    assert not missing
    root, _ = ledger.derive_cut(heads)
    ledger.finalize(ledger.final_height + 1, closure)
    assert ledger.final_state.root() == root
    return root


def restored(ledger: Ledger) -> Ledger:
    records = state_records(ledger.final_state)
    state = state_from_records(records)
    assert state.root() == ledger.final_state.root()  # hash parity
    return Ledger.restore_final(GENESIS, state, ledger.final_height)


def test_restored_ledger_continues_like_the_one_that_replayed_everything() -> None:
    council = make_council(4, signup_reward=100, grants_per_member_per_window=50)[1]
    alice, bob, carol = (author(GENESIS, name) for name in ("r-alice", "r-bob", "r-carol"))
    grant_a, grant_b = council[0].grant(alice.key, 100), council[1].grant(bob.key, 100)
    pay = alice.transfer(bob.key, 30, receive=[grant_a.op_id])
    claim_neo, claim_zed = alice.claim("neo"), bob.claim("zed", deps=[grant_b.op_id])
    grant_c = council[2].grant(carol.key, 100)  # state costs credits: the rival is funded
    rival = carol.claim("neo", deps=[grant_c.op_id])
    votes = [member.endorse(claim_neo) for member in council[:2]]
    quiesce = council[3].quiesce("drill")
    before = [grant_a, grant_b, grant_c, pay, claim_neo, claim_zed, rival, *votes, quiesce]
    full = Ledger(GENESIS)
    assert [o.status for o in feed(full, before)] == ["accepted"] * len(before)
    checkpoint(full)
    restart = restored(full)
    assert restart.state_root() == full.state_root()
    assert restart.final_height == full.final_height == 1
    # Final ops the state names (a claim, a chain head, an unreceived credit) arriving again
    # are duplicates on both, as if the restored ledger held them.
    for ledger in (full, restart):
        assert [o.status for o in feed(ledger, [claim_neo, quiesce, pay])] == ["duplicate"] * 3
    assert restart.state_root() == full.state_root()

    twin = author(GENESIS, "r-alice")  # alice's chain again: forks of final ops
    twin.seq, twin.head = 1, pay.op_id
    after = [
        bob.transfer(carol.key, 120, receive=[pay.op_id]),  # bob's next op; credits from before
        alice.burn(70, "rocket"),  # next op of a chain whose head is final
        council[2].endorse(claim_neo),  # the quorum-th endorsement of a final claim
        *(member.endorse(rival) for member in council[:3]),  # a competing claim, later
        council[0].revoke(claim_zed),  # revocation of a final claim
        council[0].endorse(claim_neo),  # already endorsed before the checkpoint
        council[1].grant(alice.key, 100),  # alice got her grant before the checkpoint
        twin.burn(1, "fork"),  # seq 2 is final: a fork that can never win
        council[3].resume("done"),  # a final mode vote replaced
    ]
    outcomes = [feed(ledger, after) for ledger in (full, restart)]
    assert [(o.status, o.code) for o in outcomes[0]] == [(o.status, o.code) for o in outcomes[1]]
    assert [o.code for o in outcomes[0]] == [
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "already_endorsed",
        "grant_conflict_lost_final",
        "fork_lost_final",
        "",
    ]
    for ledger in (full, restart):
        ledger.check_invariants()
        assert ledger.handle_owner("neo") == alice.key  # the earlier quorum keeps the handle
        assert ledger.state.claims[claim_zed.op_id].revokers == {council[0].key}
        assert ledger.balance(carol.key) == 100 + 120 and not ledger.state.quiesced
    assert state_records(restart.state) == state_records(full.state)
    assert restart.state_root() == full.state_root()
    for op in after:
        assert restart.status_of(op.op_id) == full.status_of(op.op_id)
    # Both make the next checkpoint from the same cut with the same root.
    assert restart.unfinalized_heads() == full.unfinalized_heads()
    assert checkpoint(restart) == checkpoint(full)


def test_a_credit_received_before_the_checkpoint_is_fetched_and_judged() -> None:
    """A credit received before the checkpoint is gone from the state: the restored ledger
    waits for it. Fetched while it is still its sender's final head (which the state names),
    it is held as final and the citing op is judged exactly as by the full ledger; once the
    sender moved on, the state no longer names it, so both reject the citing op, with
    different codes (docs/PROTOCOL.md section 5)."""
    council = make_council(4, signup_reward=100, grants_per_member_per_window=50)[1]
    bob, dan = author(GENESIS, "f-bob"), author(GENESIS, "f-dan")
    grant = council[1].grant(bob.key, 100)
    grant_dan = council[2].grant(dan.key, 100)
    later = council[2].quiesce("moved on")
    receive = bob.burn(10, "x", receive=[grant.op_id])
    receive_dan = dan.burn(10, "x", receive=[grant_dan.op_id])
    full = Ledger(GENESIS)
    feed(full, [grant, grant_dan, later, receive, receive_dan])
    checkpoint(full)
    restart = restored(full)
    again = bob.burn(1, "x", receive=[grant.op_id])
    again_dan = dan.burn(1, "x", receive=[grant_dan.op_id])
    codes = [o.code for o in feed(full, [again, again_dan])]
    assert codes == ["credit_already_received"] * 2
    assert [o.status for o in feed(restart, [again, again_dan])] == ["pending"] * 2
    fetched = feed(restart, [grant, grant_dan])  # from a peer
    assert [(o.status, o.detail) for o in fetched[:1]] == [("duplicate", "final")]
    assert fetched[1].status == "rejected"  # its seq is final, and the state does not name it
    assert restart.status_of(again.op_id) == ("rejected", "credit_already_received")
    assert restart.status_of(again_dan.op_id) == ("rejected", "dep_rejected")
    assert restart.state_root() == full.state_root()
    assert len(restart.pending) == 0
    restart.check_invariants()


def test_ops_pending_on_unknown_parents_wait_on_a_restored_ledger_too() -> None:
    council = make_council(4, signup_reward=100, grants_per_member_per_window=50)[1]
    alice, bob = author(GENESIS, "p-alice"), author(GENESIS, "p-bob")
    grant = council[0].grant(alice.key, 100)
    full = Ledger(GENESIS)
    feed(full, [grant])
    checkpoint(full)
    restart = restored(full)
    first = alice.transfer(bob.key, 10, receive=[grant.op_id])
    second = alice.transfer(bob.key, 5)
    for ledger in (full, restart):
        assert feed(ledger, [second])[0].status == "pending"
        assert feed(ledger, [first])[0].status == "accepted"
        assert ledger.status_of(second.op_id) == ("applied", "")
    assert restart.state_root() == full.state_root()


def test_claims_and_mode_votes_are_in_the_root() -> None:
    ledger = ledger_of(rich_workload())
    records = state_records(ledger.state)
    kinds = [record_type(r) for r in records]
    claim_index = next(
        i
        for i, record in enumerate(records)
        if kinds[i] == RECORD_CLAIM and len(encoding.decode(record)[4]) > 32
    )
    vote_index = kinds.index(RECORD_MODE_VOTE)
    endorsers = encoding.decode(records[claim_index])[4]
    vote = encoding.decode(records[vote_index])[2]
    for forged in (
        replaced(records, claim_index, 4, endorsers[32:]),  # one endorser dropped
        replaced(records, claim_index, 6, endorsers[:32]),  # a revoker invented
        replaced(records, vote_index, 2, not vote),  # a vote flipped
    ):
        assert state_from_records(forged).root() != ledger.state_root()


def test_unreceived_amounts_are_in_the_root() -> None:
    state = state_with_unreceived(5)
    records = state_records(state)
    value = encoding.decode(records[0])
    credits = bytearray(value[10])
    credits[39] ^= 1  # the first credit's amount, balance unchanged
    value[10] = bytes(credits)
    forged = state_from_records([encoding.encode(value), *records[1:]])
    assert forged.root() != state.root()


# --- pinned output -----------------------------------------------------------------------------

#: Ints of every msgpack width the records use (fixint, uint8/16/32/64).
PINNED_INTS = (0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1)


def pinned_state() -> LedgerState:
    """A fixed state built without the ledger (so ledger changes cannot move the pin) with every
    record type: accounts with ints of every width, empty and multi-part unreceived sets, claims
    with and without endorsers and revokers, non-ASCII burn targets, mode votes."""
    rng = random.Random(20261128)
    state = LedgerState()
    keys = [keypair(f"pinned-{i}").public_key for i in range(600)]
    for index, key in enumerate(keys):
        account = state.account(key)
        account.balance = rng.choice(PINNED_INTS[:-1])  # their sum, granted, stays in range
        account.spendable = rng.randint(0, account.balance)
        account.seq = rng.choice((0, 1, 2, 300, 70000))
        account.head = rng.randbytes(32) if account.seq else b""
        account.window_basis = rng.choice(PINNED_INTS)
        account.window_grants = rng.choice((0, 3, 200))
        account.granted = rng.random() < 0.5
        credit_count = (
            2 * UNRECEIVED_CREDITS_PER_RECORD_MAX + 5 if index == 7 else rng.choice((0, 0, 1, 3))
        )
        for _ in range(credit_count):
            account.add_unreceived(rng.randbytes(32), rng.randint(1, 2**63 - 1))
    state.add_granted(sum(state.accounts[key].balance for key in keys))
    handles = ("zed", "yan", "neo", "cat_9", "a-b")
    for index in range(12):
        claim_id = rng.randbytes(32)
        endorsers = set(rng.sample(keys[:8], rng.randint(0, 4)))
        endorsement_keys = sorted(
            (rng.randint(0, 2**40), rng.randint(1, 9), rng.randbytes(32)) for _ in endorsers
        )
        revokers = set(rng.sample(keys[:8], rng.randint(0, 2)))
        claim = Claim(handles[index % 5], keys[index], endorsers, endorsement_keys, revokers)
        state.put_claim(claim_id, claim)
        if index < 5:
            state.bind(claim.handle, claim.claimant, claim_id)
    for target in ("b", "a", "\u00fcber", "z" * 40):
        amount = rng.randint(1, 10**6)
        state.add_burn(target, amount)
        state.add_granted(amount)
    for member in keys[:5]:
        state.set_mode_vote(member, rng.random() < 0.5)
    state.set_quiesced(True)
    return state


def test_pinned_state_gives_pinned_records_and_manifests() -> None:
    """The snapshot of one fixed state, byte for byte: records, chunks and manifest ids with
    the default chunk size and with a small one (many content-defined and size cuts)."""
    state = pinned_state()
    records = state_records(state)
    assert len(records) == 600 + 2 + 12 + 5 + 4 + 5 + 1
    assert state_from_records(records).root() == state.root()
    joined = b"".join(len(record).to_bytes(4, "big") + record for record in records)
    assert hashlib.sha256(joined).hexdigest() == (
        "a789236afa89bb345edb2a7d8dac89ca39c69b4ea9acc6691619f031ae8d466b"
    )
    manifest, chunks = build_manifest(5, b"\x05" * 32, state.root(), records)
    assert manifest.chunk_count == 4
    assert manifest.manifest_id.hex() == (
        "0d85f61c25e1bbcf7a51cdb777ddeed8c277034c100f78e2d09b9a9186170147"
    )
    assert b"".join(chunks) == joined
    small_records = [record for record in records if len(record) <= 2048 - 4]
    assert len(small_records) == len(records) - 2  # the big account's two full parts do not fit
    manifest, chunks = build_manifest(
        5, b"\x05" * 32, state.root(), small_records, chunk_size_bytes_max=2048
    )
    assert manifest.chunk_count == 84
    assert manifest.manifest_id.hex() == (
        "11914c99bf3189949311ddadb8a7c3c3d31de53b9c48837a65e79fedabbe93aa"
    )


def reference_records(state: LedgerState) -> list[bytes]:
    """docs/parts/state.md read literally: every record's value through `encoding.encode`,
    sorted by (type, sort key). state_records is a faster form of this."""
    step = UNRECEIVED_CREDITS_PER_RECORD_MAX
    keyed: list[tuple[tuple[int, bytes], list[object]]] = []
    for key, account in state.accounts.items():
        credits = [i + a.to_bytes(8, "big") for i, a in sorted(account.unreceived.items())]
        fields = account.as_list()
        del fields[4]  # unreceived_sum is the root's, not the record's
        value = [RECORD_ACCOUNT, key, *fields, len(credits), b"".join(credits[:step])]
        keyed.append(((RECORD_ACCOUNT, key), value))
        for part, start in enumerate(range(step, len(credits), step), start=1):
            value = [RECORD_UNRECEIVED, key, part, b"".join(credits[start : start + step])]
            keyed.append(((RECORD_UNRECEIVED, key + part.to_bytes(4, "big")), value))
    for claim_id, claim in state.claims.items():
        endorsers, revokers = b"".join(sorted(claim.endorsers)), b"".join(sorted(claim.revokers))
        keys = [list(key) for key in claim.endorsement_keys]
        value = [RECORD_CLAIM, claim_id, claim.handle, claim.claimant, endorsers, keys, revokers]
        keyed.append(((RECORD_CLAIM, claim_id), value))
    for handle, binding in state.bindings.items():
        value = [RECORD_BINDING, handle, binding.owner, binding.claim_id]
        keyed.append(((RECORD_BINDING, handle.encode()), value))
    for target, total in state.burn_tallies.items():
        keyed.append(((RECORD_BURN, target.encode()), [RECORD_BURN, target, total]))
    for member, quiesce in state.mode_votes.items():
        keyed.append(((RECORD_MODE_VOTE, member), [RECORD_MODE_VOTE, member, quiesce]))
    keyed.append(
        ((RECORD_TOTALS, b""), [RECORD_TOTALS, state.granted, state.burned, state.quiesced])
    )
    keyed.sort(key=lambda item: item[0])
    return [encoding.encode(value) for _, value in keyed]


def test_pinned_state_matches_the_literal_reading_of_the_spec() -> None:
    state = pinned_state()
    assert state_records(state) == reference_records(state)


@given(workloads)
def test_records_match_the_literal_reading_of_the_spec(ops: list[Op]) -> None:
    state = ledger_of(ops).state
    assert state_records(state) == reference_records(state)


def test_records_with_an_int_out_of_range_are_a_local_error() -> None:
    state = LedgerState()
    state.account(keypair("big").public_key).balance = 2**64
    with pytest.raises(LocalProtocolError):
        state_records(state)
