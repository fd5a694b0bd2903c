"""Participation counts and open-conflict ages survive a restart (node_core/observed.py): the
record the core hands over with each checkpoint (and, for conflicts, the time each was first
raised) is given back after `NodeCore.restore`."""

from __future__ import annotations

import random

import pytest

from swarmd.protocol.node_core import NodeCore, NodeCoreConfig, PersistCheckpoint
from swarmd.protocol.node_core.observed import observed_of
from swarmd.protocol.sim.harness import Swarm

from .test_state_sync import SMALL, durable, events_of, grow, restore


def _counts(core: NodeCore) -> dict[bytes, tuple[int, int, int]]:
    return {
        key: (m.signed, m.missed, m.last_signed_height)
        for key, m in core.finality.participation.members.items()
    }


def test_participation_continues_after_a_snapshot_restore() -> None:
    swarm = Swarm(4, seed=4, **SMALL)
    grow(swarm, 7, label="before")
    envelopes, bundles, snapshots, _ = durable(swarm, 1)
    original = swarm.nodes[1]
    # Restored from its newest snapshot, the node replays only the bundles above it: its
    # counts cover those heights alone.
    fast = restore(swarm, 1, envelopes=envelopes, bundles=bundles, snapshot=snapshots[-1])
    assert fast.final_height == original.final_height
    assert _counts(fast) != _counts(original)
    stored = [e.observed for e in events_of(swarm, 1, PersistCheckpoint) if e.observed]
    assert stored[-1] is not None and stored[-1].height == original.final_height
    assert fast.restore_observed(stored[-1], swarm.now)
    assert _counts(fast) == _counts(original)
    ages = {k: m.last_signed_at for k, m in fast.finality.participation.members.items()}
    before = {k: m.last_signed_at for k, m in original.finality.participation.members.items()}
    for key, at in ages.items():
        was = before[key]
        assert (at is None) == (was is None)
        assert at is None or was is None or abs(at - was) <= 0.001  # same instant, ms precision
    # A record of another height is not taken for the counts.
    assert not fast.restore_observed(stored[0], swarm.now) or stored[0].height == fast.final_height


def test_an_open_conflict_keeps_its_age_across_a_restart() -> None:
    swarm = Swarm(4, seed=23, checkpoint_interval_s=60.0)
    alice, bob = swarm.author("alice"), swarm.author("bob")
    claims = [swarm.funded_claim(alice, "neo"), swarm.funded_claim(bob, "neo")]
    node = swarm.nodes[0]
    for claim in claims:
        node.submit_op(claim.envelope, 0.0)
        for member in swarm.members[: swarm.genesis.quorum]:
            node.submit_op(member.endorse(claim).envelope, 0.0)
    swarm.flush(0)
    swarm.run(until=20.0)  # no checkpoint: the conflict stays open
    assert node.final_height == 0 and node.oldest_open_conflict_age_s() > 10.0
    record = observed_of(node, swarm.now)  # what the shell stored (noted when raised)
    assert record.conflicts == (("neo", node.wall_ms(0.0)),)  # raised at the submissions
    envelopes, _, _, _ = durable(swarm, 0)
    restarted = NodeCore.restore(
        genesis=swarm.genesis,
        keypair=swarm.keys[0],
        config=NodeCoreConfig(checkpoint_interval_s=60.0),
        rng=random.Random(7),
        now=100.0,  # a new process: its monotonic clock has another origin
        envelopes=envelopes,
    )
    restarted.set_wall_clock(node.wall_ms(swarm.now) + 5_000, 100.0)  # 5 s after the old stop
    assert restarted.status()["open_conflicts"] == 0  # the replay does not raise it again
    restarted.restore_observed(record, 100.0)
    # Raised 20 s before the old process stopped, which was 5 s ago: 25 s old, not 0.
    assert restarted.oldest_open_conflict_age_s() == pytest.approx(25.0, abs=0.002)
    assert restarted.status()["open_conflicts"] == 1
