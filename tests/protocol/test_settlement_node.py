"""The settlement on NodeCore against a faulty member (docs/PROTOCOL.md "Settlement"): the
quota per member in what a node remembers and in what its proposer lists."""

from __future__ import annotations

import pytest

from swarmd.protocol import consensus, crypto
from swarmd.protocol.checkpoint import Cut
from swarmd.protocol.errors import ProtocolError
from swarmd.protocol.framing import FrameEncoder
from swarmd.protocol.limits import (
    ENCODED_VALUE_SIZE_BYTES_MAX,
    SETTLEMENT_SIGNER_BYTES_MAX,
    SETTLEMENT_VALUES_MAX,
    SETTLEMENT_VALUES_PER_SIGNER_MAX,
)
from swarmd.protocol.messages import (
    ROLLBACK_ITEMS_PER_MESSAGE_MAX,
    RollbackMessage,
    SettlementMessage,
    decode_message,
    encode_message,
)
from swarmd.protocol.node_core import NodeCore
from swarmd.protocol.node_core.settlement import settlement_messages
from swarmd.protocol.sim.harness import Swarm

from .test_rollback_node import _prepared

FAULTY = 3


def _send(swarm: Swarm, node: int, message: RollbackMessage | SettlementMessage) -> None:
    """`message` from node 0 to `node`, handled at once."""
    sender = FrameEncoder()
    sender.queue_message(encode_message(message))
    for frame in sender.frames_to_send():
        swarm.nodes[node].receive_frame(swarm.nodes[0].node_id, frame, swarm.now)


def _entered(seed: int) -> tuple[Swarm, int]:
    """Nodes 1 and 2 accept a certificate back to H; no time runs after it (the settlement
    is due on both)."""
    swarm, height, _, _ = _prepared(seed=seed)
    votes = tuple(
        swarm.nodes[i].propose_rollback(height, "bad", swarm.now).encode() for i in range(3)
    )
    for i in (1, 2):
        _send(swarm, i, RollbackMessage(votes, ()))
        assert swarm.nodes[i].rollbacks.settlement.due()
    return swarm, height


def _made_up(swarm: Swarm, height: int, count: int, size: int) -> list[tuple[bytes, bytes]]:
    """`count` values the faulty member makes up, each with its signed precommit above H."""
    values = [crypto.sha256(b"made up %d" % i) * (size // 32) for i in range(count)]
    return _precommitted(swarm, height, FAULTY, values)


def _precommitted(
    swarm: Swarm, height: int, signer: int, values: list[bytes]
) -> list[tuple[bytes, bytes]]:
    """Each of `values` with `signer`'s precommit for it at its own height above H."""
    items = []
    for i, value in enumerate(values):
        vote = consensus.sign_vote(
            swarm.keys[signer],
            swarm.genesis.network_id,
            consensus.MessageKind.PRECOMMIT,
            height + 1 + i,
            0,
            crypto.sha256(value),
            epoch=0,
        )
        items.append((vote.encode(), value))
    return items


def _flood(swarm: Swarm, node: int, items: list[tuple[bytes, bytes]]) -> None:
    for item in items:  # one per message: each within one frame
        _send(swarm, node, SettlementMessage((item,)))


def _honest(node: NodeCore, height: int) -> list[tuple[bytes, bytes]]:
    return [(m.encode(), value) for m, value in node.consensus.old_precommits(height)]


def _ids(items: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]]) -> set[bytes]:
    return {crypto.sha256(value) for _, value in items}


def _signers(items: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]]) -> list[bytes]:
    return [consensus.decode_message(precommit).validator for precommit, _ in items]


def test_a_member_flooding_made_up_values_does_not_stop_honest_ones_being_learned() -> None:
    """More made-up values than SETTLEMENT_VALUES_MAX from one member (before this quota they
    filled a node's known values): the node keeps SETTLEMENT_VALUES_PER_SIGNER_MAX of them,
    still learns a correct member's values shown afterwards, and its proposal lists them."""
    swarm, height = _entered(seed=5)
    node = swarm.nodes[1]
    settlement = node.rollbacks.settlement
    _flood(swarm, 1, _made_up(swarm, height, SETTLEMENT_VALUES_MAX + 8, 64))
    faulty = swarm.keys[FAULTY].public_key
    assert _signers(list(settlement.known.values())).count(faulty) == (
        SETTLEMENT_VALUES_PER_SIGNER_MAX
    )
    honest = _honest(swarm.nodes[2], height)
    assert honest, "member 2 precommitted no value above H"
    _send(swarm, 1, SettlementMessage(tuple(honest)))
    assert _ids(honest) <= set(settlement.known)
    listed = Cut.decode(settlement.value(height + 1, swarm.now) or b"")
    assert listed.settled is not None
    assert _ids(honest) | _ids(_honest(node, height)) <= _ids(listed.settled)
    assert settlement.valid(listed, swarm.now)


def test_the_proposer_picks_fairly_when_a_members_values_fill_the_cut() -> None:
    """Made-up values of one member larger together than a consensus value (each within the
    member's byte quota, SETTLEMENT_SIGNER_BYTES_MAX): listing every known value would not
    fit a cut, so the proposer lists the correct members' values first level by level and
    only as many made-up ones as fit."""
    swarm, height = _entered(seed=5)
    settlement = swarm.nodes[1].rollbacks.settlement
    size = 11_200
    made_up = _made_up(swarm, height, SETTLEMENT_VALUES_PER_SIGNER_MAX, size)
    _flood(swarm, 1, made_up)
    kept = sum(len(p) + len(v) for p, v in settlement.known.values() if len(v) == size)
    assert kept > consensus.CONSENSUS_VALUE_SIZE_BYTES_MAX and kept <= SETTLEMENT_SIGNER_BYTES_MAX
    honest = _honest(swarm.nodes[2], height)
    _send(swarm, 1, SettlementMessage(tuple(honest)))
    value = settlement.value(height + 1, swarm.now)
    assert value is not None, "no settlement could be proposed"
    listed = Cut.decode(value).settled
    assert listed is not None
    assert _ids(honest) | _ids(_honest(swarm.nodes[1], height)) <= _ids(listed)
    assert 0 < _signers(listed).count(swarm.keys[FAULTY].public_key) < len(made_up)
    assert settlement.valid(Cut.decode(value), swarm.now)


def test_a_members_values_are_kept_within_its_byte_quota() -> None:
    """SETTLEMENT_SIGNER_BYTES_MAX reached before the count quota: larger made-up values are
    kept only while their bytes fit the member's share."""
    swarm, height = _entered(seed=5)
    settlement = swarm.nodes[1].rollbacks.settlement
    size = 16_384
    _flood(swarm, 1, _made_up(swarm, height, SETTLEMENT_VALUES_PER_SIGNER_MAX, size))
    kept = [(p, v) for p, v in settlement.known.values() if len(v) == size]
    assert 0 < len(kept) < SETTLEMENT_VALUES_PER_SIGNER_MAX
    total = sum(len(p) + len(v) for p, v in kept)
    assert SETTLEMENT_SIGNER_BYTES_MAX - size - 256 < total <= SETTLEMENT_SIGNER_BYTES_MAX


def test_settlement_messages_stay_within_what_a_receiver_decodes() -> None:
    """Large values (cuts of many heads) go out in more, smaller SETTLEMENT messages: before,
    16 values went in one message whatever their size, and a receiver refused a message larger
    than one encoded value (`message_too_large`), so a member's own values of a busy old epoch
    were never learned."""
    swarm, height = _entered(seed=7)
    value_size = consensus.CONSENSUS_VALUE_SIZE_BYTES_MAX // 4
    items = [
        item
        for signer in (1, 2, FAULTY)
        for item in _signed(swarm, height, signer, count=4, size=value_size)
    ]
    one_message = encode_message(SettlementMessage(tuple(items[:ROLLBACK_ITEMS_PER_MESSAGE_MAX])))
    with pytest.raises(ProtocolError):  # what the old batching sent (refused as too large)
        decode_message(one_message)

    messages = settlement_messages(items)

    assert len(messages) > len(items) // ROLLBACK_ITEMS_PER_MESSAGE_MAX
    decoded = [decode_message(encode_message(message)) for message in messages]
    assert [item for message in decoded for item in message.items] == items
    assert all(len(encode_message(message)) <= ENCODED_VALUE_SIZE_BYTES_MAX for message in messages)
    # One value as large as a consensus value still goes (alone).
    (largest,) = _signed(swarm, height, 1, count=1, size=consensus.CONSENSUS_VALUE_SIZE_BYTES_MAX)
    (alone,) = settlement_messages([largest, *items[:1]])[:1]
    assert alone.items == (largest,)
    decode_message(encode_message(alone))


def _signed(
    swarm: Swarm, height: int, signer: int, count: int, size: int
) -> list[tuple[bytes, bytes]]:
    """`count` values of `size` bytes with `signer`'s precommit above H."""
    values = [
        (crypto.sha256(b"%d-%d" % (signer, i)) * (size // 32 + 1))[:size] for i in range(count)
    ]
    return _precommitted(swarm, height, signer, values)
