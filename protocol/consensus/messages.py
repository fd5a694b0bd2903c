"""Consensus messages and their codecs: signed proposals and votes, checkpoint bundles (a
value with a quorum of precommits) and equivocation evidence, with the limits, errors and
quorum rules they share (docs/parts/consensus.md). The state machine is machine.py."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import crypto, encoding, limits
from ..codes import RejectCode
from ..errors import BadSignatureError, LocalProtocolError, RemoteProtocolError

#: Every consensus signature covers this tag, then the 32-byte network id, then the canonical
#: encoding of the message body, so a consensus signature can never be replayed as an op
#: signature, nor on another network.
DOMAIN_TAG = b"swarmd/consensus/v1"

#: Rounds grow by one per timeout (or by a skip); 2**31 rounds would take decades of timeouts,
#: so a larger round number on the wire is malformed.
CONSENSUS_ROUND_MAX = 2**31 - 1
#: Heights fit a signed 64-bit column like every other counter of the ledger.
CONSENSUS_HEIGHT_MAX = 2**63 - 1
#: Room left in one encoded message or bundle for everything but the value: the envelope of a
#: proposal (~200 bytes) or a bundle's precommit list (COUNCIL_SIZE_MAX x ~100 bytes).
CONSENSUS_MESSAGE_OVERHEAD_BYTES_MAX = 16 * 1024
#: A proposed value must fit a proposal and a checkpoint bundle within one encoded value.
CONSENSUS_VALUE_SIZE_BYTES_MAX = (
    limits.ENCODED_VALUE_SIZE_BYTES_MAX - CONSENSUS_MESSAGE_OVERHEAD_BYTES_MAX
)
EVIDENCE_SIZE_BYTES_MAX = limits.EVIDENCE_SIZE_BYTES_MAX  # why: see limits.py
CONSENSUS_BUNDLES_KEPT_MAX = limits.CONSENSUS_BUNDLES_KEPT_MAX  # why: see limits.py
#: Our own messages of the current height are re-broadcast this often, so that a round never
#: stalls on a quorum whose messages were lost; receivers drop exact duplicates.
CONSENSUS_REBROADCAST_INTERVAL_S = 1.0
CONSENSUS_RULE_FIRINGS_PER_INPUT_MAX = (
    limits.CONSENSUS_RULE_FIRINGS_PER_INPUT_MAX
)  # why: see limits.py
CONSENSUS_EVENTS_QUEUED_MAX = limits.CONSENSUS_EVENTS_QUEUED_MAX  # why: see limits.py

assert CONSENSUS_VALUE_SIZE_BYTES_MAX > 0
assert limits.COUNCIL_SIZE_MAX * 128 + 1024 <= CONSENSUS_MESSAGE_OVERHEAD_BYTES_MAX


# --- errors ----------------------------------------------------------------------------------


class ConsensusMessageError(RemoteProtocolError):
    """A consensus message that decodes as msgpack but not as a consensus message."""

    code: str = RejectCode.MALFORMED_CONSENSUS_MESSAGE


class UnknownValidatorError(RemoteProtocolError):
    code: str = RejectCode.UNKNOWN_VALIDATOR


class NotProposerError(RemoteProtocolError):
    """A proposal signed by a validator that is not the proposer of its height and round."""

    code: str = RejectCode.NOT_PROPOSER


class BundleError(RemoteProtocolError):
    code: str = RejectCode.INVALID_BUNDLE


class MalformedBundleError(BundleError):
    code: str = RejectCode.MALFORMED_BUNDLE


class BundleUnknownValidatorError(BundleError):
    code: str = RejectCode.BUNDLE_UNKNOWN_VALIDATOR


class BundleDuplicateValidatorError(BundleError):
    code: str = RejectCode.BUNDLE_DUPLICATE_VALIDATOR


class BundleQuorumError(BundleError):
    code: str = RejectCode.BUNDLE_NO_QUORUM


class BundleSignatureError(BundleError):
    code: str = RejectCode.BUNDLE_BAD_SIGNATURE


class EvidenceError(RemoteProtocolError):
    code: str = RejectCode.INVALID_EVIDENCE


class MalformedEvidenceError(EvidenceError):
    code: str = RejectCode.MALFORMED_EVIDENCE


class EvidenceNotConflictingError(EvidenceError):
    code: str = RejectCode.EVIDENCE_NOT_CONFLICTING


class EvidenceUnknownValidatorError(EvidenceError):
    code: str = RejectCode.EVIDENCE_UNKNOWN_VALIDATOR


class EvidenceSignatureError(EvidenceError):
    code: str = RejectCode.EVIDENCE_BAD_SIGNATURE


class WrongEpochError(RemoteProtocolError):
    """A consensus message or bundle of another epoch than the one the core runs in."""

    code = "consensus_wrong_epoch"


# --- quorums and timeouts --------------------------------------------------------------------


def _check_epoch(epoch: int) -> None:
    if type(epoch) is not int or not 0 <= epoch <= limits.EPOCH_MAX:
        raise LocalProtocolError(f"epoch must be an int in [0, {limits.EPOCH_MAX}]")


def quorum_size(validator_count: int) -> int:
    """The paper's 2f+1: the smallest q with q > 2n/3, so two quorums share a correct node."""
    return 2 * validator_count // 3 + 1


def round_skip_size(validator_count: int) -> int:
    """The paper's f+1 (line 55): n - q + 1 senders include at least one correct node."""
    return validator_count - quorum_size(validator_count) + 1


@dataclass(frozen=True)
class ConsensusConfig:
    """Timeouts grow linearly with the round (the paper's timeoutX(r) = initX + r * delta)."""

    timeout_propose_s: float = limits.CONSENSUS_TIMEOUT_PROPOSE_S
    timeout_prevote_s: float = limits.CONSENSUS_TIMEOUT_PREVOTE_S
    timeout_precommit_s: float = limits.CONSENSUS_TIMEOUT_PRECOMMIT_S
    timeout_delta_s: float = limits.CONSENSUS_TIMEOUT_DELTA_S
    rebroadcast_interval_s: float = CONSENSUS_REBROADCAST_INTERVAL_S

    def timeout_s(self, kind: TimeoutKind, round: int) -> float:
        base = {
            TimeoutKind.PROPOSE: self.timeout_propose_s,
            TimeoutKind.PREVOTE: self.timeout_prevote_s,
            TimeoutKind.PRECOMMIT: self.timeout_precommit_s,
        }[kind]
        return base + round * self.timeout_delta_s


class TimeoutKind(enum.Enum):
    PROPOSE = "propose"
    PREVOTE = "prevote"
    PRECOMMIT = "precommit"


# --- messages --------------------------------------------------------------------------------


class MessageKind(enum.Enum):
    PROPOSAL = "proposal"
    PREVOTE = "prevote"
    PRECOMMIT = "precommit"


@dataclass(frozen=True)
class ConsensusMessage:
    """A signed proposal or vote.

    The signature covers DOMAIN_TAG || network_id || encode(body). A proposal's body names the
    value by its id (sha256) and the message carries the value beside the body, so that
    evidence and bundles never need to repeat the value.
    """

    kind: MessageKind
    height: int
    round: int
    value_id: bytes | None  # None is the paper's nil (votes only)
    validator: bytes
    signature: bytes
    valid_round: int = -1  # proposals only: the paper's validRound (POL round) or -1
    value: bytes | None = None  # proposals only; None in evidence
    epoch: int = 0  # the council epoch (0 from genesis until the first rollback certificate)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.kind.value,
            "epoch": self.epoch,
            "height": self.height,
            "round": self.round,
            "value_id": self.value_id,
        }
        if self.kind is MessageKind.PROPOSAL:
            body["valid_round"] = self.valid_round
        return body

    def header(self) -> dict[str, Any]:
        return {"body": self.body(), "signature": self.signature, "validator": self.validator}

    def encode(self) -> bytes:
        envelope = self.header()
        if self.kind is MessageKind.PROPOSAL and self.value is not None:
            envelope["value"] = self.value
        return encoding.encode(envelope)

    def without_value(self) -> ConsensusMessage:
        return ConsensusMessage(
            kind=self.kind,
            height=self.height,
            round=self.round,
            value_id=self.value_id,
            validator=self.validator,
            signature=self.signature,
            valid_round=self.valid_round,
            epoch=self.epoch,
        )

    def same_body(self, other: ConsensusMessage) -> bool:
        return self.body() == other.body()


def signing_bytes(network_id: bytes, body: dict[str, Any]) -> bytes:
    return DOMAIN_TAG + network_id + encoding.encode(body)


def sign_proposal(
    keypair: crypto.KeyPair,
    network_id: bytes,
    height: int,
    round: int,
    value: bytes,
    valid_round: int,
    epoch: int = 0,
) -> ConsensusMessage:
    unsigned = ConsensusMessage(
        kind=MessageKind.PROPOSAL,
        epoch=epoch,
        height=height,
        round=round,
        value_id=crypto.sha256(value),
        validator=keypair.public_key,
        signature=b"",
        valid_round=valid_round,
        value=value,
    )
    signature = keypair.sign(signing_bytes(network_id, unsigned.body()))
    return _with_signature(unsigned, signature)


def sign_vote(
    keypair: crypto.KeyPair,
    network_id: bytes,
    kind: MessageKind,
    height: int,
    round: int,
    value_id: bytes | None,
    epoch: int = 0,
) -> ConsensusMessage:
    if kind is MessageKind.PROPOSAL:
        raise LocalProtocolError("sign_vote signs prevotes and precommits only")
    unsigned = ConsensusMessage(
        kind=kind,
        epoch=epoch,
        height=height,
        round=round,
        value_id=value_id,
        validator=keypair.public_key,
        signature=b"",
    )
    signature = keypair.sign(signing_bytes(network_id, unsigned.body()))
    return _with_signature(unsigned, signature)


def _with_signature(message: ConsensusMessage, signature: bytes) -> ConsensusMessage:
    return ConsensusMessage(
        kind=message.kind,
        height=message.height,
        round=message.round,
        value_id=message.value_id,
        validator=message.validator,
        signature=signature,
        valid_round=message.valid_round,
        value=message.value,
        epoch=message.epoch,
    )


def verify_message_signature(message: ConsensusMessage, network_id: bytes) -> None:
    """Raise BadSignatureError unless the validator signed this body on this network."""
    crypto.verify(message.validator, signing_bytes(network_id, message.body()), message.signature)


def _int_field(mapping: dict[str, Any], key: str, low: int, high: int) -> int:
    value = mapping[key]
    if type(value) is not int or not low <= value <= high:  # bool is not an int here
        raise ConsensusMessageError(f"{key} must be an int in [{low}, {high}]")
    return value


def _bytes_field(mapping: dict[str, Any], key: str, size: int) -> bytes:
    value = mapping[key]
    if not isinstance(value, bytes) or len(value) != size:
        raise ConsensusMessageError(f"{key} must be {size} bytes")
    return value


_VOTE_BODY_KEYS = frozenset({"type", "epoch", "height", "round", "value_id"})
_PROPOSAL_BODY_KEYS = _VOTE_BODY_KEYS | {"valid_round"}
_HEADER_KEYS = frozenset({"body", "signature", "validator"})


def _parse_body(body: Any) -> tuple[MessageKind, int, int, int, bytes | None, int]:
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise ConsensusMessageError("body must be a map with a type")
    try:
        kind = MessageKind(body["type"])
    except ValueError as exc:
        raise ConsensusMessageError(f"unknown message type {body['type']!r}") from exc
    is_proposal = kind is MessageKind.PROPOSAL
    if set(body) != (_PROPOSAL_BODY_KEYS if is_proposal else _VOTE_BODY_KEYS):
        raise ConsensusMessageError(f"{kind.value} body has the wrong fields")
    epoch = _int_field(body, "epoch", 0, limits.EPOCH_MAX)
    height = _int_field(body, "height", 0, CONSENSUS_HEIGHT_MAX)
    round = _int_field(body, "round", 0, CONSENSUS_ROUND_MAX)
    value_id: bytes | None = None
    if is_proposal or body["value_id"] is not None:
        value_id = _bytes_field(body, "value_id", limits.HASH_SIZE_BYTES)
    # validRound is -1 or a round before the proposal's round (line 28: vr < round_p).
    valid_round = _int_field(body, "valid_round", -1, round - 1) if is_proposal else -1
    return kind, epoch, height, round, value_id, valid_round


def _parse_message(envelope: Any, *, with_value: bool) -> ConsensusMessage:
    if not isinstance(envelope, dict):
        raise ConsensusMessageError("message must be a map")
    kind, epoch, height, round, value_id, valid_round = _parse_body(envelope.get("body"))
    carries_value = with_value and kind is MessageKind.PROPOSAL
    if set(envelope) != (_HEADER_KEYS | {"value"} if carries_value else _HEADER_KEYS):
        raise ConsensusMessageError("message has the wrong fields")
    value: bytes | None = None
    if carries_value:
        value = envelope["value"]
        if not isinstance(value, bytes) or len(value) > CONSENSUS_VALUE_SIZE_BYTES_MAX:
            raise ConsensusMessageError("value must be bytes within the size limit")
        if crypto.sha256(value) != value_id:
            raise ConsensusMessageError("value does not match value_id")
    return ConsensusMessage(
        kind=kind,
        height=height,
        round=round,
        value_id=value_id,
        validator=_bytes_field(envelope, "validator", limits.PUBLIC_KEY_SIZE_BYTES),
        signature=_bytes_field(envelope, "signature", limits.SIGNATURE_SIZE_BYTES),
        valid_round=valid_round,
        value=value,
        epoch=epoch,
    )


def decode_message(data: bytes) -> ConsensusMessage:
    """Parse a wire message (signature not checked). Raises RemoteProtocolError subclasses."""
    return _parse_message(encoding.decode(data), with_value=True)


# --- checkpoint bundles ----------------------------------------------------------------------


_BUNDLE_KEYS = frozenset({"epoch", "height", "round", "value", "precommits"})


@dataclass(frozen=True)
class CheckpointBundle:
    """A decided value with the precommit signatures that decided it (offline-verifiable).

    The precommits were signed in `epoch`, so a bundle names the epoch it was decided in; the
    epoch history (protocol/rollback.py) says whether that epoch still owns its height.
    """

    height: int
    round: int
    value: bytes
    precommits: tuple[tuple[bytes, bytes], ...]  # (validator key, precommit signature)
    epoch: int = 0

    @property
    def value_id(self) -> bytes:
        return crypto.sha256(self.value)

    def encode(self) -> bytes:
        return encoding.encode(
            {
                "epoch": self.epoch,
                "height": self.height,
                "round": self.round,
                "value": self.value,
                "precommits": [[key, signature] for key, signature in self.precommits],
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> CheckpointBundle:
        try:
            obj = encoding.decode(data)
        except RemoteProtocolError as exc:
            raise MalformedBundleError(f"bundle bytes: {exc.message}") from exc
        try:
            return cls._from_obj(obj)
        except ConsensusMessageError as exc:
            raise MalformedBundleError(exc.message) from exc

    @classmethod
    def _from_obj(cls, obj: Any) -> CheckpointBundle:
        if not isinstance(obj, dict) or set(obj) != _BUNDLE_KEYS:
            raise MalformedBundleError("bundle must be a map with the bundle fields")
        value, precommits = obj["value"], obj["precommits"]
        if not isinstance(value, bytes) or len(value) > CONSENSUS_VALUE_SIZE_BYTES_MAX:
            raise MalformedBundleError("bundle value must be bytes within the size limit")
        if not isinstance(precommits, list) or len(precommits) > limits.COUNCIL_SIZE_MAX:
            raise MalformedBundleError("bundle precommits must be a list of at most the council")
        pairs: list[tuple[bytes, bytes]] = []
        for item in precommits:
            if not isinstance(item, list) or len(item) != 2:
                raise MalformedBundleError("a precommit entry is [validator, signature]")
            entry = {"validator": item[0], "signature": item[1]}
            pairs.append(
                (
                    _bytes_field(entry, "validator", limits.PUBLIC_KEY_SIZE_BYTES),
                    _bytes_field(entry, "signature", limits.SIGNATURE_SIZE_BYTES),
                )
            )
        return cls(
            height=_int_field(obj, "height", 0, CONSENSUS_HEIGHT_MAX),
            round=_int_field(obj, "round", 0, CONSENSUS_ROUND_MAX),
            value=value,
            precommits=tuple(pairs),
            epoch=_int_field(obj, "epoch", 0, limits.EPOCH_MAX),
        )


def check_quorum_signers(
    keys: list[bytes],
    validators: list[bytes],
    *,
    unknown: RemoteProtocolError,
    duplicate: RemoteProtocolError,
    too_few: Callable[[int, int], RemoteProtocolError],
) -> int:
    """The one rule of every council certificate (bundles, rollback certificates): each signer
    is a distinct member and there is a quorum of them. Raises the caller's typed error;
    returns the number of signers. Signatures are the caller's to verify, after this."""
    council = set(validators)
    seen: set[bytes] = set()
    for key in keys:
        if key not in council:
            raise unknown
        if key in seen:
            raise duplicate
        seen.add(key)
    quorum = quorum_size(len(council))
    if len(seen) < quorum:
        raise too_few(len(seen), quorum)
    return len(seen)


def verify_bundle(bundle: CheckpointBundle, network_id: bytes, validators: list[bytes]) -> None:
    """Raise a BundleError subclass unless a quorum of `validators` precommitted the value.

    Needs nothing but the genesis validator keys: every signature is checked against the
    precommit body for sha256(value) at the bundle's epoch, height and round. Whether the
    bundle's epoch still owns its height is the epoch history's question
    (`rollback.EpochHistory.check_bundle`), not this function's.
    """
    check_quorum_signers(
        [key for key, _signature in bundle.precommits],
        validators,
        unknown=BundleUnknownValidatorError("a precommit is signed by a non-member"),
        duplicate=BundleDuplicateValidatorError("a validator appears twice"),
        too_few=lambda count, quorum: BundleQuorumError(
            f"{count} precommits, a quorum is {quorum}"
        ),
    )
    body = {
        "type": MessageKind.PRECOMMIT.value,
        "epoch": bundle.epoch,
        "height": bundle.height,
        "round": bundle.round,
        "value_id": bundle.value_id,
    }
    message = signing_bytes(network_id, body)
    for key, signature in bundle.precommits:
        try:
            crypto.verify(key, message, signature)
        except BadSignatureError as exc:
            raise BundleSignatureError("a precommit signature does not verify") from exc


# --- equivocation evidence -------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """Two conflicting signed messages of one validator for one epoch, height, round and type."""

    first: ConsensusMessage
    second: ConsensusMessage

    @property
    def validator(self) -> bytes:
        return self.first.validator

    def encode(self) -> bytes:
        return encoding.encode({"first": self.first.header(), "second": self.second.header()})

    @classmethod
    def decode(cls, data: bytes) -> Evidence:
        try:
            obj = encoding.decode(data, size_max=EVIDENCE_SIZE_BYTES_MAX)
            if not isinstance(obj, dict) or set(obj) != {"first", "second"}:
                raise MalformedEvidenceError("evidence must be a map of first and second")
            first = _parse_message(obj["first"], with_value=False)
            second = _parse_message(obj["second"], with_value=False)
        except EvidenceError:
            raise
        except RemoteProtocolError as exc:
            raise MalformedEvidenceError(exc.message) from exc
        return cls(first=first, second=second)


def verify_evidence(evidence: Evidence, network_id: bytes, validators: list[bytes]) -> None:
    """Raise an EvidenceError subclass unless `evidence` proves a council member equivocated."""
    first, second = evidence.first, evidence.second
    if first.validator not in set(validators):
        raise EvidenceUnknownValidatorError("evidence names a non-member")
    same_slot = (first.validator, first.kind, first.epoch, first.height, first.round) == (
        second.validator,
        second.kind,
        second.epoch,
        second.height,
        second.round,
    )
    if not same_slot or first.same_body(second):
        raise EvidenceNotConflictingError("messages are not two different ones for one slot")
    for message in (first, second):
        try:
            verify_message_signature(message, network_id)
        except BadSignatureError as exc:
            raise EvidenceSignatureError("an evidence signature does not verify") from exc
