"""The old-epoch bundles above H a node pushes with a rollback certificate go through the
bulk-sync serve-rate buckets (serve_rate.py), and each peer still gets the certificate
before them."""

from __future__ import annotations

from swarmd.protocol.framing import FrameDecoder, FrameEncoder
from swarmd.protocol.messages import (
    BundlesMessage,
    RollbackMessage,
    decode_message,
    encode_message,
)
from swarmd.protocol.sim.harness import Swarm

from .council_swarm import fund

RATE = 1_000.0  # bytes/s, per peer and in total: below one push of a certificate's bundles


def _kinds(decoder: FrameDecoder, frames: list[bytes], now: float) -> list[str]:
    kinds = []
    for frame in frames:
        for data in decoder.receive_frame(frame, now):
            message = decode_message(data)
            if isinstance(message, RollbackMessage) and message.certificates:
                kinds.append("certificate")
            elif isinstance(message, BundlesMessage):
                kinds.append("bundles")
    return kinds


def test_bundles_pushed_with_a_certificate_are_held_by_the_serve_rate() -> None:
    swarm = Swarm(
        4,
        seed=3,
        serve_bytes_per_s_peer=RATE,
        serve_burst_bytes_peer=RATE,
        serve_bytes_per_s_total=RATE,
        serve_burst_bytes_total=RATE,
    )
    fund(swarm, "before", 3)
    swarm.run(until=4.0)
    height = swarm.nodes[1].final_height
    fund(swarm, "above", 3, node=1)
    swarm.run(until=8.0)
    node = swarm.nodes[1]
    assert node.final_height > height
    votes = tuple(
        swarm.nodes[i].propose_rollback(height, "bad", swarm.now).encode() for i in range(3)
    )
    swarm.flush(1)  # (its own vote to its peers)
    deferred = node.stats.serve_requests_deferred
    encoder = FrameEncoder()
    encoder.queue_message(encode_message(RollbackMessage(votes, ())))
    for frame in encoder.frames_to_send():
        node.receive_frame(swarm.nodes[0].node_id, frame, swarm.now)
    assert node.epoch == 1
    # The first peer's push took the total bucket; the other two wait for it.
    assert node.stats.serve_requests_deferred == deferred + 2
    peers = [swarm.nodes[i].node_id for i in (0, 2, 3)]
    decoders = {peer: FrameDecoder() for peer in peers}
    kinds: dict[bytes, list[str]] = {peer: [] for peer in peers}
    now, sent_at = swarm.now, {}
    while len(sent_at) < len(peers):
        for peer, frame in node.frames_to_send():
            if peer in decoders:
                kinds[peer] += _kinds(decoders[peer], [frame], now)
                if "bundles" in kinds[peer]:
                    sent_at.setdefault(peer, now)
        timer = node.get_timer()
        assert timer is not None and timer < swarm.now + 30.0, kinds
        now = max(now, timer)
        node.handle_timer(now)
    for peer in peers:
        assert kinds[peer].index("certificate") < kinds[peer].index("bundles"), kinds[peer]
        assert kinds[peer].count("certificate") == 1
    times = sorted(sent_at.values())
    assert times[0] == swarm.now and times[1] > swarm.now  # held, sent once the buckets refill
