"""Stall visibility: how long finality has not moved while ops that could become final wait,
and the one warning per stalled height that names who is silent (docs/PROTOCOL.md section 4,
"Council control plane", rule 5).

Checked on every `NodeCore.handle_timer` (the peers' delta sync deadlines and the consensus
timers keep those coming while the node has peers or runs a height); no deadline of its own,
so a healthy node's timing is unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..consensus import ConsensusMessage
from ..limits import FINALITY_STALL_INTERVALS
from . import council
from .events import FinalityStalled

if TYPE_CHECKING:
    from .core import NodeCore


class StallWatch:
    """Members heard from at the next height, and the last height warned about."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        #: The height `heard` is about (final_height + 1 when it was filled) and the council
        #: members whose consensus messages for it arrived (at most the council).
        self.heard_height = 0
        self.heard: set[bytes] = set()
        self.warned_height = -1

    def note(self, message: ConsensusMessage) -> None:
        """A consensus message arrived (called before it is handled)."""
        height = message.height
        if height != self.core.final_height + 1:
            return
        if height != self.heard_height:
            self.heard_height, self.heard = height, set()
        if message.validator in self.core.genesis.council:
            self.heard.add(message.validator)

    def stalled_s(self, now: float) -> float:
        """Seconds since the final height last moved while ops that could become final wait
        (since they began to wait, when that is later); 0.0 when none waits."""
        core = self.core
        ledger = core.ledger
        if ledger.unfinalized_count() == 0:
            return 0.0
        if council.final_quiesced(core) and not council.council_heads(core):
            return 0.0  # only client ops wait, and they wait for the resume by design
        finality = core.finality
        since = finality.last_final_at
        if finality.first_unfinal_at is not None:
            since = max(since, finality.first_unfinal_at)
        return max(0.0, now - since)

    def check(self, now: float) -> None:
        """Emit FinalityStalled once per stalled final height."""
        core = self.core
        if core.final_height == self.warned_height:
            return
        stalled = self.stalled_s(now)
        if stalled < FINALITY_STALL_INTERVALS * core.config.checkpoint_interval_s:
            return
        self.warned_height = core.final_height
        waited = core.final_height + 1
        heard = self.heard if self.heard_height == waited else set()
        silent = tuple(
            m for m in sorted(core.genesis.council) if m not in heard and m != core.node_id
        )
        core._emit(
            FinalityStalled(
                core.final_height,
                core.finality.consensus_height,
                core.consensus.round,
                silent,
                stalled,
            )
        )
