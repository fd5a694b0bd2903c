"""`swarmd status`: the text shows sync lag, catching_up, the mode and its reason and each
configured peer's last dial error; `--home DIR` finds the node from its config."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from swarmd.node.cli.home import init_home
from swarmd.node.cli.main import main
from swarmd.node.cli.status import status_text
from swarmd.node.config import load_config
from swarmd.node.http.api import build_app
from swarmd.node.runtime.driver import Daemon
from swarmd.protocol import crypto

from .test_api import FAST

WAIT_S = 20.0


def test_the_text_names_lag_catching_up_mode_reason_and_dial_errors() -> None:
    status: dict[str, Any] = {
        "node_id": "sw1me",
        "mode": "read_only",
        "mode_reason": "disk nearly full",
        "final_height": 7,
        "peers": [{"node_id": "sw1up"}],
        "state_root": "ab" * 32,
        "sync_lag": 3,
        "catching_up": True,
        "dial": [
            {"url": "http://127.0.0.1:7001", "node_id": "sw1up", "last_error": None},
            {
                "url": "http://127.0.0.1:7002",
                "node_id": None,
                "failures": 4,
                "last_error": "no_ice_candidates",
                "last_error_detail": "check the TURN credentials",
                "last_error_at": 990.0,
            },
        ],
    }
    text = status_text(status, now=1000.0)
    assert "mode: read_only (reason: disk nearly full)" in text
    assert "rejoin:" not in text
    diverged = {**status, "rejoin": "confirming 1/2", "root_divergence_height": 5}
    assert "  rejoin: confirming 1/2 root_divergence_height=5" in status_text(diverged, 1000.0)
    assert "SIGNING HALTED" not in text
    copied = status_text({**status, "signing_halted": True}, 1000.0)
    assert "  SIGNING HALTED: another process signs with this node's key" in copied
    assert "sync: lag=3 catching_up=yes" in text
    assert "peer http://127.0.0.1:7001: connected" in text
    assert (
        "peer http://127.0.0.1:7002: not connected, last dial error no_ice_candidates "
        "(check the TURN credentials), 10s ago, 4 failed since the last success"
    ) in text


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_status_from_home_shows_the_last_dial_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port, dead = _free_loopback_port(), _free_loopback_port()
    home = tmp_path / "home"
    overrides = {
        **FAST,
        "api": {"host": "127.0.0.1", "port": port},
        "network": {"transport": "websocket", "peers": [{"url": f"http://127.0.0.1:{dead}"}]},
    }
    init_home(home, keypair=crypto.KeyPair.from_seed(os.urandom(32)), config_overrides=overrides)
    daemon = await Daemon.open(load_config(home / "swarmd.toml"))
    daemon.create_transports()
    api = TestClient(TestServer(build_app(daemon), host="127.0.0.1", port=port))
    await daemon.start()
    await api.start_server()
    try:
        async with asyncio.timeout(WAIT_S):
            while not (await (await api.get("/v1/status")).json())["dial"][0]["last_error"]:
                await asyncio.sleep(0.05)
        code = await asyncio.to_thread(main, ["status", "--home", str(home)])
    finally:
        await api.close()
        await daemon.stop()
    text = capsys.readouterr().out
    assert code == 0
    assert "sync: lag=0 catching_up=no" in text
    assert "mode: normal (reason: -)" in text
    assert f"peer http://127.0.0.1:{dead}: not connected, last dial error " in text


def test_a_full_node_says_it_follows_checkpoints_instead_of_an_idle_round() -> None:
    status: dict[str, Any] = {
        "node_id": "sw1full",
        "mode": "normal",
        "final_height": 14,
        "peers": [],
        "state_root": "ab" * 32,
        "validator": False,
        "epoch": 0,
        "consensus_height": 0,
        "consensus_step": "propose",
    }
    text = status_text(status, now=1000.0)
    assert "  consensus: not a validator (follows checkpoints), epoch=0" in text
    assert "step=propose" not in text  # (height 0, propose: read as a stuck validator)
    assert "step=precommit" in status_text(
        {**status, "validator": True, "consensus_step": "precommit"}, 1000.0
    )
