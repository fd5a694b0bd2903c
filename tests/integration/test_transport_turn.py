"""WebRTC through a real coturn relay on loopback (relay-only ICE policy)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from swarmd.node.cli.devnet import coturn_config
from swarmd.node.transport import IceGatheringError, IceServerConfig, TransportConfig
from swarmd.node.transport.signaling import turn_rest_credentials
from swarmd.protocol import limits

TURNSERVER = shutil.which("turnserver")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        TURNSERVER is None,
        reason="coturn's `turnserver` is not installed (apt-get install coturn); CI installs it",
    ),
]

NodeFactory = Any  # the make_node fixture of conftest.py
# Tests list `coturn` before `make_node`: fixtures are torn down in reverse order, so the nodes
# close (and delete their TURN allocations) while coturn still runs.
COTURN_START_TIMEOUT_S = 10.0


@dataclass
class Coturn:
    url: str
    secret: str
    output: deque[str]


@pytest.fixture
async def coturn(tmp_path: Path, free_port: int) -> AsyncIterator[Coturn]:
    assert TURNSERVER is not None
    secret = os.urandom(16).hex()
    config_path = tmp_path / "turnserver.conf"
    config_path.write_text(coturn_config(tmp_path, free_port, secret))
    process = await asyncio.create_subprocess_exec(
        TURNSERVER,
        "-c",
        str(config_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output: deque[str] = deque(maxlen=200)
    ready = asyncio.Event()
    readiness_markers = {b"UDP listener opened", b"Total General servers"}

    async def drain() -> None:
        # Reads until coturn exits; the pipe must be drained or a verbose coturn blocks.
        assert process.stdout is not None
        async for line in process.stdout:
            output.append(line.decode(errors="replace").rstrip())
            readiness_markers.difference_update({m for m in readiness_markers if m in line})
            if not readiness_markers:
                ready.set()

    drain_task = asyncio.create_task(drain())
    try:
        await asyncio.wait_for(ready.wait(), COTURN_START_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        pytest.fail("coturn did not start:\n" + "\n".join(output))
    yield Coturn(f"turn:127.0.0.1:{free_port}?transport=udp", secret, output)
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        process.kill()
        await process.wait()
    drain_task.cancel()


def relay_config(coturn: Coturn, secret: str | None = None) -> TransportConfig:
    return TransportConfig(
        ice_host_addresses=("127.0.0.1",),
        ice_transport_policy="relay",
        turn_secret=secret or coturn.secret,
        turn_urls=(coturn.url,),
    )


async def test_relay_only_connection_goes_through_coturn(
    coturn: Coturn, make_node: NodeFactory
) -> None:
    a = await make_node(config=relay_config(coturn))
    # The other side uses static credentials from ice_servers (the same REST scheme, derived
    # here), which covers the plain {urls, username, credential} configuration path.
    username, credential = turn_rest_credentials(coturn.secret, "peer-b", time.time(), 600)
    b = await make_node(
        config=TransportConfig(
            ice_host_addresses=("127.0.0.1",),
            ice_transport_policy="relay",
            ice_servers=(IceServerConfig((coturn.url,), username, credential),),
        )
    )

    assert await a.transport.connect(None, b.url) == b.node_id

    await b.recorder.wait_for(lambda: len(b.recorder.connected) == 1)
    assert a.transport.peers()[b.node_id].candidate_pair == "relay/relay"
    assert b.transport.peers()[a.node_id].candidate_pair == "relay/relay"
    frames = [os.urandom(limits.FRAME_SIZE_BYTES_MAX) for _ in range(4)] + [b"small"] * 100
    for frame in frames:
        assert a.transport.send(b.node_id, frame)
    assert b.transport.send(a.node_id, b"reply", control=True)
    await b.recorder.wait_for(lambda: len(b.recorder.frames) == len(frames))
    await a.recorder.wait_for(lambda: len(a.recorder.frames) == 1)
    assert b.recorder.frames_from(a.node_id) == frames


async def test_wrong_turn_secret_is_reported_as_no_candidates(
    coturn: Coturn, make_node: NodeFactory
) -> None:
    a = await make_node(config=relay_config(coturn, secret="not-the-secret"))
    b = await make_node(config=relay_config(coturn))

    with pytest.raises(IceGatheringError) as raised:
        await a.transport.connect(b.node_id, b.url)

    assert raised.value.code == "no_ice_candidates"
    assert coturn.url in raised.value.message and "credentials" in raised.value.message
    assert a.transport.peers() == {} and b.transport.peers() == {}
