"""Unresolved forks are an open-conflict kind: an account that signs two ops at one seq shows in
`conflicts.unresolved_forks` (status and the swarmd_open_conflicts{kind} gauge) until one side
becomes final, which rejects the other."""

from __future__ import annotations

from swarmd.node.cli.status import status_text
from swarmd.node.metrics import NodeMetrics
from swarmd.protocol.sim.harness import Swarm


def _fork(swarm: Swarm) -> None:
    """Member 0 grants at seq 1 twice (to two people), each copy to a different node."""
    member = swarm.members[0]
    seq, head = member.seq, member.head
    first = member.grant(swarm.author("left").key, swarm.genesis.signup_reward)
    member.seq, member.head = seq, head
    second = member.grant(swarm.author("right").key, swarm.genesis.signup_reward)
    assert first.seq == second.seq and first.op_id != second.op_id
    assert swarm.submit(0, first).status == "accepted"
    assert swarm.submit(1, second).status == "accepted"


def test_a_fork_is_open_until_one_side_is_final() -> None:
    swarm = Swarm(4, checkpoint_interval_s=30.0)
    _fork(swarm)
    swarm.run(until=1.0)  # both copies reach every node; no checkpoint yet
    statuses = [node.node_status() for node in swarm.nodes]
    assert all(status.final_height == 0 for status in statuses)
    assert [status.conflicts.unresolved_forks for status in statuses] == [1, 1, 1, 1]
    metrics = NodeMetrics(process_metrics=False)
    metrics.observe_status(statuses[0], swarm.now)
    text = metrics.render().decode()
    assert 'swarmd_open_conflicts{kind="unresolved_forks"} 1.0' in text
    assert swarm.nodes[0].status()["conflicts"]["unresolved_forks"] == 1
    shown = {"node_id": "sw1x", "mode": "normal", "final_height": 0, "peers": [], "state_root": ""}
    shown["conflicts"] = swarm.nodes[0].status()["conflicts"]
    assert " forks=1 " in status_text(shown, 0.0)  # `swarmd status`
    swarm.run(until=40.0)  # the checkpoint finalizes the winner; the loser is rejected
    statuses = [node.node_status() for node in swarm.nodes]
    assert all(status.final_height >= 1 for status in statuses)
    assert [status.conflicts.unresolved_forks for status in statuses] == [0, 0, 0, 0]
