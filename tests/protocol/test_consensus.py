"""Tests of the Tendermint core: several cores wired by a virtual network, plus single cores
fed hand-signed messages for the exact rule-level scenarios (locking, bounds, fuzzing)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from swarmd.protocol import crypto, encoding, limits
from swarmd.protocol.consensus import (
    CONSENSUS_BUNDLES_KEPT_MAX,
    CONSENSUS_EVENTS_QUEUED_MAX,
    BundleDuplicateValidatorError,
    BundleQuorumError,
    BundleSignatureError,
    BundleUnknownValidatorError,
    CheckpointBundle,
    ConsensusConfig,
    ConsensusMessage,
    Decided,
    EquivocationDetected,
    Event,
    Evidence,
    EvidenceNotConflictingError,
    EvidenceSignatureError,
    MalformedBundleError,
    MessageKind,
    MessageRejected,
    RoundAdvanced,
    Tendermint,
    ValidationRequested,
    ValueRequested,
    decode_message,
    quorum_size,
    round_skip_size,
    sign_proposal,
    sign_vote,
    verify_bundle,
    verify_evidence,
)
from swarmd.protocol.errors import LocalProtocolError, RemoteProtocolError
from swarmd.protocol.sim.harness import Wire

NETWORK_ID = crypto.sha256(b"consensus test network")
CONFIG = ConsensusConfig()


def make_keypairs(count: int) -> list[crypto.KeyPair]:
    return [crypto.KeyPair.from_seed(crypto.sha256(b"validator %d" % i)) for i in range(count)]


def drain(core: Tendermint) -> list[Event]:
    events = []
    for _ in range(100_000):
        event = core.next_event()
        if event is None:
            return events
        events.append(event)
    raise AssertionError("event queue did not drain")


# --- the virtual network ---------------------------------------------------------------------

#: A link policy returns the delivery delay of one copy of a message, or None to drop it.
LinkPolicy = Callable[[int, int, float, bytes], float | None]


def reliable(delay_s: float = 0.05) -> LinkPolicy:
    return lambda src, dst, now, data: delay_s


@dataclass
class Network:
    """N validator cores (plus observers) with an application stub and bundle sync, on the
    shared harness's `Wire`. It stays here, beside its tests, because it drives bare
    `Tendermint` cores (values, validity and bundle sync come from the stub below): the
    NodeCore `Swarm` would test the consensus core through the ledger instead."""

    validator_count: int
    observer_count: int = 0
    link: LinkPolicy = field(default_factory=reliable)
    max_height: int = 3
    invalid_prefix: bytes = b"bad"
    bad_proposers: frozenset[int] = frozenset()
    crashed: set[int] = field(default_factory=set)
    sync_interval_s: float = 1.0
    equivocator: int | None = None  # set by tests that make one validator byzantine
    # Rewrites what node i broadcasts: returns (destination, data) pairs (byzantine nodes).
    tamper: Callable[[int, bytes], list[tuple[int, bytes]]] | None = None

    def __post_init__(self) -> None:
        self.keypairs = make_keypairs(self.validator_count)
        self.validators = [keypair.public_key for keypair in self.keypairs]
        self.cores = [
            Tendermint(
                network_id=NETWORK_ID, validators=self.validators, keypair=keypair, config=CONFIG
            )
            for keypair in self.keypairs
        ] + [
            Tendermint(network_id=NETWORK_ID, validators=self.validators, keypair=None)
            for _ in range(self.observer_count)
        ]
        self.now = 0.0
        self.wire = Wire()
        self.decisions: list[dict[int, bytes]] = [{} for _ in self.cores]
        self.evidence: list[Evidence] = []
        self.rejections: list[MessageRejected] = []
        self.rounds_advanced = 0
        self.next_sync = self.sync_interval_s

    def start(self, height: int = 1) -> None:
        for index, core in enumerate(self.cores):
            if index not in self.crashed:
                core.start_height(height, self.now)
        self.pump()

    # The application stub: proposes a value naming the proposer, validates by prefix.
    def value_for(self, index: int, height: int, round: int) -> bytes:
        prefix = self.invalid_prefix if index in self.bad_proposers else b"cut"
        return prefix + b" h=%d r=%d by %d" % (height, round, index)

    def handle_events(self, index: int) -> None:
        core = self.cores[index]
        for event in drain(core):
            if isinstance(event, ValueRequested):
                value = self.value_for(index, event.height, event.round)
                core.provide_value(event.height, event.round, value, self.now)
            elif isinstance(event, ValidationRequested):
                valid = not event.value.startswith(self.invalid_prefix)
                core.report_validity(event.value_id, valid, self.now)
            elif isinstance(event, Decided):
                verify_bundle(event.bundle, NETWORK_ID, self.validators)
                assert event.height not in self.decisions[index]
                self.decisions[index][event.height] = event.value
                if event.height < self.max_height:
                    core.start_height(event.height + 1, self.now)
            elif isinstance(event, EquivocationDetected):
                self.evidence.append(event.evidence)
            elif isinstance(event, MessageRejected):
                self.rejections.append(event)
            elif isinstance(event, RoundAdvanced):
                self.rounds_advanced += 1

    def pump(self) -> None:
        # Handling events may produce more events and messages; loop until quiet (bounded).
        for _ in range(1000):
            busy = False
            for index, core in enumerate(self.cores):
                if index in self.crashed:
                    continue
                self.handle_events(index)
                for data in core.messages_to_send():
                    busy = True
                    self.broadcast(index, data)
            if not busy:
                return
        raise AssertionError("pump did not settle")

    def broadcast(self, src: int, data: bytes) -> None:
        copies = (
            self.tamper(src, data)
            if self.tamper is not None
            else [(dst, data) for dst in range(len(self.cores)) if dst != src]
        )
        for dst, payload in copies:
            delay = self.link(src, dst, self.now, payload)
            if delay is not None:
                self.wire.send(src, dst, payload, self.now + delay)

    def sync(self) -> None:
        # The shell's delta sync: a node behind a reachable peer fetches that peer's bundle.
        for index, core in enumerate(self.cores):
            if index in self.crashed or core.height is None or core.decided:
                continue
            for peer, other in enumerate(self.cores):
                bundle = other.bundle_for(core.height)
                reachable = self.link(peer, index, self.now, b"") is not None
                if peer not in self.crashed and bundle is not None and reachable:
                    core.receive_bundle(bundle.encode(), self.now)
                    break
        self.next_sync = self.now + self.sync_interval_s

    def step(self) -> bool:
        """Advance virtual time to the next delivery, timer or sync; False if nothing is due."""
        times = [self.next_sync]
        due = self.wire.next_due()
        if due is not None:
            times.append(due)
        for index, core in enumerate(self.cores):
            timer = core.get_timer()
            if timer is not None and index not in self.crashed:
                times.append(timer)
        self.now = max(self.now, min(times))
        while (due := self.wire.next_due()) is not None and due <= self.now:
            _, _, _, dst, data = self.wire.pop()
            if dst not in self.crashed:
                self.cores[dst].receive_message(data, self.now)
                self.pump()
        for index, core in enumerate(self.cores):
            timer = core.get_timer()
            if index not in self.crashed and timer is not None and timer <= self.now:
                core.handle_timer(self.now)
                self.pump()
        if self.next_sync <= self.now:
            self.sync()
            self.pump()
        return True

    def run(self, *, until_s: float, done: Callable[[], bool], steps_max: int = 50_000) -> bool:
        for _ in range(steps_max):
            if done():
                return True
            if self.now > until_s:
                return False
            self.step()
        return done()

    def live(self) -> list[int]:
        return [i for i in range(len(self.cores)) if i not in self.crashed]

    def all_decided(self, height: int, nodes: list[int] | None = None) -> bool:
        return all(height in self.decisions[i] for i in (nodes or self.live()))

    def assert_agreement(self) -> None:
        by_height: dict[int, set[bytes]] = {}
        for decided in self.decisions:
            for height, value in decided.items():
                by_height.setdefault(height, set()).add(value)
        for height, values in by_height.items():
            assert len(values) == 1, f"disagreement at height {height}: {values}"


# --- quorum arithmetic -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "quorum", "skip"),
    [(1, 1, 1), (2, 2, 1), (3, 3, 1), (4, 3, 2), (5, 4, 2), (6, 5, 2), (7, 5, 3), (100, 67, 34)],
)
def test_quorum_is_the_smallest_count_above_two_thirds(n: int, quorum: int, skip: int) -> None:
    assert quorum_size(n) == quorum
    assert 3 * quorum > 2 * n and 3 * (quorum - 1) <= 2 * n
    assert round_skip_size(n) == skip
    # f+1 of the paper when n = 3f+1; in general it must exceed the faulty count floor((n-1)/3).
    assert skip > (n - 1) // 3


# --- normal operation ------------------------------------------------------------------------


def test_four_validators_decide_the_same_value_each_height() -> None:
    heights = CONSENSUS_BUNDLES_KEPT_MAX + 2
    net = Network(4, max_height=heights)
    net.start()
    assert net.run(until_s=120, done=lambda: net.all_decided(heights))
    net.assert_agreement()
    # With a reliable network every height decides in round 0 with the height's proposer.
    for height in range(1, heights + 1):
        proposer = net.validators.index(net.cores[0].proposer(height, 0))
        assert net.decisions[0][height] == net.value_for(proposer, height, 0)
    assert net.rounds_advanced == 0
    assert net.rejections == [] and net.evidence == []
    # Only the most recent bundles are kept in the core (older ones come from storage).
    assert net.cores[0].bundle_for(1) is None and net.cores[0].bundle_for(2) is None
    for height in range(3, heights + 1):
        bundle = net.cores[0].bundle_for(height)
        assert bundle is not None and bundle.value == net.decisions[0][height]


def test_one_crashed_validator_of_four_does_not_stop_decisions() -> None:
    net = Network(4, max_height=6, crashed={2})
    net.start()
    assert net.run(until_s=200, done=lambda: net.all_decided(6))
    net.assert_agreement()
    # Heights whose round-0 proposer is the crashed node needed a later round.
    assert net.rounds_advanced > 0


def test_two_crashed_validators_of_four_decide_nothing() -> None:
    net = Network(4, crashed={1, 3})
    net.start()
    assert not net.run(until_s=60, done=lambda: net.all_decided(1))
    assert all(decided == {} for decided in net.decisions)


def test_observers_decide_from_messages() -> None:
    net = Network(4, observer_count=2, max_height=3)
    net.start()
    assert net.run(until_s=60, done=lambda: net.all_decided(3))
    net.assert_agreement()
    assert net.decisions[4] == net.decisions[0] == net.decisions[5]


def test_observer_that_sees_no_consensus_message_decides_from_bundles() -> None:
    def no_messages_to_observer(src: int, dst: int, now: float, data: bytes) -> float | None:
        return None if dst == 4 and data else 0.05

    net = Network(4, observer_count=1, max_height=3, link=no_messages_to_observer)
    net.start()
    assert net.run(until_s=60, done=lambda: net.all_decided(3))
    net.assert_agreement()
    assert net.decisions[4] == net.decisions[0]


def test_invalid_values_are_never_decided() -> None:
    # Validators 0 and 1 always propose values that every node reports invalid.
    net = Network(4, max_height=4, bad_proposers=frozenset({0, 1}))
    net.start()
    assert net.run(until_s=300, done=lambda: net.all_decided(4))
    net.assert_agreement()
    for decided in net.decisions:
        assert all(not value.startswith(b"bad") for value in decided.values())
    assert net.rounds_advanced > 0


def test_partition_without_a_quorum_side_decides_after_it_heals() -> None:
    heal_s = 30.0

    def split(src: int, dst: int, now: float, data: bytes) -> float | None:
        if now < heal_s and (src < 2) != (dst < 2):
            return None
        return 0.05

    net = Network(4, max_height=2, link=split)
    net.start()
    assert not net.run(until_s=heal_s - 1, done=lambda: any(net.decisions))
    assert all(decided == {} for decided in net.decisions)
    assert net.run(until_s=heal_s + 60, done=lambda: net.all_decided(2))
    net.assert_agreement()


def test_minority_partition_lags_then_catches_up() -> None:
    heal_s = 20.0

    def isolate_3(src: int, dst: int, now: float, data: bytes) -> float | None:
        return None if now < heal_s and 3 in (src, dst) else 0.05

    net = Network(4, max_height=4, link=isolate_3)
    net.start()
    assert net.run(until_s=heal_s, done=lambda: net.all_decided(3, [0, 1, 2]))
    assert net.decisions[3] == {}
    assert net.run(until_s=heal_s + 60, done=lambda: net.all_decided(4))
    net.assert_agreement()


# --- byzantine behaviour ---------------------------------------------------------------------


def equivocating_tamper(
    net: Network, byzantine: int, *, forged_only: bool = False
) -> Callable[[int, bytes], list]:
    """Validator `byzantine` sends its real message to half the nodes and a conflicting one,
    signed with its key, to the other half (followed by the real one unless `forged_only`)."""

    def tamper(src: int, data: bytes) -> list[tuple[int, bytes]]:
        others = [dst for dst in range(len(net.cores)) if dst != src]
        if src != byzantine:
            return [(dst, data) for dst in others]
        message = decode_message(data)
        keypair = net.keypairs[byzantine]
        if message.kind is MessageKind.PROPOSAL:
            forged = sign_proposal(
                keypair,
                NETWORK_ID,
                message.height,
                message.round,
                b"cut forged h=%d r=%d" % (message.height, message.round),
                -1,
            )
        else:
            other_id = None if message.value_id is not None else crypto.sha256(b"nothing")
            forged = sign_vote(
                keypair, NETWORK_ID, message.kind, message.height, message.round, other_id
            )
        # The second half receives the forgery first and the real message after it, so they
        # hold both signed messages and must report the equivocation. With `forged_only`
        # only relaying by honest nodes can bring them the real one.
        second = [forged.encode()] if forged_only else [forged.encode(), data]
        half = len(others) // 2
        return [(dst, data) for dst in others[:half]] + [
            (dst, copy) for dst in others[half:] for copy in second
        ]

    return tamper


def test_equivocating_validator_is_detected_and_safety_holds() -> None:
    net = Network(4, max_height=4)
    byzantine = 1
    net.tamper = equivocating_tamper(net, byzantine)
    net.start()
    honest = [0, 2, 3]
    assert net.run(until_s=300, done=lambda: net.all_decided(4, honest))
    net.assert_agreement()
    assert net.evidence, "the conflicting messages were never reported"
    for evidence in net.evidence:
        verify_evidence(evidence, NETWORK_ID, net.validators)
        assert evidence.validator == net.validators[byzantine]
        assert Evidence.decode(evidence.encode()) == evidence


def test_equivocation_evidence_rejects_forgeries() -> None:
    keypairs = make_keypairs(4)
    validators = [keypair.public_key for keypair in keypairs]
    first = sign_vote(keypairs[0], NETWORK_ID, MessageKind.PREVOTE, 1, 0, None)
    second = sign_vote(keypairs[0], NETWORK_ID, MessageKind.PREVOTE, 1, 0, bytes(32))
    verify_evidence(Evidence(first, second), NETWORK_ID, validators)
    with pytest.raises(EvidenceNotConflictingError):
        verify_evidence(Evidence(first, first), NETWORK_ID, validators)
    later_round = sign_vote(keypairs[0], NETWORK_ID, MessageKind.PREVOTE, 1, 1, bytes(32))
    with pytest.raises(EvidenceNotConflictingError):
        verify_evidence(Evidence(first, later_round), NETWORK_ID, validators)
    with pytest.raises(EvidenceSignatureError):
        verify_evidence(Evidence(first, second), crypto.sha256(b"other"), validators)
    other_signer = sign_vote(keypairs[1], NETWORK_ID, MessageKind.PREVOTE, 1, 0, bytes(32))
    with pytest.raises(EvidenceNotConflictingError):
        verify_evidence(Evidence(first, other_signer), NETWORK_ID, validators)
    with pytest.raises(RemoteProtocolError):
        Evidence.decode(b"\x81\xa5first\xc0")


# --- single-core rule scenarios --------------------------------------------------------------


@dataclass
class Bench:
    """One core under test (validator `me`) fed messages hand-signed by the others."""

    keypairs: list[crypto.KeyPair]
    me: int
    height: int
    core: Tendermint
    now: float = 0.0
    sent: list[ConsensusMessage] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @classmethod
    def create(cls, count: int = 4) -> Bench:
        keypairs = make_keypairs(count)
        validators = sorted(keypair.public_key for keypair in keypairs)
        keypairs.sort(key=lambda keypair: keypair.public_key)
        # Our node is validators[3]: at height 4 it proposes in round 3 only (rounds 0-2 not).
        core = Tendermint(
            network_id=NETWORK_ID, validators=validators, keypair=keypairs[3], config=CONFIG
        )
        bench = cls(keypairs=keypairs, me=3, height=4, core=core)
        core.start_height(4, 0.0)
        bench.collect()
        return bench

    def collect(self) -> None:
        # Re-broadcasts repeat messages; each distinct message is listed once.
        for data in self.core.messages_to_send():
            message = decode_message(data)
            if message not in self.sent:
                self.sent.append(message)
        self.events += drain(self.core)

    def proposer(self, round: int) -> int:
        return [k.public_key for k in self.keypairs].index(self.core.proposer(self.height, round))

    def propose(self, round: int, value: bytes, valid_round: int = -1) -> None:
        keypair = self.keypairs[self.proposer(round)]
        message = sign_proposal(keypair, NETWORK_ID, self.height, round, value, valid_round)
        self.core.receive_message(message.encode(), self.now)
        self.collect()

    def vote(self, kind: MessageKind, round: int, value: bytes | None, who: list[int]) -> None:
        value_id = None if value is None else crypto.sha256(value)
        for index in who:
            message = sign_vote(
                self.keypairs[index], NETWORK_ID, kind, self.height, round, value_id
            )
            self.core.receive_message(message.encode(), self.now)
        self.collect()

    def validate_all(self, valid: bool = True) -> None:
        for event in list(self.events):
            if isinstance(event, ValidationRequested):
                self.core.report_validity(event.value_id, valid, self.now)
        self.collect()

    def advance_to(self, time_s: float) -> None:
        # Fire every timer up to time_s, one deadline at a time (bounded).
        for _ in range(100):
            timer = self.core.get_timer()
            if timer is None or timer > time_s:
                break
            self.now = max(self.now, timer)
            self.core.handle_timer(self.now)
            self.collect()
        self.now = max(self.now, time_s)

    def next_round(self) -> None:
        """Fire timers until the core enters the next round, and not one timer further."""
        start = self.core.round
        for _ in range(100):
            if self.core.round != start:
                return
            timer = self.core.get_timer()
            assert timer is not None, "no timer left to move the round on"
            self.now = max(self.now, timer)
            self.core.handle_timer(self.now)
            self.collect()
        raise AssertionError("the round did not advance")

    def my_votes(self, kind: MessageKind, round: int) -> list[bytes | None]:
        return [m.value_id for m in self.sent if m.kind is kind and m.round == round]


def test_bench_setup_proposers() -> None:
    bench = Bench.create()
    assert [bench.proposer(r) for r in range(4)] == [0, 1, 2, 3]


def test_locked_value_is_not_prevoted_against_without_a_newer_pol() -> None:
    bench = Bench.create()
    v, w = b"cut v", b"cut w"
    prevote, precommit = MessageKind.PREVOTE, MessageKind.PRECOMMIT
    # Round 0: proposal v, we prevote v (line 22), see a POL and lock v (line 36).
    bench.propose(0, v)
    bench.validate_all()
    assert bench.my_votes(prevote, 0) == [crypto.sha256(v)]
    bench.vote(prevote, 0, v, [0, 1])
    assert bench.my_votes(precommit, 0) == [crypto.sha256(v)]
    # The others precommit nil: no decision; the precommit timeout starts round 1.
    bench.vote(precommit, 0, None, [0, 1])
    assert not bench.core.decided
    bench.next_round()
    assert bench.core.round == 1
    # Round 1: a fresh proposal w (validRound -1). Locked on v, we prevote nil (lines 23, 26),
    # without even waiting for w to be validated.
    bench.propose(1, w)
    assert bench.my_votes(prevote, 1) == [None]
    # A POL for w in the current round 1 is newer than our lock: it relocks us (line 36).
    bench.vote(prevote, 1, w, [0, 1, 2])
    bench.validate_all()
    assert bench.my_votes(precommit, 1) == [crypto.sha256(w)]
    bench.vote(precommit, 1, None, [0, 1])
    bench.next_round()
    assert bench.core.round == 2
    # Round 2: the old value v re-proposed with its round-0 POL: lockedRound 1 > vr 0 and
    # lockedValue w != v, so line 29 says nil.
    bench.propose(2, v, valid_round=0)
    assert bench.my_votes(prevote, 2) == [None]
    bench.vote(prevote, 2, None, [0, 1])
    bench.vote(precommit, 2, None, [0, 1])
    bench.next_round()
    # Round 3: we are the proposer and re-propose our validValue w with validRound 1 (line 16).
    assert bench.core.round == 3
    proposals = [m for m in bench.sent if m.kind is MessageKind.PROPOSAL]
    assert [(p.round, p.value, p.valid_round) for p in proposals] == [(3, w, 1)]
    assert bench.my_votes(prevote, 3) == [crypto.sha256(w)]
    bench.vote(prevote, 3, w, [0, 1])
    bench.vote(precommit, 3, w, [1, 2])
    decided = [e for e in bench.events if isinstance(e, Decided)]
    assert [(d.round, d.value) for d in decided] == [(3, w)]
    verify_bundle(decided[0].bundle, NETWORK_ID, [k.public_key for k in bench.keypairs])


def test_newer_pol_lets_a_locked_node_prevote_another_value() -> None:
    bench = Bench.create()
    v, w = b"cut v", b"cut w"
    bench.propose(0, v)
    bench.validate_all()
    bench.vote(MessageKind.PREVOTE, 0, v, [0, 1])  # locked on v in round 0
    bench.vote(MessageKind.PRECOMMIT, 0, None, [0, 1])
    bench.next_round()
    assert bench.core.round == 1
    # Round 1: the others form a POL for w, but we never see round 1's proposal, so we time
    # out, prevote and precommit nil and stay locked on v from round 0.
    bench.vote(MessageKind.PREVOTE, 1, w, [0, 1, 2])
    bench.advance_to(bench.now + 10)
    assert bench.my_votes(MessageKind.PREVOTE, 1) == [None]
    assert bench.my_votes(MessageKind.PRECOMMIT, 1) == [None]
    bench.vote(MessageKind.PRECOMMIT, 1, w, [0, 1])
    bench.next_round()
    assert bench.core.round == 2 and not bench.core.decided
    # Round 2 proposes w with validRound 1 > lockedRound 0: line 29 allows the prevote.
    bench.propose(2, w, valid_round=1)
    assert bench.my_votes(MessageKind.PREVOTE, 2) == []  # valid(w) is not known yet
    bench.validate_all()
    assert bench.my_votes(MessageKind.PREVOTE, 2) == [crypto.sha256(w)]


def test_proposal_with_unsupported_valid_round_waits_for_the_timeout() -> None:
    bench = Bench.create()
    bench.advance_to(bench.now + 10)  # round 0 times out with nothing
    bench.vote(MessageKind.PREVOTE, 0, None, [0, 1])
    bench.vote(MessageKind.PRECOMMIT, 0, None, [0, 1])
    bench.next_round()
    assert bench.core.round == 1
    bench.propose(1, b"cut x", valid_round=0)  # no POL for x in round 0
    bench.validate_all()
    assert bench.my_votes(MessageKind.PREVOTE, 1) == []
    bench.advance_to(bench.now + 10)
    assert bench.my_votes(MessageKind.PREVOTE, 1) == [None]  # OnTimeoutPropose, line 59


def test_pending_validity_blocks_the_prevote_until_answered_or_timed_out() -> None:
    bench = Bench.create()
    bench.propose(0, b"cut slow")
    assert any(isinstance(e, ValidationRequested) for e in bench.events)
    assert bench.my_votes(MessageKind.PREVOTE, 0) == []
    bench.validate_all(valid=False)
    assert bench.my_votes(MessageKind.PREVOTE, 0) == [None]  # line 26
    # An invalid value with a full quorum of precommits is still not decided (line 50).
    bench.vote(MessageKind.PREVOTE, 0, b"cut slow", [0, 1, 2])
    bench.vote(MessageKind.PRECOMMIT, 0, b"cut slow", [0, 1, 2])
    assert not bench.core.decided


def test_round_skip_needs_f_plus_one_senders() -> None:
    bench = Bench.create()
    bench.vote(MessageKind.PREVOTE, 5, None, [0])
    assert bench.core.round == 0
    bench.vote(MessageKind.PREVOTE, 5, None, [0])  # the same sender again does not count
    assert bench.core.round == 0
    bench.vote(MessageKind.PRECOMMIT, 5, None, [1])  # line 55: two distinct senders
    assert bench.core.round == 5
    assert RoundAdvanced(4, 5) in bench.events


def test_duplicate_votes_are_counted_once_and_conflicts_reported() -> None:
    bench = Bench.create()
    bench.propose(0, b"cut v")
    bench.validate_all()
    bench.vote(MessageKind.PREVOTE, 0, b"cut v", [0])
    bench.vote(MessageKind.PREVOTE, 0, b"cut v", [0])  # duplicate: ignored silently
    assert bench.my_votes(MessageKind.PRECOMMIT, 0) == []  # 2 of a quorum of 3
    bench.vote(MessageKind.PREVOTE, 0, b"cut other", [0])  # conflicting: evidence, not counted
    assert bench.my_votes(MessageKind.PRECOMMIT, 0) == []
    evidence = [e.evidence for e in bench.events if isinstance(e, EquivocationDetected)]
    assert len(evidence) == 1
    verify_evidence(evidence[0], NETWORK_ID, [k.public_key for k in bench.keypairs])
    bench.vote(MessageKind.PREVOTE, 0, None, [0])  # a third version: no second report
    assert len([e for e in bench.events if isinstance(e, EquivocationDetected)]) == 1
    assert not [e for e in bench.events if isinstance(e, MessageRejected)]


def test_conflicting_vote_counts_only_for_nil_or_a_proposed_value() -> None:
    bench = Bench.create()
    v = b"cut v"
    bench.propose(0, v)
    bench.validate_all()
    # Validator 1 first prevotes an id nobody proposed, then v: both are its messages, and
    # the second one counts for v (the paper counts distinct senders per value).
    bench.vote(MessageKind.PREVOTE, 0, b"cut unknown", [1])
    bench.vote(MessageKind.PREVOTE, 0, v, [1])
    assert bench.my_votes(MessageKind.PRECOMMIT, 0) == []  # us and 1: two of three
    bench.vote(MessageKind.PREVOTE, 0, v, [2])
    assert bench.my_votes(MessageKind.PRECOMMIT, 0) == [crypto.sha256(v)]
    evidence = [e.evidence for e in bench.events if isinstance(e, EquivocationDetected)]
    assert [e.validator for e in evidence] == [bench.keypairs[1].public_key]


def test_locked_node_relays_the_pol_behind_its_lock() -> None:
    bench = Bench.create()
    v = b"cut v"
    bench.propose(0, v)
    bench.validate_all()
    bench.vote(MessageKind.PREVOTE, 0, v, [0, 1])  # POL for v in round 0: we lock v
    assert bench.my_votes(MessageKind.PRECOMMIT, 0) == [crypto.sha256(v)]
    bench.core.messages_to_send()
    bench.advance_to(CONFIG.rebroadcast_interval_s)
    relayed = {(m.validator, m.kind) for m in bench.sent if m.round == 0}
    pol = {(bench.keypairs[i].public_key, MessageKind.PREVOTE) for i in (0, 1)}
    assert pol <= relayed


def test_messages_outside_the_window_are_ignored() -> None:
    bench = Bench.create()
    far = limits.CONSENSUS_FUTURE_ROUNDS_MAX + 1
    bench.vote(MessageKind.PREVOTE, far, None, [0, 1, 2])  # beyond the future-round window
    assert bench.core.round == 0
    bench.height = 3  # an old height
    bench.vote(MessageKind.PREVOTE, 0, None, [0, 1, 2])
    bench.height = 6  # two heights ahead
    bench.vote(MessageKind.PREVOTE, 0, None, [0, 1, 2])
    assert bench.core.round == 0 and bench.my_votes(MessageKind.PRECOMMIT, 0) == []
    assert not [e for e in bench.events if isinstance(e, MessageRejected)]


def test_next_height_messages_are_kept_until_start_height() -> None:
    bench = Bench.create()
    value = b"cut v"
    bench.height = 5
    bench.propose(0, b"cut next")  # height 5 arrives before we decided height 4
    bench.height = 4
    bench.propose(0, value)
    bench.validate_all()
    bench.vote(MessageKind.PREVOTE, 0, value, [0, 1])
    bench.vote(MessageKind.PRECOMMIT, 0, value, [0, 1])
    assert bench.core.decided
    bench.events.clear()
    bench.core.start_height(5, bench.now)
    bench.collect()
    requested = [e for e in bench.events if isinstance(e, ValidationRequested)]
    assert [(e.height, e.value) for e in requested] == [(5, b"cut next")]


def test_rejections_for_bad_peer_messages() -> None:
    bench = Bench.create()
    outsider = crypto.KeyPair.from_seed(crypto.sha256(b"outsider"))
    message = sign_vote(outsider, NETWORK_ID, MessageKind.PREVOTE, 4, 0, None)
    bench.core.receive_message(message.encode(), 0.0)
    wrong_net = sign_vote(bench.keypairs[0], bytes(32), MessageKind.PREVOTE, 4, 0, None)
    bench.core.receive_message(wrong_net.encode(), 0.0)
    not_proposer = sign_proposal(bench.keypairs[2], NETWORK_ID, 4, 0, b"cut", -1)
    bench.core.receive_message(not_proposer.encode(), 0.0)
    bench.core.receive_message(b"\x93\x01\x02\x03", 0.0)
    bench.collect()
    codes = [e.code for e in bench.events if isinstance(e, MessageRejected)]
    assert codes == [
        "unknown_validator",
        "bad_signature",
        "not_proposer",
        "malformed_consensus_message",
    ]


def test_event_queue_is_bounded_for_rejections() -> None:
    bench = Bench.create()
    drain(bench.core)
    for _ in range(CONSENSUS_EVENTS_QUEUED_MAX + 5):
        bench.core.receive_message(b"\xc1", 0.0)
    assert bench.core.rejections_dropped == 5
    assert len(drain(bench.core)) == CONSENSUS_EVENTS_QUEUED_MAX


def test_stale_value_answer_is_ignored_and_api_misuse_raises() -> None:
    bench = Bench.create()
    with pytest.raises(LocalProtocolError):
        bench.core.start_height(4, 0.0)  # not above the current height
    with pytest.raises(LocalProtocolError):
        bench.core.provide_value(4, 0, "text", 0.0)  # type: ignore[arg-type]
    bench.core.provide_value(4, 0, b"cut", 0.0)  # we are not the proposer of round 0
    bench.collect()
    assert bench.sent == []
    with pytest.raises(LocalProtocolError):
        Tendermint(network_id=NETWORK_ID, validators=[bytes(32)], keypair=None)


def test_proposer_waits_for_its_value_and_answers_late_are_ignored() -> None:
    keypairs = make_keypairs(4)
    validators = [k.public_key for k in keypairs]
    core = Tendermint(network_id=NETWORK_ID, validators=validators, keypair=keypairs[0])
    height = next(h for h in range(4) if core.proposer(h, 0) == keypairs[0].public_key)
    core.start_height(height, 0.0)
    assert ValueRequested(height, 0) in drain(core)
    core.handle_timer(100.0)  # the propose timeout passes: prevote nil
    assert [decode_message(m).value_id for m in core.messages_to_send()] == [None]
    core.provide_value(height, 0, b"late", 100.0)
    assert core.messages_to_send() == []


def test_rebroadcast_repeats_our_messages() -> None:
    bench = Bench.create()
    bench.propose(0, b"cut v")
    bench.validate_all()
    assert [m.value_id for m in bench.sent] == [crypto.sha256(b"cut v")]
    assert bench.core.get_timer() == CONFIG.rebroadcast_interval_s
    bench.core.handle_timer(CONFIG.rebroadcast_interval_s)
    again = [decode_message(data) for data in bench.core.messages_to_send()]
    assert again == bench.sent


# --- bundles ---------------------------------------------------------------------------------


def decided_bundle() -> tuple[CheckpointBundle, list[bytes], list[crypto.KeyPair]]:
    net = Network(4, max_height=1)
    net.start()
    assert net.run(until_s=30, done=lambda: net.all_decided(1))
    bundle = net.cores[0].bundle_for(1)
    assert bundle is not None
    return bundle, net.validators, net.keypairs


def test_bundle_round_trip_and_verification() -> None:
    bundle, validators, _ = decided_bundle()
    assert CheckpointBundle.decode(bundle.encode()) == bundle
    verify_bundle(bundle, NETWORK_ID, validators)
    assert len(bundle.precommits) >= quorum_size(4)


def test_bundle_verification_rejects_forgeries() -> None:
    bundle, validators, keypairs = decided_bundle()
    q = quorum_size(len(validators))
    pairs = list(bundle.precommits)[:q]

    def with_pairs(new_pairs: list[tuple[bytes, bytes]]) -> CheckpointBundle:
        return CheckpointBundle(bundle.height, bundle.round, bundle.value, tuple(new_pairs))

    key, signature = pairs[0]
    forged = bytes([signature[0] ^ 1]) + signature[1:]
    with pytest.raises(BundleSignatureError):
        verify_bundle(with_pairs([(key, forged), *pairs[1:]]), NETWORK_ID, validators)
    with pytest.raises(BundleQuorumError):
        verify_bundle(with_pairs(pairs[: q - 1]), NETWORK_ID, validators)
    with pytest.raises(BundleDuplicateValidatorError):
        verify_bundle(with_pairs([*pairs[: q - 1], pairs[0]]), NETWORK_ID, validators)
    with pytest.raises(BundleSignatureError):
        verify_bundle(with_pairs(pairs), crypto.sha256(b"another network"), validators)
    wrong_value = CheckpointBundle(bundle.height, bundle.round, b"other cut", tuple(pairs))
    with pytest.raises(BundleSignatureError):
        verify_bundle(wrong_value, NETWORK_ID, validators)
    wrong_height = CheckpointBundle(bundle.height + 1, bundle.round, bundle.value, tuple(pairs))
    with pytest.raises(BundleSignatureError):
        verify_bundle(wrong_height, NETWORK_ID, validators)
    outsider = crypto.KeyPair.from_seed(crypto.sha256(b"outsider"))
    with pytest.raises(BundleUnknownValidatorError):
        verify_bundle(
            with_pairs([*pairs[1:], (outsider.public_key, signature)]), NETWORK_ID, validators
        )
    # A prevote signature is not a precommit signature.
    prevote = sign_vote(
        keypairs[validators.index(key)],
        NETWORK_ID,
        MessageKind.PREVOTE,
        bundle.height,
        bundle.round,
        bundle.value_id,
    )
    with pytest.raises(BundleSignatureError):
        verify_bundle(with_pairs([(key, prevote.signature), *pairs[1:]]), NETWORK_ID, validators)


def test_core_rejects_bad_bundles_and_ignores_other_heights() -> None:
    bundle, validators, _ = decided_bundle()
    observer = Tendermint(network_id=NETWORK_ID, validators=validators, keypair=None)
    observer.start_height(2, 0.0)
    observer.receive_bundle(bundle.encode(), 0.0)  # height 1 is below us: ignored
    observer.receive_bundle(b"junk", 0.0)
    events = drain(observer)
    assert [type(e) for e in events] == [MessageRejected]
    assert events[0].code == MalformedBundleError.code  # type: ignore[union-attr]
    late = Tendermint(network_id=NETWORK_ID, validators=validators, keypair=None)
    late.start_height(1, 0.0)
    late.receive_bundle(bundle.encode(), 0.0)
    decided = [e for e in drain(late) if isinstance(e, Decided)]
    assert [(d.height, d.value) for d in decided] == [(1, bundle.value)]
    assert late.bundle_for(1) == bundle


@given(st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_bundle_decoder_only_raises_bundle_errors(data: bytes) -> None:
    with contextlib.suppress(MalformedBundleError):
        CheckpointBundle.decode(data)


# --- fuzzing ---------------------------------------------------------------------------------

FUZZ_KEYPAIRS = make_keypairs(4)
FUZZ_VALIDATORS = sorted(k.public_key for k in FUZZ_KEYPAIRS)


def fuzz_core() -> Tendermint:
    core = Tendermint(network_id=NETWORK_ID, validators=FUZZ_VALIDATORS, keypair=FUZZ_KEYPAIRS[0])
    core.start_height(1, 0.0)
    drain(core)
    core.messages_to_send()
    return core


@given(st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_only_produce_rejections(data: bytes) -> None:
    core = fuzz_core()
    core.receive_message(data, 0.0)
    assert all(isinstance(event, MessageRejected) for event in drain(core))


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.sampled_from(["proposal", "prevote", "precommit", "x"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    *("type", "height", "round", "value_id", "valid_round"),
                    *("body", "signature", "validator", "value"),
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@given(msgpack_values)
@settings(max_examples=300, deadline=None)
def test_structured_junk_only_produces_rejections(value: object) -> None:
    try:
        data = encoding.encode(value)
    except LocalProtocolError:
        assume(False)  # nested deeper than the encoder allows
    core = fuzz_core()
    core.receive_message(data, 0.0)
    assert all(isinstance(event, MessageRejected) for event in drain(core))


def test_every_prefix_of_a_valid_message_is_rejected() -> None:
    message = sign_proposal(FUZZ_KEYPAIRS[0], NETWORK_ID, 1, 0, b"cut", -1).encode()
    assert decode_message(message).value == b"cut"
    for end in range(len(message)):
        with pytest.raises(RemoteProtocolError):
            decode_message(message[:end])


# --- randomized runs -------------------------------------------------------------------------

RANDOM_SEEDS = 200
STABLE_AFTER_S = 15.0


def random_network(seed: int) -> Network:
    rng = random.Random(seed)
    n = rng.randint(4, 7)
    loss = rng.uniform(0.0, 0.4)
    delay_max = rng.uniform(0.01, 1.5)
    duplicate = rng.uniform(0.0, 0.2)

    def link(src: int, dst: int, now: float, data: bytes) -> float | None:
        if now >= STABLE_AFTER_S:
            return rng.uniform(0.0, 0.1)
        if rng.random() < loss:
            return None
        return rng.uniform(0.0, delay_max)

    net = Network(n, max_height=3, link=link)
    # Up to f faulty validators: crashed ones, and maybe one that equivocates on every message.
    faulty = rng.sample(range(n), rng.randint(0, (n - 1) // 3))
    if faulty and rng.random() < 0.5:
        net.equivocator = faulty.pop()
        forged_only = rng.random() < 0.5
        net.tamper = equivocating_tamper(net, net.equivocator, forged_only=forged_only)
    net.crashed = set(faulty)
    original_broadcast = net.broadcast

    def broadcast(src: int, data: bytes) -> None:
        original_broadcast(src, data)
        if net.now < STABLE_AFTER_S and rng.random() < duplicate:
            original_broadcast(src, data)

    net.broadcast = broadcast  # type: ignore[method-assign]
    return net


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(RANDOM_SEEDS))
def test_random_delays_and_losses_keep_agreement_and_decide(seed: int) -> None:
    net = random_network(seed)
    net.start()
    honest = [i for i in net.live() if i != net.equivocator]
    decided = net.run(until_s=STABLE_AFTER_S + 120, done=lambda: net.all_decided(3, honest))
    net.assert_agreement()
    for evidence in net.evidence:
        verify_evidence(evidence, NETWORK_ID, net.validators)
        assert evidence.validator == net.validators[net.equivocator]
    assert decided, (
        f"seed {seed}: no decision after the network stabilised; replay with "
        f"pytest tests/protocol/test_consensus.py -k 'test_random_delays and [{seed}]'"
    )
