"""The ledger's rules: one pure check per op kind (the handle kinds' rules are in handles.py).

Each check reads only what it is given (the op, the author's spendable credits, the genesis)
and raises `Rejection` with a stable code (docs/PROTOCOL.md) when the op breaks a rule; the
ledger gathers the inputs from the op's causal past (`apply._Applying._check_rules`).
"""

from __future__ import annotations

from .. import limits
from ..codes import RejectCode
from ..genesis import Genesis
from ..ops import Kind, Op
from .state import Account

#: The kinds that credit an account (`op.to`), which the recipient later receives.
CREDIT_KINDS = (Kind.GRANT, Kind.TRANSFER)


class Rejection(Exception):
    """Internal: a rule failed. Carries the stable code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def is_credit_to(op: Op, account: bytes) -> bool:
    """Whether `op` credits `account` (a grant or a transfer to it)."""
    return op.kind in CREDIT_KINDS and op.to == account


def check_chain_position(op: Op, prev: Op | None, final_head: Account | None) -> None:
    """`op` extends its author's chain: its prev is the author's op at seq - 1 and its basis
    does not go back. `prev` is None when the prev was admitted as final without being known
    here; it is then valid only as the author's final head (`final_head`, whose seq and basis
    the account record holds: window_basis is the head's basis)."""
    if op.seq == 1:
        return
    if prev is not None:
        prev_author, prev_seq, prev_basis = prev.author, prev.seq, prev.basis
    else:
        if final_head is None or final_head.head != op.prev:
            raise Rejection(RejectCode.BAD_PREV, "prev is not the author's op at seq - 1")
        prev_author, prev_seq, prev_basis = op.author, final_head.seq, final_head.window_basis
    if prev_author != op.author or prev_seq != op.seq - 1:
        raise Rejection(RejectCode.BAD_PREV, "prev is not the author's op at seq - 1")
    if op.basis < prev_basis:
        raise Rejection(RejectCode.BASIS_REGRESSED, "basis is older than the previous op's basis")


def require_council(op: Op, council: frozenset[bytes]) -> None:
    """Council-only kinds (grants, handle endorsements and revocations, mode votes)."""
    if op.author not in council:
        raise Rejection(RejectCode.NOT_COUNCIL, f"{op.kind.label} needs a council member")


def check_spend(op: Op, spendable: int) -> int:
    """A transfer or a burn spends at most the author's spendable credits; a transfer goes to
    another account. Returns the spendable credits after it."""
    if op.kind is Kind.TRANSFER and op.to == op.author:
        raise Rejection(RejectCode.SELF_TRANSFER, "a transfer to oneself moves nothing")
    if op.amount > spendable:
        raise Rejection(RejectCode.INSUFFICIENT_FUNDS, f"spends {op.amount}, spendable {spendable}")
    return spendable - op.amount


def check_grant(op: Op, council: frozenset[bytes], genesis: Genesis, window_grants: int) -> int:
    """A grant comes from a council member, is exactly the signup reward, and stays within the
    member's grants per checkpoint window. Returns the member's grants in the window after it."""
    require_council(op, council)
    if op.amount != genesis.signup_reward:
        raise Rejection(RejectCode.BAD_GRANT_AMOUNT, "a grant is exactly the signup reward")
    window_grants += 1
    if window_grants > genesis.grants_per_member_per_window:
        raise Rejection(RejectCode.GRANT_CAP_EXCEEDED, "member's grant cap for this window")
    return window_grants


def check_mode_vote(op: Op, council: frozenset[bytes]) -> None:
    """Quiesce, resume and claims votes come from council members."""
    require_council(op, council)


def check_claim_funded(op: Op, spendable: int, council: frozenset[bytes]) -> None:
    """State costs credits: a handle claim's author holds at least `CLAIM_MIN_SPENDABLE`
    spendable credits after receiving the credits the claim lists (its causal past, so every
    node decides alike), or is a council member (named by the genesis, so bounded). Transfers
    and burns already need funds and every other kind needs a council member, so no key that
    holds nothing creates an account record or a claim."""
    if spendable < limits.CLAIM_MIN_SPENDABLE and op.author not in council:
        raise Rejection(
            RejectCode.CLAIM_UNFUNDED,
            f"a claim needs {limits.CLAIM_MIN_SPENDABLE} spendable credits, author has {spendable}",
        )
