"""Canonical msgpack: one encoding per value, limits, typed errors, fuzz invariant."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmd.protocol import encoding, limits
from swarmd.protocol.errors import (
    DecodeError,
    LimitExceededError,
    LocalProtocolError,
    NonCanonicalEncodingError,
    RemoteProtocolError,
)

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=64)
    | st.text(max_size=32),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)


@given(values)
def test_round_trip_is_exact(value: object) -> None:
    data = encoding.encode(value)
    assert encoding.decode(data) == value
    assert encoding.encode(encoding.decode(data)) == data


def test_map_order_does_not_change_the_encoding() -> None:
    assert encoding.encode({"b": 1, "a": 2}) == encoding.encode({"a": 2, "b": 1})


@pytest.mark.parametrize(
    "data",
    [
        msgpack.packb({"b": 1, "a": 2}, use_bin_type=True),  # unsorted keys
        b"\xcd\x00\x01",  # uint16 holding 1: not the shortest form
        b"\xd9\x01a",  # str8 holding a 1-byte string: fixstr is shorter
        b"\xc4\x01a\xc4",  # trailing garbage is not canonical either (extra data)
    ],
)
def test_non_canonical_forms_are_rejected(data: bytes) -> None:
    with pytest.raises(DecodeError):
        encoding.decode(data)


def test_long_int_form_is_the_non_canonical_error() -> None:
    with pytest.raises(NonCanonicalEncodingError):
        encoding.decode(b"\xcd\x00\x01")


@pytest.mark.parametrize(
    "data",
    [
        msgpack.packb(1.5),
        msgpack.packb({b"k": 1}, use_bin_type=True),
        msgpack.packb(msgpack.ExtType(1, b"x")),
        b"\xc1",
        b"",
    ],
)
def test_values_outside_the_model_are_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError):
        encoding.decode(data)


def test_size_limit() -> None:
    data = encoding.encode(b"x" * 100)
    with pytest.raises(LimitExceededError):
        encoding.decode(data, size_max=50)


def test_depth_limit() -> None:
    deep: object = 1
    for _ in range(limits.ENCODED_DEPTH_MAX + 1):
        deep = [deep]
    data = msgpack.packb(deep)
    with pytest.raises(LimitExceededError):
        encoding.decode(data)
    with pytest.raises(LocalProtocolError):
        encoding.encode(deep)


def test_container_entry_limit() -> None:
    data = msgpack.packb([0] * (limits.ENCODED_CONTAINER_ENTRIES_MAX + 1))
    with pytest.raises(DecodeError):
        encoding.decode(data)


def test_string_limit() -> None:
    data = msgpack.packb("x" * (limits.ENCODED_STR_SIZE_BYTES_MAX + 1))
    with pytest.raises(DecodeError):
        encoding.decode(data)


def test_encoder_refuses_floats_and_foreign_types() -> None:
    for value in (1.0, {1: 2}, object(), 2**64):
        with pytest.raises(LocalProtocolError):
            encoding.encode(value)


@given(st.binary(max_size=512))
def test_fuzz_any_bytes_decode_or_raise_remote_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        encoding.decode(data)


@given(values, st.data())
def test_fuzz_mutated_encodings(value: object, data: st.DataObject) -> None:
    raw = bytearray(encoding.encode(value))
    index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[index] = data.draw(st.integers(min_value=0, max_value=255))
    try:
        decoded = encoding.decode(bytes(raw))
    except RemoteProtocolError:
        return
    assert encoding.encode(decoded) == bytes(raw)
