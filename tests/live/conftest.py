"""One real `swarmd run` process on loopback for the live fuzzers, and the scan of its log.

The node is started once per test module (the fuzzers only send it bad input, so one node
serves every test of a file) from a home written by `init_home`: a council of one, both peer
transports served on the API port (`/v1/signal`, `/v1/ws`), the admin interface on its own
port with its cookie token, the per-address rate limit lifted so the fuzzers measure handlers,
not the limiter. Its stdout and stderr go to `node.log` in the home.

`LiveNode.problems()` returns the log lines written since the last call that show a bug: any
line that is not one JSON object (a traceback printed outside the log pipeline), any record at
level error or critical, any `request_failed` event, any record carrying an exception. Every
fuzzer asserts it is empty after its run, and that the node still answers `/v1/status`.

How many examples each fuzzer draws: `SWARMD_FUZZ_EXAMPLES` (default `DEFAULT_EXAMPLES`, sized
so that each file runs in well under 90 s on one core). Run longer locally with, e.g.,
`SWARMD_FUZZ_EXAMPLES=2000 .venv/bin/pytest -q tests/live`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from swarmd.node.cli.home import init_home
from swarmd.node.cli.parent import EXIT_WITH_PARENT_ENV
from swarmd.protocol.crypto import KeyPair
from swarmd.protocol.genesis import Genesis

#: Examples per fuzzed operation unless SWARMD_FUZZ_EXAMPLES says otherwise.
DEFAULT_EXAMPLES = 30
#: Time budgets (seconds) for the node to answer after start and to stop after SIGTERM.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
#: Across processes there is no event to wait on: the start is polled at this interval.
POLL_INTERVAL_S = 0.05
#: Log levels that always mean a bug when bad input is all the node received.
BAD_LEVELS = frozenset({"error", "critical", "exception"})
BAD_EVENTS = frozenset({"request_failed"})


def fuzz_examples() -> int:
    """Examples per fuzzed operation (env SWARMD_FUZZ_EXAMPLES, default DEFAULT_EXAMPLES)."""
    return int(os.environ.get("SWARMD_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def problem(line: str) -> bool:
    """Whether one log line shows a bug (see the module docstring)."""
    try:
        record = json.loads(line)
    except ValueError:
        return True
    if not isinstance(record, dict):
        return True
    return (
        str(record.get("level", "")).lower() in BAD_LEVELS
        or record.get("event") in BAD_EVENTS
        or "exception" in record
        or "exc_info" in record
        or "Traceback" in line
    )


@dataclass
class LiveNode:
    home: Path
    keypair: KeyPair
    network_id: bytes
    api_port: int
    admin_port: int
    process: subprocess.Popen[bytes] | None = None
    _offset: int = field(default=0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def log_path(self) -> Path:
        return self.home / "node.log"

    def admin_token(self) -> str:
        return (self.home / "admin.cookie").read_text().strip()

    def status(self) -> dict[str, Any]:
        """The node's `/v1/status` (raises if it does not answer 200)."""
        with urllib.request.urlopen(self.url + "/v1/status", timeout=5) as response:
            assert response.status == 200
            value: dict[str, Any] = json.loads(response.read())
            return value

    def problems(self) -> list[str]:
        """Log lines that show a bug, written since the last call (complete lines only)."""
        with open(self.log_path, "rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        lines = complete.decode(errors="replace").splitlines()
        return [line for line in lines if line.strip() and problem(line)]

    def assert_healthy(self) -> None:
        """No bug in the log since the last check, and the node still running and answering."""
        assert self.process is not None and self.process.poll() is None, "the node exited"
        assert self.status()["node_id"]
        found = self.problems()
        assert not found, "node log shows a bug:\n" + "\n".join(found[:20])

    def wait_for(self, what: str, predicate: Callable[[dict[str, Any]], bool]) -> None:
        """Poll `/v1/status` until `predicate(status)` holds (START_TIMEOUT_S at most)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not predicate(self.status()):
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(POLL_INTERVAL_S)

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-m", "swarmd.node.cli", "run", "--home", str(self.home)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.home,
                start_new_session=True,
                env={**os.environ, EXIT_WITH_PARENT_ENV: str(os.getpid())},
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.process.poll() is None, self.log_path.read_text(errors="replace")
            try:
                self.status()
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise
            time.sleep(POLL_INTERVAL_S)

    def stop(self) -> int:
        process = self.process
        assert process is not None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode


def create_live_node(directory: Path) -> LiveNode:
    keypair = KeyPair.from_seed(os.urandom(32))
    genesis = Genesis.create("fuzz", [keypair.public_key], created_at=int(time.time()))
    api_port, admin_port = _free_ports(2)
    overrides = {
        "api": {"port": api_port, "rate_limit_per_s": 1_000_000.0, "rate_limit_burst": 1_000_000},
        "admin": {"port": admin_port},
        "network": {"transport": "websocket", "ice_host_addresses": ["127.0.0.1"]},
        "consensus": {"checkpoint_interval_s": 0.2},
        "log": {"level": "info"},
    }
    home = directory / "node"
    init_home(home, keypair=keypair, genesis=genesis, config_overrides=overrides)
    return LiveNode(home, keypair, genesis.network_id, api_port, admin_port)


@pytest.fixture(scope="module")
def live_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A running node for the module; at teardown it must stop cleanly (exit 0)."""
    node = create_live_node(tmp_path_factory.mktemp("live"))
    node.start()
    try:
        yield node
    finally:
        code = node.stop()
    assert code == 0, node.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    """One HTTP session for a module's fuzz cases (keep-alive: fewer sockets in TIME_WAIT)."""
    with requests.Session() as session:
        yield session
