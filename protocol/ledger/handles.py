"""Every handle rule in one place: claim, endorse, revoke, binding and conflict losers.

- Syntax: a handle is 3-32 chars of [a-z0-9_-] (`check_handle`, defined in ops.py because
  decoding an op checks it and the ledger package imports ops, not the other way round;
  re-exported here).
- Claim: anyone may claim a handle; a claim binds nothing by itself.
- Endorse: a council member endorses a claim its prev or deps name, once per member
  (`check_endorse`). The endorsement's key is (final height, causal depth, op id), so an
  endorsement final at an earlier checkpoint sorts first (`endorsement_key`).
- Revoke: a council member revokes the one claim of the handle its parents name, once per
  member (`check_revoke`).
- Binding: a handle is bound to the first claim, by the key of its quorum-th endorsement, that
  has a quorum of endorsements and no quorum of revocations (`settle`); a pure function of the
  endorsement and revocation sets, so it needs no replay. Every other eligible claim is a
  conflict loser (`HandleConflictRaised`, `conflicts`).

`LedgerState.bind`/`unbind` only write the binding record; the rule that decides it is `settle`.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..codes import RejectCode
from ..ops import Kind, Op, check_handle
from .events import HandleBound, HandleConflictRaised, HandleUnbound
from .rules import Rejection, require_council
from .state import Claim, Derivation, EndorsementKey

__all__ = [
    "HandleEvent",
    "apply_claim",
    "apply_endorse",
    "apply_revoke",
    "binding_changes",
    "check_endorse",
    "check_handle",
    "check_revoke",
    "conflicts",
    "eligible_claims",
    "endorsement_key",
    "handles_of",
    "revoke_targets",
    "settle",
]

HandleEvent = HandleBound | HandleUnbound | HandleConflictRaised

# --- checks ------------------------------------------------------------------------------------


def check_endorse(op: Op, claims: Mapping[bytes, Claim], council: frozenset[bytes]) -> None:
    require_council(op, council)
    claim_id: bytes = op.fields["claim"]
    # Every parent is applied (or final) by now, so a parent that is a claim op is in the
    # state's claims, known or not.
    claim = claims.get(claim_id) if claim_id in op.parents else None
    if claim is None:
        raise Rejection(RejectCode.ENDORSE_WITHOUT_CLAIM, "prev or deps must name the claim")
    if op.author in claim.endorsers:
        raise Rejection(RejectCode.ALREADY_ENDORSED, "this member endorsed this claim already")


def check_revoke(op: Op, claims: Mapping[bytes, Claim], council: frozenset[bytes]) -> None:
    require_council(op, council)
    targets = revoke_targets(op, claims)
    if len(targets) != 1:
        raise Rejection(RejectCode.REVOKE_WITHOUT_CLAIM, "deps must include exactly one claim")
    if op.author in claims[targets[0]].revokers:
        raise Rejection(RejectCode.ALREADY_REVOKED, "this member revoked this claim already")


def revoke_targets(op: Op, claims: Mapping[bytes, Claim]) -> list[bytes]:
    """The parents of a revoke that are claims of its handle (in state, known or not)."""
    handle = op.fields["handle"]
    return [parent for parent in op.parents if parent in claims and claims[parent].handle == handle]


def endorsement_key(final_height: int, depth: int, op_id: bytes) -> EndorsementKey:
    return (final_height, depth, op_id)


# --- applying ----------------------------------------------------------------------------------


def apply_claim(derivation: Derivation, op: Op) -> None:
    handle = op.fields["handle"]
    derivation.state.put_claim(op.op_id, Claim(handle, op.author))
    derivation.claims_by_handle.setdefault(handle, []).append(op.op_id)


def apply_endorse(
    derivation: Derivation, op: Op, key: EndorsementKey, quorum: int
) -> list[HandleEvent]:
    state = derivation.state
    claim_id = op.fields["claim"]
    state.add_endorsement(claim_id, op.author, key, quorum)
    return settle(derivation, state.claims[claim_id].handle, quorum)


def apply_revoke(derivation: Derivation, op: Op, quorum: int) -> list[HandleEvent]:
    derivation.state.add_revocation(revoke_targets(op, derivation.state.claims)[0], op.author)
    return settle(derivation, op.fields["handle"], quorum)


# --- binding -----------------------------------------------------------------------------------


def eligible_claims(
    derivation: Derivation, handle: str, quorum: int
) -> list[tuple[EndorsementKey, bytes]]:
    """The claims of `handle` with a quorum of endorsements and without a quorum of
    revocations, by the key of their quorum-th endorsement: the first one wins."""
    eligible: list[tuple[EndorsementKey, bytes]] = []
    claims = derivation.state.claims
    for claim_id in derivation.claims_by_handle.get(handle, []):
        claim = claims[claim_id]
        quorum_key = claim.quorum_key(quorum)
        if quorum_key is not None and len(claim.revokers) < quorum:
            eligible.append((quorum_key, claim_id))
    eligible.sort()
    return eligible


def settle(derivation: Derivation, handle: str, quorum: int) -> list[HandleEvent]:
    """Bind `handle` to its rightful claim: among claims with a quorum of endorsements and
    without a quorum of revocations, the one whose quorum-th endorsement comes first in
    canonical order. A pure function of the applied set, hence order-independent. Returns the
    events, in the order to report them."""
    events: list[HandleEvent] = []
    state = derivation.state
    eligible = eligible_claims(derivation, handle, quorum)
    binding = state.bindings.get(handle)
    winner = eligible[0][1] if eligible else None
    current = binding.claim_id if binding else None
    if winner != current:
        if current is not None:
            state.unbind(handle)
            events.append(HandleUnbound(handle, current))
        if winner is not None:
            owner = state.claims[winner].claimant
            state.bind(handle, owner, winner)
            events.append(HandleBound(handle, owner, winner))
    for _, loser in eligible[1:]:
        if winner is not None:
            events.append(HandleConflictRaised(handle, loser, winner))
    return events


# --- re-derivation -----------------------------------------------------------------------------


def handles_of(ops: list[Op], claims: Mapping[bytes, Claim], known: dict[bytes, Op]) -> list[str]:
    """The handles that claims, endorsements and revocations among `ops` touch (`claims` of
    the state, `known` ops by id)."""
    handles: set[str] = set()
    for op in ops:
        kind = op.kind
        if kind is Kind.HANDLE_CLAIM or kind is Kind.HANDLE_REVOKE:
            handles.add(op.fields["handle"])
        elif kind is Kind.HANDLE_ENDORSE:
            claim = claims.get(op.fields["claim"])
            target = known.get(op.fields["claim"])
            if claim is not None:
                handles.add(claim.handle)
            elif target is not None and target.kind is Kind.HANDLE_CLAIM:
                handles.add(target.fields["handle"])
    return sorted(handles)


def conflicts(
    derivation: Derivation, handles: list[str], quorum: int
) -> set[tuple[str, bytes, bytes]]:
    """(handle, losing claim, winning claim) of each conflict `settle` reports."""
    found: set[tuple[str, bytes, bytes]] = set()
    for handle in handles:
        eligible = eligible_claims(derivation, handle, quorum)
        for _, loser in eligible[1:]:
            found.add((handle, loser, eligible[0][1]))
    return found


def binding_changes(
    before: dict[str, bytes], after: Derivation
) -> list[HandleUnbound | HandleBound]:
    """The unbind and bind events that take bindings `before` (handle -> claim id) to the
    bindings of `after`, by handle."""
    events: list[HandleUnbound | HandleBound] = []
    bindings = after.state.bindings
    bindings_after = {h: b.claim_id for h, b in bindings.items()}
    for handle in sorted(before.keys() | bindings_after.keys()):
        old, new = before.get(handle), bindings_after.get(handle)
        if old != new and old is not None:
            events.append(HandleUnbound(handle, old))
        if old != new and new is not None:
            events.append(HandleBound(handle, bindings[handle].owner, new))
    return events
