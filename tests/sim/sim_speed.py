"""CPU seconds per seed of each simulator scenario (not in CI): the simulator's speed, which
the suite (21 scenarios x 100 seeds) and the release gate (x 1,000 seeds) pay for.

    python tests/sim/sim_speed.py --seeds 2                      # every scenario
    python tests/sim/sim_speed.py --seeds 5 --scenario eclipse   # one (repeatable)
    python tests/sim/sim_speed.py --seeds 1 --scenario open-network --council 7 --full-nodes 40

Process CPU time, not wall time, so that other jobs on a shared machine disturb it less; every
run must pass. To compare two commits, run this file against each in turn (e.g. the older one
from `git archive <commit> protocol storage node` unpacked under a directory `swarmd/` put
first on PYTHONPATH), alternating, and take the median of 3 runs of each.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from swarmd.protocol.sim import scenarios


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--scenario", action="append", choices=scenarios.scenario_names())
    parser.add_argument("--council", type=int, help="instead of the scenario's own size")
    parser.add_argument("--full-nodes", type=int, help="instead of the scenario's own size")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = args.scenario or scenarios.scenario_names()
    per_seed: dict[str, float] = {}
    for name in names:
        params = scenarios.SCENARIOS[name][1]
        if args.council is not None:
            params = dataclasses.replace(params, council=args.council)
        if args.full_nodes is not None:
            params = dataclasses.replace(params, full_nodes=args.full_nodes)
        began = time.process_time()
        for seed in range(1, args.seeds + 1):
            result = scenarios.run_scenario(name, seed, params)
            if not result.ok:
                print(scenarios.format_failure(result), file=sys.stderr)
                return 1
        per_seed[name] = (time.process_time() - began) / args.seeds
        if not args.json:
            print(f"{name:22s} {per_seed[name]:7.3f} CPU s/seed", flush=True)
    total = sum(per_seed.values())
    if args.json:
        print(json.dumps({"seeds": args.seeds, "cpu_s_per_seed": per_seed, "total": total}))
    else:
        print(f"{'all of them':22s} {total:7.3f} CPU s/seed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
