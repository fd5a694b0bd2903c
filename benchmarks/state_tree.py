"""Benchmark of the incremental state root (swarmd.protocol.state_tree).

Run: `.venv/bin/python -m swarmd.benchmarks.state_tree --accounts 1000000 --updates 10000 --json`

It builds a tree of N accounts, then changes M of them (one checkpoint's worth) and measures:
- update_us: one `set()` plus its share of the following `root()` (the amortized cost of an
  account update), and set_us without the root;
- root_ms: the `root()` recomputation after the M changes, and the hashes it did;
- copy_ms: `copy()` of the full tree (forking provisional state off final state);
- the ceiling, measured in the same run: raw sha256 calls per second on a 65-byte inner-node
  preimage and on a preimage of the average bucket size; root_ms_at_ceiling is the time the
  hashes of that `root()` (its dirty buckets plus inner nodes) take at those raw rates, and
  root_ms_ratio_to_ceiling = root_ms / root_ms_at_ceiling (1.0 would be zero overhead).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time

from swarmd.protocol.state_tree import BUCKETS, ENTRY_SIZE_BYTES, StateTree, bucket_index

CEILING_HASHES = 500_000


def _key(number: int) -> bytes:
    return hashlib.sha256(b"account" + number.to_bytes(8, "big")).digest()


def _ceiling_hashes_per_s(preimage_size_bytes: int) -> float:
    sha256 = hashlib.sha256
    preimage = b"\xab" * preimage_size_bytes
    start = time.perf_counter()
    for _ in range(CEILING_HASHES):
        sha256(preimage).digest()
    return CEILING_HASHES / (time.perf_counter() - start)


def run(accounts: int, updates: int, seed: int) -> dict[str, float | int]:
    rng = random.Random(seed)
    keys = [_key(number) for number in range(accounts)]
    tree = StateTree()
    start = time.perf_counter()
    for key in keys:
        tree.set(key, key)
    build_set_s = time.perf_counter() - start
    start = time.perf_counter()
    tree.root()
    build_root_s = time.perf_counter() - start

    changed = rng.sample(keys, min(updates, accounts))
    values = [rng.randbytes(32) for _ in changed]
    hashes_before = tree.hash_count
    start = time.perf_counter()
    for key, value in zip(changed, values, strict=True):
        tree.set(key, value)
    set_s = time.perf_counter() - start
    start = time.perf_counter()
    tree.root()
    root_s = time.perf_counter() - start
    root_hashes = tree.hash_count - hashes_before

    start = time.perf_counter()
    tree.copy()
    copy_s = time.perf_counter() - start

    node_ceiling = _ceiling_hashes_per_s(1 + 2 * 32)
    bucket_size_bytes = 1 + round(accounts / BUCKETS * ENTRY_SIZE_BYTES)
    bucket_ceiling = _ceiling_hashes_per_s(bucket_size_bytes)
    dirty_buckets = len({bucket_index(key) for key in changed})
    root_s_at_ceiling = (
        dirty_buckets / bucket_ceiling + (root_hashes - dirty_buckets) / node_ceiling
    )
    return {
        "accounts": accounts,
        "updates": len(changed),
        "build_s": round(build_set_s + build_root_s, 3),
        "build_root_s": round(build_root_s, 3),
        "set_us": round(set_s / len(changed) * 1e6, 3),
        "update_us": round((set_s + root_s) / len(changed) * 1e6, 3),
        "root_ms": round(root_s * 1e3, 3),
        "root_hashes": root_hashes,
        "copy_ms": round(copy_s * 1e3, 3),
        "root_dirty_buckets": dirty_buckets,
        "ceiling_node_sha256_per_s": round(node_ceiling),
        "ceiling_bucket_sha256_per_s": round(bucket_ceiling),
        "ceiling_bucket_size_bytes": bucket_size_bytes,
        "root_ms_at_ceiling": round(root_s_at_ceiling * 1e3, 3),
        "root_ms_ratio_to_ceiling": round(root_s / root_s_at_ceiling, 3),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="swarmd bench state-tree", description=__doc__)
    parser.add_argument("--accounts", type=int, default=100_000, help="accounts in the tree")
    parser.add_argument("--updates", type=int, default=10_000, help="accounts changed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.accounts < 1 or args.updates < 1:
        parser.error("--accounts and --updates must be positive")
    result = run(args.accounts, args.updates, args.seed)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for name, value in result.items():
            print(f"{name:28} {value}")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
