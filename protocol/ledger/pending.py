"""The bounded pending pool: verified ops that wait for a missing prev, dep or basis.

Eviction rule (docs/PROTOCOL.md): the pool holds at most `pending_ops_max` ops and at most
`pending_ops_per_author_max` per author. When an op arrives and its author is at the per-author
bound, the author's oldest pending op is evicted; when the pool is full, the oldest pending op
of all is evicted. "Oldest" means earliest received; ties cannot occur because every admission
gets the next arrival number. An op pending longer than `pending_op_ttl_s` expires at the next
`expire()`. Evicted and expired ops are reported to the caller, which emits `OpEvicted`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ..ops import Op

#: A missing parent is an op id; a missing basis is the checkpoint height it names.
MissingKey = bytes | int


@dataclass(slots=True)
class PendingEntry:
    op: Op
    missing: set[MissingKey]
    received_at: float


class PendingPool:
    def __init__(self, *, ops_max: int, per_author_max: int, ttl_s: float) -> None:
        self.ops_max = ops_max
        self.per_author_max = per_author_max
        self.ttl_s = ttl_s
        self._entries: OrderedDict[bytes, PendingEntry] = OrderedDict()  # arrival order
        self._waiting_on: dict[MissingKey, list[bytes]] = {}
        self._per_author: dict[bytes, OrderedDict[bytes, None]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, op_id: bytes) -> bool:
        return op_id in self._entries

    def get(self, op_id: bytes) -> Op | None:
        entry = self._entries.get(op_id)
        return entry.op if entry else None

    def missing_count(self) -> int:
        return len(self._waiting_on)

    def missing_ids(self) -> list[bytes]:
        """Parent ids some pending op waits for, in first-needed order (to fetch from peers)."""
        return [key for key in self._waiting_on if isinstance(key, bytes)]

    def entries(self) -> list[PendingEntry]:
        return list(self._entries.values())

    def add(self, op: Op, missing: set[MissingKey], now: float) -> list[Op]:
        """Park `op`; returns the ops evicted to make room (oldest first)."""
        evicted: list[Op] = []
        author_ids = self._per_author.get(op.author)
        if author_ids is not None and len(author_ids) >= self.per_author_max:
            evicted.append(self._remove(next(iter(author_ids))))
        while len(self._entries) >= self.ops_max:
            evicted.append(self._remove(next(iter(self._entries))))
        self._entries[op.op_id] = PendingEntry(op, set(missing), now)
        self._per_author.setdefault(op.author, OrderedDict())[op.op_id] = None
        for key in sorted(missing, key=_sort_key):
            self._waiting_on.setdefault(key, []).append(op.op_id)
        return evicted

    def resolve(self, key: MissingKey) -> list[Op]:
        """`key` arrived (an op was applied or a checkpoint became final): the ops that now
        miss nothing leave the pool and are returned in arrival order."""
        ready: list[Op] = []
        for op_id in self._waiting_on.pop(key, []):
            entry = self._entries.get(op_id)
            if entry is None:
                continue
            entry.missing.discard(key)
            if not entry.missing:
                ready.append(self._remove(op_id))
        return ready

    def drop_waiters(self, key: MissingKey) -> list[Op]:
        """`key` can never arrive (its op was rejected): remove and return every op that waits
        on it, directly."""
        dropped: list[Op] = []
        for op_id in self._waiting_on.pop(key, []):
            if op_id in self._entries:
                dropped.append(self._remove(op_id))
        return dropped

    def expire(self, now: float) -> list[Op]:
        expired: list[Op] = []
        while self._entries:
            op_id, entry = next(iter(self._entries.items()))
            # The deadline `next_expiry` reports (not `now - received_at`, which can round
            # to just below the TTL at that deadline: the timer would re-arm it forever).
            if now < entry.received_at + self.ttl_s:
                break
            expired.append(self._remove(op_id))
        return expired

    def discard(self, op_id: bytes) -> bool:
        """Remove `op_id` if it is pending; whether it was."""
        if op_id not in self._entries:
            return False
        self._remove(op_id)
        return True

    def next_expiry(self) -> float | None:
        if not self._entries:
            return None
        return next(iter(self._entries.values())).received_at + self.ttl_s

    def _remove(self, op_id: bytes) -> Op:
        entry = self._entries.pop(op_id)
        author_ids = self._per_author[entry.op.author]
        del author_ids[op_id]
        if not author_ids:
            del self._per_author[entry.op.author]
        for key in entry.missing:
            waiters = self._waiting_on.get(key)
            if waiters is not None:
                waiters.remove(op_id)
                if not waiters:
                    del self._waiting_on[key]
        return entry.op


def _sort_key(key: MissingKey) -> tuple[int, bytes]:
    return (0, key) if isinstance(key, bytes) else (1, key.to_bytes(8, "big"))
