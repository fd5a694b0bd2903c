"""The per-peer bounds of protocol/limits.py reached with the default config: the message
token bucket (PEER_MESSAGES_BURST at once, PEER_MESSAGES_PER_S after) and the score at which
a peer is dropped (PEER_SCORE_MIN)."""

from __future__ import annotations

from swarmd.protocol.framing import FrameEncoder, Priority
from swarmd.protocol.limits import (
    PEER_MESSAGES_BURST,
    PEER_MESSAGES_PER_S,
    PEER_SCORE_MIN,
    PEER_SEND_QUEUE_MAX,
)
from swarmd.protocol.messages import SyncDoneMessage, encode_message
from swarmd.protocol.node_core import NodeCoreConfig, PeerMisbehaved
from swarmd.protocol.sim.harness import Swarm

from .test_lazy_relay import fake_id


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
