"""The event stream's ids, resume (`?since=ID`), gaps, the window across restarts and the
exactness of the account filter, against a real driver and SQLite store (one-node council)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse

from swarmd.node.http.events import EVENT_ID_RUN_SHIFT, Window, load_window
from swarmd.protocol import crypto
from swarmd.protocol.limits import EVENTS_RETAINED_MAX
from swarmd.storage.store import Store

from .test_api import WAIT_S, Node, close_node, open_node

#: Event types that concern every subscriber (no `accounts`).
GLOBAL_TYPES = {"checkpoint_final", "mode_changed", "council_mode_changed", "gap"}


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    keypair = crypto.KeyPair.from_seed(os.urandom(32))
    opened = await open_node(tmp_path / "home", keypair)
    yield opened
    if opened.daemon.started:
        await close_node(opened)


async def subscribe(node: Node, query: str) -> tuple[ClientWebSocketResponse, dict[str, Any]]:
    ws = await node.api.ws_connect(f"/v1/events?{query}")
    first: dict[str, Any] = await ws.receive_json()
    assert first["type"] == "subscribed"
    return ws, first


async def until(ws: ClientWebSocketResponse, kind: str, op_id: str) -> list[dict[str, Any]]:
    """Every event received up to the `kind` event of `op_id` (included)."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(WAIT_S):
        while True:
            event: dict[str, Any] = await ws.receive_json()
            events.append(event)
            if event["type"] == kind and event.get("op_id") == op_id:
                return events


def assert_increasing(events: list[dict[str, Any]]) -> None:
    ids = [event["id"] for event in events]
    assert ids == sorted(set(ids)), ids


async def test_a_closed_subscriber_resumes_with_what_it_missed(node: Node) -> None:
    alice, bob = node.new_author(), node.new_author()
    account = alice.keypair.account_id
    ws, _ = await subscribe(node, f"account={account}")
    first = node.council.grant(alice.key, 100)
    bob_grant = node.council.grant(bob.key, 100)
    assert (await node.submit(bob_grant))[0] == 202
    assert (await node.submit(first))[0] == 202
    seen = await until(ws, "op_final", first.op_id.hex())
    assert_increasing(seen)
    last_seen = seen[-1]["id"]
    await ws.close()

    missed = bob.transfer(alice.key, 5, receive=[bob_grant.op_id])  # while the page is closed
    assert (await node.submit(missed))[0] == 202
    closed, _ = await subscribe(node, f"since={last_seen}")  # waits for finality
    await until(closed, "op_final", missed.op_id.hex())
    await closed.close()

    resumed, hello = await subscribe(node, f"account={account}&since={last_seen}")
    replayed = await until(resumed, "op_final", missed.op_id.hex())

    assert hello["last_id"] >= replayed[-1]["id"]
    assert all(event["id"] > last_seen for event in replayed)
    assert_increasing(replayed)
    credit = [e for e in replayed if e["type"] == "credit_received"]
    assert [(c["op_id"], c["amount"]) for c in credit] == [(missed.op_id.hex(), 5)]
    assert first.op_id.hex() not in {e.get("op_id") for e in replayed}
    await resumed.close()


async def test_the_account_filter_delivers_exactly_that_accounts_events(node: Node) -> None:
    alice, bob = node.new_author(), node.new_author()
    reward = node.daemon.genesis.signup_reward
    grants = [node.council.grant(alice.key, reward), node.council.grant(bob.key, reward)]
    for grant in grants:
        assert (await node.submit(grant))[0] == 202
    ws, _ = await subscribe(node, f"account={alice.keypair.account_id}")
    everything, _ = await subscribe(node, "")

    bob_burn = bob.burn(3, "cats", receive=[grants[1].op_id])
    assert (await node.submit(bob_burn))[0] == 202
    bob_claim = bob.claim("bobby")
    assert (await node.submit(bob_claim))[0] == 202
    status, body = await node.submit(node.new_author().transfer(bob.key, 5))  # rejected
    assert status == 400
    alice_burn = alice.burn(2, "dogs", receive=[grants[0].op_id])
    assert (await node.submit(alice_burn))[0] == 202

    unfiltered = await until(everything, "op_final", alice_burn.op_id.hex())
    filtered = await until(ws, "op_final", alice_burn.op_id.hex())

    assert {"op_rejected", "hype_burned"} <= {e["type"] for e in unfiltered}
    assert [e["op_id"] for e in unfiltered if e["type"] == "op_rejected"] == [body["op_id"]]
    for event in filtered:
        assert event["type"] in GLOBAL_TYPES or alice.keypair.account_id in event["accounts"]
    burns = [e for e in filtered if e["type"] == "hype_burned"]
    assert [(b["target"], b["accounts"]) for b in burns] == [("dogs", [alice.keypair.account_id])]
    assert "op_rejected" not in {e["type"] for e in filtered}
    assert bob_claim.op_id.hex() not in {e.get("op_id") for e in filtered}
    assert_increasing(filtered)
    assert_increasing(unfiltered)
    await ws.close()
    await everything.close()


async def test_the_window_survives_a_restart_and_ids_move_on(node: Node) -> None:
    alice = node.new_author()
    account = alice.keypair.account_id
    ws, _ = await subscribe(node, f"account={account}")
    before = node.council.grant(alice.key, 100)
    assert (await node.submit(before))[0] == 202
    bob = node.new_author()
    seen = await until(ws, "op_final", before.op_id.hex())
    await ws.close()
    await close_node(node)

    restarted = await open_node(node.home)
    try:
        replayed_ws, hello = await subscribe(restarted, "since=0")
        reward = restarted.daemon.genesis.signup_reward
        after = node.council.grant(bob.key, reward)  # the council author keeps its seq
        result = await restarted.submit(after)
        assert result[0] == 202, result
        replayed = await until(replayed_ws, "op_final", after.op_id.hex())
        await replayed_ws.close()
    finally:
        await close_node(restarted)

    assert "gap" not in {e["type"] for e in replayed}  # a clean stop loses nothing
    assert all(event in replayed for event in seen)  # the same events, the same ids
    assert hello["last_id"] == 1 << EVENT_ID_RUN_SHIFT  # the new run, no event of it yet
    assert_increasing(replayed)
    new = [e for e in replayed if e["id"] > 1 << EVENT_ID_RUN_SHIFT]
    assert new[-1]["op_id"] == after.op_id.hex() and new[-1]["type"] == "op_final"
    assert all(e["id"] < 1 << EVENT_ID_RUN_SHIFT for e in replayed[: -len(new)])


async def test_an_unclean_stop_leaves_a_gap_event_in_the_window(tmp_path: Path) -> None:
    network_id = os.urandom(32)
    key = crypto.KeyPair.from_seed(os.urandom(32)).public_key
    store = await Store.open(tmp_path / "node.db", network_id=network_id, node_key=key)
    try:
        window = Window()
        for n in range(3):
            window.add({"type": "mode_changed", "mode": "normal", "reason": str(n)}, None)
        rows = [entry.row() for entry in window.after(0)]
        await store.append_events(rows, EVENTS_RETAINED_MAX, window.meta(clean=False))

        loaded, stored_id = await load_window(store)
    finally:
        await store.close()

    assert stored_id == 3
    replayed = loaded.replay(1, None)
    assert [e["id"] for e in replayed] == [2, 3, 1 << EVENT_ID_RUN_SHIFT]
    assert replayed[-1] == {
        "type": "gap",
        "id": 1 << EVENT_ID_RUN_SHIFT,
        "reason": "unclean_stop",
        "since": 3,
    }
    assert loaded.next_id == (1 << EVENT_ID_RUN_SHIFT) + 1


def test_resuming_from_before_the_window_starts_with_a_gap() -> None:
    window = Window()
    alice, bob = os.urandom(32), os.urandom(32)
    for n in range(EVENTS_RETAINED_MAX + 10):
        window.add({"type": "op_final", "op_id": f"{n:064x}"}, (alice if n % 2 else bob,))

    replayed = window.replay(5, alice)

    assert replayed[0] == {"type": "gap", "id": 10, "reason": "window_exceeded", "since": 5}
    assert len(replayed) == 1 + EVENTS_RETAINED_MAX // 2
    assert all(e["accounts"] == [crypto.account_id_text(alice)] for e in replayed[1:])
    assert window.replay(10, None)[0]["id"] == 11  # from inside the window: no gap
    assert window.replay(window.next_id - 1, None) == []
    assert window.replay(window.next_id + 5, None)[0]["reason"] == "unknown_id"


async def test_since_must_be_an_event_id(node: Node) -> None:
    for bad in ("-1", "x", "1" * 20):
        response = await node.api.get(f"/v1/events?since={bad}")
        assert response.status == 400
        assert (await response.json())["code"] == "bad_since"
