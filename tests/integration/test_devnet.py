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

from swarmd.node.cli.common import load_key_file
from swarmd.node.cli.devnet import wait_until
from swarmd.protocol import crypto
from swarmd.protocol.wallet import Author

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


def node_pid(home: Path, index: int) -> int:
    (pid,) = node_pids(home / f"node-{index}")
    return pid


async def final_on(url: str, op_id: str) -> bool:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
            session.get(f"{url}/v1/ops/{op_id}") as response,
        ):
            return (await response.json()).get("status") == "final"
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return False


async def transfer_from_tester(home: Path, url: str, network_id: bytes) -> str:
    """A transfer by tester-0 (its wallet file), at its chain position as the node reports it."""
    keypair = load_key_file(home / "wallets" / "tester-0.key")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async with session.get(f"{url}/v1/accounts/{keypair.account_id}") as response:
            view = await response.json()
        author = Author(keypair, network_id, seq=view["seq"], head=bytes.fromhex(view["head"]))
        op = author.transfer(crypto.KeyPair.from_seed(os.urandom(32)).public_key, 1)
        async with session.post(
            f"{url}/v1/ops", data=op.envelope, headers={"Content-Type": "application/octet-stream"}
        ) as response:
            assert response.status == 202, await response.json()
    return op.op_id.hex()


async def test_one_node_exits_the_others_keep_finalizing(tmp_path: Path) -> None:
    home = tmp_path / "devnet"
    restarted: asyncio.subprocess.Process | None = None
    try:
        async with running_devnet(home, 4) as (process, value):
            urls = [node["api_url"] for node in value["nodes"]]
            network_id = bytes.fromhex(value["network_id"])
            os.kill(node_pid(home, 3), signal.SIGKILL)
            assert process.stdout is not None
            async with asyncio.timeout(DEVNET_TIMEOUT_S):
                report = json.loads(await process.stdout.readline())
            assert (report["event"], report["index"], report["exit_code"]) == (
                "node_exited",
                3,
                -signal.SIGKILL,
            )
            assert report["log_file"] == str(home / "node-3" / "node.log")
            assert Path(report["log_file"]).exists()
            assert process.returncode is None  # the devnet keeps running

            # Three of four still finalize.
            op_id = await transfer_from_tester(home, urls[0], network_id)

            async def final_on_three() -> bool:
                return all([await final_on(url, op_id) for url in urls[:3]])

            await wait_until(final_on_three, DEVNET_TIMEOUT_S, "the transfer final on three")

            # The printed command brings node-3 back; it catches up with the op.
            restarted = await asyncio.create_subprocess_exec(
                *report["restart_argv"],
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )

            async def final_on_restarted() -> bool:
                return await final_on(urls[3], op_id)

            await wait_until(final_on_restarted, DEVNET_TIMEOUT_S, "the restarted node")

            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                assert await process.wait() == 0
            assert not any([await answers(url) for url in urls[:3]])
    finally:
        if restarted is not None and restarted.returncode is None:
            restarted.kill()
            await restarted.wait()
