"""Bandwidth: the bytes of every frame to and from each peer, by message class (issue 16).

The core counts each frame once, where it sees it whole: a frame handed to the shell by
`NodeCore.outgoing()` counts as sent, a frame given to `NodeCore.receive_frame()` as received
(before it is decoded, so a frame that turns out malformed counts too). Every byte of a frame
goes to exactly one class, so per peer and direction the classes add up to the frame bytes:

- a batch frame: each message its own length plus its 2-byte length entry, and the 4-byte
  batch header to the class of the first message;
- a fragment frame: all of it to the class of the message it carries, read from the first
  fragment (both transports deliver in order; a later fragment whose first one was not seen,
  and anything that is not a well-formed frame, counts as `control`).

A message's class follows from its type (messages.py: a msgpack array whose first item is the
type). Classes: `consensus` (votes, proposals, evidence), `bundle` (checkpoint bundles and the
catch-up requests for them), `gossip` (ops, announces, fetches, handle conflicts),
`delta_sync` (reconciliation sessions), `state_sync` (snapshot offers and chunks), `control`
(rollback votes and certificates, and what cannot be classified). Peer exchange travels over
HTTP, not over peer links, so it is not in these figures.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass, field
from struct import Struct

from .. import limits
from ..framing import (
    BATCH_HEADER_SIZE_BYTES,
    BATCH_LENGTH_SIZE_BYTES,
    FRAGMENT_HEADER_SIZE_BYTES,
    FRAME_TYPE_BATCH,
    FRAME_TYPE_FRAGMENT,
    FRAME_VERSION,
)
from ..messages import MessageType

#: The classes, in the order of every per-class tuple below (and of the status dicts).
CLASSES = ("consensus", "bundle", "gossip", "delta_sync", "state_sync", "control")
CONSENSUS, BUNDLE, GOSSIP, DELTA_SYNC, STATE_SYNC, CONTROL = range(len(CLASSES))

_CLASS_OF_TYPE = {
    MessageType.CONSENSUS: CONSENSUS,
    MessageType.EVIDENCE: CONSENSUS,
    MessageType.BUNDLES: BUNDLE,
    MessageType.BUNDLE_REQUEST: BUNDLE,
    MessageType.CHECKPOINT_OPS: BUNDLE,
    MessageType.OPS: GOSSIP,
    MessageType.FETCH: GOSSIP,
    MessageType.ANNOUNCE: GOSSIP,
    MessageType.HANDLE_CONFLICT: GOSSIP,
    MessageType.SYNC_HELLO: DELTA_SYNC,
    MessageType.RECONCILE: DELTA_SYNC,
    MessageType.SYNC_DONE: DELTA_SYNC,
    MessageType.SNAPSHOT_OFFER: STATE_SYNC,
    MessageType.CHUNK_REQUEST: STATE_SYNC,
    MessageType.CHUNK: STATE_SYNC,
    MessageType.CHUNK_MISSING: STATE_SYNC,
    MessageType.ROLLBACK: CONTROL,
    MessageType.SETTLEMENT: CONTROL,
}
assert set(_CLASS_OF_TYPE) == set(MessageType), "every message type has a class"
#: Message type byte (a positive fixint) -> class; anything else is `control`.
_CLASS_BY_NUMBER = {int(kind): index for kind, index in _CLASS_OF_TYPE.items()}
_CLASS_TABLE = bytes(_CLASS_BY_NUMBER.get(number, CONTROL) for number in range(256))
#: msgpack fixarray markers: every message starts with one (0x90 | item count).
_FIXARRAY_FIRST, _FIXARRAY_LAST = 0x90, 0x9F

_BATCH_HEADER = Struct("!BBH")
_LITTLE_ENDIAN_HOST = sys.byteorder == "little"
_FRAGMENT_IDS = Struct("!BBQHH")  # version, type, message id, index, total

#: Fragmented messages per peer and direction whose class is remembered until their last
#: fragment: the receiver reassembles at most REASSEMBLIES_PER_PEER_MAX at once, and the
#: sender streams at most one per priority; past it the oldest is forgotten (its remaining
#: fragments then count as `control`).
FRAGMENT_CLASSES_REMEMBERED_MAX = limits.REASSEMBLIES_PER_PEER_MAX


def message_class(message: bytes | memoryview) -> int:
    """The class index of an encoded message (`control` when it is not one)."""
    if len(message) >= 2 and _FIXARRAY_FIRST <= message[0] <= _FIXARRAY_LAST:
        return _CLASS_TABLE[message[1]]
    return CONTROL


@dataclass
class Direction:
    """Bytes of one direction of one peer link, by class index."""

    by_class: list[int] = field(default_factory=lambda: [0] * len(CLASSES))
    #: Fragmented message id -> its class, until the message's last fragment.
    streams: dict[int, int] = field(default_factory=dict)

    def count(self, frame: bytes) -> None:
        """Add `frame`'s bytes (see the module docstring for how they are split)."""
        size = len(frame)
        if size >= BATCH_HEADER_SIZE_BYTES and frame[0] == FRAME_VERSION:
            if frame[1] == FRAME_TYPE_BATCH and self._count_batch(frame):
                return
            if frame[1] == FRAME_TYPE_FRAGMENT and size > FRAGMENT_HEADER_SIZE_BYTES:
                self.by_class[self._fragment_class(frame)] += size
                return
        self.by_class[CONTROL] += size

    def _count_batch(self, frame: bytes) -> bool:
        """Split a batch frame; False (nothing counted) when it is not a well-formed one."""
        _, _, count = _BATCH_HEADER.unpack_from(frame)
        body = BATCH_HEADER_SIZE_BYTES + BATCH_LENGTH_SIZE_BYTES * count
        if count == 0 or body > len(frame):
            return False
        lengths = array("H")
        lengths.frombytes(frame[BATCH_HEADER_SIZE_BYTES:body])
        if _LITTLE_ENDIAN_HOST:  # the table is big-endian
            lengths.byteswap()
        if body + sum(lengths) != len(frame):
            return False
        by_class, position = self.by_class, body
        by_class[message_class(frame[body : body + 2])] += BATCH_HEADER_SIZE_BYTES
        # Once per message of every frame: local names, and the type byte read in place.
        table, entry, first, last = (
            _CLASS_TABLE,
            BATCH_LENGTH_SIZE_BYTES,
            _FIXARRAY_FIRST,
            _FIXARRAY_LAST,
        )
        for length in lengths:
            if length >= 2 and first <= frame[position] <= last:
                by_class[table[frame[position + 1]]] += length + entry
            else:
                by_class[CONTROL] += length + entry
            position += length
        return True

    def _fragment_class(self, frame: bytes) -> int:
        _, _, message_id, index, total = _FRAGMENT_IDS.unpack_from(frame)
        if index == 0:
            start = FRAGMENT_HEADER_SIZE_BYTES
            kind = message_class(frame[start : start + 2])
            if total > 1:
                if len(self.streams) >= FRAGMENT_CLASSES_REMEMBERED_MAX:
                    del self.streams[next(iter(self.streams))]
                self.streams[message_id] = kind
            return kind
        if index + 1 >= total:
            return self.streams.pop(message_id, CONTROL)
        return self.streams.get(message_id, CONTROL)


@dataclass
class PeerBytes:
    """One peer link's bytes, sent and received."""

    sent: Direction = field(default_factory=Direction)
    received: Direction = field(default_factory=Direction)


class Bandwidth:
    """The totals of peers since dropped (so node-wide totals never go backwards)."""

    def __init__(self) -> None:
        self.retired_sent = [0] * len(CLASSES)
        self.retired_received = [0] * len(CLASSES)

    def retire(self, peer: PeerBytes) -> None:
        for index in range(len(CLASSES)):
            self.retired_sent[index] += peer.sent.by_class[index]
            self.retired_received[index] += peer.received.by_class[index]

    def totals(self, peers: list[PeerBytes]) -> tuple[dict[str, int], dict[str, int]]:
        """(sent, received) by class name, over every peer this core has had."""
        sent, received = list(self.retired_sent), list(self.retired_received)
        for peer in peers:
            for index in range(len(CLASSES)):
                sent[index] += peer.sent.by_class[index]
                received[index] += peer.received.by_class[index]
        return by_name(sent), by_name(received)


def by_name(counts: list[int]) -> dict[str, int]:
    return dict(zip(CLASSES, counts, strict=True))
