"""Stall visibility: the core warns once when the final height has not moved for
FINALITY_STALL_INTERVALS checkpoint intervals while ops wait, naming the silent members, and
its status carries finality_stalled_s."""

from __future__ import annotations

from swarmd.protocol.limits import CHECKPOINT_INTERVAL_S, FINALITY_STALL_INTERVALS
from swarmd.protocol.node_core import FinalityStalled
from swarmd.protocol.sim.harness import Swarm


def stalls(swarm: Swarm, i: int) -> list[FinalityStalled]:
    return [e for e in swarm.events[i] if isinstance(e, FinalityStalled)]


def test_no_warning_and_no_stall_while_finality_moves() -> None:
    swarm = Swarm(4)
    person = swarm.author("p")
    swarm.submit(0, swarm.members[0].grant(person.key, 100))
    swarm.run(until=10.0)
    assert all(not stalls(swarm, i) for i in range(4))
    assert all(node.node_status().finality_stalled_s == 0.0 for node in swarm.nodes)


def test_a_stall_names_height_round_and_the_silent_members() -> None:
    swarm = Swarm(4)
    # Two of four members cut off: no quorum of 3, nothing can become final.
    silent = {2, 3}
    swarm.cut = {(i, j) for i in silent for j in range(4)} | {
        (j, i) for i in silent for j in range(4)
    }
    person = swarm.author("p")
    swarm.submit(0, swarm.members[0].grant(person.key, 100))
    threshold = FINALITY_STALL_INTERVALS * CHECKPOINT_INTERVAL_S
    swarm.run(until=threshold - 1.0)
    assert not stalls(swarm, 0)
    status = swarm.nodes[0].node_status()
    assert 0.0 < status.finality_stalled_s < threshold
    swarm.run(until=threshold + 5.0)
    (warning,) = stalls(swarm, 0)  # once per stalled height, not on every timer
    node = swarm.nodes[0]
    assert warning.final_height == 0 and warning.consensus_height == 1
    assert warning.round == node.consensus.round  # (no quorum of prevotes: round 0 waits)
    assert set(warning.silent_members) == {swarm.keys[i].public_key for i in silent}
    assert warning.stalled_s >= threshold
    assert node.status()["finality_stalled_s"] >= threshold + 4.0
    swarm.run(until=threshold + 15.0)
    assert len(stalls(swarm, 0)) == 1
    # Healed: finality moves again and the stall clock drops to zero.
    swarm.cut = set()
    swarm.run(until=threshold + 30.0)
    assert node.final_height >= 1
    assert node.node_status().finality_stalled_s == 0.0
