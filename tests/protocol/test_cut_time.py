"""The council-agreed checkpoint time (checkpoint.py, docs/PROTOCOL.md "Checkpoint time"): the
proposer stamps its wall clock (kept above the parent's time), validators refuse a cut more than
CUT_TIME_SKEW_MS ahead of their own wall clock or not above its parent's time."""

from __future__ import annotations

import itertools

import pytest

from swarmd.protocol import consensus, encoding
from swarmd.protocol.checkpoint import (
    VIRTUAL_EPOCH_MS,
    Cut,
    CutDecodeError,
    proposal_time_ms,
    time_valid,
)
from swarmd.protocol.limits import CUT_TIME_MS_MAX, CUT_TIME_SKEW_MS
from swarmd.protocol.node_core import NodeCore
from swarmd.protocol.sim.harness import Swarm

WALL = VIRTUAL_EPOCH_MS + 5_000


def test_the_skew_bound_is_inclusive_and_one_ms_past_it_is_refused() -> None:
    assert time_valid(WALL + CUT_TIME_SKEW_MS, 0, WALL)
    assert not time_valid(WALL + CUT_TIME_SKEW_MS + 1, 0, WALL)


def test_a_time_must_be_strictly_above_the_parents() -> None:
    parent = WALL - 10
    assert not time_valid(parent, parent, WALL)
    assert not time_valid(parent - 1, parent, WALL)
    assert time_valid(parent + 1, parent, WALL)


def test_a_time_from_the_past_is_valid_so_a_locked_value_can_come_back() -> None:
    assert time_valid(WALL - 3_600_000, WALL - 3_600_001, WALL)


def test_a_proposer_behind_the_parent_proposes_parent_plus_one() -> None:
    assert proposal_time_ms(WALL, WALL + 500) == WALL + 501
    assert proposal_time_ms(WALL, WALL - 500) == WALL
    assert proposal_time_ms(CUT_TIME_MS_MAX + 5, 0) == CUT_TIME_MS_MAX


@pytest.mark.parametrize("time_ms", [0, -1, CUT_TIME_MS_MAX + 1, "1", None])
def test_a_cut_with_a_bad_time_does_not_decode(time_ms: object) -> None:
    good = Cut(b"", 1, ((bytes(32), 1, bytes(32)),), bytes(32), 1)
    assert Cut.decode(good.encode()) == good
    data = encoding.encode([2, b"", 1, [[bytes(32), 1, bytes(32)]], bytes(32), time_ms])
    with pytest.raises(CutDecodeError):
        Cut.decode(data)


def test_a_version_1_cut_without_time_does_not_decode() -> None:
    with pytest.raises(CutDecodeError):
        Cut.decode(encoding.encode([1, b"", 1, [[bytes(32), 1, bytes(32)]], bytes(32)]))


def _final_cuts(node: NodeCore) -> list[Cut]:
    return [
        Cut.decode(consensus.CheckpointBundle.decode(node.finality.bundles[h]).value)
        for h in sorted(node.finality.bundles)
    ]


def _activity(swarm: Swarm, rounds: int) -> None:
    """One grant per round from a rotating member, with a run long enough to finalize it."""
    for index in range(rounds):
        person = swarm.author(f"person-{index}")
        member = swarm.members[index % len(swarm.members)]
        assert swarm.submit(
            index % len(swarm.nodes), member.grant(person.key, swarm.genesis.signup_reward)
        ).status == ("accepted")
        swarm.run(until=swarm.now + 3.0)


def test_a_proposer_past_the_skew_is_refused_and_the_others_decide() -> None:
    swarm = Swarm(4)
    fast = swarm.nodes[0]
    fast.set_wall_clock(VIRTUAL_EPOCH_MS + CUT_TIME_SKEW_MS + 60_000, 0.0)
    _activity(swarm, 8)
    honest = swarm.nodes[1:]
    assert all(node.final_height >= 4 for node in swarm.nodes)
    # The fast member proposed at some height (rotation) and the others prevoted nil on it.
    assert sum(node.stats.cuts_refused_time for node in honest) > 0
    cuts = _final_cuts(honest[0])
    assert all(cut.time_ms <= honest[0].wall_ms(swarm.now) + CUT_TIME_SKEW_MS for cut in cuts)
    assert [cut.time_ms for cut in cuts] == sorted({cut.time_ms for cut in cuts})


def test_a_slow_proposer_stays_valid_and_times_keep_rising() -> None:
    swarm = Swarm(4)
    swarm.nodes[0].set_wall_clock(VIRTUAL_EPOCH_MS - 3_600_000, 0.0)  # an hour behind
    _activity(swarm, 8)
    # Its own cuts (parent + 1) are accepted by the others; only it, seeing every other cut
    # an hour in its future, prevotes nil on them (the other three are a quorum).
    assert all(node.stats.cuts_refused_time == 0 for node in swarm.nodes[1:])
    assert swarm.nodes[0].stats.cuts_refused_time > 0
    assert all(node.final_height >= 4 for node in swarm.nodes)
    cuts = _final_cuts(swarm.nodes[1])
    times = [cut.time_ms for cut in cuts]
    assert len(times) >= 4 and all(a < b for a, b in itertools.pairwise(times))
    # Nobody's clock is ahead: every time is at most the real wall clock of the honest nodes.
    assert times[-1] <= swarm.nodes[1].wall_ms(swarm.now)
