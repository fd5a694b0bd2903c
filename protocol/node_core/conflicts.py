"""Handle conflicts: once a contested handle's binding is final, the losing claims get their
`handle.conflict` rejection (raised once per handle and winner, and gossiped); a peer's
rejection is checked against our own final state before it is believed. A claim revoked by a
quorum gets its rejection when the quorum-th revocation is final (raised by every node that
finalizes it, not gossiped)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..framing import Priority
from ..messages import CONFLICT_LOSERS_PER_MESSAGE_MAX, HandleConflictMessage, encode_message
from ..ops import Kind
from .events import HandleConflictRejected
from .peers import PENALTY_MALFORMED_MESSAGE, Peer

if TYPE_CHECKING:
    from .core import NodeCore


class HandleConflicts:
    """Open handle conflicts and the rejections raised for them."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        #: Handles with a raised conflict whose binding is not final yet -> first raised at.
        self.open_conflicts: dict[str, float] = {}
        #: (handle, winning claim) pairs whose rejection was raised (one per binding).
        self.rejected: set[tuple[str, bytes]] = set()
        #: Claims whose revocation by a quorum was reported (revocations are rare).
        self.revoked: set[bytes] = set()

    def settle_revocations(self, final_ids: list[bytes]) -> None:
        """Raise the rejection of each claim that the revocations among `final_ids` (just
        made final) brought to a quorum of revokers."""
        core = self.core
        final = core.ledger.final_state
        quorum = core.genesis.quorum
        for op_id in final_ids:
            op = core.ledger.op(op_id)
            if op is None or op.kind is not Kind.HANDLE_REVOKE:
                continue
            handle = op.fields["handle"]
            for claim_id in op.parents:
                claim = final.claims.get(claim_id)
                if claim is None or claim.handle != handle or claim_id in self.revoked:
                    continue
                if len(claim.revokers) >= quorum:
                    self.revoked.add(claim_id)
                    binding = final.bindings.get(handle)
                    winner = binding.claim_id if binding is not None else b""
                    core._emit(
                        HandleConflictRejected(
                            handle, winner, (claim_id,), core.final_height, (claim.claimant,)
                        )
                    )

    def settle(self) -> None:
        """A handle conflict is resolved once the handle's binding is final: then the losing
        claims get their `handle.conflict` rejection, raised here and gossiped."""
        bindings = self.core.ledger.final_state.bindings
        for handle in [h for h in sorted(self.open_conflicts) if h in bindings]:
            del self.open_conflicts[handle]
            self.reject_losers(handle, bindings[handle].claim_id, source=b"")

    def reject_losers(self, handle: str, winner: bytes, *, source: bytes) -> None:
        if (handle, winner) in self.rejected:
            return
        claims = self.core.ledger.final_state.claims
        losers = tuple(
            sorted(c for c, claim in claims.items() if claim.handle == handle and c != winner)
        )[:CONFLICT_LOSERS_PER_MESSAGE_MAX]
        if not losers:
            return
        self.rejected.add((handle, winner))
        holders = tuple(claims[loser].claimant for loser in losers)
        self.core._emit(
            HandleConflictRejected(handle, winner, losers, self.core.final_height, holders)
        )
        message = encode_message(
            HandleConflictMessage(handle, winner, losers, self.core.final_height)
        )
        for peer_id in sorted(self.core._peers):
            if peer_id != source:
                self.core._peers[peer_id].encoder.queue_message(message, Priority.NORMAL)

    def on_message(self, peer: Peer, message: HandleConflictMessage, now: float) -> None:
        """Check a peer's rejection against our own final state: at or above its height the
        handle must be bound to the winner and every loser must be a claim for that handle.
        A node not final at that height yet derives it itself when it gets there."""
        if message.height > self.core.final_height:
            return
        binding = self.core.ledger.final_state.bindings.get(message.handle)
        claims = self.core.ledger.final_state.claims
        consistent = (
            binding is not None
            and binding.claim_id == message.winning_claim
            and all(
                loser in claims and claims[loser].handle == message.handle
                for loser in message.losing_claims
            )
        )
        if not consistent:
            self.core.peer_rules.penalize(
                peer, PENALTY_MALFORMED_MESSAGE, "handle_conflict_unfounded"
            )
            return
        self.open_conflicts.pop(message.handle, None)
        self.reject_losers(message.handle, message.winning_claim, source=peer.peer_id)
