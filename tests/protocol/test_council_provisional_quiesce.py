"""A proposer whose provisional state is quiesced (a quorum's quiesce votes admitted, not yet
final) proposes council-only cuts (protocol/node_core/council.py, `proposes_council_only`):
its quiesced peers refuse the client ops it could add, so such a cut waited on blind fetches
and the quiesce itself was not final in time (council-quiesce seed 839 of release-check
968cdb0)."""

from __future__ import annotations

from swarmd.protocol.node_core import council
from swarmd.protocol.sim.harness import Swarm


def test_a_provisionally_quiesced_proposer_leaves_client_ops_out_of_its_cut() -> None:
    swarm = Swarm(4)
    alice, bob = swarm.author("alice"), swarm.author("bob")
    grant = swarm.members[1].grant(alice.key, 100)
    assert swarm.submit(1, grant).status == "accepted"
    swarm.run(until=3.0)
    node = swarm.nodes[0]
    assert node.ledger.is_final(grant.op_id)
    # Node 0 alone: it admits a client op, then a quorum's quiesce votes (not final).
    swarm.cut = {(0, j) for j in range(4)} | {(j, 0) for j in range(4)}
    pay = alice.transfer(bob.key, 10, receive=[grant.op_id])
    assert swarm.submit(0, pay).status == "accepted"
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
    swarm = Swarm(4)
    alice, bob = swarm.author("alice"), swarm.author("bob")
    grant = swarm.members[1].grant(alice.key, 100)
    swarm.submit(1, grant)
    swarm.run(until=3.0)
    # Node 0 admits a transfer while cut off; the others admit a quorum's quiesce votes.
    swarm.cut = {(0, j) for j in range(4)} | {(j, 0) for j in range(4)}
    pay = alice.transfer(bob.key, 10, receive=[grant.op_id])
    assert swarm.submit(0, pay).status == "accepted"
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
