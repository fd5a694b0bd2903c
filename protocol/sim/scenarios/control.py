"""Council control plane scenarios: a quorum quiesces the network and resumes it
(`council-quiesce`), and a quorum pauses claims, revokes a squatted handle and resumes claims
(`claims-paused`). docs/PROTOCOL.md section 4, "Council control plane", states the rules they
check."""

from __future__ import annotations

import functools
from collections.abc import Callable

from ... import crypto
from ...codes import RejectCode
from ...crypto import KeyPair
from ...node_core import CheckpointFinalized, HandleConflictRejected, NodeCore
from ...ops import COUNCIL_KINDS, Kind, Op
from ...wallet import Author
from ..swarm import FactoryBuilder, ScenarioParams, Swarm, build_swarm, honest_live
from .common import council_split, finish, fund_accounts, random_transfers
from .report import RunResult

#: A client whose op a quiesced node refused tries again this often (a wallet's retry).
RETRY_S = 0.5
#: A client gives up retrying after this long (then the liveness check fails the run).
RETRY_FOR_S = 20.0
#: Client ops made after the resume (each by a fresh account: a signup grant and a claim
#: receiving it), which must all become final everywhere.
AFTER_RESUME_OPS = 4


def probe_author(swarm: Swarm, label: str) -> Author:
    """A client key fixed by the scenario's seed and a label (not one of the workload's)."""
    seed = crypto.sha256(f"swarmd-sim-probe-{swarm.seed}-{label}".encode())
    return Author(KeyPair.from_seed(seed), swarm.genesis.network_id)


def core_of(swarm: Swarm, index: int) -> NodeCore | None:
    core = swarm.sim.nodes[index].core
    return core if isinstance(core, NodeCore) else None


def vote(swarm: Swarm, members: list[int], sign: Callable[[Author], Op]) -> None:
    """Each member signs a council op with its own key and submits it to its own node."""
    for member in members:
        swarm.workload.submit(sign(swarm.workload.members[member]), member)


def submit_until_admitted(swarm: Swarm, op: Op, node: int, deadline: float) -> None:
    """Submit `op` to `node`, again every RETRY_S while the node refuses it for its mode."""
    submission = swarm.workload.submit(op, node)
    outcome = submission.outcome
    refused = outcome is not None and outcome.code in (
        RejectCode.QUIESCED,
        RejectCode.CLAIMS_PAUSED,
    )
    if refused and swarm.sim.now + RETRY_S <= deadline:
        retry = functools.partial(submit_until_admitted, swarm, op, node, deadline)
        swarm.sim.at(swarm.sim.now + RETRY_S, retry)


def funded_probe_claim(swarm: Swarm, label: str, handle: str) -> tuple[Op, Op]:
    """A probe key's signup grant (by a council member the rng picks) and its claim receiving
    it: state costs credits, so an unfunded claim would be `claim_unfunded`."""
    members = swarm.workload.members
    member = members[swarm.sim.rng.randrange(len(members))]
    claimant = probe_author(swarm, label)
    grant = member.grant(claimant.key, swarm.genesis.signup_reward)
    return grant, claimant.claim(handle, deps=[grant.op_id])


def refused_everywhere(swarm: Swarm, make: Callable[[int], Op], code: str) -> list[str]:
    """Submit a fresh op to every live node now; each must refuse it with `code`."""
    failures = []
    for index in honest_live(swarm):
        outcome = swarm.sim.submit(index, make(index).envelope)
        if outcome is None or outcome.code != code:
            got = "down" if outcome is None else f"{outcome.status} {outcome.code}".strip()
            failures.append(f"node {index}: a client op got {got}, not {code}")
    return failures


def final_everywhere(swarm: Swarm, ops: list[Op], what: str) -> list[str]:
    failures = []
    for index in honest_live(swarm):
        core = core_of(swarm, index)
        if core is None:
            continue
        lacking = [op for op in ops if not core.ledger.is_final(op.op_id)]
        if lacking:
            failures.append(f"node {index}: {len(lacking)} {what} not final")
    return failures


# --- council-quiesce ---------------------------------------------------------------------------


class QuiesceWatch:
    """Per node, replaying the mode votes of each checkpoint in height order: whether the
    final state below a checkpoint was quiesced, and any checkpoint that made a non-council op
    final while it was (a broken rule). Read from the checkpoint's ops, not from the node's
    final state when the event is handled: a node catching up finalizes several heights
    before the simulator drains their events."""

    def __init__(self, swarm: Swarm) -> None:
        self.swarm = swarm
        #: node -> member -> (seq, quiesce) of its latest final mode vote.
        self.votes: dict[int, dict[bytes, tuple[int, bool]]] = {}
        self.broken: list[str] = []
        self.quiesced_heights: dict[int, int] = {}  # node -> checkpoints decided while quiesced

    def on_event(self, node: int, event: object) -> None:
        if not isinstance(event, CheckpointFinalized):
            return
        core = core_of(self.swarm, node)
        if core is None:
            return
        votes = self.votes.setdefault(node, {})
        ops = [core.ledger.op(i) for i in core.finality.final_ids_by_height.get(event.height, ())]
        if sum(quiesce for _, quiesce in votes.values()) >= self.swarm.genesis.quorum:
            self.quiesced_heights[node] = self.quiesced_heights.get(node, 0) + 1
            self.check_council_only(node, [op for op in ops if op is not None], event.height)
        for op in ops:
            if (
                op is not None
                and op.kind in (Kind.COUNCIL_QUIESCE, Kind.COUNCIL_RESUME)
                and op.seq > votes.get(op.author, (0, False))[0]
            ):
                votes[op.author] = (op.seq, op.kind is Kind.COUNCIL_QUIESCE)

    def check_council_only(self, node: int, ops: list[Op], height: int) -> None:
        council = self.swarm.genesis.council
        last: dict[bytes, Op] = {}
        for op in ops:
            if op.author not in council:
                self.broken.append(f"node {node}: client op final at {height} while quiesced")
                return
            if op.author not in last or op.seq > last[op.author].seq:
                last[op.author] = op
        if any(op.kind not in COUNCIL_KINDS for op in last.values()):
            self.broken.append(f"node {node}: a member's client op alone final at {height}")


def scenario_council_quiesce(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    """A quorum quiesces under loss while one side of a split holds a voter; once healed and
    final, every node refuses client ops; a quorum resumes; client ops become final again."""
    swarm = build_swarm("council-quiesce", seed, params, factory)
    sim, rng = swarm.sim, swarm.sim.rng
    fund_end = params.workload_s / 4
    fund_accounts(swarm, params.accounts, fund_end)
    quiesce_at = params.workload_s
    # Transfers stop a second before the votes: a wallet whose op a node refused would break
    # its own chain (the workload signs optimistically), which is the client's problem.
    random_transfers(swarm, params.ops, fund_end, quiesce_at - 1.0)
    members = list(range(params.council))
    voters = sorted(rng.sample(members, swarm.genesis.quorum))
    resumers = sorted(rng.sample(members, swarm.genesis.quorum))
    side_a, side_b = council_split(swarm, quorum_side=True)
    heal_at = quiesce_at + rng.uniform(1.0, 2.0)
    checked_at = heal_at + 4.0
    resume_at = checked_at + 0.5
    sim.at(quiesce_at - 0.2, lambda: sim.partition(side_a, side_b))
    sim.at(quiesce_at, lambda: vote(swarm, voters, lambda m: m.quiesce("drill")))
    sim.at(heal_at, sim.heal)
    # Client ops the side without a quorum admits meanwhile: they wait through the quiesce
    # (never final in a council-only cut) and become final after the resume.
    sim.at(quiesce_at + 0.3, functools.partial(_stranded_transfers, swarm, side_b))
    watch = QuiesceWatch(swarm)
    sim.event_hooks.append(watch.on_event)
    failures: list[str] = []

    def check_quiesced() -> None:
        for index in honest_live(swarm):
            core = core_of(swarm, index)
            if core is not None and not core.ledger.final_state.quiesced:
                failures.append(f"node {index}: the quorum's quiesce not final by {checked_at}")
        claim = functools.partial(_probe_claim, swarm, "refused")
        failures.extend(refused_everywhere(swarm, claim, RejectCode.QUIESCED))

    after: list[Op] = []

    def client_ops() -> None:
        for i in range(AFTER_RESUME_OPS):
            grant, op = funded_probe_claim(swarm, f"after-{i}", f"after-{seed % 1000}-{i}")
            after.append(op)
            node = rng.randrange(params.nodes)
            submit_until_admitted(swarm, grant, node, sim.now + RETRY_FOR_S)
            submit_until_admitted(swarm, op, node, sim.now + RETRY_FOR_S)

    sim.at(checked_at, check_quiesced)
    sim.at(resume_at, lambda: vote(swarm, resumers, lambda m: m.resume("done")))
    sim.at(resume_at + 0.5, client_ops)
    # Past the resume's finality and the clients' retries: convergence is probed from here.
    swarm.healed_at = resume_at + 4.0

    def check(swarm: Swarm) -> list[str]:
        found = list(failures) + watch.broken
        # The resume itself is decided while quiesced: every node saw such a checkpoint.
        for index in honest_live(swarm):
            if not watch.quiesced_heights.get(index):
                found.append(f"node {index}: no checkpoint decided while quiesced")
        for index in honest_live(swarm):
            core = core_of(swarm, index)
            if core is not None and core.ledger.final_state.quiesced:
                found.append(f"node {index}: still quiesced after a quorum resumed")
        found.extend(final_everywhere(swarm, after, "client ops made after the resume"))
        return found

    swarm.extra_checks.append(check)
    sim.run_until(swarm.healed_at)
    return finish(swarm)


def _stranded_transfers(swarm: Swarm, side: list[int]) -> None:
    workload, rng = swarm.workload, swarm.sim.rng
    for node in side:
        if len(workload.wallets) >= 2:
            payer, payee = rng.sample(workload.wallets, 2)
            workload.transfer(payer, payee, node)


def _probe_claim(swarm: Swarm, label: str, index: int) -> Op:
    return probe_author(swarm, f"{label}-{index}").claim(f"{label}-{index}")


# --- claims-paused -----------------------------------------------------------------------------


class RevocationWatch:
    """The nodes that told the squatter its claim was revoked (a HandleConflictRejected
    naming the claim as a loser and the squatter as its holder)."""

    def __init__(self) -> None:
        self.claim = b""
        self.holder = b""
        self.told: set[int] = set()

    def on_event(self, node: int, event: object) -> None:
        if (
            isinstance(event, HandleConflictRejected)
            and self.claim in event.losing_claims
            and self.holder in event.holders
        ):
            self.told.add(node)


def scenario_claims_paused(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    """The plan's Stage 1 play under loss: a squatter's handle is bound; a quorum pauses
    claims and revokes it; new claims are refused everywhere while other ops go on; a quorum
    resumes claims and new claims are final and bound again."""
    swarm = build_swarm("claims-paused", seed, params, factory)
    sim, rng = swarm.sim, swarm.sim.rng
    fund_end = params.workload_s / 4
    fund_accounts(swarm, params.accounts, fund_end)
    members = list(range(params.council))
    quorum = swarm.genesis.quorum
    watch = RevocationWatch()
    sim.event_hooks.append(watch.on_event)
    squats: list[Op] = []  # the squatter's claim, signed when submitted (after its grant)

    def squat_now() -> None:
        grant, squat = funded_probe_claim(swarm, "squatter", f"squat-{seed % 1000}")
        squats.append(squat)
        watch.claim, watch.holder = squat.op_id, squat.author
        node = rng.randrange(params.nodes)
        swarm.workload.submit(grant, node)
        swarm.workload.submit(squat, node)

    sim.at(0.3, squat_now)
    endorsers = sorted(rng.sample(members, quorum))
    sim.at(0.8, lambda: vote(swarm, endorsers, lambda m: m.endorse(squats[0])))
    pause_at = fund_end + 1.0
    # The bank workload runs through the pause: only claims are refused.
    random_transfers(swarm, params.ops, fund_end, pause_at + 4.0)
    pausers, revokers, resumers = (sorted(rng.sample(members, quorum)) for _ in range(3))
    sim.at(pause_at, lambda: vote(swarm, pausers, lambda m: m.pause_claims("stage 1")))
    sim.at(pause_at + 0.5, lambda: vote(swarm, revokers, lambda m: m.revoke(squats[0])))
    checked_at = pause_at + 4.0
    failures: list[str] = []

    def check_paused() -> None:
        for index in honest_live(swarm):
            core = core_of(swarm, index)
            if core is not None and not core.ledger.final_state.claims_paused(quorum):
                failures.append(f"node {index}: the quorum's pause not final by {checked_at}")
        claim = functools.partial(_probe_claim, swarm, "paused")
        failures.extend(refused_everywhere(swarm, claim, RejectCode.CLAIMS_PAUSED))

    sim.at(checked_at, check_paused)
    resume_at = checked_at + 0.5
    sim.at(resume_at, lambda: vote(swarm, resumers, lambda m: m.resume_claims("done")))
    after: list[Op] = []

    def claim_again() -> None:
        for i in range(AFTER_RESUME_OPS):
            grant, op = funded_probe_claim(swarm, f"after-{i}", f"after-{seed % 1000}-{i}")
            after.append(op)
            node = rng.randrange(params.nodes)
            submit_until_admitted(swarm, grant, node, sim.now + RETRY_FOR_S)
            submit_until_admitted(swarm, op, node, sim.now + RETRY_FOR_S)
            endorse = functools.partial(vote, swarm, endorsers, functools.partial(_endorse, op))
            sim.at(sim.now + 1.5, endorse)

    sim.at(resume_at + 0.5, claim_again)
    swarm.healed_at = resume_at + 4.0

    def check(swarm: Swarm) -> list[str]:
        found = list(failures)
        found.extend(_check_claims_after(swarm, squats[0], after, watch))
        return found

    swarm.extra_checks.append(check)
    sim.run_until(swarm.healed_at)
    return finish(swarm)


def _endorse(claim: Op, member: Author) -> Op:
    return member.endorse(claim)


def _check_claims_after(
    swarm: Swarm, squat: Op, after: list[Op], watch: RevocationWatch
) -> list[str]:
    """The squatted handle unbound and its holder told on every node; the claims made after
    the resume final and bound everywhere; claims no longer paused."""
    failures = final_everywhere(swarm, after, "claims made after the resume")
    quorum = swarm.genesis.quorum
    for index in honest_live(swarm):
        core = core_of(swarm, index)
        if core is None:
            continue
        final = core.ledger.final_state
        if final.claims_paused(quorum):
            failures.append(f"node {index}: claims still paused after a quorum resumed them")
        if squat.fields["handle"] in final.bindings:
            failures.append(f"node {index}: the revoked handle is still bound")
        if index not in watch.told:
            failures.append(f"node {index}: the revoked claim's holder was never told")
        for op in after:
            binding = final.bindings.get(op.fields["handle"])
            if binding is None or binding.claim_id != op.op_id:
                failures.append(f"node {index}: a claim made after the resume is not bound")
                break
    return failures
