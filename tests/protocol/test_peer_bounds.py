"""The per-peer bounds of protocol/limits.py reached with the default config: the message
token bucket (PEER_MESSAGES_BURST at once, PEER_MESSAGES_PER_S after), the score at which a
peer is dropped (PEER_SCORE_MIN) and the push fanout of a local op (GOSSIP_FANOUT)."""

from __future__ import annotations

from swarmd.protocol.framing import FrameEncoder, Priority
from swarmd.protocol.limits import (
    GOSSIP_FANOUT,
    PEER_MESSAGES_BURST,
    PEER_MESSAGES_PER_S,
    PEER_SCORE_MIN,
    PEER_SEND_QUEUE_MAX,
)
from swarmd.protocol.messages import (
    AnnounceMessage,
    OpsMessage,
    SyncDoneMessage,
    encode_message,
)
from swarmd.protocol.node_core import NodeCoreConfig, PeerMisbehaved
from swarmd.protocol.sim.harness import Swarm

from .test_lazy_relay import Wire, fake_id


def send_many(swarm: Swarm, peer: bytes, count: int, now: float) -> None:
    """`count` cheap messages (SYNC_DONE is ignored once let through) from `peer` at `now`."""
    core = swarm.nodes[0]
    encoder = FrameEncoder()
    message = encode_message(SyncDoneMessage(1))
    for start in range(0, count, PEER_SEND_QUEUE_MAX):
        for _ in range(min(PEER_SEND_QUEUE_MAX, count - start)):
            encoder.queue_message(message, Priority.NORMAL)
        while encoder.has_frames_to_send():
            for frame in encoder.frames_to_send():
                core.receive_frame(peer, frame, now)


def test_a_peer_gets_the_burst_then_the_rate_then_is_dropped_at_the_score_floor() -> None:
    swarm = Swarm(1, delta_sync_interval_s=600.0)
    core = swarm.nodes[0]
    assert core.config.peer_messages_burst == NodeCoreConfig().peer_messages_burst
    flooder = fake_id("flooder")
    assert core.peer_connected(flooder, 0.0)
    send_many(swarm, flooder, PEER_MESSAGES_BURST, 0.0)
    assert core.stats.messages_received == PEER_MESSAGES_BURST
    assert core.stats.messages_rate_limited == 0
    # Empty bucket: one message over costs a penalty point; a second later the rate refilled
    # PEER_MESSAGES_PER_S tokens.
    send_many(swarm, flooder, 1, 0.0)
    assert core.stats.messages_rate_limited == 1
    send_many(swarm, flooder, int(PEER_MESSAGES_PER_S), 1.0)
    assert core.stats.messages_received == PEER_MESSAGES_BURST + int(PEER_MESSAGES_PER_S)
    assert core.stats.messages_rate_limited == 1
    # Each further message over the rate costs one point; at PEER_SCORE_MIN the peer is gone.
    send_many(swarm, flooder, -PEER_SCORE_MIN, 1.0)
    assert flooder not in core.peer_ids()
    events = []
    while (event := core.next_event()) is not None:
        events.append(event)
    dropped = [e for e in events if isinstance(e, PeerMisbehaved)]
    assert dropped == [PeerMisbehaved(flooder, "rate_limited", PEER_SCORE_MIN)]


def test_a_local_op_is_pushed_to_gossip_fanout_peers_and_announced_to_the_rest() -> None:
    swarm = Swarm(1, delta_sync_interval_s=600.0)
    core = swarm.nodes[0]
    assert core.config.gossip_fanout == GOSSIP_FANOUT
    peers = [fake_id(f"listener {p}") for p in range(GOSSIP_FANOUT + 3)]
    for peer in peers:
        assert core.peer_connected(peer, 0.0)
    core.frames_to_send()
    grant = swarm.members[0].grant(swarm.author("fanout").key, 100)
    assert core.submit_op(grant.envelope, 0.0).status == "accepted"
    wire = Wire(core)
    pushed, announced = set(), set()
    for peer, message in wire.received():
        if isinstance(message, OpsMessage) and grant.envelope in message.envelopes:
            pushed.add(peer)
        elif isinstance(message, AnnounceMessage) and grant.op_id in message.op_ids:
            announced.add(peer)
    assert len(pushed) == GOSSIP_FANOUT
    assert announced == set(peers) - pushed
