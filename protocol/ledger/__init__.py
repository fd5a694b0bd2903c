"""The validation pipeline and the deterministic ledger (sans-I/O); see facade.py for the
model (determinism, conflicts, restored state).

Modules: facade (`Ledger`: pipeline, admission, reading), base (config, counters, memories,
events queue), rules (one pure check per op kind), handles (every handle rule), arbitration
(canonical keys, conflicts, exclusion, re-derivation), apply (running the rules, applying),
cuts (closure, derive, finalize), state (`LedgerState`, the state root, derivations),
snapshot (state records), pending (ops waiting for parents), events (outcomes and events).
"""

from .base import CutInvalidError, LedgerConfig, LedgerStats
from .cuts import CUT_CACHE_ENTRIES_MAX
from .events import (
    ClaimsModeChanged,
    CouncilModeChanged,
    CreditReceived,
    HandleBound,
    HandleConflictRaised,
    HandleUnbound,
    HypeBurned,
    LedgerEvent,
    OpAccepted,
    OpEvicted,
    OpExcluded,
    OpPending,
    OpRejected,
    Outcome,
    StateRederived,
    Status,
)
from .facade import Ledger
from .state import CanonicalKey, ConflictKey

__all__ = [
    "CUT_CACHE_ENTRIES_MAX",
    "CanonicalKey",
    "ClaimsModeChanged",
    "ConflictKey",
    "CouncilModeChanged",
    "CreditReceived",
    "CutInvalidError",
    "HandleBound",
    "HandleConflictRaised",
    "HandleUnbound",
    "HypeBurned",
    "Ledger",
    "LedgerConfig",
    "LedgerEvent",
    "LedgerStats",
    "OpAccepted",
    "OpEvicted",
    "OpExcluded",
    "OpPending",
    "OpRejected",
    "Outcome",
    "StateRederived",
    "Status",
]
