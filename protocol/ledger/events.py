"""What the ledger reports: the `Outcome` of each submitted op and the events it queues for
its caller (drained with `Ledger.drain_events`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..ops import Kind
from .pending import MissingKey

Status = Literal["accepted", "pending", "duplicate", "rejected", "excluded"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one submitted op. `code` is empty unless rejected or excluded."""

    op_id: bytes
    status: Status
    code: str = ""
    detail: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", str(self.code))  # plain, as errors.ProtocolError does


@dataclass(frozen=True, slots=True)
class OpAccepted:
    op_id: bytes
    kind: Kind
    author: bytes
    seq: int


@dataclass(frozen=True, slots=True)
class OpPending:
    op_id: bytes
    missing: tuple[MissingKey, ...]


@dataclass(frozen=True, slots=True)
class OpRejected:
    op_id: bytes
    code: str
    detail: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", str(self.code))  # plain, as errors.ProtocolError does


@dataclass(frozen=True, slots=True)
class OpExcluded:
    """A valid op lost a conflict (or depends on a loser); it may win again after finality."""

    op_id: bytes
    code: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", str(self.code))  # plain, as errors.ProtocolError does


@dataclass(frozen=True, slots=True)
class OpEvicted:
    op_id: bytes
    code: str  # "pending_evicted" or "pending_expired"

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", str(self.code))  # plain, as errors.ProtocolError does


@dataclass(frozen=True, slots=True)
class CreditReceived:
    account: bytes
    amount: int
    op_id: bytes
    sender: bytes  # the granting council member or the paying account


@dataclass(frozen=True, slots=True)
class HypeBurned:
    target: str
    amount: int
    total: int
    op_id: bytes


@dataclass(frozen=True, slots=True)
class HandleBound:
    handle: str
    owner: bytes
    claim_id: bytes


@dataclass(frozen=True, slots=True)
class HandleUnbound:
    handle: str
    claim_id: bytes


@dataclass(frozen=True, slots=True)
class HandleConflictRaised:
    handle: str
    losing_claim: bytes
    winning_claim: bytes


@dataclass(frozen=True, slots=True)
class CouncilModeChanged:
    quiesced: bool


@dataclass(frozen=True, slots=True)
class ClaimsModeChanged:
    """A quorum's latest claims vote changed between pause and resume (provisional state)."""

    paused: bool


@dataclass(frozen=True, slots=True)
class StateRederived:
    applied: int
    excluded: int


LedgerEvent = (
    OpAccepted
    | OpPending
    | OpRejected
    | OpExcluded
    | OpEvicted
    | CreditReceived
    | HypeBurned
    | HandleBound
    | HandleUnbound
    | HandleConflictRaised
    | CouncilModeChanged
    | ClaimsModeChanged
    | StateRederived
)
