"""The canonical text of what goes into a simulation's trace hash (simulator.py).

`canonical_repr` runs on every core event and client outcome of every simulated run, so it
dispatches on the exact type first (the scalars and bytes that make up most of an event) and
reads each dataclass's field names once per class; every value still gets exactly the text of
the plain recursive definition (`tests/sim/test_simulator.py` compares both), or every trace
hash would change.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import cast

#: Per class: its dataclass field names in order, or None for a class that is no dataclass.
_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}
#: Exact types whose text is their repr (no subclass: an IntEnum is an int, a bool is not).
_REPR_TYPES = frozenset({int, float, str, bool, type(None)})


def _field_names(kind: type) -> tuple[str, ...] | None:
    try:
        return _FIELD_NAMES[kind]
    except KeyError:
        pass
    names = None
    if dataclasses.is_dataclass(kind):
        names = tuple(field.name for field in dataclasses.fields(kind))
    _FIELD_NAMES[kind] = names
    return names


def canonical_repr(value: object) -> str:
    """A repr that is the same in every process: sets are sorted, bytes are hex."""
    kind = type(value)
    if kind is bytes:
        return cast(bytes, value).hex()
    if kind in _REPR_TYPES:
        return repr(value)
    names = _field_names(kind) if kind is not type else None
    if names is not None:
        inner = ",".join(f"{name}={canonical_repr(getattr(value, name))}" for name in names)
        return f"{kind.__name__}({inner})"
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, Enum):
        return f"{kind.__name__}.{value.name}"
    if isinstance(value, set | frozenset):
        return "{" + ",".join(sorted(canonical_repr(item) for item in value)) + "}"
    if isinstance(value, dict):
        items = sorted((canonical_repr(k), canonical_repr(v)) for k, v in value.items())
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(canonical_repr(item) for item in value) + "]"
    return repr(value)
