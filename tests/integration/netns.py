"""Linux network namespaces for real-process partition tests.

`NetnsLab` builds a private network that never touches the host's interfaces or routes: one
bridge namespace holding a Linux bridge, and one namespace per node joined to the bridge by a
veth pair created directly between the two namespaces (neither end ever exists in the root
namespace). Node i gets `SUBNET.(i+1)/24` on its `eth0`; there is no default route anywhere,
so traffic can only go to loopback or to the other lab addresses. Every namespace name carries
a random tag, so concurrent runs do not collide, and `remove()` deletes them all (deleting a
namespace deletes the veth ends inside it, and a veth pair dies with either end).

A partition takes a node's bridge port down (`isolate`): frames to and from the node are
dropped silently by the bridge side, the node's own interface only loses carrier (its address
and routes stay, so it keeps talking to itself), which is how a cut cable looks.

The test process stays in the root namespace and reaches each node through a `NetnsClient`:
a small, long-lived Python process started with `ip netns exec` inside the node's namespace
that performs HTTP requests for the test (one JSON line in, one JSON line out). A node's API
is therefore always reachable from the test, even while the node is cut off from its peers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

#: Every `ip` invocation is bounded; creating a namespace or a veth takes milliseconds.
IP_COMMAND_TIMEOUT_S = 10.0
#: One HTTP request made by a `NetnsClient`, including its process round trip.
CLIENT_REQUEST_TIMEOUT_S = 5.0
#: Time for a `NetnsClient` process to exit after its stdin is closed.
CLIENT_STOP_TIMEOUT_S = 5.0
#: The lab's /24 (private; only exists inside the namespaces the lab creates).
DEFAULT_SUBNET = "10.77.0"
#: Response bodies larger than this are not what the tests read (status, ops, accounts).
CLIENT_RESPONSE_BYTES_MAX = 1024 * 1024

IP = shutil.which("ip")

# The client runs inside a node namespace: read one JSON request per line, answer one JSON
# line. Connection errors become status 0 so the caller can poll a node that is starting.
_CLIENT_SCRIPT = f"""
import base64, json, sys, urllib.error, urllib.request
for line in sys.stdin:
    request = json.loads(line)
    body = base64.b64decode(request["body"]) if request["body"] is not None else None
    req = urllib.request.Request(request["url"], data=body, method=request["method"],
                                 headers=request["headers"])
    try:
        with urllib.request.urlopen(req, timeout=request["timeout"]) as response:
            status, data = response.status, response.read({CLIENT_RESPONSE_BYTES_MAX})
    except urllib.error.HTTPError as exc:
        status, data = exc.code, exc.read({CLIENT_RESPONSE_BYTES_MAX})
    except Exception as exc:
        status, data = 0, repr(exc).encode()
    sys.stdout.write(json.dumps({{"status": status, "body": data.decode("utf-8", "replace")}}))
    sys.stdout.write("\\n")
    sys.stdout.flush()
"""


class NetnsUnavailableError(Exception):
    """Namespaces cannot be created here (not root, no `ip`, or the kernel refuses)."""


def _ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert IP is not None
    result = subprocess.run(
        [IP, *argv], capture_output=True, text=True, timeout=IP_COMMAND_TIMEOUT_S, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)} failed: {result.stderr.strip()}")
    return result


def netns_unavailable_reason() -> str | None:
    """Why namespaces cannot be used here, or None when a probe namespace was created."""
    if sys.platform != "linux":
        return f"network namespaces are Linux-only (platform {sys.platform})"
    if IP is None:
        return "iproute2's `ip` is not installed (CI installs it)"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    probe = f"swt-probe-{os.urandom(4).hex()}"
    result = _ip("netns", "add", probe, check=False)
    if result.returncode != 0:
        return f"`ip netns add` failed: {result.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def exec_prefix(namespace: str) -> list[str]:
    """The command prefix that runs a program inside `namespace`."""
    assert IP is not None
    return [IP, "netns", "exec", namespace]


@dataclass
class NetnsLab:
    """A bridge namespace plus `count` node namespaces, each with one address on the bridge."""

    count: int
    subnet: str = DEFAULT_SUBNET
    tag: str = field(default_factory=lambda: os.urandom(3).hex())
    created: list[str] = field(default_factory=list)

    @property
    def bridge_namespace(self) -> str:
        return f"swt-{self.tag}-br"

    def namespace(self, index: int) -> str:
        return f"swt-{self.tag}-n{index}"

    def address(self, index: int) -> str:
        return f"{self.subnet}.{index + 1}"

    @staticmethod
    def bridge_port(index: int) -> str:
        return f"vb{index}"

    def create(self) -> None:
        """Build the network; on any failure everything already created is removed."""
        try:
            self._add_namespace(self.bridge_namespace)
            _ip("-n", self.bridge_namespace, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.bridge_namespace, "link", "set", "br0", "up")
            for index in range(self.count):
                self._add_node(index)
        except BaseException:
            self.remove()
            raise

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self.created.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _add_node(self, index: int) -> None:
        namespace, port = self.namespace(index), self.bridge_port(index)
        self._add_namespace(namespace)
        # Both ends are created in place: eth0 in the node namespace, its peer in the bridge.
        _ip(
            "-n", namespace, "link", "add", "eth0", "type", "veth",
            "peer", "name", port, "netns", self.bridge_namespace,
        )  # fmt: skip
        _ip("-n", namespace, "addr", "add", f"{self.address(index)}/24", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        _ip("-n", self.bridge_namespace, "link", "set", port, "master", "br0")
        _ip("-n", self.bridge_namespace, "link", "set", port, "up")

    def isolate(self, index: int) -> None:
        """Cut node `index` off the bridge (its frames are dropped in both directions)."""
        _ip("-n", self.bridge_namespace, "link", "set", self.bridge_port(index), "down")

    def heal(self, index: int) -> None:
        _ip("-n", self.bridge_namespace, "link", "set", self.bridge_port(index), "up")

    def remove(self) -> None:
        """Delete every namespace this lab created (idempotent; never raises)."""
        while self.created:
            _ip("netns", "del", self.created.pop(), check=False)

    def leftovers(self) -> list[str]:
        """Namespaces carrying this lab's tag that still exist (empty after `remove`)."""
        listed = _ip("netns", "list", check=False).stdout.split()
        return [name for name in listed if name.startswith(f"swt-{self.tag}-")]


@dataclass
class HttpResult:
    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


class NetnsClient:
    """HTTP requests made from inside a namespace by a long-lived helper process."""

    def __init__(self, namespace: str, process: asyncio.subprocess.Process) -> None:
        self.namespace = namespace
        self.process = process
        self._lock = asyncio.Lock()

    @classmethod
    async def start(cls, namespace: str) -> NetnsClient:
        process = await asyncio.create_subprocess_exec(
            *exec_prefix(namespace),
            sys.executable,
            "-P",
            "-c",
            _CLIENT_SCRIPT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2 * CLIENT_RESPONSE_BYTES_MAX + 1024,
        )
        return cls(namespace, process)

    async def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float = CLIENT_REQUEST_TIMEOUT_S,
    ) -> HttpResult:
        """One request; status 0 means no HTTP answer (refused, unreachable, timed out)."""
        line = json.dumps(
            {
                "method": method,
                "url": url,
                "body": None if body is None else base64.b64encode(body).decode(),
                "headers": headers or {},
                "timeout": timeout_s,
            }
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        async with self._lock, asyncio.timeout(timeout_s + CLIENT_REQUEST_TIMEOUT_S):
            self.process.stdin.write(line.encode() + b"\n")
            await self.process.stdin.drain()
            answer = await self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the client in {self.namespace} exited")
        decoded = json.loads(answer)
        return HttpResult(decoded["status"], decoded["body"])

    async def get_json(self, url: str) -> Any:
        """The decoded JSON body of a 200 answer, or None for any other outcome."""
        result = await self.request("GET", url)
        if result.status != 200:
            return None
        with contextlib.suppress(ValueError):
            return result.json()
        return None

    async def stop(self) -> None:
        if self.process.returncode is not None:
            return
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), CLIENT_STOP_TIMEOUT_S)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
