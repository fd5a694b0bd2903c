"""The mesh's large runs (issue 16), not in CI: the documented open-network run and the scale
point, with their wall time and finality latency percentiles (virtual seconds).

    python tests/sim/mesh_scale.py open-network --council 7 --full-nodes 40 --seeds 3
    python tests/sim/mesh_scale.py mesh-scale --council 31 --full-nodes 100 --seeds 1
    python tests/sim/mesh_scale.py mesh-scale --council 31 --full-nodes 100 --profile 25

`--profile N` runs under cProfile and prints the N functions with the most own time.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import pstats
import sys
import time

from swarmd.protocol.sim import scenarios
from swarmd.protocol.sim.scenarios.opennet import scenario_mesh_scale

RUNS = {
    "open-network": scenarios.SCENARIOS["open-network"],
    "eclipse": scenarios.SCENARIOS["eclipse"],
    "mesh-scale": (scenario_mesh_scale, scenarios.SCENARIOS["transfers"][1]),
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(RUNS))
    parser.add_argument("--council", type=int, default=31)
    parser.add_argument("--full-nodes", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--ops", type=int, default=None)
    parser.add_argument("--profile", type=int, default=0)
    args = parser.parse_args()
    function, defaults = RUNS[args.scenario]
    params = dataclasses.replace(defaults, council=args.council, full_nodes=args.full_nodes)
    if args.ops is not None:
        params = dataclasses.replace(params, ops=args.ops)
    results = []
    started = time.perf_counter()
    profile = cProfile.Profile() if args.profile else None
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        if profile is not None:
            profile.enable()
        result = function(seed, params, None)
        if profile is not None:
            profile.disable()
        results.append(result)
        print(
            f"seed {seed}: ok={result.ok} final_height={result.final_height} {result.failures[:3]}",
            file=sys.stderr,
        )
    wall = time.perf_counter() - started
    summary = scenarios.summarize(args.scenario, results)
    report = {
        "scenario": args.scenario,
        "council": args.council,
        "full_nodes": args.full_nodes,
        "seeds": args.seeds,
        "failed": len(summary["failures"]),
        "finality_latency_s": summary["finality_latency_s"],
        "wall_s": round(wall, 1),
        "wall_s_per_seed": round(wall / args.seeds, 1),
        "frames_delivered": sum(r.frames_delivered for r in results),
    }
    print(json.dumps(report, indent=1))
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
