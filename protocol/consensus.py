"""Tendermint consensus for council checkpoints (sans-I/O).

(One file of ~1,900 lines on purpose for now: the message, bundle, evidence and signing-state
codecs and the state machine share the signing domains and the epoch rules, and the trace-hash
baseline guards this module as one unit. The natural split, codecs in one module and the
`Tendermint` machine in another, is the next layout step once the signing-state format
settles.)

This is Algorithm 1 of Buchman, Kwon, Milosevic, "The latest gossip on BFT consensus" (2018,
arXiv 1807.04938). Comments of the form "line N" refer to the line numbers of that pseudocode.
The core decides one opaque value (the application's encoded checkpoint cut) per height among
the genesis council: n validators of equal power, of which at most f = floor((n-1)/3) are
faulty. A quorum ("2f+1" in the paper) is the smallest q with q > 2n/3; the round-skip
threshold ("f+1", line 55) is n - q + 1, the smallest count that must include a correct node.

Deviations from the pseudocode, each needed because the core is driven from outside:
- getValue() (line 18) and valid(v) (lines 23, 29, 36, 50) are asynchronous: the core emits
  `ValueRequested` / `ValidationRequested` and the application answers with `provide_value` /
  `report_validity`. Until valid(v) is known the core does not prevote for v (the propose
  timeout still applies), except that it prevotes nil at once when its lock alone rules v out.
- The proposer also schedules OnTimeoutPropose (line 21 only does it for the others), so a
  proposer whose application never answers still moves on. A nil prevote is always safe.
- A decision does not move to height h+1 by itself (line 52): the application applies the
  value first and then calls `start_height(h + 1)`. Messages for h+1 that arrive meanwhile are
  kept in a bounded book.
- The paper assumes gossip that eventually delivers every message. Lost messages are made up
  for by re-broadcasting our own messages of the current height at a fixed interval, and
  lagging nodes catch up through signed checkpoint bundles (`receive_bundle`).
- A validator's conflicting second vote in a slot is evidence, and counts only for nil or a
  value proposed at this height (see `_RoundBook`); the paper counts every sender per value.
- Observers (no key pair) run the same rules without broadcasting and take every value as
  valid: a value with a quorum of precommits was checked by at least one correct validator.
- The paper's processes never crash. A validator that restarts must not sign a second, different
  message for a (height, round, type) it signed before the crash, and must keep its lock. Like
  CometBFT's privval "last sign state", `signing_state()` is the bytes the shell makes durable
  before any message it signed leaves the node, and `restore_signing_state` resumes from them
  at the same height, round and step, with the same lock and the same signed messages. A shell
  that rewrites the state at every step persists `signing_state_compact()` instead (the kept
  precommits named by id) and each kept precommit once, as a record of its own
  (`take_unsaved_precommits`, before the state naming it; `restore_precommits` reads both).
- Epochs (not in the paper): a council rollback certificate (protocol/rollback.py) ends epoch e
  at a final height H and starts epoch e+1 at H+1. Every message body, bundle and signing state
  names its epoch, so a core runs in one epoch, refuses messages and bundles of any other one
  (`WrongEpochError`), and its double-sign guard is keyed by (epoch, height, round): what a
  validator signed or locked on in epoch e never binds it in epoch e+1 (`enter_epoch`).

This file is over 800 lines because the algorithm, its messages and its signing state are one
unit whose rules refer to each other line by line; splitting it would scatter the paper's lines.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import crypto, encoding, limits
from .codes import RejectCode
from .errors import BadSignatureError, LocalProtocolError, RemoteProtocolError

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

#: Rounds whose own signed messages the signing state keeps (the current one and those before
#: it). Only the current round matters for safety (the core never signs in an earlier round);
#: earlier ones are kept so that a restarted node can still re-broadcast its recent votes.
#: The bound keeps the state small: at most 3 messages per round, one of them a proposal.
SIGNING_STATE_ROUNDS_KEPT = 4
#: Signed messages in a signing state: proposal, prevote and precommit per kept round.
SIGNING_STATE_MESSAGES_MAX = 3 * SIGNING_STATE_ROUNDS_KEPT
#: Our non-nil precommits with their values a signing state keeps per list: those of its
#: epoch and those of the epoch before it (`Tendermint.old_precommits`; a restarted member
#: still shows and requires them in the settlement, docs/PROTOCOL.md "Settlement").
SIGNING_STATE_PRECOMMITS_MAX = limits.SETTLEMENT_PRECOMMITS_KEPT_MAX
#: An encoded signing state: the kept proposals, the locked and valid values and the kept
#: precommits' values (two lists), each at most one encoded value, plus the small fields.
#: A state of the format before the kept precommits is within it too (it is still read).
SIGNING_STATE_SIZE_BYTES_MAX = (
    SIGNING_STATE_ROUNDS_KEPT + 2 + 2 * SIGNING_STATE_PRECOMMITS_MAX
) * limits.ENCODED_VALUE_SIZE_BYTES_MAX

#: Ids of kept precommits a compact signing state names: both lists (this epoch's, the ended
#: epoch's), so that the state rewritten at every step carries 32 bytes per kept precommit
#: instead of its value (`signing_state_compact`).
SIGNING_STATE_PRECOMMIT_IDS_MAX = 2 * SIGNING_STATE_PRECOMMITS_MAX
#: One kept precommit's record (`encode_kept_precommit`: its signed message and its value).
KEPT_PRECOMMIT_SIZE_BYTES_MAX = limits.ENCODED_VALUE_SIZE_BYTES_MAX
#: A compact signing state: the kept proposals, the locked and the valid value, plus the rest
#: (SIGNING_STATE_STEP_OVERHEAD_BYTES_MAX: messages, ids, small fields), whatever the kept
#: precommits' values weigh.
SIGNING_STATE_COMPACT_SIZE_BYTES_MAX = (
    SIGNING_STATE_ROUNDS_KEPT + 2
) * CONSENSUS_VALUE_SIZE_BYTES_MAX + limits.SIGNING_STATE_STEP_OVERHEAD_BYTES_MAX

assert CONSENSUS_VALUE_SIZE_BYTES_MAX > 0
assert SIGNING_STATE_PRECOMMIT_IDS_MAX <= limits.ENCODED_CONTAINER_ENTRIES_MAX
assert SIGNING_STATE_COMPACT_SIZE_BYTES_MAX <= SIGNING_STATE_SIZE_BYTES_MAX
assert CONSENSUS_MESSAGE_OVERHEAD_BYTES_MAX < KEPT_PRECOMMIT_SIZE_BYTES_MAX
assert SIGNING_STATE_MESSAGES_MAX <= limits.ENCODED_CONTAINER_ENTRIES_MAX
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


class SigningStateError(LocalProtocolError):
    """Our own stored signing state does not decode, or was not signed by our key for this
    network. Running on without it could equivocate, so the node refuses to resume."""

    code: str = RejectCode.BAD_SIGNING_STATE


class SigningStateWithoutEpochError(SigningStateError):
    """A signing state written before epochs existed (no `epoch` field). Its signed messages
    have bodies without an epoch, which no current peer accepts and which cannot be resumed
    faithfully, so it is refused rather than read as epoch 0 (see docs/PROTOCOL.md)."""

    code = "signing_state_without_epoch"


class SigningStateEpochError(SigningStateError):
    """A signing state of an epoch after the core's: the node lost a rollback certificate it
    had entered, and resuming in the older epoch could sign what it already signed."""

    code = "signing_state_future_epoch"


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


# --- the signing state (last sign state) ----------------------------------------------------

_SIGNING_STATE_KEYS = frozenset(
    {
        "epoch",
        "height",
        "round",
        "step",
        "locked_round",
        "locked_value",
        "valid_round",
        "valid_value",
        "messages",
    }
)
#: The kept precommits (since branch settle2); a state without them is still read.
_SIGNING_STATE_PRECOMMIT_KEYS = frozenset({"precommits_kept", "old_precommits"})
#: The compact state names its kept precommits by id instead (since branch sigstate).
_SIGNING_STATE_ID_KEYS = frozenset({"precommit_ids"})


#: One of our non-nil precommits with the value it precommitted.
KeptPrecommit = tuple[ConsensusMessage, bytes]


@dataclass(frozen=True)
class SigningState:
    """What a validator must remember across a restart: where it is in the height, its lock,
    and the messages it signed there (to re-broadcast them and never sign a conflicting one).
    `step` is 0 (propose), 1 (prevote) or 2 (precommit). The state is of one (epoch, height):
    every message in it has that epoch and height (see `sign_allowed`)."""

    epoch: int
    height: int
    round: int
    step: int
    locked_round: int
    locked_value: bytes | None
    valid_round: int
    valid_value: bytes | None
    messages: tuple[ConsensusMessage, ...]
    #: Our non-nil precommits of `epoch` with their values, oldest first, and those of the
    #: epoch before it (`Tendermint.old_precommits`); empty in a state of the older format.
    precommits_kept: tuple[KeptPrecommit, ...] = ()
    old_precommits: tuple[KeptPrecommit, ...] = ()
    #: A compact state's kept precommits, by `kept_precommit_id` (their records are apart).
    precommit_ids: tuple[bytes, ...] = ()

    def _fields(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "height": self.height,
            "round": self.round,
            "step": self.step,
            "locked_round": self.locked_round,
            "locked_value": self.locked_value,
            "valid_round": self.valid_round,
            "valid_value": self.valid_value,
            "messages": [message.encode() for message in self.messages],
        }

    def encode(self) -> bytes:
        """The whole state, the kept precommits' values included."""
        return encoding.encode(
            {
                **self._fields(),
                "precommits_kept": [[m.encode(), v] for m, v in self.precommits_kept],
                "old_precommits": [[m.encode(), v] for m, v in self.old_precommits],
            }
        )

    def encode_compact(self) -> bytes:
        """The state with its kept precommits (both lists, old first) named by id only."""
        kept = self.old_precommits + self.precommits_kept
        return encoding.encode(
            {**self._fields(), "precommit_ids": [kept_precommit_id(m) for m, _ in kept]}
        )


def kept_precommit_id(message: ConsensusMessage) -> bytes:
    """The id a compact signing state names a kept precommit by: sha256 of the signed
    message (its value is fixed by the message's value id)."""
    return crypto.sha256(message.encode())


def encode_kept_precommit(message: ConsensusMessage, value: bytes) -> bytes:
    """A kept precommit's record, made durable once, apart from the compact signing state."""
    return encoding.encode([message.encode(), value])


def decode_kept_precommit(data: bytes, network_id: bytes, validator: bytes) -> KeptPrecommit:
    """Parse and check a record of `encode_kept_precommit`: our own signed non-nil precommit
    on this network with the value its id names. Raises SigningStateError (ours: local)."""
    try:
        item = encoding.decode(data, size_max=KEPT_PRECOMMIT_SIZE_BYTES_MAX)
        return _state_precommits([item], network_id, validator, lambda _: True)[0]
    except RemoteProtocolError as exc:
        raise SigningStateError(f"kept precommit record: {exc.message}") from exc


def signing_state_precommit_ids(data: bytes) -> list[bytes]:
    """The kept precommit ids a compact signing state names, read without checking the rest
    (for a shell to load their records; the core checks everything when it restores). Empty
    for a state of the older formats and for bytes that are no signing state at all."""
    try:
        obj = encoding.decode(data, size_max=SIGNING_STATE_SIZE_BYTES_MAX)
        return list(_state_ids(obj.get("precommit_ids", []) if isinstance(obj, dict) else []))
    except RemoteProtocolError:
        return []


def _state_precommits(
    items: Any, network_id: bytes, validator: bytes, epoch_ok: Callable[[int], bool]
) -> tuple[KeptPrecommit, ...]:
    """A list of kept precommits: each our own signed non-nil precommit of an epoch that
    `epoch_ok` accepts, with the value its id names."""
    if not isinstance(items, list) or len(items) > SIGNING_STATE_PRECOMMITS_MAX:
        raise ConsensusMessageError("kept precommits: a list within SIGNING_STATE_PRECOMMITS_MAX")
    kept: list[KeptPrecommit] = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], bytes)):
            raise ConsensusMessageError("a kept precommit is [signed precommit, value]")
        message, value = decode_message(item[0]), item[1]
        if not isinstance(value, bytes) or len(value) > CONSENSUS_VALUE_SIZE_BYTES_MAX:
            raise ConsensusMessageError("a kept precommit's value must be bytes within the limit")
        if message.validator != validator or message.kind is not MessageKind.PRECOMMIT:
            raise ConsensusMessageError("a kept precommit must be our own precommit")
        if message.value_id != crypto.sha256(value) or not epoch_ok(message.epoch):
            raise ConsensusMessageError("a kept precommit of another value or epoch")
        verify_message_signature(message, network_id)
        kept.append((message, value))
    return tuple(kept)


def _state_ids(items: Any) -> tuple[bytes, ...]:
    if not isinstance(items, list) or len(items) > SIGNING_STATE_PRECOMMIT_IDS_MAX:
        raise ConsensusMessageError("precommit ids: a list within SIGNING_STATE_PRECOMMIT_IDS_MAX")
    for item in items:
        if not isinstance(item, bytes) or len(item) != limits.HASH_SIZE_BYTES:
            raise ConsensusMessageError("a precommit id is 32 bytes")
    if len(set(items)) != len(items):
        raise ConsensusMessageError("a precommit id named twice")
    return tuple(items)


def _state_value(obj: dict[str, Any], key: str) -> bytes | None:
    value = obj[key]
    if value is not None and (
        not isinstance(value, bytes) or len(value) > CONSENSUS_VALUE_SIZE_BYTES_MAX
    ):
        raise ConsensusMessageError(f"{key} must be None or bytes within the value size limit")
    return value


def _state_round(obj: dict[str, Any], key: str, value: bytes | None, round: int) -> int:
    locked_or_valid_round = _int_field(obj, key, -1, round)
    if (locked_or_valid_round == -1) != (value is None):
        raise ConsensusMessageError(f"{key} is -1 exactly when its value is None")
    return locked_or_valid_round


def _state_messages(
    items: Any, slot: tuple[int, int, int], network_id: bytes, validator: bytes
) -> tuple[ConsensusMessage, ...]:
    epoch, height, state_round = slot
    if not isinstance(items, list) or len(items) > SIGNING_STATE_MESSAGES_MAX:
        raise ConsensusMessageError("messages must be a list within SIGNING_STATE_MESSAGES_MAX")
    messages: list[ConsensusMessage] = []
    slots: set[tuple[MessageKind, int]] = set()
    for item in items:
        if not isinstance(item, bytes):
            raise ConsensusMessageError("a signed message must be bytes")
        message = decode_message(item)
        if message.validator != validator or (message.epoch, message.height) != (epoch, height):
            raise ConsensusMessageError("a message of another validator, epoch or height")
        if message.round > state_round or (message.kind, message.round) in slots:
            raise ConsensusMessageError("a message after the state's round, or two in one slot")
        slots.add((message.kind, message.round))
        verify_message_signature(message, network_id)
        messages.append(message)
    return tuple(messages)


def decode_signing_state(data: bytes, network_id: bytes, validator: bytes) -> SigningState:
    """Parse and check a signing state written by `Tendermint.signing_state()` (or
    `signing_state_compact()`) of `validator` on this network. Raises SigningStateError: the
    bytes are ours, so a bad state is a local fault (a corrupt or foreign file), not a peer's.
    Three formats are read: without kept precommits (before branch settle2), with them and
    their values (`precommits_kept`, `old_precommits`), and compact (`precommit_ids`)."""
    try:
        obj = encoding.decode(data, size_max=SIGNING_STATE_SIZE_BYTES_MAX)
        extra = _SIGNING_STATE_PRECOMMIT_KEYS | _SIGNING_STATE_ID_KEYS
        fields = set(obj) - extra if isinstance(obj, dict) else set()
        if fields == _SIGNING_STATE_KEYS - {"epoch"}:
            raise SigningStateWithoutEpochError(
                "signing state written before epochs: stop every validator, upgrade them "
                "together and remove this file (its messages are of the old wire format)"
            )
        if not isinstance(obj, dict) or set(obj) not in (
            _SIGNING_STATE_KEYS,
            _SIGNING_STATE_KEYS | _SIGNING_STATE_PRECOMMIT_KEYS,
            _SIGNING_STATE_KEYS | _SIGNING_STATE_ID_KEYS,
        ):
            raise ConsensusMessageError("a signing state is a map with the signing state fields")
        epoch = _int_field(obj, "epoch", 0, limits.EPOCH_MAX)
        height = _int_field(obj, "height", 0, CONSENSUS_HEIGHT_MAX)
        round = _int_field(obj, "round", 0, CONSENSUS_ROUND_MAX)
        locked_value = _state_value(obj, "locked_value")
        valid_value = _state_value(obj, "valid_value")
        return SigningState(
            epoch=epoch,
            height=height,
            round=round,
            step=_int_field(obj, "step", 0, 2),
            locked_round=_state_round(obj, "locked_round", locked_value, round),
            locked_value=locked_value,
            valid_round=_state_round(obj, "valid_round", valid_value, round),
            valid_value=valid_value,
            messages=_state_messages(
                obj["messages"], (epoch, height, round), network_id, validator
            ),
            precommits_kept=_state_precommits(
                obj.get("precommits_kept", []), network_id, validator, lambda e: e == epoch
            ),
            old_precommits=_state_precommits(
                obj.get("old_precommits", []), network_id, validator, lambda e: e < epoch
            ),
            precommit_ids=_state_ids(obj.get("precommit_ids", [])),
        )
    except RemoteProtocolError as exc:
        raise SigningStateError(f"signing state: {exc.message}") from exc


def sign_allowed(state: SigningState | None, message: ConsensusMessage) -> bool:
    """The double-sign guard, keyed by (epoch, height, round): may a validator whose last sign
    state is `state` sign `message`?

    (epoch, height) only moves forward, compared as a pair: a later epoch is always allowed,
    whatever height epoch e reached (a rollback restarts heights below it), and an earlier
    (epoch, height) is never signed again. Within the state's (epoch, height), a slot (type,
    round) already signed allows only the same body again; a round before the state's round
    whose message was not kept is refused (it may have been signed and dropped).
    """
    if state is None:
        return True
    here, last = (message.epoch, message.height), (state.epoch, state.height)
    if here != last:
        return here > last
    for signed in state.messages:
        if (signed.kind, signed.round) == (message.kind, message.round):
            return signed.same_body(message)
    return message.round >= state.round


def record_signed(state: SigningState | None, message: ConsensusMessage) -> SigningState:
    """The sign state after signing `message` (which `sign_allowed` allowed): a new (epoch,
    height) starts afresh, unlocked; the same one keeps the lock and the recent rounds."""
    if not sign_allowed(state, message):
        raise LocalProtocolError("signing this message would be equivocation")
    step = {MessageKind.PROPOSAL: 0, MessageKind.PREVOTE: 1, MessageKind.PRECOMMIT: 2}
    if state is None or (state.epoch, state.height) != (message.epoch, message.height):
        state = SigningState(message.epoch, message.height, 0, 0, -1, None, -1, None, ())
    round = max(state.round, message.round)
    kept = [m for m in state.messages if m.round > round - SIGNING_STATE_ROUNDS_KEPT]
    if not any(m.same_body(message) and m.kind is message.kind for m in kept):
        kept.append(message)
    current_step = state.step if round == state.round else 0
    if message.round == round:
        current_step = max(current_step, step[message.kind])
    return SigningState(
        epoch=state.epoch,
        height=state.height,
        round=round,
        step=current_step,
        locked_round=state.locked_round,
        locked_value=state.locked_value,
        valid_round=state.valid_round,
        valid_value=state.valid_value,
        messages=tuple(kept),
    )


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValueRequested:
    """We propose at (height, round): answer with `provide_value` (the paper's getValue)."""

    height: int
    round: int


@dataclass(frozen=True)
class ValidationRequested:
    """Answer with `report_validity(value_id, ...)` (the paper's valid(v))."""

    height: int
    round: int
    value_id: bytes
    value: bytes


@dataclass(frozen=True)
class Decided:
    height: int
    round: int
    value: bytes
    bundle: CheckpointBundle


@dataclass(frozen=True)
class EquivocationDetected:
    evidence: Evidence


@dataclass(frozen=True)
class MessageRejected:
    code: str
    detail: str


@dataclass(frozen=True)
class ForeignOwnSignature:
    """A message validly signed with our own key arrived that this core did not sign: at our
    height, in a round whose signed messages it remembers, a slot it never signed or signed
    differently. Another process holds our key (a copied node home), or the signing state
    was lost. The application decides whether to `halt_signing` (NodeCore: finality.py)."""

    height: int
    round: int
    kind: str


@dataclass(frozen=True)
class RoundAdvanced:
    height: int
    round: int


Event = (
    ValueRequested
    | ValidationRequested
    | Decided
    | EquivocationDetected
    | MessageRejected
    | RoundAdvanced
    | ForeignOwnSignature
)


# --- the vote book ---------------------------------------------------------------------------


class _Step(enum.IntEnum):
    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2


@dataclass
class _RoundBook:
    """Messages of one round, with per-value tallies of distinct validators.

    The first vote of a validator in a (type, round) slot always counts. A conflicting later
    vote is evidence, and it also counts (for its own value) when it names nil or a value
    proposed at this height: the paper counts messages from distinct senders per value, and
    a correct node that locked on v may hold an equivocator's vote for v that others saw
    second; not counting it there would leave the others unable to see the lock's POL
    (line 28) forever. Votes for ids that no proposal names are of no use to any rule and
    are not kept, which bounds the book.
    """

    proposal: ConsensusMessage | None = None
    prevotes: dict[bytes, dict[bytes | None, ConsensusMessage]] = field(default_factory=dict)
    precommits: dict[bytes, dict[bytes | None, ConsensusMessage]] = field(default_factory=dict)
    prevote_tally: dict[bytes | None, int] = field(default_factory=dict)
    precommit_tally: dict[bytes | None, int] = field(default_factory=dict)
    senders: set[bytes] = field(default_factory=set)

    def prevotes_for(self, value_id: bytes | None) -> int:
        return self.prevote_tally.get(value_id, 0)

    def precommits_for(self, value_id: bytes | None) -> int:
        return self.precommit_tally.get(value_id, 0)

    def votes_for(self, kind: MessageKind, value_id: bytes | None) -> list[ConsensusMessage]:
        slots = self.prevotes if kind is MessageKind.PREVOTE else self.precommits
        return [slot[value_id] for slot in slots.values() if value_id in slot]


@dataclass
class _HeightBook:
    """Messages of one height, for rounds up to the current one plus the future window."""

    height: int
    rounds: dict[int, _RoundBook] = field(default_factory=dict)
    proposal_value_ids: set[bytes] = field(default_factory=set)
    equivocations_reported: set[tuple[bytes, MessageKind, int]] = field(default_factory=set)

    def round_book(self, round: int) -> _RoundBook:
        book = self.rounds.get(round)
        if book is None:
            book = self.rounds[round] = _RoundBook()
        return book

    def add(self, message: ConsensusMessage) -> ConsensusMessage | None:
        """Count `message`; return the validator's earlier message of the slot on conflict."""
        book = self.round_book(message.round)
        if message.kind is MessageKind.PROPOSAL:
            if book.proposal is not None:
                return None if book.proposal.same_body(message) else book.proposal
            book.proposal = message
            assert message.value_id is not None
            self.proposal_value_ids.add(message.value_id)
            book.senders.add(message.validator)
            return None
        is_prevote = message.kind is MessageKind.PREVOTE
        slots = book.prevotes if is_prevote else book.precommits
        tally = book.prevote_tally if is_prevote else book.precommit_tally
        slot = slots.get(message.validator)
        if slot is None:
            slots[message.validator] = {message.value_id: message}
            tally[message.value_id] = tally.get(message.value_id, 0) + 1
            book.senders.add(message.validator)
            return None
        if message.value_id in slot:
            return None  # a duplicate
        earlier = next(iter(slot.values()))
        if message.value_id is None or message.value_id in self.proposal_value_ids:
            slot[message.value_id] = message
            tally[message.value_id] = tally.get(message.value_id, 0) + 1
        return earlier

    def proposals(self) -> list[ConsensusMessage]:
        return [book.proposal for book in self.rounds.values() if book.proposal is not None]


@dataclass
class _Timer:
    deadline: float
    kind: TimeoutKind
    height: int
    round: int


# --- the core --------------------------------------------------------------------------------


class Tendermint:
    """One node's consensus core: validator (with a key pair) or observer (without), running
    in one epoch at a time (`epoch`, 0 from genesis; `enter_epoch` after a rollback)."""

    def __init__(
        self,
        *,
        network_id: bytes,
        validators: list[bytes],
        keypair: crypto.KeyPair | None,
        config: ConsensusConfig | None = None,
        epoch: int = 0,
    ) -> None:
        if not isinstance(network_id, bytes) or len(network_id) != limits.HASH_SIZE_BYTES:
            raise LocalProtocolError("network_id must be 32 bytes")
        _check_epoch(epoch)
        if not 1 <= len(validators) <= limits.COUNCIL_SIZE_MAX:
            raise LocalProtocolError(f"council size must be 1..{limits.COUNCIL_SIZE_MAX}")
        if len(set(validators)) != len(validators):
            raise LocalProtocolError("validators must be distinct")
        for key in validators:
            try:
                crypto.check_public_key(key)
            except RemoteProtocolError as exc:
                raise LocalProtocolError(f"invalid validator key: {exc.message}") from exc
        if keypair is not None and keypair.public_key not in validators:
            raise LocalProtocolError("the key pair is not a validator; pass None to observe")
        self._network_id = network_id
        self._epoch = epoch
        self._validators = sorted(validators)
        self._validator_set = frozenset(validators)
        self._keypair = keypair
        self._config = config if config is not None else ConsensusConfig()
        self._quorum = quorum_size(len(validators))
        self._round_skip = round_skip_size(len(validators))
        self._events: deque[Event] = deque()
        self._rejections_dropped = 0
        #: Messages the algorithm asked to sign in a slot we had already signed differently;
        #: always 0 unless restored state and rules disagree (a bug a test should see).
        self.conflicting_signatures_refused = 0
        #: Set by `halt_signing`: the core then signs nothing more (until a restart), and
        #: counts the messages it withheld.
        self._signing_halted = False
        self.signatures_withheld = 0
        self._foreign_signature_height: int | None = None
        self._outbox: list[bytes] = []
        self._bundles: dict[int, CheckpointBundle] = {}
        self._height: int | None = None
        #: Our non-nil precommits of this epoch with their values, oldest first (bounded), and
        #: those of the epoch `enter_epoch` ended (see `old_precommits`).
        self._precommits_kept: list[KeptPrecommit] = []
        self._old_precommits: list[KeptPrecommit] = []
        #: Kept precommits whose records the shell has not been handed yet (oldest first).
        self._precommits_unsaved: list[KeptPrecommit] = []
        self._reset_height_state(0, _HeightBook(0))

    def _reset_height_state(self, height: int, book: _HeightBook) -> None:
        # Lines 2-9 and 53: the per-height variables and an empty message log.
        self._book = book
        self._next_book = _HeightBook(height + 1)
        self._round = 0
        self._step = _Step.PROPOSE
        self._decided = False
        self._locked_value: bytes | None = None
        self._locked_round = -1
        self._valid_value: bytes | None = None
        self._valid_round = -1
        self._validity: dict[bytes, bool] = {}
        self._validation_requested: set[bytes] = set()
        self._awaiting_value = False
        self._fired: set[tuple[int, int]] = set()  # (paper line, round) of fire-once rules
        self._timers: list[_Timer] = []
        self._own_messages: list[ConsensusMessage] = []
        # What we signed at this height, per (type, round): never sign a different body there.
        self._signed: dict[tuple[MessageKind, int], ConsensusMessage] = {}
        self._rebroadcast_at: float | None = None

    # --- read-only state -------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def height(self) -> int | None:
        return self._height

    @property
    def round(self) -> int:
        return self._round

    @property
    def step(self) -> str:
        """The step of the current round: "propose", "prevote" or "precommit"."""
        return self._step.name.lower()

    @property
    def decided(self) -> bool:
        return self._decided

    @property
    def quorum(self) -> int:
        return self._quorum

    @property
    def rejections_dropped(self) -> int:
        """Rejection events not queued because the event queue was full."""
        return self._rejections_dropped

    def proposer(self, height: int, round: int) -> bytes:
        """Round-robin over the validators sorted by key: index (height + round) mod n."""
        return self._validators[(height + round) % len(self._validators)]

    # --- inputs ----------------------------------------------------------------------------

    def start_height(self, height: int, now: float) -> None:
        """Start consensus for `height` (line 10, and line 54 once the app applied h-1)."""
        if type(height) is not int or not 0 <= height <= CONSENSUS_HEIGHT_MAX:
            raise LocalProtocolError("height out of range")
        if self._height is not None and height <= self._height:
            raise LocalProtocolError(f"height {height} is not above {self._height}")
        book = self._next_book if self._next_book.height == height else _HeightBook(height)
        self._height = height
        self._reset_height_state(height, book)
        if self._keypair is not None:
            self._rebroadcast_at = now + self._config.rebroadcast_interval_s
        self._start_round(0, now)
        for proposal in book.proposals():
            self._request_validation(proposal)
        self._run_rules(now)

    def enter_epoch(self, epoch: int) -> None:
        """Leave the current epoch for a later one (a rollback certificate was accepted).

        Everything of the old epoch goes: the height in progress, its lock and valid value,
        the message books, the kept bundles and any queued messages and events, except our
        last non-nil precommits with their values (`old_precommits`: the new epoch's
        settlement must list those above H, docs/PROTOCOL.md "Settlement"). No height
        runs until the application calls `start_height(H + 1)` for the certificate's height H,
        which may be at or below the heights the old epoch reached: the guard is keyed by
        (epoch, height, round), so nothing signed in the old epoch binds the new one.
        """
        _check_epoch(epoch)
        if epoch <= self._epoch:
            raise LocalProtocolError(f"epoch {epoch} is not after {self._epoch}")
        self._epoch = epoch
        self._height = None
        self._reset_height_state(0, _HeightBook(0))
        self._old_precommits, self._precommits_kept = self._precommits_kept, []
        self._bundles = {}
        self._outbox = []
        self._events.clear()

    def restore_signing_state(self, data: bytes, now: float) -> None:
        """Resume after a restart from `signing_state()` bytes made durable before the crash.

        The core continues at the state's height, round and step with the same lock and valid
        value, counts its own signed messages again and re-broadcasts them at once (the first
        timer), and never signs a different message for a (round, type) it already signed.
        Raises SigningStateError when `data` is not a signing state of our key on this network.

        A state of an earlier epoch binds nothing (a rollback ended that epoch): the core just
        starts the state's height afresh in its own epoch. A state of a later epoch raises
        SigningStateEpochError (the application lost a certificate it had entered).
        """
        if self._keypair is None:
            raise LocalProtocolError("an observer signs nothing and has no signing state")
        state = decode_signing_state(data, self._network_id, self._keypair.public_key)
        if state.epoch > self._epoch:
            raise SigningStateEpochError(
                f"signing state of epoch {state.epoch}, the core runs epoch {self._epoch}"
            )
        self._restore_precommits(state.old_precommits + state.precommits_kept, unsaved=True)
        if state.epoch < self._epoch:
            self.start_height(state.height, now)
            return
        if self._height is not None and state.height <= self._height:
            raise LocalProtocolError(f"height {state.height} is not above {self._height}")
        book = self._next_book if self._next_book.height == state.height else None
        self._height = state.height
        self._reset_height_state(state.height, book or _HeightBook(state.height))
        self._round, self._step = state.round, _Step(state.step)
        self._locked_value, self._locked_round = state.locked_value, state.locked_round
        self._valid_value, self._valid_round = state.valid_value, state.valid_round
        for value in (state.locked_value, state.valid_value):
            if value is not None:  # we checked valid(v) before locking on v or keeping it
                self._validity[crypto.sha256(value)] = True
        for message in state.messages:
            self._book.add(message)
            self._own_messages.append(message)
            self._signed[(message.kind, message.round)] = message
            if message.kind is MessageKind.PROPOSAL and message.value_id is not None:
                self._validity[message.value_id] = True  # only valid values are proposed
        self._rebroadcast_at = now
        if self._step is _Step.PROPOSE:
            self._resume_propose_step(now)
        for proposal in self._book.proposals():
            self._request_validation(proposal)
        self._run_rules(now)

    def restore_precommits(self, data: bytes, records: Sequence[bytes] = ()) -> None:
        """At start, before any height runs: take back the kept precommits of a signing state
        (raises SigningStateError like `restore_signing_state`), so that a member restarted
        between a rollback certificate and the settlement still shows and requires its
        precommits above H. Those of our epoch stay ours, those of the epoch before it become
        `old_precommits`; any other is of no settlement any more. Ones already held are not
        added twice (a shell may hand the same state over twice).

        A compact state (`signing_state_compact()`) names them by id: each one's record
        (`take_unsaved_precommits`) must be among `records`, else SigningStateError; a record
        it does not name is ignored (one written before a state a crash lost: its precommit
        never left). A state with the values inside (`signing_state()`, the format before
        branch sigstate) hands them to `take_unsaved_precommits` once more, so the shell
        writes their records before a compact state replaces it."""
        if self._keypair is None:
            raise LocalProtocolError("an observer signs nothing and has no signing state")
        state = decode_signing_state(data, self._network_id, self._keypair.public_key)
        if state.precommit_ids:
            self._restore_precommits(self._named_records(state.precommit_ids, records))
        else:
            pairs = state.old_precommits + state.precommits_kept
            self._restore_precommits(pairs, unsaved=True)

    def _named_records(
        self, ids: tuple[bytes, ...], records: Sequence[bytes]
    ) -> tuple[KeptPrecommit, ...]:
        assert self._keypair is not None
        by_id: dict[bytes, KeptPrecommit] = {}
        for data in records:
            pair = decode_kept_precommit(data, self._network_id, self._keypair.public_key)
            by_id[kept_precommit_id(pair[0])] = pair
        missing = sum(precommit_id not in by_id for precommit_id in ids)
        if missing:
            raise SigningStateError(
                f"signing state: {missing} of its {len(ids)} kept precommits have no record"
            )
        return tuple(by_id[precommit_id] for precommit_id in ids)

    def _restore_precommits(
        self, pairs: tuple[KeptPrecommit, ...], *, unsaved: bool = False
    ) -> None:
        restored = ((self._precommits_kept, self._epoch), (self._old_precommits, self._epoch - 1))
        for kept, epoch in restored:
            held = {message.encode() for message, _ in kept}
            for message, value in pairs:
                if message.epoch == epoch and message.encode() not in held:
                    held.add(message.encode())
                    kept.append((message, value))
                    if unsaved:
                        self._precommits_unsaved.append((message, value))
            kept.sort(key=lambda pair: (pair[0].height, pair[0].round))
            del kept[: -limits.SETTLEMENT_PRECOMMITS_KEPT_MAX]

    def _resume_propose_step(self, now: float) -> None:
        """StartRound (lines 14-21) again for a round restored in its propose step, except
        that a proposal already signed in this round is kept, never replaced."""
        assert self._keypair is not None and self._height is not None
        is_proposer = self.proposer(self._height, self._round) == self._keypair.public_key
        if is_proposer and (MessageKind.PROPOSAL, self._round) not in self._signed:
            if self._valid_value is not None:
                self._broadcast_proposal(self._valid_value, self._valid_round)
            else:
                self._awaiting_value = True
                self._events.append(ValueRequested(self._height, self._round))
        self._schedule(TimeoutKind.PROPOSE, now)

    def receive_message(self, data: bytes, now: float) -> None:
        """Take one encoded consensus message from a peer; problems become events."""
        try:
            message = decode_message(data)
            self._admit(message)
        except RemoteProtocolError as exc:
            self._reject(exc)
            return
        self._run_rules(now)

    def receive_bundle(self, data: bytes, now: float) -> None:
        """Take a checkpoint bundle; one for the current height decides it at once."""
        try:
            bundle = CheckpointBundle.decode(data)
            if bundle.epoch != self._epoch:
                raise WrongEpochError(f"bundle of epoch {bundle.epoch}, not {self._epoch}")
            verify_bundle(bundle, self._network_id, self._validators)
        except RemoteProtocolError as exc:
            self._reject(exc)
            return
        if self._height is None or bundle.height != self._height or self._decided:
            return
        self._decide(bundle)

    def provide_value(self, height: int, round: int, value: bytes, now: float) -> None:
        """The app's answer to ValueRequested; an answer for a past round is ignored."""
        if not isinstance(value, bytes) or len(value) > CONSENSUS_VALUE_SIZE_BYTES_MAX:
            raise LocalProtocolError("value must be bytes within CONSENSUS_VALUE_SIZE_BYTES_MAX")
        current = (height, round) == (self._height, self._round)
        if not (current and self._awaiting_value and self._step is _Step.PROPOSE):
            return
        self._awaiting_value = False
        self._validity[crypto.sha256(value)] = True  # our own getValue() is valid
        self._broadcast_proposal(value, -1)  # line 19, with validRound_p = -1 (line 15)
        self._run_rules(now)

    def report_validity(self, value_id: bytes, valid: bool, now: float) -> None:
        """The app's answer to ValidationRequested for a value of the current height."""
        if value_id not in self._validation_requested or value_id in self._validity:
            return
        self._validity[value_id] = bool(valid)
        self._run_rules(now)

    def handle_timer(self, now: float) -> None:
        """Run every timeout due at `now` (lines 57-67) and the re-broadcast."""
        due = sorted(
            (timer for timer in self._timers if timer.deadline <= now),
            key=lambda timer: timer.deadline,
        )
        for timer in due:
            if timer not in self._timers:
                continue  # a previous timeout started a new round and dropped it
            self._timers.remove(timer)
            self._on_timeout(timer, now)
            self._run_rules(now)
        if self._rebroadcast_at is not None and self._rebroadcast_at <= now:
            self._rebroadcast(now)

    def get_timer(self) -> float | None:
        deadlines = [timer.deadline for timer in self._timers]
        if self._rebroadcast_at is not None:
            deadlines.append(self._rebroadcast_at)
        return min(deadlines, default=None)

    # --- outputs ---------------------------------------------------------------------------

    def messages_to_send(self) -> list[bytes]:
        """Encoded signed messages to broadcast to every peer."""
        messages, self._outbox = self._outbox, []
        return messages

    @property
    def signing_halted(self) -> bool:
        return self._signing_halted

    def halt_signing(self) -> None:
        """Sign nothing more: proposals, prevotes and precommits are withheld (the rounds still
        advance by timeouts, as for a silent member). For a validator whose key another process
        uses: two signers of one key would equivocate. A restart resumes signing."""
        self._signing_halted = True

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def signing_state(self) -> bytes:
        """Canonical bytes to make durable before any message in `messages_to_send()` is sent,
        and to pass to `restore_signing_state` after a restart (see the module docstring).
        They carry the kept precommits with their values: a shell that writes the state at
        every step persists `signing_state_compact()` and the precommits' records instead."""
        return self._signing_state().encode()

    def signing_state_compact(self) -> bytes:
        """`signing_state()` with the kept precommits named by id (`kept_precommit_ids`), at
        most SIGNING_STATE_COMPACT_SIZE_BYTES_MAX bytes whatever their values weigh. Make
        durable, in this order, the records of `take_unsaved_precommits()` and then these
        bytes before any message in `messages_to_send()` is sent; after a restart pass both
        to `restore_precommits` (and the state to `restore_signing_state`)."""
        return self._signing_state().encode_compact()

    def kept_precommit_ids(self) -> tuple[bytes, ...]:
        """The ids `signing_state_compact()` names: the ended epoch's kept precommits, then
        this epoch's, oldest first. A record of any other is no longer needed."""
        kept = self._old_precommits + self._precommits_kept
        return tuple(kept_precommit_id(message) for message, _ in kept)

    def take_unsaved_precommits(self) -> list[tuple[bytes, bytes]]:
        """The kept precommits not handed over yet, as (id, record): each one once (it is new,
        or it came back from a state with the values inside), those still kept only."""
        unsaved, self._precommits_unsaved = self._precommits_unsaved, []
        kept = set(self.kept_precommit_ids())
        records = []
        for message, value in unsaved:
            precommit_id = kept_precommit_id(message)
            if precommit_id in kept:
                records.append((precommit_id, encode_kept_precommit(message, value)))
        return records

    def _signing_state(self) -> SigningState:
        if self._keypair is None or self._height is None:
            raise LocalProtocolError("only a validator with a started height has a signing state")
        oldest_round_kept = self._round - SIGNING_STATE_ROUNDS_KEPT + 1
        return SigningState(
            epoch=self._epoch,
            height=self._height,
            round=self._round,
            step=int(self._step),
            locked_round=self._locked_round,
            locked_value=self._locked_value,
            valid_round=self._valid_round,
            valid_value=self._valid_value,
            messages=tuple(m for m in self._own_messages if m.round >= oldest_round_kept),
            precommits_kept=tuple(self._precommits_kept),
            old_precommits=tuple(self._old_precommits),
        )

    def bundle_for(self, height: int) -> CheckpointBundle | None:
        """The bundle of a recently decided height, to help lagging peers catch up."""
        return self._bundles.get(height)

    # --- admission of peer messages ---------------------------------------------------------

    def _admit(self, message: ConsensusMessage) -> None:
        if self._height is None:
            return
        if message.epoch != self._epoch:
            raise WrongEpochError(f"message of epoch {message.epoch}, not {self._epoch}")
        if message.validator not in self._validator_set:
            raise UnknownValidatorError("message signed by a non-member")
        if message.height == self._height and not self._decided:
            book, round_limit = self._book, self._round + limits.CONSENSUS_FUTURE_ROUNDS_MAX
        elif message.height == self._height + 1:
            book, round_limit = self._next_book, limits.CONSENSUS_FUTURE_ROUNDS_MAX
        else:
            return  # an old height (nothing left to do) or too far ahead (catch up by bundles)
        if message.round > round_limit:
            return  # beyond the bounded window; the sender will re-broadcast it later
        if message.kind is MessageKind.PROPOSAL and message.validator != self.proposer(
            message.height, message.round
        ):
            raise NotProposerError("proposal from a validator that is not the proposer")
        verify_message_signature(message, self._network_id)
        if (
            self._keypair is not None
            and message.validator == self._keypair.public_key
            and book is self._book
        ):
            self._check_own_signature(message)
        earlier = book.add(message)
        if earlier is not None:
            self._report_equivocation(book, earlier, message)
        elif book is self._book and message.kind is MessageKind.PROPOSAL:
            self._request_validation(message)

    def _check_own_signature(self, message: ConsensusMessage) -> None:
        """`ForeignOwnSignature` for a message of our key at our height that we did not sign.
        Rounds before those the signing state keeps may hold messages signed before a restart,
        so they prove nothing; neither does the next height's book (a restarted core runs lower
        heights while its signing state waits: finality.py). One event per height."""
        signed = self._signed.get((message.kind, message.round))
        if signed is not None and signed.same_body(message):
            return
        if signed is None and message.round <= self._round - SIGNING_STATE_ROUNDS_KEPT:
            return
        if self._foreign_signature_height == self._height:
            return
        self._foreign_signature_height = self._height
        assert self._height is not None
        kind = message.kind.name.lower()
        self._events.append(ForeignOwnSignature(self._height, message.round, kind))

    def _report_equivocation(
        self, book: _HeightBook, earlier: ConsensusMessage, later: ConsensusMessage
    ) -> None:
        slot = (later.validator, later.kind, later.round)
        if slot in book.equivocations_reported:
            return  # one piece of evidence per slot is enough, and bounds the events
        book.equivocations_reported.add(slot)
        evidence = Evidence(first=earlier.without_value(), second=later.without_value())
        self._events.append(EquivocationDetected(evidence))

    def _request_validation(self, proposal: ConsensusMessage) -> None:
        assert proposal.value_id is not None and proposal.value is not None
        if self._keypair is None or proposal.value_id in self._validation_requested:
            return
        if proposal.value_id in self._validity:
            return  # our own proposal
        self._validation_requested.add(proposal.value_id)
        self._events.append(
            ValidationRequested(proposal.height, proposal.round, proposal.value_id, proposal.value)
        )

    def _reject(self, error: RemoteProtocolError) -> None:
        if len(self._events) >= CONSENSUS_EVENTS_QUEUED_MAX:
            self._rejections_dropped += 1
            return
        self._events.append(MessageRejected(error.code, error.message))

    # --- broadcasting our own messages -------------------------------------------------------

    def _send(self, message: ConsensusMessage) -> None:
        if self._signing_halted:
            self.signatures_withheld += 1
            return
        slot = (message.kind, message.round)
        signed = self._signed.get(slot)
        if signed is not None:
            # Signed before (in this run or before a restart): the same body is already in the
            # book and re-broadcast; a different one would be equivocation, so it never leaves.
            self.conflicting_signatures_refused += not signed.same_body(message)
            return
        self._signed[slot] = message
        if message.kind is MessageKind.PRECOMMIT and message.value_id is not None:
            self._keep_precommit(message)
        # Our own message counts like any other (the paper's broadcast includes ourselves).
        self._book.add(message)
        self._own_messages.append(message)
        self._outbox.append(message.encode())

    def _keep_precommit(self, message: ConsensusMessage) -> None:
        """Keep our precommit for a value with the value (the round's proposal holds it: a
        precommit follows a proposal and 2f+1 prevotes for its id, line 36)."""
        for proposal in self._book.proposals():
            if proposal.value_id == message.value_id and proposal.value is not None:
                self._precommits_kept.append((message, proposal.value))
                del self._precommits_kept[: -limits.SETTLEMENT_PRECOMMITS_KEPT_MAX]
                self._precommits_unsaved.append((message, proposal.value))
                return

    def old_precommits(self, above: int) -> list[tuple[ConsensusMessage, bytes]]:
        """Our non-nil precommits (signed, with their values) of the epoch the last
        `enter_epoch` ended, at heights above `above`, oldest first."""
        return [(m, value) for m, value in self._old_precommits if m.height > above]

    def _broadcast_proposal(self, value: bytes, valid_round: int) -> None:
        assert self._keypair is not None and self._height is not None
        self._send(
            sign_proposal(
                self._keypair,
                self._network_id,
                self._height,
                self._round,
                value,
                valid_round,
                epoch=self._epoch,
            )
        )

    def _broadcast_vote(self, kind: MessageKind, value_id: bytes | None) -> None:
        if self._keypair is None or self._height is None:
            return  # an observer follows the rules silently
        self._send(
            sign_vote(
                self._keypair,
                self._network_id,
                kind,
                self._height,
                self._round,
                value_id,
                epoch=self._epoch,
            )
        )

    def _rebroadcast(self, now: float) -> None:
        # Everything we sent at this height: earlier rounds matter too, since a peer still in
        # an earlier round may need our vote there to reach its quorum (lines 34, 44, 47), a
        # POL (line 28) or a decision (line 49). At most 3 messages per round.
        queued = set(self._outbox)
        for message in [*self._own_messages, *self._pol_messages()]:
            encoded = message.encode()
            if encoded not in queued:
                queued.add(encoded)
                self._outbox.append(encoded)
        self._rebroadcast_at = now + self._config.rebroadcast_interval_s

    def _pol_messages(self) -> list[ConsensusMessage]:
        """The prevotes behind our lock and our valid value, relayed for peers that missed
        them: the paper's gossip guarantees every correct node eventually receives what one
        correct node received, and lines 28-29 of peers depend on these POLs."""
        relayed: list[ConsensusMessage] = []
        for round, value in {
            self._locked_round: self._locked_value,
            self._valid_round: self._valid_value,
        }.items():
            book = self._book.rounds.get(round)
            if book is None or value is None:
                continue
            for vote in book.votes_for(MessageKind.PREVOTE, crypto.sha256(value)):
                if self._keypair is None or vote.validator != self._keypair.public_key:
                    relayed.append(vote)
        return relayed

    # --- the algorithm ----------------------------------------------------------------------

    def _start_round(self, round: int, now: float) -> None:
        """StartRound (lines 11-21)."""
        assert self._height is not None
        self._round = round  # line 12
        self._step = _Step.PROPOSE  # line 13
        self._awaiting_value = False
        self._timers = []  # every pending timeout names an older round: all would be no-ops
        if round > 0:
            self._events.append(RoundAdvanced(self._height, round))
        if self._keypair is not None and self.proposer(self._height, round) == (
            self._keypair.public_key
        ):  # line 14
            if self._valid_value is not None:  # lines 15-16
                self._broadcast_proposal(self._valid_value, self._valid_round)  # line 19
            else:  # line 18: getValue() is asked of the application
                self._awaiting_value = True
                self._events.append(ValueRequested(self._height, round))
        self._schedule(TimeoutKind.PROPOSE, now)  # line 21 (for the proposer too, see above)

    def _schedule(self, kind: TimeoutKind, now: float) -> None:
        assert self._height is not None
        deadline = now + self._config.timeout_s(kind, self._round)
        self._timers.append(_Timer(deadline, kind, self._height, self._round))

    def _on_timeout(self, timer: _Timer, now: float) -> None:
        if (timer.height, timer.round) != (self._height, self._round) or self._decided:
            return
        if timer.kind is TimeoutKind.PROPOSE and self._step is _Step.PROPOSE:  # lines 57-60
            self._broadcast_vote(MessageKind.PREVOTE, None)
            self._step = _Step.PREVOTE
        elif timer.kind is TimeoutKind.PREVOTE and self._step is _Step.PREVOTE:  # lines 61-64
            self._broadcast_vote(MessageKind.PRECOMMIT, None)
            self._step = _Step.PRECOMMIT
        elif timer.kind is TimeoutKind.PRECOMMIT:  # lines 65-67
            self._start_round(self._round + 1, now)

    def _is_valid(self, value_id: bytes) -> bool | None:
        """valid(v): True, False, or None while the application has not answered."""
        if self._keypair is None:
            return True  # observers: see the module docstring
        return self._validity.get(value_id)

    def _run_rules(self, now: float) -> None:
        """Fire upon-rules until none applies (the paper runs them atomically)."""
        for _ in range(CONSENSUS_RULE_FIRINGS_PER_INPUT_MAX):
            if self._height is None or self._decided:
                return
            fired = (
                self._try_decide()
                or self._try_round_skip(now)
                or self._try_prevote()
                or self._try_schedule_prevote_timeout(now)
                or self._try_precommit_value()
                or self._try_precommit_nil()
                or self._try_schedule_precommit_timeout(now)
            )
            if not fired:
                return

    def _try_decide(self) -> bool:
        """Line 49: a proposal and 2f+1 precommits for its id, in any round."""
        for round, book in self._book.rounds.items():
            proposal = book.proposal
            if proposal is None or book.precommits_for(proposal.value_id) < self._quorum:
                continue
            assert proposal.value_id is not None and proposal.value is not None
            if self._is_valid(proposal.value_id) is not True:  # line 50
                continue
            precommits = sorted(
                (vote.validator, vote.signature)
                for vote in book.votes_for(MessageKind.PRECOMMIT, proposal.value_id)
            )
            assert self._height is not None
            self._decide(
                CheckpointBundle(
                    self._height, round, proposal.value, tuple(precommits), epoch=self._epoch
                )
            )
            return True
        return False

    def _decide(self, bundle: CheckpointBundle) -> None:
        """Lines 51-53; the move to the next height waits for `start_height` (see above)."""
        self._decided = True
        self._timers = []
        self._rebroadcast_at = None
        self._bundles[bundle.height] = bundle
        while len(self._bundles) > CONSENSUS_BUNDLES_KEPT_MAX:
            del self._bundles[min(self._bundles)]
        self._events.append(Decided(bundle.height, bundle.round, bundle.value, bundle))

    def _try_round_skip(self, now: float) -> bool:
        """Line 55: f+1 senders of any message in a higher round make us join that round."""
        higher = [
            round
            for round, book in self._book.rounds.items()
            if round > self._round and len(book.senders) >= self._round_skip
        ]
        if not higher:
            return False
        self._start_round(max(higher), now)  # line 56
        return True

    def _try_prevote(self) -> bool:
        """Lines 22-27 (validRound -1) and 28-33 (a proposal backed by a POL in round vr)."""
        book = self._book.rounds.get(self._round)
        if self._step is not _Step.PROPOSE or book is None or book.proposal is None:
            return False
        proposal = book.proposal
        value_id, valid_round = proposal.value_id, proposal.valid_round
        assert value_id is not None
        if valid_round == -1:  # line 22
            lock_allows = self._locked_round == -1 or self._locked_value_id() == value_id
        else:  # line 28: 0 <= vr < round_p was checked when the message was parsed
            pol_book = self._book.rounds.get(valid_round)
            if pol_book is None or pol_book.prevotes_for(value_id) < self._quorum:
                return False
            lock_allows = self._locked_round <= valid_round or self._locked_value_id() == value_id
        validity = self._is_valid(value_id)
        if lock_allows and validity is None:
            return False  # wait for valid(v); the propose timeout still runs
        vote = value_id if lock_allows and validity else None  # lines 23-26 / 29-32
        self._broadcast_vote(MessageKind.PREVOTE, vote)
        self._step = _Step.PREVOTE  # lines 27 / 33
        return True

    def _locked_value_id(self) -> bytes | None:
        return None if self._locked_value is None else crypto.sha256(self._locked_value)

    def _try_schedule_prevote_timeout(self, now: float) -> bool:
        """Line 34: 2f+1 prevotes of any kind, for the first time in this round."""
        book = self._book.rounds.get(self._round)
        if self._step is not _Step.PREVOTE or book is None or (34, self._round) in self._fired:
            return False
        if len(book.prevotes) < self._quorum:
            return False
        self._fired.add((34, self._round))
        self._schedule(TimeoutKind.PREVOTE, now)  # line 35
        return True

    def _try_precommit_value(self) -> bool:
        """Line 36: the proposal and 2f+1 prevotes for it, for the first time in this round."""
        book = self._book.rounds.get(self._round)
        if self._step < _Step.PREVOTE or book is None or book.proposal is None:
            return False
        proposal = book.proposal
        assert proposal.value_id is not None and proposal.value is not None
        if (36, self._round) in self._fired or book.prevotes_for(proposal.value_id) < self._quorum:
            return False
        if self._is_valid(proposal.value_id) is not True:
            return False
        self._fired.add((36, self._round))
        if self._step is _Step.PREVOTE:  # line 37
            self._locked_value = proposal.value  # line 38
            self._locked_round = self._round  # line 39
            self._broadcast_vote(MessageKind.PRECOMMIT, proposal.value_id)  # line 40
            self._step = _Step.PRECOMMIT  # line 41
        self._valid_value = proposal.value  # line 42
        self._valid_round = self._round  # line 43
        return True

    def _try_precommit_nil(self) -> bool:
        """Line 44: 2f+1 nil prevotes while in the prevote step."""
        book = self._book.rounds.get(self._round)
        if self._step is not _Step.PREVOTE or book is None:
            return False
        if book.prevotes_for(None) < self._quorum:
            return False
        self._broadcast_vote(MessageKind.PRECOMMIT, None)  # line 45
        self._step = _Step.PRECOMMIT  # line 46
        return True

    def _try_schedule_precommit_timeout(self, now: float) -> bool:
        """Line 47: 2f+1 precommits of any kind, for the first time in this round."""
        book = self._book.rounds.get(self._round)
        if book is None or (47, self._round) in self._fired:
            return False
        if len(book.precommits) < self._quorum:
            return False
        self._fired.add((47, self._round))
        self._schedule(TimeoutKind.PRECOMMIT, now)  # line 48
        return True
