"""The council control plane in the core (docs/PROTOCOL.md "Council control plane"): a quorum's
quiesce leaves council ops admitted and finalized in council-only cuts, so a quorum's resume
ends it; a locally set quiesce stays one node's business."""

from __future__ import annotations

from swarmd.protocol.codes import RejectCode
from swarmd.protocol.node_core import Mode, council
from swarmd.protocol.ops import COUNCIL_KINDS, Kind, Op
from swarmd.protocol.sim.harness import Swarm


def quiesced_swarm() -> tuple[Swarm, list]:
    """Four members, two people funded and final, then a quorum (3 of 4) quiesce final."""
    swarm = Swarm(4)
    people = [swarm.author(f"person-{i}") for i in range(2)]
    grants = [swarm.members[i].grant(p.key, 100) for i, p in enumerate(people)]
    for i, grant in enumerate(grants):
        assert swarm.submit(i, grant).status == "accepted"
    swarm.run(until=3.0)
    assert all(node.ledger.unfinalized_count() == 0 for node in swarm.nodes)
    for i in range(3):
        assert swarm.submit(i, swarm.members[i].quiesce("drill")).status == "accepted"
    swarm.run(until=6.0)
    assert all(node.ledger.final_state.quiesced for node in swarm.nodes)
    return swarm, list(zip(people, grants, strict=True))


def stranded_transfer() -> tuple[Swarm, Op, Op]:
    """Four members, alice granted and final, then node 0 cut off from everyone holding a
    transfer from alice to bob that nobody else has. Returns (swarm, grant, transfer)."""
    swarm = Swarm(4)
    alice, bob = swarm.author("alice"), swarm.author("bob")
    grant = swarm.members[1].grant(alice.key, 100)
    assert swarm.submit(1, grant).status == "accepted"
    swarm.run(until=3.0)
    assert swarm.nodes[0].ledger.is_final(grant.op_id)
    swarm.cut = {(0, j) for j in range(4)} | {(j, 0) for j in range(4)}
    pay = alice.transfer(bob.key, 10, receive=[grant.op_id])
    assert swarm.submit(0, pay).status == "accepted"
    return swarm, grant, pay


def test_the_council_kinds_are_exactly_the_control_plane() -> None:
    assert (
        frozenset(
            {
                Kind.COUNCIL_QUIESCE,
                Kind.COUNCIL_RESUME,
                Kind.HANDLE_REVOKE,
                Kind.COUNCIL_PAUSE_CLAIMS,
                Kind.COUNCIL_RESUME_CLAIMS,
            }
        )
        == COUNCIL_KINDS
    )


def test_a_council_quiesce_refuses_every_client_kind_and_admits_council_ones() -> None:
    swarm, funded = quiesced_swarm()
    (alice, alice_grant), (bob, _) = funded
    member = swarm.members[3]
    refused = [
        swarm.members[2].grant(swarm.author("late").key, 100),  # (its chain ends here)
        alice.transfer(bob.key, 10, receive=[alice_grant.op_id]),
        alice.claim("alice"),
    ]
    for op in refused:
        outcome = swarm.submit(3, op)
        assert (outcome.status, outcome.code) == ("rejected", RejectCode.QUIESCED), op.kind
    assert swarm.nodes[3].effective_mode is Mode.QUIESCED
    admitted = swarm.submit(3, member.pause_claims("drill"))
    assert admitted.status == "accepted"


def test_a_quorum_of_resumes_while_quiesced_becomes_final_and_lifts_it() -> None:
    swarm, funded = quiesced_swarm()
    heights = [node.final_height for node in swarm.nodes]
    for i in (1, 2, 3):
        assert swarm.submit(i, swarm.members[i].resume("done")).status == "accepted"
    swarm.run(until=10.0)
    assert all(not node.ledger.final_state.quiesced for node in swarm.nodes)
    assert all(node.final_height > h for node, h in zip(swarm.nodes, heights, strict=True))
    assert all(node.effective_mode is Mode.NORMAL for node in swarm.nodes)
    (alice, alice_grant), (bob, _) = funded
    pay = alice.transfer(bob.key, 10, receive=[alice_grant.op_id])
    assert swarm.submit(0, pay).status == "accepted"
    swarm.run(until=14.0)
    assert all(node.ledger.is_final(pay.op_id) for node in swarm.nodes)


def test_a_client_op_admitted_before_the_quiesce_waits_until_the_resume() -> None:
    # Node 0 holds a transfer nobody else has; the others quiesce meanwhile.
    swarm, _, pay = stranded_transfer()
    for i in (1, 2, 3):
        swarm.submit(i, swarm.members[i].quiesce("drill"))
    swarm.run(until=6.0)
    swarm.cut = set()
    swarm.run(until=12.0)
    node = swarm.nodes[0]
    assert node.ledger.final_state.quiesced and not node.ledger.is_final(pay.op_id)
    # The cut a node would propose leaves the transfer out; one with it is refused.
    assert all(author != pay.author for author, _, _ in council.council_heads(node))
    closure, _ = node.ledger.cut_closure([h for _, _, h in node.ledger.unfinalized_heads()])
    assert pay.op_id in closure and not council.cut_admissible(node, closure)
    for i in (1, 2, 3):
        swarm.submit(i, swarm.members[i].resume("done"))
    swarm.run(until=20.0)
    assert all(node.ledger.is_final(pay.op_id) for node in swarm.nodes)


def test_a_validator_refuses_a_cut_with_client_ops_while_quiesced() -> None:
    swarm, funded = quiesced_swarm()
    node = swarm.nodes[0]
    (alice, alice_grant), (bob, _) = funded
    pay = alice.transfer(bob.key, 10, receive=[alice_grant.op_id])
    # Not admitted while quiesced: feed it to the ledger as a peer's decided cut would.
    assert node.ledger.receive_op(pay.envelope, swarm.now).status == "accepted"
    closure, _ = node.ledger.cut_closure([pay.op_id])
    assert not council.cut_admissible(node, closure)
    # A member's grant alone is client state; chained under its council vote it rides along.
    member = swarm.members[3]
    grant = member.grant(swarm.author("late").key, 100)
    assert node.ledger.receive_op(grant.envelope, swarm.now).status == "accepted"
    assert not council.cut_admissible(node, node.ledger.cut_closure([grant.op_id])[0])
    vote = member.resume("done")
    assert node.ledger.receive_op(vote.envelope, swarm.now).status == "accepted"
    closure, _ = node.ledger.cut_closure([vote.op_id])
    assert grant.op_id in closure and council.cut_admissible(node, closure)
    assert [head for _, _, head in council.council_heads(node)] == [vote.op_id]


def test_a_locally_quiesced_node_does_not_vote_but_takes_council_ops() -> None:
    swarm = Swarm(4)
    node = swarm.nodes[0]
    node.set_mode(Mode.QUIESCED, "drill", 0.0)
    person = swarm.author("p")
    assert swarm.submit(0, swarm.members[1].grant(person.key, 100)).code == "quiesced"
    # Its own member may still sign council broadcasts through it: gossiped, final elsewhere.
    vote = swarm.members[0].pause_claims("drill")
    assert swarm.submit(0, vote).status == "accepted"
    swarm.run(until=5.0)
    assert node.finality.consensus_height == 0
    assert all(other.ledger.is_final(vote.op_id) for other in swarm.nodes[1:])
    # Lifting the local mode is the operator's call: it then catches up.
    node.set_mode(Mode.NORMAL, "", swarm.now)
    swarm.run(until=10.0)
    assert node.ledger.is_final(vote.op_id)


def test_a_read_only_node_refuses_even_council_ops_from_its_clients() -> None:
    swarm, _ = quiesced_swarm()
    node = swarm.nodes[3]
    node.set_mode(Mode.READ_ONLY, "maintenance", swarm.now)
    outcome = swarm.submit(3, swarm.members[3].resume("done"))
    assert (outcome.status, outcome.code) == ("rejected", RejectCode.READ_ONLY)


# A proposer whose provisional state is quiesced (a quorum's quiesce votes admitted, not yet
# final) proposes council-only cuts (council.proposes_council_only): its quiesced peers refuse
# the client ops it could add, so such a cut waited on blind fetches and the quiesce itself was
# not final in time (council-quiesce seed 839 of release-check 968cdb0).


def test_a_provisionally_quiesced_proposer_leaves_client_ops_out_of_its_cut() -> None:
    swarm, _, pay = stranded_transfer()
    node = swarm.nodes[0]
    # Node 0 alone admits a quorum's quiesce votes after the transfer (not final).
    votes = [swarm.members[i].quiesce("drill") for i in (1, 2, 3)]
    for vote in votes:
        assert swarm.submit(0, vote).status == "accepted"
    assert node.ledger.state.quiesced and not node.ledger.final_state.quiesced
    assert council.proposes_council_only(node)
    # Any cut is still admissible (only a final quiesce restricts validators) ...
    closure, _ = node.ledger.cut_closure([h for _, _, h in node.ledger.unfinalized_heads()])
    assert pay.op_id in closure and council.cut_admissible(node, closure)
    # ... but the proposer's heads are the votes alone.
    heads = sorted(head for _, _, head in council.council_heads(node))
    assert heads == sorted(vote.op_id for vote in votes)


def test_the_quiesce_becomes_final_without_the_client_op_the_others_refuse() -> None:
    # Node 0 admits a transfer while cut off; the others admit a quorum's quiesce votes.
    swarm, _, pay = stranded_transfer()
    for i in (1, 2, 3):
        assert swarm.submit(i, swarm.members[i].quiesce("drill")).status == "accepted"
    swarm.run(until=3.05)
    swarm.cut = set()
    swarm.run(until=8.0)
    assert all(node.ledger.final_state.quiesced for node in swarm.nodes)
    # Node 0 proposed council-only cuts: the transfer waits for the resume everywhere.
    assert not any(node.ledger.is_final(pay.op_id) for node in swarm.nodes)
    for i in (1, 2, 3):
        swarm.submit(i, swarm.members[i].resume("done"))
    swarm.run(until=16.0)
    assert all(node.ledger.is_final(pay.op_id) for node in swarm.nodes)
