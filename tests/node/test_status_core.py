"""The typed NodeStatus figures the shell renders: conflicts by kind (a 2/2 endorsement split
is stuck, not "0 open conflicts"), council participation, consensus position, sync lag."""

from __future__ import annotations

from swarmd.protocol.sim.harness import Swarm


def split_endorsements_swarm() -> Swarm:
    """Four members; two claims of "neo", each endorsed by two members (a 2/2 split), run
    until finality settled. Node 0 saw every op first."""
    swarm = Swarm(4, seed=23)
    alice, bob = swarm.author("alice"), swarm.author("bob")
    claims = [swarm.funded_claim(alice, "neo"), swarm.funded_claim(bob, "neo")]
    node = swarm.nodes[0]
    for claim, members in zip(claims, (swarm.members[:2], swarm.members[2:]), strict=True):
        node.submit_op(claim.envelope, 0.0)
        for member in members:
            node.submit_op(member.endorse(claim).envelope, 0.0)
    swarm.flush(0)
    swarm.run(until=6.0)
    return swarm


def test_an_endorsement_split_two_two_is_a_stuck_handle() -> None:
    swarm = split_endorsements_swarm()
    node = swarm.nodes[0]
    assert node.final_height >= 1
    assert "neo" not in node.ledger.final_state.bindings
    for core in swarm.nodes:
        conflicts = core.node_status().conflicts
        assert conflicts.stuck_handles == 1
        assert conflicts.claims_below_quorum == 2
        assert core.status()["conflicts"]["stuck_handles"] == 1


def test_one_endorsement_short_is_below_quorum_but_not_stuck() -> None:
    swarm = Swarm(4, seed=24)
    claim = swarm.funded_claim(swarm.author("carol"), "trinity")
    node = swarm.nodes[0]
    node.submit_op(claim.envelope, 0.0)
    for member in swarm.members[:2]:
        node.submit_op(member.endorse(claim).envelope, 0.0)
    swarm.flush(0)
    swarm.run(until=6.0)
    conflicts = node.node_status().conflicts
    assert (conflicts.claims_below_quorum, conflicts.stuck_handles) == (1, 0)


def test_council_participation_and_consensus_position() -> None:
    swarm = Swarm(4, seed=25)
    node = swarm.nodes[0]
    grant = swarm.members[0].grant(swarm.author("dave").key, 100)
    swarm.submit(0, grant)
    swarm.run(until=4.0)
    status = node.node_status()
    assert status.final_height >= 1
    assert [m.key for m in status.council] == sorted(swarm.genesis.council)
    for member in status.council:
        assert member.signed + member.missed == status.final_height
    signed = [m for m in status.council if m.signed]
    assert len(signed) >= swarm.genesis.quorum
    assert all(m.last_signed_height == status.final_height for m in signed)
    assert status.consensus_step in ("propose", "prevote", "precommit")
    assert status.consensus_round >= 0
    assert status.last_final_at > 0.0 and status.now >= status.last_final_at
    assert status.catching_up is False
    assert status.sync_lag == 0 and status.best_peer_height == status.final_height
