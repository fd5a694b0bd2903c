"""Metrics the shell feeds from the core's typed status (`NodeMetrics.observe_status`): delta
sync sessions (lost ones as not within cadence), sync bytes, fragment events."""

from __future__ import annotations

import dataclasses

from swarmd.node.metrics import FRAGMENT_EVENTS, NodeMetrics
from swarmd.protocol.sim.harness import Swarm

from .test_metrics import value


def test_sync_sessions_and_bytes_come_from_a_real_core() -> None:
    swarm = Swarm(2)
    swarm.run(3.0)
    status = swarm.nodes[0].node_status()
    assert status.stats.sync_sessions > 0
    metrics = NodeMetrics(process_metrics=False)
    metrics.observe_status(status)
    within = value(metrics, "swarmd_sync_sessions_total", within_cadence="true")
    late = value(metrics, "swarmd_sync_sessions_total", within_cadence="false")
    assert within + late == status.stats.sync_sessions + status.stats.sync_sessions_lost
    assert value(metrics, "swarmd_sync_bytes_total", direction="sent") > 0
    assert value(metrics, "swarmd_sync_bytes_total", direction="received") > 0
    assert value(metrics, "swarmd_sync_bytes_total", direction="sent") == (
        status.stats.sync_bytes_sent
    )


def test_lost_sessions_count_as_not_within_cadence() -> None:
    status = Swarm(2).nodes[0].node_status()
    stats = dataclasses.replace(
        status.stats, sync_sessions=5, sync_sessions_within_cadence=3, sync_sessions_lost=2
    )
    metrics = NodeMetrics(process_metrics=False)
    metrics.observe_status(dataclasses.replace(status, stats=stats))
    assert value(metrics, "swarmd_sync_sessions_total", within_cadence="true") == 3
    assert value(metrics, "swarmd_sync_sessions_total", within_cadence="false") == 4


def test_fragment_events_follow_the_core_counters_and_survive_a_new_core() -> None:
    status = Swarm(2).nodes[0].node_status()
    counts = {name: index + 1 for index, name in enumerate(FRAGMENT_EVENTS.values())}
    metrics = NodeMetrics(process_metrics=False)
    metrics.observe_status(dataclasses.replace(status, fragments=counts))
    for index, event in enumerate(FRAGMENT_EVENTS):
        assert value(metrics, "swarmd_fragments_total", event=event) == index + 1
    # Observing again adds nothing; a restarted core counting from zero adds its new counts.
    metrics.observe_status(dataclasses.replace(status, fragments=counts))
    assert value(metrics, "swarmd_fragments_total", event="dropped_timeout") == 6
    metrics.observe_status(dataclasses.replace(status, fragments={"reassemblies_expired": 2}))
    assert value(metrics, "swarmd_fragments_total", event="dropped_timeout") == 8
