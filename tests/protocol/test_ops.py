"""Op envelopes: shape, signatures, network binding, malleability, fuzz invariant."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmd.protocol import encoding, limits
from swarmd.protocol.errors import BadSignatureError, MalformedOpError, RemoteProtocolError
from swarmd.protocol.ops import ENVELOPE_VERSION, Kind, decode_op, verify_op

from .helpers import author, make_council

GENESIS, MEMBERS = make_council()
NET = GENESIS.network_id


def sample_ops() -> list:
    member = MEMBERS[0]
    alice, bob = author(GENESIS, "alice"), author(GENESIS, "bob")
    grant = member.grant(alice.key, 100)
    claim = alice.claim("alice")
    return [
        grant,
        alice.transfer(bob.key, 10, receive=[grant.op_id]),
        alice.burn(5, "rocket"),
        claim,
        member.endorse(claim),
        member.revoke(claim),
        member.quiesce("maintenance"),
        member.resume("done"),
        member.pause_claims("stage 1"),
        member.resume_claims(),
    ]


def test_every_kind_round_trips_and_verifies() -> None:
    for op in sample_ops():
        decoded = decode_op(op.envelope)
        assert decoded == op
        verify_op(decoded, NET)
    assert {op.kind for op in sample_ops()} == set(Kind)


def test_op_id_is_the_hash_of_the_envelope() -> None:
    op = sample_ops()[0]
    from swarmd.protocol.crypto import sha256

    assert op.op_id == sha256(op.envelope)


def test_signature_from_another_network_is_rejected() -> None:
    op = sample_ops()[1]
    with pytest.raises(BadSignatureError):
        verify_op(op, b"\x00" * 32)


def test_forged_body_is_rejected() -> None:
    op = sample_ops()[1]
    version, kind, body, signature = encoding.decode(op.envelope)
    fields = encoding.decode(body)
    fields["amount"] = 10_000
    forged = encoding.encode([version, kind, encoding.encode(fields), signature])
    with pytest.raises(BadSignatureError):
        verify_op(decode_op(forged), NET)


def test_kind_swap_is_rejected() -> None:
    """The kind is signed: relabelling a grant as a transfer breaks the signature."""
    op = sample_ops()[0]
    version, _kind, body, signature = encoding.decode(op.envelope)
    swapped = encoding.encode([version, int(Kind.TRANSFER), body, signature])
    with pytest.raises(BadSignatureError):
        verify_op(decode_op(swapped), NET)


def test_malleated_signature_is_rejected() -> None:
    op = sample_ops()[1]
    version, kind, body, signature = encoding.decode(op.envelope)
    order = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(signature[32:], "little") + order
    malleated = encoding.encode([version, kind, body, signature[:32] + s.to_bytes(32, "little")])
    with pytest.raises(BadSignatureError):
        verify_op(decode_op(malleated), NET)


def _envelope(body: dict, kind: int = int(Kind.TRANSFER)) -> bytes:
    return encoding.encode([ENVELOPE_VERSION, kind, encoding.encode(body), b"\x00" * 64])


def _body(**overrides: object) -> dict:
    body = {
        "author": MEMBERS[0].key,
        "seq": 1,
        "prev": b"",
        "deps": [],
        "basis": 0,
        "to": MEMBERS[1].key,
        "amount": 5,
    }
    body.update(overrides)
    return body


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"seq": 0}, "malformed_op"),
        ({"seq": 2}, "bad_prev"),
        ({"prev": b"\x01" * 32}, "bad_prev"),
        ({"amount": 0}, "bad_amount"),
        ({"amount": -1}, "bad_amount"),
        ({"amount": limits.AMOUNT_MAX + 1}, "bad_amount"),
        ({"deps": [b"\x02" * 32, b"\x01" * 32]}, "malformed_op"),
        ({"deps": [b"\x01" * 32, b"\x01" * 32]}, "malformed_op"),
        ({"deps": [b"\x01" * 31]}, "malformed_op"),
        ({"deps": [bytes([i]) * 32 for i in range(limits.OP_DEPS_MAX + 1)]}, "malformed_op"),
        ({"to": b"\x01" + b"\x00" * 31}, "invalid_key"),
        ({"author": b"\x00" * 32}, "invalid_key"),
        ({"extra": 1}, "malformed_op"),
        ({"basis": -1}, "malformed_op"),
        ({"amount": True}, "bad_amount"),
    ],
)
def test_shape_rules(overrides: dict, code: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_op(_envelope(_body(**overrides)))
    assert info.value.code == code


def test_unknown_kind_and_version() -> None:
    with pytest.raises(MalformedOpError) as info:
        decode_op(_envelope(_body(), kind=99))
    assert info.value.code == "unknown_kind"
    bad_version = encoding.encode([2, 2, encoding.encode(_body()), b"\x00" * 64])
    with pytest.raises(MalformedOpError) as info:
        decode_op(bad_version)
    assert info.value.code == "unknown_version"


@pytest.mark.parametrize("handle", ["ab", "Alice", "a" * 33, "al ice", "ålice"])
def test_bad_handles(handle: str) -> None:
    body = _body()
    del body["to"], body["amount"]
    body["handle"] = handle
    with pytest.raises(MalformedOpError) as info:
        decode_op(_envelope(body, kind=int(Kind.HANDLE_CLAIM)))
    assert info.value.code == "bad_handle"


def test_oversized_envelope() -> None:
    with pytest.raises(MalformedOpError):
        decode_op(b"\x00" * (limits.OP_ENVELOPE_SIZE_BYTES_MAX + 1))


@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_op(data)


@given(st.sampled_from(sample_ops()), st.data())
def test_fuzz_mutated_envelopes_never_verify_unless_identical(
    op: object, data: st.DataObject
) -> None:
    raw = bytearray(op.envelope)  # type: ignore[attr-defined]
    count = data.draw(st.integers(min_value=1, max_value=4))
    for _ in range(count):
        index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[index] = data.draw(st.integers(min_value=0, max_value=255))
    try:
        decoded = decode_op(bytes(raw))
        verify_op(decoded, NET)
    except RemoteProtocolError:
        return
    assert bytes(raw) == op.envelope  # type: ignore[attr-defined]


@given(st.sampled_from(sample_ops()), st.data())
def test_fast_envelope_path_agrees_with_the_general_decoder(
    op: object, data: st.DataObject
) -> None:
    """The byte-slicing fast path accepts exactly the canonical envelopes, with the same parts."""
    from swarmd.protocol.ops import _decode_envelope_slow, _split_canonical_envelope

    raw = bytearray(op.envelope)  # type: ignore[attr-defined]
    if data.draw(st.booleans()):
        index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[index] = data.draw(st.integers(min_value=0, max_value=255))
    envelope = bytes(raw)
    fast = _split_canonical_envelope(envelope)
    try:
        slow = _decode_envelope_slow(envelope)
    except RemoteProtocolError:
        assert fast is None or fast[0] not in range(1, 9)
        return
    assert fast == slow
