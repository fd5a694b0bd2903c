"""The simulator's fragment checker reads the frame decoder counters the core really keeps
(`status()["fragments"]`, cumulative over peers that left) and fails a node that gave up a
fragmented message and ends the run behind; the within-cadence ratio counts lost sessions."""

from __future__ import annotations

import pytest

from swarmd.protocol import limits
from swarmd.protocol.framing import FRAGMENT_PAYLOAD_SIZE_BYTES, FrameEncoder
from swarmd.protocol.node_core import NodeCore
from swarmd.protocol.sim import scenarios
from swarmd.protocol.sim.checkers import check_fragments, check_swarm, sync_sessions_lost
from swarmd.protocol.sim.swarm import Swarm


def _inject_partial_message(swarm: Swarm, victim: int, sender: int) -> None:
    """The first fragment of a two-fragment message, its second never sent."""
    encoder = FrameEncoder()
    encoder.queue_message(b"\x07" * (2 * FRAGMENT_PAYLOAD_SIZE_BYTES))
    frames: list[bytes] = []
    while encoder.has_frames_to_send():
        frames.extend(encoder.frames_to_send())
    assert len(frames) == 2
    node = swarm.sim.nodes[victim]
    assert node.core is not None
    node.core.receive_frame(swarm.sim.nodes[sender].node_id, frames[0], swarm.sim.local_time(node))


@pytest.mark.gate("s0-nonce-advancement")
def test_the_fragment_checker_fails_on_an_unrecovered_fragment() -> None:
    swarm = scenarios.build_swarm("test", 1, scenarios.ScenarioParams())
    swarm.workload.grant(swarm.workload.new_account(), node=0)
    swarm.sim.run_until(3.0)
    core = swarm.sim.nodes[0].core
    assert isinstance(core, NodeCore)
    assert check_fragments(swarm, core) == []
    _inject_partial_message(swarm, victim=0, sender=1)
    swarm.sim.run_until(swarm.sim.now + limits.REASSEMBLY_TIMEOUT_S + 1)
    assert core.status()["fragments"]["reassemblies_expired"] == 1
    # Given up, but node 0 is as final as everyone: what it carried came some other way.
    assert check_fragments(swarm, core) == []
    # Cut node 0 off (its peers are dropped: the count must survive) while the rest go on.
    swarm.sim.partition([0], [1, 2, 3, 4])
    swarm.workload.grant(swarm.workload.new_account(), node=1)
    swarm.sim.run_until(swarm.sim.now + 5.0)
    assert core.status()["fragments"]["reassemblies_expired"] == 1
    failures = check_fragments(swarm, core)
    assert len(failures) == 1 and "1 fragmented messages given up and not recovered" in failures[0]
    assert any("given up and not recovered" in f for f in check_swarm(swarm))


def test_sync_sessions_cut_off_by_a_partition_count_as_lost() -> None:
    swarm = scenarios.build_swarm("test", 2, scenarios.ScenarioParams())
    swarm.workload.grant(swarm.workload.new_account(), node=0)
    swarm.sim.run_until(2.0)
    before = sync_sessions_lost(swarm)
    swarm.sim.partition([0, 1], [2, 3, 4])
    swarm.sim.run_until(swarm.sim.now + 10.0)
    assert sync_sessions_lost(swarm) > before
