"""NodeCore over an in-memory network: gossip, delta sync, finality, modes, limits."""

from __future__ import annotations

from swarmd.protocol.node_core import (
    CheckpointFinalized,
    Mode,
    PeerMisbehaved,
    PersistOps,
    SyncSessionFinished,
)
from swarmd.protocol.sim.harness import Swarm


def fund(swarm: Swarm, count: int) -> list:
    people = [swarm.author(f"person-{i}") for i in range(count)]
    grants = []
    for i, person in enumerate(people):
        grant = swarm.members[i % len(swarm.members)].grant(person.key, 100)
        grants.append(grant)
        assert swarm.submit(i % len(swarm.nodes), grant).status == "accepted"
    return list(zip(people, grants, strict=True))


def test_ops_reach_every_node_and_become_final() -> None:
    swarm = Swarm(4)
    funded = fund(swarm, 6)
    (alice, alice_grant), (bob, _) = funded[0], funded[1]
    swarm.submit(2, alice.transfer(bob.key, 30, receive=[alice_grant.op_id]))
    swarm.run(until=5.0)
    roots = {node.state_root() for node in swarm.nodes}
    assert len(roots) == 1
    assert all(node.ledger.balance(bob.key) == 130 for node in swarm.nodes)
    assert all(node.final_height >= 1 for node in swarm.nodes)
    finals = [
        {e.height: e.state_root for e in ev if isinstance(e, CheckpointFinalized)}
        for ev in swarm.events
    ]
    for height in finals[0]:
        assert len({f.get(height) for f in finals if height in f}) == 1
    assert all(node.ledger.unfinalized_count() == 0 for node in swarm.nodes)
    persisted = [e for e in swarm.events[1] if isinstance(e, PersistOps)]
    assert len(persisted) >= 7


def test_delta_sync_repairs_a_partition() -> None:
    swarm = Swarm(4)
    fund(swarm, 2)
    swarm.run(until=3.0)
    # Cut node 3 off, write on node 0, heal: sync (not gossip) must bring node 3 up to date.
    swarm.cut = {(3, j) for j in range(4)} | {(j, 3) for j in range(4)}
    late = swarm.author("late")
    grant = swarm.members[1].grant(late.key, 100)
    swarm.submit(0, grant)
    swarm.run(until=6.0)
    assert swarm.nodes[3].ledger.balance(late.key) == 0
    swarm.cut = set()
    swarm.run(until=12.0)
    assert swarm.nodes[3].ledger.balance(late.key) == 100
    assert len({n.state_root() for n in swarm.nodes}) == 1
    assert len({n.final_height for n in swarm.nodes}) == 1
    sessions = [e for e in swarm.events[3] if isinstance(e, SyncSessionFinished)]
    assert sessions and all(s.rounds >= 1 for s in sessions)


def test_read_only_and_quiesced_refuse_submissions() -> None:
    swarm = Swarm(4)
    node = swarm.nodes[0]
    person = swarm.author("p")
    grant = swarm.members[0].grant(person.key, 100)
    node.set_mode(Mode.READ_ONLY, "maintenance", 0.0)
    assert swarm.submit(0, grant).code == "read_only"
    node.set_mode(Mode.QUIESCED, "drill", 0.0)
    assert swarm.submit(0, grant).code == "quiesced"
    node.set_mode(Mode.NORMAL, "", 0.0)
    assert swarm.submit(0, grant).status == "accepted"


def test_garbage_frames_get_a_peer_disconnected() -> None:
    swarm = Swarm(2)
    attacker = swarm.nodes[1].node_id
    for _ in range(20):
        swarm.nodes[0].receive_frame(attacker, b"\x01\x07garbage", 0.0)
    swarm.flush(0)
    assert any(isinstance(e, PeerMisbehaved) for e in swarm.events[0])
    assert attacker not in swarm.nodes[0].peer_ids()


def test_same_seed_same_result() -> None:
    def run() -> tuple[bytes, int]:
        swarm = Swarm(4, seed=5)
        fund(swarm, 4)
        swarm.run(until=4.0)
        return swarm.nodes[0].state_root(), swarm.nodes[0].final_height

    assert run() == run()


def test_restart_from_durable_log_catches_up_without_equivocating() -> None:
    import random as _random

    from swarmd.protocol.node_core import (
        EquivocationRecorded,
        NodeCore,
        PersistCheckpoint,
        PersistConsensusState,
    )

    swarm = Swarm(4, seed=11)
    fund(swarm, 3)
    swarm.run(until=3.0)
    # "kill -9" node 2: keep only what it asked to persist.
    envelopes = [env for e in swarm.events[2] if isinstance(e, PersistOps) for env in e.envelopes]
    bundles = [e.bundle for e in swarm.events[2] if isinstance(e, PersistCheckpoint)]
    states = [e.data for e in swarm.events[2] if isinstance(e, PersistConsensusState)]
    assert states  # a council member signed votes, each time after persisting its state
    crashed = swarm.nodes[2]
    for node in swarm.nodes:
        node.peer_disconnected(crashed.node_id, swarm.now)
    more = [swarm.author(f"after-crash-{i}") for i in range(3)]
    for i, person in enumerate(more):
        outcome = swarm.submit(i % 2, swarm.members[3].grant(person.key, 100))
        assert outcome.status in ("accepted", "pending")
    swarm.run(until=6.0)
    restored = NodeCore.restore(
        genesis=swarm.genesis,
        keypair=swarm.keys[2],
        rng=_random.Random(99),
        now=swarm.now,
        envelopes=envelopes,
        bundles=bundles,
        consensus_state=states[-1],
        precommits=swarm.precommit_records(2),
    )
    assert restored.final_height == crashed.final_height
    swarm.nodes[2] = restored
    swarm.connect_all()
    swarm.run(until=14.0)
    assert len({n.state_root() for n in swarm.nodes}) == 1
    assert len({n.final_height for n in swarm.nodes}) == 1
    assert all(restored.ledger.balance(p.key) == 100 for p in more)
    assert restored.final_height > crashed.final_height
    assert restored.consensus.conflicting_signatures_refused == 0
    assert not any(isinstance(e, EquivocationRecorded) for ev in swarm.events for e in ev)


def test_equivocation_evidence_is_verified_recorded_and_gossiped() -> None:
    from swarmd.protocol import consensus
    from swarmd.protocol.framing import FrameEncoder
    from swarmd.protocol.messages import EvidenceMessage, encode_message
    from swarmd.protocol.node_core import EquivocationRecorded

    swarm = Swarm(4, seed=21)
    cheater = swarm.keys[3]
    net = swarm.genesis.network_id
    first = consensus.sign_vote(cheater, net, consensus.MessageKind.PREVOTE, 1, 0, b"\x01" * 32)
    second = consensus.sign_vote(cheater, net, consensus.MessageKind.PREVOTE, 1, 0, b"\x02" * 32)
    evidence = consensus.Evidence(first, second).encode()
    encoder = FrameEncoder()
    encoder.queue_message(encode_message(EvidenceMessage((evidence,))))
    sender = swarm.nodes[1].node_id
    for frame in encoder.frames_to_send():
        swarm.nodes[0].receive_frame(sender, frame, 0.0)
    swarm.flush(0)
    swarm.run(until=1.0)
    for index in range(4):
        recorded = [e for e in swarm.events[index] if isinstance(e, EquivocationRecorded)]
        assert recorded and recorded[0].validator == cheater.public_key, index
    assert swarm.nodes[2].status()["evidence"] == 1

    # Forged evidence (not two signed conflicting votes) only costs the sender its score.
    forged = consensus.Evidence(first, first).encode()
    encoder.queue_message(encode_message(EvidenceMessage((forged,))))
    for frame in encoder.frames_to_send():
        swarm.nodes[0].receive_frame(sender, frame, 1.0)
    assert swarm.nodes[0].status()["evidence"] == 1
    assert swarm.nodes[0].status()["peers"][sender.hex()]["score"] < 0


def test_handle_conflict_is_open_until_the_binding_is_final() -> None:
    swarm = Swarm(4, seed=23)
    alice, bob = swarm.author("alice"), swarm.author("bob")
    claims = [swarm.funded_claim(alice, "neo"), swarm.funded_claim(bob, "neo")]
    node = swarm.nodes[0]
    for claim in claims:
        node.submit_op(claim.envelope, 0.0)
        for member in swarm.members[: swarm.genesis.quorum]:
            node.submit_op(member.endorse(claim).envelope, 0.0)
    swarm.flush(0)
    assert node.status()["open_conflicts"] == 1
    swarm.run(until=6.0)
    assert node.final_height >= 1
    winner = node.ledger.final_state.bindings["neo"].claim_id
    loser = next(c.op_id for c in claims if c.op_id != winner)
    assert all(n.status()["open_conflicts"] == 0 for n in swarm.nodes)
    # Every node raised the handle.conflict rejection exactly once, with the same content.
    from swarmd.protocol.node_core import HandleConflictRejected

    for events in swarm.events:
        rejections = [e for e in events if isinstance(e, HandleConflictRejected)]
        assert [(r.handle, r.winning_claim, r.losing_claims) for r in rejections] == [
            ("neo", winner, (loser,))
        ]


def test_an_unfounded_handle_conflict_costs_the_sender() -> None:
    from swarmd.protocol.framing import FrameEncoder
    from swarmd.protocol.messages import HandleConflictMessage, encode_message
    from swarmd.protocol.node_core import HandleConflictRejected

    swarm = Swarm(4, seed=29)
    fund(swarm, 1)
    swarm.run(until=3.0)
    node, sender = swarm.nodes[0], swarm.nodes[1].node_id
    lie = HandleConflictMessage("neo", b"\x01" * 32, (b"\x02" * 32,), 1)
    encoder = FrameEncoder()
    encoder.queue_message(encode_message(lie))
    for frame in encoder.frames_to_send():
        node.receive_frame(sender, frame, 3.0)
    swarm.flush(0)
    assert node.status()["peers"][sender.hex()]["score"] < 0
    assert not any(isinstance(e, HandleConflictRejected) for e in swarm.events[0])
