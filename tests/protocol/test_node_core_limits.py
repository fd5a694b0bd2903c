"""The node core's bounds (protocol/limits.py, section "node core"): each test drives one core
over a bound and checks what the core does there."""

from __future__ import annotations

import dataclasses

import pytest

from swarmd.protocol import consensus
from swarmd.protocol.crypto import sha256
from swarmd.protocol.errors import LocalProtocolError
from swarmd.protocol.messages import (
    BUNDLES_PER_MESSAGE_MAX,
    EVIDENCE_PER_MESSAGE_MAX,
    AnnounceMessage,
    BundlesMessage,
    ConsensusEnvelope,
    EvidenceMessage,
    FetchMessage,
    ReconcileMessage,
    SyncHelloMessage,
)
from swarmd.protocol.node_core import (
    ANNOUNCE_FETCH_DELAY_S,
    ANNOUNCERS_PER_ID_MAX,
    BUNDLES_KEPT_MAX,
    CONSENSUS_SEEN_MAX,
    EVIDENCE_KEPT_MAX,
    FETCH_RETRY_S,
    FUTURE_BUNDLES_MAX,
    NODE_EVENTS_MAX,
    SYNC_SESSION_TIMEOUT_INTERVALS,
    EquivocationRecorded,
    Mode,
    ModeChanged,
    NodeCore,
    NodeCoreConfig,
    NodeStatus,
)
from swarmd.protocol.reconcile import IdSet, Reconciler
from swarmd.protocol.sim.harness import Swarm

from .test_lazy_relay import Wire, fake_id


def future_bundle(swarm: Swarm, height: int) -> bytes:
    """A council-signed bundle deciding an (arbitrary) value at `height`."""
    value = f"value at {height}".encode()
    net = swarm.genesis.network_id
    precommits = tuple(
        (
            key.public_key,
            consensus.sign_vote(
                key, net, consensus.MessageKind.PRECOMMIT, height, 0, sha256(value)
            ).signature,
        )
        for key in swarm.keys[: swarm.genesis.quorum]
    )
    return consensus.CheckpointBundle(height, 0, value, precommits).encode()


def events_of(core: NodeCore) -> list[object]:
    out = []
    while (event := core.next_event()) is not None:
        out.append(event)
    return out


def test_bundles_kept_above_the_bound_is_refused() -> None:
    assert NodeCoreConfig(bundles_kept=BUNDLES_KEPT_MAX).bundles_kept == BUNDLES_KEPT_MAX
    with pytest.raises(LocalProtocolError, match="BUNDLES_KEPT_MAX"):
        NodeCoreConfig(bundles_kept=BUNDLES_KEPT_MAX + 1)


def test_bundles_beyond_future_bundles_max_are_not_buffered() -> None:
    swarm = Swarm(4, delta_sync_interval_s=60.0)
    core = swarm.nodes[0]
    wire = Wire(core)
    sender = swarm.nodes[1].node_id
    heights = list(range(2, 2 + FUTURE_BUNDLES_MAX + 5))  # all above final_height + 1
    bundles = [future_bundle(swarm, h) for h in heights]
    for start in range(0, len(bundles), BUNDLES_PER_MESSAGE_MAX):
        batch = tuple(bundles[start : start + BUNDLES_PER_MESSAGE_MAX])
        wire.send(sender, BundlesMessage(batch), 0.0)
    # The first FUTURE_BUNDLES_MAX are kept for when height 1 is final; the rest dropped
    # (asked for again then), and the sender is not blamed: they were valid.
    assert sorted(core.finality.future_bundles) == heights[:FUTURE_BUNDLES_MAX]
    assert core.final_height == 0
    assert core.status()["peers"][sender.hex()]["score"] == 0


@pytest.mark.slow  # verifies 10k pieces of evidence (about 7 s)
def test_evidence_beyond_evidence_kept_max_is_not_stored() -> None:
    swarm = Swarm(4, delta_sync_interval_s=60.0)
    core = swarm.nodes[0]
    wire = Wire(core)
    cheater, net = swarm.keys[3], swarm.genesis.network_id
    prevote = consensus.MessageKind.PREVOTE

    # Distinct pieces, one signature each: the same first prevote, a different second one.
    first = consensus.sign_vote(cheater, net, prevote, 1, 0, b"\x00" * 32)
    items = [
        consensus.Evidence(
            first, consensus.sign_vote(cheater, net, prevote, 1, 0, i.to_bytes(32, "big"))
        ).encode()
        for i in range(1, EVIDENCE_KEPT_MAX + 3)
    ]
    sender = swarm.nodes[1].node_id
    recorded = 0
    for start in range(0, len(items), EVIDENCE_PER_MESSAGE_MAX):
        batch = tuple(items[start : start + EVIDENCE_PER_MESSAGE_MAX])
        wire.send(sender, EvidenceMessage(batch), 0.0)
        recorded += sum(isinstance(e, EquivocationRecorded) for e in events_of(core))
        wire.received()  # drop the gossip of what was recorded
    assert recorded == EVIDENCE_KEPT_MAX
    assert core.evidence == items[:EVIDENCE_KEPT_MAX]
    status = core.node_status()
    assert status.evidence == EVIDENCE_KEPT_MAX
    assert status.stats.equivocations == EVIDENCE_KEPT_MAX
    assert status.peers[0].score == 0  # valid evidence, only not stored: no penalty


def test_an_announced_id_is_fetched_from_at_most_announcers_per_id_max_peers() -> None:
    swarm = Swarm(2, delta_sync_interval_s=60.0)
    core = swarm.nodes[0]
    wire = Wire(core)
    peers = [fake_id(f"announcer {p}") for p in range(ANNOUNCERS_PER_ID_MAX + 2)]
    for peer in peers:
        assert core.peer_connected(peer, 0.0)
    wire.received()
    missing = fake_id("an op nobody sends")
    for peer in peers:  # all announce it; none answers a fetch
        wire.send(peer, AnnounceMessage(0, (missing,)), 0.0)
    asked: list[bytes] = []
    now = ANNOUNCE_FETCH_DELAY_S
    for _ in range(len(peers) + 2):
        core.handle_timer(now)
        asked += [peer for peer, message in wire.received() if isinstance(message, FetchMessage)]
        now += FETCH_RETRY_S
    # One announcer after the other, in announcement order, then the id is left to delta sync.
    assert asked == peers[:ANNOUNCERS_PER_ID_MAX]
    assert core.gossip.deadlines() == []


@pytest.mark.parametrize("late", [False, True])
def test_a_sync_session_a_peer_leaves_hanging_is_abandoned(late: bool) -> None:
    interval = 1.0
    swarm = Swarm(4, delta_sync_interval_s=interval)
    core = swarm.nodes[0]
    for i in range(800):  # sets large enough that a session takes more than one round trip
        grant = swarm.members[i % 4].grant(swarm.author(f"person {i}").key, 100)
        assert core.submit_op(grant.envelope, 0.0).status == "accepted"
    theirs = IdSet()
    for i in range(800):
        theirs.add(fake_id(f"theirs {i}"))
    wire = Wire(core)
    wire.received()
    peer = swarm.nodes[1].node_id

    def answers() -> list[ReconcileMessage]:
        return [
            m
            for _, m in wire.received()
            if isinstance(m, ReconcileMessage) and m.session_id == 7 and not m.from_initiator
        ]

    initiator = Reconciler(theirs)  # the test starts a session and then goes quiet
    wire.send(peer, SyncHelloMessage(7, 0, initiator.initiate()), 0.0)
    (first,) = answers()
    follow_up = initiator.reconcile(first.payload)
    assert follow_up is not None
    now = interval * SYNC_SESSION_TIMEOUT_INTERVALS + 0.1 if late else interval
    core.handle_timer(now)
    answers()
    wire.send(peer, ReconcileMessage(7, True, follow_up), now)
    # Within the bound the session goes on; past it the core has forgotten it.
    assert len(answers()) == (0 if late else 1)


@pytest.mark.slow  # 20k consensus messages through the core (about 4 s)
def test_a_consensus_message_beyond_consensus_seen_max_is_relayed_again() -> None:
    swarm = Swarm(4, delta_sync_interval_s=60.0)
    core = swarm.nodes[0]
    wire = Wire(core)
    sender, watcher = swarm.nodes[1].node_id, swarm.nodes[2].node_id
    member = swarm.keys[3].public_key

    def vote(height: int) -> bytes:
        # Well-formed (so relayed, and the sender not blamed); the consensus engine drops it
        # for its signature, which costs nothing to forge here.
        return consensus.ConsensusMessage(
            consensus.MessageKind.PREVOTE, height, 0, None, member, b"\x00" * 64
        ).encode()

    def relayed(payload: bytes) -> bool:
        return any(
            peer == watcher and isinstance(m, ConsensusEnvelope) and m.payload == payload
            for peer, m in wire.received()
        )

    payloads = [vote(height) for height in range(2, CONSENSUS_SEEN_MAX + 3)]
    assert relayed(payloads[0]) is False  # (drains what the core queued at connection)
    wire.send(sender, ConsensusEnvelope(payloads[0]), 0.0)
    assert relayed(payloads[0])
    wire.send(sender, ConsensusEnvelope(payloads[0]), 0.0)
    assert not relayed(payloads[0])  # remembered: not relayed twice
    for payload in payloads[1:]:
        wire.send(sender, ConsensusEnvelope(payload), 0.0)
        core.frames_to_send()  # the relays, unread
    # CONSENSUS_SEEN_MAX + 1 distinct messages later the first is forgotten, the last is not.
    wire.send(sender, ConsensusEnvelope(payloads[-1]), 0.0)
    assert not relayed(payloads[-1])
    wire.send(sender, ConsensusEnvelope(payloads[0]), 0.0)
    assert relayed(payloads[0])
    assert core.status()["peers"][sender.hex()]["score"] == 0


@pytest.mark.slow  # a million events (about 2 s)
def test_events_beyond_node_events_max_drop_the_oldest() -> None:
    core = Swarm(1).nodes[0]
    events_of(core)
    reasons = ("drill a", "drill b")
    for i in range(NODE_EVENTS_MAX + 2):  # a shell that never reads its events
        core.set_mode(Mode.NORMAL, reasons[i % 2], 0.0)
    assert core.stats.events_dropped == 2
    assert core.next_event() == ModeChanged("normal", reasons[0])  # the third one set
    assert len(events_of(core)) == NODE_EVENTS_MAX - 1


def test_node_status_is_frozen_and_renders_as_status() -> None:
    swarm = Swarm(4, seed=3)
    swarm.run(until=1.0)
    core = swarm.nodes[0]
    status = core.node_status()
    assert isinstance(status, NodeStatus)
    assert status.as_dict() == core.status()
    assert [peer.peer_id for peer in status.peers] == sorted(n.node_id for n in swarm.nodes[1:])
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.final_height = 99  # type: ignore[misc]
    core.stats.messages_received += 1  # the status holds a copy of the counters
    assert status.stats.messages_received == core.stats.messages_received - 1
