"""Copy-on-write views of the final state: what lets a checkpoint cost O(what changed).

The live (provisional) derivation, a cut's derivation and a re-derivation are *overlays* on
the final one instead of copies of it: each record map (`OverlayMap`) holds only the records
written since the overlay was made, and reads of any other record fall through to the final
map. A record object that is changed in place (an account, a claim, a per-handle claim list)
is copied the first time it is written (`writable`), so the final record is never changed
through the overlay. The applied set (`OverlaySet`) holds only the ids added above the final one.

Making a cut final *merges* an overlay into the final maps (`merge`): O(records it wrote).
Reads keep the final map's order: the base's keys in the base's order, then the records new in
the overlay in the order they were written, as a dict copied and then written would iterate.

`WorkCount` counts record copies and merged records, so tests can assert that a checkpoint
touches what its cut changed and not the whole state (`LedgerStats.work`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Generic, TypeVar, cast

K = TypeVar("K")
V = TypeVar("V")


class WorkCount:
    """Records copied (on first write through an overlay, or by a whole-state copy) and
    records merged into the final state, since the ledger started."""

    __slots__ = ("copied", "merged")

    def __init__(self) -> None:
        self.copied = 0
        self.merged = 0


class _Deleted:
    """The marker of a record the overlay deleted (only bindings are ever deleted)."""


_DELETED = _Deleted()
_MISSING = object()


class OverlayMap(MutableMapping[K, V], Generic[K, V]):
    """A dict over a base dict, copy-on-write per record (see the module docstring).

    `copy_value` copies a record that is changed in place (None: records are replaced, never
    changed in place, so no copy is needed)."""

    __slots__ = ("_copy", "_work", "base", "local")

    def __init__(
        self, base: MutableMapping[K, V], copy_value: Callable[[V], V] | None, work: WorkCount
    ) -> None:
        self.base = base
        self.local: dict[K, V | _Deleted] = {}
        self._copy = copy_value
        self._work = work

    # --- reading ----------------------------------------------------------------------------

    def get(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        value = self.local.get(key, _MISSING)
        if value is _MISSING:
            return self.base.get(key, default)
        if value is _DELETED:
            return default
        return cast(V, value)

    def __getitem__(self, key: K) -> V:
        value = self.local.get(key, _MISSING)
        if value is _MISSING:
            return self.base[key]
        if value is _DELETED:
            raise KeyError(key)
        return cast(V, value)

    def __contains__(self, key: object) -> bool:
        value = cast(dict[object, object], self.local).get(key, _MISSING)
        if value is _MISSING:
            return key in self.base
        return value is not _DELETED

    def __iter__(self) -> Iterator[K]:
        local = self.local
        for key in self.base:
            if local.get(key, _MISSING) is not _DELETED:
                yield key
        base = self.base
        for key, value in local.items():
            if value is not _DELETED and key not in base:
                yield key

    def __len__(self) -> int:
        base = self.base
        count = len(base)
        for key, value in self.local.items():
            if key in base:
                count -= value is _DELETED
            else:
                count += value is not _DELETED
        return count

    def written(self) -> Iterable[K]:
        """The keys written (or deleted) through this overlay, in the order first written."""
        return self.local.keys()

    # --- writing ----------------------------------------------------------------------------

    def writable(self, key: K) -> V | None:
        """The record under `key` to change in place (copied from the base on first write),
        or None when there is none."""
        value = self.local.get(key, _MISSING)
        if value is _MISSING:
            found = self.base.get(key, _MISSING)  # type: ignore[arg-type]
            if found is _MISSING:
                return None
            record = cast(V, found)
            if self._copy is not None:
                record = self._copy(record)
                self._work.copied += 1
            self.local[key] = record
            return record
        return None if value is _DELETED else cast(V, value)

    def setdefault(self, key: K, default: V) -> V:  # type: ignore[override]
        record = self.writable(key)
        if record is None:
            self.local[key] = record = default
        return record

    def __setitem__(self, key: K, value: V) -> None:
        self.local[key] = value

    def __delitem__(self, key: K) -> None:
        if key not in self:
            raise KeyError(key)
        if key in self.base:
            self.local[key] = _DELETED
        else:
            del self.local[key]

    def pin(self, keys: Iterable[K]) -> None:
        """Keep this overlay's view of `keys` (read through to the base until now) when another
        overlay on the same base is merged into it: O(len(keys))."""
        local, base = self.local, self.base
        for key in keys:
            if key not in local:
                local[key] = base.get(key, _DELETED)  # type: ignore[arg-type]

    def merge(self) -> int:
        """Write every record of the overlay into the base; returns how many."""
        base = self.base
        for key, value in self.local.items():
            if value is _DELETED:
                base.pop(key, None)
            else:
                base[key] = cast(V, value)
        count = len(self.local)
        self._work.merged += count
        self.local = {}
        return count


class OverlaySet:
    """A set of ids over a base set: membership in either; added ids go to the overlay."""

    __slots__ = ("base", "local")

    def __init__(self, base: set[bytes]) -> None:
        self.base = base
        self.local: set[bytes] = set()

    def __contains__(self, item: object) -> bool:
        return item in self.local or item in self.base

    def add(self, item: bytes) -> None:
        if item not in self.base:
            self.local.add(item)

    def __iter__(self) -> Iterator[bytes]:
        yield from self.base
        yield from self.local

    def __len__(self) -> int:
        return len(self.base) + len(self.local)

    def __sub__(self, other: Iterable[bytes]) -> set[bytes]:
        return set(self) - set(other)

    def merge(self) -> None:
        self.base |= self.local
        self.local = set()

    def forget(self, ids: Iterable[bytes]) -> None:
        """Drop ids the base now holds (merged into it by another overlay)."""
        self.local.difference_update(ids)
