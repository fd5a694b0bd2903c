"""A council rollback certificate in one real daemon (a single-member council: its own vote is
a quorum): the reverted ops are reported `reverted` by the API and to the author's
subscribers, the node keeps finalizing in the new epoch, and a restart keeps all of it (the
epoch, the op statuses, and the refusal of a reverted op submitted again)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swarmd.node.cli.common import COUNCIL_KEYS_DIR, load_key_file
from swarmd.node.cli.home import init_home
from swarmd.node.cli.status import status_text
from swarmd.node.runtime.driver import Daemon
from swarmd.node.runtime.persistence import REJOIN_META_KEY
from swarmd.protocol import crypto, encoding
from swarmd.protocol.rollback import RollbackAssembler, RollbackBody, sign_rollback_vote
from swarmd.protocol.wallet import Author
from tests.node import test_api
from tests.node.test_api import Node, close_node, fresh_key, next_event, open_node
from tests.node.test_rollback import open_home_store

make_node = test_api.make_node  # the fixture

WAIT_S = 10.0


async def wait_for(daemon: Daemon, predicate: Callable[[], bool]) -> None:
    """Wait on the node's own events (no sleeps) until `predicate` holds."""
    changed = asyncio.Event()
    daemon.add_listener(lambda _event: changed.set())
    async with asyncio.timeout(WAIT_S):
        while not predicate():
            changed.clear()
            await changed.wait()


async def final_op(node: Node, op_id: bytes) -> int:
    """The height at which `op_id` became final on `node` (waits for it)."""
    ledger = lambda: node.daemon.core.ledger  # noqa: E731 - the ledger is replaced by a revert
    await wait_for(node.daemon, lambda: ledger().is_final(op_id))
    _, view = await node.get(f"/v1/ops/{op_id.hex()}")
    assert view["status"] == "final"
    return int(node.daemon.core.final_height)


async def rollback(node: Node, height: int) -> Any:
    headers = {"Authorization": f"Bearer {node.token}"}
    response = await node.admin.post(
        "/v1/admin/council/rollback",
        json={"to_height": height, "reason": "drill"},
        headers=headers,
    )
    assert response.status == 200, await response.text()
    return await response.json()


async def test_a_certificate_reverts_ops_and_a_restart_keeps_the_epoch(make_node: Any) -> None:
    node = await make_node()
    kept = node.council.grant(fresh_key(), 100)
    assert (await node.submit(kept))[0] == 202
    height = await final_op(node, kept.op_id)
    head = (node.council.seq, node.council.head)
    ws = await node.api.ws_connect(f"/v1/events?account={node.daemon.node_id_text}")
    assert (await ws.receive_json())["type"] == "subscribed"
    doomed = [node.council.grant(fresh_key(), 100) for _ in range(3)]
    for op in doomed:
        assert (await node.submit(op))[0] == 202
    await wait_for(node.daemon, lambda: all(map(node.daemon.core.ledger.is_final, ids(doomed))))
    assert node.daemon.core.final_height > height

    await rollback(node, height)

    reverted_events = {(await next_event(ws, "op_reverted"))["op_id"] for _ in doomed}
    assert reverted_events == {op.op_id.hex() for op in doomed}
    await ws.close()
    await assert_reverted(node, doomed, height)
    # H+1 of the new epoch is its settlement (docs/PROTOCOL.md): no op, the state at H.
    await wait_for(node.daemon, lambda: node.daemon.core.final_height == height + 1)
    _, status = await node.get("/v1/status")
    assert status["epoch"] == 1 and status["final_height"] == height + 1
    # Quiesced by the certificate until the council (here its one member) resumes.
    assert (status["mode"], status["mode_reason"]) == ("quiesced", "rollback")
    author = Author(node.daemon.keypair, node.network_id, seq=head[0], head=head[1])
    await wait_for(node.daemon, lambda: not node.daemon.core.status()["rejoin"])  # root checked
    code, body = await node.submit(author.grant(fresh_key(), 100))
    assert (code, body.get("code")) == (503, "quiesced"), body
    author.seq, author.head = head
    resume = author.resume("hashes confirmed")
    assert (await node.submit(resume))[0] == 202
    await final_op(node, resume.op_id)
    assert (await node.get("/v1/status"))[1]["mode"] == "normal"
    # The new epoch finalizes: the council's chain continues from the resume.
    after = author.grant(fresh_key(), 100)
    assert (await node.submit(after))[0] == 202
    new_height = await final_op(node, after.op_id)
    assert new_height > height
    await close_node(node)

    restarted = await open_node(node.home)
    try:
        _, status = await restarted.get("/v1/status")
        assert status["epoch"] == 1 and status["final_height"] >= new_height
        assert status["mode"] == "normal"  # the replayed bundles tally the resume again
        assert " consensus: epoch=1 " in status_text(status, 0.0)  # what `swarmd status` prints
        await assert_reverted(restarted, doomed, height)
        for op in (kept, after):
            assert (await restarted.get(f"/v1/ops/{op.op_id.hex()}"))[1]["status"] == "final"
        # A reverted op sent again is refused for good, also after the restart.
        code, body = await restarted.submit(doomed[0])
        assert (code, body.get("code")) == (400, "op_reverted"), body
        next_op = author.grant(fresh_key(), 100)
        assert (await restarted.submit(next_op))[0] == 202
        assert await final_op(restarted, next_op.op_id) > new_height
    finally:
        await close_node(restarted)


def ids(ops: list[Any]) -> list[bytes]:
    return [op.op_id for op in ops]


async def assert_reverted(node: Node, ops: list[Any], height: int) -> None:
    for op in ops:
        status, view = await node.get(f"/v1/ops/{op.op_id.hex()}")
        assert status == 200
        assert (view["status"], view["code"]) == ("reverted", "op_reverted")
        assert view["reverted"] == {"height": height, "epoch": 1}
        assert view["op"]["kind"] == "grant"
        assert not node.daemon.core.ledger.is_final(op.op_id)


async def test_a_node_restarted_mid_rejoin_is_still_read_only_and_confirming(
    tmp_path: Path,
) -> None:
    """A 4-member council of which only this member runs: a certificate (three members'
    votes) to genesis puts it in the rejoin step, where it waits for two peers that never
    come. Restarted on the same store it is read-only again and still confirming, so even a
    council op is refused `read_only` until its root is confirmed (rejoin.py, "Restart")."""
    home = tmp_path / "member-0"
    init_home(home, keypair=fresh_keypair(), council_size=4, config_overrides=test_api.FAST)
    node = await open_node(home)
    try:
        genesis = node.daemon.genesis
        assembler = RollbackAssembler(genesis.network_id, list(genesis.council))
        body = RollbackBody(0, 0, b"", "drill")
        certificate = None
        for index in (1, 2, 3):
            member = load_key_file(home / COUNCIL_KEYS_DIR / f"member-{index}.key")
            certificate = assembler.add(sign_rollback_vote(member, genesis.network_id, body))
        assert certificate is not None
        node.daemon.core.receive_rollback_certificate(certificate.encode(), asyncio_time())
        node.daemon.pump()
        assert await rejoin_state(node) == ("read-only", "rollback", "confirming 0/2")
    finally:
        await close_node(node)

    restarted = await open_node(home)
    try:
        assert await rejoin_state(restarted) == ("read-only", "rollback", "confirming 0/2")
        _, status = await restarted.get("/v1/status")
        assert status["epoch"] == 1 and status["mode_reason"] == "rollback"
        code, body_ = await restarted.submit(restarted.council.resume("too early"))
        assert (code, body_.get("code")) == (503, "read_only"), body_
    finally:
        await close_node(restarted)


async def rejoin_state(node: Node) -> tuple[str, str, str]:
    core = node.daemon.core
    return core.mode.value, core.mode_reason, str(core.status()["rejoin"])


def asyncio_time() -> float:
    return asyncio.get_running_loop().time()


def fresh_keypair() -> crypto.KeyPair:
    return crypto.KeyPair.from_seed(os.urandom(32))


async def test_a_stored_episode_confirmed_at_start_is_cleared(make_node: Any) -> None:
    """A node stopped before its episode's end was stored (here a one-member council, whose
    signed bundle alone confirms): at the next start it confirms at once, returns to its
    stored mode and stores that no episode is in progress."""
    node = await make_node()
    home = node.home
    await close_node(node)
    store = await open_home_store(home)
    try:
        await store.set_meta(REJOIN_META_KEY, encoding.encode(["rollback", 0, 0]))
    finally:
        await store.close()

    restarted = await open_node(home)
    try:
        assert await rejoin_state(restarted) == ("normal", "", "")
        restarted.daemon.pump()
    finally:
        await close_node(restarted)
    store = await open_home_store(home)
    try:
        assert await store.get_meta(REJOIN_META_KEY) == b""
    finally:
        await store.close()
