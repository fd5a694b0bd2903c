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

Cost model: `set()` only rewrites one bucket and marks it dirty; `root()` rehashes each dirty
bucket once and every inner node on the union of their paths, level by level. Hash values live
in one heap-ordered array of 32-byte slots (position 1 is the root, position BUCKETS + i is
bucket i), so recomputation needs no pointers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from . import limits
from .errors import LocalProtocolError

DEPTH = limits.STATE_TREE_DEPTH
BUCKETS = limits.STATE_TREE_BUCKETS
KEY_SIZE_BYTES = limits.HASH_SIZE_BYTES
VALUE_HASH_SIZE_BYTES = limits.HASH_SIZE_BYTES
ENTRY_SIZE_BYTES = KEY_SIZE_BYTES + VALUE_HASH_SIZE_BYTES
NODE_SIZE_BYTES = limits.HASH_SIZE_BYTES

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


#: sha256 fed the bucket prefix, copied per bucket hash (no copy of a ~1 KiB bucket to prepend it).
_BUCKET_HASHER = hashlib.sha256(BUCKET_PREFIX)


def bucket_hash_of_entries(entries: bytes) -> bytes:
    """The hash of a bucket given its entries, already sorted and concatenated."""
    hasher = _BUCKET_HASHER.copy()
    hasher.update(entries)
    return hasher.digest()


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


def _check_key(key: object) -> bytes:
    if not isinstance(key, bytes) or len(key) != KEY_SIZE_BYTES:
        raise LocalProtocolError("state tree keys are 32-byte hashes")
    return key


def _find(entries: bytes, key: bytes) -> int:
    """The offset of `key`'s entry in a bucket's entries, or -1. `bytes.find` scans in C; a
    hit that is not at an entry boundary (the key's bytes inside another entry) is skipped."""
    at = entries.find(key)
    while at > 0 and at % ENTRY_SIZE_BYTES:
        at = entries.find(key, at + 1)
    return at


def _insertion_offset(entries: bytes, key: bytes) -> int:
    """Where an absent `key`'s entry goes in a bucket's sorted entries (binary search)."""
    low, high = 0, len(entries) // ENTRY_SIZE_BYTES
    while low < high:
        middle = (low + high) >> 1
        offset = middle * ENTRY_SIZE_BYTES
        if entries[offset : offset + KEY_SIZE_BYTES] < key:
            low = middle + 1
        else:
            high = middle
    return low * ENTRY_SIZE_BYTES


#: The node hashes are stored in pages of 2**PAGE_SHIFT consecutive heap positions (16 KiB),
#: copied on write one page at a time. A node's two children (2p and 2p + 1) are always in
#: the same page, next to each other.
PAGE_SHIFT = 9
PAGE_NODES = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_NODES - 1
PAGES = 2 * BUCKETS // PAGE_NODES


def _empty_pages() -> tuple[bytes, ...]:
    """Heap-ordered hashes of the empty tree, 32 bytes each, in pages: position 1 is the root,
    BUCKETS + i bucket i (position 0 is unused)."""
    levels = [b"\x00" * NODE_SIZE_BYTES]
    for height in range(DEPTH, -1, -1):
        levels.append(EMPTY_SUBTREE_HASHES[height] * (1 << (DEPTH - height)))
    nodes = b"".join(levels)
    page_bytes = PAGE_NODES * NODE_SIZE_BYTES
    return tuple(nodes[at : at + page_bytes] for at in range(0, len(nodes), page_bytes))


_EMPTY_PAGES = _empty_pages()
assert len(_EMPTY_PAGES) == PAGES


class StateTree:
    """A map of 32-byte keys to 32-byte value hashes with an incrementally maintained root.

    Memory layout (what a million accounts made matter, BENCHMARKS.md "state tree layout"):
    a bucket is one immutable `bytes` of its entries (key || value_hash, 64 bytes each) in
    ascending key order, which is exactly what its hash covers; and all node hashes live in
    contiguous pages, where the two children of a node are adjacent. A root recomputation
    then reads each dirty bucket as one run of memory and each inner node's preimage as one
    64-byte slice, instead of chasing a pointer per entry and per hash through a heap of
    hundreds of megabytes.

    A tree is whole, or an overlay on another one (`over`): an overlay's bucket map holds only
    the buckets written through it (b"" for one it emptied) and reads every other bucket
    through its base, so making one is O(1) in the buckets, and `merge` writes its buckets
    into the base in place: O(buckets it wrote). (Copying the map of 65,536 non-empty buckets
    per checkpoint, and freeing the old one, touched every bucket of a million-account state:
    BENCHMARKS.md, session 9.) The node hashes are shared page by page: a tree copies a
    shared page (16 KiB) before its first write to it, so an overlay of a few changed
    accounts (a simulated node's) copies a few pages, and a 2,000-account checkpoint at a
    million accounts copies most of the 256 (4 MiB, one memcpy each). `copy()` makes a whole,
    independent tree (O(buckets)).

    A base must not be written directly while an overlay reads through it; only one overlay
    is merged into it, and any other overlay on it first keeps its view of the buckets that
    one wrote (`pin`), as the ledger's record maps do (ledger/overlay.py).
    """

    def __init__(self) -> None:
        # Whole: bucket index -> its sorted entries (absent: the bucket is empty). Overlay:
        # the buckets written through it (b"": emptied); the others are read through `_base`.
        self._buckets: dict[int, bytes] = {}
        self._base: StateTree | None = None
        self._dirty: set[int] = set()
        # The node hashes, page by page (PAGE_SHIFT); a page not in `_owned_pages` may be
        # shared with another tree (or be the empty tree's) and is copied before a write.
        self._pages: list[bytes | bytearray] = list(_EMPTY_PAGES)
        self._owned_pages: set[int] = set()
        self._count = 0
        self._hash_count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def hash_count(self) -> int:
        """How many sha256 computations `root()` has done in this tree (for benchmarks)."""
        return self._hash_count

    def _entries(self, index: int) -> bytes:
        """Bucket `index`'s entries (b"" when empty), read through the bases."""
        tree: StateTree | None = self
        while tree is not None:
            entries = tree._buckets.get(index)
            if entries is not None:
                return entries
            tree = tree._base
        return b""

    def get(self, key: bytes) -> bytes | None:
        entries = self._entries(bucket_index(_check_key(key)))
        at = _find(entries, key)
        return None if at < 0 else entries[at + KEY_SIZE_BYTES : at + ENTRY_SIZE_BYTES]

    def set(self, key: bytes, value_hash: bytes | None) -> None:
        """Bind `key` to `value_hash`, or delete it when `value_hash` is None: rewrites the
        key's bucket (~1 KiB at a million accounts) and marks it dirty."""
        index = bucket_index(_check_key(key))
        buckets = self._buckets
        entries = buckets.get(index)
        if entries is None and self._base is not None:
            entries = self._base._entries(index)
        at = _find(entries, key) if entries else -1
        if value_hash is None:
            if at < 0:
                return
            assert entries
            remaining = entries[:at] + entries[at + ENTRY_SIZE_BYTES :]
            if remaining or self._base is not None:
                buckets[index] = remaining
            else:
                del buckets[index]
            self._count -= 1
        else:
            if not isinstance(value_hash, bytes) or len(value_hash) != VALUE_HASH_SIZE_BYTES:
                raise LocalProtocolError("state tree values are 32-byte hashes")
            if not entries:
                buckets[index] = key + value_hash
                self._count += 1
            elif at >= 0:
                end = at + ENTRY_SIZE_BYTES
                if entries[at + KEY_SIZE_BYTES : end] == value_hash:
                    return
                buckets[index] = b"".join((entries[:at], key, value_hash, entries[end:]))
            else:
                at = _insertion_offset(entries, key)
                buckets[index] = b"".join((entries[:at], key, value_hash, entries[at:]))
                self._count += 1
        self._dirty.add(index)

    def root(self) -> bytes:
        """The 32-byte root; rehashes only the dirty buckets and their paths."""
        if self._dirty:
            self._recompute()
        return bytes(self._pages[0][NODE_SIZE_BYTES : 2 * NODE_SIZE_BYTES])

    def _recompute(self) -> None:
        # The positions to rehash, level by level: the dirty buckets, then their parents up to
        # the root. Every page they lie in is made this tree's own once, up front, so the hash
        # loops below (the checkpoint's hot path) only compute and store.
        levels = [{BUCKETS + index for index in self._dirty}]
        for _ in range(DEPTH):
            levels.append({position >> 1 for position in levels[-1]})
        pages = self._pages
        owned = self._owned_pages
        for page_index in {position >> PAGE_SHIFT for level in levels for position in level}:
            if page_index not in owned:
                pages[page_index] = bytearray(pages[page_index])
                owned.add(page_index)
        sha256 = hashlib.sha256
        buckets = self._buckets
        size = NODE_SIZE_BYTES
        for position in levels[0]:
            page = pages[position >> PAGE_SHIFT]
            at = (position & PAGE_MASK) * size
            index = position - BUCKETS
            entries = buckets.get(index)
            if entries is None:
                entries = self._entries(index)
            page[at : at + size] = bucket_hash_of_entries(entries)
        # Bottom up, so every child is final before its parent is hashed. A node's children
        # are adjacent in one page: its preimage is one 64-byte slice.
        pair = 2 * size
        for level in levels[1:]:
            for position in level:
                children = pages[position >> (PAGE_SHIFT - 1)]
                at = (position & (PAGE_MASK >> 1)) * pair
                digest = sha256(NODE_PREFIX + children[at : at + pair]).digest()
                at = (position & PAGE_MASK) * size
                pages[position >> PAGE_SHIFT][at : at + size] = digest
        self._dirty = set()
        self._hash_count += sum(len(level) for level in levels)

    def _sibling(self, buckets: dict[int, bytes], base: StateTree | None) -> StateTree:
        """A tree with this one's contents over `buckets` and `base`; the node hashes are
        shared copy-on-write (from now on both copy a page before writing it)."""
        other = StateTree.__new__(StateTree)
        other._buckets = buckets
        other._base = base
        other._dirty = set(self._dirty)
        other._pages = self._pages.copy()
        other._owned_pages = set()
        self._owned_pages = set()
        other._count = self._count
        other._hash_count = 0
        return other

    def over(self) -> StateTree:
        """An overlay on this tree (see the class doc): O(1) in the buckets."""
        return self._sibling({}, self)

    def copy(self) -> StateTree:
        """A whole, independent tree with the same contents: O(buckets)."""
        return self._sibling(self._whole_buckets(), None)

    def _whole_buckets(self) -> dict[int, bytes]:
        """Every non-empty bucket, through the bases."""
        if self._base is None:
            return dict(self._buckets)
        buckets = self._base._whole_buckets()
        _write_buckets(buckets, self._buckets, whole=True)
        return buckets

    def written(self) -> Iterable[int]:
        """The indexes of the buckets written through this overlay."""
        return self._buckets.keys()

    def pin(self, indexes: Iterable[int]) -> None:
        """Keep this overlay's view of buckets `indexes` (read through to the base until now)
        when another overlay on the same base is merged into it: O(len(indexes))."""
        base = self._base
        if base is None:
            raise ValueError("only an overlay pins")
        buckets = self._buckets
        for index in indexes:
            if index not in buckets:
                buckets[index] = base._entries(index)

    def rebase(self, base: StateTree) -> None:
        """Read through to `base`, which equals this overlay's base: O(1)."""
        if self._base is None:
            raise ValueError("only an overlay rebases")
        self._base = base

    def merge(self) -> StateTree:
        """Write this overlay into its base and return the base, which then equals this tree
        (root included); this overlay must not be used afterwards. O(buckets it wrote)."""
        base = self._base
        if base is None:
            raise ValueError("only an overlay merges")
        self.root()
        _write_buckets(base._buckets, self._buckets, whole=base._base is None)
        base._pages = self._pages
        base._owned_pages = self._owned_pages
        base._dirty = set()
        base._count = self._count
        base._hash_count += self._hash_count
        self._buckets = {}
        self._pages = []
        self._owned_pages = set()
        return base

    def items_sorted(self) -> Iterator[tuple[bytes, bytes]]:
        """All (key, value_hash) pairs in ascending key order. Do not mutate while iterating."""
        buckets = self._whole_buckets() if self._base is not None else self._buckets
        for index in sorted(buckets):
            entries = buckets[index]
            for at in range(0, len(entries), ENTRY_SIZE_BYTES):
                yield (
                    entries[at : at + KEY_SIZE_BYTES],
                    entries[at + KEY_SIZE_BYTES : at + ENTRY_SIZE_BYTES],
                )

    def proof(self, key: bytes) -> list[bytes]:
        """A proof for `key` against `root()`: its bucket's entries, then 16 sibling hashes.

        proof[0] is the concatenation of the bucket's entries in key order (what the bucket hash
        covers); proof[1 + d] is the sibling of the path node at level d, bottom up. The same
        proof shows membership (with the bound value hash) or absence of the key.
        """
        index = bucket_index(_check_key(key))
        self.root()
        proof = [self._entries(index)]
        position = BUCKETS + index
        for _ in range(DEPTH):
            sibling = position ^ 1
            at = (sibling & PAGE_MASK) * NODE_SIZE_BYTES
            proof.append(bytes(self._pages[sibling >> PAGE_SHIFT][at : at + NODE_SIZE_BYTES]))
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


def _write_buckets(target: dict[int, bytes], written: dict[int, bytes], *, whole: bool) -> None:
    """Write an overlay's buckets into `target`: a whole tree's map drops the emptied ones
    (b""), an overlay's keeps them as markers over its own base."""
    if not whole:
        target.update(written)
        return
    for index, entries in written.items():
        if entries:
            target[index] = entries
        else:
            target.pop(index, None)
