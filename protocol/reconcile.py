"""Range-based set reconciliation of 32-byte op ids (Negentropy-style), sans-I/O.

Two peers each hold a set of 32-byte ids (the unfinalized ops). They exchange messages that
describe contiguous ranges of the sorted id space, and learn the symmetric difference with a
cost that grows with the difference, not with the sets:

- a range whose fingerprint (sum of ids mod 2**256 and count, hashed, 16 bytes) matches on both
  sides is done;
- a mismatching range is split into `limits.RECONCILE_BRANCHING` sub-ranges, or, when the side
  answering holds at most `limits.RECONCILE_ID_LIST_MAX` ids in it, listed id by id;
- a listed range is answered with the ids the lister lacks plus a bitmap over the listed ids
  marking the ones the answerer lacks, so BOTH sides learn both directions (symmetric design):
  `have_ids` and `need_ids` are complete on both sides when the session ends.

Every message fits `message_size_max` bytes: when an answer would not fit, the rest of the
work is described by a few fingerprints of the remaining ranges and continues next round (like
Negentropy's frameSizeLimit). A session is abandoned after `rounds_max` messages with
`ReconcileRoundsExceededError`. The wire format and the algorithm are specified in
docs/parts/reconcile.md.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, Literal

from . import encoding, limits
from .codes import RejectCode
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError

__all__ = [
    "FINGERPRINT_SIZE_BYTES",
    "ID_SIZE_BYTES",
    "MESSAGE_SIZE_BYTES_MIN",
    "PROTOCOL_VERSION",
    "IdSet",
    "ReconcileError",
    "ReconcileMessageError",
    "ReconcileRoundsExceededError",
    "Reconciler",
    "fingerprint_of",
]

# --- constants -------------------------------------------------------------------------------

#: Version tag in every message, so a future format can be told apart and refused cleanly.
PROTOCOL_VERSION = 1
#: Op ids are hashes.
ID_SIZE_BYTES = limits.HASH_SIZE_BYTES
#: 128 bits: a collision between two different ranges is as unlikely as a hash collision, and
#: it is Negentropy's choice (so fingerprints are computed the same way as there).
FINGERPRINT_SIZE_BYTES = 16

MODE_SKIP = 0
MODE_FINGERPRINT = 1
MODE_ID_LIST = 2
MODE_ID_DIFF = 3

# Exact msgpack sizes of the pieces of a message (see _bin_size): a range item is a fixarray of
# at most 4 entries (1 byte), a bound is nil (1 byte) or bin8 of 1..32 bytes, a mode is a
# positive fixint (1 byte).
_BOUND_BYTES_MAX = 2 + ID_SIZE_BYTES
_SKIP_ITEM_BYTES_MAX = 1 + _BOUND_BYTES_MAX + 1
_FINGERPRINT_ITEM_BYTES_MAX = 1 + _BOUND_BYTES_MAX + 1 + 2 + FINGERPRINT_SIZE_BYTES
#: [version, items]: fixarray(2) + fixint version + array16 header for the items.
_MESSAGE_HEADER_BYTES_MAX = 1 + 1 + 3
#: Bytes kept free in every message for the fingerprints that describe unfinished work (one
#: tail group costs a skip plus a fingerprint). 1/16 of the message, at most 64 groups: enough
#: to keep the remaining ranges apart without crowding out ids.
_TAIL_GROUP_BYTES = _SKIP_ITEM_BYTES_MAX + _FINGERPRINT_ITEM_BYTES_MAX
_TAIL_GROUPS_MAX = 64
#: An ID_LIST item with RECONCILE_ID_LIST_MAX ids, the largest item that is never cut.
_ID_LIST_ITEM_BYTES_MAX = 1 + _BOUND_BYTES_MAX + 1 + 3 + limits.RECONCILE_ID_LIST_MAX * 32
#: Smallest message size a Reconciler accepts: the header, the largest uncut item with the skip
#: before it, the tail reserve of one group and the final skip. Below this a session could stall.
MESSAGE_SIZE_BYTES_MIN = 2048
#: Items per message: the decoder (encoding.decode) refuses arrays longer than this.
_ITEMS_PER_MESSAGE_MAX = limits.ENCODED_CONTAINER_ENTRIES_MAX

assert (
    _MESSAGE_HEADER_BYTES_MAX
    + _SKIP_ITEM_BYTES_MAX
    + _ID_LIST_ITEM_BYTES_MAX
    + _TAIL_GROUP_BYTES
    + _SKIP_ITEM_BYTES_MAX
    <= MESSAGE_SIZE_BYTES_MIN
)
assert (
    limits.RECONCILE_BRANCHING * (_SKIP_ITEM_BYTES_MAX + _FINGERPRINT_ITEM_BYTES_MAX)
    < MESSAGE_SIZE_BYTES_MIN
)
assert limits.RECONCILE_BRANCHING <= limits.RECONCILE_ID_LIST_MAX + 1
assert MESSAGE_SIZE_BYTES_MIN <= limits.RECONCILE_MESSAGE_SIZE_BYTES_MAX
assert limits.RECONCILE_MESSAGE_SIZE_BYTES_MAX <= limits.ENCODED_VALUE_SIZE_BYTES_MAX

_MODULUS = 2**256
_ZERO_KEY = bytes(ID_SIZE_BYTES)


# --- errors ----------------------------------------------------------------------------------


class ReconcileError(RemoteProtocolError):
    """A reconciliation session failed because of what the peer sent."""

    code: str = RejectCode.RECONCILE_ERROR


class ReconcileMessageError(ReconcileError):
    """A message that does not decode, breaks the format, or contradicts the session."""

    code: str = RejectCode.RECONCILE_MALFORMED_MESSAGE


class ReconcileRoundsExceededError(ReconcileError):
    """The session needed more than `rounds_max` messages; it is abandoned."""

    code: str = RejectCode.RECONCILE_ROUNDS_EXCEEDED


# --- fingerprints and the id set -------------------------------------------------------------


#: The byte order of an id read as an integer (typed for `int.from_bytes` through `map`).
_LITTLE: Final[Literal["little"]] = "little"


def _byte_order_forever() -> Iterator[Literal["little"]]:
    return itertools.repeat(_LITTLE)


def _varint(value: int) -> bytes:
    """Negentropy's varint: 7-bit groups, most significant first, high bit on all but the last."""
    groups = [value & 0x7F]
    value >>= 7
    while value:
        groups.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(groups))


def _fingerprint(id_sum: int, count: int) -> bytes:
    digest = hashlib.sha256((id_sum % _MODULUS).to_bytes(32, "little") + _varint(count)).digest()
    return digest[:FINGERPRINT_SIZE_BYTES]


def fingerprint_of(ids: Iterable[bytes]) -> bytes:
    """Fingerprint of a collection of distinct ids (reference definition, used by tests)."""
    id_list = list(ids)
    return _fingerprint(sum(int.from_bytes(i, "little") for i in id_list), len(id_list))


def _check_id(id_: object) -> bytes:
    if not isinstance(id_, bytes) or len(id_) != ID_SIZE_BYTES:
        raise LocalProtocolError(f"an id must be {ID_SIZE_BYTES} bytes")
    return id_


class IdSet:
    """A sorted set of 32-byte ids with range fingerprints.

    Layout: a Python set of the members (membership, size), one sorted list of them for the
    ordered queries, and a list of prefix sums, where `_prefix[i]` is the sum (as little-endian
    integers, not reduced) of the first i sorted ids. A fingerprint of the ids at indexes
    [lo, hi) is then one subtraction and one SHA-256.

    Changes are lazy: `add` and `discard` touch the member set and a journal of changes, O(1);
    the first ordered query after changes merges them into the sorted list (one pass: the
    kept ids are already in order and timsort merges the few new ones, O(n + k log k)) and
    drops the prefix sums from the first changed index. The live set of a node under load
    takes an add per admitted op and a discard per finalized op, tens of thousands between
    two sessions, while sessions query it a few times per interval; a sorted insert per add
    (an O(n) memmove each) cost more than everything else here.
    """

    __slots__ = ("_added", "_dropped", "_ids", "_members", "_prefix")

    def __init__(self) -> None:
        self._members: set[bytes] = set()
        self._ids: list[bytes] = []
        self._prefix: list[int] = [0]
        self._added: list[bytes] = []  # members not yet in _ids
        self._dropped: set[bytes] = set()  # in _ids but no longer members

    @classmethod
    def from_ids(cls, ids: Iterable[bytes]) -> IdSet:
        """Build from any iterable of 32-byte ids (duplicates are merged) in one sort."""
        id_set = cls()
        id_set._members = {_check_id(i) for i in ids}
        id_set._ids = sorted(id_set._members)
        return id_set

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, id_: object) -> bool:
        return id_ in self._members

    def __iter__(self) -> Iterator[bytes]:
        self._settle()
        return iter(self._ids)

    def add(self, id_: bytes) -> bool:
        """Insert `id_`; returns False when it was already present."""
        if _check_id(id_) in self._members:
            return False
        self._members.add(id_)
        if id_ in self._dropped:
            self._dropped.discard(id_)  # still in _ids, at its place
        else:
            self._added.append(id_)
        return True

    def discard(self, id_: bytes) -> bool:
        """Remove `id_` if present; returns whether it was."""
        if _check_id(id_) not in self._members:
            return False
        self._members.discard(id_)
        self._dropped.add(id_)  # an id still in _added is filtered out in _settle
        return True

    def _settle(self) -> None:
        """Merge the journal into the sorted list and invalidate the prefix sums from the
        first index that changed."""
        if not self._added and not self._dropped:
            return
        old, members, dropped = self._ids, self._members, self._dropped
        added = [i for i in self._added if i in members]
        # Before this index the new list equals the old one (bisect needs no membership).
        changed = min(
            (bisect.bisect_left(old, i) for i in itertools.chain(added, dropped)),
            default=len(old),
        )
        merged = [i for i in old if i not in dropped] if dropped else list(old)
        if added:
            merged += added
            merged.sort()  # timsort: one run plus a few new ids
        self._ids = merged
        self._added = []
        self._dropped = set()
        if len(self._prefix) > changed + 1:
            del self._prefix[changed + 1 :]

    def bisect(self, key: bytes | None) -> int:
        """Index of the first id >= `key` (a 32-byte bound); None means past every id."""
        self._settle()
        if key is None:
            return len(self._ids)
        return bisect.bisect_left(self._ids, key)

    def id_at(self, index: int) -> bytes:
        self._settle()
        return self._ids[index]

    def ids_between(self, lo_index: int, hi_index: int) -> list[bytes]:
        self._settle()
        return self._ids[lo_index:hi_index]

    def _prefix_sum(self, index: int) -> int:
        known = len(self._prefix) - 1
        if index > known:
            values = map(int.from_bytes, self._ids[known:index], _byte_order_forever())
            self._prefix.extend(
                itertools.islice(itertools.accumulate(values, initial=self._prefix[-1]), 1, None)
            )
        return self._prefix[index]

    def fingerprint(self, lo_index: int, hi_index: int) -> bytes:
        """Fingerprint of the ids at indexes [lo_index, hi_index)."""
        self._settle()
        if not 0 <= lo_index <= hi_index <= len(self._ids):
            raise LocalProtocolError("fingerprint index range out of bounds")
        id_sum = self._prefix_sum(hi_index) - self._prefix_sum(lo_index)
        return _fingerprint(id_sum, hi_index - lo_index)


# --- wire helpers ----------------------------------------------------------------------------


def _bin_size(length: int) -> int:
    """Bytes of a msgpack bin value of `length` bytes."""
    return length + (2 if length < 2**8 else 3 if length < 2**16 else 5)


def _wire_bound(key: bytes | None) -> bytes | None:
    # A bound travels without its trailing zero bytes; the receiver pads it back to 32 bytes.
    return None if key is None else key.rstrip(b"\0")


def _bound_size(key: bytes | None) -> int:
    wire = _wire_bound(key)
    return 1 if wire is None else _bin_size(len(wire))


def _separator(below: bytes, above: bytes) -> bytes:
    """The smallest-on-the-wire key k with below < k <= above (both ids, below < above)."""
    common = 0
    while below[common] == above[common]:
        common += 1
    return above[: common + 1].ljust(ID_SIZE_BYTES, b"\0")


def _split_ids(blob: bytes) -> list[bytes]:
    return [blob[i : i + ID_SIZE_BYTES] for i in range(0, len(blob), ID_SIZE_BYTES)]


def _bitmap(flags: list[bool]) -> bytes:
    out = bytearray((len(flags) + 7) // 8)
    for index, flag in enumerate(flags):
        if flag:
            out[index // 8] |= 1 << (index % 8)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class _Range:
    """One decoded range item: the ids in [lower, upper) with a mode and its payload."""

    lower: bytes
    upper: bytes | None
    mode: int
    fingerprint: bytes = b""
    ids: tuple[bytes, ...] = ()
    bitmap: bytes = b""


@dataclass(frozen=True, slots=True)
class _SentList:
    """An ID_LIST we sent, kept for one round to read the peer's ID_DIFF bitmap against."""

    upper: bytes | None
    ids: tuple[bytes, ...]


def _parse_bound(raw: object, lower: bytes, is_last: bool) -> bytes | None:
    if raw is None:
        if not is_last:
            raise ReconcileMessageError("only the last range may end at infinity")
        return None
    if is_last:
        raise ReconcileMessageError("the last range must end at infinity")
    if not isinstance(raw, bytes) or not 1 <= len(raw) <= ID_SIZE_BYTES or raw[-1] == 0:
        raise ReconcileMessageError("a bound must be 1..32 bytes without trailing zeros")
    key = raw.ljust(ID_SIZE_BYTES, b"\0")
    if key <= lower:
        raise ReconcileMessageError("bounds must strictly increase")
    return key


def _parse_ids(raw: object, lower: bytes, upper: bytes | None) -> tuple[bytes, ...]:
    if not isinstance(raw, bytes) or len(raw) % ID_SIZE_BYTES:
        raise ReconcileMessageError("an id list must be bytes, a multiple of 32 long")
    ids = _split_ids(raw)
    previous = None
    for id_ in ids:
        if id_ < lower or (upper is not None and id_ >= upper):
            raise ReconcileMessageError("an id lies outside its range")
        if previous is not None and id_ <= previous:
            raise ReconcileMessageError("ids must strictly increase")
        previous = id_
    return tuple(ids)


def _parse_item(raw: object, lower: bytes, is_last: bool, previous_mode: int | None) -> _Range:
    if not isinstance(raw, list) or len(raw) < 2:
        raise ReconcileMessageError("a range item must be an array [bound, mode, ...]")
    upper = _parse_bound(raw[0], lower, is_last)
    mode = raw[1]
    if type(mode) is not int or not MODE_SKIP <= mode <= MODE_ID_DIFF:
        raise ReconcileMessageError("unknown range mode")
    expected_length = {MODE_SKIP: 2, MODE_FINGERPRINT: 3, MODE_ID_LIST: 3, MODE_ID_DIFF: 4}[mode]
    if len(raw) != expected_length:
        raise ReconcileMessageError(f"a mode {mode} item has {expected_length} entries")
    if mode == MODE_SKIP:
        if previous_mode == MODE_SKIP:
            raise ReconcileMessageError("consecutive skips must be merged")
        return _Range(lower, upper, mode)
    if mode == MODE_FINGERPRINT:
        if not isinstance(raw[2], bytes) or len(raw[2]) != FINGERPRINT_SIZE_BYTES:
            raise ReconcileMessageError("a fingerprint is 16 bytes")
        return _Range(lower, upper, mode, fingerprint=raw[2])
    ids = _parse_ids(raw[2], lower, upper)
    if mode == MODE_ID_LIST:
        if len(ids) > limits.RECONCILE_ID_LIST_MAX:
            raise ReconcileMessageError("an id list is longer than RECONCILE_ID_LIST_MAX")
        return _Range(lower, upper, mode, ids=ids)
    if not isinstance(raw[3], bytes):
        raise ReconcileMessageError("a bitmap must be bytes")
    return _Range(lower, upper, mode, ids=ids, bitmap=raw[3])


def _parse_message(message: bytes) -> list[_Range]:
    try:
        value = encoding.decode(message, size_max=limits.RECONCILE_MESSAGE_SIZE_BYTES_MAX)
    except ProtocolError as exc:
        raise ReconcileMessageError(f"undecodable message ({exc.code}): {exc.message}") from exc
    if not isinstance(value, list) or len(value) != 2:
        raise ReconcileMessageError("a message is an array [version, items]")
    version, raw_items = value
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ReconcileMessageError(f"unsupported reconcile version {version!r}")
    if not isinstance(raw_items, list) or not raw_items:
        raise ReconcileMessageError("a message has at least one range item")
    ranges: list[_Range] = []
    lower = _ZERO_KEY
    previous_mode: int | None = None
    for index, raw in enumerate(raw_items):
        item = _parse_item(raw, lower, index == len(raw_items) - 1, previous_mode)
        ranges.append(item)
        previous_mode = item.mode
        if item.upper is not None:
            lower = item.upper
    return ranges


# --- building a message within the size limit ------------------------------------------------


class _MessageBuilder:
    """Collects range items in key order, inserting skips over gaps, within the size limit.

    Budget checks keep `_reserve_bytes` free for the tail (the fingerprints that describe work
    left for the next round), so the tail always fits.
    """

    def __init__(self, size_max: int) -> None:
        self.tail_groups_max = max(1, min(_TAIL_GROUPS_MAX, size_max // 16 // _TAIL_GROUP_BYTES))
        self._reserve_bytes = self.tail_groups_max * _TAIL_GROUP_BYTES + _SKIP_ITEM_BYTES_MAX
        self._reserve_items = 2 * self.tail_groups_max + 1
        self._size_max = size_max
        self._size = _MESSAGE_HEADER_BYTES_MAX
        self._covered: bytes | None = _ZERO_KEY
        self.items: list[list[encoding.Value]] = []
        self.expects_reply = False
        self.sent_lists: dict[bytes, _SentList] = {}

    def free_bytes(self, item_count: int = 1) -> int:
        """Bytes left for `item_count` new items (and the skip before them) outside the reserve."""
        if len(self.items) + item_count + 1 + self._reserve_items > _ITEMS_PER_MESSAGE_MAX:
            return -1
        return self._size_max - self._size - _SKIP_ITEM_BYTES_MAX - self._reserve_bytes

    def add(self, lower: bytes, upper: bytes | None, mode: int, *payload: bytes) -> None:
        if self._covered is None or lower < self._covered:
            raise AssertionError("range items must be added in key order")
        if lower != self._covered:
            self._append([_wire_bound(lower), MODE_SKIP], 1 + _bound_size(lower) + 1)
        size = 1 + _bound_size(upper) + 1 + sum(_bin_size(len(p)) for p in payload)
        self._append([_wire_bound(upper), mode, *payload], size)
        self._covered = upper
        if mode in (MODE_FINGERPRINT, MODE_ID_LIST):
            self.expects_reply = True

    def _append(self, item: list[encoding.Value], size: int) -> None:
        self.items.append(item)
        self._size += size

    def finish(self) -> bytes:
        if self._covered is not None:
            self._append([None, MODE_SKIP], 3)
            self._covered = None
        message = encoding.encode([PROTOCOL_VERSION, self.items])
        if len(message) > self._size_max:
            raise AssertionError(f"reconcile message of {len(message)} bytes over the budget")
        return message


# --- the session state machine ---------------------------------------------------------------


class Reconciler:
    """One reconciliation session over `ids`, as initiator or responder (pure and deterministic).

    The initiator calls `initiate()` and then `reconcile(reply)` for every reply until it returns
    None; the responder calls `respond(message)` for every message and sends back what it
    returns (None: nothing to send). `is_complete` says when the session is over on this side.
    Both sides end with the full answer: `have_ids` (ids we hold that the peer lacks) and
    `need_ids` (ids the peer holds that we lack), in discovery order without duplicates.

    `ids` may change between messages (live inserts): a range is compared against the set as it
    is when that range is processed, so ids added mid-session may or may not be reported; the
    next session finds them.
    """

    def __init__(
        self,
        ids: IdSet,
        *,
        message_size_max: int = limits.RECONCILE_MESSAGE_SIZE_BYTES_MAX,
        rounds_max: int = limits.RECONCILE_ROUNDS_MAX,
    ) -> None:
        if (
            not MESSAGE_SIZE_BYTES_MIN
            <= message_size_max
            <= limits.RECONCILE_MESSAGE_SIZE_BYTES_MAX
        ):
            raise LocalProtocolError(
                f"message_size_max must be in {MESSAGE_SIZE_BYTES_MIN}.."
                f"{limits.RECONCILE_MESSAGE_SIZE_BYTES_MAX}"
            )
        if not 1 <= rounds_max <= limits.RECONCILE_ROUNDS_MAX:
            raise LocalProtocolError(f"rounds_max must be in 1..{limits.RECONCILE_ROUNDS_MAX}")
        self.ids = ids
        self.message_size_max = message_size_max
        self.rounds_max = rounds_max
        #: Messages of this session so far, sent and received (both sides count the same).
        self.rounds = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.is_complete = False
        self._role: str | None = None
        self._awaiting_reply = False
        self._have: dict[bytes, None] = {}
        self._need: dict[bytes, None] = {}
        self._sent_lists: dict[bytes, _SentList] = {}

    @property
    def have_ids(self) -> list[bytes]:
        return list(self._have)

    @property
    def need_ids(self) -> list[bytes]:
        return list(self._need)

    # -- public entry points --

    def initiate(self) -> bytes:
        """The first message of the session (initiator side)."""
        if self._role is not None:
            raise LocalProtocolError("initiate() is called once, on a fresh Reconciler")
        self._role = "initiator"
        builder = _MessageBuilder(self.message_size_max)
        answered = self._answer_mismatch(builder, _ZERO_KEY, None, 0, len(self.ids))
        assert answered, "an empty message always has room for the first split"
        message = self._send(builder)
        self._awaiting_reply = True
        return message

    def respond(self, message: bytes) -> bytes | None:
        """Responder side: process a message; returns the reply, or None when there is none."""
        if self._role == "initiator":
            raise LocalProtocolError("respond() is for the responder side")
        self._role = "responder"
        return self._handle(message)

    def reconcile(self, message: bytes) -> bytes | None:
        """Initiator side: process a reply; returns the next message, or None when done."""
        if self._role != "initiator" or not self._awaiting_reply:
            raise LocalProtocolError("reconcile() follows initiate() and a message we sent")
        reply = self._handle(message)
        self._awaiting_reply = reply is not None and not self.is_complete
        return reply

    # -- one round --

    def _handle(self, message: bytes) -> bytes | None:
        if not isinstance(message, bytes):
            raise ReconcileMessageError("a message must be bytes")
        if self.rounds >= self.rounds_max:
            raise ReconcileRoundsExceededError(f"no reply within {self.rounds_max} messages")
        self.rounds += 1
        self.bytes_received += len(message)
        ranges = _parse_message(message)
        sent_lists, self._sent_lists = self._sent_lists, {}
        builder = _MessageBuilder(self.message_size_max)
        tail: list[tuple[bytes, bytes | None]] = []
        for item in ranges:
            self._process_range(builder, item, sent_lists, tail)
        self._add_tail(builder, tail)
        # Every message that asks something (a fingerprint or an id list) gets a reply, even an
        # empty one, so that the asker learns the session is over; a message that asks nothing
        # ends the session and gets none.
        if not any(item.mode in (MODE_FINGERPRINT, MODE_ID_LIST) for item in ranges):
            self.is_complete = True
            return None
        return self._send(builder)

    def _send(self, builder: _MessageBuilder) -> bytes:
        if self.rounds >= self.rounds_max:
            raise ReconcileRoundsExceededError(f"not reconciled within {self.rounds_max} messages")
        message = builder.finish()
        self.rounds += 1
        self.bytes_sent += len(message)
        self._sent_lists = builder.sent_lists
        # A message that asks nothing of the peer ends the session on both sides.
        self.is_complete = not builder.expects_reply
        return message

    def _process_range(
        self,
        builder: _MessageBuilder,
        item: _Range,
        sent_lists: dict[bytes, _SentList],
        tail: list[tuple[bytes, bytes | None]],
    ) -> None:
        if item.mode == MODE_SKIP:
            return
        if item.mode == MODE_ID_DIFF:
            self._apply_id_diff(item, sent_lists)
            return
        lo = self.ids.bisect(item.lower)
        hi = self.ids.bisect(item.upper)
        if item.mode == MODE_FINGERPRINT:
            if self.ids.fingerprint(lo, hi) == item.fingerprint:
                return
            if tail or not self._answer_mismatch(builder, item.lower, item.upper, lo, hi):
                tail.append((item.lower, item.upper))
            return
        remainder = item.lower if tail else self._answer_id_list(builder, item, lo, hi)
        if remainder is not None:
            tail.append((remainder, item.upper))

    # -- answers --

    def _answer_mismatch(
        self, builder: _MessageBuilder, lower: bytes, upper: bytes | None, lo: int, hi: int
    ) -> bool:
        """List or split a range whose fingerprints differ; False when it does not fit."""
        count = hi - lo
        if count <= limits.RECONCILE_ID_LIST_MAX:
            ids = self.ids.ids_between(lo, hi)
            blob = b"".join(ids)
            if 1 + _bound_size(upper) + 1 + _bin_size(len(blob)) > builder.free_bytes():
                return False
            builder.add(lower, upper, MODE_ID_LIST, blob)
            builder.sent_lists[lower] = _SentList(upper, tuple(ids))
            return True
        sub_ranges = self._split(lower, upper, lo, hi)
        size = sum(
            1 + _bound_size(sub_upper) + 1 + _bin_size(FINGERPRINT_SIZE_BYTES)
            for _, sub_upper, _, _ in sub_ranges
        )
        if size > builder.free_bytes(len(sub_ranges)):
            return False
        for sub_lower, sub_upper, sub_lo, sub_hi in sub_ranges:
            builder.add(
                sub_lower, sub_upper, MODE_FINGERPRINT, self.ids.fingerprint(sub_lo, sub_hi)
            )
        return True

    def _split(
        self, lower: bytes, upper: bytes | None, lo: int, hi: int
    ) -> list[tuple[bytes, bytes | None, int, int]]:
        """RECONCILE_BRANCHING sub-ranges holding (nearly) equal numbers of our ids."""
        branching = limits.RECONCILE_BRANCHING
        count = hi - lo
        sub_ranges = []
        sub_lower, sub_lo = lower, lo
        for bucket in range(1, branching + 1):
            sub_hi = lo + count * bucket // branching
            if bucket == branching:
                sub_upper = upper
            else:
                sub_upper = _separator(self.ids.id_at(sub_hi - 1), self.ids.id_at(sub_hi))
            sub_ranges.append((sub_lower, sub_upper, sub_lo, sub_hi))
            sub_lower, sub_lo = sub_upper or _ZERO_KEY, sub_hi
        return sub_ranges

    def _answer_id_list(
        self, builder: _MessageBuilder, item: _Range, lo: int, hi: int
    ) -> bytes | None:
        """Answer a peer's ID_LIST with an ID_DIFF; returns the start of what did not fit."""
        theirs = item.ids
        bitmap_size = _bin_size((len(theirs) + 7) // 8)
        # Array header, bound, mode, the ids' bin header (at most 5 bytes) and the bitmap.
        fixed = 1 + _BOUND_BYTES_MAX + 1 + 5 + bitmap_size
        room = (builder.free_bytes(1) - fixed) // ID_SIZE_BYTES
        if room < 1:
            return item.lower
        their_set = set(theirs)
        ours: list[bytes] = []
        cut: bytes | None = None
        for index in range(lo, hi):
            id_ = self.ids.id_at(index)
            if id_ in their_set:
                continue
            if len(ours) == room:
                cut = self._cut_after(ours[-1], theirs)
                break
            ours.append(id_)
        upper = item.upper if cut is None else cut
        listed = [i for i in theirs if upper is None or i < upper]
        lacking = [i not in self.ids for i in listed]
        builder.add(item.lower, upper, MODE_ID_DIFF, b"".join(ours), _bitmap(lacking))
        self._learn(have=ours, need=[i for i, lack in zip(listed, lacking, strict=True) if lack])
        return cut

    def _cut_after(self, last_sent: bytes, theirs: tuple[bytes, ...]) -> bytes:
        """A bound just above `last_sent` and at or below the next id of either side.

        Our next id exists: the caller cut because one more of our ids did not fit.
        """
        following = [self.ids.id_at(self.ids.bisect(last_sent) + 1)]
        their_next = bisect.bisect_right(theirs, last_sent)
        if their_next < len(theirs):
            following.append(theirs[their_next])
        return _separator(last_sent, min(following))

    def _apply_id_diff(self, item: _Range, sent_lists: dict[bytes, _SentList]) -> None:
        sent = sent_lists.pop(item.lower, None)
        if sent is None:
            raise ReconcileMessageError("an id diff answers no id list we sent")
        if sent.upper is not None and (item.upper is None or item.upper > sent.upper):
            raise ReconcileMessageError("an id diff reaches past the id list it answers")
        listed = [i for i in sent.ids if item.upper is None or i < item.upper]
        if len(item.bitmap) != (len(listed) + 7) // 8:
            raise ReconcileMessageError("an id diff bitmap has the wrong length")
        if len(listed) % 8 and item.bitmap[-1] >> (len(listed) % 8):
            raise ReconcileMessageError("an id diff bitmap has padding bits set")
        sent_set = set(sent.ids)
        if any(i in sent_set for i in item.ids):
            raise ReconcileMessageError("an id diff offers an id we listed")
        lacking = [bool(item.bitmap[n // 8] >> (n % 8) & 1) for n in range(len(listed))]
        self._learn(
            have=[i for i, lack in zip(listed, lacking, strict=True) if lack],
            need=[i for i in item.ids if i not in self.ids],
        )

    def _add_tail(self, builder: _MessageBuilder, tail: list[tuple[bytes, bytes | None]]) -> None:
        """Describe unfinished ranges by at most `tail_groups_max` fingerprints of ours."""
        count = len(tail)
        groups = min(builder.tail_groups_max, count)
        for group in range(groups):
            lower = tail[count * group // groups][0]
            upper = tail[count * (group + 1) // groups - 1][1]
            lo, hi = self.ids.bisect(lower), self.ids.bisect(upper)
            builder.add(lower, upper, MODE_FINGERPRINT, self.ids.fingerprint(lo, hi))

    def _learn(self, *, have: Iterable[bytes], need: Iterable[bytes]) -> None:
        for id_ in have:
            self._have[id_] = None
        for id_ in need:
            self._need[id_] = None
