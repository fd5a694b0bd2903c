"""The root-divergence scenario: one node's final state is corrupted under it (a disk fault);
it must halt read-only at the first height it finalizes on a state that is not the agreed one,
never persist the bad root, recover by state sync and finalize new ops with the others
afterwards."""

from __future__ import annotations

import functools

from ...codes import RejectCode
from ...errors import RemoteProtocolError
from ...genesis import Genesis
from ...ledger.snapshot import state_from_records, state_records
from ...ledger.state import LedgerState
from ...limits import STATE_SYNC_CHUNK_TIMEOUT_S, STATE_SYNC_RETRY_S
from ...node_core import (
    REASON_DIVERGENCE,
    CheckpointFinalized,
    ModeChanged,
    NodeCore,
    NodeCoreConfig,
    PersistCheckpoint,
    RootDiverged,
    StateSyncFinished,
)
from ..simulator import CoreFactory
from ..swarm import FactoryBuilder, ScenarioParams, Swarm, build_swarm, node_core_factory
from .common import bank_workload, finish, signups
from .report import RunResult

#: Bundles are trimmed after this many heights, a snapshot made every this many heights and
#: checkpoints come this often: a node that forgets its state is past the bundles its peers
#: keep, so it recovers by state sync (the state-sync scenario's settings).
DIVERGENCE_BUNDLES_KEPT = 2
DIVERGENCE_SNAPSHOT_INTERVAL = 2
DIVERGENCE_CHECKPOINT_INTERVAL_S = 0.25
#: The corruption comes at a random time in this share of the workload (accounts exist, load
#: still flows so checkpoints keep coming).
DIVERGENCE_WINDOW = (0.4, 0.7)
#: Signups after the recovery: the liveness check.
DIVERGENCE_SIGNUPS_AFTER = 4
DIVERGENCE_SIGNUPS_AFTER_S = 3.0
#: How often clients look for ops the halted node refused (and send them elsewhere).
DIVERGENCE_RETRY_S = 0.05
#: How long after the workload the victim may still take to rejoin: a lost chunk costs
#: STATE_SYNC_CHUNK_TIMEOUT_S, a failed sync STATE_SYNC_RETRY_S, then the confirmation.
DIVERGENCE_RECOVERY_S_MAX = 2 * STATE_SYNC_CHUNK_TIMEOUT_S + STATE_SYNC_RETRY_S
#: The balance added to one account under the node (any change of a final record will do).
DIVERGENCE_CORRUPTION = 7


def divergence_factory(genesis: Genesis) -> CoreFactory:
    config = NodeCoreConfig(
        bundles_kept=DIVERGENCE_BUNDLES_KEPT,
        snapshot_interval=DIVERGENCE_SNAPSHOT_INTERVAL,
        checkpoint_interval_s=DIVERGENCE_CHECKPOINT_INTERVAL_S,
    )
    return node_core_factory(genesis, config)


def corrupt_final_state(heights: list[int], core: object, now: float) -> None:
    """The fault: one account's balance changes in the node's final state and in its
    provisional state above it (a record flipped under the node: no op did it). `heights`
    gets the node's final height at that moment."""
    assert isinstance(core, NodeCore)
    final = core.ledger.final_state
    heights.append(core.final_height)
    account = sorted(final.accounts)[0]
    for state in (final, core.ledger.state):
        state.credit(account, DIVERGENCE_CORRUPTION)


def scenario_root_divergence(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    """The bank workload; at a random moment one random node's final state is corrupted.

    Checks (besides every common checker): the node emits RootDiverged and goes read-only with
    reason `root_divergence` at the first height whose final state (its records re-hashed) is
    not the agreed one, finalizing none on such a state (`late_halts`); it persists no
    checkpoint whose root is not the agreed one; it finishes a state sync after the divergence
    and leaves read-only; new signups after it recovered are final everywhere (the common
    checks). A victim that lagged past the bundles its peers keep when it was corrupted may
    install a peer's snapshot before it finalizes anything: the corrupted state is then dropped
    unread (nothing to detect)."""
    swarm = build_swarm("root-divergence", seed, params, factory or divergence_factory)
    sim = swarm.sim
    bank_workload(swarm, params)
    victim = sim.rng.randrange(params.nodes)
    corrupt_at = sim.rng.uniform(*(share * params.workload_s for share in DIVERGENCE_WINDOW))
    heights: list[int] = []
    seen: list[tuple[float, object]] = []
    rehashed: dict[int, bytes | None] = {}

    def hook(node: int, event: object) -> None:
        if node == victim and heights and isinstance(event, WATCHED):
            seen.append((sim.now, event))
            if isinstance(event, CheckpointFinalized):
                rehash_final_state(rehashed, sim.nodes[victim].core, event.height)

    sim.event_hooks.append(hook)
    corrupt = functools.partial(corrupt_final_state, heights)
    sim.at(corrupt_at, lambda: sim.call(victim, "corrupt-final-state", corrupt))
    recovery_end = params.workload_s + DIVERGENCE_RECOVERY_S_MAX
    retry_read_only(swarm, corrupt_at, recovery_end + DIVERGENCE_SIGNUPS_AFTER_S)
    sim.run_until(params.workload_s)

    def recovered_times() -> list[float]:
        return [t for t, e in seen if isinstance(e, ModeChanged) and e.reason == ""]

    def halted() -> bool:
        return any(isinstance(e, RootDiverged) for _, e in seen) and not recovered_times()

    # Wait for the rejoin before the liveness phase: finish() stops at convergence, which a
    # victim just back by state sync reaches before its root is confirmed.
    if halted():
        sim.run_until(recovery_end, stop=lambda: not halted())
    recovered = recovered_times()
    after = (recovered[0] if recovered else params.workload_s) + 0.5
    signups(swarm, DIVERGENCE_SIGNUPS_AFTER, after, after + 1.0)
    swarm.healed_at = after + DIVERGENCE_SIGNUPS_AFTER_S

    def check(swarm: Swarm) -> list[str]:
        return _check_divergence(swarm, victim, heights, [e for _, e in seen], rehashed)

    swarm.extra_checks.append(check)
    sim.run_until(swarm.healed_at)
    return finish(swarm)


def retry_read_only(swarm: Swarm, start: float, end: float) -> None:
    """From `start` to `end`, clients told `read_only` (a node halted, or confirming its root
    before it rejoins) send the op to the next node, as a client would: without it the later
    ops of that wallet's chain would wait on it forever."""
    sim, workload = swarm.sim, swarm.workload
    retried: set[bytes] = set()

    def poll() -> None:
        for op_id, submission in list(workload.submissions.items()):
            outcome = submission.outcome
            if op_id in retried or outcome is None or outcome.code != RejectCode.READ_ONLY:
                continue
            retried.add(op_id)
            workload.submit(submission.op, (submission.node + 1) % len(sim.nodes))
        if sim.now + DIVERGENCE_RETRY_S <= end:
            sim.at(sim.now + DIVERGENCE_RETRY_S, poll)

    sim.at(start, poll)


#: The victim's events the checker reads.
WATCHED = (RootDiverged, ModeChanged, CheckpointFinalized, PersistCheckpoint, StateSyncFinished)


def rehash_final_state(rehashed: dict[int, bytes | None], core: object, height: int) -> None:
    """Note the rehashed root of `core`'s final state at `height` (`rehashed_root`); nothing
    when the node has moved past `height` already (several heights finalized in one input)."""
    if isinstance(core, NodeCore) and core.final_height == height:
        rehashed[height] = rehashed_root(core.ledger.final_state)


def rehashed_root(state: LedgerState) -> bytes | None:
    """The root of `state` rebuilt from its records, not read from the tree it keeps: the
    state it really holds. None when the records are not a consistent state (a balance
    changed under the node breaks the supply)."""
    try:
        return state_from_records(state_records(state), check_keys=False).root()
    except RemoteProtocolError:
        return None


def _check_divergence(
    swarm: Swarm,
    victim: int,
    heights: list[int],
    events: list[object],
    rehashed: dict[int, bytes | None],
) -> list[str]:
    if not heights:
        return [f"node {victim} was down when its state was to be corrupted"]
    where = f"node {victim} (corrupted at final height {heights[0]})"
    diverged = [i for i, e in enumerate(events) if isinstance(e, RootDiverged)]
    if not diverged:
        if _replaced_before_use(events):  # the corrupted state was dropped unread
            return _bad_checkpoints(swarm, victim, where, events)
        return [f"{where}: no root divergence detected"]
    first = events[diverged[0]]
    assert isinstance(first, RootDiverged)
    failures = []
    failures += late_halts(where, first.height, events[: diverged[0]], rehashed)
    halted = events[diverged[0] + 1 :]
    if not any(isinstance(e, ModeChanged) and e.reason == REASON_DIVERGENCE for e in halted):
        failures.append(f"{where}: did not go read-only with reason {REASON_DIVERGENCE}")
    failures += _bad_checkpoints(swarm, victim, where, events)
    if not any(isinstance(e, StateSyncFinished) for e in halted):
        failures.append(f"{where}: did not recover by state sync")
    core = swarm.sim.nodes[victim].core
    if isinstance(core, NodeCore) and (core.mode_reason or core.mode.value != "normal"):
        failures.append(f"{where}: still {core.mode.value} ({core.mode_reason}) at the end")
    return failures


def late_halts(
    where: str, halted_at: int, before: list[object], rehashed: dict[int, bytes | None]
) -> list[str]:
    """A failure for each height the victim finalized after the corruption, before it halted,
    with a final state that is not the agreed one (its records re-hashed: `rehash_final_state`).

    The promise (docs/PROTOCOL.md, divergence halt) is a halt at the first final height whose
    state is not the council-signed one, not within one height of the corruption: a cut for
    the height in progress, derived before the corruption, rewrites the corrupted record when
    it is finalized (its derivation is merged over the final state), so that height's final
    state is the agreed one; what the scenario also wrote into the provisional state reaches
    a final state a height or two later, and the node halts there."""
    failures = []
    for event in before:
        if isinstance(event, CheckpointFinalized):
            root = rehashed.get(event.height, event.state_root)
            if root != event.state_root:
                failures.append(
                    f"{where}: finalized height {event.height} on a state that is not the"
                    f" agreed one; halted only at height {halted_at}"
                )
    return failures


def _replaced_before_use(events: list[object]) -> bool:
    """True when the victim (lagging past the bundles its peers keep when it was corrupted)
    installed a peer's snapshot before it finalized any height: the corrupted final state was
    thrown away unread, so there was nothing to detect (no root derived from it was compared,
    signed or persisted)."""
    for event in events:
        if isinstance(event, StateSyncFinished):
            return True
        if isinstance(event, CheckpointFinalized):
            return False
    return False


def _bad_checkpoints(swarm: Swarm, victim: int, where: str, events: list[object]) -> list[str]:
    """A failure if the victim persisted a checkpoint whose root is not the agreed one."""
    agreed = {
        (record.epoch, record.height): record.state_root
        for record in swarm.finality.finalizations
        if record.node != victim
    }
    for event in events:
        if isinstance(event, PersistCheckpoint) and agreed.get((0, event.height)) not in (
            None,
            event.state_root,
        ):
            return [f"{where}: persisted a checkpoint of a bad root at {event.height}"]
    return []
