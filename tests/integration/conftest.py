"""Fixtures for real-socket transport tests: loopback only, real aiohttp servers."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from swarmd.node.transport import (
    LinkTransport,
    PeerInfo,
    TransportConfig,
    WebRtcTransport,
    WebSocketTransport,
)
from swarmd.protocol.crypto import KeyPair

LOOPBACK_CONFIG = TransportConfig(ice_host_addresses=("127.0.0.1",))
WAIT_S = 10.0


@dataclass
class Recorder:
    """Collects transport callbacks; `wait_for` waits on a condition, never sleeps."""

    connected: list[tuple[bytes, PeerInfo]] = field(default_factory=list)
    disconnected: list[tuple[bytes, str]] = field(default_factory=list)
    frames: list[tuple[bytes, bytes]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_peer_connected(self, peer_id: bytes, info: PeerInfo) -> None:
        self.connected.append((peer_id, info))
        self.changed.set()

    def on_frame(self, peer_id: bytes, frame: bytes) -> None:
        self.frames.append((peer_id, frame))
        self.changed.set()

    def on_peer_disconnected(self, peer_id: bytes, reason: str) -> None:
        self.disconnected.append((peer_id, reason))
        self.changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    def frames_from(self, peer_id: bytes) -> list[bytes]:
        return [frame for sender, frame in self.frames if sender == peer_id]


@dataclass
class Node:
    keypair: KeyPair
    transport: LinkTransport
    recorder: Recorder
    url: str
    runner: web.AppRunner

    @property
    def node_id(self) -> bytes:
        return self.keypair.public_key

    async def close(self) -> None:
        await self.transport.stop()
        await self.runner.cleanup()


NodeFactory = Callable[..., Awaitable[Node]]


@pytest.fixture
def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def serve(routes: object, port: int = 0) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.add_routes(routes)  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    bound_port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{bound_port}"


@pytest.fixture
def network_id() -> bytes:
    return os.urandom(32)


@pytest.fixture
async def make_node(network_id: bytes) -> AsyncIterator[NodeFactory]:
    """Start a transport behind its own aiohttp server; every node is stopped at teardown."""
    nodes: list[Node] = []

    async def factory(
        kind: str = "webrtc",
        keypair: KeyPair | None = None,
        config: TransportConfig = LOOPBACK_CONFIG,
        network: bytes | None = None,
    ) -> Node:
        keypair = keypair or KeyPair.from_seed(os.urandom(32))
        recorder = Recorder()
        transport_class = WebRtcTransport if kind == "webrtc" else WebSocketTransport
        transport = transport_class(keypair, network or network_id, config, recorder)
        await transport.start()
        runner, url = await serve(transport.routes)
        node = Node(keypair, transport, recorder, url, runner)
        nodes.append(node)
        return node

    yield factory
    await asyncio.gather(*(node.close() for node in nodes))
