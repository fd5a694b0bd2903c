"""Benchmark of delta-sync set reconciliation (swarmd.protocol.reconcile) between two peers.

Model. The union of both peers' sets holds `--items` N ids; `--diff` D of them are held by one
peer only, the other N - D by both. Ids are SHA-256 outputs (of a seed and a counter), like op
ids. `--split` says who holds the D differing ids: `both` (default; alternately the initiator
and the responder, so half of the difference goes each way), `initiator` or `responder`.

`--layout` says where the D differing ids lie in the sorted id order, which is the order the
reconciliation ranges follow:
- `clustered` (default): one contiguous run of D ids in sorted order, at a random place. This is
  the best case of range-based reconciliation and models a key order in which recent ops sit
  together (Negentropy sorts by (timestamp, id) for that reason). Our ranges are over bare op
  ids, which are hashes, so recent ops are NOT adjacent in practice; `clustered` is the lower
  bound of the cost, not the expected case.
- `random`: D ids spread uniformly over the sorted order. This is what two nodes that missed
  different recent gossip actually see with hash-ordered ids; each differing id then costs about
  one fingerprint split per level plus one id list, so the ratio is much higher.

Figures: `bytes` counts both directions; `diff_bytes` = 32 * D is the floor (every differing
id must cross once); `ratio` = bytes / diff_bytes is the figure stated against that floor, and
`full_list_bytes` (32 * the responder's set size, the cost of sending the whole set) is the
naive ceiling. `rounds` counts messages (both directions); `rounds_bound` = ceil(log16 N) + 2.
With `--repeat R` the seeds are seed .. seed + R - 1 and the figures are medians (per-run values
under `runs`). The result is checked against the true set difference on both sides; a mismatch
exits 1. A session abandoned at the round limit (`error`) reports how many differing ids it had
`found` by then (they are valid; a follow-up session finds the rest) and no ratio.

Run: .venv/bin/python -m swarmd.benchmarks.sync --items 1000000 --diff 1000 --repeat 3 --json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import statistics
import sys
import time
from typing import Any

from swarmd.protocol import limits
from swarmd.protocol.reconcile import IdSet, ReconcileError, Reconciler


def _make_ids(count: int, seed: int) -> list[bytes]:
    prefix = seed.to_bytes(8, "big")
    return [hashlib.sha256(prefix + i.to_bytes(8, "big")).digest() for i in range(count)]


def _pick_differing(
    universe: list[bytes], diff: int, layout: str, rng: random.Random
) -> list[bytes]:
    if layout == "clustered":
        ordered = sorted(universe)
        start = rng.randrange(0, len(ordered) - diff + 1)
        return ordered[start : start + diff]
    return rng.sample(universe, diff)


def _build_sets(args: argparse.Namespace, seed: int) -> tuple[list[bytes], list[bytes]]:
    rng = random.Random(seed)
    universe = _make_ids(args.items, seed)
    differing = _pick_differing(universe, args.diff, args.layout, rng)
    only_initiator: set[bytes] = set()
    only_responder: set[bytes] = set()
    for index, id_ in enumerate(differing):
        to_initiator = args.split == "initiator" or (args.split == "both" and index % 2 == 0)
        (only_initiator if to_initiator else only_responder).add(id_)
    initiator = [i for i in universe if i not in only_responder]
    responder = [i for i in universe if i not in only_initiator]
    return initiator, responder


def _run_once(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    initiator_ids, responder_ids = _build_sets(args, seed)
    started = time.perf_counter()
    initiator_set, responder_set = IdSet.from_ids(initiator_ids), IdSet.from_ids(responder_ids)
    # The prefix sums are lazy; force them so that `build_seconds` holds all of the set cost.
    initiator_set.fingerprint(0, len(initiator_set))
    responder_set.fingerprint(0, len(responder_set))
    built = time.perf_counter()
    initiator, responder = Reconciler(initiator_set), Reconciler(responder_set)
    error = None
    message_size_bytes_max = 0
    try:
        message: bytes | None = initiator.initiate()
        while message is not None:
            message_size_bytes_max = max(message_size_bytes_max, len(message))
            reply = responder.respond(message)
            if reply is None:
                break
            message_size_bytes_max = max(message_size_bytes_max, len(reply))
            message = initiator.reconcile(reply)
    except ReconcileError as exc:
        error = exc.code
    finished = time.perf_counter()
    correct = error is None and (
        set(initiator.have_ids) == set(initiator_ids) - set(responder_ids)
        and set(initiator.need_ids) == set(responder_ids) - set(initiator_ids)
        and set(responder.have_ids) == set(initiator.need_ids)
        and set(responder.need_ids) == set(initiator.have_ids)
    )
    total_bytes = initiator.bytes_sent + initiator.bytes_received
    diff_bytes = args.diff * limits.HASH_SIZE_BYTES
    return {
        "seed": seed,
        "bytes": total_bytes,
        "bytes_initiator_to_responder": initiator.bytes_sent,
        "bytes_responder_to_initiator": initiator.bytes_received,
        # A ratio of an abandoned session would flatter it; `found` says how far it got.
        "ratio": round(total_bytes / diff_bytes, 3) if diff_bytes and error is None else None,
        "found": len(initiator.have_ids) + len(initiator.need_ids),
        "full_list_bytes": len(responder_set) * limits.HASH_SIZE_BYTES,
        "rounds": initiator.rounds,
        "message_size_bytes_max": message_size_bytes_max,
        "build_seconds": round(built - started, 3),
        "reconcile_seconds": round(finished - built, 3),
        "error": error,
        "correct": correct,
    }


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="swarmd-bench-sync", description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="ids in the union (N)")
    parser.add_argument("--diff", type=int, default=1000, help="ids held by one side only (D)")
    parser.add_argument("--layout", choices=("clustered", "random"), default="clustered")
    parser.add_argument("--split", choices=("both", "initiator", "responder"), default="both")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="runs (seeds seed..); medians")
    parser.add_argument("--json", action="store_true", help="one compact JSON line")
    args = parser.parse_args(argv)
    if not 1 <= args.items <= 10_000_000:
        parser.error("--items must be in 1..10000000")
    if not 0 <= args.diff <= args.items:
        parser.error("--diff must be in 0..items")
    if not 1 <= args.repeat <= 100:
        parser.error("--repeat must be in 1..100")
    return args


def main(argv: list[str]) -> int:
    args = _parse(argv)
    runs = [_run_once(args, args.seed + run) for run in range(args.repeat)]
    medians: dict[str, Any] = {}
    for key in ("bytes", "ratio", "found", "rounds", "build_seconds", "reconcile_seconds"):
        values = [run[key] for run in runs if run[key] is not None]
        medians[key] = statistics.median(values) if values else None
    result = {
        "benchmark": "sync.reconcile",
        "items": args.items,
        "diff": args.diff,
        "layout": args.layout,
        "split": args.split,
        "seed": args.seed,
        "repeat": args.repeat,
        "diff_bytes": args.diff * limits.HASH_SIZE_BYTES,
        "rounds_bound": math.ceil(math.log(args.items, 16)) + 2 if args.items > 1 else 2,
        "ratio_target_clustered": 3,
        "message_size_bytes_max_limit": limits.RECONCILE_MESSAGE_SIZE_BYTES_MAX,
        **medians,
        "seconds": medians["reconcile_seconds"],
        "correct": all(run["correct"] for run in runs),
        "runs": runs,
    }
    print(json.dumps(result, indent=None if args.json else 2))
    return 0 if result["correct"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
