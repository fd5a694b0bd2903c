"""Issue 14, F11: when the pipe the node logs into closes (`swarmd run 2>&1 | head -2`), the
node keeps answering and still stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import urllib.request
from pathlib import Path

from swarmd.node.cli.home import init_home

WAIT_S = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def get_status(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=5) as response:
        status: int = response.status
        return status


async def test_f11_a_closed_log_pipe_neither_stops_answers_nor_blocks_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()
    fast = {"checkpoint_interval_s": 0.05, "timeout_propose_s": 0.2}
    init_home(
        tmp_path / "home",
        config_overrides={"api": {"host": "127.0.0.1", "port": port}, "consensus": fast},
    )
    read_end, write_end = os.pipe()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "swarmd.node.cli",
        "run",
        "--home",
        str(tmp_path / "home"),
        stdout=write_end,
        stderr=write_end,
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            async with asyncio.timeout(WAIT_S):
                while b"node_ready" not in await asyncio.to_thread(pipe.readline):
                    pass
        # The reader went away (head exited): every later log line meets EPIPE.
        for _ in range(3):
            assert await asyncio.to_thread(get_status, port) == 200
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT_S):
            code = await process.wait()
        assert code == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
