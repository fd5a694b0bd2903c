"""What the consensus core emits (`Tendermint.next_event`): value and validation requests
for the application, decisions, evidence, rejections and round changes."""

from __future__ import annotations

from dataclasses import dataclass

from .messages import CheckpointBundle, Evidence

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
