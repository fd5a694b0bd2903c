"""Peer messages of the swarm protocol (inside frames; see framing.py).

Every message is a canonical msgpack array whose first item is the message type:

| type | name           | items after the type                                       |
|-----:|----------------|------------------------------------------------------------|
| 1    | OPS            | list of op envelopes (bytes), 1..OPS_PER_MESSAGE_MAX       |
| 2    | FETCH          | list of op ids (32 bytes), 1..FETCH_OPS_PER_REQUEST_MAX    |
| 3    | SYNC_HELLO     | session id (int), final height (int), reconcile message    |
| 4    | RECONCILE      | session id (int), from_initiator (bool), message (bytes)   |
| 5    | CONSENSUS      | an encoded consensus message (bytes)                       |
| 6    | BUNDLES        | list of encoded checkpoint bundles (bytes)                 |
| 7    | BUNDLE_REQUEST | first height wanted (int), count (int)                     |
| 8    | SYNC_DONE      | session id (int)                                           |
| 9    | CHECKPOINT_OPS | a final height (int): send every op that became final there |
| 10   | EVIDENCE       | list of encoded equivocation evidence (bytes)              |
| 11   | HANDLE_CONFLICT| handle, winning claim id, losing claim ids, final height   |
| 12   | ANNOUNCE       | final height (int), op ids (32 bytes), 1..ANNOUNCE_IDS_MAX |
| 13   | SNAPSHOT_OFFER | manifest (bytes), checkpoint bundle of its height (bytes)  |
| 14   | CHUNK_REQUEST  | manifest id (32 bytes), chunk index (int)                  |
| 15   | CHUNK          | manifest id (32 bytes), chunk index (int), chunk (bytes)   |
| 16   | CHUNK_MISSING  | manifest id (32 bytes), chunk index (int)                  |
| 17   | ROLLBACK       | rollback votes (bytes), rollback certificates (bytes)      |

ROLLBACK carries encoded `rollback.RollbackVote`s and `rollback.RollbackCertificate`s (each
list 0..ROLLBACK_ITEMS_PER_MESSAGE_MAX, not both empty); the receiver decodes and verifies them.

SNAPSHOT_OFFER is the only message that may exceed `limits.ENCODED_VALUE_SIZE_BYTES_MAX` (a
manifest lists up to SNAPSHOT_CHUNKS_MAX hashes): up to SNAPSHOT_OFFER_SIZE_BYTES_MAX.

Decoding a message never raises anything but a `RemoteProtocolError` subclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from . import encoding, limits
from .codes import RejectCode
from .errors import DecodeError, RemoteProtocolError
from .snapshot import MANIFEST_SIZE_BYTES_MAX

OPS_PER_MESSAGE_MAX = limits.OPS_PER_MESSAGE_MAX  # why: see limits.py
BUNDLES_PER_MESSAGE_MAX = limits.BUNDLES_PER_MESSAGE_MAX  # why: see limits.py
SESSION_ID_MAX = 2**63 - 1
CONFLICT_LOSERS_PER_MESSAGE_MAX = limits.CONFLICT_LOSERS_PER_MESSAGE_MAX  # why: see limits.py
EVIDENCE_PER_MESSAGE_MAX = limits.EVIDENCE_PER_MESSAGE_MAX  # why: see limits.py
#: Op ids per ANNOUNCE message: as many as one FETCH may ask for, so that the ids one ANNOUNCE
#: names that the receiver lacks always fit one FETCH back (512 x 34 bytes ~ 17 KiB, a frame).
ANNOUNCE_IDS_PER_MESSAGE_MAX = limits.FETCH_OPS_PER_REQUEST_MAX
ROLLBACK_ITEMS_PER_MESSAGE_MAX = limits.ROLLBACK_ITEMS_PER_MESSAGE_MAX  # why: see limits.py

#: A SNAPSHOT_OFFER: the biggest manifest, a bundle of up to the encoded value limit and the
#: array around them.
SNAPSHOT_OFFER_SIZE_BYTES_MAX = MANIFEST_SIZE_BYTES_MAX + limits.ENCODED_VALUE_SIZE_BYTES_MAX + 64
#: Chunk indices are below SNAPSHOT_CHUNKS_MAX.
CHUNK_INDEX_MAX = limits.SNAPSHOT_CHUNKS_MAX - 1
#: The canonical first bytes of a SNAPSHOT_OFFER (a 3-item fixarray, then type 13): only a
#: message starting so is decoded with the larger size limit.
_SNAPSHOT_OFFER_PREFIX = bytes([0x93, 13])

assert OPS_PER_MESSAGE_MAX * limits.OP_ENVELOPE_SIZE_BYTES_MAX < limits.ENCODED_VALUE_SIZE_BYTES_MAX
assert limits.SNAPSHOT_CHUNK_SIZE_BYTES + 128 < limits.ENCODED_VALUE_SIZE_BYTES_MAX
assert SNAPSHOT_OFFER_SIZE_BYTES_MAX <= (
    limits.FRAGMENTS_PER_MESSAGE_MAX * limits.FRAME_SIZE_BYTES_MAX
)


class MessageType(IntEnum):
    OPS = 1
    FETCH = 2
    SYNC_HELLO = 3
    RECONCILE = 4
    CONSENSUS = 5
    BUNDLES = 6
    BUNDLE_REQUEST = 7
    SYNC_DONE = 8
    CHECKPOINT_OPS = 9
    EVIDENCE = 10
    HANDLE_CONFLICT = 11
    ANNOUNCE = 12
    SNAPSHOT_OFFER = 13
    CHUNK_REQUEST = 14
    CHUNK = 15
    CHUNK_MISSING = 16
    ROLLBACK = 17
    SETTLEMENT = 18


class MessageError(RemoteProtocolError):
    code: str = RejectCode.MESSAGE_MALFORMED


@dataclass(frozen=True, slots=True)
class OpsMessage:
    envelopes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class FetchMessage:
    op_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class AnnounceMessage:
    """Lazy relay: the sender admitted these ops and serves them on FETCH; `final_height` is
    the sender's, so that a steady flow of announcements also tells a peer's height."""

    final_height: int
    op_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SyncHelloMessage:
    session_id: int
    final_height: int
    reconcile: bytes


@dataclass(frozen=True, slots=True)
class ReconcileMessage:
    session_id: int
    from_initiator: bool
    payload: bytes


@dataclass(frozen=True, slots=True)
class ConsensusEnvelope:
    payload: bytes


@dataclass(frozen=True, slots=True)
class BundlesMessage:
    bundles: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class BundleRequestMessage:
    first_height: int
    count: int


@dataclass(frozen=True, slots=True)
class SyncDoneMessage:
    session_id: int


@dataclass(frozen=True, slots=True)
class CheckpointOpsRequest:
    height: int


@dataclass(frozen=True, slots=True)
class EvidenceMessage:
    evidence: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class HandleConflictMessage:
    """The `handle.conflict` rejection: at final height `height` the handle is bound to
    `winning_claim`; every claim in `losing_claims` lost. The evidence is the checkpoint bundle
    of that height (signed by a council quorum), which every receiver holds or fetches."""

    handle: str
    winning_claim: bytes
    losing_claims: tuple[bytes, ...]
    height: int


@dataclass(frozen=True, slots=True)
class SnapshotOfferMessage:
    """State sync: the sender cannot serve the bundles asked for (they are below what it
    keeps) and offers its newest snapshot instead: the manifest and the checkpoint bundle of
    its height, which proves the manifest's state root."""

    manifest: bytes
    bundle: bytes


@dataclass(frozen=True, slots=True)
class ChunkRequestMessage:
    manifest_id: bytes
    index: int


@dataclass(frozen=True, slots=True)
class ChunkMessage:
    manifest_id: bytes
    index: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ChunkMissingMessage:
    """The sender does not hold that snapshot (any more) or that chunk."""

    manifest_id: bytes
    index: int


@dataclass(frozen=True, slots=True)
class RollbackMessage:
    """Council rollback votes and certificates, gossiped to every peer (de-duplicated by
    hash on receipt) and served to a peer when it connects."""

    votes: tuple[bytes, ...]
    certificates: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SettlementMessage:
    """Old-epoch precommits (each with the value it precommitted) a council member shows
    after a rollback, relayed once by every node: the new epoch's settlement proposers list
    them (docs/PROTOCOL.md "Settlement")."""

    items: tuple[tuple[bytes, bytes], ...]


Message = (
    OpsMessage
    | FetchMessage
    | SyncHelloMessage
    | ReconcileMessage
    | ConsensusEnvelope
    | BundlesMessage
    | BundleRequestMessage
    | SyncDoneMessage
    | CheckpointOpsRequest
    | EvidenceMessage
    | HandleConflictMessage
    | AnnounceMessage
    | SnapshotOfferMessage
    | ChunkRequestMessage
    | ChunkMessage
    | ChunkMissingMessage
    | RollbackMessage
    | SettlementMessage
)


def encode_message(message: Message) -> bytes:
    if isinstance(message, OpsMessage):
        # Hot (every gossiped op): an int and a list of bytes are canonical as packed, so the
        # generic normalization is skipped.
        return encoding.pack([int(MessageType.OPS), list(message.envelopes)])
    if isinstance(message, AnnounceMessage):
        # Hot as well (every relayed op): a list of 32-byte ids is canonical as packed.
        value = [int(MessageType.ANNOUNCE), int(message.final_height), list(message.op_ids)]
        return encoding.pack(value)
    if isinstance(message, FetchMessage):
        return encoding.encode([MessageType.FETCH, list(message.op_ids)])
    if isinstance(message, SyncHelloMessage):
        value = [MessageType.SYNC_HELLO, message.session_id, message.final_height]
        return encoding.encode([*value, message.reconcile])
    if isinstance(message, ReconcileMessage):
        value = [MessageType.RECONCILE, message.session_id, message.from_initiator]
        return encoding.encode([*value, message.payload])
    if isinstance(message, ConsensusEnvelope):
        if type(message.payload) is bytes:
            # Hot too (every vote, to every peer): an int and bytes are canonical as packed.
            return encoding.pack([int(MessageType.CONSENSUS), message.payload])
        return encoding.encode([MessageType.CONSENSUS, message.payload])
    if isinstance(message, BundlesMessage):
        return encoding.encode([MessageType.BUNDLES, list(message.bundles)])
    if isinstance(message, BundleRequestMessage):
        return encoding.encode([MessageType.BUNDLE_REQUEST, message.first_height, message.count])
    if isinstance(message, HandleConflictMessage):
        return encoding.encode(
            [
                MessageType.HANDLE_CONFLICT,
                message.handle,
                message.winning_claim,
                list(message.losing_claims),
                message.height,
            ]
        )
    if isinstance(message, EvidenceMessage):
        return encoding.encode([MessageType.EVIDENCE, list(message.evidence)])
    if isinstance(message, CheckpointOpsRequest):
        return encoding.encode([MessageType.CHECKPOINT_OPS, message.height])
    if isinstance(message, SnapshotOfferMessage):
        # Packed directly: the manifest may exceed the generic encoder's size limit, and an
        # int and two bytes values are canonical as packed.
        return encoding.pack([int(MessageType.SNAPSHOT_OFFER), message.manifest, message.bundle])
    if isinstance(message, ChunkRequestMessage):
        return encoding.encode([MessageType.CHUNK_REQUEST, message.manifest_id, message.index])
    if isinstance(message, ChunkMessage):
        value = [MessageType.CHUNK, message.manifest_id, message.index, message.data]
        return encoding.encode(value)
    if isinstance(message, ChunkMissingMessage):
        return encoding.encode([MessageType.CHUNK_MISSING, message.manifest_id, message.index])
    if isinstance(message, SettlementMessage):
        items = [[precommit, value] for precommit, value in message.items]
        return encoding.encode([MessageType.SETTLEMENT, items])
    if isinstance(message, RollbackMessage):
        value = [MessageType.ROLLBACK, list(message.votes), list(message.certificates)]
        return encoding.encode(value)
    return encoding.encode([MessageType.SYNC_DONE, message.session_id])


def _int(value: object, low: int, high: int, name: str) -> int:
    if type(value) is not int or not low <= value <= high:
        raise MessageError(f"{name} must be an int in {low}..{high}")
    return value


def _bytes_list(
    value: object, count_max: int, name: str, size: int | None = None
) -> tuple[bytes, ...]:
    if type(value) is not list or not 1 <= len(value) <= count_max:
        raise MessageError(f"{name} must be a list of 1..{count_max} items")
    if not all(type(item) is bytes and (size is None or len(item) == size) for item in value):
        raise MessageError(f"{name} items must be bytes" + (f" of {size}" if size else ""))
    return tuple(value)


#: Items after the type of each message type, by the type's int (decode_message runs on every
#: received message: one dict lookup instead of an enum call and a table built per call).
_ITEMS_BY_TYPE: dict[int, tuple[MessageType, int]] = {
    int(message_type): (message_type, expected)
    for message_type, expected in (
        (MessageType.OPS, 1),
        (MessageType.FETCH, 1),
        (MessageType.SYNC_HELLO, 3),
        (MessageType.RECONCILE, 3),
        (MessageType.CONSENSUS, 1),
        (MessageType.BUNDLES, 1),
        (MessageType.BUNDLE_REQUEST, 2),
        (MessageType.SYNC_DONE, 1),
        (MessageType.CHECKPOINT_OPS, 1),
        (MessageType.EVIDENCE, 1),
        (MessageType.HANDLE_CONFLICT, 4),
        (MessageType.ANNOUNCE, 2),
        (MessageType.SNAPSHOT_OFFER, 2),
        (MessageType.CHUNK_REQUEST, 2),
        (MessageType.CHUNK, 3),
        (MessageType.CHUNK_MISSING, 2),
        (MessageType.ROLLBACK, 2),
        (MessageType.SETTLEMENT, 1),
    )
}
assert set(_ITEMS_BY_TYPE) == {int(message_type) for message_type in MessageType}


def decode_message(data: bytes) -> Message:
    size_max = limits.ENCODED_VALUE_SIZE_BYTES_MAX
    if isinstance(data, bytes) and data[:2] == _SNAPSHOT_OFFER_PREFIX:
        size_max = SNAPSHOT_OFFER_SIZE_BYTES_MAX
    try:
        value = encoding.decode(data, size_max=size_max)
    except DecodeError as exc:
        raise MessageError(f"undecodable message: {exc.message}") from exc
    if type(value) is not list or not value or type(value[0]) is not int:
        raise MessageError("a message is a list starting with its type")
    kind, items = value[0], value[1:]
    known = _ITEMS_BY_TYPE.get(kind)
    if known is None:
        raise MessageError(f"unknown message type {kind}")
    message_type, expected = known
    if len(items) != expected:
        raise MessageError(f"{message_type.name} has {expected} items")
    return _decode_items(message_type, items)


def _decode_items(message_type: MessageType, items: list[object]) -> Message:
    if message_type is MessageType.OPS:
        return OpsMessage(_bytes_list(items[0], OPS_PER_MESSAGE_MAX, "envelopes"))
    if message_type is MessageType.FETCH:
        ids = _bytes_list(items[0], limits.FETCH_OPS_PER_REQUEST_MAX, "ids", limits.HASH_SIZE_BYTES)
        return FetchMessage(ids)
    if message_type is MessageType.ANNOUNCE:
        height = _int(items[0], 0, limits.SEQ_MAX, "final height")
        ids = _bytes_list(items[1], ANNOUNCE_IDS_PER_MESSAGE_MAX, "ids", limits.HASH_SIZE_BYTES)
        return AnnounceMessage(height, ids)
    if message_type is MessageType.SYNC_HELLO:
        session = _int(items[0], 0, SESSION_ID_MAX, "session id")
        height = _int(items[1], 0, limits.SEQ_MAX, "final height")
        if type(items[2]) is not bytes:
            raise MessageError("reconcile payload must be bytes")
        return SyncHelloMessage(session, height, items[2])
    if message_type is MessageType.RECONCILE:
        session = _int(items[0], 0, SESSION_ID_MAX, "session id")
        if type(items[1]) is not bool or type(items[2]) is not bytes:
            raise MessageError("RECONCILE is [session, from_initiator bool, payload bytes]")
        return ReconcileMessage(session, items[1], items[2])
    if message_type is MessageType.CONSENSUS:
        if type(items[0]) is not bytes:
            raise MessageError("consensus payload must be bytes")
        return ConsensusEnvelope(items[0])
    if message_type is MessageType.BUNDLES:
        return BundlesMessage(_bytes_list(items[0], BUNDLES_PER_MESSAGE_MAX, "bundles"))
    if message_type is MessageType.BUNDLE_REQUEST:
        first = _int(items[0], 1, limits.SEQ_MAX, "first height")
        count = _int(items[1], 1, BUNDLES_PER_MESSAGE_MAX, "count")
        return BundleRequestMessage(first, count)
    if message_type is MessageType.HANDLE_CONFLICT:
        handle, winner, losers, at_height = items
        if type(handle) is not str or not 1 <= len(handle) <= limits.HANDLE_LENGTH_MAX:
            raise MessageError("handle must be a short str")
        if type(winner) is not bytes or len(winner) != limits.HASH_SIZE_BYTES:
            raise MessageError("winning claim must be a 32-byte op id")
        lost = _bytes_list(losers, CONFLICT_LOSERS_PER_MESSAGE_MAX, "losing claims", 32)
        return HandleConflictMessage(
            handle, winner, lost, _int(at_height, 1, limits.SEQ_MAX, "height")
        )
    if message_type is MessageType.EVIDENCE:
        return EvidenceMessage(_bytes_list(items[0], EVIDENCE_PER_MESSAGE_MAX, "evidence"))
    if message_type is MessageType.CHECKPOINT_OPS:
        return CheckpointOpsRequest(_int(items[0], 1, limits.SEQ_MAX, "height"))
    if message_type in _STATE_SYNC_TYPES:
        return _decode_state_sync(message_type, items)
    if message_type is MessageType.ROLLBACK:
        return _decode_rollback(items)
    if message_type is MessageType.SETTLEMENT:
        return _decode_settlement(items[0])
    return SyncDoneMessage(_int(items[0], 0, SESSION_ID_MAX, "session id"))


_STATE_SYNC_TYPES = (
    MessageType.SNAPSHOT_OFFER,
    MessageType.CHUNK_REQUEST,
    MessageType.CHUNK,
    MessageType.CHUNK_MISSING,
)


def _decode_state_sync(message_type: MessageType, items: list[object]) -> Message:
    if message_type is MessageType.SNAPSHOT_OFFER:
        manifest, bundle = items
        if type(manifest) is not bytes or not 1 <= len(manifest) <= MANIFEST_SIZE_BYTES_MAX:
            raise MessageError("manifest must be bytes within the manifest size limit")
        if type(bundle) is not bytes or not 1 <= len(bundle) <= limits.ENCODED_VALUE_SIZE_BYTES_MAX:
            raise MessageError("bundle must be bytes within the encoded value limit")
        return SnapshotOfferMessage(manifest, bundle)
    manifest_id = items[0]
    if type(manifest_id) is not bytes or len(manifest_id) != limits.HASH_SIZE_BYTES:
        raise MessageError("manifest id must be 32 bytes")
    index = _int(items[1], 0, CHUNK_INDEX_MAX, "chunk index")
    if message_type is MessageType.CHUNK_REQUEST:
        return ChunkRequestMessage(manifest_id, index)
    if message_type is MessageType.CHUNK_MISSING:
        return ChunkMissingMessage(manifest_id, index)
    data = items[2]
    if type(data) is not bytes or not 1 <= len(data) <= limits.SNAPSHOT_CHUNK_SIZE_BYTES:
        raise MessageError("chunk must be 1..SNAPSHOT_CHUNK_SIZE_BYTES bytes")
    return ChunkMessage(manifest_id, index, data)


def _rollback_list(value: object, size_max: int, name: str) -> tuple[bytes, ...]:
    if type(value) is not list or len(value) > ROLLBACK_ITEMS_PER_MESSAGE_MAX:
        raise MessageError(f"{name} must be a list of 0..{ROLLBACK_ITEMS_PER_MESSAGE_MAX} items")
    if not all(type(item) is bytes and 1 <= len(item) <= size_max for item in value):
        raise MessageError(f"{name} items must be bytes of 1..{size_max}")
    return tuple(value)


def _decode_rollback(items: list[object]) -> Message:
    votes = _rollback_list(items[0], limits.ROLLBACK_VOTE_SIZE_BYTES_MAX, "rollback votes")
    certificates = _rollback_list(
        items[1], limits.ROLLBACK_CERTIFICATE_SIZE_BYTES_MAX, "rollback certificates"
    )
    if not votes and not certificates:
        raise MessageError("a ROLLBACK message carries at least one vote or certificate")
    return RollbackMessage(votes, certificates)


def _decode_settlement(value: object) -> Message:
    if type(value) is not list or not 1 <= len(value) <= ROLLBACK_ITEMS_PER_MESSAGE_MAX:
        raise MessageError(f"settled values must be a list of 1..{ROLLBACK_ITEMS_PER_MESSAGE_MAX}")
    items = []
    for item in value:
        if type(item) is not list or len(item) != 2 or not all(type(x) is bytes for x in item):
            raise MessageError("a settled value is [precommit (bytes), value (bytes)]")
        items.append((item[0], item[1]))
    return SettlementMessage(tuple(items))
