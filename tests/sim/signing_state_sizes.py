"""Bytes a validator makes durable per consensus step in the simulator (branch sigstate).

Runs the `transfers` workload at a given size and, for every council member, counts each
`PersistConsensusState` (the per-step state rewrite) and each `PersistPrecommit` (a kept
precommit with its value, written once) the core emits. A step's write is its state plus the
kept precommits emitted since the previous state.

    python tests/sim/signing_state_sizes.py --accounts 200 --ops 2000
    python tests/sim/signing_state_sizes.py --accounts 800 --ops 2000 --seed 2
"""

from __future__ import annotations

import argparse
import statistics

from swarmd.protocol import node_core
from swarmd.protocol.sim.network import NetworkConfig
from swarmd.protocol.sim.scenarios.common import bank_workload, finish
from swarmd.protocol.sim.swarm import ScenarioParams, build_swarm


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workload-s", type=float, default=8.0)
    args = parser.parse_args()
    params = ScenarioParams(
        accounts=args.accounts,
        ops=args.ops,
        workload_s=args.workload_s,
        network=NetworkConfig(clock_skew_s_max=0.2),
    )
    swarm = build_swarm("transfers", args.seed, params)
    states: list[int] = []
    steps: list[int] = []
    records: list[int] = []
    since_state: dict[int, int] = {}
    persist_precommit = getattr(node_core, "PersistPrecommit", None)

    def hook(index: int, event: object) -> None:
        if persist_precommit is not None and isinstance(event, persist_precommit):
            records.append(len(event.data))
            since_state[index] = since_state.get(index, 0) + len(event.data)
        elif isinstance(event, node_core.PersistConsensusState):
            states.append(len(event.data))
            steps.append(len(event.data) + since_state.pop(index, 0))

    swarm.sim.event_hooks.append(hook)
    bank_workload(swarm, params)
    swarm.healed_at = params.workload_s
    swarm.sim.run_until(params.workload_s)
    result = finish(swarm)
    print(f"accounts {args.accounts}, ops {args.ops}, seed {args.seed}: ok={result.ok}")
    print(
        f"  states written: {len(states)}, bytes median {statistics.median(states):,.0f},"
        f" max {max(states):,}, total {sum(states):,}"
    )
    print(
        f"  per step (state + new kept precommits): median {statistics.median(steps):,.0f},"
        f" max {max(steps):,}, total {sum(steps):,}"
    )
    if records:
        print(
            f"  kept precommits written: {len(records)}, bytes median"
            f" {statistics.median(records):,.0f}, max {max(records):,}, total {sum(records):,}"
        )


if __name__ == "__main__":
    main()
