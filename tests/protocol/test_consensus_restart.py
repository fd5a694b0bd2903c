"""A validator that crashes and restarts from its durable signing state (Tendermint's "last
sign state"): it never signs two different messages for one (height, round, type), keeps its
lock, and keeps finalizing (a one-member council, and a four-member council restarted at once).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from swarmd.protocol import consensus, crypto
from swarmd.protocol.consensus import (
    ConsensusMessage,
    Decided,
    MessageKind,
    SigningStateError,
    Tendermint,
    ValueRequested,
    decode_message,
    decode_signing_state,
)
from swarmd.protocol.errors import LocalProtocolError
from swarmd.protocol.node_core import (
    CheckpointFinalized,
    EquivocationRecorded,
    NodeCore,
    PersistCheckpoint,
    PersistConsensusState,
    PersistOps,
    PersistPrecommit,
)
from swarmd.protocol.sim.harness import Swarm

from .test_consensus import NETWORK_ID, Bench, drain
from .test_node_core import fund


def grant(swarm: Swarm, label: str, member: int = 0) -> None:
    outcome = swarm.submit(member, swarm.members[member].grant(swarm.author(label).key, 100))
    assert outcome.status == "accepted"  # type: ignore[attr-defined]


PREVOTE, PRECOMMIT, PROPOSAL = MessageKind.PREVOTE, MessageKind.PRECOMMIT, MessageKind.PROPOSAL


def assert_no_conflicts(messages: list[ConsensusMessage]) -> None:
    """No two different signed bodies for one (validator, height, round, type)."""
    bodies: dict[tuple[bytes, int, int, MessageKind], dict[str, object]] = {}
    for message in messages:
        slot = (message.validator, message.height, message.round, message.kind)
        body = bodies.setdefault(slot, message.body())
        assert body == message.body(), f"two different messages signed for {slot[1:]}"


@dataclass
class RestartBench(Bench):
    """A Bench whose core can crash and restart; the shell keeps the signing state taken
    whenever the core had messages to send (before sending them), like NodeCore does."""

    durable_state: bytes | None = None
    emitted: list[ConsensusMessage] = field(default_factory=list)
    restarts: int = 0

    def collect(self) -> None:
        payloads = self.core.messages_to_send()
        if payloads:
            self.durable_state = self.core.signing_state()
        for data in payloads:
            message = decode_message(data)
            self.emitted.append(message)
            if message not in self.sent:
                self.sent.append(message)
        self.events += drain(self.core)

    def restart(self) -> None:
        assert self.durable_state is not None
        assert self.core.conflicting_signatures_refused == 0
        validators = sorted(keypair.public_key for keypair in self.keypairs)
        core = Tendermint(
            network_id=NETWORK_ID, validators=validators, keypair=self.keypairs[self.me]
        )
        core.restore_signing_state(self.durable_state, self.now)
        self.core = core
        self.restarts += 1
        self.collect()


def _core_key(bench: RestartBench) -> bytes:
    return bench.keypairs[bench.me].public_key


def test_restart_after_prevote_and_precommit_signs_nothing_conflicting() -> None:
    bench = RestartBench.create()
    v = b"cut v"
    bench.propose(0, v)
    bench.validate_all()
    bench.vote(PREVOTE, 0, v, [0, 1])  # a POL for v: we precommit v and lock on it
    assert bench.my_votes(PRECOMMIT, 0) == [crypto.sha256(v)]
    bench.restart()
    assert (bench.core.height, bench.core.round) == (4, 0)
    # A fresh core would now time out and prevote nil, then precommit nil on these nil
    # prevotes (lines 44, 57, 61): the restored one is past both steps in round 0.
    bench.vote(PREVOTE, 0, None, [0, 1, 2])
    bench.advance_to(bench.now + 30)
    assert bench.my_votes(PREVOTE, 0) == [crypto.sha256(v)]
    assert bench.my_votes(PRECOMMIT, 0) == [crypto.sha256(v)]
    # The first timer after the restart re-broadcast both votes, byte for byte.
    again = [m for m in bench.emitted if m.round == 0 and m.kind is not PROPOSAL]
    assert len(again) >= 4
    assert_no_conflicts(bench.emitted)
    assert bench.core.conflicting_signatures_refused == 0


def test_restart_after_prevote_only_keeps_the_prevote_and_still_precommits() -> None:
    bench = RestartBench.create()
    v = b"cut v"
    bench.propose(0, v)
    bench.validate_all()
    assert bench.my_votes(PREVOTE, 0) == [crypto.sha256(v)]
    bench.restart()
    # The proposal is re-sent by its proposer; a POL for v then gets our precommit for v.
    bench.propose(0, v)
    bench.validate_all()
    bench.vote(PREVOTE, 0, v, [0, 1])
    assert bench.my_votes(PREVOTE, 0) == [crypto.sha256(v)]
    assert bench.my_votes(PRECOMMIT, 0) == [crypto.sha256(v)]
    bench.vote(PRECOMMIT, 0, v, [0, 1])
    assert [e.value for e in bench.events if isinstance(e, Decided)] == [v]
    assert_no_conflicts(bench.emitted)


def test_lock_survives_restarts_in_the_papers_locking_scenario() -> None:
    """test_consensus.test_locked_value_is_not_prevoted_against_without_a_newer_pol with a
    crash and restart after every lock change and before every round change."""
    bench = RestartBench.create()
    v, w = b"cut v", b"cut w"
    bench.propose(0, v)
    bench.validate_all()
    bench.vote(PREVOTE, 0, v, [0, 1])
    assert bench.my_votes(PRECOMMIT, 0) == [crypto.sha256(v)]  # locked on v in round 0
    bench.restart()
    bench.vote(PRECOMMIT, 0, None, [0, 1])
    bench.next_round()
    assert bench.core.round == 1
    # Entering round 1 signed nothing, so the durable state is still round 0's: the restarted
    # core is back in round 0 and moves on again once the others' precommits come back.
    bench.restart()
    assert bench.core.round == 0
    bench.vote(PRECOMMIT, 0, None, [0, 1])
    bench.next_round()
    # Round 1: a fresh proposal w. Still locked on v after two restarts: nil (lines 23, 26).
    bench.propose(1, w)
    assert bench.my_votes(PREVOTE, 1) == [None]
    bench.restart()
    bench.propose(1, w)  # re-broadcast by its proposer
    bench.vote(PREVOTE, 1, w, [0, 1, 2])  # a newer POL: relock on w (line 36)
    bench.validate_all()
    assert bench.my_votes(PRECOMMIT, 1) == [crypto.sha256(w)]
    bench.restart()
    state = decode_signing_state(bench.durable_state or b"", NETWORK_ID, _core_key(bench))
    assert (state.locked_round, state.locked_value) == (1, w)
    assert (state.valid_round, state.valid_value) == (1, w)
    bench.vote(PRECOMMIT, 1, None, [0, 1])
    bench.next_round()
    # Round 2: v with its round-0 POL (relayed again: the restart lost the others' votes);
    # locked on w in round 1, so nil (line 29).
    bench.vote(PREVOTE, 0, v, [0, 1])
    bench.propose(2, v, valid_round=0)
    assert bench.my_votes(PREVOTE, 2) == [None]
    bench.vote(PREVOTE, 2, None, [0, 1])
    bench.vote(PRECOMMIT, 2, None, [0, 1])
    bench.restart()
    bench.vote(PRECOMMIT, 2, None, [0, 1])
    bench.next_round()
    # Round 3: we propose the validValue w kept across the restarts, with validRound 1.
    assert bench.core.round == 3
    proposals = [m for m in bench.sent if m.kind is PROPOSAL]
    assert [(p.round, p.value, p.valid_round) for p in proposals] == [(3, w, 1)]
    # The restart also lost the round-1 POL behind that proposal, so we had not prevoted yet:
    # restored in the propose step with our proposal, which is kept (not signed again).
    assert bench.my_votes(PREVOTE, 3) == []
    bench.restart()
    bench.advance_to(bench.now)  # the re-broadcast is due at once after a restart
    assert [m.round for m in bench.emitted if m.kind is PROPOSAL] == [3, 3]
    bench.vote(PREVOTE, 1, w, [0, 1, 2])  # the POL, relayed again (lines 28-29)
    assert bench.my_votes(PREVOTE, 3) == [crypto.sha256(w)]
    bench.vote(PREVOTE, 3, w, [0, 1])
    bench.vote(PRECOMMIT, 3, w, [1, 2])
    assert [(d.round, d.value) for d in bench.events if isinstance(d, Decided)] == [(3, w)]
    assert bench.restarts == 6
    assert_no_conflicts(bench.emitted)


def test_restored_proposer_in_propose_step_asks_for_a_value_once() -> None:
    bench = RestartBench.create()
    for round in range(3):  # rounds 0-2 time out with nil everywhere; we propose in round 3
        bench.advance_to(bench.now + 30)
        bench.vote(PREVOTE, round, None, [0, 1])
        bench.vote(PRECOMMIT, round, None, [0, 1])
        bench.next_round()
    assert bench.core.round == 3
    assert [e for e in bench.events if isinstance(e, ValueRequested)][-1].round == 3
    # The periodic re-broadcast in round 3 made round 3's state (propose step, nothing
    # proposed yet) durable: the restarted core is there and asks for a value again.
    bench.restart()
    assert bench.core.round == 3
    asks = [e for e in bench.events if isinstance(e, ValueRequested) and e.round == 3]
    assert len(asks) == 2
    bench.core.provide_value(4, 3, b"cut after restart", bench.now)
    bench.collect()
    assert [m.value for m in bench.sent if m.kind is PROPOSAL] == [b"cut after restart"]
    assert_no_conflicts(bench.emitted)


def test_bad_signing_states_are_refused_with_a_typed_error() -> None:
    bench = RestartBench.create()
    bench.propose(0, b"cut v")
    bench.validate_all()
    state = bench.durable_state
    assert state is not None
    validators = sorted(keypair.public_key for keypair in bench.keypairs)
    other = Tendermint(network_id=NETWORK_ID, validators=validators, keypair=bench.keypairs[0])
    with pytest.raises(SigningStateError):
        other.restore_signing_state(state, 0.0)  # another validator's state
    wrong_network = Tendermint(
        network_id=crypto.sha256(b"other"), validators=validators, keypair=bench.keypairs[3]
    )
    with pytest.raises(SigningStateError):
        wrong_network.restore_signing_state(state, 0.0)
    fresh = Tendermint(network_id=NETWORK_ID, validators=validators, keypair=bench.keypairs[3])
    for junk in (b"", b"\xc0", state[:-1], state[:10] + b"\x00" + state[11:]):
        with pytest.raises(SigningStateError):
            fresh.restore_signing_state(junk, 0.0)
    observer = Tendermint(network_id=NETWORK_ID, validators=validators, keypair=None)
    with pytest.raises(LocalProtocolError):
        observer.restore_signing_state(state, 0.0)
    with pytest.raises(LocalProtocolError):
        observer.signing_state()
    fresh.start_height(5, 0.0)
    with pytest.raises(LocalProtocolError):
        fresh.restore_signing_state(state, 0.0)  # height 4 is below the running height


def test_signing_state_keeps_only_recent_rounds() -> None:
    bench = RestartBench.create()
    rounds = consensus.SIGNING_STATE_ROUNDS_KEPT + 3
    for round in range(rounds):
        bench.advance_to(bench.now + 60)
        bench.vote(PREVOTE, round, None, [0, 1])
        bench.vote(PRECOMMIT, round, None, [0, 1])
        bench.next_round()
    state = decode_signing_state(bench.core.signing_state(), NETWORK_ID, _core_key(bench))
    assert state.round == rounds
    kept_rounds = {m.round for m in state.messages}
    assert kept_rounds == set(range(rounds - consensus.SIGNING_STATE_ROUNDS_KEPT + 1, rounds))
    assert len(state.messages) <= consensus.SIGNING_STATE_MESSAGES_MAX


# --- NodeCore: restarts from the durable log plus the signing state --------------------------


@dataclass
class Durable:
    """What one node's shell made durable: the op log, checkpoints, the latest signing state."""

    envelopes: list[bytes] = field(default_factory=list)
    bundles: list[bytes] = field(default_factory=list)
    consensus_state: bytes | None = None
    states: list[bytes] = field(default_factory=list)  # every state, to check all votes
    precommits: dict[bytes, bytes] = field(default_factory=dict)  # kept precommits' records


def durable_of(events: list[object]) -> Durable:
    durable = Durable()
    for event in events:
        if isinstance(event, PersistOps):
            durable.envelopes += event.envelopes
        elif isinstance(event, PersistCheckpoint):
            durable.bundles.append(event.bundle)
        elif isinstance(event, PersistPrecommit):
            durable.precommits[event.precommit_id] = event.data
        elif isinstance(event, PersistConsensusState):
            durable.consensus_state = event.data
            durable.states.append(event.data)
    return durable


def restart(swarm: Swarm, index: int, durable: Durable) -> NodeCore:
    core = NodeCore.restore(
        genesis=swarm.genesis,
        keypair=swarm.keys[index],
        rng=random.Random(1000 + index),
        now=swarm.now,
        envelopes=durable.envelopes,
        bundles=durable.bundles,
        consensus_state=durable.consensus_state,
        precommits=list(durable.precommits.values()),
    )
    swarm.nodes[index] = core
    return core


def signed_messages(swarm: Swarm, index: int) -> list[ConsensusMessage]:
    key = swarm.keys[index].public_key
    messages = []
    for data in durable_of(swarm.events[index]).states:
        messages += decode_signing_state(data, swarm.genesis.network_id, key).messages
    return messages


def finalized_heights(events: list[object]) -> list[int]:
    return [e.height for e in events if isinstance(e, CheckpointFinalized)]


def test_single_member_council_keeps_finalizing_after_restarts() -> None:
    swarm = Swarm(1, seed=21)
    fund(swarm, 2)
    swarm.run(until=3.0)
    assert swarm.nodes[0].final_height == 1
    # Crash after the decision: a restart must not sit the next height out.
    durable = durable_of(swarm.events[0])
    restart(swarm, 0, durable)
    assert swarm.nodes[0].final_height == 1
    grant(swarm, "after-restart")
    swarm.run(until=6.0)
    assert swarm.nodes[0].final_height == 2
    # Crash mid-height: the signing state of height 3 is durable, its checkpoint is not.
    grant(swarm, "mid-height")
    swarm.run(until=9.0)
    assert swarm.nodes[0].final_height == 3
    durable = durable_of(swarm.events[0])
    mid_height = Durable(durable.envelopes, durable.bundles[:-1], durable.consensus_state)
    mid_height.precommits = durable.precommits
    assert (
        decode_signing_state(
            mid_height.consensus_state or b"", swarm.genesis.network_id, swarm.keys[0].public_key
        ).height
        == 3
    )
    swarm.events[0].append("restart")
    core = restart(swarm, 0, mid_height)
    swarm.flush(0)
    # It resumes height 3 from its own signed votes and decides it again, the same cut.
    assert core.final_height == 3
    assert finalized_heights(swarm.events[0]) == [1, 2, 3, 3]
    grant(swarm, "after-second-restart")
    swarm.run(until=12.0)
    assert core.final_height == 4
    assert_no_conflicts(signed_messages(swarm, 0))


def test_all_four_members_restarted_at_once_keep_finalizing() -> None:
    swarm = Swarm(4, seed=31)
    fund(swarm, 4)
    swarm.run(until=3.0)
    base_height = swarm.nodes[0].final_height
    assert base_height >= 1
    # New ops start a height; crash everyone while it is in progress (votes signed, no
    # decision yet), dropping every frame in flight.
    more = [swarm.author(f"before-crash-{i}") for i in range(4)]
    for i, person in enumerate(more):
        swarm.submit(i, swarm.members[i].grant(person.key, 100))
    for _ in range(200):
        swarm.run(until=swarm.now + 0.005)
        signed = [
            decode_signing_state(d.consensus_state, swarm.genesis.network_id, k.public_key)
            for d, k in zip(map(durable_of, swarm.events), swarm.keys, strict=True)
            if d.consensus_state is not None
        ]
        in_progress = [s for s in signed if s.height == base_height + 1 and s.messages]
        if len(in_progress) >= 2 and all(n.final_height == base_height for n in swarm.nodes):
            break
    else:
        raise AssertionError("never caught a height in progress")
    swarm.queue.clear()
    for index in range(4):
        restart(swarm, index, durable_of(swarm.events[index]))
    swarm.connect_all()
    later = [swarm.author(f"after-crash-{i}") for i in range(4)]
    for i, person in enumerate(later):
        swarm.submit(i, swarm.members[(i + 1) % 4].grant(person.key, 100))
    swarm.run(until=swarm.now + 12.0)
    heights = {node.final_height for node in swarm.nodes}
    assert len(heights) == 1 and heights.pop() >= base_height + 2
    assert len({node.state_root() for node in swarm.nodes}) == 1
    assert all(node.ledger.balance(p.key) == 100 for node in swarm.nodes for p in more + later)
    assert not any(isinstance(e, EquivocationRecorded) for ev in swarm.events for e in ev)
    for index in range(4):
        assert_no_conflicts(signed_messages(swarm, index))
    assert all(node.consensus.conflicting_signatures_refused == 0 for node in swarm.nodes)


def test_a_signing_state_of_a_decided_height_is_ignored() -> None:
    swarm = Swarm(1, seed=41)
    fund(swarm, 1)
    swarm.run(until=3.0)
    durable = durable_of(swarm.events[0])
    core = restart(swarm, 0, durable)
    assert core.final_height == 1 and core.status()["consensus_height"] == 0
    with pytest.raises(SigningStateError):
        restart(swarm, 0, Durable(durable.envelopes, durable.bundles, b"junk"))
