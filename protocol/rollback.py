"""Council rollback certificates and the epoch history they make (sans-I/O).

A network-wide rollback is a council decision. Each member signs a `RollbackVote` naming the
epoch it ends (`from_epoch`), the epoch it starts (`new_epoch = from_epoch + 1`), the final
height H to return to, the checkpoint id of the final cut at H (so the vote is about one exact
history) and a short reason. A quorum of the genesis council (the bundles' quorum rule, 2f+1)
signing the same body is a `RollbackCertificate`, verifiable offline with the genesis keys.

Holding a certificate, a node reverts to H and enters `new_epoch`; consensus then decides
height H+1 onwards in that epoch. `EpochHistory` is the ordered list of accepted certificates
and the rules they imply: the current epoch, the height each ended epoch ended at, and which
checkpoint bundles are still admissible (a bundle of epoch e above the height that ended e is
refused from any peer, so reverted heights never come back).

Byte layouts and rules: docs/PROTOCOL.md, "Epochs and rollback certificates".
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from . import crypto, encoding, limits
from .codes import RejectCode
from .consensus import (
    CONSENSUS_HEIGHT_MAX,
    CheckpointBundle,
    MessageKind,
    check_quorum_signers,
    decode_message,
    quorum_size,
    verify_message_signature,
)
from .errors import BadSignatureError, LocalProtocolError, RemoteProtocolError

#: Every rollback signature covers this tag, then the 32-byte network id, then the canonical
#: encoding of the vote body: it can never be replayed as a consensus or op signature, nor on
#: another network.
DOMAIN_TAG = b"swarmd/rollback/v1"
BODY_TYPE = "rollback"

_BODY_KEYS = frozenset({"type", "from_epoch", "new_epoch", "height", "checkpoint_id", "reason"})
_VOTE_KEYS = frozenset({"body", "signer", "signature"})
_CERTIFICATE_KEYS = frozenset({"body", "signatures"})


# --- errors ----------------------------------------------------------------------------------


class RollbackError(RemoteProtocolError):
    code = "invalid_rollback"


class MalformedRollbackError(RollbackError):
    """Bytes that are not a rollback vote or certificate in canonical form."""

    code = "rollback_malformed"


class RollbackUnknownSignerError(RollbackError):
    code = "rollback_unknown_signer"


class RollbackDuplicateSignerError(RollbackError):
    code = "rollback_duplicate_signer"


class RollbackQuorumError(RollbackError):
    code = "rollback_no_quorum"


class RollbackSignatureError(RollbackError):
    code = "rollback_bad_signature"


class RollbackEpochError(RollbackError):
    """A certificate that does not end the current epoch (stale, or one ahead of us)."""

    code = "rollback_wrong_epoch"


class RollbackCheckpointMismatchError(RollbackError):
    """A certificate whose checkpoint id at H is not our final checkpoint at H."""

    code = "rollback_checkpoint_mismatch"


class BundleRevertedError(RollbackError):
    """A bundle of an ended epoch above the height a rollback certificate ended it at."""

    code = "bundle_reverted"


class BundleFutureEpochError(RollbackError):
    """A bundle of an epoch we hold no certificate for yet."""

    code = "bundle_future_epoch"


class BundleBeforeEpochError(RollbackError):
    """A bundle of epoch e at or below the height its epoch started after: no such bundle can
    come from an honest quorum, heights up to H belong to the earlier epoch."""

    code = "bundle_before_epoch"


class EpochHistoryFullError(LocalProtocolError):
    code = "epoch_history_full"


# --- votes and certificates ------------------------------------------------------------------


@dataclass(frozen=True)
class RollbackBody:
    """What a council member signs: end `from_epoch` at final height `height`, whose final
    checkpoint id is `checkpoint_id` (empty for height 0, genesis), and start `new_epoch`."""

    from_epoch: int
    height: int
    checkpoint_id: bytes
    reason: str

    @property
    def new_epoch(self) -> int:
        return self.from_epoch + 1

    def to_obj(self) -> dict[str, Any]:
        return {
            "type": BODY_TYPE,
            "from_epoch": self.from_epoch,
            "new_epoch": self.new_epoch,
            "height": self.height,
            "checkpoint_id": self.checkpoint_id,
            "reason": self.reason,
        }

    def signing_bytes(self, network_id: bytes) -> bytes:
        return DOMAIN_TAG + network_id + encoding.encode(self.to_obj())

    def check(self) -> None:
        """Raise MalformedRollbackError unless every field is within its bounds."""
        _parse_body(self.to_obj())


def _int(obj: dict[str, Any], key: str, high: int) -> int:
    value = obj[key]
    if type(value) is not int or not 0 <= value <= high:  # bool is not an int here
        raise MalformedRollbackError(f"{key} must be an int in [0, {high}]")
    return value


def _key_and_signature(signer: Any, signature: Any) -> tuple[bytes, bytes]:
    if type(signer) is not bytes or len(signer) != limits.PUBLIC_KEY_SIZE_BYTES:
        raise MalformedRollbackError("a signer is a 32-byte public key")
    if type(signature) is not bytes or len(signature) != limits.SIGNATURE_SIZE_BYTES:
        raise MalformedRollbackError("a signature is 64 bytes")
    return signer, signature


def _parse_body(obj: Any) -> RollbackBody:
    if not isinstance(obj, dict) or set(obj) != _BODY_KEYS or obj["type"] != BODY_TYPE:
        raise MalformedRollbackError("a rollback body is a map with the rollback fields")
    from_epoch = _int(obj, "from_epoch", limits.EPOCH_MAX - 1)
    if _int(obj, "new_epoch", limits.EPOCH_MAX) != from_epoch + 1:
        raise MalformedRollbackError("new_epoch must be from_epoch + 1")
    height = _int(obj, "height", CONSENSUS_HEIGHT_MAX)
    checkpoint_id, reason = obj["checkpoint_id"], obj["reason"]
    expected_size = 0 if height == 0 else limits.HASH_SIZE_BYTES
    if type(checkpoint_id) is not bytes or len(checkpoint_id) != expected_size:
        raise MalformedRollbackError("checkpoint_id is 32 bytes (empty for height 0)")
    if type(reason) is not str or len(reason.encode()) > limits.ROLLBACK_REASON_SIZE_BYTES_MAX:
        raise MalformedRollbackError(
            f"reason must be text of at most {limits.ROLLBACK_REASON_SIZE_BYTES_MAX} bytes"
        )
    return RollbackBody(from_epoch, height, checkpoint_id, reason)


def _decode(data: bytes, size_max: int, keys: frozenset[str]) -> dict[str, Any]:
    try:
        obj = encoding.decode(data, size_max=size_max)
    except RemoteProtocolError as exc:
        raise MalformedRollbackError(f"rollback bytes: {exc.message}") from exc
    if not isinstance(obj, dict) or set(obj) != keys:
        raise MalformedRollbackError(f"expected a map of {sorted(keys)}")
    return obj


@dataclass(frozen=True)
class RollbackVote:
    """One council member's signature over a rollback body."""

    body: RollbackBody
    signer: bytes
    signature: bytes

    def encode(self) -> bytes:
        return encoding.encode(
            {"body": self.body.to_obj(), "signer": self.signer, "signature": self.signature}
        )

    @classmethod
    def decode(cls, data: bytes) -> RollbackVote:
        """Parse a vote (signature not checked). Raises MalformedRollbackError."""
        obj = _decode(data, limits.ROLLBACK_VOTE_SIZE_BYTES_MAX, _VOTE_KEYS)
        signer, signature = _key_and_signature(obj["signer"], obj["signature"])
        return cls(_parse_body(obj["body"]), signer, signature)


def sign_rollback_vote(
    keypair: crypto.KeyPair, network_id: bytes, body: RollbackBody
) -> RollbackVote:
    """Sign `body` as one council member. Raises LocalProtocolError for an out-of-bounds body."""
    try:
        body.check()
    except MalformedRollbackError as exc:
        raise LocalProtocolError(f"cannot sign this rollback: {exc.message}") from exc
    signature = keypair.sign(body.signing_bytes(network_id))
    return RollbackVote(body, keypair.public_key, signature)


def verify_vote(vote: RollbackVote, network_id: bytes, validators: list[bytes]) -> None:
    """Raise a RollbackError subclass unless a council member signed this vote's body."""
    if vote.signer not in set(validators):
        raise RollbackUnknownSignerError("a rollback vote signed by a non-member")
    try:
        crypto.verify(vote.signer, vote.body.signing_bytes(network_id), vote.signature)
    except BadSignatureError as exc:
        raise RollbackSignatureError("a rollback vote signature does not verify") from exc


@dataclass(frozen=True)
class RollbackCertificate:
    """A rollback body with the signatures of a quorum of the council, sorted by signer."""

    body: RollbackBody
    signatures: tuple[tuple[bytes, bytes], ...]  # (signer key, signature), ascending by key

    @property
    def from_epoch(self) -> int:
        return self.body.from_epoch

    @property
    def new_epoch(self) -> int:
        return self.body.new_epoch

    @property
    def height(self) -> int:
        return self.body.height

    def encode(self) -> bytes:
        return encoding.encode(
            {
                "body": self.body.to_obj(),
                "signatures": [[key, signature] for key, signature in self.signatures],
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> RollbackCertificate:
        """Parse a certificate (signatures not checked). Raises RollbackError subclasses."""
        obj = _decode(data, limits.ROLLBACK_CERTIFICATE_SIZE_BYTES_MAX, _CERTIFICATE_KEYS)
        body, items = _parse_body(obj["body"]), obj["signatures"]
        if not isinstance(items, list) or not 1 <= len(items) <= limits.COUNCIL_SIZE_MAX:
            raise MalformedRollbackError("signatures must list 1..COUNCIL_SIZE_MAX entries")
        pairs: list[tuple[bytes, bytes]] = []
        for item in items:
            if not isinstance(item, list) or len(item) != 2:
                raise MalformedRollbackError("a signature entry is [signer, signature]")
            pairs.append(_key_and_signature(item[0], item[1]))
        for (first, _), (second, _) in itertools.pairwise(pairs):
            if first == second:
                raise RollbackDuplicateSignerError("a signer appears twice")
            if first > second:
                raise MalformedRollbackError("signatures must be sorted by signer")
        return cls(body, tuple(pairs))


def verify_certificate(
    certificate: RollbackCertificate, network_id: bytes, validators: list[bytes]
) -> None:
    """Raise a RollbackError subclass unless a quorum of distinct `validators` (the genesis
    council) signed the certificate's body on this network. Needs nothing else."""
    check_quorum_signers(
        [key for key, _signature in certificate.signatures],
        validators,
        unknown=RollbackUnknownSignerError("a rollback signature of a non-member"),
        duplicate=RollbackDuplicateSignerError("a signer appears twice"),
        too_few=lambda count, quorum: RollbackQuorumError(
            f"{count} rollback signatures, a quorum is {quorum}"
        ),
    )
    certificate.body.check()
    message = certificate.body.signing_bytes(network_id)
    for key, signature in certificate.signatures:
        try:
            crypto.verify(key, message, signature)
        except BadSignatureError as exc:
            raise RollbackSignatureError("a rollback signature does not verify") from exc


class RollbackAssembler:
    """Collects verified votes; yields a certificate once a quorum signed one body.

    Each member's latest vote counts (a member who changes its mind replaces its vote), so the
    assembler holds at most one vote per council member.
    """

    def __init__(self, network_id: bytes, validators: list[bytes]) -> None:
        self._network_id = network_id
        self._validators = list(validators)
        self._quorum = quorum_size(len(validators))
        self._latest: dict[bytes, RollbackVote] = {}

    def add(self, vote: RollbackVote) -> RollbackCertificate | None:
        """Verify and record `vote`; return the certificate of its body once a quorum signed
        that body (again on every later vote for it). Raises RollbackError subclasses."""
        verify_vote(vote, self._network_id, self._validators)
        self._latest[vote.signer] = vote
        agreeing = sorted(
            (signer, latest.signature)
            for signer, latest in self._latest.items()
            if latest.body == vote.body
        )
        if len(agreeing) < self._quorum:
            return None
        return RollbackCertificate(vote.body, tuple(agreeing))

    def votes(self) -> list[RollbackVote]:
        """Each member's latest vote, by signer (for `council status`)."""
        return [self._latest[signer] for signer in sorted(self._latest)]


# --- the epoch history -----------------------------------------------------------------------


class EpochHistory:
    """The accepted rollback certificates in order: certificate i ended epoch i.

    Immutable; `accept` returns the longer history. Each epoch e owns a range of heights: from
    the height after the one that started it (1 for epoch 0) up to the lowest rollback height
    of the certificates that ended e or any later epoch (no end for the current epoch). A
    bundle is admissible exactly when its height is in its epoch's range, so every height has
    one admissible epoch and reverted heights never come back.
    """

    def __init__(
        self,
        network_id: bytes,
        validators: list[bytes],
        certificates_max: int = limits.EPOCH_HISTORY_CERTIFICATES_MAX,
    ) -> None:
        self._network_id = network_id
        self._validators = list(validators)
        self._certificates_max = certificates_max
        self._certificates: tuple[RollbackCertificate, ...] = ()

    @property
    def certificates(self) -> tuple[RollbackCertificate, ...]:
        return self._certificates

    @property
    def current_epoch(self) -> int:
        return len(self._certificates)

    def ended_at(self, epoch: int) -> int | None:
        """The rollback height H of the certificate that ended `epoch` (None: not ended)."""
        if 0 <= epoch < len(self._certificates):
            return self._certificates[epoch].height
        return None

    def heights_of(self, epoch: int) -> tuple[int, int | None]:
        """(first, last) height a bundle of `epoch` may have; last None means unbounded."""
        if not 0 <= epoch <= self.current_epoch:
            raise LocalProtocolError(f"epoch {epoch} is not in this history")
        first = 1 if epoch == 0 else self._certificates[epoch - 1].height + 1
        ends = [certificate.height for certificate in self._certificates[epoch:]]
        return first, min(ends, default=None)

    def check_bundle(self, bundle: CheckpointBundle) -> None:
        """Raise unless `bundle`'s epoch owns its height (see the class docstring). The bundle's
        signatures are `consensus.verify_bundle`'s business, checked separately."""
        if bundle.epoch > self.current_epoch:
            raise BundleFutureEpochError(
                f"bundle of epoch {bundle.epoch}; we hold certificates up to {self.current_epoch}"
            )
        first, last = self.heights_of(bundle.epoch)
        if last is not None and bundle.height > last:
            raise BundleRevertedError(
                f"height {bundle.height} of epoch {bundle.epoch} was reverted to {last}"
            )
        if bundle.height < first:
            raise BundleBeforeEpochError(
                f"epoch {bundle.epoch} starts at height {first}, not {bundle.height}"
            )

    def bundle_admissible(self, bundle: CheckpointBundle) -> bool:
        try:
            self.check_bundle(bundle)
        except RollbackError:
            return False
        return True

    def accept(
        self,
        certificate: RollbackCertificate,
        final_height: int,
        checkpoint_id_at_height: bytes | None,
    ) -> EpochHistory:
        """The history with `certificate` appended, after checking it.

        The certificate must verify and end the current epoch. When H <= `final_height`,
        `checkpoint_id_at_height` (our final checkpoint id at H, b"" for H = 0) must be the
        certificate's. A node behind (H > final_height, pass None) may accept it too: a quorum
        signed that checkpoint id at H, so at least one correct member finalized it; the node
        catches up to H with bundles of the old epoch (still admissible up to H) and checks
        the checkpoint with `check_final` when it gets there. Accepting early is what keeps a
        lagging node from finalizing the reverted heights above H from a peer that was not
        rolled back.
        """
        verify_certificate(certificate, self._network_id, self._validators)
        if certificate.from_epoch != self.current_epoch:
            raise RollbackEpochError(
                f"certificate ends epoch {certificate.from_epoch}; ours is {self.current_epoch}"
            )
        behind = certificate.height > final_height
        if not behind and checkpoint_id_at_height != certificate.body.checkpoint_id:
            raise RollbackCheckpointMismatchError(
                f"our final checkpoint at {certificate.height} is not the certificate's"
            )
        if len(self._certificates) >= self._certificates_max:
            raise EpochHistoryFullError(f"{self._certificates_max} certificates already held")
        history = EpochHistory(self._network_id, self._validators, self._certificates_max)
        history._certificates = (*self._certificates, certificate)
        return history

    @classmethod
    def restore(
        cls,
        network_id: bytes,
        validators: list[bytes],
        certificates: list[RollbackCertificate],
        certificates_max: int = limits.EPOCH_HISTORY_CERTIFICATES_MAX,
    ) -> EpochHistory:
        """Rebuild a history from stored certificates (in the order accepted). Each must
        verify and end the epoch the previous one started; the checkpoint checks of `accept`
        were made when they were first accepted. Raises RollbackError subclasses."""
        if len(certificates) > certificates_max:
            raise EpochHistoryFullError(
                f"{len(certificates)} certificates, at most {certificates_max}"
            )
        history = cls(network_id, validators, certificates_max)
        for certificate in certificates:
            verify_certificate(certificate, network_id, validators)
            if certificate.from_epoch != history.current_epoch:
                raise RollbackEpochError(
                    f"stored certificate ends epoch {certificate.from_epoch}, "
                    f"expected {history.current_epoch}"
                )
            history._certificates = (*history._certificates, certificate)
        return history

    def check_final(self, height: int, checkpoint_id: bytes) -> None:
        """Raise RollbackCheckpointMismatchError when the latest certificate names `height`
        with another checkpoint id: a node that accepted it while behind calls this when its
        final height reaches H (a mismatch means its history diverged from the council's)."""
        if not self._certificates:
            return
        latest = self._certificates[-1].body
        if latest.height == height and latest.checkpoint_id != checkpoint_id:
            raise RollbackCheckpointMismatchError(
                f"final checkpoint at {height} differs from the rollback certificate's"
            )


# --- settlement evidence (docs/PROTOCOL.md "Settlement"; branch settle) ------------------------


class SettlementEvidenceError(RollbackError):
    """A settled value whose precommit does not prove a member precommitted it above H in the
    ended epoch."""

    code = RejectCode.SETTLEMENT_BAD_EVIDENCE


def verify_settled(
    precommit: bytes, value: bytes, network_id: bytes, council: list[bytes], epoch: int, height: int
) -> bytes:
    """Check one settled `(precommit, value)`: a council member's signed precommit of epoch
    `epoch` (the ended one) at a height above `height` (its H) for sha256(`value`). Returns
    the value id; raises SettlementEvidenceError (or the message's own decoding errors)."""
    message = decode_message(precommit)
    if message.kind is not MessageKind.PRECOMMIT or message.value_id is None:
        raise SettlementEvidenceError("a settled value's evidence is a non-nil precommit")
    if message.epoch != epoch or message.height <= height:
        raise SettlementEvidenceError(f"a precommit not of epoch {epoch} above height {height}")
    if message.validator not in council:
        raise SettlementEvidenceError("a precommit of a non-member")
    if crypto.sha256(value) != message.value_id:
        raise SettlementEvidenceError("a settled value is not the value precommitted")
    verify_message_signature(message, network_id)
    return message.value_id
