"""The handle-race scenario: claimants race for a few handles while the council is split."""

from __future__ import annotations

import functools

from ... import limits
from ...ledger import OpAccepted
from ...ops import Op
from ..swarm import (
    FactoryBuilder,
    ScenarioParams,
    Swarm,
    build_swarm,
    honest_live,
)
from .common import (
    council_split,
    finish,
    times,
)
from .report import RunResult

#: The handles raced for and the number of claimants (each claims one, round-robin).
RACE_HANDLES = ("alice", "bob", "carol")
RACE_CLAIMANTS = 8
#: A member endorses a claim it sees this long after seeing it (its operator's reaction).
ENDORSE_DELAY_S = 0.05
#: A contested handle must have a final owner on every node by the end of the second
#: checkpoint finalized after the heal's reconnection (+ one delta sync to exchange claims).
CONFLICT_CHECKPOINTS_MAX = 2


def scenario_handle_race(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    """Claimants race for a few handles while the council is split. Each member endorses the
    first claim of a handle it sees at once; after the heal it endorses the others it had not
    seen too, so that several claims of one handle reach a quorum and the ledger arbitrates."""
    swarm = build_swarm("handle-race", seed, params, factory)
    sim, workload = swarm.sim, swarm.workload
    side_a, side_b = council_split(swarm, quorum_side=sim.rng.random() < 0.5)
    split_at = 0.2
    heal_at = params.workload_s + sim.rng.uniform(0.0, 1.0)
    late_at = heal_at + sim.network.reconnect_s
    sim.at(split_at, lambda: sim.partition(side_a, side_b))
    sim.at(heal_at, sim.heal)
    claims: dict[bytes, Op] = {}
    contested_at: dict[str, float] = {}
    endorsed: dict[int, set[bytes]] = {m: set() for m in range(params.council)}
    first_seen: dict[int, set[str]] = {m: set() for m in range(params.council)}

    def claim(claimant: int) -> None:
        handle = RACE_HANDLES[claimant % len(RACE_HANDLES)]
        node = sim.rng.randrange(params.nodes)
        op = workload.funded_claim(workload.new_account(), handle, node)
        claims[op.op_id] = op
        if sum(c.fields["handle"] == handle for c in claims.values()) == 2:
            contested_at[handle] = sim.now
        workload.submit(op, node)

    def endorse(member: int, claim_id: bytes) -> None:
        if claim_id in endorsed[member] or sim.nodes[member].core is None:
            return
        endorsed[member].add(claim_id)
        workload.submit(workload.members[member].endorse(claims[claim_id]), member)

    def on_event(node: int, event: object) -> None:
        if node >= params.council or not isinstance(event, OpAccepted):
            return
        op = claims.get(event.op_id)
        if op is None:
            return
        handle = op.fields["handle"]
        if sim.now >= late_at or handle not in first_seen[node]:
            first_seen[node].add(handle)
            sim.at(sim.now + ENDORSE_DELAY_S, functools.partial(endorse, node, op.op_id))

    def endorse_the_rest() -> None:
        for member in range(params.council):
            core = sim.nodes[member].core
            for claim_id in sorted(claims):
                if core is not None and core.ledger.status_of(claim_id)[0] == "applied":
                    endorse(member, claim_id)

    sim.event_hooks.append(on_event)
    for claimant, when in enumerate(times(sim.rng, RACE_CLAIMANTS, 0.5, params.workload_s)):
        sim.at(when, functools.partial(claim, claimant))
    sim.at(late_at, endorse_the_rest)

    def check_handles(swarm: Swarm) -> list[str]:
        return _check_handle_race(swarm, claims, contested_at, late_at, result_box)

    result_box: list[float] = []
    swarm.extra_checks.append(check_handles)
    swarm.healed_at = late_at
    sim.run_until(late_at)
    result = finish(swarm)
    if result_box:
        result.open_conflict_age_s = result_box[0]
    return result


def _check_handle_race(
    swarm: Swarm,
    claims: dict[bytes, Op],
    contested_at: dict[str, float],
    late_at: float,
    age_box: list[float],
) -> list[str]:
    """Owners agree; every losing claim with a quorum raised a conflict on every node; every
    contested handle got a final owner everywhere within CONFLICT_CHECKPOINTS_MAX checkpoints
    of the heal (its age is reported)."""
    failures: list[str] = []
    log, live = swarm.finality, honest_live(swarm)
    owners: set[tuple[tuple[str, bytes], ...]] = set()
    for index in live:
        core = swarm.sim.nodes[index].core
        assert core is not None
        final = core.ledger.final_state
        owners.add(tuple(sorted((h, b.claim_id) for h, b in final.bindings.items())))
        quorum = core.ledger.quorum
        raised = log.conflicts.get(index, set())
        for claim_id in sorted(claims):
            record = final.claims.get(claim_id)
            binding = final.bindings.get(claims[claim_id].fields["handle"])
            if record is None or record.quorum_key(quorum) is None or binding is None:
                continue
            if (
                binding.claim_id != claim_id
                and (
                    record.handle,
                    claim_id,
                    binding.claim_id,
                )
                not in raised
            ):
                failures.append(f"node {index}: losing claim with a quorum raised no conflict")
                break
    if len(owners) > 1:
        failures.append("nodes disagree on handle owners")
    settle_from = late_at + limits.DELTA_SYNC_INTERVAL_S
    height_bound = swarm.finality.max_height_by(settle_from) + CONFLICT_CHECKPOINTS_MAX
    first = log.first_finalized_at()
    deadline = first.get(height_bound)
    ages = []
    for handle, since in sorted(contested_at.items()):
        times = [log.final_bound_at.get(i, {}).get(handle) for i in live]
        if any(t is None for t in times):
            failures.append(f"handle {handle!r} contested but has no final owner everywhere")
            ages.append(swarm.sim.now - since)
            continue
        resolved = max(t for t in times if t is not None)
        ages.append(resolved - since)
        if deadline is not None and resolved > deadline:
            failures.append(
                f"handle {handle!r} resolved after height {height_bound} "
                f"({CONFLICT_CHECKPOINTS_MAX} checkpoints after the heal)"
            )
    age_box.append(max(ages, default=0.0))
    return failures
