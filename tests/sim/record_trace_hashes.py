"""Record (or check) every scenario's trace hash over the CI seeds.

The layout work moves the simulator and the core between files; a pure move must not change a
single delivered frame or event, so every (scenario, seed) trace hash must stay identical.

    python tests/sim/record_trace_hashes.py                # check seeds 1..100 (~5 min)
    python tests/sim/record_trace_hashes.py --seeds 10     # quick check, seeds 1..10 (~30 s)
    python tests/sim/record_trace_hashes.py --record       # fresh baseline (say why in the commit)
    python tests/sim/record_trace_hashes.py --scenario eclipse --scenario open-network --record
                                                            # re-record only these entries

`--scenario NAME` (repeatable) checks, or records, only the named scenarios; on --record every
other scenario's entry in the baseline is kept as it is.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from swarmd.protocol.sim import scenarios

BASELINE = Path(__file__).with_name("trace_hashes.json")
SEED_COUNTS = (100, 10)


def compute(seed_count: int, names: list[str]) -> dict[str, str]:
    """One digest per scenario of `names`: sha256 over its per-seed trace hashes in seed
    order."""
    digests: dict[str, str] = {}
    for name in names:
        digest = hashlib.sha256()
        for seed in range(1, seed_count + 1):
            digest.update(scenarios.run_scenario(name, seed).trace_hash.encode() + b"\n")
        digests[name] = digest.hexdigest()
    return digests


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--seeds", type=int, choices=SEED_COUNTS, default=100)
    parser.add_argument(
        "--scenario",
        action="append",
        choices=scenarios.scenario_names(),
        help="only this scenario (repeatable); default: every scenario",
    )
    args = parser.parse_args()
    names = sorted(set(args.scenario)) if args.scenario else list(scenarios.scenario_names())
    if args.record:
        return record(names, whole=not args.scenario)
    baseline = json.loads(BASELINE.read_text())[f"seeds_1_{args.seeds}"]
    if args.scenario:
        baseline = {name: baseline.get(name, "") for name in names}
    digests = compute(args.seeds, names)
    keys = baseline.keys() | digests.keys()
    changed = sorted(k for k in keys if baseline.get(k) != digests.get(k))
    for name in changed:
        print(f"CHANGED {name}: {baseline.get(name)} -> {digests.get(name)}")
    print("identical" if not changed else f"{len(changed)} scenario(s) changed")
    return 1 if changed else 0


def record(names: list[str], *, whole: bool) -> int:
    """Write the digests of `names` for every seed count: a fresh baseline when `whole`, else
    only those entries of the existing one."""
    recorded: dict[str, dict[str, str]] = {}
    if not whole:
        recorded = json.loads(BASELINE.read_text())
    for count in SEED_COUNTS:
        recorded.setdefault(f"seeds_1_{count}", {}).update(compute(count, names))
    BASELINE.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    print(f"recorded {len(names)} scenario(s): {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
