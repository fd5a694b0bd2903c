"""`swarmd bench api`: client-facing response times of a node's HTTP API.

The plan's Stage 1 gate asks for UI responses under 100 ms at P95. This starts one node (a
one-member council, real SQLite store, real aiohttp server on 127.0.0.1), funds accounts, then
measures sequential requests from one client: `GET /v1/status`, `GET /v1/accounts/{id}` and
`POST /v1/ops` (a transfer, answered 202 after its commit, synchronous=FULL). The ceiling is a
bare aiohttp handler returning a small JSON object, measured in the same run with the same
client: the ratio says how much the node adds to the HTTP round trip itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from swarmd.node.cli.home import init_home
from swarmd.node.config import load_config
from swarmd.node.http.api import build_app
from swarmd.node.runtime.driver import Daemon
from swarmd.protocol import crypto
from swarmd.protocol.wallet import Author

from .common import emit, percentile


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner, f"http://127.0.0.1:{sock.getsockname()[1]}"


async def _time(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> float:
    began = time.perf_counter()
    async with session.request(method, url, **kw) as response:
        await response.read()
        if response.status >= 400:
            raise RuntimeError(f"{method} {url}: {response.status}")
    return (time.perf_counter() - began) * 1000


async def _measure(
    daemon: Daemon, requests: int, node_url: str, bare_url: str
) -> dict[str, list[float]]:
    """Time `requests` rounds of: a bare aiohttp GET (the ceiling), status, an account read and
    an op submission."""
    council = Author(daemon.keypair, daemon.genesis.network_id)
    people = [
        Author(crypto.KeyPair.from_seed(os.urandom(32)), council.network_id) for _ in range(50)
    ]
    grants = [council.grant(p.key, daemon.genesis.signup_reward) for p in people]
    await daemon.submit_many([g.envelope for g in grants])
    transfers = [
        people[i % 50].transfer(
            people[(i + 1) % 50].key, 1, receive=[grants[i % 50].op_id] if i < 50 else []
        )
        for i in range(requests)
    ]
    octet = {"Content-Type": "application/octet-stream"}
    timings: dict[str, list[float]] = {"bare": [], "status": [], "account": [], "submit": []}
    async with aiohttp.ClientSession() as session:
        for i in range(requests):
            timings["bare"].append(await _time(session, "GET", bare_url + "/"))
            timings["status"].append(await _time(session, "GET", node_url + "/v1/status"))
            account = people[i % 50].keypair.account_id
            timings["account"].append(
                await _time(session, "GET", f"{node_url}/v1/accounts/{account}")
            )
            timings["submit"].append(
                await _time(
                    session, "POST", node_url + "/v1/ops", data=transfers[i].envelope, headers=octet
                )
            )
    return timings


async def run(requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="swarmd-bench-api-") as directory:
        home = Path(directory) / "node"
        overrides = {"api": {"rate_limit_per_s": 1_000_000.0, "rate_limit_burst": 10_000_000}}
        init_home(
            home, keypair=crypto.KeyPair.from_seed(os.urandom(32)), config_overrides=overrides
        )
        daemon = await Daemon.open(load_config(home / "swarmd.toml"))
        daemon.create_transports()
        await daemon.start()
        node_runner, node_url = await _serve(build_app(daemon))

        async def hello(_: web.Request) -> web.Response:
            return web.json_response({"ok": True})

        bare = web.Application()
        bare.router.add_get("/", hello)
        bare_runner, bare_url = await _serve(bare)
        try:
            timings = await _measure(daemon, requests, node_url, bare_url)
        finally:
            await bare_runner.cleanup()
            await node_runner.cleanup()
            await daemon.stop()
    bare_p50 = statistics.median(timings["bare"])
    result: dict[str, Any] = {
        "benchmark": "api",
        "requests": requests,
        "ceiling_ms_p50": round(bare_p50, 3),
    }
    for name in ("status", "account", "submit"):
        values = timings[name]
        result[f"{name}_ms_p50"] = round(statistics.median(values), 3)
        result[f"{name}_ms_p95"] = round(percentile(values, 0.95), 3)
        result[f"{name}_ratio_p50"] = round(statistics.median(values) / bare_p50, 2)
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="swarmd bench api", description=__doc__)
    parser.add_argument("--requests", type=int, default=500, help="requests of each kind")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 100_000:
        parser.error("--requests must be 1..100000")
    emit(asyncio.run(run(args.requests)), args.json)
    return 0
