"""`/v1/status` renders from the core's typed NodeStatus: the fields it shares with the core's
dict rendering (`NodeCore.status()`) are identical, and the API answers exactly it."""

from __future__ import annotations

import json
from typing import Any

from tests.node import test_api

make_node = test_api.make_node  # the fixture: a single-node council behind both apps

SHARED = (
    "validator",
    "mode",
    "mode_reason",
    "final_height",
    "consensus_height",
    "state_root",
    "applied_ops",
    "unfinalized_ops",
    "pending_ops",
    "catching_up",
    "consensus_round",
    "consensus_step",
    "conflicts",
    "stats",
    "evidence",
    "open_conflicts",
    "oldest_open_conflict_age_s",
    "snapshot",
    "state_sync",
)


async def test_status_renders_the_typed_fields_as_the_core_dict_does(make_node: Any) -> None:
    node = await make_node()
    daemon = node.daemon
    alice = node.new_author()
    ws = await node.api.ws_connect(f"/v1/events?account={alice.keypair.account_id}")
    assert (await ws.receive_json())["type"] == "subscribed"
    assert (await node.submit(node.council.grant(alice.key, 100)))[0] == 202
    await test_api.next_event(ws, "op_final")
    await ws.close()
    typed, from_dict = daemon.status(), daemon.core.status()  # same instant
    assert {key: typed[key] for key in SHARED} == {key: from_dict[key] for key in SHARED}
    assert typed["final_height"] >= 1 and typed["applied_ops"] >= 1
    assert typed["sync_lag"] == 0 and typed["peers"] == []
    status, body = await node.get("/v1/status")
    assert status == 200
    assert set(body) == set(typed)
    assert json.loads(json.dumps(typed))["state_root"] == body["state_root"]
