"""The ledger's memory bounds: LEDGER_EVENTS_MAX and REJECTED_IDS_REMEMBERED_MAX are the
defaults of LedgerConfig; the path taken at the bound is driven with a lowered config (filling
the default ones would take a million events or 100k signed rejections)."""

from __future__ import annotations

from swarmd.protocol.ledger import Ledger, LedgerConfig
from swarmd.protocol.limits import LEDGER_EVENTS_MAX, REJECTED_IDS_REMEMBERED_MAX

from .helpers import author, feed, make_council

GENESIS, MEMBERS = make_council(4, signup_reward=100)


def test_the_defaults_are_the_limits() -> None:
    config = Ledger(GENESIS).config
    assert config.events_max == LEDGER_EVENTS_MAX
    assert config.rejected_ids_remembered_max == REJECTED_IDS_REMEMBERED_MAX


def test_events_beyond_the_bound_drop_the_oldest_and_are_counted() -> None:
    ledger = Ledger(GENESIS, LedgerConfig(events_max=3))
    grants = [MEMBERS[0].grant(author(GENESIS, f"p{i}").key, 100) for i in range(3)]
    assert [o.status for o in feed(ledger, grants)] == ["accepted"] * 3
    events = ledger.drain_events()
    assert len(events) == 3
    assert ledger.stats.events_dropped > 0
    assert getattr(events[-1], "op_id", None) in (None, grants[-1].op_id)


def test_a_forgotten_rejection_parks_its_descendant_instead_of_rejecting_it() -> None:
    ledger = Ledger(GENESIS, LedgerConfig(rejected_ids_remembered_max=1))
    first, second = author(GENESIS, "first"), author(GENESIS, "second")
    bad_first = first.transfer(MEMBERS[0].key, 10)  # no funds: rejected
    child_first = first.transfer(MEMBERS[0].key, 1)
    bad_second = second.transfer(MEMBERS[0].key, 10)
    child_second = second.transfer(MEMBERS[0].key, 1)
    assert [o.status for o in feed(ledger, [bad_first, bad_second])] == ["rejected"] * 2
    # Only the newest rejection is remembered: its child is rejected at once ...
    assert feed(ledger, [child_second])[0].status == "rejected"
    # ... the older one's child waits for a parent it cannot know was rejected.
    assert feed(ledger, [child_first])[0].status == "pending"
