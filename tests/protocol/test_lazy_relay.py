"""Lazy relay (ANNOUNCE + FETCH) and the delta sync skip rule of NodeCore."""

from __future__ import annotations

import hashlib

import pytest

from swarmd.protocol.errors import LocalProtocolError
from swarmd.protocol.framing import FrameDecoder, FrameEncoder, Priority
from swarmd.protocol.messages import (
    AnnounceMessage,
    FetchMessage,
    Message,
    SyncHelloMessage,
    decode_message,
    encode_message,
)
from swarmd.protocol.node_core import (
    ANNOUNCE_FETCH_DELAY_S,
    ANNOUNCED_IDS_MAX,
    ANNOUNCED_IDS_PER_PEER_MAX,
    FETCH_RETRY_S,
    SYNC_SKIPS_MAX,
    Mode,
    NodeCore,
    NodeCoreConfig,
)
from swarmd.protocol.sim.harness import Swarm

from .test_node_core import fund


def fake_id(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


class Wire:
    """Frames between one core and the test acting as its peers (fresh encoders/decoders)."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        self.encoders: dict[bytes, FrameEncoder] = {}
        self.decoders: dict[bytes, FrameDecoder] = {}

    def send(self, peer: bytes, message: Message, now: float) -> None:
        encoder = self.encoders.setdefault(peer, FrameEncoder())
        encoder.queue_message(encode_message(message), Priority.NORMAL)
        for frame in encoder.frames_to_send():
            self.core.receive_frame(peer, frame, now)

    def received(self) -> list[tuple[bytes, Message]]:
        out = []
        for peer, frame in self.core.frames_to_send():
            decoder = self.decoders.setdefault(peer, FrameDecoder())
            out += [(peer, decode_message(m)) for m in decoder.receive_frame(frame, 0.0)]
        return out

    def fetches(self) -> list[tuple[bytes, tuple[bytes, ...]]]:
        return [(p, m.op_ids) for p, m in self.received() if isinstance(m, FetchMessage)]


def test_a_relayed_op_reaches_each_node_once_in_a_full_mesh() -> None:
    swarm = Swarm(4)
    swarm.run(until=0.5)  # first sync sessions done
    funded = fund(swarm, 12)
    swarm.run(until=1.5)
    for index, node in enumerate(swarm.nodes):
        assert all(node.ledger.op(grant.op_id) is not None for _, grant in funded)
        own = sum(1 for i in range(12) if i % 4 == index)
        # Every op from its origin's push only; the other peers announced it (ids, no body).
        assert node.stats.ops_received == 12 - own
        assert node.stats.ops_duplicate == 0
        assert node.stats.announced_fetched == 0
        assert node.stats.ops_announced == 2 * (12 - own)


def test_a_partial_mesh_relays_by_announce_and_fetch() -> None:
    # A line 0 - 1 - 2: node 2 hears of node 0's ops only from node 1.
    swarm = Swarm(3, delta_sync_interval_s=60.0)
    swarm.cut = {(0, 2), (2, 0)}
    swarm.run(until=0.5)
    far = swarm.nodes[2]
    sessions = far.stats.sync_sessions  # the first ones, at connection
    funded = fund(swarm, 3)
    swarm.run(until=0.5 + 2 * swarm.delay_s + ANNOUNCE_FETCH_DELAY_S + 3 * swarm.delay_s)
    assert all(far.ledger.op(grant.op_id) is not None for _, grant in funded)
    from_node_0 = sum(1 for i in range(3) if i % 3 == 0)
    assert far.stats.announced_fetched == from_node_0
    assert far.stats.sync_sessions == sessions  # gossip did it, not delta sync


def test_eager_relay_fanout_pushes_relayed_ops_in_full() -> None:
    swarm = Swarm(3, delta_sync_interval_s=60.0, eager_relay_fanout=1)
    swarm.cut = {(0, 2), (2, 0)}
    swarm.run(until=0.5)
    _, grant = fund(swarm, 1)[0]
    swarm.run(until=0.5 + 2 * swarm.delay_s)
    far = swarm.nodes[2]
    assert far.ledger.op(grant.op_id) is not None
    assert far.stats.announced_fetched == 0
    assert swarm.nodes[1].stats.ops_announced == 0


def test_eager_relay_fanout_is_bounded_by_gossip_fanout() -> None:
    NodeCoreConfig(gossip_fanout=3, eager_relay_fanout=3)
    for bad in (-1, 4):
        with pytest.raises(LocalProtocolError):
            NodeCoreConfig(gossip_fanout=3, eager_relay_fanout=bad)


def test_an_unserved_announcement_is_fetched_from_each_announcer_then_left_to_sync() -> None:
    swarm = Swarm(4, delta_sync_interval_s=60.0)
    core = swarm.nodes[0]
    wire = Wire(core)
    peer_a, peer_b = swarm.nodes[1].node_id, swarm.nodes[2].node_id
    wire.received()  # drop what the connections queued
    missing, known = fake_id("never served"), fund(swarm, 1)[0][1].op_id
    wire.send(peer_a, AnnounceMessage(0, (missing, known)), 1.0)
    wire.send(peer_b, AnnounceMessage(0, (missing,)), 1.001)
    assert wire.fetches() == []  # a push may still bring it
    assert core.get_timer() is not None and core.get_timer() <= 1.0 + ANNOUNCE_FETCH_DELAY_S
    core.handle_timer(1.0 + ANNOUNCE_FETCH_DELAY_S)
    assert wire.fetches() == [(peer_a, (missing,))]  # the known id is never asked for
    core.handle_timer(1.0 + ANNOUNCE_FETCH_DELAY_S + FETCH_RETRY_S / 2)
    assert wire.fetches() == []
    core.handle_timer(1.0 + ANNOUNCE_FETCH_DELAY_S + FETCH_RETRY_S)
    assert wire.fetches() == [(peer_b, (missing,))]  # the next announcer
    core.handle_timer(1.0 + ANNOUNCE_FETCH_DELAY_S + 3 * FETCH_RETRY_S)
    assert wire.fetches() == []  # nobody left: delta sync is the backstop
    assert core.stats.announced_fetched == 2


def test_an_announced_op_that_arrives_by_push_is_not_fetched() -> None:
    swarm = Swarm(4, delta_sync_interval_s=60.0)
    core = swarm.nodes[0]
    wire = Wire(core)
    wire.received()
    person = swarm.author("pushed")
    grant = swarm.members[1].grant(person.key, 100)
    peer_a = swarm.nodes[2].node_id
    wire.send(peer_a, AnnounceMessage(0, (grant.op_id,)), 1.0)
    swarm.nodes[1].submit_op(grant.envelope, 1.0)
    for peer, frame in swarm.nodes[1].frames_to_send():
        if peer == core.node_id:
            core.receive_frame(swarm.nodes[1].node_id, frame, 1.01)
    core.handle_timer(1.0 + ANNOUNCE_FETCH_DELAY_S)
    messages = wire.received()
    assert not [m for _, m in messages if isinstance(m, FetchMessage)]
    # Relayed: announced to the one peer that neither pushed nor announced it.
    announces = [(p, m) for p, m in messages if isinstance(m, AnnounceMessage)]
    assert announces == [(swarm.nodes[3].node_id, AnnounceMessage(0, (grant.op_id,)))]


def test_a_quiesced_node_ignores_announcements() -> None:
    swarm = Swarm(4, delta_sync_interval_s=60.0)
    core = swarm.nodes[0]
    wire = Wire(core)
    wire.received()
    core.set_mode(Mode.QUIESCED, "drill", 1.0)
    wire.send(swarm.nodes[1].node_id, AnnounceMessage(0, (fake_id("x"),)), 1.0)
    core.handle_timer(1.0 + ANNOUNCE_FETCH_DELAY_S)
    assert wire.fetches() == []


def test_announcements_beyond_a_peers_share_and_the_total_are_ignored() -> None:
    swarm = Swarm(2, delta_sync_interval_s=60.0)
    core = swarm.nodes[0]
    wire = Wire(core)
    peers = [fake_id(f"peer {p}") for p in range(7)]
    for peer in peers:
        assert core.peer_connected(peer, 1.0)
    per_message = 512
    announced = 0
    for p, peer in enumerate(peers):
        ids = [fake_id(f"{p}/{i}") for i in range(ANNOUNCED_IDS_PER_PEER_MAX + per_message)]
        for start in range(0, len(ids), per_message):
            wire.send(peer, AnnounceMessage(0, tuple(ids[start : start + per_message])), 1.0)
        announced += len(ids)
    kept = min(ANNOUNCED_IDS_MAX, len(peers) * ANNOUNCED_IDS_PER_PEER_MAX)
    assert kept < len(peers) * ANNOUNCED_IDS_PER_PEER_MAX  # both limits were hit
    assert core.stats.announces_ignored == announced - kept


def test_no_session_is_skipped_before_one_finished_since_the_peer_connected() -> None:
    """After a (re)connection, e.g. a healed partition, the sets may differ by everything made
    on either side: announcements flowing say nothing until one session has run."""
    interval = 2.0
    swarm = Swarm(2, delta_sync_interval_s=interval)
    core = swarm.nodes[0]
    wire = Wire(core)  # the test plays the peer and never answers a session
    peer = swarm.nodes[1].node_id
    hellos = 0
    for step in range(20):  # 10 intervals, an announcement every half interval
        now = step * interval / 2
        wire.send(peer, AnnounceMessage(core.final_height, (fake_id(f"{step}"),)), now)
        core.handle_timer(now)
        hellos += sum(isinstance(m, SyncHelloMessage) for _, m in wire.received())
    assert core.stats.sync_sessions_skipped == 0
    assert hellos >= 4


def test_sync_skips_while_announcements_flow_at_our_height_but_never_too_long() -> None:
    interval = 1.0
    swarm = Swarm(3, delta_sync_interval_s=interval)
    funded = fund(swarm, 6)
    swarm.run(until=1.0)
    # Node 2's clients keep submitting: node 1 relays by announcing to node 0 (and back).
    t = 1.0
    for round_ in range(3):
        for payer, grant in funded:
            receive = [grant.op_id] if round_ == 0 else []
            swarm.submit(
                2,
                payer.transfer(
                    funded[0][0].key if payer is not funded[0][0] else funded[1][0].key,
                    1,
                    receive=receive,
                ),
            )
            t += 0.25
            swarm.run(until=t)
    node = swarm.nodes[0]
    intervals = (t - 1.0) / interval
    assert node.stats.sync_sessions_skipped > 0
    # Each of its two peers still gets a session at least every SYNC_SKIPS_MAX + 1 intervals.
    assert node.stats.sync_sessions >= 2 * (intervals // (SYNC_SKIPS_MAX + 1)) - 2


def test_delta_sync_still_finds_an_op_gossip_lost_while_sessions_are_skipped() -> None:
    swarm = Swarm(3, delta_sync_interval_s=1.0)
    funded = fund(swarm, 3)
    swarm.run(until=1.0)
    (payer, grant), (payee, _) = funded[0], funded[1]
    # Node 1's op is lost on both of its links; nobody relays or announces it.
    swarm.cut = {(1, 0), (1, 2)}
    lost = payer.transfer(payee.key, 10, receive=[grant.op_id])
    swarm.submit(1, lost)
    swarm.cut = set()
    # Keep gossip flowing (announcements every round) while the lost op is looked for.
    filler = [swarm.author(f"filler-{i}") for i in range(40)]
    t = 1.0
    for i, person in enumerate(filler):
        swarm.submit(i % 2 * 2, swarm.members[i % 4 if i % 4 < 3 else 0].grant(person.key, 100))
        t += 0.25
        swarm.run(until=t)
    deadline = 1.0 + (SYNC_SKIPS_MAX + 2) * 1.0
    assert t >= deadline
    assert all(node.ledger.op(lost.op_id) is not None for node in swarm.nodes)
    assert sum(node.stats.sync_sessions_skipped for node in swarm.nodes) > 0
