"""`swarmd bench recovery`: the recovery drill's replay speed.

Writes N signed ops (grants, then transfers receiving them) into a fresh SQLite store through
the store's own API, then times `recover_store` (read the log, decode, verify on two threads,
validate, apply, state root). The ceiling is single-core Ed25519 verification of the same ops
measured in the same run; the target is 100k ops recovered in under 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from swarmd.node.recovery import recover_store
from swarmd.protocol import crypto
from swarmd.storage import api
from swarmd.storage.store import Store

from .common import emit
from .pipeline import build_workload


async def run(ops_count: int, repeat: int) -> dict[str, Any]:
    genesis, ops = build_workload(ops_count, min(1000, ops_count), seed=7)
    node_key = crypto.KeyPair.from_seed(bytes(32)).public_key
    samples: list[float] = []
    with tempfile.TemporaryDirectory(prefix="swarmd-recovery-") as directory:
        path = Path(directory) / "store.sqlite3"
        store = await Store.open(path, network_id=genesis.network_id, node_key=node_key)
        try:
            rows = [
                api.NewOp(op.op_id, op.author, op.seq, op.envelope, api.OpStatus.APPLIED, 0)
                for op in ops
            ]
            for start in range(0, len(rows), 1000):
                await store.append_ops(rows[start : start + 1000])
            report: dict[str, Any] = {}
            for _ in range(repeat):
                began = time.perf_counter()
                report = await recover_store(store, genesis)
                samples.append(time.perf_counter() - began)
        finally:
            await store.close()
    assert report["replayed_ops"] == len(ops) and not report["rejected_ops"], report
    triples = [(op.author, op.signed_message(genesis.network_id), op.signature) for op in ops]
    began = time.perf_counter()
    for key, message, signature in triples:
        crypto.verify(key, message, signature)
    verify_rate = len(ops) / (time.perf_counter() - began)
    recover_s = statistics.median(samples)
    return {
        "benchmark": "recovery",
        "ops": len(ops),
        "recover_s": round(recover_s, 2),
        "recover_s_samples": [round(s, 2) for s in samples],
        "recover_ops_per_s": round(len(ops) / recover_s),
        "verify_ops_per_s": round(verify_rate),
        "ratio": round(len(ops) / recover_s / verify_rate, 3),
        "state_root": report["state_root"],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="swarmd bench recovery", description=__doc__)
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.ops < 2 or args.repeat < 1:
        parser.error("--ops >= 2 and --repeat >= 1")
    emit(asyncio.run(run(args.ops, args.repeat)), args.json)
    return 0
