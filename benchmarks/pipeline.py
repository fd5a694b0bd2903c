"""`swarmd bench pipeline`: the validation pipeline against raw Ed25519 verification.

Both figures come from the same run on the same signatures: `verify_ops_per_s` is libsodium
verifying every op's signed message (the ceiling: verification dominates the pipeline), and
`pipeline_ops_per_s` is the whole pipeline (decode, shape, signature, chain, deps, rules, apply,
state root at the end) fed one envelope at a time through `Ledger.receive_op`. `ratio` =
pipeline / verify; the target is >= 0.8 on one core. The samples of the two figures are taken
in turn (verify, pipeline, verify, ...), so that load from other work on a shared machine falls
on both alike; medians are reported. `cpu_ratio` is the same ratio in this thread's CPU time
instead of wall-clock time: on a loaded machine it still measures the work, not the waiting.
Python's garbage collector runs with its default settings: disabling it changed nothing
measurable here.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat

from swarmd.protocol import crypto
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.ledger import Ledger
from swarmd.protocol.ops import Op, check_envelopes
from swarmd.protocol.wallet import Author

from .common import emit, timed


def build_workload(ops_count: int, accounts: int, seed: int) -> tuple[Genesis, list[Op]]:
    """Grants to `accounts` new accounts, then random transfers that receive their credits."""
    rng = random.Random(seed)
    council_keys = [crypto.KeyPair.from_seed(rng.randbytes(32)) for _ in range(4)]
    genesis = Genesis.create(
        "bench",
        [k.public_key for k in council_keys],
        signup_reward=1_000_000,
        grants_per_member_per_window=10**9,
    )
    council = [Author(k, genesis.network_id) for k in council_keys]
    people = [
        Author(crypto.KeyPair.from_seed(rng.randbytes(32)), genesis.network_id)
        for _ in range(accounts)
    ]
    ops: list[Op] = []
    unreceived: dict[bytes, list[bytes]] = {p.key: [] for p in people}
    for index, person in enumerate(people):
        grant = council[index % len(council)].grant(person.key, 1_000_000)
        ops.append(grant)
        unreceived[person.key].append(grant.op_id)
    while len(ops) < ops_count:
        payer, payee = rng.sample(people, 2)
        receive, unreceived[payer.key] = unreceived[payer.key][:8], unreceived[payer.key][8:]
        op = payer.transfer(payee.key, rng.randint(1, 100), receive=receive)
        unreceived[payee.key].append(op.op_id)
        ops.append(op)
    return genesis, ops[:ops_count]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="swarmd bench pipeline", description=__doc__)
    parser.add_argument("--ops", type=int, default=20_000, help="ops per run (default 20000)")
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs; medians are reported")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="also measure decode+verify on N threads feeding one applying thread",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.ops < 1 or args.accounts < 2 or args.repeat < 1:
        parser.error("--ops >= 1, --accounts >= 2 and --repeat >= 1 are required")
    return args


def runs_for(genesis: Genesis, ops: list[Op], workers: int) -> dict[str, Callable[[], None]]:
    """The measured runs: bare verification (the ceiling), the pipeline on one thread, and with
    `workers` the pipeline fed by verifying threads."""
    network_id = genesis.network_id
    triples = [(op.author, op.signed_message(network_id), op.signature) for op in ops]
    envelopes = [op.envelope for op in ops]

    def verify_all() -> None:
        verify = crypto.verify
        for key, message, signature in triples:
            verify(key, message, signature)

    def pipeline() -> None:
        ledger = Ledger(genesis)
        receive = ledger.receive_op
        for op in ops:
            receive(op.envelope, 0.0)
            ledger.drain_events()
        ledger.state_root()
        assert ledger.stats.accepted == len(ops), ledger.stats

    def parallel_pipeline() -> None:
        # libsodium releases the GIL while verifying, so worker threads overlap verification
        # with each other and with the applying thread; the ledger accepts any arrival order.
        chunks = [envelopes[i : i + 256] for i in range(0, len(envelopes), 256)]
        ledger = Ledger(genesis)
        with ThreadPoolExecutor(workers) as pool:
            for checked in pool.map(check_envelopes, chunks, repeat(network_id)):
                for op in checked:
                    assert isinstance(op, Op), "every benchmark op verifies"
                    ledger.receive_verified(op, 0.0)
                ledger.drain_events()
        ledger.state_root()
        assert ledger.stats.accepted == len(ops), ledger.stats

    runs: dict[str, Callable[[], None]] = {"verify": verify_all, "pipeline": pipeline}
    if workers > 0:
        runs["parallel"] = parallel_pipeline
    return runs


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    genesis, ops = build_workload(args.ops, min(args.accounts, args.ops), args.seed)
    runs = runs_for(genesis, ops, args.workers)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    cpu_samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, run in runs.items():
            cpu_start = time.thread_time()
            samples[name].append(timed(run))
            cpu_samples[name].append(time.thread_time() - cpu_start)
    cpu_s = {name: statistics.median(values) for name, values in cpu_samples.items()}
    verify_samples, pipeline_samples = samples["verify"], samples["pipeline"]
    verify_rate = len(ops) / statistics.median(verify_samples)
    pipeline_rate = len(ops) / statistics.median(pipeline_samples)
    extra: dict[str, object] = {}
    if args.workers > 0:
        parallel_s = statistics.median(samples["parallel"])
        extra = {
            "workers": args.workers,
            "pipeline_parallel_ops_per_s": round(len(ops) / parallel_s),
            "parallel_ratio_to_one_core_verify": round(len(ops) / parallel_s / verify_rate, 3),
        }
    emit(
        {
            **extra,
            "benchmark": "pipeline",
            "ops": len(ops),
            "repeat": args.repeat,
            "verify_ops_per_s": round(verify_rate),
            "pipeline_ops_per_s": round(pipeline_rate),
            "ratio": round(pipeline_rate / verify_rate, 3),
            "cpu_ratio": round(cpu_s["verify"] / cpu_s["pipeline"], 3),
            "verify_s_samples": [round(s, 4) for s in verify_samples],
            "pipeline_s_samples": [round(s, 4) for s in pipeline_samples],
        },
        args.json,
    )
    return 0
