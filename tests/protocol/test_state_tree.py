"""The bucketed Merkle tree behind the state root (swarmd.protocol.state_tree)."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmd.protocol import state_tree
from swarmd.protocol.errors import LocalProtocolError
from swarmd.protocol.state_tree import StateTree, verify_proof

# Pinned so that any change of the hashing rules is a visible, deliberate protocol change.
EMPTY_ROOT_HEX = "d83389ac9a207fb7dbdc492fbb56b9482f19170699e224be64694cc885a3a2a2"
EMPTY_BUCKET_HASH_HEX = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def key_for(number: int) -> bytes:
    return h(b"key" + number.to_bytes(8, "big"))


def reference_root(mapping: dict[bytes, bytes]) -> bytes:
    """The root computed straight from the written spec, with no incremental machinery."""
    buckets: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in mapping.items():
        buckets.setdefault(int.from_bytes(key[:2], "big"), []).append((key, value))
    level = []
    for index in range(2**16):
        entries = b"".join(k + v for k, v in sorted(buckets.get(index, [])))
        level.append(h(b"\x00" + entries))
    while len(level) > 1:
        level = [h(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def tree_of(items: list[tuple[bytes, bytes]]) -> StateTree:
    tree = StateTree()
    for key, value in items:
        tree.set(key, value)
    return tree


# Keys are drawn so that many share a bucket (same first two bytes) and some collide outright.
bucket_prefixes = st.sampled_from([b"\x00\x00", b"\x00\x01", b"\x80\x00", b"\xff\xff"])
keys = st.one_of(
    st.builds(
        lambda prefix, rest: prefix + rest, bucket_prefixes, st.binary(min_size=30, max_size=30)
    ),
    st.sampled_from([key_for(n) for n in range(8)]),
    st.binary(min_size=32, max_size=32),
)
values = st.binary(min_size=32, max_size=32)
operations = st.lists(st.tuples(keys, st.one_of(st.none(), values)), max_size=60)


def test_empty_tree_root_is_the_documented_constant() -> None:
    assert StateTree().root().hex() == EMPTY_ROOT_HEX
    assert state_tree.EMPTY_ROOT.hex() == EMPTY_ROOT_HEX
    assert state_tree.EMPTY_BUCKET_HASH.hex() == EMPTY_BUCKET_HASH_HEX
    assert h(b"\x00") == state_tree.EMPTY_BUCKET_HASH
    assert reference_root({}) == state_tree.EMPTY_ROOT


def test_root_matches_reference_implementation_of_the_spec() -> None:
    rng = random.Random(7)
    mapping = {key_for(n): h(rng.randbytes(8)) for n in range(300)}
    mapping[b"\x00\x00" + b"\x01" * 30] = h(b"a")  # same bucket as the next key, sorted first
    mapping[b"\x00\x00" + b"\x02" * 30] = h(b"b")
    mapping[b"\xff\xff" + b"\x00" * 30] = h(b"c")  # the last bucket
    tree = tree_of(list(mapping.items()))
    assert tree.root() == reference_root(mapping)
    assert len(tree) == len(mapping)


@settings(max_examples=200, deadline=None)
@given(operations, st.randoms(use_true_random=False))
def test_root_is_independent_of_order_deletes_and_overwrites(
    ops: list[tuple[bytes, bytes | None]], rng: random.Random
) -> None:
    tree = StateTree()
    expected: dict[bytes, bytes] = {}
    for position, (key, value) in enumerate(ops):
        tree.set(key, value)
        if value is None:
            expected.pop(key, None)
        else:
            expected[key] = value
        if position % 7 == 3:
            tree.root()  # interleave lazy recomputation with further changes
    assert len(tree) == len(expected)
    assert list(tree.items_sorted()) == sorted(expected.items())
    for key, _value in ops:
        assert tree.get(key) == expected.get(key)
    items = list(expected.items())
    for _ in range(5):
        rng.shuffle(items)
        assert tree_of(items).root() == tree.root()


def test_insertion_order_does_not_matter_against_reference() -> None:
    rng = random.Random(11)
    items = [(key_for(n), h(bytes([n]))) for n in range(200)]
    roots = set()
    for _ in range(10):
        rng.shuffle(items)
        roots.add(tree_of(items).root())
    assert roots == {reference_root(dict(items))}


@settings(max_examples=100, deadline=None)
@given(operations, keys, values)
def test_set_then_delete_returns_to_the_previous_root(
    ops: list[tuple[bytes, bytes | None]], key: bytes, value: bytes
) -> None:
    tree = StateTree()
    for op_key, op_value in ops:
        tree.set(op_key, op_value)
    previous_value = tree.get(key)
    before = tree.root()
    length = len(tree)
    tree.set(key, value)
    if previous_value != value:
        assert tree.root() != before
    tree.set(key, previous_value)
    assert tree.root() == before
    assert len(tree) == length


def test_deleting_everything_gives_the_empty_root() -> None:
    tree = tree_of([(key_for(n), h(bytes([n]))) for n in range(100)])
    assert tree.root() != state_tree.EMPTY_ROOT
    for n in range(100):
        tree.set(key_for(n), None)
    tree.set(key_for(1000), None)  # deleting an absent key is a no-op
    assert tree.root() == state_tree.EMPTY_ROOT
    assert len(tree) == 0
    assert list(tree.items_sorted()) == []


@settings(max_examples=100, deadline=None)
@given(operations, operations, operations)
def test_copies_are_independent(
    common: list[tuple[bytes, bytes | None]],
    original_ops: list[tuple[bytes, bytes | None]],
    copy_ops: list[tuple[bytes, bytes | None]],
) -> None:
    original = StateTree()
    for key, value in common:
        original.set(key, value)
    if len(common) % 2:
        original.root()  # copy both a settled and an unsettled (dirty) tree
    fork = original.copy()
    for key, value in original_ops:
        original.set(key, value)
    for key, value in copy_ops:
        fork.set(key, value)
    for tree in (original, fork):
        assert tree.root() == tree_of(list(tree.items_sorted())).root()
    assert original.root() == tree_of(_apply(common + original_ops)).root()
    assert fork.root() == tree_of(_apply(common + copy_ops)).root()
    assert len(original) == len(_apply(common + original_ops))
    assert len(fork) == len(_apply(common + copy_ops))


def _apply(ops: list[tuple[bytes, bytes | None]]) -> list[tuple[bytes, bytes]]:
    result: dict[bytes, bytes] = {}
    for key, value in ops:
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return list(result.items())


def test_copy_of_a_copy_shares_nothing_mutable() -> None:
    base = tree_of([(key_for(n), h(b"v")) for n in range(50)])
    first = base.copy()
    second = first.copy()
    first.set(key_for(1), h(b"first"))
    second.set(key_for(1), None)
    base.set(key_for(2), None)
    assert base.get(key_for(1)) == h(b"v")
    assert first.get(key_for(1)) == h(b"first")
    assert second.get(key_for(1)) is None
    assert first.get(key_for(2)) == second.get(key_for(2)) == h(b"v")
    assert len(base) == 49 and len(first) == 50 and len(second) == 49


def test_a_settled_copy_keeps_its_root_while_the_original_rehashes() -> None:
    # Copies share the pages of node hashes; whichever rehashes first must copy, not write.
    base = tree_of([(key_for(n), h(b"v")) for n in range(300)])
    before = base.root()
    fork = base.copy()
    for n in range(0, 300, 7):
        base.set(key_for(n), h(b"changed"))
    after = base.root()
    assert after != before
    assert fork.root() == before == reference_root({key_for(n): h(b"v") for n in range(300)})
    fork.set(key_for(1), None)
    assert fork.root() != before and base.root() == after


@settings(max_examples=100, deadline=None)
@given(operations, operations, operations, operations)
def test_overlays_read_through_merge_and_pin(
    common: list[tuple[bytes, bytes | None]],
    first_ops: list[tuple[bytes, bytes | None]],
    second_ops: list[tuple[bytes, bytes | None]],
    layer_ops: list[tuple[bytes, bytes | None]],
) -> None:
    # Two overlays on one base (a checkpoint's cut and the live state); the first is merged
    # into the base after the second pinned what the first wrote; the base is itself a layer
    # over a whole tree (a frozen final state), merged back at the end.
    whole = tree_of(_apply(common))
    whole_root = whole.root()
    base = whole.over()
    for key, value in layer_ops:
        base.set(key, value)
    base_items = _apply(common + layer_ops)
    assert base.root() == tree_of(base_items).root() and whole.root() == whole_root
    first, second = base.over(), base.over()
    for key, value in first_ops:
        first.set(key, value)
    for key, value in second_ops:
        second.set(key, value)
    first.root()
    second.pin(list(first.written()))
    assert first.merge() is base
    first_items = _apply(base_items + first_ops)
    second_items = _apply(base_items + second_ops)
    assert base.root() == tree_of(first_items).root() and len(base) == len(first_items)
    assert sorted(base.items_sorted()) == sorted(first_items)
    assert second.root() == tree_of(second_items).root() and len(second) == len(second_items)
    assert sorted(second.items_sorted()) == sorted(second_items)
    for key, value in second_items:
        assert second.get(key) == value
    # The whole tree is untouched until the layer is merged into it.
    assert whole.root() == whole_root and sorted(whole.items_sorted()) == sorted(_apply(common))
    second.rebase(base.merge())
    assert whole.root() == tree_of(first_items).root() and len(whole) == len(first_items)
    assert sorted(whole.items_sorted()) == sorted(first_items)
    assert whole.copy().root() == whole.root() and second.copy().root() == second.root()


def test_making_and_merging_an_overlay_costs_the_buckets_it_wrote() -> None:
    base = tree_of([(key_for(n), h(b"v")) for n in range(5_000)])
    base.root()
    overlay = base.over()
    assert list(overlay.written()) == []
    overlay.set(key_for(7), h(b"w"))
    overlay.set(key_for(7), None)
    assert list(overlay.written()) == [state_tree.bucket_index(key_for(7))]
    overlay.merge()
    assert base.get(key_for(7)) is None and len(base) == 4_999


def test_a_key_whose_bytes_sit_inside_another_entry_is_not_found_there() -> None:
    # A bucket is one byte string of 64-byte entries; a key's 32 bytes may also occur off the
    # entry grid (here: as the value hash of another key of the same bucket).
    inner = b"\x00\x00" + b"\x11" * 30
    outer = b"\x00\x00" + b"\x01" * 30
    tree = StateTree()
    tree.set(outer, inner)
    assert tree.get(inner) is None
    tree.set(inner, None)  # deleting the absent key changes nothing
    assert tree.get(outer) == inner and len(tree) == 1
    tree.set(inner, h(b"own"))
    assert tree.get(inner) == h(b"own") and tree.get(outer) == inner and len(tree) == 2
    assert tree.root() == reference_root({outer: inner, inner: h(b"own")})
    assert list(tree.items_sorted()) == [(outer, inner), (inner, h(b"own"))]
    tree.set(inner, None)
    assert tree.get(inner) is None and tree.root() == reference_root({outer: inner})


def test_bad_keys_and_values_are_caller_errors() -> None:
    tree = StateTree()
    with pytest.raises(LocalProtocolError):
        tree.set(b"short", h(b"v"))
    with pytest.raises(LocalProtocolError):
        tree.set(key_for(1), b"short")
    with pytest.raises(LocalProtocolError):
        tree.get(b"x" * 33)
    with pytest.raises(LocalProtocolError):
        tree.proof(b"")
    assert len(tree) == 0


def test_hash_count_grows_only_with_dirty_paths() -> None:
    tree = tree_of([(key_for(n), h(b"v")) for n in range(1000)])
    tree.root()
    before = tree.hash_count
    tree.root()
    assert tree.hash_count == before  # nothing dirty, nothing rehashed
    tree.set(key_for(5), h(b"w"))
    tree.root()
    assert tree.hash_count - before == 1 + state_tree.DEPTH  # one bucket and its path


# --- proofs --------------------------------------------------------------------------------


def proof_tree() -> StateTree:
    items = [(key_for(n), h(bytes([n]))) for n in range(200)]
    items += [(b"\x12\x34" + bytes([n]) * 30, h(bytes([n]))) for n in range(5)]
    return tree_of(items)


def test_membership_and_absence_proofs_verify() -> None:
    tree = proof_tree()
    root = tree.root()
    for n in range(200):
        key = key_for(n)
        proof = tree.proof(key)
        assert len(proof) == state_tree.PROOF_LENGTH
        assert verify_proof(root, key, h(bytes([n])), proof)
        assert not verify_proof(root, key, None, proof)
        assert not verify_proof(root, key, h(b"other"), proof)
    crowded = b"\x12\x34" + bytes([2]) * 30
    assert len(tree.proof(crowded)[0]) == 5 * state_tree.ENTRY_SIZE_BYTES
    assert verify_proof(root, crowded, h(bytes([2])), tree.proof(crowded))
    absent_same_bucket = b"\x12\x34" + b"\x09" * 30
    assert verify_proof(root, absent_same_bucket, None, tree.proof(absent_same_bucket))
    absent = key_for(10_000)
    assert verify_proof(root, absent, None, tree.proof(absent))
    assert not verify_proof(root, absent, h(b"x"), tree.proof(absent))


def test_proof_is_bound_to_its_key_and_root() -> None:
    tree = proof_tree()
    root = tree.root()
    proof = tree.proof(key_for(1))
    assert not verify_proof(root, key_for(2), h(bytes([1])), proof)
    tree.set(key_for(3), h(b"changed"))
    assert not verify_proof(tree.root(), key_for(1), h(bytes([1])), proof)
    assert verify_proof(tree.root(), key_for(1), h(bytes([1])), tree.proof(key_for(1)))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_tampered_proofs_fail(data: st.DataObject) -> None:
    tree = PROOF_TREE
    number = data.draw(st.integers(0, 199))
    key, value = key_for(number), h(bytes([number]))
    proof = tree.proof(key)
    part = data.draw(st.integers(0, len(proof) - 1))
    if not proof[part]:
        return
    offset = data.draw(st.integers(0, len(proof[part]) - 1))
    bit = data.draw(st.integers(0, 7))
    tampered = list(proof)
    changed = bytearray(tampered[part])
    changed[offset] ^= 1 << bit
    tampered[part] = bytes(changed)
    assert not verify_proof(PROOF_ROOT, key, value, tampered)


PROOF_TREE = proof_tree()
PROOF_ROOT = PROOF_TREE.root()


@pytest.mark.parametrize(
    "mangle",
    [
        lambda p: p[:-1],
        lambda p: [*p, p[-1]],
        lambda p: [p[0] + b"\x00", *p[1:]],
        lambda p: [p[0], p[1][:31], *p[2:]],
        lambda p: [p[0][64:] + p[0][:64], *p[1:]],  # entries out of order
        lambda p: [p[0] * 2, *p[1:]],  # duplicate entries
        lambda p: [b"\x00" * 64 * (state_tree.PROOF_BUCKET_ENTRIES_MAX + 1), *p[1:]],
        lambda p: tuple(p),
        lambda p: [None, *p[1:]],
        lambda p: "not a proof",
    ],
)
def test_malformed_proofs_are_rejected_without_raising(mangle: object) -> None:
    key = b"\x12\x34" + bytes([1]) * 30
    proof = PROOF_TREE.proof(key)
    assert verify_proof(PROOF_ROOT, key, h(bytes([1])), proof)
    assert callable(mangle)
    assert not verify_proof(PROOF_ROOT, key, h(bytes([1])), mangle(proof))


def test_proof_with_foreign_bucket_entry_is_rejected() -> None:
    # An entry from another bucket can't be slipped in to fake an absence.
    tree = tree_of([(b"\x00\x01" + b"\x05" * 30, h(b"a"))])
    key = b"\x00\x01" + b"\x05" * 30
    proof = tree.proof(key)
    foreign = [b"\x00\x02" + b"\x05" * 30 + h(b"a"), *proof[1:]]
    assert not verify_proof(tree.root(), key, None, foreign)
    assert not verify_proof(b"short", key, h(b"a"), proof)
    assert not verify_proof(tree.root(), b"short", h(b"a"), proof)
    assert not verify_proof(tree.root(), key, b"short", proof)


def test_published_test_vectors() -> None:
    """The vectors in docs/parts/state.md, so another implementation can check itself."""
    tree = StateTree()
    tree.set(h(b"a"), h(b"b"))
    assert tree.root().hex() == "d7dd631ea3ae9a553024c23a6752d4b922d99a0812e7ea5a207e5c058d232be2"
    tree.set(h(b"c"), h(b"d"))
    assert tree.root().hex() == "bc0f34d6748c79997a8a21c0b19f85537f6ac90365c52411ea2798547df3f310"
    assert state_tree.EMPTY_SUBTREE_HASHES[1].hex() == (
        "fe43d66afa4a9a5c4f9c9da89f4ffb52635c8f342e7ffb731d68e36c5982072a"
    )


def test_benchmark_runs_and_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    from swarmd.benchmarks import state_tree as benchmark

    assert benchmark.main(["--accounts", "2000", "--updates", "200", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["updates"] == 200 and result["root_hashes"] > 200
    assert result["update_us"] > result["set_us"] > 0
    assert result["root_ms_ratio_to_ceiling"] > 0
