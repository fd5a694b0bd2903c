"""Council rollbacks on NodeCore: votes and certificates travel, the node reverts online to H,
marks the ops above H reverted, enters the new epoch and resumes; reverted heights and ops
never come back (from gossip, from bundles, or at restart)."""

from __future__ import annotations

import heapq
import random

import pytest

from swarmd.protocol import consensus
from swarmd.protocol.checkpoint import Cut
from swarmd.protocol.framing import FrameDecoder, FrameEncoder
from swarmd.protocol.limits import REVERT_UNRESOLVED_MAX, REVERTED_OPS_MAX
from swarmd.protocol.messages import (
    ROLLBACK_ITEMS_PER_MESSAGE_MAX,
    BundlesMessage,
    MessageError,
    OpsMessage,
    RollbackMessage,
    decode_message,
    encode_message,
)
from swarmd.protocol.node_core import (
    REASON_RESYNC,
    CheckpointFinalized,
    EpochEntered,
    ModeChanged,
    NodeCore,
    NodeCoreConfig,
    OpsReverted,
    PeerMisbehaved,
    PersistCheckpoint,
    PersistConsensusState,
    PersistOps,
    PersistRollback,
    RollbackRevertFailed,
    RollbackSignerError,
)
from swarmd.protocol.ops import Op, op_id_of
from swarmd.protocol.rollback import RollbackCertificate
from swarmd.protocol.sim.harness import Swarm

from .council_swarm import fund, funded_swarm
from .helpers import keypair


def _roots(swarm: Swarm, node: int) -> dict[tuple[int, int], bytes]:
    """(epoch, height) -> state root finalized on `node` (epoch from the bundle persisted)."""
    roots = {}
    for event in swarm.events[node]:
        if isinstance(event, PersistCheckpoint):
            epoch = consensus.CheckpointBundle.decode(event.bundle).epoch
            roots[(epoch, event.height)] = event.state_root
    return roots


def _prepared(seed: int = 3) -> tuple[Swarm, int, bytes, list[bytes]]:
    """A swarm final at some H, then at a greater height with `above` ops final above H."""
    swarm = funded_swarm(seed)
    height = swarm.nodes[0].final_height
    assert height >= 1
    root = swarm.nodes[0].state_root()
    above = fund(swarm, "above", 3, node=1)
    swarm.run(until=8.0)
    assert all(node.final_height > height for node in swarm.nodes)
    assert all(node.ledger.is_final(op_id) for node in swarm.nodes for op_id in above)
    return swarm, height, root, above


def _roll_back(swarm: Swarm, height: int, voters: list[int], *, resume: bool = True) -> None:
    """A quorum votes to roll back to `height`; then (unless `resume` is False) the same
    members resume the network, as the S2 play does once the hashes are confirmed."""
    for i in voters:
        swarm.nodes[i].propose_rollback(height, "bad transfer", swarm.now)
        swarm.flush(i)
    swarm.run(until=swarm.now + 1.0)
    # A wallet whose ops were reverted continues from its final head at H (as a client would
    # after reading its account back from the node).
    state = swarm.nodes[voters[0]].ledger.final_state
    for member in swarm.members:
        account = state.accounts.get(member.key)
        member.seq, member.head = (account.seq, account.head) if account else (0, b"")
    if resume:
        _resume(swarm, voters)


def _resume(swarm: Swarm, voters: list[int]) -> None:
    """Each voter signs `council.resume` and submits it to its own node."""
    for i in voters:
        outcome = swarm.submit(i, swarm.members[i].resume("hashes confirmed"))
        assert outcome.status == "accepted", outcome
    swarm.run(until=swarm.now + 3.0)


def test_rollback_message_round_trips_and_is_bounded() -> None:
    message = RollbackMessage((b"vote",), (b"cert-1", b"cert-2"))
    assert decode_message(encode_message(message)) == message
    with pytest.raises(MessageError):
        decode_message(encode_message(RollbackMessage((), ())))
    too_many = tuple(b"v" for _ in range(ROLLBACK_ITEMS_PER_MESSAGE_MAX + 1))
    with pytest.raises(MessageError):
        decode_message(encode_message(RollbackMessage(too_many, ())))


@pytest.mark.gate("s2-play-revert")
def test_a_quorum_of_votes_reverts_every_node_and_starts_the_next_epoch() -> None:
    swarm, height, root, above = _prepared()
    _roll_back(swarm, height, voters=[0, 1, 2], resume=False)
    for i, node in enumerate(swarm.nodes):
        assert node.epoch == 1
        # H+1 is the new epoch's settlement: no ops, the state at H (no member precommitted
        # above H without the value being final, so it settles no value).
        assert node.final_height == height + 1
        assert node.state_root() == root
        settlement = Cut.decode(consensus.CheckpointBundle.decode(node.bundle(height + 1)).value)
        assert (settlement.heads, settlement.state_root) == ((), root)
        assert settlement.settled is not None
        assert node.mode.value == "normal"  # its root confirmed, but quiesced: below
        for op_id in above:
            assert node.op_status(op_id) == ("reverted", "op_reverted")
            assert not node.ledger.is_final(op_id)
        kinds = [type(e) for e in swarm.events[i]]
        assert PersistRollback in kinds and OpsReverted in kinds and EpochEntered in kinds
        reverted = [e for e in swarm.events[i] if isinstance(e, OpsReverted)]
        assert sorted(reverted[-1].op_ids) == sorted(above)
        modes = [(e.mode, e.reason) for e in swarm.events[i] if isinstance(e, ModeChanged)]
        assert modes[-2:] == [("quiesced", "rollback"), ("quiesced", "")]
    _resume(swarm, [0, 1, 2])
    assert all(node.effective_mode.value == "normal" for node in swarm.nodes)
    # Consensus resumes at H+1 in epoch 1, with new ops, on every node alike.
    after = fund(swarm, "after", 2, node=2)
    swarm.run(until=swarm.now + 5.0)
    assert len({node.state_root() for node in swarm.nodes}) == 1
    assert all(node.final_height > height for node in swarm.nodes)
    assert all(node.ledger.is_final(op_id) for node in swarm.nodes for op_id in after)
    roots = [_roots(swarm, i) for i in range(4)]
    assert (1, height + 1) in roots[0]
    for key in roots[0]:
        assert len({r[key] for r in roots if key in r}) == 1  # agreement per (epoch, height)
    assert all(node.consensus.conflicting_signatures_refused == 0 for node in swarm.nodes)


def test_fewer_votes_than_a_quorum_change_nothing() -> None:
    swarm, height, _, above = _prepared(seed=4)
    final = swarm.nodes[0].final_height
    _roll_back(swarm, height, voters=[0, 1])
    assert all(node.epoch == 0 for node in swarm.nodes)
    assert all(node.final_height >= final for node in swarm.nodes)
    assert all(node.ledger.is_final(op_id) for node in swarm.nodes for op_id in above)


def test_a_reverted_op_is_refused_when_it_comes_back_by_gossip() -> None:
    swarm, height, _, above = _prepared(seed=5)
    envelopes = sorted(
        {env for e in swarm.events[1] if isinstance(e, PersistOps) for env in e.envelopes}
    )
    _roll_back(swarm, height, voters=[1, 2, 3])
    node = swarm.nodes[0]
    back = [env for env in envelopes if node.op_status(op_id_of(env))[0] == "reverted"]
    assert len(back) == len(above)
    outcome = node.submit_op(back[0], swarm.now)
    assert (outcome.status, outcome.code) == ("rejected", "op_reverted")
    sender = FrameEncoder()
    sender.queue_message(encode_message(OpsMessage(tuple(back))))
    for frame in sender.frames_to_send():
        node.receive_frame(swarm.nodes[1].node_id, frame, swarm.now)
    assert node.stats.ops_refused_reverted >= len(above)
    assert all(node.op_status(op_id)[0] == "reverted" for op_id in above)
    swarm.flush(0)
    assert not any(isinstance(e, PeerMisbehaved) for e in swarm.events[0])


def test_a_bundle_of_a_reverted_height_is_refused_without_penalty() -> None:
    swarm, height, _, _ = _prepared(seed=6)
    old = [e.bundle for e in swarm.events[0] if isinstance(e, PersistCheckpoint)]
    reverted = [b for b in old if consensus.CheckpointBundle.decode(b).height == height + 1]
    _roll_back(swarm, height, voters=[0, 1, 2], resume=False)
    node = swarm.nodes[3]
    assert node.final_height == height + 1  # its settlement
    # The members that reverted sent their reverted bundles along (refused the same way).
    refused = node.stats.bundles_refused_epoch
    sender = FrameEncoder()
    sender.queue_message(encode_message(BundlesMessage(tuple(reverted))))
    for frame in sender.frames_to_send():
        node.receive_frame(swarm.nodes[0].node_id, frame, swarm.now)
    assert node.final_height == height + 1  # its settlement
    assert node.stats.bundles_refused_epoch == refused + 1
    swarm.flush(3)
    assert not any(isinstance(e, PeerMisbehaved) for e in swarm.events[3])


def test_only_a_member_with_the_checkpoint_signs_a_vote() -> None:
    swarm, _, _, _ = _prepared(seed=7)
    with pytest.raises(RollbackSignerError):
        swarm.nodes[0].propose_rollback(swarm.nodes[0].final_height + 5, "future", swarm.now)
    outsider = NodeCore(
        genesis=swarm.genesis, keypair=keypair("outsider"), rng=random.Random(1), now=0.0
    )
    with pytest.raises(RollbackSignerError):
        outsider.propose_rollback(0, "not a member", 0.0)


def test_restart_restores_the_epoch_and_never_replays_reverted_ops() -> None:
    swarm, height, _, above = _prepared(seed=8)
    _roll_back(swarm, height, voters=[0, 1, 2])
    fund(swarm, "after", 2, node=0)
    swarm.run(until=swarm.now + 5.0)
    live = swarm.nodes[3]
    restored = _restart(swarm, 3, consensus_state=False)
    assert restored.epoch == 1
    assert (restored.final_height, restored.state_root()) == (live.final_height, live.state_root())
    assert all(restored.op_status(op_id)[0] == "reverted" for op_id in above)
    assert restored.consensus.epoch == 1


@pytest.mark.slow  # a million op ids remembered (about 1 s and 200 MB)
def test_a_restart_remembers_the_newest_reverted_ops_max() -> None:
    """REVERTED_OPS_MAX reached: a store holding more reverted ids than that (oldest first)
    restores the newest REVERTED_OPS_MAX; the certificate's own reverted ops, recorded last,
    are still refused, the oldest ids are forgotten (they are below every final line)."""
    swarm, height, _, above = _prepared(seed=8)
    _roll_back(swarm, height, voters=[0, 1, 2], resume=False)
    events = swarm.events[3]
    reverted = [op for e in events if isinstance(e, OpsReverted) for op in e.op_ids]
    assert set(above) <= set(reverted)
    older = [index.to_bytes(32, "big") for index in range(REVERTED_OPS_MAX + 1 - len(reverted))]
    restored = NodeCore.restore(
        genesis=swarm.genesis,
        keypair=swarm.keys[3],
        rng=random.Random(5),
        now=swarm.now,
        envelopes=[env for e in events if isinstance(e, PersistOps) for env in e.envelopes],
        bundles=[e.bundle for e in events if isinstance(e, PersistCheckpoint)],
        certificates=[e.certificate for e in events if isinstance(e, PersistRollback)],
        reverted_ops=older + reverted,
    )
    assert restored.node_status().reverted_ops == REVERTED_OPS_MAX
    assert not restored.rollbacks.is_reverted(older[0])
    assert restored.rollbacks.is_reverted(older[1])
    assert all(restored.op_status(op_id)[0] == "reverted" for op_id in above)


def test_a_node_offline_through_the_rollback_rejoins_in_the_new_epoch() -> None:
    swarm = funded_swarm(9)
    height = swarm.nodes[0].final_height
    swarm.cut = {(3, j) for j in range(4)} | {(j, 3) for j in range(4)}
    above = fund(swarm, "above", 3, node=1)
    swarm.run(until=8.0)
    assert swarm.nodes[0].final_height > height
    _roll_back(swarm, height, voters=[0, 1, 2])
    after = fund(swarm, "after", 2, node=0)
    swarm.run(until=swarm.now + 4.0)
    swarm.cut = set()
    for node in swarm.nodes[:3]:  # the shell reconnects: certificates are served on connect
        node.peer_disconnected(swarm.nodes[3].node_id, swarm.now)
        node.peer_connected(swarm.nodes[3].node_id, swarm.now)
        swarm.flush(swarm.index[node.node_id])
    swarm.run(until=swarm.now + 10.0)
    late = swarm.nodes[3]
    assert late.epoch == 1
    assert late.state_root() == swarm.nodes[0].state_root()
    assert all(late.ledger.is_final(op_id) for op_id in after)
    assert not any(late.ledger.is_final(op_id) for op_id in above)


def test_a_certificate_for_another_epoch_is_ignored() -> None:
    swarm, height, _, _ = _prepared(seed=10)
    _roll_back(swarm, height, voters=[0, 1, 2])
    persisted = [e.certificate for e in swarm.events[0] if isinstance(e, PersistRollback)]
    certificate = RollbackCertificate.decode(persisted[0])
    node = swarm.nodes[1]
    node.receive_rollback_certificate(certificate.encode(), swarm.now)  # seen: ignored
    assert node.epoch == 1
    fresh = NodeCore(
        genesis=swarm.genesis, keypair=swarm.keys[1], rng=random.Random(2), now=swarm.now
    )
    fresh.rollbacks.restore([certificate])
    assert fresh.epoch == 1
    fresh.receive_rollback_certificate(certificate.encode(), swarm.now)  # stale: wrong epoch
    assert fresh.epoch == 1
    assert not any(isinstance(e, CheckpointFinalized) for e in iter(fresh.next_event, None))


@pytest.mark.gate("s2-play-resync")
def test_a_node_that_cannot_rederive_h_refetches_its_state_read_only() -> None:
    swarm = funded_swarm(12, {3: NodeCoreConfig(bundles_kept=1)})  # 3 keeps too little to revert
    height = swarm.nodes[0].final_height
    root = swarm.nodes[0].state_root()
    above = fund(swarm, "above", 3, node=1)
    swarm.run(until=6.0)
    above += fund(swarm, "above-more", 3, node=2)
    swarm.run(until=9.0)
    assert swarm.nodes[3].final_height >= height + 2
    _roll_back(swarm, height, voters=[0, 1, 2])
    failed = [e for e in swarm.events[3] if isinstance(e, RollbackRevertFailed)]
    assert failed and failed[0].height == height
    modes = [(e.mode, e.reason) for e in swarm.events[3] if isinstance(e, ModeChanged)]
    assert ("quiesced", REASON_RESYNC) in modes  # (read-only locally, and quiesced)
    after = fund(swarm, "after", 2, node=0)
    swarm.run(until=swarm.now + 6.0)
    node = swarm.nodes[3]
    assert node.epoch == 1 and node.mode.value == "normal"
    assert node.state_root() == swarm.nodes[0].state_root() != root
    assert all(node.ledger.is_final(op_id) for op_id in after)
    assert not any(node.ledger.is_final(op_id) for op_id in above)


def _late_grants(swarm: Swarm, labels: list[str], nodes: list[int]) -> list[Op]:
    """Grants to new accounts, each submitted to every node in `nodes` (as clients would)."""
    grants = []
    for i, label in enumerate(labels):
        grant = swarm.members[i % len(swarm.members)].grant(swarm.author(label).key, 100)
        for node in nodes:
            assert swarm.submit(node, grant).status == "accepted"
        grants.append(grant)
    return grants


def test_a_node_that_entered_the_epoch_first_reverts_a_later_old_epoch_height() -> None:
    """Issue 12 (network-rollback seed 70): a member finalizes one old-epoch height more than
    another before the certificate reaches it. The bundle of that height, sent once the
    certificate is out, makes the other node revert the same ops (they were only pending there)
    instead of finalizing them again in the new epoch: one reverted set on every node."""
    swarm = funded_swarm(8)
    isolated = swarm.nodes[3]
    swarm.cut = {(3, i) for i in range(3)} | {(i, 3) for i in range(3)}
    late = [op.op_id for op in _late_grants(swarm, ["late-0", "late-1"], nodes=[1, 3])]
    swarm.run(until=swarm.now + 3.0)
    height = isolated.final_height
    assert all(swarm.nodes[i].ledger.is_final(op_id) for i in range(3) for op_id in late)
    assert not any(isolated.ledger.is_final(op_id) for op_id in late)
    assert all(swarm.nodes[i].final_height > height for i in range(3))
    bundles = [e.bundle for e in swarm.events[0] if isinstance(e, PersistCheckpoint)]
    above = [b for b in bundles if consensus.CheckpointBundle.decode(b).height > height]
    _roll_back(swarm, height, voters=[0, 1, 2])
    certificate = next(e.certificate for e in swarm.events[0] if isinstance(e, PersistRollback))
    isolated.receive_rollback_certificate(certificate, swarm.now)
    swarm.flush(3)
    assert isolated.epoch == 1 and isolated.final_height == height
    assert all(isolated.op_status(op_id)[0] == "applied" for op_id in late)  # not final here
    swarm.cut = set()
    sender = FrameEncoder()
    sender.queue_message(encode_message(BundlesMessage(tuple(above))))
    for frame in sender.frames_to_send():
        isolated.receive_frame(swarm.nodes[0].node_id, frame, swarm.now)
    swarm.flush(3)
    assert all(isolated.op_status(op_id) == ("reverted", "op_reverted") for op_id in late)
    reverted = [e for e in swarm.events[3] if isinstance(e, OpsReverted)]
    assert sorted(reverted[-1].op_ids) == sorted(late) and reverted[-1].height == height
    # Read-only until two peers confirmed its checkpoint at H (asked again once reachable).
    assert isolated.mode.value == "read-only" and isolated.status()["rejoin"] == "confirming 0/2"
    swarm.run(until=swarm.now + 1.5)
    assert isolated.mode.value == "normal" and isolated.status()["rejoin"] == ""
    # The new epoch finalizes new ops everywhere; the late ops never come back.
    after = fund(swarm, "after", 2, node=3)
    swarm.run(until=swarm.now + 5.0)
    assert len({node.state_root() for node in swarm.nodes}) == 1
    assert all(node.ledger.is_final(op_id) for node in swarm.nodes for op_id in after)
    for node in swarm.nodes:
        assert all(node.op_status(op_id)[0] == "reverted" for op_id in late)


def test_old_epoch_bundles_held_when_the_certificate_comes_are_reverted_and_relayed() -> None:
    """Issue 12, the race of PROTOCOL.md section 9: a node holds council-signed bundles above H
    that it has not finalized yet (one waits for an op it lacks, the next for its height) when
    it accepts the certificate. They are old-epoch bundles above H like any other: the ops of
    theirs it holds are reverted at once and the bundles are relayed (so peers that never got
    them revert the same ops), instead of being dropped while those ops stay live here and
    could be proposed in the new epoch."""
    swarm = funded_swarm(8)
    isolated = swarm.nodes[3]
    swarm.cut = {(3, i) for i in range(3)} | {(i, 3) for i in range(3)}
    late = [op.op_id for op in _late_grants(swarm, ["late-0", "late-1"], nodes=[1, 3])]
    lacking = swarm.members[2].grant(swarm.author("late-2").key, 100)
    assert swarm.submit(1, lacking).status == "accepted"  # never reaches node 3
    swarm.run(until=swarm.now + 3.0)
    height = isolated.final_height
    assert all(swarm.nodes[0].ledger.is_final(op_id) for op_id in [*late, lacking.op_id])
    bundles = [e.bundle for e in swarm.events[0] if isinstance(e, PersistCheckpoint)]
    above = [b for b in bundles if consensus.CheckpointBundle.decode(b).height > height]
    sender = FrameEncoder()
    sender.queue_message(encode_message(BundlesMessage(tuple(above))))
    for frame in sender.frames_to_send():
        isolated.receive_frame(swarm.nodes[0].node_id, frame, swarm.now)
    swarm.flush(3)
    assert isolated.final_height == height  # the first waits for `lacking`
    assert all(isolated.op_status(op_id)[0] == "applied" for op_id in late)
    _roll_back(swarm, height, voters=[0, 1, 2], resume=False)
    certificate = next(e.certificate for e in swarm.events[0] if isinstance(e, PersistRollback))
    isolated.receive_rollback_certificate(certificate, swarm.now)
    decoders: dict[bytes, FrameDecoder] = {}
    relayed = [
        peer
        for peer, frame in isolated.frames_to_send()
        for message in decoders.setdefault(peer, FrameDecoder()).receive_frame(frame, swarm.now)
        if isinstance(decode_message(message), BundlesMessage)
    ]
    swarm.flush(3)
    assert isolated.epoch == 1 and isolated.final_height == height
    assert all(isolated.op_status(op_id) == ("reverted", "op_reverted") for op_id in late)
    reverted = [e for e in swarm.events[3] if isinstance(e, OpsReverted)]
    assert set(late) <= {op_id for e in reverted for op_id in e.op_ids}
    assert all(e.height == height and e.epoch == 1 for e in reverted)
    assert len(set(relayed)) == 3, "the held bundles were not relayed to every peer"


def test_a_certificate_quiesces_until_a_quorum_resumes_in_the_new_epoch() -> None:
    """The S2 play: the quiesce votes final above H are reverted with the rest, yet every node
    stays quiesced after the certificate (old behaviour: it left quiesce with it); fewer than
    a quorum of resumes keep it quiesced, a quorum final in the new epoch ends it, and a
    restart in between keeps it (the replayed bundles tally the votes again)."""
    swarm = funded_swarm(14)
    height = swarm.nodes[0].final_height
    for i in range(3):
        assert swarm.submit(i, swarm.members[i].quiesce("revert")).status == "accepted"
    swarm.run(until=swarm.now + 3.0)
    assert all(node.ledger.final_state.quiesced for node in swarm.nodes)
    _roll_back(swarm, height, voters=[0, 1, 2], resume=False)
    probe = swarm.author("probe")
    for node in swarm.nodes:
        assert node.epoch == 1 and not node.ledger.final_state.quiesced  # the votes reverted
        assert node.effective_mode.value == "quiesced"
        assert node.status()["mode_reason"] == "rollback"
        outcome = node.submit_op(probe.claim("early").envelope, swarm.now)
        assert (outcome.status, outcome.code) == ("rejected", "quiesced")
    # Two resumes (a quorum is three) are final in epoch 1 but change nothing.
    for i in (0, 1):
        assert swarm.submit(i, swarm.members[i].resume("confirmed")).status == "accepted"
    swarm.run(until=swarm.now + 3.0)
    assert all(node.final_height > height for node in swarm.nodes)
    assert all(node.effective_mode.value == "quiesced" for node in swarm.nodes)
    restored = _restart(swarm, 3, consensus_state=False)
    assert restored.rollbacks.awaiting_resume
    assert sorted(restored.rollbacks.epoch_mode_votes.values()) == [True, True]
    # The third resume makes the quorum: every node leaves quiesce and takes client ops.
    assert swarm.submit(2, swarm.members[2].resume("confirmed")).status == "accepted"
    swarm.run(until=swarm.now + 3.0)
    for i, node in enumerate(swarm.nodes):
        assert node.effective_mode.value == "normal" and node.status()["mode_reason"] == ""
        assert ModeChanged("normal", "") in swarm.events[i]
    grant = swarm.members[0].grant(probe.key, 100)
    assert swarm.submit(3, grant).status == "accepted"
    swarm.run(until=swarm.now + 3.0)
    assert all(node.ledger.is_final(grant.op_id) for node in swarm.nodes)


def test_a_snapshot_above_h_stands_in_for_the_tally_it_skipped() -> None:
    """A final state that jumps to a snapshot in the new epoch (restart or state sync) skipped
    the heights whose mode votes would be tallied: the snapshot's council mode is taken; one
    at or below H changes nothing."""
    swarm, height, _, _ = _prepared(seed=15)
    _roll_back(swarm, height, voters=[0, 1, 2], resume=False)
    rollbacks = swarm.nodes[0].rollbacks
    assert rollbacks.awaiting_resume
    rollbacks.snapshot_installed(height)
    assert rollbacks.awaiting_resume
    rollbacks.snapshot_installed(height + 1)
    assert not rollbacks.awaiting_resume  # the snapshot's state is not quiesced


def _send(swarm: Swarm, node: int, message: BundlesMessage | OpsMessage | RollbackMessage) -> None:
    """`message` from node 0 (node 1 to node 0) to `node`, handled at once."""
    sender = FrameEncoder()
    sender.queue_message(encode_message(message))
    source = swarm.nodes[1 if node == 0 else 0].node_id
    for frame in sender.frames_to_send():
        swarm.nodes[node].receive_frame(source, frame, swarm.now)


def _late_old_height(swarm: Swarm) -> tuple[int, list[Op], list[bytes]]:
    """Node 3 cut off while nodes 0-2 finalize heights above H (node 3's final height) with
    grants node 3 never saw (each member grants twice: its second grant chains on the
    first); then a quorum rolls back to H. Returns H, the grants and node 0's bundles above H."""
    fund(swarm, "before", 3)
    swarm.run(until=4.0)
    swarm.cut = {(3, i) for i in range(3)} | {(i, 3) for i in range(3)}
    grants = _late_grants(swarm, [f"late-{i}" for i in range(8)], nodes=[1])
    swarm.run(until=swarm.now + 3.0)
    height = swarm.nodes[3].final_height
    assert all(swarm.nodes[0].ledger.is_final(op.op_id) for op in grants)
    bundles = [e.bundle for e in swarm.events[0] if isinstance(e, PersistCheckpoint)]
    above = [b for b in bundles if consensus.CheckpointBundle.decode(b).height > height]
    _roll_back(swarm, height, voters=[0, 1, 2])
    certificate = next(e.certificate for e in swarm.events[0] if isinstance(e, PersistRollback))
    swarm.nodes[3].receive_rollback_certificate(certificate, swarm.now)
    swarm.flush(3)
    assert swarm.nodes[3].epoch == 1 and swarm.nodes[3].final_height == height
    return height, grants, above


def test_ops_of_a_late_old_bundle_that_arrive_after_it_are_reverted() -> None:
    """Issue 12 gap (a): a node learns an old-epoch bundle above H before any of its ops. The
    cut's heads are remembered as unresolved; when the ops come (parents first, the way gossip
    and sync send them), a head arriving reverts itself and, through its prev, the ops of its
    chain that were admitted before it: none is ever final in the new epoch, and a restart
    keeps refusing them."""
    swarm = Swarm(4, seed=8)
    _, grants, above = _late_old_height(swarm)
    isolated = swarm.nodes[3]
    _send(swarm, 3, BundlesMessage(tuple(above)))
    heads = {
        op_id
        for b in above
        for _, _, op_id in Cut.decode(consensus.CheckpointBundle.decode(b).value).heads
    }
    unresolved = [op.op_id for op in grants if op.op_id in isolated.rollbacks.unresolved]
    assert unresolved and set(unresolved) <= heads
    assert all(isolated.op_status(op_id)[0] == "reverted" for op_id in unresolved)
    # Healed, it confirms its root and leaves read-only; then a lagging peer relays the ops.
    swarm.cut = set()
    swarm.run(until=swarm.now + 1.5)
    assert isolated.mode.value == "normal" and not isolated.rollbacks.awaiting_resume
    _send(swarm, 3, OpsMessage(tuple(op.envelope for op in grants)))
    # Members 0-2 signed `council.resume` at their first grant's seq: those grants are forks
    # that lost to final ops; every other grant is reverted, member 3's first one (admitted
    # before its head came) too.
    accounts = isolated.ledger.final_state.accounts
    lost = [op for op in grants if op.author in accounts and op.seq <= accounts[op.author].seq]
    assert len(lost) == 3 and all(isolated.op_status(op.op_id)[0] != "applied" for op in lost)
    rest = [op for op in grants if op not in lost]
    assert any(op.op_id not in heads for op in rest)
    assert all(isolated.op_status(op.op_id) == ("reverted", "op_reverted") for op in rest)
    assert isolated.stats.ops_refused_reverted == len(heads & {op.op_id for op in rest})
    assert not isolated.rollbacks.unresolved
    assert isolated.stats.reverted_bundles_refused == 0
    after = fund(swarm, "after", 2, node=3)
    swarm.run(until=swarm.now + 5.0)
    assert len({node.state_root() for node in swarm.nodes}) == 1
    assert all(node.ledger.is_final(op_id) for node in swarm.nodes for op_id in after)
    for node in swarm.nodes:
        assert not any(node.ledger.is_final(op.op_id) for op in grants)
    restored = _restart(swarm, 3, consensus_state=False)
    assert restored.state_root() == isolated.state_root()
    for op in rest:
        assert restored.submit_op(op.envelope, swarm.now).code == "op_reverted"


def test_unresolved_ids_of_reverted_cuts_are_bounded() -> None:
    """REVERT_UNRESOLVED_MAX reached: the oldest unresolved ids are forgotten first, so an op
    of theirs arriving later is admitted (it is below every peer's final line by then)."""
    swarm = Swarm(4, seed=8)
    _, grants, above = _late_old_height(swarm)
    isolated = swarm.nodes[3]
    fillers = [index.to_bytes(32, "big") for index in range(REVERT_UNRESOLVED_MAX)]
    for op_id in fillers:
        isolated.rollbacks.unresolved[op_id] = 1
    _send(swarm, 3, BundlesMessage(tuple(above)))
    assert len(isolated.rollbacks.unresolved) == REVERT_UNRESOLVED_MAX
    heads = [op.op_id for op in grants if op.op_id in isolated.rollbacks.unresolved]
    assert heads and not isolated.rollbacks.is_reverted(fillers[0])
    assert set(list(isolated.rollbacks.unresolved)[-len(heads) :]) == set(heads)


def test_the_settlement_closes_the_race_of_a_late_old_bundle() -> None:
    """Issue 12 gap (b), the race: node 0 finalizes H+1 of the old epoch (members 1-3
    precommitted its value, but none of them saw the precommits of the others), then members
    1-3 roll back to H while node 0's bundle of H+1 is still cut off from them. Members 1-3
    are a quorum of the new epoch holding the value's ops: without the settlement they would
    finalize those ops at H+1 of epoch 1 while node 0 reverted them, and node 0 would be left
    behind. The settlement (H+1 of epoch 1) lists the value each of them precommitted, so
    every node reverts its ops before anything else is final, and all agree."""
    swarm = Swarm(4, seed=11)
    fund(swarm, "before", 3)
    swarm.run(until=4.0)
    height = swarm.nodes[0].final_height
    assert all(node.final_height == height for node in swarm.nodes)
    late = _late_grants(swarm, ["race-0"], nodes=[1])  # by member 0, not among the resumers
    others = range(1, 4)
    # Step until members 1-3 all precommitted at H+1, then drop their precommits (and node
    # 0's) to each other: only node 0 sees a quorum of precommits.
    for _ in range(20_000):
        nodes = [swarm.nodes[i] for i in others]
        if all(n.consensus.height == height + 1 and n.consensus.step == "precommit" for n in nodes):
            break
        swarm.run(until=swarm.now + 0.001)
    swarm.cut = {(i, j) for i in range(4) for j in others if i != j}
    swarm.queue = [frame for frame in swarm.queue if (frame[2], frame[3]) not in swarm.cut]
    heapq.heapify(swarm.queue)
    swarm.run(until=swarm.now + 0.05)
    assert swarm.nodes[0].final_height == height + 1
    assert all(swarm.nodes[i].final_height == height for i in others)
    # Members 1-3 link again (nothing of the old epoch is in flight between them); node 0's
    # bundle of H+1 stays late. They all accept the certificate at once.
    swarm.cut = {(0, j) for j in others}
    votes = tuple(
        swarm.nodes[i].propose_rollback(height, "race", swarm.now).encode() for i in others
    )
    for i in range(4):
        _send(swarm, i, RollbackMessage(votes, ()))
        swarm.flush(i)
    assert all(node.epoch == 1 for node in swarm.nodes)
    # Each of members 1-3 precommitted the value above H: it refuses a settlement without it.
    for i in others:
        settlement = swarm.nodes[i].rollbacks.settlement
        listed = Cut.decode(settlement.value(height + 1, swarm.now) or b"")
        assert listed.settled and settlement.valid(listed, swarm.now)
        bare = Cut(listed.parent_id, listed.height, (), listed.state_root, listed.time_ms, ())
        assert not settlement.valid(bare, swarm.now)
    state = swarm.nodes[1].ledger.final_state
    for member in swarm.members:
        account = state.accounts.get(member.key)
        member.seq, member.head = (account.seq, account.head) if account else (0, b"")
    swarm.run(until=swarm.now + 2.0)
    _resume(swarm, [1, 2, 3])
    swarm.cut = set()
    swarm.run(until=swarm.now + 3.0)
    for node in swarm.nodes:
        assert node.stats.reverted_bundles_refused == 0
        assert all(node.op_status(op.op_id) == ("reverted", "op_reverted") for op in late)
    assert len({node.final_height for node in swarm.nodes}) == 1, "node 0 was left behind"
    settlement = Cut.decode(
        consensus.CheckpointBundle.decode(swarm.nodes[1].bundle(height + 1) or b"").value
    )
    assert settlement.settled, "the settlement lists no value: the race was not reproduced"
    after = fund(swarm, "after", 2, node=2)
    swarm.run(until=swarm.now + 5.0)
    assert len({node.state_root() for node in swarm.nodes}) == 1
    roots = [_roots(swarm, i) for i in range(4)]
    for key in roots[1]:
        assert len({r[key] for r in roots if key in r}) == 1  # agreement per (epoch, height)
    assert all(node.ledger.is_final(op_id) for node in swarm.nodes for op_id in after)
    # A restart replays the settlement (and the bundles after it) to the same state.
    restored = _restart(swarm, 1, consensus_state=False)
    live = swarm.nodes[1]
    assert (restored.final_height, restored.state_root()) == (live.final_height, live.state_root())
    assert all(restored.op_status(op.op_id)[0] == "reverted" for op in late)


def _restart(swarm: Swarm, i: int, *, consensus_state: bool = True) -> NodeCore:
    """Node `i` rebuilt from its durable events (its last signing state unless told not)."""
    events = swarm.events[i]
    states = [e.data for e in events if isinstance(e, PersistConsensusState)]
    return NodeCore.restore(
        genesis=swarm.genesis,
        keypair=swarm.keys[i],
        rng=random.Random(5),
        now=swarm.now,
        envelopes=[env for e in events if isinstance(e, PersistOps) for env in e.envelopes],
        bundles=[e.bundle for e in events if isinstance(e, PersistCheckpoint)],
        certificates=[e.certificate for e in events if isinstance(e, PersistRollback)],
        reverted_ops=[op for e in events if isinstance(e, OpsReverted) for op in e.op_ids],
        consensus_state=states[-1] if consensus_state and states else None,
        precommits=swarm.precommit_records(i),
    )


def test_a_member_restarted_before_the_settlement_still_requires_its_values() -> None:
    """Kept precommits are part of the signing state: a member restarted between the
    certificate and the settlement shows the values it precommitted above H and refuses a
    settlement without them, exactly as before the restart (without the signing state it
    would have accepted it: nothing else remembers them)."""
    swarm, height, _, _ = _prepared(seed=5)
    votes = tuple(
        swarm.nodes[i].propose_rollback(height, "bad", swarm.now).encode() for i in range(3)
    )
    _send(swarm, 1, RollbackMessage(votes, ()))  # the certificate; no time runs after it
    swarm.flush(1)
    live = swarm.nodes[1]
    assert live.epoch == 1 and live.final_height == height
    own = live.consensus.old_precommits(height)
    assert own, "member 1 precommitted no value above H"
    restored = _restart(swarm, 1)
    assert [m.encode() for m, _ in restored.consensus.old_precommits(height)] == [
        m.encode() for m, _ in own
    ]
    settlement = restored.rollbacks.settlement
    assert settlement.due()
    assert {m.value_id for m, _ in own} <= set(settlement.known)
    listed = Cut.decode(settlement.value(height + 1, swarm.now) or b"")
    assert listed.settled and settlement.valid(listed, swarm.now)
    bare = Cut(listed.parent_id, listed.height, (), listed.state_root, listed.time_ms, ())
    assert not settlement.valid(bare, swarm.now)
    forgetful = _restart(swarm, 1, consensus_state=False).rollbacks.settlement
    assert forgetful.valid(bare, swarm.now)
