"""The daemon's peer policy (issue 16, peers2) on loopback with real node services (driver,
SQLite store, HTTP server): `[network].inbound_max` refuses inbound links from non-council
peers past the cap with `inbound_max` (a council member always gets in), `outbound_target`
stops the exchange's dials, and the tried marks and anchors stored with the address book make
a restarted node dial its last good outbound peers first, before any exchange round."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from swarmd.node.cli.common import COUNCIL_KEYS_DIR, load_home_config, load_key_file
from swarmd.node.cli.devnet import free_ports
from swarmd.node.cli.home import init_home
from swarmd.node.runtime.service import NodeService
from swarmd.node.transport import PeerInfo, SignalingRejectedError, WebSocketTransport
from swarmd.node.transport.base import TransportConfig
from swarmd.protocol import crypto
from swarmd.protocol.addresses import AddressRecord
from swarmd.protocol.genesis import Genesis

pytestmark = pytest.mark.integration

WAIT_S = 10.0
#: Rounds run only when a test calls `exchange_round` (the timer is an hour).
MANUAL = {"exchange_interval_s": 3600.0, "transport": "websocket"}


class Recorder:
    """A bare peer's transport callbacks; `wait_for` waits on a condition, never sleeps."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()

    def on_peer_connected(self, peer_id: bytes, info: PeerInfo) -> None:
        self.changed.set()

    def on_frame(self, peer_id: bytes, frame: bytes) -> None:
        pass

    def on_peer_disconnected(self, peer_id: bytes, reason: str) -> None:
        self.changed.set()


@pytest.fixture
async def services() -> AsyncIterator[list[NodeService]]:
    started: list[NodeService] = []
    yield started
    for service in started:
        await service.stop()


def make_home(
    home: Path, *, genesis: Genesis | None = None, council_size: int = 1, **network: Any
) -> Path:
    api_port, admin_port = free_ports(2)
    init_home(
        home,
        keypair=crypto.KeyPair.from_seed(os.urandom(32)),
        genesis=genesis,
        council_size=council_size,
        config_overrides={
            "api": {"port": api_port},
            "admin": {"port": admin_port},
            "network": network,
        },
    )
    return home


async def start(home: Path, started: list[NodeService]) -> NodeService:
    service = NodeService(load_home_config(str(home)))
    await service.start()
    started.append(service)
    return service


async def bare_peer(network_id: bytes, keypair: crypto.KeyPair | None = None) -> WebSocketTransport:
    config = TransportConfig(ice_host_addresses=("127.0.0.1",), connect_timeout_s=5.0)
    keypair = keypair or crypto.KeyPair.from_seed(os.urandom(32))
    transport = WebSocketTransport(keypair, network_id, config, Recorder())
    await transport.start()
    return transport


async def wait_peers(daemon: Any, predicate: Callable[[set[bytes]], bool]) -> None:
    """Wait on the node's WebSocket transport (no sleeps) until `predicate(peers)` holds."""
    await daemon.transports["websocket"].wait_for_peers(
        lambda _: predicate(set(daemon.peers())), WAIT_S
    )


async def test_inbound_links_past_inbound_max_are_refused_but_council_links_never(
    tmp_path: Path, services: list[NodeService]
) -> None:
    """A council member (of two) with inbound_max = 1: one stranger gets in, the next is
    refused with `inbound_max`, the other council member still gets in (a reserved slot,
    counted in no target), and the refused stranger gets in once the first one leaves."""
    home = make_home(tmp_path / "node", council_size=2, inbound_max=1, **MANUAL)
    member = load_key_file(home / COUNCIL_KEYS_DIR / "member-1.key")
    service = await start(home, services)
    daemon = service.daemon
    assert daemon is not None and daemon.exchange is not None
    network_id, node_id, url = daemon.genesis.network_id, daemon.node_id, service.api_url
    first, second = await bare_peer(network_id), await bare_peer(network_id)
    council = await bare_peer(network_id, member)
    try:
        assert await first.connect(node_id, url) == node_id
        await wait_peers(daemon, lambda peers: first.own_id in peers)
        with pytest.raises(SignalingRejectedError) as refused:
            await second.connect(node_id, url)
        assert refused.value.code == "inbound_max"
        assert daemon.exchange.inbound_refused == 1
        assert daemon.status()["netguard"]["inbound_refused"] == 1
        assert await council.connect(node_id, url) == node_id
        await wait_peers(daemon, lambda peers: member.public_key in peers)
        assert daemon.exchange.inbound_links() == 1  # the council link is not counted
        await first.disconnect(node_id)
        await wait_peers(daemon, lambda peers: first.own_id not in peers)
        assert await second.connect(node_id, url) == node_id
        await wait_peers(daemon, lambda peers: second.own_id in peers)
    finally:
        await asyncio.gather(first.stop(), second.stop(), council.stop())


async def community(
    tmp_path: Path, name: str, seed: NodeService, started: list[NodeService], **network: Any
) -> NodeService:
    assert seed.daemon is not None
    entry = {"url": seed.api_url, "node_id": seed.daemon.node_id_text}
    home = make_home(tmp_path / name, genesis=seed.daemon.genesis, peers=[entry], **network)
    return await start(home, started)


async def test_outbound_target_bounds_the_exchange_dials(
    tmp_path: Path, services: list[NodeService]
) -> None:
    """B's configured seed is one outbound link: with outbound_target = 1 B learns C from the
    seed but dials nobody; the deprecated peers_target = 1 means the same."""
    seed = await start(make_home(tmp_path / "a", **MANUAL), services)
    assert seed.daemon is not None and seed.daemon.exchange is not None
    b = await community(tmp_path, "b", seed, services, outbound_target=1, **MANUAL)
    old = await community(tmp_path, "old", seed, services, peers_target=1, **MANUAL)
    c = await community(tmp_path, "c", seed, services, **MANUAL)
    assert b.daemon and old.daemon and c.daemon
    ids = {b.daemon.node_id, old.daemon.node_id, c.daemon.node_id}
    await wait_peers(seed.daemon, lambda peers: ids <= peers)
    await seed.daemon.exchange.exchange_round()
    for daemon in (b.daemon, old.daemon):
        assert daemon.exchange is not None and daemon.exchange.targets.outbound == 1
        await wait_peers(daemon, lambda peers: seed.daemon.node_id in peers)
        await daemon.exchange.exchange_round()
        assert c.daemon.node_id in daemon.exchange.book.entries
        assert daemon.exchange.dials == 0
        assert c.daemon.node_id not in daemon.peers()


async def test_a_restarted_node_dials_its_anchors_first_and_keeps_tried_marks(
    tmp_path: Path, services: list[NodeService]
) -> None:
    """B knows only the seed A and links to C through one exchange round. B stops: its book
    is written with the tried marks and its anchor (C: its learned outbound link; the seed is
    configured, dialed anyway). B restarts: before any exchange round (the timer is an hour)
    it links to C again, its anchor, and its answers share A and C as tried ones."""
    seed = await start(make_home(tmp_path / "a", **MANUAL), services)
    assert seed.daemon is not None and seed.daemon.exchange is not None
    b = await community(tmp_path, "b", seed, services, **MANUAL)
    c = await community(tmp_path, "c", seed, services, **MANUAL)
    assert b.daemon is not None and b.daemon.exchange is not None and c.daemon is not None
    a_id, c_id = seed.daemon.node_id, c.daemon.node_id
    await wait_peers(seed.daemon, lambda peers: {b.daemon.node_id, c_id} <= peers)
    await seed.daemon.exchange.exchange_round()
    await wait_peers(b.daemon, lambda peers: a_id in peers)
    await b.daemon.exchange.exchange_round()
    await wait_peers(b.daemon, lambda peers: {a_id, c_id} <= peers)
    # The seed is configured (the dialer dials it anyway): C, learned, is the anchor.
    assert b.daemon.exchange.choose_anchors() == [c_id]

    await b.stop()
    services.remove(b)
    restarted = await start(tmp_path / "b", services)
    daemon = restarted.daemon
    assert daemon is not None and daemon.exchange is not None
    exchange = daemon.exchange
    assert exchange.anchors == [c_id]
    assert exchange.book.entries[a_id].tried and exchange.book.entries[c_id].tried
    await wait_peers(daemon, lambda peers: c_id in peers)
    async with asyncio.timeout(WAIT_S):
        await exchange.anchors_dialed.wait()
    assert exchange.rounds == 0 and exchange.anchor_dials == 1
    assert daemon.status()["netguard"]["anchor_dials"] == exchange.anchor_dials
    now = time.time()
    shared = [AddressRecord.decode(data, now) for data in exchange.records_to_share(now)]
    assert {a_id, c_id} <= {record.node_id for record in shared}


async def test_an_anchor_whose_node_is_gone_is_dropped_but_stays_tried(
    tmp_path: Path, services: list[NodeService]
) -> None:
    """C is down when B restarts: B's anchor dial to C fails, C stays tried (shared and
    dialed first later) but the next write no longer names it an anchor."""
    seed = await start(make_home(tmp_path / "a", **MANUAL), services)
    assert seed.daemon is not None and seed.daemon.exchange is not None
    b = await community(tmp_path, "b", seed, services, **MANUAL)
    c = await community(tmp_path, "c", seed, services, **MANUAL)
    assert b.daemon is not None and b.daemon.exchange is not None and c.daemon is not None
    c_id = c.daemon.node_id
    await wait_peers(seed.daemon, lambda peers: {b.daemon.node_id, c_id} <= peers)
    await seed.daemon.exchange.exchange_round()
    await b.daemon.exchange.exchange_round()
    await wait_peers(b.daemon, lambda peers: c_id in peers)
    await b.stop()
    services.remove(b)
    await c.stop()
    services.remove(c)
    restarted = await start(tmp_path / "b", services)
    exchange = restarted.daemon.exchange if restarted.daemon else None
    assert exchange is not None and c_id in exchange.anchors
    async with asyncio.timeout(WAIT_S):
        await exchange.anchors_dialed.wait()
    entry = exchange.book.entries[c_id]
    assert entry.tried and entry.failures == 1
    await exchange.save()
    assert c_id not in exchange.anchors
