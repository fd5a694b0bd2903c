"""The divergence halt and the rejoin confirmation (node_core/rejoin.py): a node whose final
root is not the council-signed one goes read-only with reason `root_divergence`, catches up
again from its peers and leaves read-only only once two peers confirmed its checkpoint."""

from __future__ import annotations

from swarmd.protocol.node_core import (
    REASON_DIVERGENCE,
    CheckpointFinalized,
    ModeChanged,
    PersistCheckpoint,
    RootDiverged,
)
from swarmd.protocol.sim.harness import Swarm


def _fund(swarm: Swarm, label: str, count: int, node: int = 0) -> list[bytes]:
    ids = []
    for i in range(count):
        grant = swarm.members[i % len(swarm.members)].grant(swarm.author(f"{label}-{i}").key, 100)
        assert swarm.submit(node, grant).status == "accepted"
        ids.append(grant.op_id)
    return ids


def _corrupt(swarm: Swarm, index: int) -> None:
    """A disk fault: one account's final balance changes under the node (no op did it)."""
    ledger = swarm.nodes[index].ledger
    account = sorted(ledger.final_state.accounts)[0]
    for state in (ledger.final_state, ledger.state):
        state.credit(account, 7)


def test_a_corrupt_node_halts_within_one_checkpoint_and_recovers_by_catching_up() -> None:
    swarm = Swarm(4, seed=21)
    _fund(swarm, "before", 3)
    swarm.run(until=4.0)
    final = swarm.nodes[3].final_height
    assert final >= 1
    _corrupt(swarm, 3)
    events_before = len(swarm.events[3])
    _fund(swarm, "next", 2)
    swarm.run(until=swarm.now + 1.2)  # one checkpoint interval and a bit
    node = swarm.nodes[3]
    new = swarm.events[3][events_before:]
    diverged = [e for e in new if isinstance(e, RootDiverged)]
    assert diverged, "no divergence detected within one checkpoint"
    assert diverged[0].first_height == diverged[0].height <= final + 1
    assert diverged[0].own_root != diverged[0].signed_root
    modes = [(e.mode, e.reason) for e in new if isinstance(e, ModeChanged)]
    assert modes[0] == ("read-only", REASON_DIVERGENCE)
    assert node.stats.root_divergences >= 1
    # Never persisted nor announced a checkpoint with its own (bad) root.
    signed = {
        e.height: e.state_root
        for i in range(3)
        for e in swarm.events[i]
        if isinstance(e, CheckpointFinalized)
    }
    for event in new:
        if isinstance(event, PersistCheckpoint):
            assert event.state_root == signed[event.height]
    # Caught up again from its peers and confirmed by two of them: back to normal.
    swarm.run(until=swarm.now + 4.0)
    assert node.mode.value == "normal" and node.mode_reason == ""
    status = node.status()
    assert status["rejoin"] == "" and status["root_divergence_height"] == 0
    assert node.final_height >= swarm.nodes[0].final_height - 1
    assert node.ledger.final_state.root() == swarm.nodes[0].ledger.final_state.root() or (
        node.final_height != swarm.nodes[0].final_height
    )
    after = _fund(swarm, "after", 2, node=3)
    swarm.run(until=swarm.now + 3.0)
    assert len({n.state_root() for n in swarm.nodes}) == 1
    assert all(n.ledger.is_final(op_id) for n in swarm.nodes for op_id in after)


def test_the_status_shows_the_divergence_and_the_rejoin_step() -> None:
    swarm = Swarm(4, seed=22)
    _fund(swarm, "before", 3)
    swarm.run(until=4.0)
    _corrupt(swarm, 2)
    _fund(swarm, "next", 2)
    node = swarm.nodes[2]
    for _ in range(100):
        swarm.run(until=swarm.now + 0.02)
        if node.mode_reason == REASON_DIVERGENCE:
            break
    swarm.cut = {(i, 2) for i in range(4)}  # nothing reaches it: it stays in the episode
    swarm.run(until=swarm.now + 1.0)
    status = node.status()
    assert status["mode"] == "read-only" and status["mode_reason"] == REASON_DIVERGENCE
    assert status["root_divergence_height"] >= 1
    assert status["rejoin"].startswith(("catching up to ", "confirming 0/2"))
    refused = node.submit_op(swarm.members[0].grant(swarm.author("x").key, 1).envelope, swarm.now)
    assert (refused.status, refused.code) == ("rejected", "read_only")
    swarm.cut = set()
    swarm.run(until=swarm.now + 3.0)
    assert node.mode.value == "normal" and node.status()["root_divergence_height"] == 0
