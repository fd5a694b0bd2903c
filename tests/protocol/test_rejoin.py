"""The divergence halt and the rejoin confirmation (node_core/rejoin.py): a node whose final
root is not the council-signed one goes read-only with reason `root_divergence`, catches up
again from its peers and leaves read-only only once two peers confirmed its checkpoint."""

from __future__ import annotations

import math

import pytest

from swarmd.protocol import encoding, limits
from swarmd.protocol.node_core import (
    REASON_DIVERGENCE,
    CheckpointFinalized,
    ModeChanged,
    NodeCore,
    PersistCheckpoint,
    RootDiverged,
)
from swarmd.protocol.node_core.rejoin import RejoinRecordError, decode_record
from swarmd.protocol.sim.harness import Swarm

from .council_swarm import fund, funded_swarm


def _corrupt(swarm: Swarm, index: int) -> None:
    """A disk fault: one account's final balance changes under the node (no op did it)."""
    ledger = swarm.nodes[index].ledger
    account = sorted(ledger.final_state.accounts)[0]
    for state in (ledger.final_state, ledger.state):
        state.credit(account, 7)


def _diverge(swarm: Swarm, index: int) -> NodeCore:
    """Corrupt node `index`, fund two more accounts and run (in 20 ms steps, 2 s at most)
    until that node halts with reason root_divergence; the node."""
    _corrupt(swarm, index)
    fund(swarm, "next", 2)
    node = swarm.nodes[index]
    for _ in range(100):
        swarm.run(until=swarm.now + 0.02)
        if node.mode_reason == REASON_DIVERGENCE:
            break
    return node


def test_a_corrupt_node_halts_within_one_checkpoint_and_recovers_by_catching_up() -> None:
    swarm = funded_swarm(21)
    final = swarm.nodes[3].final_height
    assert final >= 1
    _corrupt(swarm, 3)
    events_before = len(swarm.events[3])
    fund(swarm, "next", 2)
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
    after = fund(swarm, "after", 2, node=3)
    swarm.run(until=swarm.now + 3.0)
    assert len({n.state_root() for n in swarm.nodes}) == 1
    assert all(n.ledger.is_final(op_id) for n in swarm.nodes for op_id in after)


def test_the_status_shows_the_divergence_and_the_rejoin_step() -> None:
    swarm = funded_swarm(22)
    node = _diverge(swarm, 2)
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


def _confirming_with_one_peer(seed: int) -> tuple[Swarm, int]:
    """A 4-member swarm whose node 2 diverged and hears only node 0 since: it catches up from
    node 0 and is confirming, with node 0 as its only confirmation."""
    swarm = funded_swarm(seed)
    node = _diverge(swarm, 2)
    assert node.mode_reason == REASON_DIVERGENCE
    swarm.cut = {(1, 2), (3, 2)}
    for _ in range(200):
        swarm.run(until=swarm.now + 0.1)
        if node.rejoin.confirmation is not None and node.rejoin.confirmation.peers:
            break
    return swarm, 2


def test_rejoin_needs_REJOIN_PEERS_MIN_confirmations_one_less_keeps_it_read_only() -> None:
    swarm, index = _confirming_with_one_peer(seed=23)
    node = swarm.nodes[index]
    assert node.rejoin.peers_needed() == limits.REJOIN_PEERS_MIN  # 3 other members: the bound
    swarm.run(until=swarm.now + 3 * limits.REJOIN_QUERY_RETRY_S)  # asked again: still one
    confirmation = node.rejoin.confirmation
    assert confirmation is not None
    assert confirmation.peers == [swarm.nodes[0].node_id]  # REJOIN_PEERS_MIN - 1 of them
    assert len(confirmation.peers) == limits.REJOIN_PEERS_MIN - 1
    assert node.status()["rejoin"] == f"confirming 1/{limits.REJOIN_PEERS_MIN}"
    assert (node.mode.value, node.mode_reason) == ("read-only", REASON_DIVERGENCE)
    # One more peer can answer: the REJOIN_PEERS_MIN-th confirmation ends the episode.
    swarm.cut = {(3, 2)}
    swarm.run(until=swarm.now + 3.0)
    assert (node.mode.value, node.mode_reason) == ("normal", "")
    assert node.status()["rejoin"] == ""


def test_rejoin_asks_again_exactly_REJOIN_QUERY_RETRY_S_after_the_last_ask() -> None:
    swarm, index = _confirming_with_one_peer(seed=24)
    node = swarm.nodes[index]
    swarm.cut = {(i, index) for i in range(4)}  # no answer (nor new height) reaches it now
    swarm.run(until=swarm.now + 0.1)
    confirmation = node.rejoin.confirmation
    assert confirmation is not None and len(confirmation.peers) < limits.REJOIN_PEERS_MIN
    height, asked_at = confirmation.height, confirmation.asked_at
    due = asked_at + limits.REJOIN_QUERY_RETRY_S
    # The core's timer wakes the shell by then (not only at some other, later deadline).
    assert node.rejoin.next_retry_at() == due
    assert node.get_timer() is not None and node.get_timer() <= due
    # Just before the bound: the node's timers fire but it does not ask again.
    swarm.run(until=due - 0.001)
    node.handle_timer(due - 0.001)
    swarm.flush(index)
    assert node.rejoin.confirmation is confirmation and confirmation.asked_at == asked_at
    # At the bound it asks every peer again.
    swarm.run(until=due)
    node.handle_timer(due)
    swarm.flush(index)
    assert confirmation.asked_at == due
    # The answers to that second request (the first ones were dropped) confirm the root.
    swarm.cut = set()
    swarm.run(until=due + 3 * swarm.delay_s)
    assert node.final_height == height
    assert (node.mode.value, node.mode_reason) == ("normal", "")


def _retry_rounding_below_interval(start: float) -> float:
    """A time from `start` whose retry deadline `t + REJOIN_QUERY_RETRY_S` is less than
    REJOIN_QUERY_RETRY_S after `t` once rounded (7.713040788525142 is one: seed 189 of
    network-rollback): the sum crosses a power of two, losing `t`'s last bit (within a few
    steps of one ulp, rounding down)."""
    power = 2.0 ** math.ceil(math.log2(start + limits.REJOIN_QUERY_RETRY_S))
    asked_at = max(start, power - limits.REJOIN_QUERY_RETRY_S)
    while (asked_at + limits.REJOIN_QUERY_RETRY_S) - asked_at >= limits.REJOIN_QUERY_RETRY_S:
        asked_at = math.nextafter(asked_at, math.inf)
    return asked_at


def test_rejoin_asks_again_at_its_deadline_when_the_interval_rounds_below_it() -> None:
    """The timer the core arms is the one `handle_timer` acts on: at `next_retry_at()` the node
    asks again and the deadline moves on, even when `now - asked_at` rounds to just below
    REJOIN_QUERY_RETRY_S there (it re-armed the same past deadline forever: a busy loop, the
    "timer stuck" of network-rollback seeds 189, 245, 379, 470, 601, 853, 896, 968, 969)."""
    swarm, index = _confirming_with_one_peer(seed=24)
    node = swarm.nodes[index]
    swarm.cut = {(i, index) for i in range(4)}  # no answer (nor new height) reaches it now
    confirmation = node.rejoin.confirmation
    assert confirmation is not None and len(confirmation.peers) < limits.REJOIN_PEERS_MIN
    # Asked (again) at a time whose deadline rounds below the interval.
    confirmation.asked_at = _retry_rounding_below_interval(swarm.now + 0.1)
    due = node.rejoin.next_retry_at()
    assert due is not None and due - confirmation.asked_at < limits.REJOIN_QUERY_RETRY_S
    swarm.run(until=due)
    node.handle_timer(due)
    swarm.flush(index)
    assert confirmation.asked_at == due
    retry_at = node.rejoin.next_retry_at()
    assert retry_at is not None and retry_at > due
    timer = node.get_timer()
    assert timer is not None and timer > due


def test_the_episode_record_names_the_step_to_resume_and_is_empty_once_rejoined() -> None:
    """What the shell stores so that a restart resumes the episode (the restart itself runs on
    a real store in tests/integration/test_rollback_daemon.py)."""
    swarm = funded_swarm(23)
    node = swarm.nodes[1]
    assert node.rejoin.record() == b""
    _diverge(swarm, 1)
    swarm.cut = {(i, 1) for i in range(4)}
    swarm.run(until=swarm.now + 1.0)
    reason, target, divergent = decode_record(node.rejoin.record())
    assert (reason, divergent) == (REASON_DIVERGENCE, node.status()["root_divergence_height"])
    assert target == divergent >= 1
    swarm.cut = set()
    swarm.run(until=swarm.now + 3.0)
    assert node.mode.value == "normal" and node.rejoin.record() == b""


@pytest.mark.parametrize(
    "record",
    [
        b"\xc1",  # not msgpack
        encoding.encode(["maintenance", 3, 0]),  # not a rejoin reason
        encoding.encode([REASON_DIVERGENCE, -1, 0]),
        encoding.encode([REASON_DIVERGENCE, 3]),
        encoding.encode({"reason": REASON_DIVERGENCE}),
    ],
)
def test_a_corrupt_episode_record_is_a_typed_error(record: bytes) -> None:
    with pytest.raises(RejoinRecordError) as error:
        decode_record(record)
    assert error.value.code == "rejoin_record_invalid"
