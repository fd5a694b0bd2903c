"""A pending op expires exactly at the deadline the ledger reports for it
(`pending.next_expiry()`, which the node core arms its timer with): at that deadline
`now - received_at` can round to just below the TTL, and an expiry that compared that
difference kept the op and reported the same past deadline forever (the rejoin retry's
"timer stuck" of network-rollback, node_core/rejoin.py, was the same mistake)."""

from __future__ import annotations

import math

from swarmd.protocol import limits
from swarmd.protocol.ledger import Ledger

from .helpers import author, feed, make_council

GENESIS, _MEMBERS = make_council(4, signup_reward=100, grants_per_member_per_window=3)


def _received_at_rounding_below_ttl() -> float:
    """A reception time whose expiry `t + PENDING_OP_TTL_S` is less than the TTL after `t`
    once rounded: the sum reaches a power of two (1,024 s), losing `t`'s last bits (within a
    few steps of one ulp, rounding down)."""
    received_at = 1024.0 - limits.PENDING_OP_TTL_S
    while (received_at + limits.PENDING_OP_TTL_S) - received_at >= limits.PENDING_OP_TTL_S:
        received_at = math.nextafter(received_at, math.inf)
    return received_at


def test_a_pending_op_expires_at_its_reported_deadline_even_when_the_ttl_rounds_below() -> None:
    ledger = Ledger(GENESIS)
    received_at = _received_at_rounding_below_ttl()
    writer = author(GENESIS, "a")
    writer.seq, writer.head = 3, b"\x07" * 32  # waits on a parent it never gets: pending
    feed(ledger, [writer.transfer(_MEMBERS[0].key, 1)], now=received_at)
    deadline = ledger.pending.next_expiry()
    assert deadline is not None and deadline - received_at < limits.PENDING_OP_TTL_S
    assert ledger.expire_pending(deadline) == 1
    assert ledger.pending.next_expiry() is None
