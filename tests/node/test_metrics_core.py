"""Metrics the shell feeds from the core's typed status (`NodeMetrics.observe_status`): delta
sync sessions (lost ones as not within cadence), sync bytes, fragment events, sync lag,
consensus position, conflicts by kind, council participation, signers per checkpoint."""

from __future__ import annotations

import dataclasses

import pytest

from swarmd.node.metrics import FRAGMENT_EVENTS, NodeMetrics
from swarmd.protocol import crypto
from swarmd.protocol.consensus import CheckpointBundle
from swarmd.protocol.sim.harness import Swarm

from .test_metrics import samples, value
from .test_status_core import split_endorsements_swarm


def test_sync_sessions_and_bytes_come_from_a_real_core() -> None:
    swarm = Swarm(2)
    swarm.run(3.0)
    status = swarm.nodes[0].node_status()
    assert status.stats.sync_sessions > 0
    metrics = NodeMetrics(process_metrics=False)
    metrics.observe_status(status, status.now)
    within = value(metrics, "swarmd_sync_sessions_total", within_cadence="true")
    late = value(metrics, "swarmd_sync_sessions_total", within_cadence="false")
    assert within + late == status.stats.sync_sessions + status.stats.sync_sessions_lost
    assert value(metrics, "swarmd_sync_bytes_total", direction="sent") > 0
    assert value(metrics, "swarmd_sync_bytes_total", direction="received") > 0
    assert value(metrics, "swarmd_sync_bytes_total", direction="sent") == (
        status.stats.sync_bytes_sent
    )


@pytest.mark.gate("s1-syncs-within-cadence")
def test_lost_sessions_count_as_not_within_cadence() -> None:
    status = Swarm(2).nodes[0].node_status()
    stats = dataclasses.replace(
        status.stats, sync_sessions=5, sync_sessions_within_cadence=3, sync_sessions_lost=2
    )
    metrics = NodeMetrics(process_metrics=False)
    metrics.observe_status(dataclasses.replace(status, stats=stats), 0.0)
    assert value(metrics, "swarmd_sync_sessions_total", within_cadence="true") == 3
    assert value(metrics, "swarmd_sync_sessions_total", within_cadence="false") == 4


def test_fragment_events_follow_the_core_counters_and_survive_a_new_core() -> None:
    status = Swarm(2).nodes[0].node_status()
    counts = {name: index + 1 for index, name in enumerate(FRAGMENT_EVENTS.values())}
    metrics = NodeMetrics(process_metrics=False)
    metrics.observe_status(dataclasses.replace(status, fragments=counts), 0.0)
    for index, event in enumerate(FRAGMENT_EVENTS):
        assert value(metrics, "swarmd_fragments_total", event=event) == index + 1
    # Observing again adds nothing; a restarted core counting from zero adds its new counts.
    metrics.observe_status(dataclasses.replace(status, fragments=counts), 0.0)
    assert value(metrics, "swarmd_fragments_total", event="dropped_timeout") == 6
    metrics.observe_status(dataclasses.replace(status, fragments={"reassemblies_expired": 2}), 0.0)
    assert value(metrics, "swarmd_fragments_total", event="dropped_timeout") == 8


def test_status_gauges_follow_a_real_core() -> None:
    swarm = split_endorsements_swarm()
    node = swarm.nodes[0]
    status = node.node_status()
    metrics = NodeMetrics(process_metrics=False)
    metrics.observe_status(status, status.last_final_at + 2.5)
    assert value(metrics, "swarmd_open_conflicts", kind="stuck_handles") == 1
    assert value(metrics, "swarmd_open_conflicts", kind="claims_below_quorum") == 2
    assert value(metrics, "swarmd_open_conflicts", kind="contested_handles") == 0
    assert value(metrics, "swarmd_seconds_since_final_checkpoint") == 2.5
    assert value(metrics, "swarmd_sync_lag") == 0
    assert value(metrics, "swarmd_catching_up") == 0
    assert value(metrics, "swarmd_consensus_height") == status.consensus_height
    steps = [
        value(metrics, "swarmd_consensus_step", step=s) for s in ("propose", "prevote", "precommit")
    ]
    assert sorted(steps) == [0, 0, 1]
    for member in status.council:
        name = crypto.account_id_text(member.key)
        assert value(metrics, "swarmd_council_heights_signed", member=name) == member.signed
        assert value(metrics, "swarmd_council_heights_missed", member=name) == member.missed
    bundle = node.bundle(status.final_height)
    assert bundle is not None
    signers = len(CheckpointBundle.decode(bundle).precommits)
    metrics.observe_signers(signers, 4)
    assert value(metrics, "swarmd_checkpoint_signers_ratio_count") == 1
    assert value(metrics, "swarmd_checkpoint_signers_ratio_sum") == signers / 4


def test_peer_rtts_replace_the_previous_set() -> None:
    metrics = NodeMetrics(process_metrics=False)
    metrics.set_peer_rtts({"sw1a": 0.012, "sw1b": None})
    assert value(metrics, "swarmd_peer_rtt_seconds", peer="sw1a") == 0.012
    metrics.set_peer_rtts({"sw1c": 0.003})
    families = samples(metrics)
    assert ("swarmd_peer_rtt_seconds", (("peer", "sw1a"),)) not in families
    assert value(metrics, "swarmd_peer_rtt_seconds", peer="sw1c") == 0.003


def test_the_root_divergence_height_gauge_follows_the_status() -> None:
    status = Swarm(1).nodes[0].node_status()
    metrics = NodeMetrics(process_metrics=False)
    metrics.observe_status(status, status.now)
    assert value(metrics, "swarmd_root_divergence_height") == 0
    metrics.observe_status(dataclasses.replace(status, root_divergence_height=17), status.now)
    assert value(metrics, "swarmd_root_divergence_height") == 17


def test_the_signing_halted_gauge_follows_the_status() -> None:
    status = Swarm(1).nodes[0].node_status()
    metrics = NodeMetrics(process_metrics=False)
    metrics.observe_status(status, status.now)
    assert value(metrics, "swarmd_signing_halted") == 0
    metrics.observe_status(dataclasses.replace(status, signing_halted=True), status.now)
    assert value(metrics, "swarmd_signing_halted") == 1
