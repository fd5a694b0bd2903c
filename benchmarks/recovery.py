"""`swarmd bench recovery`: the recovery drill's replay speed.

Writes N signed ops (grants, then transfers receiving them) into a fresh SQLite store through
the store's own API, then times `recover_store` (read the log, decode, verify on two threads,
validate, apply, state root). The ceiling is single-core Ed25519 verification of the same ops
measured in the same run; the target is 100k ops recovered in under 10 s.

With `--from-snapshot F`, the store also holds a council-signed checkpoint at height 1 covering
the first F of the ops, stored with a snapshot of its state, and each repeat times the drill
from genesis and then from that snapshot on the same store (interleaved, so both see the same
machine load); `snapshot_ratio` is their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from swarmd.node.cli.recovery import recover_store
from swarmd.protocol import consensus, crypto
from swarmd.protocol.checkpoint import VIRTUAL_EPOCH_MS, Cut
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.ledger import Ledger
from swarmd.protocol.ledger.snapshot import state_records
from swarmd.protocol.ops import Op
from swarmd.protocol.snapshot import build_manifest, encode_blob
from swarmd.storage import api
from swarmd.storage.store import Store

from .common import emit
from .pipeline import build_workload

SEED = 7


def signed_checkpoint(genesis: Genesis, ops: list[Op]) -> tuple[api.Checkpoint, bytes]:
    """Checkpoint 1 over `ops` (a prefix of the workload), signed by the whole council the way
    consensus would, and the snapshot blob of its final state."""
    rng = random.Random(SEED)  # build_workload draws the council's seeds first
    council = [crypto.KeyPair.from_seed(rng.randbytes(32)) for _ in range(4)]
    assert sorted(key.public_key for key in council) == sorted(genesis.council)
    ledger = Ledger(genesis)
    heads: dict[bytes, tuple[bytes, int, bytes]] = {}
    for op in ops:
        assert ledger.receive_verified(op, 0.0).status == "accepted"
        heads[op.author] = (op.author, op.seq, op.op_id)
    cut_heads = [heads[author] for author in sorted(heads)]
    root, closure = ledger.derive_cut(cut_heads)
    ledger.finalize(1, closure)
    cut = Cut(b"", 1, tuple(cut_heads), root, VIRTUAL_EPOCH_MS)
    value = cut.encode()
    precommits = tuple(
        (
            key.public_key,
            consensus.sign_vote(
                key, genesis.network_id, consensus.MessageKind.PRECOMMIT, 1, 0, crypto.sha256(value)
            ).signature,
        )
        for key in council
    )
    bundle = consensus.CheckpointBundle(1, 0, value, precommits).encode()
    manifest, chunks = build_manifest(1, cut.checkpoint_id, root, state_records(ledger.final_state))
    checkpoint = api.Checkpoint(1, cut.checkpoint_id, root, bundle, len(ops))
    return checkpoint, encode_blob(manifest, chunks)


async def time_drill(store: Store, genesis: Genesis, from_snapshot: bool) -> dict[str, Any]:
    began = time.perf_counter()
    report = await recover_store(store, genesis, from_snapshot=from_snapshot)
    report["seconds"] = time.perf_counter() - began
    assert report["parity"], report
    return report


async def run(ops_count: int, repeat: int, snapshot_fraction: float | None) -> dict[str, Any]:
    genesis, ops = build_workload(ops_count, min(1000, ops_count), seed=SEED)
    node_key = crypto.KeyPair.from_seed(bytes(32)).public_key
    samples: list[float] = []
    snapshot_samples: list[float] = []
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
            if snapshot_fraction is not None:
                prefix = ops[: max(1, int(len(ops) * snapshot_fraction))]
                await store.put_checkpoint(*signed_checkpoint(genesis, prefix))
            report: dict[str, Any] = {}
            for _ in range(repeat):
                report = await time_drill(store, genesis, from_snapshot=False)
                samples.append(report["seconds"])
                if snapshot_fraction is not None:
                    from_snapshot = await time_drill(store, genesis, from_snapshot=True)
                    assert from_snapshot["state_root"] == report["state_root"], from_snapshot
                    snapshot_samples.append(from_snapshot["seconds"])
        finally:
            await store.close()
    assert report["replayed_ops"] == len(ops) and not report["rejected_ops"], report
    triples = [(op.author, op.signed_message(genesis.network_id), op.signature) for op in ops]
    began = time.perf_counter()
    for key, message, signature in triples:
        crypto.verify(key, message, signature)
    verify_rate = len(ops) / (time.perf_counter() - began)
    recover_s = statistics.median(samples)
    result = {
        "benchmark": "recovery",
        "ops": len(ops),
        "recover_s": round(recover_s, 2),
        "recover_s_samples": [round(s, 2) for s in samples],
        "recover_ops_per_s": round(len(ops) / recover_s),
        "verify_ops_per_s": round(verify_rate),
        "ratio": round(len(ops) / recover_s / verify_rate, 3),
        "state_root": report["state_root"],
    }
    if snapshot_fraction is not None:
        snapshot_s = statistics.median(snapshot_samples)
        result["snapshot_ops"] = len(prefix)
        result["from_snapshot_s"] = round(snapshot_s, 2)
        result["from_snapshot_s_samples"] = [round(s, 2) for s in snapshot_samples]
        result["snapshot_ratio"] = round(snapshot_s / recover_s, 3)
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="swarmd bench recovery", description=__doc__)
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--from-snapshot",
        type=float,
        metavar="F",
        help="also time the drill from a snapshot covering the first F (0..1) of the ops",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.ops < 2 or args.repeat < 1:
        parser.error("--ops >= 2 and --repeat >= 1")
    if args.from_snapshot is not None and not 0 < args.from_snapshot <= 1:
        parser.error("--from-snapshot takes a fraction in (0, 1]")
    emit(asyncio.run(run(args.ops, args.repeat, args.from_snapshot)), args.json)
    return 0
