"""/metrics of a real single-member node after a grant became final: the status-fed figures
exist and moved (signers per checkpoint, participation, seconds since the last final)."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from .test_api import make_node, next_event

__all__ = ["make_node"]  # the fixture, used by name

STATUS_FAMILIES = {
    "swarmd_sync_lag",
    "swarmd_best_peer_height",
    "swarmd_catching_up",
    "swarmd_consensus_height",
    "swarmd_consensus_round",
    "swarmd_consensus_step",
    "swarmd_unfinalized_ops",
    "swarmd_pending_ops",
    "swarmd_open_conflicts",
    "swarmd_oldest_open_conflict_age_seconds",
    "swarmd_seconds_since_final_checkpoint",
    "swarmd_council_heights_signed",
    "swarmd_council_heights_missed",
    "swarmd_council_last_signed_age_seconds",
    "swarmd_checkpoint_signers_ratio",
    "swarmd_peer_rtt_seconds",
    "swarmd_sync_sessions",
    "swarmd_sync_bytes",
    "swarmd_fragments",
}


async def test_metrics_after_a_final_grant(make_node: Any) -> None:
    node = await make_node()
    alice = node.new_author()
    ws = await node.api.ws_connect(f"/v1/events?account={alice.keypair.account_id}")
    assert (await ws.receive_json())["type"] == "subscribed"
    assert (await node.submit(node.council.grant(alice.key, 100)))[0] == 202
    await next_event(ws, "op_final")
    response = await node.api.get("/metrics")
    families = list(text_string_to_metric_families(await response.text()))
    assert {family.name for family in families} >= STATUS_FAMILIES
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        for sample in family.samples
    }
    member = (("member", node.daemon.node_id_text),)
    assert values[("swarmd_council_heights_signed", member)] >= 1
    assert values[("swarmd_council_heights_missed", member)] == 0
    assert values[("swarmd_council_last_signed_age_seconds", member)] >= 0
    count = values[("swarmd_checkpoint_signers_ratio_count", ())]
    assert count >= 1 and values[("swarmd_checkpoint_signers_ratio_sum", ())] == count
    assert values[("swarmd_seconds_since_final_checkpoint", ())] >= 0
    assert values[("swarmd_sync_lag", ())] == 0
