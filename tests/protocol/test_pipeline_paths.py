"""The pipeline's fast paths give exactly what the general paths give.

The duplicate answer before decoding, the grant/transfer decoder against the general one, and
the lazily hashed unreceived-credit digest against hashing at every change.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmd.protocol import crypto, encoding
from swarmd.protocol.errors import MalformedOpError, RemoteProtocolError
from swarmd.protocol.ledger import Ledger, OpRejected
from swarmd.protocol.ledger.state import _ID_SPACE, Account, unreceived_term
from swarmd.protocol.ops import Kind, Op, _checked_op, _credit_op, decode_op, op_id_of

from .helpers import author, make_council

GENESIS, MEMBERS = make_council()


def test_duplicates_are_answered_before_decoding() -> None:
    grant = MEMBERS[0].grant(author(GENESIS, "dup").key, 100)
    ledger = Ledger(GENESIS)
    assert ledger.receive_op(grant.envelope, 0.0).status == "accepted"
    again = ledger.receive_op(grant.envelope, 0.0)
    assert (again.status, again.op_id, again.detail) == ("duplicate", grant.op_id, "applied")
    assert ledger.stats.duplicate == 1


def test_undecodable_envelopes_are_rejected_by_their_hash_every_time() -> None:
    ledger = Ledger(GENESIS)
    garbage = b"\x94\x01\x02"
    for _ in range(2):
        outcome = ledger.receive_op(garbage, 0.0)
        assert (outcome.status, outcome.op_id) == ("rejected", op_id_of(garbage))
    assert [type(event) for event in ledger.drain_events()] == [OpRejected, OpRejected]


def _credit_ops() -> dict[Kind, Op]:
    alice, bob = author(GENESIS, "alice"), author(GENESIS, "bob")
    grant = make_council(4)[1][0].grant(alice.key, 100)
    return {Kind.GRANT: grant, Kind.TRANSFER: alice.transfer(bob.key, 7, receive=[grant.op_id])}


CREDIT_OPS = _credit_ops()


@given(st.sampled_from([Kind.GRANT, Kind.TRANSFER]), st.data())
def test_credit_fast_path_agrees_with_the_general_decoder(kind: Kind, data: st.DataObject) -> None:
    """Mutated grant and transfer bodies: the fast path returns None or the general path's op."""
    op = CREDIT_OPS[kind]  # built once: authors advance their chains on every op they sign
    raw = bytearray(op.body)
    for _ in range(data.draw(st.integers(min_value=0, max_value=3))):
        index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[index] = data.draw(st.integers(min_value=0, max_value=255))
    body = bytes(raw)
    envelope = encoding.encode([1, int(kind), body, op.signature])
    try:
        fields = encoding.unpack(body)
    except RemoteProtocolError:
        return
    fast = _credit_op(op_id_of(envelope), kind, fields, body, op.signature, envelope)
    try:
        general = _checked_op(op_id_of(envelope), kind, fields, body, op.signature, envelope)
    except RemoteProtocolError:
        assert fast is None
        return
    if fast is not None:
        assert fast == general
        for name in OP_ATTRIBUTES:
            assert getattr(fast, name) == getattr(general, name), name


OP_ATTRIBUTES = ("op_id", "kind", "author", "seq", "prev", "deps", "basis", "fields", "body")
OP_ATTRIBUTES += ("signature", "envelope", "amount", "to", "parents")


def test_unreceived_digest_is_the_same_hashed_late_or_at_once() -> None:
    rng = random.Random(5)
    account = Account()
    held: dict[bytes, int] = {}
    for step in range(200):
        if held and rng.random() < 0.45:
            credit_id = rng.choice(sorted(held))
            assert account.remove_unreceived(credit_id) == held.pop(credit_id)
        else:
            credit_id = crypto.sha256(step.to_bytes(4, "big"))
            held[credit_id] = rng.randint(1, 2**63 - 1)
            account.add_unreceived(credit_id, held[credit_id])
        if rng.random() < 0.2:  # a state root in between
            expected = sum(unreceived_term(c, a) for c, a in held.items()) % _ID_SPACE
            assert account.unreceived_sum == expected
            assert account.copy().unreceived_sum == expected
    expected = sum(unreceived_term(c, a) for c, a in held.items()) % _ID_SPACE
    assert account.copy().unreceived_sum == account.unreceived_sum == expected


def test_credit_fast_path_refuses_a_long_int_form() -> None:
    """amount 7 sent as uint8 (0xcc 0x07) instead of a fixint: same value, not canonical."""
    alice, bob = author(GENESIS, "alice"), author(GENESIS, "bob")
    grant = MEMBERS[0].grant(alice.key, 100)
    op = alice.transfer(bob.key, 7, receive=[grant.op_id])
    body = op.body.replace(b"\xa6amount\x07", b"\xa6amount\xcc\x07", 1)
    assert body != op.body
    envelope = encoding.encode([1, int(Kind.TRANSFER), body, op.signature])
    fields = encoding.unpack(body)
    assert (
        _credit_op(op_id_of(envelope), Kind.TRANSFER, fields, body, op.signature, envelope) is None
    )
    with pytest.raises(MalformedOpError) as raised:
        decode_op(envelope)
    assert raised.value.code == "non_canonical_encoding"
