"""`swarmd devnet`: a local swarm of real `swarmd run` processes on loopback.

It writes N node homes under one directory (a council of N, one genesis), picks free loopback
ports, starts the nodes, waits until every node sees every other one, runs a short scripted
burst (council grants to new testers, transfers, hype burns, a handle claim with council
endorsements) so that balances and checkpoints move, prints each node's API URL and then
keeps running until SIGINT/SIGTERM, when it stops the nodes cleanly. A node that exits on its
own (or is killed for a drill) is reported with its exit status, its log file and the command
that restarts it; the other nodes keep running. A node restarted by hand is not the devnet's
child: it does not stop with the devnet.

`Swarm` is also what the integration tests use (start, kill -9, restart, wait for state).
With `--turn` a local coturn is started and every node goes relay-only through it with
ephemeral (use-auth-secret) credentials.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shlex
import shutil
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from swarmd.protocol import crypto, limits
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.ops import Op
from swarmd.protocol.wallet import Author

from .common import (
    EXIT_OK,
    Add,
    CliError,
    Output,
    key_file_text,
    positive_int,
    write_private_file,
)
from .home import init_home
from .parent import EXIT_WITH_PARENT_ENV

#: A marker in the devnet directory: only a directory holding it is ever wiped and reused.
MARKER_FILE = "devnet.json"
#: Time budgets (seconds). Startup covers Python start-up and ICE on every link.
NODE_START_TIMEOUT_S = 30.0
PEERS_TIMEOUT_S = 60.0
CONVERGE_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
COTURN_START_TIMEOUT_S = 10.0
#: How often the devnet polls node APIs while waiting for a condition (no event to wait on
#: across processes; each poll is one loopback HTTP request per node).
POLL_INTERVAL_S = 0.1
#: Testers the activity burst creates.
TESTERS = 4
#: Relay ports coturn may allocate (a random block so parallel devnets rarely collide).
RELAY_PORT_BLOCK = 100
#: Log lines kept from coturn for error reports.
COTURN_OUTPUT_LINES = 200


#: Exit status after Ctrl-C, as a shell reports a SIGINT death (128 + 2).
EXIT_INTERRUPTED = 130


class DevnetError(CliError):
    pass


@dataclass
class DevnetOptions:
    nodes: int
    home: Path
    transport: str = "webrtc"
    turn: bool = False
    activity: bool = True
    as_json: bool = False
    exit_when_ready: bool = False
    #: Extra [section] overrides for every node's config (tests shorten intervals).
    config_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class NodeHome:
    index: int
    home: Path
    keypair: crypto.KeyPair
    api_port: int
    admin_port: int
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def node_id(self) -> str:
        return self.keypair.account_id


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback TCP ports that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    """Poll `predicate` (across processes there is no event to wait on) within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await predicate():
            return
        if time.monotonic() >= deadline:
            raise DevnetError(f"timed out after {timeout_s:.0f} s waiting for {what}", "timeout")
        await asyncio.sleep(POLL_INTERVAL_S)


# --- coturn ----------------------------------------------------------------------------------


@dataclass
class Coturn:
    process: asyncio.subprocess.Process
    url: str
    secret: str
    output: deque[str]
    drain: asyncio.Task[None]

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.drain.cancel()


def coturn_config(directory: Path, port: int, secret: str) -> str:
    min_port = random.Random().randrange(50_000, 59_000, RELAY_PORT_BLOCK)
    return f"""listening-ip=127.0.0.1
listening-port={port}
relay-ip=127.0.0.1
min-port={min_port}
max-port={min_port + RELAY_PORT_BLOCK - 1}
# The devnet relays between peers on loopback, which a production relay must deny.
allow-loopback-peers
use-auth-secret
static-auth-secret={secret}
realm=swarmd.devnet
# One relay thread: with several, a client's authenticated retry can land on a thread that never
# issued its nonce (438 Wrong nonce), and aioice retries a 438 only once.
relay-threads=1
fingerprint
no-cli
no-tls
no-dtls
no-tcp-relay
pidfile={directory / "turnserver.pid"}
userdb={directory / "turndb"}
log-file=stdout
simple-log
verbose
"""


async def start_coturn(directory: Path, secret: str | None = None) -> Coturn:
    turnserver = shutil.which("turnserver")
    if turnserver is None:
        raise DevnetError("coturn's `turnserver` is not installed", "no_coturn")
    directory.mkdir(parents=True, exist_ok=True)
    secret = secret or os.urandom(16).hex()
    (port,) = free_ports(1)
    config_path = directory / "turnserver.conf"
    config_path.write_text(coturn_config(directory, port, secret))
    process = await asyncio.create_subprocess_exec(
        turnserver,
        "-c",
        str(config_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output: deque[str] = deque(maxlen=COTURN_OUTPUT_LINES)
    ready = asyncio.Event()

    async def drain() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            output.append(line.decode(errors="replace").rstrip())
            if b"UDP listener opened" in line:
                ready.set()

    task = asyncio.create_task(drain())
    coturn = Coturn(process, f"turn:127.0.0.1:{port}?transport=udp", secret, output, task)
    try:
        await asyncio.wait_for(ready.wait(), COTURN_START_TIMEOUT_S)
    except TimeoutError:
        await coturn.stop()
        raise DevnetError("coturn did not start:\n" + "\n".join(output), "coturn_failed") from None
    return coturn


# --- the swarm -------------------------------------------------------------------------------


class Swarm:
    """N node homes under one directory and the processes running them."""

    def __init__(self, directory: Path, nodes: list[NodeHome], genesis: Genesis) -> None:
        self.directory = directory
        self.nodes = nodes
        self.genesis = genesis
        self.session: aiohttp.ClientSession | None = None

    @classmethod
    def create(
        cls,
        directory: Path,
        count: int,
        *,
        transport: str = "websocket",
        turn: Coturn | None = None,
        config_overrides: dict[str, dict[str, Any]] | None = None,
        network_name: str = "devnet",
    ) -> Swarm:
        _prepare_directory(directory)
        keypairs = [crypto.KeyPair.from_seed(os.urandom(32)) for _ in range(count)]
        genesis = Genesis.create(
            network_name, [k.public_key for k in keypairs], created_at=int(time.time())
        )
        ports = free_ports(2 * count)
        nodes = [
            NodeHome(i, directory / f"node-{i}", keypairs[i], ports[2 * i], ports[2 * i + 1])
            for i in range(count)
        ]
        for node in nodes:
            overrides = _node_overrides(node, nodes, transport, turn, config_overrides or {})
            init_home(node.home, keypair=node.keypair, genesis=genesis, config_overrides=overrides)
        swarm = cls(directory, nodes, genesis)
        (directory / MARKER_FILE).write_text(json.dumps(swarm.describe(), indent=2) + "\n")
        return swarm

    def describe(self) -> dict[str, Any]:
        return {
            "home": str(self.directory),
            "network_id": self.genesis.network_id.hex(),
            "nodes": [
                {
                    "index": node.index,
                    "node_id": node.node_id,
                    "api_url": node.url,
                    "admin_url": f"http://127.0.0.1:{node.admin_port}",
                    "home": str(node.home),
                }
                for node in self.nodes
            ],
        }

    # --- processes ---------------------------------------------------------------------------

    async def start_node(self, node: NodeHome) -> None:
        log_file = open(node.home / "node.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            node.process = await asyncio.create_subprocess_exec(
                sys.executable,
                # -P: the working directory is not put on sys.path (a stray timeit.py or
                # asyncio.py there would shadow the standard library).
                "-P",
                "-m",
                "swarmd.node.cli",
                "run",
                "--home",
                str(node.home),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,  # a terminal's Ctrl-C goes to the devnet, not the nodes
                cwd=node.home,
                # If the devnet (or a benchmark or test driving it) dies without stopping its
                # nodes, even by kill -9, they stop too instead of running on as orphans.
                env={**os.environ, EXIT_WITH_PARENT_ENV: str(os.getpid())},
            )
        finally:
            log_file.close()

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0))
        for node in self.nodes:
            await self.start_node(node)
        await wait_until(self._all_answer, NODE_START_TIMEOUT_S, "every node's API")

    def kill(self, node: NodeHome) -> None:
        """kill -9 (a crash)."""
        if node.process is not None and node.process.returncode is None:
            node.process.kill()

    async def wait_exited(self, node: NodeHome) -> int | None:
        if node.process is None:
            return None
        return await asyncio.wait_for(node.process.wait(), STOP_TIMEOUT_S)

    async def stop_node(self, node: NodeHome) -> None:
        process = node.process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def stop(self) -> None:
        await asyncio.gather(*(self.stop_node(node) for node in self.nodes))
        if self.session is not None:
            await self.session.close()
            self.session = None

    def running(self) -> list[NodeHome]:
        return [n for n in self.nodes if n.process is not None and n.process.returncode is None]

    # --- the API -----------------------------------------------------------------------------

    async def get(self, node: NodeHome, path: str) -> Any:
        assert self.session is not None
        async with self.session.get(node.url + path) as response:
            return await response.json()

    async def try_get(self, node: NodeHome, path: str) -> Any:
        try:
            return await self.get(node, path)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            return None

    async def submit(self, node: NodeHome, op: Op) -> tuple[int, Any]:
        assert self.session is not None
        async with self.session.post(
            node.url + "/v1/ops",
            data=op.envelope,
            headers={"Content-Type": "application/octet-stream"},
        ) as response:
            return response.status, await response.json()

    async def statuses(self, nodes: list[NodeHome] | None = None) -> list[Any]:
        targets = self.nodes if nodes is None else nodes
        return list(await asyncio.gather(*(self.try_get(n, "/v1/status") for n in targets)))

    async def _all_answer(self) -> bool:
        return all(status is not None for status in await self.statuses())

    async def wait_connected(self, timeout_s: float = PEERS_TIMEOUT_S) -> None:
        want = len(self.nodes) - 1

        async def connected() -> bool:
            statuses = await self.statuses()
            return all(s is not None and len(s["peers"]) >= want for s in statuses)

        await wait_until(connected, timeout_s, f"every node to see {want} peers")

    async def wait_converged(
        self, min_height: int = 1, timeout_s: float = CONVERGE_TIMEOUT_S
    ) -> list[Any]:
        """Every node at the same final height >= min_height with the same state root."""
        result: list[Any] = []

        async def converged() -> bool:
            statuses = await self.statuses()
            if any(s is None for s in statuses):
                return False
            heights = {s["final_height"] for s in statuses}
            roots = {s["state_root"] for s in statuses}
            unfinal = sum(s["unfinalized_ops"] + s["pending_ops"] for s in statuses)
            result[:] = statuses
            return (
                len(heights) == 1
                and min(heights) >= min_height
                and len(roots) == 1
                and (unfinal == 0)
            )

        await wait_until(converged, timeout_s, f"all nodes final at height >= {min_height}")
        return result

    async def wait_op(self, node: NodeHome, op_id: bytes, statuses: tuple[str, ...]) -> None:
        async def reached() -> bool:
            view = await self.try_get(node, f"/v1/ops/{op_id.hex()}")
            return view is not None and view.get("status") in statuses

        await wait_until(reached, CONVERGE_TIMEOUT_S, f"op {op_id.hex()[:12]} on node {node.index}")


def _prepare_directory(directory: Path) -> None:
    if directory.exists() and any(directory.iterdir()):
        if not (directory / MARKER_FILE).exists():
            raise DevnetError(
                f"{directory} is not empty and is not a devnet directory; pick another --home",
                "file_exists",
            )
        for child in directory.iterdir():
            if child.is_dir() and child.name.startswith(("node-", "wallets")):
                shutil.rmtree(child)
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / MARKER_FILE
    if not marker.exists():
        marker.write_text("{}\n")


def _node_overrides(
    node: NodeHome,
    nodes: list[NodeHome],
    transport: str,
    turn: Coturn | None,
    extra: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    # Each node dials the nodes with a lower index; the full mesh forms without glare and a
    # restarted node is re-dialed by the higher ones and re-dials the lower ones itself.
    peers = [
        {"url": other.url, "node_id": other.keypair.public_key}
        for other in nodes
        if other.index < node.index
    ]
    network: dict[str, Any] = {
        "transport": transport,
        "peers": peers,
        "ice_host_addresses": ["127.0.0.1"],
    }
    if turn is not None:
        network.update(ice_transport_policy="relay", turn_secret=turn.secret, turn_urls=[turn.url])
    overrides: dict[str, dict[str, Any]] = {
        "api": {"port": node.api_port},
        "admin": {"port": node.admin_port},
        "network": network,
    }
    for section, values in extra.items():
        overrides.setdefault(section, {}).update(values)
    return overrides


# --- the scripted activity -------------------------------------------------------------------


@dataclass
class Wallet:
    name: str
    author: Author
    unreceived: list[bytes] = field(default_factory=list)

    def take_credits(self) -> list[bytes]:
        credits, self.unreceived = (
            self.unreceived[: limits.OP_DEPS_MAX],
            self.unreceived[limits.OP_DEPS_MAX :],
        )
        return credits


async def run_activity(swarm: Swarm, directory: Path, *, endorse: bool = True) -> dict[str, Any]:
    """Grants, transfers, burns and a handle claim spread over the nodes; returns a summary.
    `endorse`: the council endorses the claim by script (not needed when the nodes endorse
    uncontested claims themselves, `[onboarding].endorse_handles`)."""
    network_id = swarm.genesis.network_id
    nodes = swarm.nodes
    council = [Author(node.keypair, network_id) for node in nodes]
    testers = []
    for index in range(TESTERS):
        keypair = crypto.KeyPair.from_seed(os.urandom(32))
        write_private_file(directory / "wallets" / f"tester-{index}.key", key_file_text(keypair))
        testers.append(Wallet(f"tester-{index}", Author(keypair, network_id)))
    submitted: list[tuple[NodeHome, Op]] = []

    async def submit(node: NodeHome, op: Op) -> None:
        for dep in op.parents:
            await swarm.wait_op(node, dep, ("applied", "final"))
        status, body = await swarm.submit(node, op)
        if status != 202:
            raise DevnetError(f"node {node.index} refused a scripted op: {body}", "activity_failed")
        submitted.append((node, op))

    reward = swarm.genesis.signup_reward
    for index, tester in enumerate(testers):
        member = council[index % len(council)]
        grant = member.grant(tester.author.key, reward)
        await submit(nodes[index % len(nodes)], grant)
        tester.unreceived.append(grant.op_id)
    for index, payer in enumerate(testers):
        payee = testers[(index + 1) % len(testers)]
        amount = 10 + 5 * index
        op = payer.author.transfer(payee.author.key, amount, receive=payer.take_credits())
        await submit(nodes[(index + 1) % len(nodes)], op)
        payee.unreceived.append(op.op_id)
    for index, target in ((0, "launch-party"), (2, "launch-party"), (3, "swarm-stickers")):
        burner = testers[index]
        op = burner.author.burn(3 + index, target, receive=burner.take_credits())
        await submit(nodes[index % len(nodes)], op)
    claim = testers[1].author.claim("ada", deps=testers[1].take_credits())  # needs funds
    await submit(nodes[-1], claim)
    for index, member in enumerate(council[: swarm.genesis.quorum] if endorse else ()):
        await submit(nodes[index % len(nodes)], member.endorse(claim))
    statuses = await swarm.wait_converged(min_height=1)

    def handle_bound(node: NodeHome) -> Callable[[], Awaitable[bool]]:
        async def bound() -> bool:
            view = await swarm.try_get(node, "/v1/handles/ada")
            return view is not None and view.get("owner") == testers[1].author.keypair.account_id

        return bound

    for node in nodes:
        await wait_until(handle_bound(node), CONVERGE_TIMEOUT_S, "handle binding")
    balances = {}
    for tester in testers:
        view = await swarm.get(nodes[0], f"/v1/accounts/{tester.author.keypair.account_id}")
        balances[tester.name] = view["balance"]
    return {
        "ops": len(submitted),
        "final_height": statuses[0]["final_height"],
        "state_root": statuses[0]["state_root"],
        "balances": balances,
        "handles": {"ada": testers[1].name},
        "wallets": str(directory / "wallets"),
    }


# --- the command -----------------------------------------------------------------------------


#: `swarmd devnet` runs onboarding on every node (all are council members): a tester signs
#: up from the wallet page in about a second, and uncontested handle claims bind on their own.
DEVNET_ONBOARDING: dict[str, Any] = {"enabled": True, "pow_bits": 12, "endorse_handles": True}


def _endorses_handles(options: DevnetOptions) -> bool:
    return bool(options.config_overrides["onboarding"].get("endorse_handles"))


async def run_devnet(options: DevnetOptions, out: Output) -> int:
    onboarding = {**DEVNET_ONBOARDING, **options.config_overrides.get("onboarding", {})}
    options.config_overrides = {**options.config_overrides, "onboarding": onboarding}
    directory = options.home.absolute()
    _prepare_directory(directory)
    coturn = await start_coturn(directory / "coturn") if options.turn else None
    try:
        swarm = Swarm.create(
            directory,
            options.nodes,
            transport=options.transport,
            turn=coturn,
            config_overrides=options.config_overrides,
        )
    except BaseException:
        if coturn is not None:
            await coturn.stop()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        activity = await _unless_stopped(_bring_up(swarm, options, directory), stop)
        if stop.is_set():
            print("swarmd devnet: interrupted while starting; stopping", file=sys.stderr)
            return EXIT_INTERRUPTED
        value = swarm.describe()
        value["transport"] = "turn-relay" if coturn is not None else options.transport
        value["activity"] = activity
        out.result(value, _devnet_text(value))
        sys.stdout.flush()
        if not options.exit_when_ready:
            await _watch_until_stopped(swarm, stop, out)
        return EXIT_OK
    except DevnetError as exc:
        _print_node_logs(swarm)
        raise exc
    finally:
        try:
            await swarm.stop()
        finally:
            if coturn is not None:
                await coturn.stop()


async def _bring_up(swarm: Swarm, options: DevnetOptions, directory: Path) -> Any:
    await swarm.start()
    if options.nodes > 1:
        await swarm.wait_connected()
    if not options.activity:
        return None
    return await run_activity(swarm, directory, endorse=not _endorses_handles(options))


async def _unless_stopped(work: Awaitable[Any], stop: asyncio.Event) -> Any:
    """Run `work` unless `stop` is set first (a Ctrl-C during start-up), then cancel it."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


async def _watch_until_stopped(swarm: Swarm, stop: asyncio.Event, out: Output) -> None:
    """Report every node that exits (the others keep running, so a stop-one-node drill can be
    practised) and return only once `stop` is set (Ctrl-C, SIGTERM)."""
    stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    watches: dict[asyncio.Future[int], NodeHome] = {}
    for node in swarm.running():
        assert node.process is not None
        watches[asyncio.ensure_future(node.process.wait())] = node
    try:
        while not stop.is_set():
            done, _ = await asyncio.wait({stopper, *watches}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exited = watches.pop(task, None)  # type: ignore[call-overload]
                if exited is not None:
                    report_exit(exited, task.result(), out)
    finally:
        for task in (stopper, *watches):
            task.cancel()


def restart_argv(node: NodeHome) -> list[str]:
    """The command that restarts `node` by hand (the `swarmd` script beside this interpreter,
    else `python -m swarmd.node.cli`)."""
    script = Path(sys.executable).parent / "swarmd"
    program = [str(script)] if script.exists() else [sys.executable, "-m", "swarmd.node.cli"]
    return [*program, "run", "--home", str(node.home)]


def report_exit(node: NodeHome, returncode: int, out: Output) -> None:
    """One node exited: which, how, where its log is and how to restart it."""
    argv = restart_argv(node)
    value = {
        "event": "node_exited",
        "index": node.index,
        "node_id": node.node_id,
        "exit_code": returncode,
        "log_file": str(node.home / "node.log"),
        "restart_argv": argv,
        "restart_command": shlex.join(argv),
    }
    if out.as_json:
        # A long-running command: after the ready object, one JSON line per event.
        print(json.dumps(value, sort_keys=True), flush=True)
        return
    how = f"signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
    print(
        f"swarmd devnet: node-{node.index} ({node.node_id}) exited ({how}); "
        f"its last log lines are in {value['log_file']}\n"
        f"  restart it with: {value['restart_command']}\n"
        "  the other nodes keep running; Ctrl-C stops the devnet",
        file=sys.stderr,
        flush=True,
    )


def _devnet_text(value: dict[str, Any]) -> str:
    lines = [f"devnet {value['network_id'][:16]} ({value['transport']}) in {value['home']}"]
    for node in value["nodes"]:
        lines.append(f"  node-{node['index']}  {node['api_url']}  {node['node_id']}")
    if value["activity"]:
        activity = value["activity"]
        lines.append(
            f"activity: {activity['ops']} ops, final height {activity['final_height']}, "
            f"balances {activity['balances']}, handle ada -> {activity['handles']['ada']}"
        )
    lines.append("Ctrl-C stops the swarm; a node that exits is reported, the others keep running.")
    return "\n".join(lines)


def _print_node_logs(swarm: Swarm) -> None:
    for node in swarm.nodes:
        path = node.home / "node.log"
        with contextlib.suppress(OSError):
            tail = path.read_text(errors="replace").splitlines()[-5:]
            print(f"--- {path} (last lines)", file=sys.stderr)
            for line in tail:
                print(line, file=sys.stderr)


# --- the command ---------------------------------------------------------------------------


def cmd_devnet(args: argparse.Namespace, out: Output) -> int:
    if not 1 <= args.nodes <= 32:
        raise CliError("--nodes must be 1..32", "usage")
    if args.turn and shutil.which("turnserver") is None:
        raise CliError("--turn needs coturn's `turnserver` (apt-get install coturn)", "no_coturn")
    if args.turn and args.transport != "webrtc":
        raise CliError("--turn needs --transport webrtc", "usage")
    options = DevnetOptions(
        nodes=args.nodes,
        home=Path(args.home),
        transport=args.transport,
        turn=args.turn,
        activity=not args.no_activity,
        as_json=out.as_json,
        exit_when_ready=args.exit_when_ready,
    )
    return asyncio.run(run_devnet(options, out))


def register(add: Add) -> None:
    devnet = add("devnet", cmd_devnet, "run a local multi-node swarm on loopback")
    devnet.add_argument("--nodes", type=positive_int, default=4)
    devnet.add_argument("--home", default=".devnet")
    devnet.add_argument("--transport", choices=("webrtc", "websocket"), default="webrtc")
    devnet.add_argument("--turn", action="store_true", help="relay-only through a local coturn")
    devnet.add_argument("--no-activity", action="store_true", help="skip the scripted burst")
    devnet.add_argument(
        "--exit-when-ready", action="store_true", help="stop the swarm after printing (tests)"
    )
