"""One key, one process: a validator that receives a consensus message validly signed with its
own key that it did not sign (a copy of its home runs elsewhere) stops signing, says so, and
the rest of the council goes on (protocol/node_core/finality.py, docs/OPERATIONS.md "One key,
one process"). The copy is played by an outsider connection that sends a vote signed with
node 0's key to node 1, which relays it as any vote."""

from __future__ import annotations

import random

from swarmd.protocol import consensus, crypto
from swarmd.protocol.crypto import KeyPair
from swarmd.protocol.node_core import NodeCore, SigningHalted
from swarmd.protocol.sim import scenarios
from swarmd.protocol.sim.scenarios.council import _consensus_frame
from swarmd.protocol.sim.swarm import node_keypair

COPY = KeyPair.from_seed(crypto.sha256(b"test-own-key-copy-channel")).public_key
COPY_SENDS_AT_S = 2.0
RUN_S = 8.0


def core_of(swarm: scenarios.Swarm, index: int) -> NodeCore:
    core = swarm.sim.nodes[index].core
    assert isinstance(core, NodeCore)
    return core


def test_a_second_signer_of_a_validators_key_halts_its_signing_and_the_council_goes_on() -> None:
    params = scenarios.ScenarioParams()
    swarm = scenarios.build_swarm("own-key", 5, params, outsiders=(COPY,))
    sim = swarm.sim
    rng = random.Random(5)
    halted: list[tuple[int, SigningHalted]] = []
    sim.event_hooks.append(
        lambda index, event: (
            halted.append((index, event)) if isinstance(event, SigningHalted) else None
        )
    )
    wallets = [swarm.workload.new_account() for _ in range(8)]
    for step, wallet in enumerate(wallets):
        sim.at(0.1 + 0.05 * step, lambda wallet=wallet: swarm.workload.grant(wallet, node=1))
    for step in range(100):
        payer, payee = rng.sample(wallets, 2)
        sim.at(1.0 + 0.06 * step, lambda p=payer, q=payee: swarm.workload.transfer(p, q))
    sent: list[int] = []

    def copy_signs() -> None:
        # The copy votes at the height node 0 is deciding, for a value node 0 never saw.
        core = core_of(swarm, 0)
        height = core.final_height + 1
        round_ = core.consensus.round if core.consensus.height == height else 0
        vote = consensus.sign_vote(
            node_keypair(0),
            swarm.genesis.network_id,
            consensus.MessageKind.PREVOTE,
            height,
            round_,
            rng.randbytes(32),
        )
        sim.connect_outsider(COPY, 1)
        sim.inject_frame(COPY, 1, _consensus_frame(vote.encode()))
        sent.append(core.final_height)

    sim.at(COPY_SENDS_AT_S, copy_signs)
    sim.run_until(COPY_SENDS_AT_S + 1.0)
    node0 = core_of(swarm, 0)
    assert sent and [index for index, _ in halted] == [0], halted
    assert node0.consensus.signing_halted and node0.node_status().signing_halted
    assert not any(core_of(swarm, i).consensus.signing_halted for i in range(1, params.council))
    height_at_halt = max(core_of(swarm, i).final_height for i in range(params.council))

    sim.run_until(RUN_S)

    # The other members go on deciding, and node 0 signs no precommit of a later height.
    later = range(height_at_halt + 1, core_of(swarm, 1).final_height + 1)
    assert len(later) >= 2, "no checkpoint became final after the halt"
    for height in later:
        bundle = core_of(swarm, 1).bundle(height)
        assert bundle is not None
        signers = {key for key, _ in consensus.CheckpointBundle.decode(bundle).precommits}
        assert node_keypair(0).public_key not in signers, height
    assert node0.consensus.signatures_withheld > 0
    assert node0.final_height == core_of(swarm, 1).final_height  # still follows by bundles
