"""The incremental state root: a bucketed Merkle tree (docs/parts/state.md has the full spec).

The tree has `limits.STATE_TREE_BUCKETS` (2**16) buckets at the bottom of a binary tree of
`limits.STATE_TREE_DEPTH` (16) levels. Every entry is a pair (key, value_hash) of 32-byte
strings; callers pass key = sha256 of a namespaced record key and value_hash = sha256 of the
encoded record, so this module never sees records themselves.

Hashing (H = sha256; `||` is concatenation; every integer is big-endian):

- The bucket of a key is `int.from_bytes(key[0:2], "big")`, so bucket order is key order.
- A bucket hashes its entries in strictly ascending key order:
  `bucket_hash = H(0x00 || key_1 || value_hash_1 || ... || key_n || value_hash_n)`.
  Every entry is exactly 64 bytes, so no length fields are needed. The empty bucket is
  `EMPTY_BUCKET_HASH = H(0x00)`.
- An inner node is `H(0x01 || left || right)`. The one-byte prefixes separate the two domains
  (as in RFC 6962), so a bucket preimage can never be read as an inner node or the other way.
- Level 0 holds the bucket hashes (bucket i at position i); level d+1 position j is the node of
  level d positions 2j and 2j+1; the root is level 16 position 0. An empty subtree of height d
  has the precomputed hash `EMPTY_SUBTREE_HASHES[d]` (d = 0 is the empty bucket), so the root of
  the empty tree is `EMPTY_ROOT = EMPTY_SUBTREE_HASHES[16]`.

Cost model: `set()` only edits one bucket dict and marks the bucket dirty (O(1)); `root()`
rehashes each dirty bucket once and every inner node on the union of their paths, level by
level. Hash values live in one heap-ordered list (position 1 is the root, position
BUCKETS + i is bucket i), so recomputation needs no pointers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from . import limits
from .errors import LocalProtocolError

DEPTH = limits.STATE_TREE_DEPTH
BUCKETS = limits.STATE_TREE_BUCKETS
KEY_SIZE_BYTES = limits.HASH_SIZE_BYTES
VALUE_HASH_SIZE_BYTES = limits.HASH_SIZE_BYTES
ENTRY_SIZE_BYTES = KEY_SIZE_BYTES + VALUE_HASH_SIZE_BYTES

BUCKET_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

#: A membership proof carries the whole bucket of the key. A proof must fit in one encoded
#: value on the wire, which bounds the entries of a bucket it can show (3,072; a bucket holds
#: ~15 entries at a million accounts, so only ground keys could ever get near this).
PROOF_BUCKET_ENTRIES_MAX = limits.ENCODED_VALUE_SIZE_BYTES_MAX // ENTRY_SIZE_BYTES
#: A proof is the bucket contents followed by one sibling hash per level.
PROOF_LENGTH = 1 + DEPTH

assert BUCKETS == 2**DEPTH
assert DEPTH == 2 * 8, "the bucket index is exactly the first two key bytes"


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an inner node from its two children."""
    return _sha256(NODE_PREFIX + left + right)


def bucket_hash_of_entries(entries: bytes) -> bytes:
    """The hash of a bucket given its entries, already sorted and concatenated."""
    return _sha256(BUCKET_PREFIX + entries)


def _empty_subtree_hashes() -> tuple[bytes, ...]:
    hashes = [bucket_hash_of_entries(b"")]
    for _ in range(DEPTH):
        hashes.append(node_hash(hashes[-1], hashes[-1]))
    return tuple(hashes)


#: EMPTY_SUBTREE_HASHES[d] is the hash of an empty subtree of height d (0 = one empty bucket).
EMPTY_SUBTREE_HASHES = _empty_subtree_hashes()
EMPTY_BUCKET_HASH = EMPTY_SUBTREE_HASHES[0]
#: The root of the empty tree (hex in docs/parts/state.md and pinned by a test).
EMPTY_ROOT = EMPTY_SUBTREE_HASHES[DEPTH]


def bucket_index(key: bytes) -> int:
    """The bucket of a key: its first two bytes, big-endian."""
    return (key[0] << 8) | key[1]


def _encode_bucket(bucket: dict[bytes, bytes]) -> bytes:
    # Entries are key || value_hash with fixed-size keys, so sorting entries sorts by key.
    return b"".join(sorted(bucket.values()))


def _check_key(key: object) -> bytes:
    if not isinstance(key, bytes) or len(key) != KEY_SIZE_BYTES:
        raise LocalProtocolError("state tree keys are 32-byte hashes")
    return key


def _empty_nodes() -> list[bytes]:
    """Heap-ordered hashes of the empty tree: position 1 is the root, BUCKETS + i bucket i."""
    nodes = [b""]  # position 0 is unused
    for height in range(DEPTH, -1, -1):
        nodes.extend([EMPTY_SUBTREE_HASHES[height]] * (1 << (DEPTH - height)))
    return nodes


_EMPTY_NODES = _empty_nodes()


class StateTree:
    """A map of 32-byte keys to 32-byte value hashes with an incrementally maintained root.

    `copy()` is copy-on-write at bucket granularity: it copies the outer dict of non-empty
    buckets (pointer copies only), while the bucket dicts stay shared. After a copy, the first
    write to a shared bucket, in either tree, copies that one bucket dict (~15 entries at a
    million accounts). The list of 2**17 node hashes is shared too, and copied (~5 ms at a
    million accounts, benchmarks/state_tree.py) by the first `root()` that must rehash in a
    tree that shares it: a new tree shares the empty tree's list, and many new trees are
    dropped before they ever rehash (a simulated run copies under half the lists it did when
    `__init__` and `copy()` copied at once).
    """

    def __init__(self) -> None:
        # bucket index -> {key: key || value_hash}. Storing the whole 64-byte entry (32 bytes
        # more per account than the value alone) lets a bucket hash be one C-level sort and
        # join, which measured 40% faster than building entries at root() time.
        self._buckets: dict[int, dict[bytes, bytes]] = {}
        # Buckets whose dict this tree alone holds, so it may mutate them in place.
        self._owned: set[int] = set()
        self._dirty: set[int] = set()
        self._nodes: list[bytes] = _EMPTY_NODES
        # Whether `_nodes` may be held by another tree (or is _EMPTY_NODES): copied before
        # the first rehash writes to it.
        self._nodes_shared = True
        self._count = 0
        self._hash_count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def hash_count(self) -> int:
        """How many sha256 computations `root()` has done in this tree (for benchmarks)."""
        return self._hash_count

    def get(self, key: bytes) -> bytes | None:
        bucket = self._buckets.get(bucket_index(_check_key(key)))
        entry = None if bucket is None else bucket.get(key)
        return None if entry is None else entry[KEY_SIZE_BYTES:]

    def set(self, key: bytes, value_hash: bytes | None) -> None:
        """Bind `key` to `value_hash`, or delete it when `value_hash` is None. O(1)."""
        index = bucket_index(_check_key(key))
        bucket = self._buckets.get(index)
        if value_hash is None:
            if bucket is None or key not in bucket:
                return
            bucket = self._writable_bucket(index, bucket)
            del bucket[key]
            self._count -= 1
            if not bucket:
                del self._buckets[index]
                self._owned.discard(index)
        else:
            if not isinstance(value_hash, bytes) or len(value_hash) != VALUE_HASH_SIZE_BYTES:
                raise LocalProtocolError("state tree values are 32-byte hashes")
            previous = None if bucket is None else bucket.get(key)
            entry = key + value_hash
            if previous == entry:
                return
            if bucket is None:
                bucket = self._buckets[index] = {}
                self._owned.add(index)
            else:
                bucket = self._writable_bucket(index, bucket)
            bucket[key] = entry
            if previous is None:
                self._count += 1
        self._dirty.add(index)

    def _writable_bucket(self, index: int, bucket: dict[bytes, bytes]) -> dict[bytes, bytes]:
        if index in self._owned:
            return bucket
        bucket = self._buckets[index] = dict(bucket)
        self._owned.add(index)
        return bucket

    def root(self) -> bytes:
        """The 32-byte root; rehashes only the dirty buckets and their paths."""
        if self._dirty:
            self._recompute()
        return self._nodes[1]

    def _recompute(self) -> None:
        if self._nodes_shared:
            self._nodes = self._nodes.copy()
            self._nodes_shared = False
        nodes = self._nodes
        sha256 = hashlib.sha256
        positions = set()
        for index in self._dirty:
            bucket = self._buckets.get(index)
            entries = b"" if bucket is None else _encode_bucket(bucket)
            nodes[BUCKETS + index] = sha256(BUCKET_PREFIX + entries).digest()
            positions.add((BUCKETS + index) >> 1)
        hashes = len(self._dirty)
        self._dirty = set()
        # One pass per level, bottom up, so every child is final before its parent is hashed.
        for _ in range(DEPTH):
            for position in positions:
                left = nodes[2 * position]
                nodes[position] = sha256(NODE_PREFIX + left + nodes[2 * position + 1]).digest()
            hashes += len(positions)
            positions = {position >> 1 for position in positions}
        self._hash_count += hashes

    def copy(self) -> StateTree:
        """An independent tree with the same contents (copy-on-write, see the class doc)."""
        other = StateTree.__new__(StateTree)
        other._buckets = dict(self._buckets)
        other._owned = set()
        other._dirty = set(self._dirty)
        other._nodes = self._nodes
        other._count = self._count
        other._hash_count = 0
        # Every bucket dict and the node list are now shared: neither tree may mutate one in
        # place any more.
        self._owned = set()
        other._nodes_shared = self._nodes_shared = True
        return other

    def items_sorted(self) -> Iterator[tuple[bytes, bytes]]:
        """All (key, value_hash) pairs in ascending key order. Do not mutate while iterating."""
        for index in sorted(self._buckets):
            bucket = self._buckets[index]
            for entry in sorted(bucket.values()):
                yield entry[:KEY_SIZE_BYTES], entry[KEY_SIZE_BYTES:]

    def proof(self, key: bytes) -> list[bytes]:
        """A proof for `key` against `root()`: its bucket's entries, then 16 sibling hashes.

        proof[0] is the concatenation of the bucket's entries in key order (what the bucket hash
        covers); proof[1 + d] is the sibling of the path node at level d, bottom up. The same
        proof shows membership (with the bound value hash) or absence of the key.
        """
        index = bucket_index(_check_key(key))
        self.root()
        bucket = self._buckets.get(index)
        proof = [b"" if bucket is None else _encode_bucket(bucket)]
        position = BUCKETS + index
        for _ in range(DEPTH):
            proof.append(self._nodes[position ^ 1])
            position >>= 1
        return proof


def verify_proof(root: bytes, key: bytes, value_hash: bytes | None, proof: list[bytes]) -> bool:
    """True if `proof` shows that `key` maps to `value_hash` (or is absent, for None) at `root`.

    Never raises: any malformed proof (wrong shape, unsorted or foreign entries, a bucket over
    PROOF_BUCKET_ENTRIES_MAX) is simply not a proof.
    """
    if not _proof_is_well_formed(root, key, value_hash, proof):
        return False
    entries = proof[0]
    index = bucket_index(key)
    found: bytes | None = None
    previous_key = b""
    for offset in range(0, len(entries), ENTRY_SIZE_BYTES):
        entry_key = entries[offset : offset + KEY_SIZE_BYTES]
        if entry_key <= previous_key or bucket_index(entry_key) != index:
            return False
        if entry_key == key:
            found = entries[offset + KEY_SIZE_BYTES : offset + ENTRY_SIZE_BYTES]
        previous_key = entry_key
    if found != value_hash:
        return False
    current = bucket_hash_of_entries(entries)
    position = index
    for sibling in proof[1:]:
        if position & 1:
            current = node_hash(sibling, current)
        else:
            current = node_hash(current, sibling)
        position >>= 1
    return current == root


def _proof_is_well_formed(root: object, key: object, value_hash: object, proof: object) -> bool:
    if not isinstance(root, bytes) or len(root) != limits.HASH_SIZE_BYTES:
        return False
    if not isinstance(key, bytes) or len(key) != KEY_SIZE_BYTES:
        return False
    if value_hash is not None and (
        not isinstance(value_hash, bytes) or len(value_hash) != VALUE_HASH_SIZE_BYTES
    ):
        return False
    if not isinstance(proof, list) or len(proof) != PROOF_LENGTH:
        return False
    if not all(isinstance(part, bytes) for part in proof):
        return False
    if any(len(sibling) != limits.HASH_SIZE_BYTES for sibling in proof[1:]):
        return False
    entries = proof[0]
    return (
        len(entries) % ENTRY_SIZE_BYTES == 0
        and len(entries) // ENTRY_SIZE_BYTES <= PROOF_BUCKET_ENTRIES_MAX
    )
