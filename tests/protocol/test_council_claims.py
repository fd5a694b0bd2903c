"""Claims paused (the plan's Stage 1 play): claims votes tallied like mode votes, in the state
root and the snapshot records; new claims refused with claims_paused while a quorum paused
them; a quorum of revocations unbinds a handle and tells the revoked claim's holder."""

from __future__ import annotations

import pytest

from swarmd.protocol import encoding
from swarmd.protocol.codes import RejectCode
from swarmd.protocol.ledger import ClaimsModeChanged, Ledger
from swarmd.protocol.ledger.snapshot import (
    RECORD_CLAIMS_VOTE,
    SnapshotRecordError,
    state_from_records,
    state_records,
)
from swarmd.protocol.node_core import HandleConflictRejected, council
from swarmd.protocol.sim.harness import Swarm

from .helpers import author, feed, make_council

GENESIS, _ = make_council()


def test_claims_pause_needs_a_quorum_and_the_latest_vote_counts() -> None:
    ledger = Ledger(GENESIS)
    _, members = make_council()  # fresh chains (Authors count their seqs)
    quorum = GENESIS.quorum
    feed(ledger, [m.pause_claims("stage 1") for m in members[: quorum - 1]])
    assert not ledger.state.claims_paused(quorum)
    assert not any(isinstance(e, ClaimsModeChanged) for e in ledger.drain_events())
    feed(ledger, [members[quorum - 1].pause_claims("stage 1")])
    assert ledger.state.claims_paused(quorum)
    assert ClaimsModeChanged(True) in ledger.drain_events()
    feed(ledger, [members[0].resume_claims()])
    assert not ledger.state.claims_paused(quorum)
    assert ClaimsModeChanged(False) in ledger.drain_events()
    assert not ledger.state.quiesced  # a separate question from quiesce


def test_only_the_council_votes_on_claims() -> None:
    ledger = Ledger(GENESIS)
    outcomes = feed(ledger, [author(GENESIS, "eve").pause_claims("no")])
    assert outcomes[0].code == RejectCode.NOT_COUNCIL


def test_claims_votes_are_in_the_root_and_round_trip_through_snapshot_records() -> None:
    ledger = Ledger(GENESIS)
    _, members = make_council()  # fresh chains (Authors count their seqs)
    before = ledger.state_root()
    feed(ledger, [members[0].pause_claims("x"), members[1].pause_claims("x")])
    assert ledger.state_root() != before
    feed(ledger, [members[1].resume_claims("y")])
    records = state_records(ledger.state)
    votes = [r for r in records if encoding.decode(r)[0] == RECORD_CLAIMS_VOTE]
    assert len(votes) == 2
    rebuilt = state_from_records(records)
    assert rebuilt.claims_votes == ledger.state.claims_votes
    assert rebuilt.root() == ledger.state_root()


def paused_swarm() -> Swarm:
    swarm = Swarm(4)
    for i in range(3):
        assert swarm.submit(i, swarm.members[i].pause_claims("stage 1")).status == "accepted"
    swarm.run(until=3.0)
    assert all(n.ledger.final_state.claims_paused(swarm.genesis.quorum) for n in swarm.nodes)
    return swarm


@pytest.mark.gate("s1-play-suspend-claims")
def test_new_claims_are_refused_while_paused_and_other_ops_are_not() -> None:
    swarm = paused_swarm()
    alice = swarm.author("alice")
    claim = alice.claim("alice")
    outcome = swarm.submit(0, claim)
    assert (outcome.status, outcome.code) == ("rejected", RejectCode.CLAIMS_PAUSED)
    node = swarm.nodes[1]
    assert council.refusal_from_peer(node, claim.envelope) == RejectCode.CLAIMS_PAUSED
    node.gossip.fetch_requested[claim.op_id] = swarm.now  # asked for it: a cut needs it
    assert council.refusal_from_peer(node, claim.envelope) is None
    grant = swarm.members[3].grant(alice.key, 100)
    assert swarm.submit(3, grant).status == "accepted"
    for i in range(3):
        swarm.submit(i, swarm.members[i].resume_claims("done"))
    swarm.run(until=6.0)
    again = swarm.funded_claim(swarm.author("alice-2"), "alice")
    assert swarm.submit(0, again).status == "accepted"


@pytest.mark.gate("s1-play-suspend-claims")
def test_a_quorum_of_revocations_unbinds_and_tells_the_holder() -> None:
    swarm = Swarm(4)
    alice = swarm.author("alice")
    claim = swarm.funded_claim(alice, "alice")
    swarm.submit(0, claim)
    for i in range(3):
        swarm.submit(i, swarm.members[i].endorse(claim))
    swarm.run(until=3.0)
    assert all(n.ledger.final_state.bindings["alice"].owner == alice.key for n in swarm.nodes)
    for i in range(3):
        swarm.submit(i, swarm.members[i].revoke(claim))
    swarm.run(until=6.0)
    for i, node in enumerate(swarm.nodes):
        assert "alice" not in node.ledger.final_state.bindings
        (told,) = [e for e in swarm.events[i] if isinstance(e, HandleConflictRejected)]
        assert told.losing_claims == (claim.op_id,) and told.holders == (alice.key,)
        assert told.winning_claim == b"" and told.handle == "alice"


def test_a_claims_vote_record_that_is_not_a_bool_is_refused() -> None:
    ledger = Ledger(GENESIS)
    _, members = make_council()
    feed(ledger, [members[0].pause_claims("x")])
    records = state_records(ledger.state)
    bad = [
        encoding.encode([RECORD_CLAIMS_VOTE, members[0].key, 1])
        if encoding.decode(r)[0] == RECORD_CLAIMS_VOTE
        else r
        for r in records
    ]
    with pytest.raises(SnapshotRecordError, match="claims vote"):
        state_from_records(bad)
