"""The consensus core tells its own messages from another signer of its key
(`ForeignOwnSignature`), and signs nothing once halted (`halt_signing`). What it cannot know
proves nothing: rounds older than its signing state keeps, after a restart, and the next
height's book."""

from __future__ import annotations

import random

from swarmd.protocol import crypto
from swarmd.protocol.consensus import (
    SIGNING_STATE_ROUNDS_KEPT,
    ForeignOwnSignature,
    MessageKind,
    Tendermint,
    sign_vote,
)
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.node_core import NodeCore, NodeCoreConfig, SigningHalted

from .test_consensus import CONFIG, NETWORK_ID, Bench, drain


def own_vote(bench: Bench, kind: MessageKind, round_: int, value: bytes | None, height: int = 4):
    value_id = None if value is None else crypto.sha256(value)
    return sign_vote(bench.keypairs[bench.me], NETWORK_ID, kind, height, round_, value_id)


def foreign(bench: Bench) -> list[ForeignOwnSignature]:
    return [event for event in bench.events if isinstance(event, ForeignOwnSignature)]


def test_our_own_message_coming_back_is_no_sign_of_a_copy() -> None:
    bench = Bench.create()
    bench.propose(0, b"cut v")
    bench.validate_all()
    (prevote,) = [m for m in bench.sent if m.kind is MessageKind.PREVOTE]
    bench.core.receive_message(prevote.encode(), bench.now)  # relayed back by a peer
    bench.collect()
    assert foreign(bench) == []


def test_a_vote_of_our_key_we_did_not_sign_is_reported_once_per_height() -> None:
    bench = Bench.create()
    bench.propose(0, b"cut v")
    bench.validate_all()
    # Our slot signed differently (we prevoted "cut v"), then a slot we never signed.
    bench.core.receive_message(own_vote(bench, MessageKind.PREVOTE, 0, b"x").encode(), bench.now)
    bench.core.receive_message(own_vote(bench, MessageKind.PRECOMMIT, 1, None).encode(), 0.0)
    bench.collect()
    assert foreign(bench) == [ForeignOwnSignature(4, 0, "prevote")]


def test_a_halted_core_signs_nothing_while_rounds_go_on() -> None:
    bench = Bench.create()
    bench.core.receive_message(own_vote(bench, MessageKind.PREVOTE, 0, b"x").encode(), 0.0)
    bench.collect()
    assert foreign(bench) and not bench.core.signing_halted
    bench.core.halt_signing()
    signed_before = list(bench.sent)
    bench.propose(0, b"cut v")
    bench.validate_all()
    bench.vote(MessageKind.PREVOTE, 0, b"cut v", [0, 1, 2])  # we would precommit now
    bench.vote(MessageKind.PRECOMMIT, 3, None, [0, 1])  # f + 1 in round 3: skip to it
    assert bench.core.round == 3  # ours to propose (the value we locked on in round 0)
    bench.advance_to(bench.now + 10.0)
    own = bench.keypairs[bench.me].public_key
    # (It still relays the prevotes behind its lock: others' signatures, not its own.)
    assert [m for m in bench.sent if m.validator == own] == signed_before
    assert bench.core.signatures_withheld >= 3  # a prevote, a precommit, a proposal at least


def test_after_a_restart_older_rounds_than_the_state_keeps_prove_nothing() -> None:
    bench = Bench.create()
    bench.vote(MessageKind.PRECOMMIT, SIGNING_STATE_ROUNDS_KEPT + 1, None, [0, 1])  # f + 1: skip
    assert bench.core.round == SIGNING_STATE_ROUNDS_KEPT + 1
    state = bench.core.signing_state()
    restarted = Tendermint(
        network_id=NETWORK_ID,
        validators=sorted(k.public_key for k in bench.keypairs),
        keypair=bench.keypairs[bench.me],
        config=CONFIG,
    )
    restarted.restore_signing_state(state, bench.now)
    drain(restarted)
    oldest_kept = restarted.round - SIGNING_STATE_ROUNDS_KEPT + 1
    # Signed before the restart, in a round the state no longer lists: maybe ours.
    old = own_vote(bench, MessageKind.PREVOTE, oldest_kept - 1, b"x")
    restarted.receive_message(old.encode(), bench.now)
    # The next height: a restarted node may run lower heights than it signed at.
    ahead = own_vote(bench, MessageKind.PREVOTE, 0, b"y", height=5)
    restarted.receive_message(ahead.encode(), bench.now)
    assert not [e for e in drain(restarted) if isinstance(e, ForeignOwnSignature)]
    # A round the state does list, signed differently: not ours.
    kept = own_vote(bench, MessageKind.PREVOTE, oldest_kept, b"x")
    restarted.receive_message(kept.encode(), bench.now)
    events = [e for e in drain(restarted) if isinstance(e, ForeignOwnSignature)]
    assert events == [ForeignOwnSignature(4, oldest_kept, "prevote")]


def test_the_node_halts_on_a_foreign_signature_but_not_while_its_restored_state_waits() -> None:
    council = [crypto.KeyPair.from_seed(crypto.sha256(b"own-key-%d" % i)) for i in range(4)]
    genesis = Genesis.create("own-key", [k.public_key for k in council], signup_reward=100)
    core = NodeCore(
        genesis=genesis, keypair=council[0], config=NodeCoreConfig(), rng=random.Random(1), now=0.0
    )
    event = ForeignOwnSignature(3, 0, "prevote")
    # A restarted node runs heights below its restored signing state's: its own old messages.
    core.finality.signing_state_pending = (5, b"")
    core.finality.on_foreign_own_signature(event)
    assert not core.consensus.signing_halted
    core.finality.signing_state_pending = None
    core.finality.on_foreign_own_signature(event)
    core.finality.on_foreign_own_signature(event)  # reported once
    assert core.consensus.signing_halted and core.node_status().signing_halted
    halts = []
    while (emitted := core.next_event()) is not None:
        if isinstance(emitted, SigningHalted):
            halts.append(emitted)
    assert halts == [SigningHalted(3, 0, "prevote")]
