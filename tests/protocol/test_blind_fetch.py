"""A missing parent is asked of one random peer (a blind FETCH), which may lack it: a FETCH of
ops a peer lacks gets no answer. A peer that announces the op holds it, so its fetch is never
held back by the blind one (issue 16: council members of a bounded mesh missed a proposal's
ops for over a second and prevoted nil), and an announced id is left to the announcers."""

from __future__ import annotations

from swarmd.protocol.limits import ANNOUNCE_FETCH_DELAY_S, FETCH_RETRY_S
from swarmd.protocol.messages import AnnounceMessage, OpsMessage
from swarmd.protocol.sim.harness import Swarm

from .test_lazy_relay import Wire


def _parent_and_child(swarm: Swarm) -> tuple[bytes, bytes, bytes]:
    """Two grants of one member: the child names the parent (the member's previous op)."""
    to = swarm.author("to").key
    parent, child = swarm.members[1].grant(to, 1), swarm.members[1].grant(to, 2)
    return parent.op_id, parent.envelope, child.envelope


def test_an_announcer_is_asked_at_once_while_a_blind_fetch_is_outstanding() -> None:
    swarm = Swarm(4, delta_sync_interval_s=60.0)
    core = swarm.nodes[0]
    wire = Wire(core)
    wire.received()  # what the connections queued
    sender, announcer = swarm.nodes[1].node_id, swarm.nodes[3].node_id
    parent_id, parent, child = _parent_and_child(swarm)
    start = 1.0
    wire.send(sender, OpsMessage((child,)), start)
    assert core.ledger.pending.missing_ids() == [parent_id]
    blind = wire.fetches()
    assert [ids for _, ids in blind] == [(parent_id,)]  # one random peer, asked at once
    # That peer stays silent (it lacks the parent); one that holds it announces it.
    announced_at = start + 0.1
    wire.send(announcer, AnnounceMessage(0, (parent_id,)), announced_at)
    core.handle_timer(announced_at + ANNOUNCE_FETCH_DELAY_S)
    assert wire.fetches() == [(announcer, (parent_id,))]  # not FETCH_RETRY_S after `start`
    wire.send(announcer, OpsMessage((parent,)), announced_at + ANNOUNCE_FETCH_DELAY_S + 0.01)
    assert core.ledger.pending.missing_count() == 0  # the child waits for nothing now


def test_an_announced_missing_parent_is_asked_of_its_announcer_only() -> None:
    swarm = Swarm(4, delta_sync_interval_s=60.0)
    core = swarm.nodes[0]
    wire = Wire(core)
    wire.received()
    sender, announcer = swarm.nodes[1].node_id, swarm.nodes[3].node_id
    parent_id, _, child = _parent_and_child(swarm)
    start = 1.0
    wire.send(announcer, AnnounceMessage(0, (parent_id,)), start)
    wire.send(sender, OpsMessage((child,)), start + 0.01)
    assert core.ledger.pending.missing_ids() == [parent_id]
    assert wire.fetches() == []  # no blind FETCH: the announcer is asked when it is due
    core.handle_timer(start + ANNOUNCE_FETCH_DELAY_S)
    assert wire.fetches() == [(announcer, (parent_id,))]
    # Unanswered: once FETCH_RETRY_S passed, its only announcer tried, the scan asks again.
    core.handle_timer(start + ANNOUNCE_FETCH_DELAY_S + FETCH_RETRY_S + 0.01)
    assert [ids for _, ids in wire.fetches()] == [(parent_id,)]
