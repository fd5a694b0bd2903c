"""`swarmd devnet` as a user runs it: a real process tree, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

pytestmark = pytest.mark.integration

DEVNET_TIMEOUT_S = 90.0
CLI = "import sys; from swarmd.node.cli import main; sys.exit(main())"


async def answers(url: str) -> bool:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
            session.get(url + "/v1/status") as response,
        ):
            return response.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


async def test_devnet_runs_activity_and_stops_on_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "devnet"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-P",
        "-c",
        CLI,
        "devnet",
        "--nodes",
        "3",
        "--transport",
        "websocket",
        "--home",
        str(home),
        "--json",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(DEVNET_TIMEOUT_S):
            line = await process.stdout.readline()
        value: dict[str, Any] = json.loads(line)
        urls = [node["api_url"] for node in value["nodes"]]
        assert len(urls) == 3
        activity = value["activity"]
        assert activity["final_height"] >= 1 and activity["handles"] == {"ada": "tester-1"}
        assert sum(activity["balances"].values()) > 0
        assert all([await answers(url) for url in urls])

        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await process.wait() == 0
        assert not any([await answers(url) for url in urls])
        assert (home / "devnet.json").exists()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_devnet_refuses_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-P",
        "-c",
        CLI,
        "--json",
        "devnet",
        "--home",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()

    assert process.returncode == 2
    assert json.loads(out)["code"] == "file_exists"
    assert (tmp_path / "precious.txt").read_text() == "keep me"
