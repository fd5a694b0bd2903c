"""Durable append throughput of the store, as a ratio to raw SQLite in the same run.

    python -m swarmd.benchmarks.storage --ops 100000 --json

- durable_ops_per_s: `clients` coroutines each submit one op at a time (as HTTP submissions
  and gossip arrive) through `GroupCommitter` into `Store.append_ops`, WAL + synchronous=FULL;
  each op is acknowledged only after its commit.
- sqlite_ceiling_ops_per_s: the same rows (checksums precomputed, so no Python work at all)
  into the same schema with plain sqlite3 `executemany` + `commit` in batches of 1000,
  WAL + FULL: what SQLite itself can do on this disk.
- ratio: the median over runs of durable / ceiling measured back to back in the same run
  (target >= 0.7); pairing them keeps a disk or CPU slowdown shared with other processes from
  skewing the ratio the way a ratio of two independent medians would.
- replay_ops_per_s: the whole log read back in order through `Store.read_log`, checksums
  verified, as the recovery drill does.

Each figure is the median of `--runs` runs (default 3); ceiling and durable runs alternate so
that disk noise hits both alike. Envelopes are 200 random bytes, the size of a transfer op.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from swarmd.storage import api
from swarmd.storage.api import NewOp, OpStatus
from swarmd.storage.group_commit import GroupCommitter
from swarmd.storage.schema import MIGRATIONS
from swarmd.storage.store import Store

from .common import emit

ENVELOPE_SIZE_BYTES = 200
CEILING_BATCH_OPS = 1_000
NETWORK_ID = bytes(32)
NODE_KEY = bytes(range(32))


def make_ops(count: int, seed: int) -> list[NewOp]:
    rng = random.Random(seed)
    authors = [rng.randbytes(32) for _ in range(1_000)]
    ops = []
    for index in range(count):
        envelope = rng.randbytes(ENVELOPE_SIZE_BYTES)
        author = authors[index % len(authors)]
        ops.append(
            NewOp(
                op_id=hashlib.sha256(envelope).digest(),
                author=author,
                author_seq=index // len(authors) + 1,
                envelope=envelope,
                status=OpStatus.APPLIED,
                received_at_ms=1_700_000_000_000 + index,
            )
        )
    return ops


def run_ceiling(ops: list[NewOp], directory: Path) -> float:
    path = directory / "ceiling.db"
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    for migration in MIGRATIONS:
        for sql in migration:
            connection.execute(sql)
    connection.commit()
    rows = [
        (seq, *op[:4], int(op.status), op.received_at_ms, api.op_crc(seq, *op[:4]))
        for seq, op in enumerate(ops, start=1)
    ]
    start = time.perf_counter()
    for offset in range(0, len(rows), CEILING_BATCH_OPS):
        connection.executemany(
            "INSERT INTO op_log (seq, op_id, author, author_seq, envelope, status, received_at_ms, "
            "crc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows[offset : offset + CEILING_BATCH_OPS],
        )
        connection.commit()
    elapsed = time.perf_counter() - start
    connection.close()
    return len(rows) / elapsed


async def run_durable(ops: list[NewOp], directory: Path, clients: int) -> tuple[float, float]:
    """Durable append rate through the group committer, then the replay rate."""
    store = await Store.open(directory / "durable.db", network_id=NETWORK_ID, node_key=NODE_KEY)
    committer = GroupCommitter(store)

    async def client(first: int) -> None:
        for index in range(first, len(ops), clients):
            await committer.append([ops[index]])

    start = time.perf_counter()
    await asyncio.gather(*(client(first) for first in range(clients)))
    durable = len(ops) / (time.perf_counter() - start)
    await committer.close()
    assert store.last_seq == len(ops)

    start = time.perf_counter()
    replayed = 0
    while True:
        page = await store.read_log(replayed, api.READ_LOG_LIMIT_MAX)
        if not page:
            break
        replayed = page[-1].seq
    replay = replayed / (time.perf_counter() - start)
    assert replayed == len(ops)
    await store.close()
    return durable, replay


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="swarmd.benchmarks.storage", description=__doc__)
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=1_000, help="concurrent submitters")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    ops = make_ops(args.ops, args.seed)
    ceilings, durables, replays = [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="swarmd-bench-storage-") as directory:
            ceilings.append(run_ceiling(ops, Path(directory)))
            durable, replay = asyncio.run(run_durable(ops, Path(directory), args.clients))
            durables.append(durable)
            replays.append(replay)
    ceiling = statistics.median(ceilings)
    durable = statistics.median(durables)
    result = {
        "benchmark": "storage",
        "ops": args.ops,
        "runs": args.runs,
        "clients": args.clients,
        "envelope_size_bytes": ENVELOPE_SIZE_BYTES,
        "synchronous": "FULL",
        "durable_ops_per_s": round(durable),
        "sqlite_ceiling_ops_per_s": round(ceiling),
        "ratio": round(
            statistics.median(d / c for d, c in zip(durables, ceilings, strict=True)), 3
        ),
        "replay_ops_per_s": round(statistics.median(replays)),
        "durable_ops_per_s_runs": [round(value) for value in durables],
        "sqlite_ceiling_ops_per_s_runs": [round(value) for value in ceilings],
    }
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
