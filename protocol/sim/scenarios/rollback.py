"""The network-rollback scenario: the council rolls the whole network back to a final height H
with a rollback certificate, during load, with a member crashing mid-way and a full node
offline through it."""

from __future__ import annotations

import functools

from ...codes import RejectCode
from ...node_core import NodeCore, OpsReverted
from ...ops import Op
from ..swarm import FactoryBuilder, ScenarioParams, Swarm, build_swarm, honest_cores
from .common import finish, fund_accounts, signups, times
from .divergence import retry_read_only
from .report import RunResult

#: Seconds after funding ends before the full node is cut off and H is fixed: every funding
#: op is final by then (checkpoint interval 1 s, a few rounds).
ROLLBACK_SETTLE_S = 3.0
#: The load whose finality the rollback reverts runs this long before the first vote.
ROLLBACK_LOAD_S = 3.0
#: Votes are cast this far apart (the crashing member votes second and crashes right after).
ROLLBACK_VOTE_GAP_S = 0.2
#: The crashed member is down this long; the full node is healed this long after the votes.
ROLLBACK_DOWN_S = 3.0
ROLLBACK_OFFLINE_AFTER_S = 5.0
ROLLBACK_SIGNUPS_AFTER = 4
#: The surviving members sign `council.resume` this long after the first vote (every live node
#: holds the certificate by then: a resume final in the old epoch would be reverted), the
#: play's last step after the hashes are confirmed; a member retries while its own node is
#: still read-only confirming its root.
ROLLBACK_RESUME_AFTER_S = 1.5
ROLLBACK_RESUME_RETRY_S = 0.25


def scenario_network_rollback(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    """Fund accounts; cut a full node off; fix H (the members' final height); transfers become
    final above H; a quorum of members votes to roll back to H while transfers still flow, one
    voter crashing right after its vote (restarted later); new signups in the new epoch; the
    full node comes back, learns the certificate from its peers and rejoins in the new epoch.
    Every node is quiesced from the certificate until the surviving members' resumes are final
    in the new epoch (rollbacks.py, `awaiting_resume`).

    Checks (besides every common checker, agreement per (epoch, height) among them): every
    node ends in epoch 1; no reverted op is applied or final anywhere; no honest member signed
    two values for one (epoch, height, round) (no evidence, no refused conflicting signature);
    the new epoch finalizes above H (liveness after heal)."""
    swarm = build_swarm("network-rollback", seed, params, factory)
    sim = swarm.sim
    workload = swarm.workload
    fund_end = params.workload_s / 4
    fund_accounts(swarm, params.accounts, fund_end)
    cut_at = fund_end + ROLLBACK_SETTLE_S
    vote_at = cut_at + ROLLBACK_LOAD_S
    offline = params.council  # the first full node
    # Every member votes, in a random order; the second voter crashes right after its vote
    # (which may then never leave it): the other three are still a quorum.
    members = sim.rng.sample(range(params.council), params.council)
    crasher = members[1]
    heights: list[int] = []
    reverted: set[bytes] = set()

    def cut_off() -> None:
        sim.partition([offline], [i for i in range(params.nodes) if i != offline])
        heights.append(_core(swarm, 0).final_height)

    def hook(node: int, event: object) -> None:
        if isinstance(event, OpsReverted):
            reverted.update(event.op_ids)

    sim.event_hooks.append(hook)
    sim.at(cut_at, cut_off)
    # The load: its ops final above H are reverted; those sent around the votes may be
    # reverted, refused or pending on a reverted parent: the common checks skip them all.
    _council_transfers(swarm, params.ops, cut_at + 0.1, vote_at + 1.0)
    _schedule_votes(swarm, members, crasher, vote_at, heights)
    heal_at = vote_at + ROLLBACK_OFFLINE_AFTER_S
    sim.at(heal_at, sim.heal)
    sim.run_until(cut_at + 0.1)
    load_start = len(workload.submissions)
    sim.run_until(vote_at + 1.0)
    workload.expect_reverted.update(list(workload.submissions)[load_start:])
    # New ops in the new epoch, from fresh accounts (granted by members whose chains the
    # rollback left at their final heads: grants stopped at H).
    signups(swarm, ROLLBACK_SIGNUPS_AFTER, heal_at + 0.5, heal_at + 1.5)
    swarm.healed_at = heal_at + 2.0
    resumers = [index for index in sorted(members) if index != crasher]
    _schedule_resume(swarm, resumers, vote_at + ROLLBACK_RESUME_AFTER_S, heal_at)
    # A node is read-only while it confirms its root after the revert (rejoin.py).
    retry_read_only(swarm, vote_at, swarm.healed_at)

    def check(swarm: Swarm) -> list[str]:
        return _check_rollback(swarm, heights[0], reverted)

    swarm.extra_checks.append(check)
    sim.run_until(swarm.healed_at)
    return finish(swarm)


def _schedule_votes(
    swarm: Swarm, members: list[int], crasher: int, vote_at: float, heights: list[int]
) -> None:
    """The members' rollback votes to H (`heights[0]`, fixed at the cut), one every
    ROLLBACK_VOTE_GAP_S from `vote_at` in `members` order; `crasher` crashes right after its
    vote and restarts ROLLBACK_DOWN_S later."""
    sim = swarm.sim

    def propose(core: object, now: float) -> None:
        assert isinstance(core, NodeCore)
        core.propose_rollback(heights[0], "scenario: revert the load", now)

    def vote(index: int) -> None:
        sim.call(index, "propose_rollback", propose)

    for k, index in enumerate(members):
        sim.at(vote_at + k * ROLLBACK_VOTE_GAP_S, functools.partial(vote, index))
    crash_at = vote_at + ROLLBACK_VOTE_GAP_S + 0.01
    sim.at(crash_at, functools.partial(sim.crash, crasher))
    sim.at(crash_at + ROLLBACK_DOWN_S, functools.partial(sim.restart, crasher))


def _schedule_resume(swarm: Swarm, members: list[int], at: float, deadline: float) -> None:
    """The members' resumes at `at`. The full node back from its partition is still quiesced
    until its catch-up reaches them: a signup it refuses is sent to the next node, as a client
    would."""
    swarm.sim.at(at, functools.partial(_resume, swarm, members, deadline))
    _retry_quiesced(swarm, at, swarm.healed_at)


def _resume(swarm: Swarm, members: list[int], deadline: float) -> None:
    """Each member signs `council.resume` and submits it to its own node, again while that
    node refuses it as read-only (confirming its root after the revert)."""
    for member in members:
        op = swarm.workload.members[member].resume("hashes confirmed")
        _submit_resume(swarm, op, member, deadline)


def _submit_resume(swarm: Swarm, op: Op, node: int, deadline: float) -> None:
    outcome = swarm.workload.submit(op, node).outcome
    retry = outcome is None or outcome.code == RejectCode.READ_ONLY
    if retry and swarm.sim.now + ROLLBACK_RESUME_RETRY_S <= deadline:
        again = functools.partial(_submit_resume, swarm, op, node, deadline)
        swarm.sim.at(swarm.sim.now + ROLLBACK_RESUME_RETRY_S, again)


def _retry_quiesced(swarm: Swarm, start: float, end: float) -> None:
    """From `start` to `end`, an op submitted since `start` that a node refused as
    `quiesced` is sent to the next node (each poll, until one admits it)."""
    sim, workload = swarm.sim, swarm.workload

    def poll() -> None:
        for submission in list(workload.submissions.values()):
            outcome = submission.outcome
            if submission.time < start or outcome is None:
                continue
            if outcome.code == RejectCode.QUIESCED:
                workload.submit(submission.op, (submission.node + 1) % len(sim.nodes))
        if sim.now + ROLLBACK_RESUME_RETRY_S <= end:
            sim.at(sim.now + ROLLBACK_RESUME_RETRY_S, poll)

    sim.at(start, poll)


def _council_transfers(swarm: Swarm, count: int, start: float, end: float) -> None:
    """Random transfers submitted to council members (the full node is cut off meanwhile)."""
    workload, rng = swarm.workload, swarm.sim.rng
    council = swarm.params.council

    def one() -> None:
        payer, payee = rng.sample(workload.wallets, 2)
        workload.transfer(payer, payee, node=rng.randrange(council))

    for when in times(rng, count, start, end):
        swarm.sim.at(when, one)


def _core(swarm: Swarm, index: int) -> NodeCore:
    core = swarm.sim.nodes[index].core
    assert isinstance(core, NodeCore)
    return core


def _check_rollback(swarm: Swarm, height: int, reverted: set[bytes]) -> list[str]:
    failures: list[str] = []
    if not reverted:
        failures.append("the rollback reverted no op: the scenario did not exercise it")
    for index, core in honest_cores(swarm):
        if not isinstance(core, NodeCore):
            continue
        if core.epoch != 1:
            failures.append(f"node {index}: epoch {core.epoch}, expected 1")
        if core.rollbacks.awaiting_resume:
            failures.append(f"node {index}: still quiesced after a quorum resumed")
        if core.final_height <= height:
            failures.append(f"node {index}: final height {core.final_height} not above H {height}")
        for op_id in sorted(reverted):
            if core.ledger.status_of(op_id)[0] == "applied" or core.ledger.is_final(op_id):
                failures.append(f"node {index}: reverted op {op_id.hex()[:12]} applied")
                break
        if core.consensus.conflicting_signatures_refused:
            failures.append(f"node {index}: refused to sign a conflicting value")
    for index in sorted(swarm.finality.evidence):
        if swarm.finality.evidence[index]:
            failures.append(f"node {index}: equivocation evidence recorded")
    return failures[:10]
