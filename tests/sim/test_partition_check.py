"""council-partition's safety check asks which precommits decided a height during the split.

Seed 851 once failed it: members 0 and 2 (one side, no quorum) finalized height 2 about a
second after the split with a bundle whose third precommit (member 3's) had been delivered to
node 0 before the split; the decision waited for a lost prevote's re-broadcast. That is a
quorum of one round's precommits, not minority finality. The old check (a fixed settle time
after the split) blamed it; the new one counts only the precommits the finalizing node's side
could hold, so it still fails a decision that needed a precommit the side never received.
"""

from __future__ import annotations

from swarmd.protocol import consensus, crypto
from swarmd.protocol.sim import scenarios
from swarmd.protocol.sim.scenarios.council import SignedPrecommit, minority_decisions
from swarmd.protocol.sim.swarm import node_keypair, sim_genesis

COUNCIL = 4
#: The split of seed 851: two members (and the full node 4) on the other side.
SIDE_A = [0, 2]
SIDE_B = [1, 3, 4]
HEIGHT = 2


def _bundle(signers: list[int]) -> consensus.CheckpointBundle:
    genesis = sim_genesis([node_keypair(i) for i in range(COUNCIL)])
    value = b"the decided cut"
    precommits = tuple(
        (node_keypair(i).public_key, _precommit(i, genesis.network_id, value).signature)
        for i in signers
    )
    return consensus.CheckpointBundle(HEIGHT, 0, value, precommits)


def _precommit(index: int, network_id: bytes, value: bytes) -> consensus.ConsensusMessage:
    return consensus.sign_vote(
        node_keypair(index),
        network_id,
        consensus.MessageKind.PRECOMMIT,
        HEIGHT,
        0,
        crypto.sha256(value),
    )


def _council() -> list[bytes]:
    return [node_keypair(i).public_key for i in range(COUNCIL)]


def _signed(bundle: consensus.CheckpointBundle, index: int) -> SignedPrecommit:
    key = node_keypair(index).public_key
    return next(p for p in bundle.precommits if p[0] == key)


def test_seed_851_passes() -> None:
    result = scenarios.run_scenario("council-partition", 851)
    assert result.ok, scenarios.format_failure(result)


def test_decision_with_a_precommit_delivered_before_the_split_is_not_minority() -> None:
    bundle = _bundle([0, 2, 3])  # member 3 is on the other side
    known = {0: {_signed(bundle, 3)}}  # delivered to node 0 before the split
    assert minority_decisions([(0, bundle)], (SIDE_A, SIDE_B), known, _council()) == []


def test_decision_needing_a_precommit_the_side_never_received_fails() -> None:
    bundle = _bundle([0, 2, 3])
    # Nothing delivered before the split, or member 3's precommit only on its own side.
    for known in ({}, {1: {_signed(bundle, 3)}}, {4: {_signed(bundle, 3)}}):
        found = minority_decisions([(2, bundle)], (SIDE_A, SIDE_B), known, _council())
        assert found == [HEIGHT]


def test_another_signature_of_the_same_member_does_not_count() -> None:
    bundle = _bundle([0, 2, 3])
    forged = (node_keypair(3).public_key, bytes(64))  # not the precommit the bundle holds
    found = minority_decisions([(0, bundle)], (SIDE_A, SIDE_B), {0: {forged}}, _council())
    assert found == [HEIGHT]


def test_a_side_of_its_own_members_needs_a_quorum() -> None:
    # Side B holds members 1 and 3 only: their two precommits are no quorum of four.
    bundle = _bundle([1, 3])
    assert minority_decisions([(4, bundle)], (SIDE_A, SIDE_B), {}, _council()) == [HEIGHT]
    bundle = _bundle([0, 1, 2, 3])
    assert minority_decisions([(4, bundle)], (SIDE_A, SIDE_B), {}, _council()) == [HEIGHT]
    known = {3: {_signed(bundle, 0)}}
    assert minority_decisions([(4, bundle)], (SIDE_A, SIDE_B), known, _council()) == []
