"""Log lines an operator reads: aioice's free-text info lines are hidden (its warnings are
not), and a configured peer that cannot be reached logs one `dial_failed` line per failed
dial, with no transport-level `reconnect_failed` / `reconnect_gave_up` lines while the dialer
goes on (those are debug now)."""

from __future__ import annotations

import asyncio
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from swarmd.node.cli.home import init_home
from swarmd.node.config import load_config
from swarmd.node.http.api import build_app
from swarmd.node.logs import configure_logging, parse_json_lines, reset_logging
from swarmd.node.runtime.driver import Daemon
from swarmd.protocol import crypto
from swarmd.protocol.genesis import Genesis

from .test_api import FAST
from .test_status_cli import _free_loopback_port

WAIT_S = 20.0


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    output = io.StringIO()
    configure_logging("sw1logtest", "info", "json", stream=output)
    yield output
    reset_logging()


def test_aioice_info_lines_are_hidden_but_not_its_warnings(stream: io.StringIO) -> None:
    logging.getLogger("aioice.ice").info("Connection(0) Check CandidatePair(...) State.FROZEN")
    logging.getLogger("aioice.ice").warning("Connection(0) ICE failed")
    logging.getLogger("aiohttp.access").info("GET /v1/status 200")
    events = [line["event"] for line in parse_json_lines(stream.getvalue())]
    assert events == ["Connection(0) ICE failed", "GET /v1/status 200"]


async def _open(
    home: Path, port: int, genesis: Genesis | None = None, **network: object
) -> tuple[Daemon, TestClient]:
    overrides = {
        **FAST,
        "api": {"host": "127.0.0.1", "port": port},
        "network": {"transport": "websocket", **network},
    }
    keypair = crypto.KeyPair.from_seed(os.urandom(32))
    init_home(home, keypair=keypair, genesis=genesis, config_overrides=overrides)
    daemon = await Daemon.open(load_config(home / "swarmd.toml"))
    daemon.create_transports()
    api = TestClient(TestServer(build_app(daemon), host="127.0.0.1", port=port))
    await daemon.start()
    await api.start_server()
    return daemon, api


async def test_a_failing_peer_logs_one_line_per_failed_dial(
    tmp_path: Path, stream: io.StringIO
) -> None:
    dead = f"http://127.0.0.1:{_free_loopback_port()}"
    daemon, api = await _open(tmp_path / "a", _free_loopback_port(), peers=[{"url": dead}])
    try:
        async with asyncio.timeout(WAIT_S):
            while sum(e["event"] == "dial_failed" for e in parse_json_lines(stream.getvalue())) < 3:
                await asyncio.sleep(0.05)
    finally:
        await api.close()
        await daemon.stop()
    events = parse_json_lines(stream.getvalue())
    failed = [e for e in events if e["event"] == "dial_failed"]
    assert [e["failures"] for e in failed[:3]] == [1, 2, 3]
    assert all(e["url"] == dead and e["level"] == "warning" for e in failed)
    assert all(e["retry_in_s"] > 0 for e in failed)
    names = {e["event"] for e in events}
    assert not names & {"reconnect_failed", "reconnect_gave_up", "reconnect_attempts_exhausted"}
