"""An open network that protects itself, on loopback with a real node service (driver, SQLite
store, HTTP server): a peer that sends malformed frames is disconnected, banned, its reconnect
refused with `peer_banned`, and still refused after the node restarts; idle sockets from one
source address cannot lock out a good peer from another; a sentry refuses unlisted ids."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmd.node.cli.common import load_home_config
from swarmd.node.cli.devnet import free_ports
from swarmd.node.cli.home import init_home
from swarmd.node.runtime.service import NodeService
from swarmd.node.transport import PeerInfo, SignalingRejectedError, WebSocketTransport
from swarmd.node.transport.base import TransportConfig
from swarmd.node.transport.websocket import WS_PATH
from swarmd.protocol import crypto, limits
from swarmd.protocol.addresses import AddressRecord
from swarmd.protocol.wallet import Author

pytestmark = pytest.mark.integration

WAIT_S = 10.0
JUNK = b"\xff" * 40  # not a frame: each costs PENALTY_MALFORMED_FRAME


class Recorder:
    """The attacker's transport callbacks; `wait_for` waits on a condition, never sleeps."""

    def __init__(self) -> None:
        self.connected: list[bytes] = []
        self.disconnected: list[tuple[bytes, str]] = []
        self.changed = asyncio.Event()

    def on_peer_connected(self, peer_id: bytes, info: PeerInfo) -> None:
        self.connected.append(peer_id)
        self.changed.set()

    def on_frame(self, peer_id: bytes, frame: bytes) -> None:
        pass

    def on_peer_disconnected(self, peer_id: bytes, reason: str) -> None:
        self.disconnected.append((peer_id, reason))
        self.changed.set()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT_S):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


def make_home(home: Path, **network: Any) -> Path:
    api_port, admin_port = free_ports(2)
    overrides: dict[str, Any] = {"api": {"port": api_port}, "admin": {"port": admin_port}}
    if network:
        overrides["network"] = network
    init_home(
        home,
        keypair=crypto.KeyPair.from_seed(os.urandom(32)),
        council_size=1,
        config_overrides=overrides,
    )
    return home


@pytest.fixture
async def services() -> AsyncIterator[list[NodeService]]:
    started: list[NodeService] = []
    yield started
    for service in started:
        await service.stop()


async def start(home: Path, started: list[NodeService]) -> NodeService:
    service = NodeService(load_home_config(str(home)))
    await service.start()
    started.append(service)
    return service


async def new_peer(
    network_id: bytes, keypair: crypto.KeyPair | None = None
) -> tuple[WebSocketTransport, Recorder]:
    recorder = Recorder()
    config = TransportConfig(ice_host_addresses=("127.0.0.1",), connect_timeout_s=5.0)
    keypair = keypair or crypto.KeyPair.from_seed(os.urandom(32))
    transport = WebSocketTransport(keypair, network_id, config, recorder)
    await transport.start()
    return transport, recorder


async def refusal_code(transport: WebSocketTransport, node_id: bytes, url: str) -> str:
    with pytest.raises(SignalingRejectedError) as refused:
        await transport.connect(node_id, url)
    return refused.value.code


async def test_a_peer_sending_malformed_frames_is_banned_across_a_restart(
    tmp_path: Path, services: list[NodeService]
) -> None:
    home = make_home(tmp_path / "node")
    service = await start(home, services)
    daemon = service.daemon
    assert daemon is not None
    node_id, url = daemon.node_id, service.api_url
    attacker, recorder = await new_peer(daemon.genesis.network_id)
    try:
        await attacker.connect(node_id, url)
        for _ in range(-(limits.PEER_SCORE_MIN // 20)):
            assert attacker.send(node_id, JUNK)
        # The node closes the link itself.
        await recorder.wait_for(lambda: bool(recorder.disconnected))
        assert node_id not in attacker.peers()
        assert attacker.own_id in daemon.core.peer_rules.bans
        netguard = daemon.status()["netguard"]
        assert (netguard["bans_active"], netguard["bans_remembered"]) == (1, 1)
        assert await refusal_code(attacker, node_id, url) == "peer_banned"
        # An honest peer still gets in.
        honest, _ = await new_peer(daemon.genesis.network_id)
        try:
            assert await honest.connect(node_id, url) == node_id
        finally:
            await honest.stop()
        # Restart the node: the ban was stored and is restored.
        await service.stop()
        services.remove(service)
        service = await start(home, services)
        assert service.daemon is not None and service.daemon.guard.bans_restored == 1
        assert await refusal_code(attacker, node_id, service.api_url) == "peer_banned"
    finally:
        await attacker.stop()


async def test_a_sentry_accepts_only_its_configured_peers(
    tmp_path: Path, services: list[NodeService]
) -> None:
    listed = crypto.KeyPair.from_seed(os.urandom(32))
    home = make_home(
        tmp_path / "sentry",
        sentry=True,
        peers=[{"url": "http://127.0.0.1:9", "node_id": crypto.account_id_text(listed.public_key)}],
    )
    service = await start(home, services)
    daemon = service.daemon
    assert daemon is not None
    stranger, _ = await new_peer(daemon.genesis.network_id)
    friend, _ = await new_peer(daemon.genesis.network_id, listed)
    try:
        assert await refusal_code(stranger, daemon.node_id, service.api_url) == "peer_not_allowed"
        assert await friend.connect(daemon.node_id, service.api_url) == daemon.node_id
        # A sentry-protected validator never advertises its address through peer exchange.
        assert daemon.exchange is not None and daemon.exchange.records_to_share(time.time()) == []
    finally:
        await stranger.stop()
        await friend.stop()


async def test_idle_sockets_from_one_source_do_not_lock_out_another(
    tmp_path: Path, services: list[NodeService]
) -> None:
    """More idle sockets from 127.0.0.2 than the transport's whole pending-handshake budget
    (each opens /v1/ws and never says hello): a good peer from 127.0.0.1 still connects, and
    the sockets beyond the per-source slots are refused at once with `signal_busy`."""
    service = await start(make_home(tmp_path / "node"), services)
    daemon = service.daemon
    assert daemon is not None
    idle_count = 40
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0), limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        sockets = [await session.ws_connect(service.api_url + WS_PATH) for _ in range(idle_count)]
        # Those over the per-source budget were closed with the refusal at once.
        refused = 0
        for ws in sockets[limits.HANDSHAKES_PER_SOURCE_MAX :]:
            message = await ws.receive(timeout=WAIT_S)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert str(message.extra).startswith("signal_busy")
            refused += 1
        assert refused == idle_count - limits.HANDSHAKES_PER_SOURCE_MAX
        good, _ = await new_peer(daemon.genesis.network_id)
        try:
            assert await good.connect(daemon.node_id, service.api_url) == daemon.node_id
        finally:
            await good.stop()
        # The idle ones within the budget are closed by the hello timeout.
        for ws in sockets[: limits.HANDSHAKES_PER_SOURCE_MAX]:
            message = await ws.receive(timeout=WAIT_S)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        for ws in sockets:
            await ws.close()


async def test_peer_exchange_connects_nodes_that_share_one_seed(
    tmp_path: Path, services: list[NodeService]
) -> None:
    """B and C each know only the seed A; one exchange round on A (it learns B and C from
    them) and one on B (it learns C from A) connect B to C. A learned record outside loopback
    is never dialed, and the book survives B's restart."""
    exchange = {"exchange_interval_s": 3600.0}
    seed = await start(make_home(tmp_path / "a", **exchange), services)
    assert seed.daemon is not None
    seed_entry = {"url": seed.api_url, "node_id": seed.daemon.node_id_text}
    followers = []
    for name in ("b", "c"):
        home = tmp_path / name
        api_port, admin_port = free_ports(2)
        init_home(
            home,
            keypair=crypto.KeyPair.from_seed(os.urandom(32)),
            genesis=seed.daemon.genesis,
            config_overrides={
                "api": {"port": api_port},
                "admin": {"port": admin_port},
                "network": {"transport": "websocket", "peers": [seed_entry], **exchange},
            },
        )
        followers.append(await start(home, services))
    b, c = (service.daemon for service in followers)
    assert b is not None and c is not None and seed.daemon.exchange is not None
    assert b.exchange is not None
    await wait_until_connected(seed.daemon, {b.node_id, c.node_id})
    assert c.node_id not in b.peers()
    outsider = crypto.KeyPair.from_seed(os.urandom(32))
    far = AddressRecord.sign(outsider, {"websocket": "http://203.0.113.7:7000"}, time.time())
    assert b.exchange.book.add(far, None, time.time())

    await seed.daemon.exchange.exchange_round()
    assert {b.node_id, c.node_id} <= set(seed.daemon.exchange.book.entries)
    await b.exchange.exchange_round()

    await wait_until_connected(b, {seed.daemon.node_id, c.node_id})
    assert b.exchange.book.entries[outsider.public_key].failures == 0  # never dialed
    # C was dialed and the seed is an outbound (configured) link: both tried; the far outsider
    # only heard of, so B's answers share it only within the few new records.
    tried = {n for n, entry in b.exchange.book.entries.items() if entry.tried}
    assert tried == {seed.daemon.node_id, c.node_id}
    assert b.exchange.dials == 1
    assert b.status()["netguard"]["exchange_dials"] == 1
    # The book is stored: a restarted B still knows C.
    await followers[0].stop()
    services.remove(followers[0])
    restarted = await start(tmp_path / "b", services)
    assert restarted.daemon is not None and restarted.daemon.exchange is not None
    assert c.node_id in restarted.daemon.exchange.book.entries


async def wait_until_connected(daemon: Any, peers: set[bytes]) -> None:
    """Wait on the WebSocket transport (no sleeps) until `peers` are all connected."""
    await daemon.transports["websocket"].wait_for_peers(
        lambda connected: peers <= set(daemon.peers()), WAIT_S
    )


async def test_community_nodes_with_one_seed_each_meet_and_finalize(
    tmp_path: Path, services: list[NodeService]
) -> None:
    """Issue 16's open network at the smallest size: a council node and three community nodes
    that each know only the council node. Through peer exchange each community node ends with
    at least three peers, and an op submitted at the council is final on every node."""
    fast = {"exchange_interval_s": 0.3, "transport": "websocket"}
    seed = await start(make_home(tmp_path / "seed", **fast), services)
    assert seed.daemon is not None
    seed_entry = {"url": seed.api_url, "node_id": seed.daemon.node_id_text}
    community = []
    for index in range(3):
        home = tmp_path / f"community-{index}"
        api_port, admin_port = free_ports(2)
        init_home(
            home,
            keypair=crypto.KeyPair.from_seed(os.urandom(32)),
            genesis=seed.daemon.genesis,
            config_overrides={
                "api": {"port": api_port},
                "admin": {"port": admin_port},
                "consensus": {"checkpoint_interval_s": 0.1},
                "network": {"peers": [seed_entry], **fast},
            },
        )
        service = await start(home, services)
        assert service.daemon is not None
        community.append(service.daemon)
    for daemon in community:
        await daemon.transports["websocket"].wait_for_peers(
            lambda _, daemon=daemon: len(daemon.peers()) >= 3, 20.0
        )
    council = Author(seed.daemon.keypair, seed.daemon.genesis.network_id)
    reward = seed.daemon.genesis.signup_reward
    grant = council.grant(crypto.KeyPair.from_seed(os.urandom(32)).public_key, reward)
    outcome = await seed.daemon.submit(grant.envelope)
    assert outcome.status == "accepted", outcome
    for daemon in [seed.daemon, *community]:
        await wait_for_event(daemon, lambda daemon=daemon: daemon.core.ledger.is_final(grant.op_id))


async def wait_for_event(daemon: Any, predicate: Callable[[], bool]) -> None:
    """Wait, on the node's own events (no sleeps), until `predicate` holds."""
    changed = asyncio.Event()

    def listener(_event: Any) -> None:
        changed.set()

    daemon.add_listener(listener)
    try:
        async with asyncio.timeout(20.0):
            while not predicate():
                changed.clear()
                await changed.wait()
    finally:
        daemon.remove_listener(listener)
