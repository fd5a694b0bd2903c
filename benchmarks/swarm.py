"""`swarmd bench swarm`: final ops/s and finality latency of a real local swarm.

Starts N real `swarmd run` processes on loopback (the devnet machinery), funds a set of
accounts, then submits signed transfers over HTTP to every node at once (each account's chain
goes to one node, in order) and measures, from the first submission, how long until every op is
final on every node (`final_ops_per_s`), and per op the time from its submission to the
`op_final` event on node 0's WebSocket stream (`finality_latency_ms_p50/p95`), and per node
the peer link bytes sent and received per final op over the same span
(`bytes_per_final_op`, from each node's `swarmd_bytes_total` metric). The ceiling is
single-core Ed25519 verification of the same ops measured in the same run
(`verify_ops_per_s`): every node verifies every op, so N nodes on 2 cores share that work.

A second ceiling, `machine_ceiling_ops_per_s`, is what the machine's cores could finalize if
the N nodes did nothing but run the validation pipeline over every op (measured on the same
ops in the same run) and append each to SQLite at the raw `executemany` rate: no networking,
no consensus, no sync, no API, no load generator. `ratio_to_machine_ceiling` compares the swarm
with it.

Modes (issues 13 and 16):
- `--rate R`: open loop. Requests are sent at fixed times (the k-th op of the run at t0 + k/R,
  a request of `--batch` ops at the time of its first op) whether or not earlier ones were
  answered, and an op's latency counts from its scheduled time, so a swarm that falls behind
  shows it as latency instead of slowing the client down. `offered_ops_per_s` is R;
  `submit_ops_per_s` and `final_ops_per_s` are what was achieved.
- `--rate-fractions 0.25,0.5`: a saturated run first (closed loop, `--batch`), then one open-loop
  run at each fraction of the saturated run's `final_ops_per_s` (requests of `--rate-batch`).
- `--transport both`: WebRTC and WebSocket swarms alternately, `--repeat` times each; reports
  each transport's medians, `cpu_ratio_webrtc_to_websocket` (the medians' ratio), each
  back-to-back pair's ratio (`cpu_ratio_samples`) and their median.
- `--repeat N`: N runs (fresh swarms); figures are medians, `*_samples` list the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from swarmd.node.cli.devnet import NodeHome, Swarm
from swarmd.protocol import crypto, encoding
from swarmd.protocol.ledger import Ledger
from swarmd.protocol.ops import Op
from swarmd.protocol.wallet import Author
from swarmd.storage.api import NewOp, OpStatus

from . import storage as storage_bench
from .common import emit, percentile

#: Bounds of one run: the swarm must finalize everything within this long.
FINAL_TIMEOUT_S = 180.0
#: Chains whose ops are followed on the event stream for the latency figures.
SAMPLED_CHAINS = 8
#: Once every node is final, how long the sampled ops' `op_final` events may still take to
#: arrive (they were published when the checkpoint was made durable, so ~immediately).
EVENTS_AFTER_FINAL_TIMEOUT_S = 10.0
#: One submission request (answered once its ops are durable): a node that does not answer
#: within this long is stuck, and the run fails saying so instead of waiting forever.
REQUEST_TIMEOUT_S = 60.0
#: Figures only an open-loop (`--rate`) run reports.
OPEN_LOOP_FIGURES = ("offered_ops_per_s", "schedule_lag_ms_max")
#: Figures of each run listed beside the medians of a repeated run (`*_samples`).
SAMPLED_FIGURES = (
    "final_ops_per_s",
    "node_cpu_us_per_op",
    "finality_latency_ms_p50",
    "finality_latency_ms_p95",
)
OVERRIDES: dict[str, dict[str, Any]] = {
    # The benchmark is one client IP hammering the API: lift the per-IP rate limit.
    "api": {"rate_limit_per_s": 1_000_000.0, "rate_limit_burst": 10_000_000},
}


def build_ops(
    swarm: Swarm, accounts: int, transfers: int, seed: int
) -> tuple[list[Op], list[list[Op]]]:
    """Grants (one per account) and, per account, a chain of transfers spending them."""
    rng = random.Random(seed)
    network_id = swarm.genesis.network_id
    council = [Author(node.keypair, network_id) for node in swarm.nodes]
    people = [
        Author(crypto.KeyPair.from_seed(rng.randbytes(32)), network_id) for _ in range(accounts)
    ]
    reward = swarm.genesis.signup_reward
    grants = [council[i % len(council)].grant(p.key, reward) for i, p in enumerate(people)]
    chains: list[list[Op]] = []
    per_account = max(1, transfers // accounts)
    for index, person in enumerate(people):
        chain = []
        for step in range(per_account):
            payee = people[(index + 1 + step % (len(people) - 1)) % len(people)].key
            receive = [grants[index].op_id] if step == 0 else []
            chain.append(person.transfer(payee, 1, receive=receive))
        chains.append(chain)
    return grants, chains


def overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    result = {section: dict(values) for section, values in OVERRIDES.items()}
    if args.checkpoint_interval_s is not None:
        result["consensus"] = {"checkpoint_interval_s": args.checkpoint_interval_s}
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="swarmd-bench-") as directory:
        swarm = Swarm.create(
            Path(directory) / "swarm",
            args.nodes,
            transport=args.transport,
            config_overrides=overrides(args),
        )
        await swarm.start()
        try:
            await swarm.wait_connected()
            return await measure(swarm, args)
        finally:
            await swarm.stop()


class FinalWatch:
    """`op_final` times of a few sampled chains, from one filtered event stream per sampled
    account (an unfiltered stream would fall behind and be cut)."""

    def __init__(self, sampled: list[list[Op]]) -> None:
        self.sampled = sampled
        self.sampled_ids = {op.op_id.hex() for chain in sampled for op in chain}
        self.final_at: dict[str, float] = {}
        self.all_final = asyncio.Event()
        self.streams: list[aiohttp.ClientWebSocketResponse] = []
        self.listeners: list[asyncio.Task[None]] = []

    async def open(self, session: aiohttp.ClientSession, url: str) -> None:
        for chain in self.sampled:
            account = crypto.account_id_text(chain[0].author)
            self.streams.append(await session.ws_connect(f"{url}/v1/events?account={account}"))
        self.listeners = [asyncio.create_task(self._listen(ws)) for ws in self.streams]

    async def _listen(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            event = json.loads(message.data)
            if event.get("type") == "op_final" and event["op_id"] in self.sampled_ids:
                self.final_at.setdefault(event["op_id"], time.perf_counter())
                if len(self.final_at) == len(self.sampled_ids):
                    self.all_final.set()

    async def wait_and_close(self) -> None:
        await wait_sampled_final(
            self.all_final, self.listeners, self.streams, self.sampled_ids, self.final_at
        )
        for listener in self.listeners:
            listener.cancel()
        for ws in self.streams:
            await ws.close()


class Load:
    """Submits the chains to the nodes, one op per request or in batches, and remembers when
    each op was submitted."""

    def __init__(self, swarm: Swarm, session: aiohttp.ClientSession, batch: int) -> None:
        self.swarm, self.session, self.batch = swarm, session, batch
        self.submitted_at: dict[str, float] = {}
        self.timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)

    async def submit(self, chains: list[list[Op]]) -> None:
        nodes = len(self.swarm.nodes)
        if self.batch > 1:
            per_node = [chains[i::nodes] for i in range(nodes)]
            await asyncio.gather(*(self._batches(i, c) for i, c in enumerate(per_node) if c))
        else:
            await asyncio.gather(*(self._chain(i % nodes, c) for i, c in enumerate(chains)))

    async def _post(self, node_index: int, path: str, body: bytes, content_type: str) -> None:
        url = self.swarm.nodes[node_index].url + path
        headers = {"Content-Type": content_type}
        try:
            async with self.session.post(
                url, data=body, headers=headers, timeout=self.timeout
            ) as response:
                if response.status != 202:
                    text = await response.text()
                    raise RuntimeError(f"{path} refused: {response.status} {text}")
        except TimeoutError:
            raise RuntimeError(
                f"node {node_index} did not answer {path} within {REQUEST_TIMEOUT_S} s: "
                "it is stuck or far behind"
            ) from None

    async def _chain(self, node_index: int, chain: list[Op]) -> None:
        for op in chain:
            self.submitted_at[op.op_id.hex()] = time.perf_counter()
            await self._post(node_index, "/v1/ops", op.envelope, "application/octet-stream")

    async def _batches(self, node_index: int, node_chains: list[list[Op]]) -> None:
        # The i-th op of every chain in one request: chains stay in order across requests.
        steps = max(len(chain) for chain in node_chains)
        for step in range(steps):
            ops_at_step = [chain[step] for chain in node_chains if step < len(chain)]
            for start in range(0, len(ops_at_step), self.batch):
                batch = ops_at_step[start : start + self.batch]
                now = time.perf_counter()
                for op in batch:
                    self.submitted_at[op.op_id.hex()] = now
                body = encoding.encode([op.envelope for op in batch])
                await self._post(node_index, "/v1/ops/batch", body, "application/msgpack")


def open_loop_schedule(
    chains: list[list[Op]], nodes: int, batch: int, rate: float
) -> list[tuple[float, int, list[Op]]]:
    """(offset from t0 in seconds, node index, ops) of every request of an open-loop run, by
    offset. Chain c goes to node c % nodes; a node's ops go step by step across its chains
    (an account's next op comes `accounts / rate` seconds after its previous one), and its
    k-th op is the run's op number k * nodes + node index, due at that number / rate."""
    requests: list[tuple[float, int, list[Op]]] = []
    for node_index in range(nodes):
        node_chains = chains[node_index::nodes]
        steps = max((len(chain) for chain in node_chains), default=0)
        ops = [chain[s] for s in range(steps) for chain in node_chains if s < len(chain)]
        for start in range(0, len(ops), batch):
            offset = (start * nodes + node_index) / rate
            requests.append((offset, node_index, ops[start : start + batch]))
    requests.sort(key=lambda request: (request[0], request[1]))
    return requests


class OpenLoad(Load):
    """Sends each request at its scheduled time without waiting for earlier answers; an op's
    submission time is its scheduled time (no coordinated omission)."""

    def __init__(
        self, swarm: Swarm, session: aiohttp.ClientSession, batch: int, rate: float
    ) -> None:
        super().__init__(swarm, session, batch)
        self.rate = rate
        #: How late the client sent its most delayed request (a client that cannot keep up
        #: offers less than `rate`: then this grows).
        self.lag_s_max = 0.0

    async def submit(self, chains: list[list[Op]]) -> None:
        schedule = open_loop_schedule(chains, len(self.swarm.nodes), self.batch, self.rate)
        started = time.perf_counter()
        sending: list[asyncio.Task[None]] = []
        for offset, node_index, ops in schedule:
            due = started + offset
            # A timer, not a wait for a condition: the offered load is paced by the clock.
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            self.lag_s_max = max(self.lag_s_max, time.perf_counter() - due)
            for op in ops:
                self.submitted_at[op.op_id.hex()] = due
            sending.append(asyncio.create_task(self._send(node_index, ops)))
        await asyncio.gather(*sending)

    async def _send(self, node_index: int, ops: list[Op]) -> None:
        if len(ops) == 1:
            await self._post(node_index, "/v1/ops", ops[0].envelope, "application/octet-stream")
        else:
            body = encoding.encode([op.envelope for op in ops])
            await self._post(node_index, "/v1/ops/batch", body, "application/msgpack")


async def measure(swarm: Swarm, args: argparse.Namespace) -> dict[str, Any]:
    grants, chains = build_ops(swarm, args.accounts, args.ops, args.seed)
    for index, grant in enumerate(grants):
        status, body = await swarm.submit(swarm.nodes[index % len(swarm.nodes)], grant)
        if status != 202:
            raise RuntimeError(f"grant refused: {status} {body}")
    await swarm.wait_converged(min_height=1, timeout_s=FINAL_TIMEOUT_S)
    ops = [op for chain in chains for op in chain]
    watch = FinalWatch(chains[: min(SAMPLED_CHAINS, len(chains))])
    timeout = aiohttp.ClientTimeout(total=None)  # the event streams stay open
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await watch.open(session, swarm.nodes[0].url)
        load = (
            Load(swarm, session, args.batch)
            if args.rate is None
            else OpenLoad(swarm, session, args.batch, args.rate)
        )
        started = time.perf_counter()
        cpu_started = nodes_cpu_s(swarm)
        bytes_started = await nodes_bytes(session, swarm.nodes)
        await load.submit(chains)
        submitted_s = time.perf_counter() - started
        await swarm.wait_converged(min_height=1, timeout_s=FINAL_TIMEOUT_S)
        elapsed = time.perf_counter() - started
        cpu_s = nodes_cpu_s(swarm) - cpu_started
        bytes_ended = await nodes_bytes(session, swarm.nodes)
        bytes_per_op = bytes_per_final_op(bytes_started, bytes_ended, ops)
        await watch.wait_and_close()
    latencies = [(watch.final_at[k] - load.submitted_at[k]) * 1000 for k in watch.final_at]
    figures = {
        "ops": len(ops),
        "submit_ops_per_s": round(len(ops) / submitted_s),
        "elapsed_s": elapsed,
        # CPU time all nodes spent per op from the first submission to finality everywhere:
        # less sensitive than the rates to other load on a shared machine (0: no /proc).
        "node_cpu_us_per_op": round(cpu_s / len(ops) * 1e6, 1),
        "bytes_per_final_op": bytes_per_op,
    }
    if isinstance(load, OpenLoad):
        figures["offered_ops_per_s"] = round(load.rate, 1)
        figures["schedule_lag_ms_max"] = round(load.lag_s_max * 1000, 1)
    return report(swarm, args, grants, ops, latencies, figures)


def report(
    swarm: Swarm,
    args: argparse.Namespace,
    grants: list[Op],
    ops: list[Op],
    latencies: list[float],
    figures: dict[str, Any],
) -> dict[str, Any]:
    """The run's figures with the same run's ceilings beside them."""
    verify_rate = verify_ceiling(ops, swarm.genesis.network_id)
    validation_rate, store_rate = validation_ceiling(swarm, grants, ops)
    cores = os.cpu_count() or 1
    # Every node validates and logs every op: with no networking, consensus, sync or API at
    # all, the machine's cores could finalize at most this many ops per second.
    machine_rate = cores / (len(swarm.nodes) * (1 / validation_rate + 1 / store_rate))
    final_rate = len(ops) / figures["elapsed_s"] if figures["elapsed_s"] else 0.0
    return {
        "benchmark": "swarm",
        "nodes": len(swarm.nodes),
        "transport": args.transport,
        "checkpoint_interval_s": args.checkpoint_interval_s,
        "batch": args.batch,
        "ops": len(ops),
        "accounts": args.accounts,
        "submit_ops_per_s": figures["submit_ops_per_s"],
        "final_ops_per_s": round(final_rate),
        "finality_latency_ms_p50": round(percentile(latencies, 0.50), 1),
        "finality_latency_ms_p95": round(percentile(latencies, 0.95), 1),
        "latency_samples": len(latencies),
        "verify_ops_per_s": round(verify_rate),
        "ratio": round(final_rate / verify_rate, 3),
        "validation_ops_per_s": round(validation_rate),
        "store_ops_per_s": round(store_rate),
        "cores": cores,
        "machine_ceiling_ops_per_s": round(machine_rate),
        "ratio_to_machine_ceiling": round(final_rate / machine_rate, 3),
        "elapsed_s": round(figures["elapsed_s"], 2),
        "node_cpu_us_per_op": figures["node_cpu_us_per_op"],
        "bytes_per_final_op": figures["bytes_per_final_op"],
        **{key: figures[key] for key in OPEN_LOOP_FIGURES if key in figures},
    }


async def wait_sampled_final(
    all_final: asyncio.Event,
    listeners: list[asyncio.Task[None]],
    streams: list[aiohttp.ClientWebSocketResponse],
    sampled_ids: set[str],
    final_at: dict[str, float],
) -> None:
    """Wait for the sampled ops' `op_final` events; fail fast and say why when they do not
    come (a stream the node closed, or events it never sent)."""
    waiter = asyncio.create_task(all_final.wait())
    try:
        await asyncio.wait(
            [waiter, *listeners],
            timeout=EVENTS_AFTER_FINAL_TIMEOUT_S,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        waiter.cancel()
    if all_final.is_set():
        return
    missing = len(sampled_ids) - len(final_at)
    closed = [f"{ws.close_code} {ws.exception() or ''}".strip() for ws in streams if ws.closed]
    if closed:
        reason = f"node 0 closed {len(closed)} event stream(s): {closed}"
    else:
        reason = f"no op_final event for them within {EVENTS_AFTER_FINAL_TIMEOUT_S} s"
    raise RuntimeError(
        f"every node is final but {missing} of {len(sampled_ids)} sampled ops got no "
        f"op_final event on node 0's account streams: {reason}"
    )


def nodes_cpu_s(swarm: Swarm) -> float:
    """User + system CPU seconds the node processes used so far (Linux /proc; else 0)."""
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    total = 0
    for node in swarm.nodes:
        if node.process is None:
            continue
        try:
            fields = Path(f"/proc/{node.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks_per_s


async def nodes_bytes(
    session: aiohttp.ClientSession, nodes: list[NodeHome]
) -> list[dict[str, float]]:
    """Per node, the peer link bytes so far by direction, read from its metrics
    (`swarmd_bytes_total{direction,class}` summed over the classes)."""
    totals = []
    for node in nodes:
        async with session.get(node.url + "/metrics") as response:
            text = await response.text()
        by_direction = {"sent": 0.0, "received": 0.0}
        for family in text_string_to_metric_families(text):
            if family.name != "swarmd_bytes":
                continue
            for sample in family.samples:
                if sample.name == "swarmd_bytes_total":
                    by_direction[sample.labels["direction"]] += sample.value
        totals.append(by_direction)
    return totals


def bytes_per_final_op(
    before: list[dict[str, float]], after: list[dict[str, float]], ops: list[Op]
) -> dict[str, list[int]]:
    """Peer link bytes each node sent and received from the first submission until every op
    was final everywhere, per final op (node order as in `swarm.nodes`)."""
    return {
        direction: [
            round((end[direction] - start[direction]) / len(ops))
            for start, end in zip(before, after, strict=True)
        ]
        for direction in ("sent", "received")
    }


def verify_ceiling(ops: list[Op], network_id: bytes) -> float:
    triples = [(op.author, op.signed_message(network_id), op.signature) for op in ops]
    samples = []
    for _ in range(3):
        start = time.perf_counter()
        for key, message, signature in triples:
            crypto.verify(key, message, signature)
        samples.append(time.perf_counter() - start)
    return len(ops) / statistics.median(samples)


def validation_ceiling(swarm: Swarm, grants: list[Op], ops: list[Op]) -> tuple[float, float]:
    """One node's bare work per op, on one core, in this run: the whole validation pipeline
    (`Ledger.receive_op`: decode, verify, rules, apply) over the same ops, and the raw SQLite
    append of their envelopes (WAL, synchronous=FULL, batches of 1000: the storage ceiling)."""
    samples = []
    for _ in range(3):
        ledger = Ledger(swarm.genesis)
        for grant in grants:
            ledger.receive_op(grant.envelope, 0.0)
        start = time.perf_counter()
        for op in ops:
            ledger.receive_op(op.envelope, 0.0)
            ledger.drain_events()
        samples.append(time.perf_counter() - start)
        assert ledger.stats.accepted == len(grants) + len(ops), ledger.stats
    rows = [NewOp(op.op_id, op.author, op.seq, op.envelope, OpStatus.APPLIED, 0) for op in ops]
    with tempfile.TemporaryDirectory(prefix="swarmd-bench-store-") as directory:
        rates = []
        for run in range(3):
            run_directory = Path(directory) / str(run)
            run_directory.mkdir()
            rates.append(storage_bench.run_ceiling(rows, run_directory))
    store_rate = statistics.median(rates)
    return len(ops) / statistics.median(samples), store_rate


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of every numeric figure of `runs` (the first run's value for the others),
    with the runs' own values of the main figures as `*_samples`."""
    result = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            result[key] = statistics.median(run[key] for run in runs)
    if len(runs) > 1:
        result["runs"] = len(runs)
        for key in SAMPLED_FIGURES:
            result[f"{key}_samples"] = [run[key] for run in runs]
    return result


def run_once(args: argparse.Namespace, **changes: Any) -> dict[str, Any]:
    return asyncio.run(run(argparse.Namespace(**{**vars(args), **changes})))


def run_repeated(args: argparse.Namespace) -> dict[str, Any]:
    return medians([run_once(args) for _ in range(args.repeat)])


def run_both(args: argparse.Namespace) -> dict[str, Any]:
    """WebRTC and WebSocket swarms alternately (so both see the same machine load)."""
    runs: dict[str, list[dict[str, Any]]] = {"webrtc": [], "websocket": []}
    for _ in range(args.repeat):
        for transport, results in runs.items():
            results.append(run_once(args, transport=transport))
    webrtc, websocket = medians(runs["webrtc"]), medians(runs["websocket"])
    pairs = [_cpu_ratio(a, b) for a, b in zip(runs["webrtc"], runs["websocket"], strict=True)]
    return {
        "benchmark": "swarm",
        "transport": "both",
        "runs": args.repeat,
        "webrtc": webrtc,
        "websocket": websocket,
        "cpu_ratio_webrtc_to_websocket": _cpu_ratio(webrtc, websocket),
        "cpu_ratio_samples": pairs,
        # Each pair ran back to back: their median resists the machine's load drifting
        # between the pairs better than the ratio of the two medians does.
        "cpu_ratio_median_of_pairs": statistics.median(pairs),
    }


def _cpu_ratio(webrtc: dict[str, Any], websocket: dict[str, Any]) -> float:
    cost = websocket["node_cpu_us_per_op"]
    return round(webrtc["node_cpu_us_per_op"] / cost, 3) if cost else 0.0


def run_fractions(args: argparse.Namespace) -> dict[str, Any]:
    """A saturated run, then open-loop runs at fractions of its final rate, `--repeat` times."""
    saturated: list[dict[str, Any]] = []
    at: dict[float, list[dict[str, Any]]] = {fraction: [] for fraction in args.rate_fractions}
    for _ in range(args.repeat):
        saturated.append(run_once(args, rate=None))
        for fraction, results in at.items():
            rate = fraction * saturated[-1]["final_ops_per_s"]
            results.append(run_once(args, rate=rate, batch=args.rate_batch))
    result = {"benchmark": "swarm", "runs": args.repeat, "saturated": medians(saturated)}
    for fraction, results in at.items():
        result[f"at_{fraction:g}_of_saturated"] = medians(results)
    return result


def _fractions(text: str) -> list[float]:
    values = [float(part) for part in text.split(",") if part.strip()]
    if not values or not all(0 < value <= 1 for value in values):
        raise argparse.ArgumentTypeError("fractions in (0, 1], comma-separated")
    return values


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if (
        not 1 <= args.nodes <= 16
        or args.ops < 1
        or not 2 <= args.accounts <= args.ops
        or not 1 <= args.batch <= 512
        or not 1 <= args.rate_batch <= 512
        or not 1 <= args.repeat <= 20
    ):
        parser.error(
            "need 1 <= --nodes <= 16, --ops >= 1, 2 <= --accounts <= --ops, "
            "1 <= --batch, --rate-batch <= 512, 1 <= --repeat <= 20"
        )
    if args.rate is not None and not 0 < args.rate <= 1_000_000:
        parser.error("--rate must be > 0 ops/s")
    if args.transport == "both" and (args.rate is not None or args.rate_fractions):
        parser.error("--transport both measures saturated runs: no --rate / --rate-fractions")
    if args.rate is not None and args.rate_fractions:
        parser.error("--rate and --rate-fractions exclude each other")


def select_mode(args: argparse.Namespace) -> Callable[[argparse.Namespace], dict[str, Any]]:
    if args.transport == "both":
        return run_both
    if args.rate_fractions:
        return run_fractions
    return run_repeated


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="swarmd bench swarm", description=__doc__)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--transport", choices=["webrtc", "websocket", "both"], default="websocket")
    parser.add_argument("--ops", type=int, default=2000, help="transfers to finalize")
    parser.add_argument("--accounts", type=int, default=200, help="concurrent chains")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--batch", type=int, default=1, help="ops per request (POST /v1/ops/batch when > 1)"
    )
    parser.add_argument(
        "--checkpoint-interval-s",
        type=float,
        default=None,
        help="override [consensus].checkpoint_interval_s (default: the node default, 0.5 s)",
    )
    parser.add_argument(
        "--rate", type=float, default=None, help="open loop: offer this many ops/s (see above)"
    )
    parser.add_argument(
        "--rate-fractions",
        type=_fractions,
        default=None,
        help="e.g. 0.25,0.5: a saturated run, then open-loop runs at these fractions of it",
    )
    parser.add_argument(
        "--rate-batch", type=int, default=10, help="ops per request of --rate-fractions' runs"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs; figures are medians")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    _check(parser, args)
    emit(select_mode(args)(args), args.json)
    return 0
