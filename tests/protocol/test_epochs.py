"""Epochs in consensus: every message, bundle, piece of evidence and signing state names its
epoch under the signatures; a core runs in one epoch and refuses the others with a typed code;
the double-sign guard is keyed by (epoch, height, round), so a rollback never leaves a validator
locked on a value it signed in the epoch the rollback ended (issue 12's stall at height 105).
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmd.protocol import crypto, encoding, limits
from swarmd.protocol.consensus import (
    SIGNING_STATE_ROUNDS_KEPT,
    CheckpointBundle,
    ConsensusMessage,
    Decided,
    Evidence,
    EvidenceNotConflictingError,
    MalformedBundleError,
    MessageKind,
    MessageRejected,
    SigningState,
    SigningStateEpochError,
    SigningStateError,
    SigningStateWithoutEpochError,
    Tendermint,
    ValidationRequested,
    WrongEpochError,
    decode_message,
    decode_signing_state,
    record_signed,
    sign_allowed,
    sign_proposal,
    sign_vote,
    verify_bundle,
    verify_evidence,
)
from swarmd.protocol.errors import BadSignatureError, LocalProtocolError, RemoteProtocolError

from .test_consensus import CONFIG, NETWORK_ID, drain, make_keypairs

PREVOTE, PRECOMMIT, PROPOSAL = MessageKind.PREVOTE, MessageKind.PRECOMMIT, MessageKind.PROPOSAL
KEYPAIRS = sorted(make_keypairs(4), key=lambda keypair: keypair.public_key)
VALIDATORS = [keypair.public_key for keypair in KEYPAIRS]
ME = 3


def make_core(epoch: int = 0) -> Tendermint:
    return Tendermint(
        network_id=NETWORK_ID,
        validators=VALIDATORS,
        keypair=KEYPAIRS[ME],
        config=CONFIG,
        epoch=epoch,
    )


def proposer_index(core: Tendermint, height: int, round: int) -> int:
    return VALIDATORS.index(core.proposer(height, round))


def feed_proposal(core: Tendermint, epoch: int, height: int, value: bytes) -> None:
    keypair = KEYPAIRS[proposer_index(core, height, 0)]
    proposal = sign_proposal(keypair, NETWORK_ID, height, 0, value, -1, epoch=epoch)
    core.receive_message(proposal.encode(), 0.0)
    for event in drain(core):
        if isinstance(event, ValidationRequested):
            core.report_validity(event.value_id, True, 0.0)


def feed_votes(
    core: Tendermint, kind: MessageKind, epoch: int, height: int, value: bytes, who: list[int]
) -> None:
    for index in who:
        vote = sign_vote(
            KEYPAIRS[index], NETWORK_ID, kind, height, 0, crypto.sha256(value), epoch=epoch
        )
        core.receive_message(vote.encode(), 0.0)


def sent(core: Tendermint) -> list[ConsensusMessage]:
    return [decode_message(data) for data in core.messages_to_send()]


# --- wire: the epoch is in every body and under every signature ------------------------------


def test_message_round_trip_carries_the_epoch_under_the_signature() -> None:
    vote = sign_vote(KEYPAIRS[0], NETWORK_ID, PREVOTE, 7, 2, crypto.sha256(b"v"), epoch=5)
    decoded = decode_message(vote.encode())
    assert decoded == vote and decoded.epoch == 5 and vote.body()["epoch"] == 5
    proposal = sign_proposal(KEYPAIRS[1], NETWORK_ID, 7, 2, b"v", 1, epoch=5)
    assert decode_message(proposal.encode()) == proposal
    # The same signature on the body of another epoch does not verify.
    envelope = encoding.decode(vote.encode())
    envelope["body"]["epoch"] = 6
    moved = decode_message(encoding.encode(envelope))
    with pytest.raises(BadSignatureError):
        crypto.verify(
            moved.validator,
            b"swarmd/consensus/v1" + NETWORK_ID + encoding.encode(moved.body()),
            moved.signature,
        )


@pytest.mark.parametrize("epoch", [-1, limits.EPOCH_MAX + 1, True, "0", None])
def test_a_body_with_a_bad_epoch_is_malformed(epoch: object) -> None:
    vote = sign_vote(KEYPAIRS[0], NETWORK_ID, PREVOTE, 7, 0, None)
    envelope = encoding.decode(vote.encode())
    envelope["body"]["epoch"] = epoch
    with pytest.raises(RemoteProtocolError) as caught:
        decode_message(encoding.encode(envelope))
    assert caught.value.code == "malformed_consensus_message"


def test_a_body_without_an_epoch_is_malformed() -> None:
    envelope = encoding.decode(sign_vote(KEYPAIRS[0], NETWORK_ID, PREVOTE, 7, 0, None).encode())
    del envelope["body"]["epoch"]
    with pytest.raises(RemoteProtocolError) as caught:
        decode_message(encoding.encode(envelope))
    assert caught.value.code == "malformed_consensus_message"


def signed_bundle(epoch: int, height: int = 5, value: bytes = b"cut") -> CheckpointBundle:
    precommits = sorted(
        (
            keypair.public_key,
            sign_vote(
                keypair, NETWORK_ID, PRECOMMIT, height, 0, crypto.sha256(value), epoch=epoch
            ).signature,
        )
        for keypair in KEYPAIRS[:3]
    )
    return CheckpointBundle(height, 0, value, tuple(precommits), epoch=epoch)


def test_bundle_round_trip_and_the_epoch_is_signed() -> None:
    bundle = signed_bundle(epoch=2)
    assert CheckpointBundle.decode(bundle.encode()) == bundle
    verify_bundle(bundle, NETWORK_ID, VALIDATORS)
    relabelled = CheckpointBundle(bundle.height, bundle.round, bundle.value, bundle.precommits, 3)
    with pytest.raises(RemoteProtocolError) as caught:
        verify_bundle(relabelled, NETWORK_ID, VALIDATORS)
    assert caught.value.code == "bundle_bad_signature"


def test_a_bundle_without_an_epoch_or_with_a_bad_one_is_malformed() -> None:
    obj = encoding.decode(signed_bundle(epoch=0).encode())
    del obj["epoch"]
    with pytest.raises(MalformedBundleError):
        CheckpointBundle.decode(encoding.encode(obj))
    obj["epoch"] = limits.EPOCH_MAX + 1
    with pytest.raises(MalformedBundleError):
        CheckpointBundle.decode(encoding.encode(obj))


def test_evidence_needs_one_epoch() -> None:
    first = sign_vote(KEYPAIRS[0], NETWORK_ID, PREVOTE, 7, 0, crypto.sha256(b"a"), epoch=0)
    second = sign_vote(KEYPAIRS[0], NETWORK_ID, PREVOTE, 7, 0, crypto.sha256(b"b"), epoch=1)
    with pytest.raises(EvidenceNotConflictingError):
        verify_evidence(Evidence(first, second), NETWORK_ID, VALIDATORS)
    same_epoch = sign_vote(KEYPAIRS[0], NETWORK_ID, PREVOTE, 7, 0, crypto.sha256(b"b"), epoch=0)
    evidence = Evidence(first, same_epoch)
    verify_evidence(Evidence.decode(evidence.encode()), NETWORK_ID, VALIDATORS)


# --- the core runs in one epoch ---------------------------------------------------------------


def test_messages_and_bundles_of_another_epoch_are_rejected_with_a_code() -> None:
    core = make_core(epoch=1)
    core.start_height(5, 0.0)
    drain(core)
    for epoch in (0, 2):
        vote = sign_vote(KEYPAIRS[0], NETWORK_ID, PREVOTE, 5, 0, None, epoch=epoch)
        core.receive_message(vote.encode(), 0.0)
        core.receive_bundle(signed_bundle(epoch=epoch).encode(), 0.0)
    rejected = [event for event in drain(core) if isinstance(event, MessageRejected)]
    assert [event.code for event in rejected] == [WrongEpochError.code] * 4
    assert not core.decided
    core.receive_bundle(signed_bundle(epoch=1).encode(), 0.0)
    decided = [event for event in drain(core) if isinstance(event, Decided)]
    assert core.decided and decided[0].bundle.epoch == 1


def test_the_core_signs_and_decides_in_its_epoch() -> None:
    core = make_core(epoch=3)
    core.start_height(5, 0.0)
    feed_proposal(core, 3, 5, b"v")
    feed_votes(core, PREVOTE, 3, 5, b"v", [0, 1])
    feed_votes(core, PRECOMMIT, 3, 5, b"v", [0, 1])
    assert {message.epoch for message in sent(core)} == {3}
    decided = [event for event in drain(core) if isinstance(event, Decided)]
    assert decided[0].bundle.epoch == 3
    verify_bundle(CheckpointBundle.decode(decided[0].bundle.encode()), NETWORK_ID, VALIDATORS)
    assert decode_signing_state(core.signing_state(), NETWORK_ID, VALIDATORS[ME]).epoch == 3


def test_bad_epochs_are_local_errors() -> None:
    with pytest.raises(LocalProtocolError):
        make_core(epoch=-1)
    with pytest.raises(LocalProtocolError):
        make_core(epoch=limits.EPOCH_MAX + 1)
    core = make_core(epoch=2)
    for epoch in (1, 2):
        with pytest.raises(LocalProtocolError):
            core.enter_epoch(epoch)


def locked_in_epoch_zero(height: int = 105) -> tuple[Tendermint, bytes]:
    """A validator that precommitted and locked on `a` at (epoch 0, height, round 0)."""
    core = make_core(epoch=0)
    core.start_height(height, 0.0)
    feed_proposal(core, 0, height, b"a")
    feed_votes(core, PREVOTE, 0, height, b"a", [0, 1])
    precommits = [m for m in sent(core) if m.kind is PRECOMMIT]
    assert [m.value_id for m in precommits] == [crypto.sha256(b"a")]
    return core, core.signing_state()


def prevotes_for_b_at_105(core: Tendermint, epoch: int) -> list[bytes | None]:
    if core.height != 105:
        core.start_height(105, 0.0)
    feed_proposal(core, epoch, 105, b"b")
    return [m.value_id for m in sent(core) if m.kind is PREVOTE and m.epoch == epoch]


def test_issue_12_the_new_epoch_is_not_locked_on_the_reverted_value() -> None:
    # Before the rollback: locked on a at (0, 105, 0); a restart in epoch 0 keeps the lock
    # and prevotes nothing new in round 0 (that was the stall after an epoch-less rollback).
    _, state = locked_in_epoch_zero()
    restarted = make_core(epoch=0)
    restarted.restore_signing_state(state, 0.0)
    sent(restarted)
    assert prevotes_for_b_at_105(restarted, 0) == []
    # After the rollback to 100 the node runs epoch 1: heights 101.. start afresh, and the
    # old state at 105 binds nothing there.
    online = locked_in_epoch_zero()[0]
    online.enter_epoch(1)
    assert (online.epoch, online.height, online.messages_to_send()) == (1, None, [])
    online.start_height(101, 0.0)
    for height in range(102, 105):
        online.start_height(height, 0.0)
    assert prevotes_for_b_at_105(online, 1) == [crypto.sha256(b"b")]
    # The same after a restart: the durable epoch-0 state at 105 starts 105 afresh.
    after_restart = make_core(epoch=1)
    after_restart.restore_signing_state(state, 0.0)
    assert (after_restart.epoch, after_restart.height, after_restart.round) == (1, 105, 0)
    assert prevotes_for_b_at_105(after_restart, 1) == [crypto.sha256(b"b")]
    assert after_restart.conflicting_signatures_refused == 0


def test_a_signing_state_of_a_later_epoch_is_refused() -> None:
    core = make_core(epoch=2)
    core.start_height(5, 0.0)
    state = core.signing_state()
    with pytest.raises(SigningStateEpochError) as caught:
        make_core(epoch=1).restore_signing_state(state, 0.0)
    assert caught.value.code == "signing_state_future_epoch"


def test_a_signing_state_of_the_same_epoch_resumes() -> None:
    core = make_core(epoch=2)
    core.start_height(5, 0.0)
    feed_proposal(core, 2, 5, b"v")
    sent(core)
    state = core.signing_state()
    restarted = make_core(epoch=2)
    restarted.restore_signing_state(state, 0.0)
    assert restarted.signing_state() == state


# --- signing state bytes ----------------------------------------------------------------------


def test_signing_state_without_an_epoch_is_refused_with_its_own_code() -> None:
    """Chosen over reading it as epoch 0: its messages have epoch-less bodies that no current
    peer accepts, so the state cannot be resumed faithfully (docs/PROTOCOL.md)."""
    obj = encoding.decode(locked_in_epoch_zero()[1])
    del obj["epoch"]
    with pytest.raises(SigningStateWithoutEpochError) as caught:
        decode_signing_state(encoding.encode(obj), NETWORK_ID, VALIDATORS[ME])
    assert caught.value.code == "signing_state_without_epoch"
    assert isinstance(caught.value, SigningStateError)


def test_signing_state_messages_must_be_of_its_epoch() -> None:
    obj = encoding.decode(locked_in_epoch_zero()[1])
    obj["epoch"] = 1
    with pytest.raises(SigningStateError):
        decode_signing_state(encoding.encode(obj), NETWORK_ID, VALIDATORS[ME])
    obj["messages"], obj["epoch"] = [], limits.EPOCH_MAX + 1
    with pytest.raises(SigningStateError):
        decode_signing_state(encoding.encode(obj), NETWORK_ID, VALIDATORS[ME])


# --- the guard, as a property ----------------------------------------------------------------

requests = st.lists(
    st.tuples(
        st.integers(0, 3),  # epoch
        st.integers(1, 4),  # height
        st.integers(0, 5),  # round
        st.sampled_from([PROPOSAL, PREVOTE, PRECOMMIT]),
        st.sampled_from([b"a", b"b", None]),
    ),
    max_size=40,
)


def request_message(
    epoch: int, height: int, round: int, kind: MessageKind, value: bytes | None
) -> ConsensusMessage:
    if kind is PROPOSAL:
        return sign_proposal(KEYPAIRS[0], NETWORK_ID, height, round, value or b"a", -1, epoch=epoch)
    value_id = None if value is None else crypto.sha256(value)
    return sign_vote(KEYPAIRS[0], NETWORK_ID, kind, height, round, value_id, epoch=epoch)


@settings(max_examples=200, deadline=None)
@given(requests)
def test_guard_never_signs_two_values_per_slot_and_never_blocks_a_later_epoch(
    sequence: list[tuple[int, int, int, MessageKind, bytes | None]],
) -> None:
    state: SigningState | None = None
    signed: dict[tuple[int, int, int, MessageKind], dict[str, object]] = {}
    for epoch, height, round, kind, value in sequence:
        message = request_message(epoch, height, round, kind, value)
        allowed = sign_allowed(state, message)
        if state is not None and epoch > state.epoch:
            assert allowed, "epoch e+1 refused because of epoch e"
        if not allowed:
            with pytest.raises(LocalProtocolError):
                record_signed(state, message)
            continue
        state = record_signed(state, message)
        # What the guard remembers survives the durable bytes.
        assert decode_signing_state(state.encode(), NETWORK_ID, VALIDATORS[0]) == state
        slot = (epoch, height, round, kind)
        assert signed.setdefault(slot, message.body()) == message.body(), f"two values in {slot}"
        assert len(state.messages) <= 3 * SIGNING_STATE_ROUNDS_KEPT


def test_guard_examples() -> None:
    a = request_message(0, 105, 0, PREVOTE, b"a")
    state = record_signed(None, a)
    assert sign_allowed(state, a)  # the same body again (a re-broadcast)
    assert not sign_allowed(state, request_message(0, 105, 0, PREVOTE, b"b"))
    assert not sign_allowed(state, request_message(0, 104, 3, PREVOTE, b"b"))
    assert sign_allowed(state, request_message(1, 101, 0, PREVOTE, b"b"))
    later = record_signed(state, request_message(0, 105, 2, PREVOTE, b"b"))
    assert not sign_allowed(later, request_message(0, 105, 1, PREVOTE, b"b"))


@given(st.binary(max_size=400))
def test_fuzz_signing_state_decoder_raises_only_its_typed_error(data: bytes) -> None:
    with contextlib.suppress(SigningStateError):
        decode_signing_state(data, NETWORK_ID, VALIDATORS[0])
