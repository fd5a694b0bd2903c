"""Checkpoint cuts: the value the council decides at each height.

A cut is the canonical msgpack array ``[2, parent_id, height, heads, state_root, time_ms]``:
``parent_id`` is the checkpoint id of the previous final cut (empty at height 1), ``heads`` is a
list of ``[author, seq, op_id]`` sorted by author (the chains that moved since the parent; the
cut holds every op reachable from these heads through prev/deps that was not final before), and
``state_root`` is the root after applying those ops to the parent's final state in canonical
order. The checkpoint id is sha256 of the encoded cut (the consensus value id).

``time_ms`` (version 2) is the council-agreed time of the checkpoint, UTC milliseconds: the
proposer sets it from its wall clock (at least the parent's time + 1), and a validator prevotes
nil on a cut whose time is not above its parent's or lies more than CUT_TIME_SKEW_MS ahead of
its own wall clock (`time_valid`; docs/PROTOCOL.md). Product telemetry counts days by it.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import crypto, encoding, limits
from .codes import RejectCode
from .errors import DecodeError, RemoteProtocolError

CUT_VERSION = 2  # 2: time_ms appended
#: A settlement cut (the first height of an epoch after a rollback, docs/PROTOCOL.md
#: "Settlement"): `[3, parent_id, height, [], state_root, time_ms, settled]`, no heads, where
#: `settled` lists `[precommit, value]` pairs of the ended epoch.
SETTLEMENT_CUT_VERSION = 3
CUT_HEADS_MAX = limits.CUT_HEADS_MAX  # why: see limits.py
#: The wall time (UTC ms, 2026-01-01T00:00Z) a core's clock 0.0 maps to until its driver gives
#: it the real wall clock (`NodeCore.set_wall_clock`): the simulator and the unit tests never
#: do, so their cut times are a pure function of virtual time and runs replay from the seed.
VIRTUAL_EPOCH_MS = 1_767_225_600_000


class CutDecodeError(RemoteProtocolError):
    code: str = RejectCode.CUT_MALFORMED


Head = tuple[bytes, int, bytes]


@dataclass(frozen=True)
class Cut:
    parent_id: bytes
    height: int
    heads: tuple[Head, ...]
    state_root: bytes
    time_ms: int
    #: None for a normal cut; for a settlement cut (version 3, no heads) the old-epoch
    #: values it settles, each `(signed precommit, value)`, sorted, distinct.
    settled: tuple[tuple[bytes, bytes], ...] | None = None

    def encode(self) -> bytes:
        heads = [[author, seq, op_id] for author, seq, op_id in self.heads]
        fields = [self.parent_id, self.height, heads, self.state_root, self.time_ms]
        if self.settled is None:
            return encoding.encode([CUT_VERSION, *fields])
        settled = [[precommit, value] for precommit, value in self.settled]
        return encoding.encode([SETTLEMENT_CUT_VERSION, *fields, settled])

    @property
    def checkpoint_id(self) -> bytes:
        return crypto.sha256(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> Cut:
        try:
            value = encoding.decode(data)
        except DecodeError as exc:
            raise CutDecodeError(f"cut: {exc.message}") from exc
        settled = None
        if type(value) is list and len(value) == 7 and value[0] == SETTLEMENT_CUT_VERSION:
            settled = _settled(value.pop())
            if value[3] != []:
                raise CutDecodeError("a settlement cut has no heads")
        elif type(value) is not list or len(value) != 6 or value[0] != CUT_VERSION:
            raise CutDecodeError("a cut is [2, parent_id, height, heads, state_root, time_ms]")
        _, parent_id, height, heads, state_root, time_ms = value
        if type(parent_id) is not bytes or len(parent_id) not in (0, limits.HASH_SIZE_BYTES):
            raise CutDecodeError("parent_id must be empty or 32 bytes")
        if type(height) is not int or not 1 <= height <= limits.SEQ_MAX:
            raise CutDecodeError("height must be a positive int")
        if (height == 1) != (parent_id == b""):
            raise CutDecodeError("only the first cut has no parent")
        if type(state_root) is not bytes or len(state_root) != limits.HASH_SIZE_BYTES:
            raise CutDecodeError("state_root must be 32 bytes")
        if type(time_ms) is not int or not 1 <= time_ms <= limits.CUT_TIME_MS_MAX:
            raise CutDecodeError(f"time_ms must be an int in 1..{limits.CUT_TIME_MS_MAX}")
        if type(heads) is not list or not (settled is not None or len(heads) >= 1):
            raise CutDecodeError(f"heads must list 1..{CUT_HEADS_MAX} chains")
        if len(heads) > CUT_HEADS_MAX:
            raise CutDecodeError(f"heads must list 1..{CUT_HEADS_MAX} chains")
        parsed: list[Head] = []
        for head in heads:
            if (
                type(head) is not list
                or len(head) != 3
                or type(head[0]) is not bytes
                or len(head[0]) != limits.PUBLIC_KEY_SIZE_BYTES
                or type(head[1]) is not int
                or not 1 <= head[1] <= limits.SEQ_MAX
                or type(head[2]) is not bytes
                or len(head[2]) != limits.HASH_SIZE_BYTES
            ):
                raise CutDecodeError("a head is [author (32 bytes), seq >= 1, op_id (32 bytes)]")
            parsed.append((head[0], head[1], head[2]))
        if any(parsed[i][0] >= parsed[i + 1][0] for i in range(len(parsed) - 1)):
            raise CutDecodeError("heads must be sorted by author, one per author")
        return cls(parent_id, height, tuple(parsed), state_root, time_ms, settled)


def _settled(value: object) -> tuple[tuple[bytes, bytes], ...]:
    """A settlement cut's list of `[precommit, value]` pairs: at most SETTLEMENT_VALUES_MAX,
    sorted and distinct (what each one proves is checked by the validators, rollback.py)."""
    if type(value) is not list or len(value) > limits.SETTLEMENT_VALUES_MAX:
        raise CutDecodeError(f"settled must list 0..{limits.SETTLEMENT_VALUES_MAX} values")
    pairs = []
    for item in value:
        if type(item) is not list or len(item) != 2 or not all(type(x) is bytes for x in item):
            raise CutDecodeError("a settled value is [precommit (bytes), value (bytes)]")
        pairs.append((item[0], item[1]))
    if any(pairs[i] >= pairs[i + 1] for i in range(len(pairs) - 1)):
        raise CutDecodeError("settled values must be sorted and distinct")
    return tuple(pairs)


def proposal_time_ms(wall_ms: int, parent_time_ms: int) -> int:
    """The time a proposer puts in its cut: its wall clock, kept above the parent's time (a
    proposer whose clock lags the council's still proposes a valid cut)."""
    return min(max(wall_ms, parent_time_ms + 1), limits.CUT_TIME_MS_MAX)


def time_valid(time_ms: int, parent_time_ms: int, wall_ms: int) -> bool:
    """The validity rule of a proposed cut's time (docs/PROTOCOL.md, "Checkpoint time"):
    strictly above the parent's (so every height has its own instant and days are ordered like
    heights), and at most CUT_TIME_SKEW_MS ahead of the validator's wall clock. No lower bound
    against the wall clock: a value locked in an earlier round comes back with its old time."""
    return parent_time_ms < time_ms <= wall_ms + limits.CUT_TIME_SKEW_MS
