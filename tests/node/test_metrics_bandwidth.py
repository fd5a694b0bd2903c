"""`swarmd_bytes_total{direction,class}` and `swarmd_peer_bytes_total{peer,direction,class}`
follow the core's byte counters (protocol/node_core/bandwidth.py); a peer gone loses its
series, the node-wide counter keeps its bytes. `swarmd_serve_requests_held_total{result}`
counts the requests held for the bulk sync send rate."""

from __future__ import annotations

import dataclasses

from swarmd.node.metrics import NodeMetrics
from swarmd.protocol import crypto
from swarmd.protocol.node_core.bandwidth import CLASSES
from swarmd.protocol.sim.harness import Swarm

from .test_metrics import samples, value


def _by_class(metrics: NodeMetrics, name: str, **labels: str) -> dict[str, float]:
    return {kind: value(metrics, name, **labels, **{"class": kind}) for kind in CLASSES}


def test_byte_counters_follow_a_real_core_per_peer_and_in_total() -> None:
    swarm = Swarm(2)
    grant = swarm.members[0].grant(swarm.author("someone").key, 100)
    assert swarm.submit(0, grant).status == "accepted"
    swarm.run(3.0)
    status = swarm.nodes[0].node_status()
    (peer,) = status.peers
    assert status.final_height >= 1
    assert peer.bytes_sent["consensus"] > 0 and peer.bytes_sent["gossip"] > 0
    assert peer.bytes_received["delta_sync"] > 0
    metrics = NodeMetrics(process_metrics=False)
    metrics.observe_status(status, status.now)
    name = crypto.account_id_text(peer.peer_id)
    for direction in ("sent", "received"):
        totals = getattr(status, f"bytes_{direction}")
        assert _by_class(metrics, "swarmd_bytes_total", direction=direction) == totals
        per_peer = _by_class(metrics, "swarmd_peer_bytes_total", peer=name, direction=direction)
        assert per_peer == getattr(peer, f"bytes_{direction}")
    # Observed again: nothing added. The peer gone: its series go, the totals stay.
    metrics.observe_status(status, status.now)
    assert _by_class(metrics, "swarmd_bytes_total", direction="sent") == status.bytes_sent
    metrics.observe_status(dataclasses.replace(status, peers=()), status.now)
    assert not [key for key in samples(metrics) if key[0] == "swarmd_peer_bytes_total"]
    assert _by_class(metrics, "swarmd_bytes_total", direction="sent") == status.bytes_sent


def test_requests_held_for_the_send_rate_are_counted() -> None:
    status = Swarm(2).nodes[0].node_status()
    stats = dataclasses.replace(status.stats, serve_requests_deferred=7, serve_requests_dropped=2)
    metrics = NodeMetrics(process_metrics=False)
    metrics.observe_status(dataclasses.replace(status, stats=stats), 0.0)
    assert value(metrics, "swarmd_serve_requests_held_total", result="deferred") == 7
    assert value(metrics, "swarmd_serve_requests_held_total", result="dropped") == 2
