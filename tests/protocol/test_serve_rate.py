"""Send-rate limits of bulk sync serving (node_core/serve_rate.py): the chunk answers a node
sends one peer never exceed that peer's bucket, all peers' together never exceed the total
bucket, both bounds are reached, and every request is still answered; a node far behind
catches up through held bundle answers; a full queue drops requests (counted) and the asker's
retry still gets the chunk."""

from __future__ import annotations

import pytest

from swarmd.protocol import limits
from swarmd.protocol.errors import LocalProtocolError
from swarmd.protocol.framing import FrameDecoder, FrameEncoder
from swarmd.protocol.limits import SERVE_DEFERRED_PER_PEER_MAX
from swarmd.protocol.messages import (
    BundlesMessage,
    CheckpointOpsRequest,
    ChunkMessage,
    ChunkRequestMessage,
    OpsMessage,
    decode_message,
    encode_message,
)
from swarmd.protocol.node_core import NodeCore, NodeCoreConfig
from swarmd.protocol.node_core.serve_rate import answer_size_max, ops_answer_size_max
from swarmd.protocol.sim.harness import Swarm

from .helpers import keypair
from .test_state_sync import SMALL, grow, isolate


class Askers:
    """Peers of `server` (not in its swarm) that ask it for chunk 0 of its snapshot and log
    the answers' sizes with the core time they were handed over."""

    def __init__(self, server: NodeCore, count: int, *, connect: bool = True) -> None:
        self.server = server
        self.ids = [keypair(f"asker-{i}").public_key for i in range(count)]
        self.decoders = {peer: FrameDecoder() for peer in self.ids}
        self.answers: list[tuple[float, bytes, int]] = []  # (time, peer, chunk message bytes)
        for peer in self.ids if connect else ():
            assert server.peer_connected(peer, server._now)
        snapshot = server.state_sync.snapshot
        assert snapshot is not None
        self.manifest_id = snapshot.manifest.manifest_id
        #: What the server charges its buckets for one answer (at least its encoded size).
        self.chunk_size = answer_size_max([snapshot.chunks[0]])

    def ask(self, peer: bytes, count: int, now: float) -> None:
        encoder = FrameEncoder()
        for _ in range(count):
            encoder.queue_message(encode_message(ChunkRequestMessage(self.manifest_id, 0)))
        for frame in encoder.frames_to_send():
            self.server.receive_frame(peer, frame, now)
        self.collect(now)

    def collect(self, now: float) -> None:
        for out in self.server.outgoing():
            if out.peer in self.decoders:
                for data in self.decoders[out.peer].receive_frame(out.frame, now):
                    if isinstance(decode_message(data), ChunkMessage):
                        self.answers.append((now, out.peer, len(data)))

    def run_until_answered(self, expected: int, start: float, limit_s: float) -> float:
        now = start
        while len(self.answers) < expected:
            timer = self.server.get_timer()
            assert timer is not None
            now = max(now, timer)
            assert now < start + limit_s, f"{len(self.answers)} of {expected} answered"
            self.server.handle_timer(now)
            self.collect(now)
        return now

    def sent_by(self, until: float, peer: bytes | None = None) -> int:
        """Bytes of the answers handed over by `until` (to `peer`, or to all)."""
        return sum(n for t, p, n in self.answers if t <= until and peer in (None, p))

    def charged_by(self, until: float, peer: bytes | None = None) -> int:
        """What those answers cost the buckets (each at least its bytes)."""
        answers = [t for t, p, _ in self.answers if t <= until and peer in (None, p)]
        return len(answers) * self.chunk_size


def _server(**limits: float) -> NodeCore:
    swarm = Swarm(4, seed=5, **SMALL, **limits)  # type: ignore[arg-type]
    grow(swarm, 3, label="rate")
    return swarm.nodes[0]


def test_one_peer_gets_its_rate_and_all_peers_together_the_total() -> None:
    probe = Askers(_server(), 1)
    size = probe.chunk_size
    per_peer_rate, per_peer_burst = 10.0 * size, 2.0 * size
    total_rate, total_burst = 15.0 * size, 3.0 * size
    server = _server(
        serve_bytes_per_s_peer=per_peer_rate,
        serve_burst_bytes_peer=per_peer_burst,
        serve_bytes_per_s_total=total_rate,
        serve_burst_bytes_total=total_burst,
    )
    askers = Askers(server, 3)
    start = server._now
    asks = 20
    for peer in askers.ids:
        askers.ask(peer, asks, start)
    end = askers.run_until_answered(3 * asks, start, limit_s=30.0)
    assert server.stats.serve_requests_deferred > 0 and server.stats.serve_requests_dropped == 0
    times = sorted({t for t, _, _ in askers.answers})
    for t in times:
        elapsed = t - start
        assert askers.sent_by(t) <= total_burst + total_rate * elapsed + 1e-6
        for peer in askers.ids:
            assert askers.sent_by(t, peer) <= per_peer_burst + per_peer_rate * elapsed + 1e-6
    # Both bounds are reached: with three askers the total is the bound (each gets a third,
    # under its own rate); a single asker then gets its own rate.
    assert askers.charged_by(end) >= 0.9 * (total_burst + total_rate * (end - start))
    alone = Askers(server, 4)
    lone = alone.ids[3]
    restart = server._now
    alone.ask(lone, asks, restart)
    finish = alone.run_until_answered(asks, restart, limit_s=30.0)
    got = alone.sent_by(finish, lone)
    assert got <= per_peer_burst + per_peer_rate * (finish - restart) + 1e-6
    charged = alone.charged_by(finish, lone)
    assert charged >= 0.9 * (per_peer_burst + per_peer_rate * (finish - restart))


def test_a_full_queue_drops_requests_and_a_retry_is_still_answered() -> None:
    probe = Askers(_server(), 1)
    size = probe.chunk_size
    server = _server(serve_bytes_per_s_peer=size, serve_burst_bytes_peer=size)
    askers = Askers(server, 1)
    (peer,) = askers.ids
    start = server._now
    askers.ask(peer, SERVE_DEFERRED_PER_PEER_MAX + 5, start)
    assert server.stats.serve_requests_dropped == 4  # one answered at once, 32 held
    assert server.stats.serve_requests_deferred == SERVE_DEFERRED_PER_PEER_MAX
    now = askers.run_until_answered(SERVE_DEFERRED_PER_PEER_MAX + 1, start, limit_s=60.0)
    askers.ask(peer, 1, now)
    askers.run_until_answered(SERVE_DEFERRED_PER_PEER_MAX + 2, now, limit_s=5.0)


def test_a_node_catches_up_through_held_bundle_answers() -> None:
    tight = {
        "serve_bytes_per_s_peer": 4_000.0,
        "serve_burst_bytes_peer": 1_000.0,
        "serve_bytes_per_s_total": 6_000.0,
        "serve_burst_bytes_total": 1_000.0,
    }
    swarm = Swarm(4, seed=8, checkpoint_interval_s=0.3, **tight)  # type: ignore[arg-type]
    grow(swarm, 1, label="warm", nodes=(0, 1, 2, 3))
    isolate(swarm, 3)
    grow(swarm, 20, label="away")
    swarm.cut = set()
    for _ in range(40):
        swarm.run(until=swarm.now + 0.5)
        if swarm.nodes[3].final_height >= swarm.nodes[0].final_height:
            break
    assert swarm.nodes[3].final_height == swarm.nodes[0].final_height >= 20
    assert sum(n.stats.serve_requests_deferred for n in swarm.nodes[:3]) > 0
    assert len({n.ledger.final_state.root() for n in swarm.nodes}) == 1


def test_the_config_refuses_a_rate_or_burst_of_zero() -> None:
    for name in ("serve_bytes_per_s_peer", "serve_burst_bytes_total"):
        with pytest.raises(LocalProtocolError):
            NodeCoreConfig(**{name: 0.0})  # type: ignore[arg-type]


def test_the_defaults_are_the_named_limits() -> None:
    config = NodeCoreConfig()
    assert (config.serve_bytes_per_s_peer, config.serve_burst_bytes_peer) == (
        limits.SERVE_BYTES_PER_S_PEER,
        limits.SERVE_BURST_BYTES_PER_PEER,
    )
    assert (config.serve_bytes_per_s_total, config.serve_burst_bytes_total) == (
        limits.SERVE_BYTES_PER_S_TOTAL,
        limits.SERVE_BURST_BYTES_TOTAL,
    )


def test_buckets_of_peers_gone_are_forgotten_past_the_bound() -> None:
    server = _server()
    askers = Askers(server, limits.SERVE_RATE_BUCKETS_MAX + 10, connect=False)
    for peer in askers.ids:
        assert server.peer_connected(peer, server._now)
        askers.ask(peer, 1, server._now)
        server.peer_disconnected(peer, server._now)
        assert len(server.serve_rate.buckets) <= limits.SERVE_RATE_BUCKETS_MAX
    assert len(askers.answers) == len(askers.ids)


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65_535, 65_536, limits.SNAPSHOT_CHUNK_SIZE_BYTES])
def test_the_charged_size_is_never_below_the_encoded_answer(size: int) -> None:
    data = bytes(size)
    chunk = ChunkMessage(b"\x07" * 32, 2**63 - 1, data)
    assert answer_size_max([data]) >= len(encode_message(chunk))
    bundles = [data, bytes(size // 2 + 1), b""]
    encoded = encode_message(BundlesMessage(tuple(bundles)))
    assert answer_size_max(bundles) >= len(encoded)


# --- stored ops (the daemon's StoredOpsWanted answers; branch peers2) --------------------------


def _ops_received(server: NodeCore, peer: bytes, decoder: FrameDecoder, now: float) -> int:
    """Envelopes `server` handed over to `peer` since the last call (OPS messages)."""
    count = 0
    for out in server.outgoing():
        if out.peer == peer:
            for data in decoder.receive_frame(out.frame, now):
                message = decode_message(data)
                if isinstance(message, OpsMessage):
                    count += len(message.envelopes)
    return count


def test_stored_ops_answers_go_through_the_send_rate_deferred_not_dropped() -> None:
    """Final ops the shell read from its store (`send_stored_ops`) are bulk sync: an answer
    beyond the peer's bucket is held and sent once the rate refills it (the core's timer), in
    order, and never before its bytes are earned."""
    envelope = bytes(8_000)
    answer = [envelope] * 10  # ~80 KB
    size = answer_size_max(answer)
    rate, burst = float(size), float(size)  # one answer a second, one at once
    server = _server(
        serve_bytes_per_s_peer=rate,
        serve_burst_bytes_peer=burst,
        serve_bytes_per_s_total=4 * rate,
        serve_burst_bytes_total=4 * burst,
    )
    peer = keypair("stored-ops-asker").public_key
    start = server._now
    assert server.peer_connected(peer, start)
    decoder = FrameDecoder()
    _ops_received(server, peer, decoder, start)  # the hello traffic of a new peer
    deferred = server.stats.serve_requests_deferred
    for _ in range(3):
        server.send_stored_ops(peer, answer, start)
    assert _ops_received(server, peer, decoder, start) == 10  # the first: within the burst
    assert server.stats.serve_requests_deferred == deferred + 2
    assert server.stats.serve_requests_dropped == 0
    got, now = 10, start
    while got < 30:
        timer = server.get_timer()
        assert timer is not None and timer < start + 5.0
        now = max(now, timer)
        server.handle_timer(now)
        got += _ops_received(server, peer, decoder, now)
        assert got * len(envelope) <= burst + rate * (now - start)
    assert now - start >= 2.0 - 1e-6  # two more answers took two seconds of rate


def test_the_charged_size_covers_stored_ops_messages() -> None:
    envelopes = [bytes(size) for size in (0, 1, 300, 70_000)] * 8  # more than one OPS message
    chunks = [
        envelopes[i : i + limits.OPS_PER_MESSAGE_MAX]
        for i in range(0, len(envelopes), limits.OPS_PER_MESSAGE_MAX)
    ]
    encoded = sum(len(encode_message(OpsMessage(tuple(chunk)))) for chunk in chunks)
    assert len(chunks) > 1 and ops_answer_size_max(envelopes) >= encoded


def test_checkpoint_ops_answers_go_through_the_send_rate() -> None:
    """CHECKPOINT_OPS_REQUEST (a catch-up fetching one height's final ops) is bulk sync: with a
    bucket of one answer, asking three times gets one answer at once and the other two held
    and sent later, none dropped."""
    probe = _server()
    height = max(h for h, ids in probe.finality.final_ids_by_height.items() if ids)
    held = [probe.ledger.op(i) for i in probe.finality.final_ids_by_height[height]]
    size = ops_answer_size_max([op.envelope for op in held if op is not None])
    server = _server(serve_bytes_per_s_peer=float(size), serve_burst_bytes_peer=float(size))
    ops_at_height = len(server.finality.final_ids_by_height[height])
    assert ops_at_height > 0
    peer = keypair("checkpoint-ops-asker").public_key
    start = server._now
    assert server.peer_connected(peer, start)
    decoder = FrameDecoder()
    _ops_received(server, peer, decoder, start)
    deferred = server.stats.serve_requests_deferred
    encoder = FrameEncoder()
    for _ in range(3):
        encoder.queue_message(encode_message(CheckpointOpsRequest(height)))
    for frame in encoder.frames_to_send():
        server.receive_frame(peer, frame, start)
    assert _ops_received(server, peer, decoder, start) == ops_at_height
    assert server.stats.serve_requests_deferred == deferred + 2
    got, now = ops_at_height, start
    while got < 3 * ops_at_height:
        timer = server.get_timer()
        assert timer is not None and timer < start + 5.0
        now = max(now, timer)
        server.handle_timer(now)
        got += _ops_received(server, peer, decoder, now)
    assert now - start >= 2.0 - 1e-6  # one answer a second
    assert server.stats.serve_requests_dropped == 0
