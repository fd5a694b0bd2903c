"""Rollback certificates: votes, the assembler, offline verification with every refusal, the
decoder under fuzzing, and the epoch history's rules for certificates and bundles."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmd.protocol import crypto, encoding, limits
from swarmd.protocol.consensus import CheckpointBundle, MessageKind, sign_vote
from swarmd.protocol.errors import LocalProtocolError, RemoteProtocolError
from swarmd.protocol.rollback import (
    BundleBeforeEpochError,
    BundleFutureEpochError,
    BundleRevertedError,
    EpochHistory,
    EpochHistoryFullError,
    MalformedRollbackError,
    RollbackAssembler,
    RollbackBody,
    RollbackCertificate,
    RollbackCheckpointMismatchError,
    RollbackDuplicateSignerError,
    RollbackEpochError,
    RollbackError,
    RollbackQuorumError,
    RollbackSignatureError,
    RollbackUnknownSignerError,
    RollbackVote,
    sign_rollback_vote,
    verify_certificate,
    verify_vote,
)

from .test_consensus import NETWORK_ID, make_keypairs

KEYPAIRS = sorted(make_keypairs(4), key=lambda keypair: keypair.public_key)
VALIDATORS = [keypair.public_key for keypair in KEYPAIRS]
OUTSIDER = crypto.KeyPair.from_seed(crypto.sha256(b"not a member"))
CHECKPOINT_100 = crypto.sha256(b"checkpoint 100")


def body(from_epoch: int = 0, height: int = 100, reason: str = "bad op at 101") -> RollbackBody:
    checkpoint_id = b"" if height == 0 else crypto.sha256(b"checkpoint %d" % height)
    return RollbackBody(from_epoch, height, checkpoint_id, reason)


def certificate(
    rollback: RollbackBody | None = None, signers: list[crypto.KeyPair] | None = None
) -> RollbackCertificate:
    rollback = rollback or body()
    assembler = RollbackAssembler(NETWORK_ID, VALIDATORS)
    result = None
    for keypair in signers if signers is not None else KEYPAIRS[:3]:
        result = assembler.add(sign_rollback_vote(keypair, NETWORK_ID, rollback))
    assert result is not None
    return result


# --- votes ------------------------------------------------------------------------------------


def test_vote_round_trip_and_verify() -> None:
    vote = sign_rollback_vote(KEYPAIRS[0], NETWORK_ID, body())
    assert RollbackVote.decode(vote.encode()) == vote
    verify_vote(vote, NETWORK_ID, VALIDATORS)
    assert vote.body.new_epoch == 1
    with pytest.raises(RollbackSignatureError):
        verify_vote(vote, crypto.sha256(b"another network"), VALIDATORS)
    with pytest.raises(RollbackUnknownSignerError):
        verify_vote(sign_rollback_vote(OUTSIDER, NETWORK_ID, body()), NETWORK_ID, VALIDATORS)


def test_the_signature_covers_every_field() -> None:
    vote = sign_rollback_vote(KEYPAIRS[0], NETWORK_ID, body())
    for changed in (
        body(from_epoch=1),
        body(height=99),
        RollbackBody(0, 100, crypto.sha256(b"other"), "bad op at 101"),
        body(reason="another reason"),
    ):
        with pytest.raises(RollbackSignatureError):
            verify_vote(RollbackVote(changed, vote.signer, vote.signature), NETWORK_ID, VALIDATORS)


def test_a_consensus_signature_is_not_a_rollback_signature() -> None:
    consensus_vote = sign_vote(KEYPAIRS[0], NETWORK_ID, MessageKind.PREVOTE, 100, 0, None)
    forged = RollbackVote(body(), KEYPAIRS[0].public_key, consensus_vote.signature)
    with pytest.raises(RollbackSignatureError):
        verify_vote(forged, NETWORK_ID, VALIDATORS)


@pytest.mark.parametrize(
    "bad",
    [
        RollbackBody(0, 100, b"short", "r"),
        RollbackBody(0, 0, crypto.sha256(b"x"), "r"),  # height 0 (genesis) has an empty id
        RollbackBody(-1, 100, CHECKPOINT_100, "r"),
        RollbackBody(limits.EPOCH_MAX, 100, CHECKPOINT_100, "r"),  # no epoch after it
        RollbackBody(0, 100, CHECKPOINT_100, "x" * (limits.ROLLBACK_REASON_SIZE_BYTES_MAX + 1)),
        RollbackBody(
            0, 100, CHECKPOINT_100, "é" * (limits.ROLLBACK_REASON_SIZE_BYTES_MAX // 2 + 1)
        ),
    ],
)
def test_out_of_bounds_bodies_are_not_signed(bad: RollbackBody) -> None:
    with pytest.raises(LocalProtocolError):
        sign_rollback_vote(KEYPAIRS[0], NETWORK_ID, bad)


def test_the_reason_limit_is_in_bytes_and_inclusive() -> None:
    reason = "x" * limits.ROLLBACK_REASON_SIZE_BYTES_MAX
    vote = sign_rollback_vote(KEYPAIRS[0], NETWORK_ID, RollbackBody(0, 100, CHECKPOINT_100, reason))
    assert RollbackVote.decode(vote.encode()).body.reason == reason
    genesis = sign_rollback_vote(KEYPAIRS[0], NETWORK_ID, body(height=0))
    assert RollbackVote.decode(genesis.encode()) == genesis


def mutate_body(data: bytes, key: str, value: object, *, container: str = "body") -> bytes:
    obj = encoding.decode(data)
    obj[container][key] = value
    return encoding.encode(obj)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("new_epoch", 2),
        ("type", "consensus"),
        ("height", -1),
        ("height", True),
        ("reason", b"bytes"),
        ("checkpoint_id", "text"),
        ("from_epoch", None),
    ],
)
def test_malformed_vote_bodies_are_refused(key: str, value: object) -> None:
    data = sign_rollback_vote(KEYPAIRS[0], NETWORK_ID, body()).encode()
    with pytest.raises(MalformedRollbackError) as caught:
        RollbackVote.decode(mutate_body(data, key, value))
    assert caught.value.code == "rollback_malformed"


def test_vote_decoder_refusals() -> None:
    vote = sign_rollback_vote(KEYPAIRS[0], NETWORK_ID, body())
    obj = encoding.decode(vote.encode())
    for key, value in (("signer", b"x" * 31), ("signature", b"x" * 63), ("extra", 1)):
        changed = dict(obj, **{key: value})
        with pytest.raises(MalformedRollbackError):
            RollbackVote.decode(encoding.encode(changed))
    with pytest.raises(MalformedRollbackError):
        RollbackVote.decode(b"\x00" * (limits.ROLLBACK_VOTE_SIZE_BYTES_MAX + 1))
    with pytest.raises(MalformedRollbackError):  # non-canonical: a long int form
        RollbackVote.decode(vote.encode().replace(b"\xa6height\x64", b"\xa6height\xcc\x64"))


# --- certificates -----------------------------------------------------------------------------


def test_certificate_round_trip_and_verify() -> None:
    cert = certificate()
    assert [key for key, _ in cert.signatures] == VALIDATORS[:3]
    assert RollbackCertificate.decode(cert.encode()) == cert
    verify_certificate(cert, NETWORK_ID, VALIDATORS)
    assert (cert.from_epoch, cert.new_epoch, cert.height) == (0, 1, 100)


def test_under_quorum_unknown_and_forged_certificates_are_refused() -> None:
    cert = certificate()
    two = RollbackCertificate(cert.body, cert.signatures[:2])
    with pytest.raises(RollbackQuorumError) as caught:
        verify_certificate(two, NETWORK_ID, VALIDATORS)
    assert caught.value.code == "rollback_no_quorum"
    outsider = sign_rollback_vote(OUTSIDER, NETWORK_ID, cert.body)
    with_outsider = RollbackCertificate(
        cert.body, tuple(sorted((*cert.signatures[:2], (outsider.signer, outsider.signature))))
    )
    with pytest.raises(RollbackUnknownSignerError):
        verify_certificate(with_outsider, NETWORK_ID, VALIDATORS)
    forged = RollbackCertificate(
        cert.body, (*cert.signatures[:2], (cert.signatures[2][0], cert.signatures[0][1]))
    )
    with pytest.raises(RollbackSignatureError):
        verify_certificate(forged, NETWORK_ID, VALIDATORS)
    with pytest.raises(RollbackSignatureError):
        verify_certificate(cert, crypto.sha256(b"another network"), VALIDATORS)
    other_body = RollbackCertificate(body(height=99), cert.signatures)
    with pytest.raises(RollbackSignatureError):
        verify_certificate(other_body, NETWORK_ID, VALIDATORS)


def test_duplicate_signers_are_refused_by_verify_and_decode() -> None:
    cert = certificate()
    doubled = RollbackCertificate(cert.body, (cert.signatures[0], *cert.signatures[:2]))
    with pytest.raises(RollbackDuplicateSignerError) as caught:
        verify_certificate(doubled, NETWORK_ID, VALIDATORS)
    assert caught.value.code == "rollback_duplicate_signer"
    with pytest.raises(RollbackDuplicateSignerError):
        RollbackCertificate.decode(doubled.encode())


def test_certificate_decoder_refusals() -> None:
    cert = certificate()
    reversed_order = RollbackCertificate(cert.body, tuple(reversed(cert.signatures)))
    with pytest.raises(MalformedRollbackError):
        RollbackCertificate.decode(reversed_order.encode())
    with pytest.raises(MalformedRollbackError):
        RollbackCertificate.decode(RollbackCertificate(cert.body, ()).encode())
    obj = encoding.decode(cert.encode())
    for bad in ([[b"k" * 32]], [[b"k" * 32, b"s" * 64, b"x"]], [b"k"], "list"):
        with pytest.raises(MalformedRollbackError):
            RollbackCertificate.decode(encoding.encode(dict(obj, signatures=bad)))
    with pytest.raises(MalformedRollbackError):
        RollbackCertificate.decode(mutate_body(cert.encode(), "new_epoch", 5))
    too_many = [[bytes([i]) * 32, b"s" * 64] for i in range(limits.COUNCIL_SIZE_MAX + 1)]
    with pytest.raises(MalformedRollbackError):
        RollbackCertificate.decode(encoding.encode(dict(obj, signatures=too_many)))
    with pytest.raises(MalformedRollbackError):
        RollbackCertificate.decode(b"\x00" * (limits.ROLLBACK_CERTIFICATE_SIZE_BYTES_MAX + 1))


@given(st.binary(max_size=600))
def test_fuzz_any_bytes_decode_or_raise_remote_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        RollbackCertificate.decode(data)
    with contextlib.suppress(RemoteProtocolError):
        RollbackVote.decode(data)


@given(st.data())
def test_fuzz_mutated_certificates(data: st.DataObject) -> None:
    raw = bytearray(certificate().encode())
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[index] = data.draw(st.integers(min_value=0, max_value=255))
    for candidate in (bytes(raw), bytes(raw[: data.draw(st.integers(0, len(raw)))])):
        with contextlib.suppress(RemoteProtocolError):
            decoded = RollbackCertificate.decode(candidate)
            verify_certificate(decoded, NETWORK_ID, VALIDATORS)


# --- the assembler ----------------------------------------------------------------------------


def test_assembler_yields_once_a_quorum_signs_one_body() -> None:
    assembler = RollbackAssembler(NETWORK_ID, VALIDATORS)
    first, other = body(), body(height=99)
    assert assembler.add(sign_rollback_vote(KEYPAIRS[0], NETWORK_ID, first)) is None
    assert assembler.add(sign_rollback_vote(KEYPAIRS[1], NETWORK_ID, other)) is None
    assert assembler.add(sign_rollback_vote(KEYPAIRS[2], NETWORK_ID, first)) is None  # 2 of 3
    # The same vote again does not count twice.
    assert assembler.add(sign_rollback_vote(KEYPAIRS[2], NETWORK_ID, first)) is None
    # Member 1 changes its mind: its latest vote counts, and the quorum is reached.
    cert = assembler.add(sign_rollback_vote(KEYPAIRS[1], NETWORK_ID, first))
    assert cert is not None and cert.body == first
    verify_certificate(cert, NETWORK_ID, VALIDATORS)
    assert [vote.signer for vote in assembler.votes()] == VALIDATORS[:3]
    full = assembler.add(sign_rollback_vote(KEYPAIRS[3], NETWORK_ID, first))
    assert full is not None and len(full.signatures) == 4


def test_assembler_refuses_bad_votes_without_recording_them() -> None:
    assembler = RollbackAssembler(NETWORK_ID, VALIDATORS)
    with pytest.raises(RollbackUnknownSignerError):
        assembler.add(sign_rollback_vote(OUTSIDER, NETWORK_ID, body()))
    vote = sign_rollback_vote(KEYPAIRS[0], NETWORK_ID, body())
    with pytest.raises(RollbackSignatureError):
        assembler.add(RollbackVote(body(height=5), vote.signer, vote.signature))
    assert assembler.votes() == []


# --- the epoch history ------------------------------------------------------------------------


def bundle(epoch: int, height: int) -> CheckpointBundle:
    return CheckpointBundle(height, 0, b"cut", (), epoch=epoch)


def history_after(*rollbacks: tuple[int, int]) -> EpochHistory:
    """A history that accepted one certificate per (from_epoch, height), all caught up."""
    history = EpochHistory(NETWORK_ID, VALIDATORS)
    for from_epoch, height in rollbacks:
        rollback = body(from_epoch=from_epoch, height=height)
        history = history.accept(certificate(rollback), 1_000, rollback.checkpoint_id)
    return history


def test_genesis_history_admits_epoch_zero_only() -> None:
    history = EpochHistory(NETWORK_ID, VALIDATORS)
    assert history.current_epoch == 0 and history.ended_at(0) is None
    assert history.bundle_admissible(bundle(0, 1)) and history.bundle_admissible(bundle(0, 10**9))
    with pytest.raises(BundleFutureEpochError) as caught:
        history.check_bundle(bundle(1, 5))
    assert caught.value.code == "bundle_future_epoch"


def test_after_a_rollback_the_old_epoch_above_h_is_refused_from_anyone() -> None:
    history = history_after((0, 100))
    assert (history.current_epoch, history.ended_at(0), history.ended_at(1)) == (1, 100, None)
    assert history.bundle_admissible(bundle(0, 100))
    for height in (101, 104, 105):
        with pytest.raises(BundleRevertedError) as caught:
            history.check_bundle(bundle(0, height))
        assert caught.value.code == "bundle_reverted"
        assert history.bundle_admissible(bundle(1, height))
    with pytest.raises(BundleBeforeEpochError):
        history.check_bundle(bundle(1, 100))
    with pytest.raises(BundleFutureEpochError):
        history.check_bundle(bundle(2, 101))


def test_a_deeper_second_rollback_reverts_the_old_epochs_too() -> None:
    history = history_after((0, 100), (1, 90))
    assert history.heights_of(0) == (1, 90)
    assert history.heights_of(1) == (101, 90)  # every height of epoch 1 was reverted
    assert history.heights_of(2) == (91, None)
    for height in range(1, 200):
        owners = [e for e in range(3) if history.bundle_admissible(bundle(e, height))]
        assert owners == ([0] if height <= 90 else [2]), height
    with pytest.raises(LocalProtocolError):
        history.heights_of(3)


def test_certificates_must_end_the_current_epoch() -> None:
    history = history_after((0, 100))
    stale = body(from_epoch=0, height=50)
    with pytest.raises(RollbackEpochError) as caught:
        history.accept(certificate(stale), 200, stale.checkpoint_id)
    assert caught.value.code == "rollback_wrong_epoch"
    ahead = body(from_epoch=2, height=150)
    with pytest.raises(RollbackEpochError):
        history.accept(certificate(ahead), 200, ahead.checkpoint_id)
    under_quorum = RollbackCertificate(body(1, 150), certificate(body(1, 150)).signatures[:2])
    with pytest.raises(RollbackQuorumError):
        history.accept(under_quorum, 200, body(1, 150).checkpoint_id)
    assert history.current_epoch == 1  # accept never changes a history


def test_a_caught_up_node_needs_the_same_checkpoint_at_h() -> None:
    history = EpochHistory(NETWORK_ID, VALIDATORS)
    cert = certificate()
    with pytest.raises(RollbackCheckpointMismatchError) as caught:
        history.accept(cert, 100, crypto.sha256(b"our diverged checkpoint"))
    assert caught.value.code == "rollback_checkpoint_mismatch"
    with pytest.raises(RollbackCheckpointMismatchError):
        history.accept(cert, 150, None)
    assert history.accept(cert, 100, cert.body.checkpoint_id).current_epoch == 1


def test_a_node_behind_accepts_and_checks_the_checkpoint_when_it_reaches_h() -> None:
    """Decision: a node behind H accepts the certificate at once (a quorum signed the
    checkpoint at H), so while it catches up it refuses the reverted heights above H."""
    cert = certificate()
    history = EpochHistory(NETWORK_ID, VALIDATORS).accept(cert, 40, None)
    assert history.bundle_admissible(bundle(0, 41)) and history.bundle_admissible(bundle(0, 100))
    assert not history.bundle_admissible(bundle(0, 101))
    history.check_final(99, crypto.sha256(b"anything"))  # not H: nothing to compare
    history.check_final(100, cert.body.checkpoint_id)
    with pytest.raises(RollbackCheckpointMismatchError):
        history.check_final(100, crypto.sha256(b"diverged"))
    EpochHistory(NETWORK_ID, VALIDATORS).check_final(100, b"")  # no certificate yet


def test_rollback_to_genesis() -> None:
    genesis = body(height=0)
    history = EpochHistory(NETWORK_ID, VALIDATORS).accept(certificate(genesis), 10, b"")
    assert history.heights_of(0) == (1, 0) and history.heights_of(1) == (1, None)
    assert not history.bundle_admissible(bundle(0, 1)) and history.bundle_admissible(bundle(1, 1))


def test_restore_checks_order_and_signatures() -> None:
    history = history_after((0, 100), (1, 120))
    restored = EpochHistory.restore(NETWORK_ID, VALIDATORS, list(history.certificates))
    assert restored.certificates == history.certificates and restored.current_epoch == 2
    with pytest.raises(RollbackEpochError):
        EpochHistory.restore(NETWORK_ID, VALIDATORS, list(reversed(history.certificates)))
    with pytest.raises(RollbackSignatureError):
        EpochHistory.restore(crypto.sha256(b"other"), VALIDATORS, list(history.certificates))
    with pytest.raises(EpochHistoryFullError):
        EpochHistory.restore(NETWORK_ID, VALIDATORS, list(history.certificates), 1)


def test_the_history_bound_is_enforced() -> None:
    history = EpochHistory(NETWORK_ID, VALIDATORS, certificates_max=1)
    history = history.accept(certificate(), 100, body().checkpoint_id)
    with pytest.raises(EpochHistoryFullError) as caught:
        history.accept(certificate(body(1, 100)), 100, body(1, 100).checkpoint_id)
    assert caught.value.code == "epoch_history_full"


def test_every_refusal_is_a_rollback_error_with_a_stable_code() -> None:
    codes = {
        cls.code
        for cls in (
            MalformedRollbackError,
            RollbackUnknownSignerError,
            RollbackDuplicateSignerError,
            RollbackQuorumError,
            RollbackSignatureError,
            RollbackEpochError,
            RollbackCheckpointMismatchError,
            BundleRevertedError,
            BundleFutureEpochError,
            BundleBeforeEpochError,
        )
    }
    assert len(codes) == 10
    assert all(issubclass(cls, RollbackError) for cls in (BundleRevertedError, RollbackQuorumError))
