"""Canonical msgpack: exactly one byte string per value.

Allowed values: None, bool, int (-2**63 .. 2**64-1), bytes, str, list, and dict with str keys.
No floats, no extension types. Canonical form is what `msgpack.packb(use_bin_type=True)`
produces after sorting every map by the UTF-8 bytes of its keys: ints in their shortest form,
str as str, bytes as bin. `decode` accepts only that form: it decodes under explicit limits and
re-encodes, so any other encoding of the same value (a long int form, unsorted keys, a str sent
as bin) is rejected with `NonCanonicalEncodingError`.
"""

from __future__ import annotations

from typing import Any

import msgpack

from . import limits
from .errors import DecodeError, LimitExceededError, LocalProtocolError, NonCanonicalEncodingError

Value = Any  # None | bool | int | bytes | str | list[Value] | dict[str, Value]

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_BYTES_ONLY = {bytes}


def _normalize(value: Value, depth: int) -> Value:
    if depth > limits.ENCODED_DEPTH_MAX:
        raise LocalProtocolError("value nests too deeply to encode")
    if value is None or isinstance(value, (bool, bytes, str)):
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise LocalProtocolError(f"int out of range: {value}")
        return value
    if isinstance(value, (list, tuple)):
        # Lists of ids (reconciliation, announcements) are the bulk of what is encoded: bytes
        # need no normalizing, so such a list is taken whole.
        if set(map(type, value)) == _BYTES_ONLY:
            return list(value)
        return [_normalize(item, depth + 1) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise LocalProtocolError("map keys must be str")
        keys = sorted(value, key=lambda key: key.encode())
        return {key: _normalize(value[key], depth + 1) for key in keys}
    raise LocalProtocolError(f"cannot encode {type(value).__name__} canonically")


def encode(value: Value) -> bytes:
    """Encode `value` canonically. Raises LocalProtocolError for values outside the model."""
    packed: bytes = msgpack.packb(_normalize(value, 0), use_bin_type=True)
    return packed


def _reject_ext(code: int, data: bytes) -> None:
    raise DecodeError(f"msgpack extension type {code} is not allowed")


def unpack(data: bytes, *, size_max: int = limits.ENCODED_VALUE_SIZE_BYTES_MAX) -> Value:
    """Decode msgpack under the size and count limits, without the canonical-form checks.

    Callers that know the exact shape of what they expect (the op decoder, on its hot path)
    check types themselves and then compare `pack(value)` with the input; everyone else uses
    `decode`, which does all of it.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("input is not bytes")
    if len(data) > size_max:
        raise LimitExceededError(f"encoded value of {len(data)} bytes exceeds {size_max}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_reject_ext,
            max_str_len=limits.ENCODED_STR_SIZE_BYTES_MAX,
            max_bin_len=size_max,
            max_array_len=limits.ENCODED_CONTAINER_ENTRIES_MAX,
            max_map_len=limits.ENCODED_CONTAINER_ENTRIES_MAX,
        )
    except DecodeError:
        raise
    except msgpack.ExtraData as exc:
        raise DecodeError("trailing bytes after the value") from exc
    except (ValueError, TypeError, UnicodeDecodeError, msgpack.UnpackException) as exc:
        raise DecodeError(f"invalid msgpack: {exc}") from exc
    except RecursionError as exc:
        raise LimitExceededError("value nests too deeply") from exc


def pack(value: Value) -> bytes:
    """Encode a value already known to be in canonical shape (sorted maps, allowed types)."""
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def decode(data: bytes, *, size_max: int = limits.ENCODED_VALUE_SIZE_BYTES_MAX) -> Value:
    """Decode canonical msgpack under the limits; any failure is a DecodeError subclass."""
    value = unpack(data, size_max=size_max)
    _check_model(value, 0)
    # _check_model proved every map is sorted, so a plain pack re-encodes canonically.
    if pack(value) != bytes(data):
        raise NonCanonicalEncodingError("value is not in canonical msgpack form")
    return value


def _check_model(value: Value, depth: int) -> None:
    """Reject floats, non-str or unsorted map keys and deep nesting (hot path: keep it lean).

    Ints need no range check: msgpack cannot carry ints outside the allowed range.
    """
    kind = type(value)
    if kind is float:
        raise DecodeError("floats are not allowed")
    if kind is list:
        items: Any = value
    elif kind is dict:
        keys = []
        for key in value:
            if type(key) is not str:
                raise DecodeError("map keys must be str")
            keys.append(key.encode())
        if any(keys[i] >= keys[i + 1] for i in range(len(keys) - 1)):
            raise NonCanonicalEncodingError("map keys are not in ascending byte order")
        items = value.values()
    else:
        return
    if depth >= limits.ENCODED_DEPTH_MAX:
        raise LimitExceededError(f"nesting deeper than {limits.ENCODED_DEPTH_MAX}")
    for item in items:
        item_kind = type(item)
        if item_kind is list or item_kind is dict or item_kind is float:
            _check_model(item, depth + 1)
