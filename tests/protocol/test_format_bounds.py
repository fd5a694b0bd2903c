"""The op format bounds of protocol/limits.py, each reached at its edge: the value at the
bound decodes, one past it is a typed rejection (`build_op` decodes what it built, so a
wallet cannot even sign it: LocalProtocolError naming the decoder's code)."""

from __future__ import annotations

import pytest

from swarmd.protocol import encoding
from swarmd.protocol.errors import LocalProtocolError, MalformedOpError
from swarmd.protocol.limits import (
    BURN_TARGET_SIZE_BYTES_MAX,
    HANDLE_LENGTH_MAX,
    HANDLE_LENGTH_MIN,
    REASON_SIZE_BYTES_MAX,
    SIGNATURE_SIZE_BYTES,
)
from swarmd.protocol.ops import decode_op

from .helpers import author, make_council

GENESIS, MEMBERS = make_council()


def test_handle_length_bounds() -> None:
    alice = author(GENESIS, "alice")
    for length in (HANDLE_LENGTH_MIN, HANDLE_LENGTH_MAX):
        op = alice.claim("a" * length)
        assert decode_op(op.envelope).fields["handle"] == "a" * length
    for length in (HANDLE_LENGTH_MIN - 1, HANDLE_LENGTH_MAX + 1):
        with pytest.raises(LocalProtocolError, match="bad_handle"):
            author(GENESIS, f"h{length}").claim("a" * length)


def test_burn_target_size_bound() -> None:
    alice = author(GENESIS, "burner")
    assert decode_op(alice.burn(1, "t" * BURN_TARGET_SIZE_BYTES_MAX).envelope).kind
    with pytest.raises(LocalProtocolError, match="target must be a str of at most"):
        author(GENESIS, "b2").burn(1, "t" * (BURN_TARGET_SIZE_BYTES_MAX + 1))


def test_reason_size_bound() -> None:
    member = MEMBERS[0]
    assert decode_op(member.quiesce("r" * REASON_SIZE_BYTES_MAX).envelope).kind
    with pytest.raises(LocalProtocolError, match="reason must be a str of at most"):
        MEMBERS[1].quiesce("r" * (REASON_SIZE_BYTES_MAX + 1))


def test_signature_size_is_exact() -> None:
    op = author(GENESIS, "signer").burn(1, "x")
    version, kind, body, signature = encoding.decode(op.envelope)
    assert len(signature) == SIGNATURE_SIZE_BYTES
    for wrong in (signature[:-1], signature + b"\x00"):
        with pytest.raises(MalformedOpError):
            decode_op(encoding.encode([version, kind, body, wrong]))
