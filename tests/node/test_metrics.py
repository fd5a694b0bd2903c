"""Prometheus metrics: render the exposition text and parse it back."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from swarmd.node.metrics import (
    CONTENT_TYPE,
    LABEL_SETS_PER_METRIC_MAX,
    MetricsUsageError,
    NodeMetrics,
)


def samples(metrics: NodeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of the rendered text."""
    parsed = text_string_to_metric_families(metrics.render().decode())
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in parsed
        for sample in family.samples
    }


def value(metrics: NodeMetrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, tuple(sorted(labels.items())))]


def test_content_type_is_prometheus_text():
    assert CONTENT_TYPE.startswith("text/plain")


def test_every_named_metric_is_exposed_with_the_swarmd_prefix():
    metrics = NodeMetrics(process_metrics=False)
    families = {family.name for family in text_string_to_metric_families(metrics.render().decode())}
    expected = {
        "swarmd_ops",
        "swarmd_pending_ops",
        "swarmd_peers",
        "swarmd_sync_sessions",
        "swarmd_sync_bytes",
        "swarmd_frames",
        "swarmd_fragments",
        "swarmd_final_height",
        "swarmd_finality_latency_seconds",
        "swarmd_http_requests",
        "swarmd_admin_mode",
        "swarmd_checkpoint_bundles",
        "swarmd_equivocations",
        "swarmd_websocket_clients",
        "swarmd_node_info",
    }
    assert expected <= families
    assert all(name.startswith("swarmd_") for name in families)


def test_counters_and_gauges_carry_their_labels():
    metrics = NodeMetrics(process_metrics=False)
    metrics.op_result("accepted")
    metrics.op_result("accepted")
    metrics.op_result("rejected", "bad_signature")
    metrics.set_pending(17)
    metrics.set_peers("webrtc", 3)
    metrics.set_peers("websocket", 1)
    metrics.frame("sent", 4)
    metrics.frame("received")
    metrics.set_final_height(42)
    metrics.http_request("/accounts/{id}", 200)
    metrics.http_request("/ops", 503)
    metrics.checkpoint_bundle()
    metrics.equivocation()
    metrics.set_websocket_clients(5)
    metrics.set_node_info("sw1abc", "00ff", "0.1.0")

    assert value(metrics, "swarmd_ops_total", result="accepted", reason="") == 2
    assert value(metrics, "swarmd_ops_total", result="rejected", reason="bad_signature") == 1
    assert value(metrics, "swarmd_pending_ops") == 17
    assert value(metrics, "swarmd_peers", transport="webrtc") == 3
    assert value(metrics, "swarmd_peers", transport="websocket") == 1
    assert value(metrics, "swarmd_frames_total", direction="sent") == 4
    assert value(metrics, "swarmd_frames_total", direction="received") == 1
    assert value(metrics, "swarmd_final_height") == 42
    assert value(metrics, "swarmd_http_requests_total", route="/accounts/{id}", status="200") == 1
    assert value(metrics, "swarmd_http_requests_total", route="/ops", status="503") == 1
    assert value(metrics, "swarmd_checkpoint_bundles_total") == 1
    assert value(metrics, "swarmd_equivocations_total") == 1
    assert value(metrics, "swarmd_websocket_clients") == 5
    info = {"node_id": "sw1abc", "network_id": "00ff", "version": "0.1.0"}
    assert value(metrics, "swarmd_node_info", **info) == 1


def test_finality_histogram_buckets_are_cumulative():
    metrics = NodeMetrics(process_metrics=False)
    for seconds in (0.2, 0.9, 2.5, 400.0):
        metrics.observe_finality(seconds)
    name = "swarmd_finality_latency_seconds"
    assert value(metrics, f"{name}_count") == 4
    assert value(metrics, f"{name}_sum") == pytest.approx(403.6)
    assert value(metrics, f"{name}_bucket", le="0.25") == 1
    assert value(metrics, f"{name}_bucket", le="1.0") == 2
    assert value(metrics, f"{name}_bucket", le="3.0") == 3
    assert value(metrics, f"{name}_bucket", le="300.0") == 3
    assert value(metrics, f"{name}_bucket", le="+Inf") == 4


def test_admin_mode_marks_exactly_the_current_mode():
    metrics = NodeMetrics(process_metrics=False)
    assert value(metrics, "swarmd_admin_mode", mode="normal") == 1
    metrics.set_mode("quiesced")
    modes = {
        mode: value(metrics, "swarmd_admin_mode", mode=mode)
        for mode in ("normal", "read_only", "quiesced")
    }
    assert modes == {"normal": 0, "read_only": 0, "quiesced": 1}


@pytest.mark.parametrize("call", [lambda m: m.set_mode("paused"), lambda m: m.frame("sideways")])
def test_label_values_outside_their_closed_set_are_refused(call):
    with pytest.raises(MetricsUsageError) as caught:
        call(NodeMetrics(process_metrics=False))
    assert caught.value.code == "metrics_misuse"


def test_two_nodes_in_one_process_have_separate_registries():
    first, second = NodeMetrics(), NodeMetrics()
    first.op_result("accepted")
    first.set_final_height(9)
    assert value(first, "swarmd_ops_total", result="accepted", reason="") == 1
    assert ("swarmd_ops_total", (("reason", ""), ("result", "accepted"))) not in samples(second)
    assert value(second, "swarmd_final_height") == 0


def test_unbounded_label_values_fold_into_other():
    metrics = NodeMetrics(process_metrics=False)
    for index in range(LABEL_SETS_PER_METRIC_MAX + 50):
        metrics.http_request(f"/raw/path/{index}", 404)
    series = [key for key in samples(metrics) if key[0] == "swarmd_http_requests_total"]
    assert len(series) == LABEL_SETS_PER_METRIC_MAX + 1
    assert value(metrics, "swarmd_http_requests_total", route="other", status="other") == 50
    # A label set seen before the bound keeps being counted under its own name.
    metrics.http_request("/raw/path/0", 404)
    assert value(metrics, "swarmd_http_requests_total", route="/raw/path/0", status="404") == 2


def test_counts_between_renders_add_up_once():
    # The hot counters are plain ints folded in at render time: each count shows exactly once.
    metrics = NodeMetrics(process_metrics=False)
    metrics.op_result("accepted")
    metrics.op_result("accepted", count=2)
    metrics.frame("received", 5)
    metrics.http_request("/v1/ops", 202)
    assert value(metrics, "swarmd_ops_total", result="accepted", reason="") == 3
    assert value(metrics, "swarmd_ops_total", result="accepted", reason="") == 3

    metrics.op_result("accepted")
    metrics.frame("received")
    metrics.http_request("/v1/ops", 202)

    assert value(metrics, "swarmd_ops_total", result="accepted", reason="") == 4
    assert value(metrics, "swarmd_frames_total", direction="received") == 6
    assert value(metrics, "swarmd_http_requests_total", route="/v1/ops", status="202") == 2
