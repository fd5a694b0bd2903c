"""The signing state ("last sign state", like CometBFT's privval): what a validator signed at
its current height, so that after a crash it never signs a second, different message for a
(height, round, type) and keeps its lock. Codec, checks and the compact form whose kept
precommits are stored once each (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import crypto, encoding, limits
from ..codes import RejectCode
from ..errors import LocalProtocolError, RemoteProtocolError
from .messages import (
    CONSENSUS_HEIGHT_MAX,
    CONSENSUS_MESSAGE_OVERHEAD_BYTES_MAX,
    CONSENSUS_ROUND_MAX,
    CONSENSUS_VALUE_SIZE_BYTES_MAX,
    ConsensusMessage,
    ConsensusMessageError,
    MessageKind,
    _int_field,
    decode_message,
    verify_message_signature,
)

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

assert SIGNING_STATE_PRECOMMIT_IDS_MAX <= limits.ENCODED_CONTAINER_ENTRIES_MAX
assert SIGNING_STATE_COMPACT_SIZE_BYTES_MAX <= SIGNING_STATE_SIZE_BYTES_MAX
assert CONSENSUS_MESSAGE_OVERHEAD_BYTES_MAX < KEPT_PRECOMMIT_SIZE_BYTES_MAX
assert SIGNING_STATE_MESSAGES_MAX <= limits.ENCODED_CONTAINER_ENTRIES_MAX


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
