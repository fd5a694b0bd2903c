"""Wire and ledger bounds of protocol/limits.py reached at their edge: the value at the bound
is accepted, one past it is a typed rejection (or, for the pending TTL, an expiry)."""

from __future__ import annotations

import pytest

from swarmd.protocol import consensus
from swarmd.protocol.errors import RemoteProtocolError
from swarmd.protocol.ledger import Ledger
from swarmd.protocol.limits import (
    CONFLICT_LOSERS_PER_MESSAGE_MAX,
    EVIDENCE_SIZE_BYTES_MAX,
    GRANTS_PER_MEMBER_PER_WINDOW_DEFAULT,
    PENDING_OP_TTL_S,
    STATE_TREE_BUCKETS,
    STATE_TREE_DEPTH,
)
from swarmd.protocol.messages import HandleConflictMessage, decode_message, encode_message
from swarmd.protocol.state_tree import StateTree, bucket_index, verify_proof

from .helpers import author, feed, keypair, make_council

GENESIS, MEMBERS = make_council()


def conflict(losers: int) -> bytes:
    ids = tuple(i.to_bytes(32, "big") for i in range(1, losers + 1))
    return encode_message(HandleConflictMessage("alice", b"\x00" * 32, ids, 3))


def test_conflict_losers_per_message_bound() -> None:
    message = decode_message(conflict(CONFLICT_LOSERS_PER_MESSAGE_MAX))
    assert isinstance(message, HandleConflictMessage)
    assert len(message.losing_claims) == CONFLICT_LOSERS_PER_MESSAGE_MAX
    with pytest.raises(RemoteProtocolError, match="losing claims"):
        decode_message(conflict(CONFLICT_LOSERS_PER_MESSAGE_MAX + 1))


def test_evidence_size_bound() -> None:
    cheater, net = keypair("cheater"), GENESIS.network_id
    prevote = consensus.MessageKind.PREVOTE
    first = consensus.sign_vote(cheater, net, prevote, 1, 0, b"\x01" * 32)
    second = consensus.sign_vote(cheater, net, prevote, 1, 0, b"\x02" * 32)
    data = consensus.Evidence(first, second).encode()
    assert len(data) <= EVIDENCE_SIZE_BYTES_MAX
    assert consensus.Evidence.decode(data).second.value_id == b"\x02" * 32
    with pytest.raises(consensus.MalformedEvidenceError, match="exceeds"):
        consensus.Evidence.decode(data + b"\x00" * (EVIDENCE_SIZE_BYTES_MAX + 1 - len(data)))


def test_pending_ops_expire_after_the_default_ttl() -> None:
    ledger = Ledger(GENESIS)
    assert ledger.config.pending_op_ttl_s == PENDING_OP_TTL_S
    writer = author(GENESIS, "orphan")
    writer.seq, writer.head = 3, b"\x07" * 32  # its parent never arrives
    feed(ledger, [writer.transfer(MEMBERS[0].key, 1)], now=0.0)
    assert ledger.expire_pending(PENDING_OP_TTL_S - 0.001) == 0
    assert ledger.expire_pending(PENDING_OP_TTL_S) == 1
    assert len(ledger.pending) == 0


def test_the_state_tree_has_state_tree_buckets_under_state_tree_depth_levels() -> None:
    tree = StateTree()
    first, last = b"\x00\x00" + b"\x01" * 30, b"\xff\xff" + b"\x01" * 30
    assert (bucket_index(first), bucket_index(last)) == (0, STATE_TREE_BUCKETS - 1)
    assert STATE_TREE_BUCKETS == 2**STATE_TREE_DEPTH
    for key in (first, last):
        tree.set(key, b"\x02" * 32)
        proof = tree.proof(key)
        assert len(proof) == 1 + STATE_TREE_DEPTH  # the bucket, then one sibling per level
        assert verify_proof(tree.root(), key, b"\x02" * 32, proof)


def test_a_member_grants_the_default_cap_per_window_and_no_more() -> None:
    genesis, members = make_council(1, signup_reward=100)
    assert genesis.grants_per_member_per_window == GRANTS_PER_MEMBER_PER_WINDOW_DEFAULT
    ledger = Ledger(genesis)
    member = members[0]
    targets = [
        keypair(f"granted {i}").public_key for i in range(GRANTS_PER_MEMBER_PER_WINDOW_DEFAULT + 1)
    ]
    outcomes = feed(ledger, [member.grant(key, 100) for key in targets])
    assert all(o.status == "accepted" for o in outcomes[:-1])
    assert outcomes[-1].code == "grant_cap_exceeded"
