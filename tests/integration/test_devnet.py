"""`swarmd devnet` as a user runs it: a real process tree, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
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


@contextlib.asynccontextmanager
async def running_devnet(
    home: Path, nodes: int
) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, Any]]]:
    """`swarmd devnet --nodes N --transport websocket --json` in a process of its own, with
    the JSON line it prints once the swarm is up; killed on the way out if still running."""
    process = await start_devnet(home, nodes)
    try:
        assert process.stdout is not None
        async with asyncio.timeout(DEVNET_TIMEOUT_S):
            line = await process.stdout.readline()
        yield process, json.loads(line)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def start_devnet(home: Path, nodes: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-P",
        "-c",
        CLI,
        "devnet",
        "--nodes",
        str(nodes),
        "--transport",
        "websocket",
        "--home",
        str(home),
        "--json",
        stdout=asyncio.subprocess.PIPE,
    )


async def test_devnet_runs_activity_and_stops_on_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "devnet"
    async with running_devnet(home, 3) as (process, value):
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

    assert process.returncode == 1  # a refusal (file_exists), not usage
    assert json.loads(out)["code"] == "file_exists"
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def node_pids(home: Path) -> list[int]:
    """The `swarmd run` processes whose command line names a node home under `home`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"run" in argv and any(arg.startswith(str(home).encode()) for arg in argv):
            pids.append(int(entry.name))
    return pids


async def exited(pid: int) -> None:
    """Wait (without polling) until `pid` is gone: a pidfd turns readable when it exits."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    gone = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, gone.set)
    try:
        await gone.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl PR_SET_PDEATHSIG")
async def test_nodes_stop_when_the_devnet_is_killed(tmp_path: Path) -> None:
    home = tmp_path / "devnet"
    try:
        async with running_devnet(home, 2) as (process, _):
            pids = node_pids(home)
            assert len(pids) == 2
            process.kill()  # kill -9: the devnet cannot stop its nodes itself
            await process.wait()
            async with asyncio.timeout(DEVNET_TIMEOUT_S):
                for pid in pids:
                    await exited(pid)
            assert node_pids(home) == []
    finally:
        for pid in node_pids(home):
            os.kill(pid, signal.SIGKILL)
