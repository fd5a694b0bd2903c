"""The settlement of an epoch after a rollback (docs/PROTOCOL.md "Settlement"): its cut
encoding (version 3) beside the unchanged version-2 cut, the evidence a settled value needs,
the SETTLEMENT message, and the precommits a validator keeps through `enter_epoch`."""

from __future__ import annotations

import pytest

from swarmd.protocol import crypto, encoding
from swarmd.protocol.checkpoint import Cut, CutDecodeError
from swarmd.protocol.consensus import (
    SIGNING_STATE_PRECOMMITS_MAX,
    MessageKind,
    SigningStateError,
    Tendermint,
    decode_signing_state,
    sign_vote,
)
from swarmd.protocol.crypto import KeyPair
from swarmd.protocol.errors import RemoteProtocolError
from swarmd.protocol.limits import SETTLEMENT_PRECOMMITS_KEPT_MAX, SETTLEMENT_VALUES_MAX
from swarmd.protocol.messages import (
    ROLLBACK_ITEMS_PER_MESSAGE_MAX,
    MessageError,
    SettlementMessage,
    decode_message,
    encode_message,
)
from swarmd.protocol.rollback import SettlementEvidenceError, verify_settled

from .helpers import keypair

NETWORK = crypto.sha256(b"settlement-tests")
ROOT = bytes(32)
MEMBERS = [keypair(f"settle-{i}") for i in range(4)]
COUNCIL = [k.public_key for k in MEMBERS]


def _cut(height: int = 5, settled: tuple[tuple[bytes, bytes], ...] | None = None) -> Cut:
    heads = () if settled is not None else ((bytes([1]) * 32, 1, bytes([2]) * 32),)
    return Cut(bytes([9]) * 32, height, heads, ROOT, 1_000, settled)


def _precommit(value: bytes, *, member: int = 0, epoch: int = 0, height: int = 5) -> bytes:
    vote = sign_vote(
        MEMBERS[member],
        NETWORK,
        MessageKind.PRECOMMIT,
        height,
        0,
        crypto.sha256(value),
        epoch=epoch,
    )
    return vote.encode()


def test_a_normal_cut_keeps_version_2_and_a_settlement_is_version_3() -> None:
    normal = _cut()
    assert encoding.decode(normal.encode())[0] == 2 and len(encoding.decode(normal.encode())) == 6
    assert Cut.decode(normal.encode()) == normal and normal.settled is None
    value = _cut(4).encode()
    settlement = _cut(settled=((_precommit(value), value),))
    decoded = Cut.decode(settlement.encode())
    assert encoding.decode(settlement.encode())[0] == 3
    assert decoded == settlement and decoded.heads == ()
    empty = _cut(settled=())
    assert Cut.decode(empty.encode()).settled == ()


def test_a_settlement_cut_is_refused_malformed() -> None:
    value = _cut(4).encode()
    item = [_precommit(value), value]
    base = [3, bytes([9]) * 32, 5, [], ROOT, 1_000]
    with pytest.raises(CutDecodeError):  # heads in a settlement
        Cut.decode(
            encoding.encode([3, bytes([9]) * 32, 5, [[bytes(32), 1, bytes(32)]], ROOT, 1_000, []])
        )
    with pytest.raises(CutDecodeError):  # a version-2 cut without heads
        Cut.decode(encoding.encode([2, bytes([9]) * 32, 5, [], ROOT, 1_000]))
    with pytest.raises(CutDecodeError):  # unsorted / repeated values
        Cut.decode(encoding.encode([*base, [item, item]]))
    with pytest.raises(CutDecodeError):  # an item that is not a pair of bytes
        Cut.decode(encoding.encode([*base, [[item[0]]]]))


def test_a_settlement_lists_at_most_settlement_values_max() -> None:
    """SETTLEMENT_VALUES_MAX reached: a cut listing one more value is malformed."""
    items = sorted([bytes([i % 256, i // 256]), b"v"] for i in range(SETTLEMENT_VALUES_MAX + 1))
    base = [3, bytes([9]) * 32, 5, [], ROOT, 1_000]
    assert len(Cut.decode(encoding.encode([*base, items[:-1]])).settled or ()) == (
        SETTLEMENT_VALUES_MAX
    )
    with pytest.raises(CutDecodeError):
        Cut.decode(encoding.encode([*base, items]))


def test_a_settled_value_needs_a_members_precommit_above_h_in_the_ended_epoch() -> None:
    value = _cut(6).encode()

    def check(precommit: bytes, settled: bytes = value) -> bytes:
        return verify_settled(precommit, settled, NETWORK, COUNCIL, epoch=0, height=4)

    assert check(_precommit(value, height=6)) == crypto.sha256(value)
    refused = [
        _precommit(value, height=4),  # at H: not reverted
        _precommit(value, epoch=1, height=6),  # not of the ended epoch
    ]
    for precommit in refused:
        with pytest.raises(SettlementEvidenceError):
            check(precommit)
    with pytest.raises(SettlementEvidenceError):  # another value
        check(_precommit(value, height=6), _cut(7).encode())
    nil = sign_vote(MEMBERS[0], NETWORK, MessageKind.PRECOMMIT, 6, 0, None).encode()
    prevote = sign_vote(MEMBERS[0], NETWORK, MessageKind.PREVOTE, 6, 0, crypto.sha256(value))
    outsider = sign_vote(keypair("outsider"), NETWORK, MessageKind.PRECOMMIT, 6, 0, None)
    for precommit in (nil, prevote.encode(), outsider.encode()):
        with pytest.raises(SettlementEvidenceError):
            check(precommit)
    forged = bytearray(_precommit(value, height=6))
    forged[-1] ^= 1
    with pytest.raises(RemoteProtocolError):
        check(bytes(forged))


def test_the_settlement_message_round_trips_and_is_bounded() -> None:
    value = _cut(6).encode()
    message = SettlementMessage(((_precommit(value), value),))
    assert decode_message(encode_message(message)) == message
    many = SettlementMessage(((b"p", b"v"),) * (ROLLBACK_ITEMS_PER_MESSAGE_MAX + 1))
    with pytest.raises(MessageError):
        decode_message(encode_message(many))
    with pytest.raises(MessageError):
        decode_message(encode_message(SettlementMessage(())))


def test_a_validator_keeps_its_last_precommits_through_enter_epoch() -> None:
    """SETTLEMENT_PRECOMMITS_KEPT_MAX reached: a one-member council decides more heights than
    that; after `enter_epoch` it shows its newest precommits, each with its value."""
    member = MEMBERS[0]
    core = Tendermint(network_id=NETWORK, validators=[member.public_key], keypair=member)
    heights = SETTLEMENT_PRECOMMITS_KEPT_MAX + 3
    for height in range(1, heights + 1):
        core.start_height(height, 0.0)
        core.provide_value(height, 0, _cut(height).encode(), 0.0)
        assert core.decided
    assert core.old_precommits(0) == []  # nothing ended yet
    core.enter_epoch(1)
    kept = core.old_precommits(0)
    assert len(kept) == SETTLEMENT_PRECOMMITS_KEPT_MAX
    assert [m.height for m, _ in kept] == list(range(4, heights + 1))
    assert all(m.value_id == crypto.sha256(value) for m, value in kept)
    assert [m.height for m, _ in core.old_precommits(heights - 2)] == [heights - 1, heights]
    core.enter_epoch(2)
    assert core.old_precommits(0) == []  # only the epoch just ended


def _decided(member: KeyPair, heights: int, epoch: int = 0) -> Tendermint:
    core = Tendermint(
        network_id=NETWORK, validators=[member.public_key], keypair=member, epoch=epoch
    )
    for height in range(1, heights + 1):
        core.start_height(height, 0.0)
        core.provide_value(height, 0, _cut(height).encode(), 0.0)
        assert core.decided
    return core


def test_kept_precommits_survive_a_restart_through_the_signing_state() -> None:
    """The signing state carries the kept precommits (both lists): a core restored from one
    written before `enter_epoch` shows them as old precommits once in the next epoch, and one
    written after it too; a state of two epochs ago gives nothing (no settlement needs it)."""
    member = MEMBERS[0]
    core = _decided(member, 3)
    before = core.signing_state()
    decoded = decode_signing_state(before, NETWORK, member.public_key)
    kept = list(decoded.precommits_kept)
    assert [m.height for m, _ in kept] == [1, 2, 3] and decoded.old_precommits == ()
    core.enter_epoch(1)
    assert core.old_precommits(0) == kept
    core.start_height(2, 0.0)
    core.provide_value(2, 0, _cut(2).encode(), 0.0)
    after = core.signing_state()
    assert decode_signing_state(after, NETWORK, member.public_key).old_precommits == tuple(kept)
    for data in (before, after):
        restarted = Tendermint(
            network_id=NETWORK, validators=[member.public_key], keypair=member, epoch=1
        )
        restarted.restore_precommits(data)
        restarted.restore_precommits(data)  # handed over twice: kept once
        assert restarted.old_precommits(1) == [pair for pair in kept if pair[0].height > 1]
    later = Tendermint(network_id=NETWORK, validators=[member.public_key], keypair=member, epoch=2)
    later.restore_precommits(before)
    assert later.old_precommits(0) == []


def test_a_signing_state_without_kept_precommits_is_still_read() -> None:
    member = MEMBERS[0]
    fields = encoding.decode(_decided(member, 1).signing_state())
    assert fields["precommits_kept"]
    del fields["precommits_kept"], fields["old_precommits"]
    state = decode_signing_state(encoding.encode(fields), NETWORK, member.public_key)
    assert (state.height, state.precommits_kept, state.old_precommits) == (1, (), ())


def test_a_kept_precommit_that_is_not_ours_or_not_its_value_is_refused() -> None:
    member = MEMBERS[0]
    fields = encoding.decode(_decided(member, 1).signing_state())
    message, value = fields["precommits_kept"][0]
    other = _precommit(value, member=1, height=1)
    bad = [
        [[message, value + b"x"]],  # another value than its id names
        [[other, value]],  # another member's precommit
        [[message, value]] * (SIGNING_STATE_PRECOMMITS_MAX + 1),  # over the limit
        [[_precommit(value, epoch=1, height=1), value]],  # not of the state's epoch
    ]
    for items in bad:
        with pytest.raises(SigningStateError):
            decode_signing_state(
                encoding.encode({**fields, "precommits_kept": items}), NETWORK, member.public_key
            )
    with pytest.raises(SigningStateError):  # an old precommit of the state's own epoch
        decode_signing_state(
            encoding.encode({**fields, "old_precommits": [[message, value]]}),
            NETWORK,
            member.public_key,
        )
