"""Product telemetry (protocol/telemetry.py) over a scripted sequence of final checkpoints with
their agreed times, every figure checked against the value computed by hand below."""

from __future__ import annotations

import pytest

from swarmd.protocol.checkpoint import VIRTUAL_EPOCH_MS
from swarmd.protocol.limits import TELEMETRY_DAYS_KEPT
from swarmd.protocol.node_core import PersistCheckpoint
from swarmd.protocol.sim.harness import Swarm
from swarmd.protocol.telemetry import (
    DAY_MS,
    Activity,
    DayRecord,
    activity_of,
    day_of,
    fold,
    report,
    since_of,
)

from .helpers import author, make_council
from .test_state_sync import SMALL, run_offline_and_back

D0 = day_of(VIRTUAL_EPOCH_MS)  # 2026-01-01
HOUR_MS = 3_600_000


def _scripted() -> tuple[dict[int, DayRecord], dict[str, bytes]]:
    """The history (member M, accounts A and B; supply = granted - burned):

    - height 1, D0 01:00: M grants 100 to A (M seq 1), M grants 100 to B (M seq 2); supply 200
    - height 2, D0 23:59: A transfers 30 to B (A seq 1), B burns 5 for "x" (B seq 1); supply 195
    - height 3, D0+31 12:00: A transfers 10 to B (A seq 2); supply 195
    - height 4, D0+31 13:00: B burns 7 for "x" and then 2 for "y" (B seq 2, 3); supply 186
    """
    genesis, members = make_council(4)
    m = members[0]
    a, b = author(genesis, "alice"), author(genesis, "bob")
    grant_a, grant_b = m.grant(a.key, 100), m.grant(b.key, 100)
    records: dict[int, DayRecord] = {}
    script = [
        (1, VIRTUAL_EPOCH_MS + HOUR_MS, [grant_a, grant_b], 200),
        (
            2,
            VIRTUAL_EPOCH_MS + DAY_MS - 60_000,
            [a.transfer(b.key, 30, receive=[grant_a.op_id]), b.burn(5, "x")],
            195,
        ),
        (3, VIRTUAL_EPOCH_MS + 31 * DAY_MS + 12 * HOUR_MS, [a.transfer(b.key, 10)], 195),
        (4, VIRTUAL_EPOCH_MS + 31 * DAY_MS + 13 * HOUR_MS, [b.burn(7, "x"), b.burn(2, "y")], 186),
    ]
    for height, time_ms, ops, supply in script:
        fold(records, activity_of(height, time_ms, ops, supply), TELEMETRY_DAYS_KEPT)
    return records, {"m": m.key, "a": a.key, "b": b.key}


def test_one_checkpoints_activity() -> None:
    genesis, members = make_council(4)
    a = author(genesis, "alice")
    ops = [members[0].grant(a.key, 100), a.burn(3, "t"), a.burn(4, "t")]
    activity = activity_of(9, VIRTUAL_EPOCH_MS + 5, ops, 93)
    assert activity == Activity(
        height=9,
        day=D0,
        ops=3,
        authors=tuple(sorted([members[0].key, a.key])),
        new_accounts=2,  # the member's and alice's first ops
        transfer_volume=0,
        burns=(("t", 7),),
        supply=93,
    )


@pytest.mark.gate("s2-retention")
@pytest.mark.gate("s2-credits-velocity")
def test_figures_match_the_history_computed_by_hand() -> None:
    records, _ = _scripted()
    doc = report(records, 32, since_of(records), 4)
    assert doc["since_height"] == 1 and doc["since_day"] == "2026-01-01"
    assert doc["latest_day"] == "2026-02-01" and doc["latest_height"] == 4
    assert doc["missing_heights"] == 0
    days = doc["days"]
    assert isinstance(days, list) and len(days) == 32
    first, second, last = days[0], days[1], days[-1]
    # D0: two checkpoints, four ops, three first ops (M, A, B), all three active.
    assert first["date"] == "2026-01-01"
    assert (first["checkpoints"], first["ops"], first["new_accounts"]) == (2, 4, 3)
    assert (first["daily_active"], first["monthly_active"]) == (3, 3)
    assert first["retention"] is None and first["retention_base"] == 0  # no earlier window
    assert first["transfer_volume_30d"] == 30 and first["supply"] == 195
    assert first["velocity"] == 30 / 195
    assert first["burns"] == {"x": 5}
    # D0+1: nothing final; the 30-day window still holds D0; the supply carries over.
    assert (second["checkpoints"], second["daily_active"], second["monthly_active"]) == (0, 0, 3)
    assert second["velocity"] == 30 / 195 and second["burns"] == {}
    # D0+31: window [D0+2, D0+31] holds only A and B; the earlier window [D0-28, D0+1] held
    # M, A and B, of whom A and B came back: retention 2/3. Volume in the window: 10 (the 30
    # of D0 fell out); supply at the day's end 186.
    assert last["date"] == "2026-02-01"
    assert (last["checkpoints"], last["ops"], last["new_accounts"]) == (2, 3, 0)
    assert (last["daily_active"], last["monthly_active"]) == (2, 2)
    assert (last["retention_base"], last["retained"]) == (3, 2)
    assert last["retention"] == 2 / 3
    assert last["transfer_volume_30d"] == 10 and last["supply"] == 186
    assert last["velocity"] == 10 / 186
    assert last["burns"] == {"x": 7, "y": 2}


def test_day_thirty_still_counts_day_zero_and_day_thirty_one_does_not() -> None:
    records, _ = _scripted()
    days = {day["date"]: day for day in report(records, 32, since_of(records), 4)["days"]}  # type: ignore[union-attr]
    assert days["2026-01-30"]["monthly_active"] == 3  # D0+29: window D0 .. D0+29
    assert days["2026-01-31"]["monthly_active"] == 0  # D0+30: D0 left the window
    assert days["2026-01-31"]["retention_base"] == 3  # ... and is the earlier window now


def test_no_records_report_nothing() -> None:
    doc = report({}, 7, since_of({}), 0)
    assert doc["days"] == [] and doc["since_height"] is None


def test_days_older_than_telemetry_days_kept_are_pruned() -> None:
    _genesis, members = make_council(4)
    m = members[0]
    records: dict[int, DayRecord] = {}
    fold(records, activity_of(1, VIRTUAL_EPOCH_MS, [m.grant(m.key, 1)], 1), TELEMETRY_DAYS_KEPT)
    late = VIRTUAL_EPOCH_MS + (TELEMETRY_DAYS_KEPT - 1) * DAY_MS
    fold(records, activity_of(2, late, [m.grant(m.key, 1)], 2), TELEMETRY_DAYS_KEPT)
    assert sorted(records) == [D0, D0 + TELEMETRY_DAYS_KEPT - 1]  # exactly the days kept
    fold(records, activity_of(3, late + DAY_MS, [m.grant(m.key, 1)], 3), TELEMETRY_DAYS_KEPT)
    assert sorted(records) == [D0 + TELEMETRY_DAYS_KEPT - 1, D0 + TELEMETRY_DAYS_KEPT]
    assert since_of(records) == (D0 + TELEMETRY_DAYS_KEPT - 1, 2, 2)


def test_every_node_of_a_swarm_reports_the_same_telemetry() -> None:
    """Four members with clocks up to 20 s apart (inside CUT_TIME_SKEW_MS), a burst of grants,
    transfers and burns: each node's stored telemetry (its PersistCheckpoint events folded as
    the store folds them) gives the same report, whoever proposed which height."""
    swarm = Swarm(4)
    for index, node in enumerate(swarm.nodes):
        node.set_wall_clock(VIRTUAL_EPOCH_MS + DAY_MS - 30_000 + index * 5_000, 0.0)
    people = [swarm.author(f"user-{i}") for i in range(4)]
    for round_ in range(4):
        person = people[round_]
        grant = swarm.members[round_].grant(person.key, swarm.genesis.signup_reward)
        assert swarm.submit(round_, grant).status == "accepted"
        swarm.run(until=swarm.now + 2.0)
        spend = person.transfer(people[(round_ + 1) % 4].key, 10 + round_, receive=[grant.op_id])
        assert swarm.submit((round_ + 1) % 4, spend).status == "accepted"
        assert swarm.submit((round_ + 1) % 4, person.burn(1, f"t{round_ % 2}")).status == "accepted"
        swarm.run(until=swarm.now + 20.0)  # crosses the UTC midnight on the way
    reports = []
    for events in swarm.events:
        records: dict[int, DayRecord] = {}
        for event in events:
            if isinstance(event, PersistCheckpoint) and event.telemetry is not None:
                fold(records, event.telemetry, TELEMETRY_DAYS_KEPT)
        reports.append(report(records, 2, since_of(records), swarm.nodes[0].final_height))
    assert all(node.final_height >= 8 for node in swarm.nodes)
    assert reports[0] == reports[1] == reports[2] == reports[3]
    days = reports[0]["days"]
    assert isinstance(days, list) and [day["date"] for day in days] == ["2026-01-01", "2026-01-02"]
    assert sum(day["ops"] for day in days) == 12
    assert days[-1]["monthly_active"] == 4 + 4  # the four users and the four granting members
    assert days[-1]["transfer_volume_30d"] == 10 + 11 + 12 + 13


def _stored(swarm: Swarm, i: int) -> dict[int, DayRecord]:
    records: dict[int, DayRecord] = {}
    for event in swarm.events[i]:
        if isinstance(event, PersistCheckpoint) and event.telemetry is not None:
            fold(records, event.telemetry, TELEMETRY_DAYS_KEPT)
    return records


def test_a_node_that_state_synced_over_a_gap_reports_the_heights_it_missed() -> None:
    swarm = Swarm(4, seed=8, **SMALL)
    run_offline_and_back(swarm)
    late, full = _stored(swarm, 3), _stored(swarm, 0)
    # The snapshot's own PersistCheckpoint carries no telemetry: its ops were never seen here.
    synced = [e for e in swarm.events[3] if isinstance(e, PersistCheckpoint) and e.snapshot]
    assert synced and all(e.telemetry is None for e in synced if e.final_op_ids == ())
    height = swarm.nodes[0].final_height
    assert swarm.nodes[3].final_height == height
    full_doc = report(full, 1, since_of(full), height)
    late_doc = report(late, 1, since_of(late), height)
    assert full_doc["missing_heights"] == 0 and full_doc["latest_height"] == height
    assert late_doc["since_height"] == 1
    missed = late_doc["missing_heights"]
    assert isinstance(missed, int) and missed > SMALL["bundles_kept"]
    # What it counted is a subset: fewer ops, never more.
    assert late_doc["days"][0]["ops"] < full_doc["days"][0]["ops"]  # type: ignore[index]
