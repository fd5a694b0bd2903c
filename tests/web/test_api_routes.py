"""The JSON routes of node/web (hype, history, genesis, onboarding) and the page's serving,
against a real single-node daemon with SQLite (no browser needed)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from swarmd.node.web.onboarding import leading_zero_bits, puzzle_digest
from swarmd.node.web.routes import add_web_routes
from swarmd.protocol import crypto
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.ops import Kind
from tests.node.test_api import Node, close_node, next_event, open_node


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    opened = await open_node(tmp_path / "home", crypto.KeyPair.from_seed(os.urandom(32)))
    yield opened
    await close_node(opened)


async def test_the_page_is_served_with_a_strict_policy(node: Node, tmp_path: Path) -> None:
    response = await node.api.get("/")
    assert response.status == 200 and response.content_type == "text/html"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "swarmd wallet" in await response.text()
    script = await node.api.get("/app.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    missing = await node.api.get("/../swarmd.toml")
    assert missing.status == 404 and (await missing.json())["code"] == "not_found"

    unbuilt = web.Application()
    add_web_routes(unbuilt, node.daemon, dist=tmp_path / "empty")
    async with TestClient(TestServer(unbuilt)) as client:
        response = await client.get("/")
        assert response.status == 503
        assert (await response.json())["code"] == "web_app_not_built"


async def test_genesis_is_the_file_whose_hash_is_the_network_id(node: Node) -> None:
    response = await node.api.get("/v1/genesis")
    genesis = Genesis.from_json(await response.read())
    assert genesis.network_id == node.network_id


async def test_hype_leaderboard_orders_by_total_then_name(node: Node) -> None:
    alice = node.new_author()
    grant = node.council.grant(alice.key, 100)
    assert (await node.submit(grant))[0] == 202
    for amount, target, receive in ((5, "b", [grant.op_id]), (5, "a", []), (7, "c <x>", [])):
        status, body = await node.submit(alice.burn(amount, target, receive=receive))
        assert status == 202, body

    status, board = await node.get("/v1/hype?top=2")
    assert status == 200
    assert [(t["target"], t["total"]) for t in board["targets"]] == [("c <x>", 7), ("a", 5)]
    assert (board["target_count"], board["burned"]) == (3, 17)
    status, one = await node.get("/v1/hype/a")
    assert (status, one["total"]) == (200, 5)
    for path, code in (
        ("/v1/hype?top=0", "bad_top"),
        ("/v1/hype?top=101", "bad_top"),
        ("/v1/hype?top=x", "bad_top"),
        ("/v1/hype/nothing", "target_not_found"),
        ("/v1/hype/" + "x" * 129, "bad_target"),
    ):
        status, body = await node.get(path)
        assert status in (400, 404) and body["code"] == code, path


async def test_history_pages_newest_first_from_memory_and_from_the_store(node: Node) -> None:
    alice, bob = node.new_author(), node.new_author()
    account = alice.keypair.account_id
    ws = await node.api.ws_connect(f"/v1/events?account={account}")
    grant = node.council.grant(alice.key, 100)
    await node.submit(grant)
    ops = [alice.transfer(bob.key, 1, receive=[grant.op_id])]
    ops += [alice.burn(1, f"t{i}") for i in range(3)]
    ops.append(alice.claim("alice"))
    for op in ops:
        assert (await node.submit(op))[0] == 202

    async def pages() -> list[list[dict[str, Any]]]:
        result, cursor = [], ""
        while True:
            status, page = await node.get(f"/v1/accounts/{account}/ops?limit=2{cursor}")
            assert status == 200
            result.append(page["ops"])
            if page["next_cursor"] is None:
                return result
            cursor = f"&cursor={page['next_cursor']}"

    seen = await pages()
    assert [[entry["op"]["seq"] for entry in page] for page in seen] == [[5, 4], [3, 2], [1]]
    assert seen[0][0]["op"]["kind"] == "handle.claim"
    # Once final, ops leave the ledger's memory: the pages then come from the store.
    while (await next_event(ws, "op_final"))["op_id"] != ops[-1].op_id.hex():
        pass
    await ws.close()
    final = await pages()
    assert [entry["op"]["op_id"] for page in final for entry in page] == [
        op.op_id.hex() for op in reversed(ops)
    ]
    assert {entry["status"] for page in final for entry in page} == {"final"}

    status, body = await node.get(f"/v1/accounts/{account}/ops?cursor=zz")
    assert (status, body["code"]) == (400, "bad_cursor")
    status, body = await node.get(f"/v1/accounts/{account}/ops?cursor={grant.op_id.hex()}")
    assert (status, body["code"]) == (404, "op_not_found")  # the council's op, not alice's
    status, body = await node.get(f"/v1/accounts/{bob.keypair.account_id}/ops")
    assert (status, body["ops"], body["next_cursor"]) == (200, [], None)
    status, body = await node.get("/v1/accounts/sw1nope/ops")
    assert status == 400


def solve(network_id: bytes, account: bytes, bits: int, *, solved: bool = True) -> int:
    nonce = 0
    while (leading_zero_bits(puzzle_digest(network_id, account, nonce)) >= bits) != solved:
        nonce += 1
    return nonce


async def signup(node: Node, value: Any) -> tuple[int, dict[str, Any]]:
    response = await node.api.post("/v1/onboarding/signup", data=json.dumps(value))
    return response.status, await response.json()


@pytest.mark.gate("rl-signup")
async def test_onboarding_is_off_by_default_then_gated_by_work_and_rate(node: Node) -> None:
    alice = crypto.KeyPair.from_seed(os.urandom(32))
    request = {"account": alice.account_id, "nonce": 0}
    assert (await node.get("/v1/onboarding"))[1]["enabled"] is False
    assert (await signup(node, request))[1]["code"] == "onboarding_disabled"

    settings = node.home / "onboarding.toml"
    settings.write_text("enabled = true\npow_bits = 8\nsignups_per_address_per_hour = 3\n")
    status, info = await node.get("/v1/onboarding")
    assert info == {
        "enabled": True,
        "pow_bits": 8,
        "require_invite": False,
        "signup_reward": 100,
    }
    network_id = node.network_id
    wrong = solve(network_id, alice.public_key, 8, solved=False)
    status, body = await signup(node, {"account": alice.account_id, "nonce": wrong})
    assert (status, body["code"]) == (400, "bad_proof_of_work")

    nonce = solve(network_id, alice.public_key, 8)
    status, body = await signup(node, {"account": alice.account_id, "nonce": nonce})
    assert status == 202 and body["amount"] == 100
    _, view = await node.get(f"/v1/ops/{body['op_id']}")
    assert view["op"]["kind"] == Kind.GRANT.label and view["op"]["to"] == alice.account_id
    assert view["op"]["author"] == node.daemon.node_id_text
    _, account = await node.get(f"/v1/accounts/{alice.account_id}")
    assert account["balance"] == 100

    status, body = await signup(node, {"account": alice.account_id, "nonce": nonce})
    assert (status, body["code"]) == (409, "already_signed_up")
    status, body = await signup(node, {"account": alice.account_id, "nonce": nonce})
    assert (status, body["code"]) == (429, "signup_rate_limited")

    for bad in ({"account": "sw1x", "nonce": 1}, {"account": alice.account_id, "nonce": -1}, []):
        status, body = await signup(node, bad)
        assert status == 400, bad
    settings.write_text("enabled = true\npow_bits = 99\n")
    status, body = await node.get("/v1/onboarding")
    assert (status, body["code"]) == (503, "onboarding_misconfigured")
