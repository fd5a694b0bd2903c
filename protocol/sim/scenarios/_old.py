"""Simulator scenarios, the client workload driver and the checkers (pure and deterministic).

Every scenario is a function ``(seed, params) -> RunResult``: it builds a small swarm (4 council
nodes and 1 full node by default), drives a client workload and faults on virtual time, waits
for the swarm to converge after the last fault heals, and runs every checker. A failing run
names the one command that replays it exactly (`replay_command`).

Checkers (docs/parts/simulator.md explains each):

- agreement: every live honest node holds the same applied op set and state root within
  `ScenarioParams.converge_within_s` of the last heal (otherwise "failed reconciliation");
- ledger invariants on every node (supply, no negative balance, seqs 1..n per author);
- Jepsen-bank conservation: granted == signup reward x applied grants, balances sum to
  granted - burned, burn tallies sum to burned;
- no acknowledged op lost: every op that was durable on the node that acknowledged it is
  applied on every node, or excluded/rejected there with a reason (fork losers);
- recovery fragments: the cores' status counters show no fragment dropped without recovery;
- the simulator's own contract checks (no stuck timer, no send to an unknown peer).

MTTD is fault injection -> first detection (a lost peer, a misbehaviour report, a sync that
found missing ops, an exclusion); MTTR is heal -> convergence; both in virtual seconds.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from . import consensus, crypto, limits
from .checkpoint import Cut
from .crypto import KeyPair
from .errors import RemoteProtocolError
from .framing import FrameDecoder, FrameEncoder, Priority
from .genesis import Genesis
from .ledger import HandleBound, HandleConflictRaised, HandleUnbound, OpAccepted, Outcome
from .messages import ConsensusEnvelope, encode_message
from .node_core import (
    CheckpointFinalized,
    EquivocationRecorded,
    NodeCore,
    NodeCoreConfig,
    SnapshotRestoreError,
    StateSyncFinished,
)
from .ops import Kind, Op
from .simulator import (
    CoreFactory,
    DurableStore,
    FaultKind,
    NetworkConfig,
    SimCore,
    Simulation,
    SimulationError,
)
from .wallet import Author

#: Convergence is probed this often after the last heal; it is the resolution of MTTR.
PROBE_INTERVAL_S = 0.1
#: Credits listed as deps of one op by the workload (OP_DEPS_MAX allows 64; fewer keeps
#: envelopes small and still exercises multi-credit receipts).
WORKLOAD_RECEIVE_MAX = 16
#: Signup reward of the simulated network.
SIM_SIGNUP_REWARD = 100


@dataclass(frozen=True)
class ScenarioParams:
    council: int = 4
    full_nodes: int = 1
    accounts: int = 8
    ops: int = 30
    #: The workload submits its ops spread over this many virtual seconds.
    workload_s: float = 4.0
    #: After the last heal, the swarm must agree within this bound.
    converge_within_s: float = 30.0
    network: NetworkConfig = field(default_factory=NetworkConfig)

    @property
    def nodes(self) -> int:
        return self.council + self.full_nodes


@dataclass
class RunResult:
    scenario: str
    seed: int
    trace_hash: str = ""
    failures: list[str] = field(default_factory=list)
    mttd_s: list[float] = field(default_factory=list)
    mttr_s: float | None = None
    sync_sessions: int = 0
    syncs_within_cadence: int = 0
    ops_submitted: int = 0
    ops_acked: int = 0
    frames_delivered: int = 0
    #: Fragmented messages given up (expired, rejected, corrupt) on live honest nodes; each
    #: must be recovered by sync, which convergence proves.
    fragments_dropped: int = 0
    virtual_s: float = 0.0
    #: CheckpointFinalized.latency_s of every finalization on an honest node (virtual s).
    finality_latency_s: list[float] = field(default_factory=list)
    #: The highest height final on every honest node at the end.
    final_height: int = 0
    #: Last heal -> every honest node final on everything it applied (virtual s).
    finality_recovered_s: float | None = None
    #: Equivocation evidence recorded by honest nodes (each verified by the checker).
    evidence_recorded: int = 0
    #: handle-race: the longest a contested handle stayed without a final owner everywhere.
    open_conflict_age_s: float | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "ok": self.ok,
            "failures": list(self.failures),
            "trace_hash": self.trace_hash,
            "mttd_s": [round(value, 6) for value in self.mttd_s],
            "mttr_s": None if self.mttr_s is None else round(self.mttr_s, 6),
            "sync_sessions": self.sync_sessions,
            "syncs_within_cadence": self.syncs_within_cadence,
            "ops_submitted": self.ops_submitted,
            "ops_acked": self.ops_acked,
            "frames_delivered": self.frames_delivered,
            "fragments_dropped": self.fragments_dropped,
            "virtual_s": round(self.virtual_s, 6),
            "final_height": self.final_height,
            "finality_latency_s": percentiles(self.finality_latency_s),
            "finality_recovered_s": _rounded(self.finality_recovered_s),
            "evidence_recorded": self.evidence_recorded,
            "open_conflict_age_s": _rounded(self.open_conflict_age_s),
            "replay": replay_command(self.scenario, self.seed),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def replay_command(scenario: str, seed: int) -> str:
    return f"swarmd chaos --scenario {scenario} --seed {seed} --json"


def format_failure(result: RunResult) -> str:
    """One paragraph for a failing run: what broke and the command that replays it."""
    reasons = "; ".join(result.failures) or "no failure"
    return (
        f"scenario {result.scenario} seed {result.seed} failed: {reasons}\n"
        f"  replay: {replay_command(result.scenario, result.seed)}"
    )


# --- building a swarm ------------------------------------------------------------------------


def node_keypair(index: int) -> KeyPair:
    """Node keys are fixed per index so a seed changes the run, not the identities."""
    return KeyPair.from_seed(crypto.sha256(f"swarmd-sim-node-{index}".encode()))


def sim_genesis(council: list[KeyPair]) -> Genesis:
    return Genesis.create(
        "swarmd-sim", [k.public_key for k in council], signup_reward=SIM_SIGNUP_REWARD
    )


FactoryBuilder = Callable[[Genesis], CoreFactory]


#: Simulated nodes snapshot every few heights (the daemon's default is 64), so that crashes and
#: restarts in every scenario restore from a snapshot plus the ops above it, as a daemon does.
SIM_SNAPSHOT_INTERVAL = 4
SIM_CORE_CONFIG = NodeCoreConfig(snapshot_interval=SIM_SNAPSHOT_INTERVAL)


def node_core_factory(genesis: Genesis, config: NodeCoreConfig | None = None) -> CoreFactory:
    """The real core: `swarmd.protocol.node_core.NodeCore` (SIM_CORE_CONFIG unless given).

    A restart restores from the store's newest snapshot and the ops above it; a snapshot the
    core refuses (SnapshotRestoreError) falls back to the whole log, as the daemon does."""
    core_config = SIM_CORE_CONFIG if config is None else config

    def build(
        index: int, keypair: KeyPair, rng: random.Random, now: float, store: DurableStore | None
    ) -> SimCore:
        if store is None:
            return NodeCore(genesis=genesis, keypair=keypair, config=core_config, rng=rng, now=now)

        def restore(snapshot: bytes | None) -> NodeCore:
            return NodeCore.restore(
                genesis=genesis,
                keypair=keypair,
                config=core_config,
                rng=rng,
                now=now,
                envelopes=store.envelopes,
                bundles=store.bundles,
                snapshot=snapshot,
            )

        if store.snapshot is not None:
            try:
                return restore(store.snapshot)
            except SnapshotRestoreError:
                pass
        return restore(None)

    return build


# --- the client workload ---------------------------------------------------------------------


@dataclass
class Wallet:
    author: Author
    unreceived: list[tuple[bytes, int]] = field(default_factory=list)
    spendable: int = 0


@dataclass
class Submission:
    op: Op
    node: int
    time: float
    outcome: Outcome | None


class Workload:
    """A client population: council members grant, accounts transfer and burn.

    Wallets track their own chain and credits optimistically (as a real wallet does), so every
    op is valid if the swarm applies everything the wallet signed. A client whose node is down
    fails over to the next live node.
    """

    def __init__(self, sim: Simulation, genesis: Genesis, council: list[KeyPair], seed: int):
        self.sim = sim
        self.genesis = genesis
        self.rng = random.Random(seed ^ 0x5EED)
        self.members = [Author(k, genesis.network_id) for k in council]
        self.wallets: list[Wallet] = []
        self.submissions: dict[bytes, Submission] = {}
        self.acked: dict[bytes, int] = {}  # op id -> node that acknowledged it
        self.expect_excluded: set[bytes] = set()
        sim.commit_hooks.append(self._on_commit)

    def _on_commit(self, node: int, op_id: bytes) -> None:
        submission = self.submissions.get(op_id)
        if submission is None or op_id in self.acked or submission.node != node:
            return
        outcome = submission.outcome
        if outcome is not None and outcome.status in ("accepted", "pending", "duplicate"):
            self.acked[op_id] = node

    def retry_unacked(self, node: int) -> None:
        """`node` crashed: every op submitted to it and not acknowledged is sent again to the
        next live node, as a client retries a request that got no answer. Without it an op
        lost with the crash (not durable, its push still in flight) would leave the later ops
        of its chain pending everywhere, although they were acknowledged elsewhere."""
        lost = [
            s.op
            for op_id, s in self.submissions.items()
            if s.node == node and op_id not in self.acked and s.outcome is not None
        ]
        for op in lost:
            self.submit(op, (node + 1) % len(self.sim.nodes))

    def new_account(self) -> Wallet:
        keypair = KeyPair.from_seed(self.rng.randbytes(32))
        wallet = Wallet(Author(keypair, self.genesis.network_id))
        self.wallets.append(wallet)
        return wallet

    def submit(self, op: Op, node: int | None = None) -> Submission:
        """Submit now to `node` (random if None), failing over to the next live node."""
        count = len(self.sim.nodes)
        start = self.rng.randrange(count) if node is None else node
        outcome: Outcome | None = None
        chosen = start
        for step in range(count):
            chosen = (start + step) % count
            outcome = self.sim.submit(chosen, op.envelope)
            if outcome is not None:
                break
        submission = Submission(op, chosen, self.sim.now, outcome)
        self.submissions[op.op_id] = submission
        if outcome is not None and op.op_id in self.sim.nodes[chosen].durable.op_ids:
            self._on_commit(chosen, op.op_id)
        return submission

    def grant(self, wallet: Wallet, node: int | None = None) -> Op:
        member = self.members[self.rng.randrange(len(self.members))]
        op = member.grant(wallet.author.key, self.genesis.signup_reward)
        wallet.unreceived.append((op.op_id, op.amount))
        self.submit(op, node)
        return op

    def _take_credits(self, wallet: Wallet) -> list[bytes]:
        taken = wallet.unreceived[:WORKLOAD_RECEIVE_MAX]
        wallet.unreceived = wallet.unreceived[WORKLOAD_RECEIVE_MAX:]
        wallet.spendable += sum(amount for _, amount in taken)
        return [credit for credit, _ in taken]

    def transfer(self, payer: Wallet, payee: Wallet, node: int | None = None) -> Op | None:
        receive = self._take_credits(payer)
        if payer.spendable == 0:
            return None  # nothing to spend (and therefore nothing was received)
        amount = self.rng.randint(1, payer.spendable)
        op = payer.author.transfer(payee.author.key, amount, receive=receive)
        payer.spendable -= amount
        payee.unreceived.append((op.op_id, amount))
        self.submit(op, node)
        return op

    def burn(self, wallet: Wallet, target: str, node: int | None = None) -> Op | None:
        receive = self._take_credits(wallet)
        if wallet.spendable == 0:
            return None
        amount = self.rng.randint(1, max(1, wallet.spendable // 2))
        op = wallet.author.burn(amount, target, receive=receive)
        wallet.spendable -= amount
        self.submit(op, node)
        return op

    def fork(self, wallet: Wallet, payees: tuple[Wallet, Wallet], nodes: tuple[int, int]) -> None:
        """Double-spend: two transfers at the same seq, each sent to a different node."""
        receive = self._take_credits(wallet)
        if wallet.spendable == 0:
            return
        author = wallet.author
        twin = Author(author.keypair, author.network_id, seq=author.seq, head=author.head)
        amount = wallet.spendable
        first = author.transfer(payees[0].author.key, amount, receive=receive)
        second = twin.transfer(payees[1].author.key, amount, receive=receive)
        wallet.spendable = 0
        # The cheat is retired and the payees do not count on either credit: whichever side
        # loses takes its descendants with it, and the workload must not build on either.
        self.wallets.remove(wallet)
        self.expect_excluded.update((first.op_id, second.op_id))
        self.submit(first, nodes[0])
        self.submit(second, nodes[1])


# --- the finality log ------------------------------------------------------------------------


@dataclass(frozen=True)
class Finalization:
    """One CheckpointFinalized on one node, with what the node's ledger showed at that moment."""

    time: float
    node: int
    height: int
    checkpoint_id: bytes
    state_root: bytes
    latency_s: float
    #: The ledger's final state root right after (None when the node finalized several heights
    #: in one input and had moved past this one before its events were drained).
    final_root: bytes | None
    #: Supply invariant of the final state (total balances == granted - burned), same caveat.
    supply_ok: bool | None


@dataclass
class FinalityLog:
    """What every node finalized, when, and the handle and evidence events of honest nodes.

    Filled by an event hook of the simulation (`watch_finality`); read by the checkers."""

    finalizations: list[Finalization] = field(default_factory=list)
    #: Per node: handle -> claim id currently bound (provisional state, from events).
    bound: dict[int, dict[str, bytes]] = field(default_factory=dict)
    #: Per node: handle -> the claim id bound in the node's *final* state (never changes).
    final_bound: dict[int, dict[str, bytes]] = field(default_factory=dict)
    #: Per handle: the first time every honest node had it bound in its final state.
    final_bound_at: dict[int, dict[str, float]] = field(default_factory=dict)
    #: Per node: (handle, losing claim, winning claim) of every HandleConflictRaised.
    conflicts: dict[int, set[tuple[str, bytes, bytes]]] = field(default_factory=dict)
    #: Per node: the encoded evidence of every EquivocationRecorded.
    evidence: dict[int, list[bytes]] = field(default_factory=dict)
    #: Uniqueness violations seen as they happened.
    violations: list[str] = field(default_factory=list)

    def first_finalized_at(self) -> dict[int, float]:
        """Height -> the first time any node finalized it."""
        first: dict[int, float] = {}
        for record in self.finalizations:
            first.setdefault(record.height, record.time)
        return first

    def max_height_by(self, time: float) -> int:
        return max((r.height for r in self.finalizations if r.time <= time), default=0)


def watch_finality(swarm: Swarm) -> None:
    """Record finality, handle and evidence events of every node (hook on the simulation)."""
    sim, log = swarm.sim, swarm.finality

    def hook(node: int, event: object) -> None:
        if isinstance(event, CheckpointFinalized):
            _on_finalized(swarm, node, event)
        elif isinstance(event, HandleBound):
            bound = log.bound.setdefault(node, {})
            held = bound.get(event.handle)
            if held is not None and held != event.claim_id:
                log.violations.append(
                    f"node {node}: handle {event.handle!r} bound to a second claim while bound"
                )
            bound[event.handle] = event.claim_id
        elif isinstance(event, HandleUnbound):
            log.bound.setdefault(node, {}).pop(event.handle, None)
        elif isinstance(event, HandleConflictRaised):
            log.conflicts.setdefault(node, set()).add(
                (event.handle, event.losing_claim, event.winning_claim)
            )
        elif isinstance(event, EquivocationRecorded):
            log.evidence.setdefault(node, []).append(event.evidence)

    sim.event_hooks.append(hook)


def _on_finalized(swarm: Swarm, node: int, event: CheckpointFinalized) -> None:
    log = swarm.finality
    core = swarm.sim.nodes[node].core
    final_root: bytes | None = None
    supply_ok: bool | None = None
    if core is not None and core.ledger.final_height == event.height:
        final = core.ledger.final_state
        final_root = final.root()
        supply_ok = final.total_balances() == final.granted - final.burned
        final_bound = log.final_bound.setdefault(node, {})
        for handle, binding in sorted(final.bindings.items()):
            held = final_bound.get(handle)
            if held is not None and held != binding.claim_id:
                log.violations.append(f"node {node}: final owner of {handle!r} changed")
            if held is None:
                final_bound[handle] = binding.claim_id
                log.final_bound_at.setdefault(node, {})[handle] = swarm.sim.now
    log.finalizations.append(
        Finalization(
            swarm.sim.now,
            node,
            event.height,
            event.checkpoint_id,
            event.state_root,
            event.latency_s,
            final_root,
            supply_ok,
        )
    )


# --- running and checking --------------------------------------------------------------------


@dataclass
class Swarm:
    """One scenario run in the making: the simulation, its workload and the fault calendar."""

    name: str
    seed: int
    params: ScenarioParams
    sim: Simulation
    genesis: Genesis
    workload: Workload
    #: The last heal (or the end of the workload when nothing is broken): MTTR starts here.
    healed_at: float = 0.0
    #: Extra per-scenario checks run after the common ones.
    extra_checks: list[Callable[[Swarm], list[str]]] = field(default_factory=list)
    #: Nodes that take no part in agreement (a byzantine council member).
    dishonest: set[int] = field(default_factory=set)
    finality: FinalityLog = field(default_factory=FinalityLog)
    #: Council keys that a scenario makes equivocate (evidence against others is a failure).
    byzantine_keys: set[bytes] = field(default_factory=set)


def build_swarm(
    name: str,
    seed: int,
    params: ScenarioParams,
    factory_builder: FactoryBuilder | None = None,
    outsiders: tuple[bytes, ...] = (),
) -> Swarm:
    keypairs = [node_keypair(i) for i in range(params.nodes)]
    genesis = sim_genesis(keypairs[: params.council])
    factory = (factory_builder or node_core_factory)(genesis)
    sim = Simulation(
        seed=seed,
        keypairs=keypairs,
        factory=factory,
        network=params.network,
        outsiders=outsiders,
    )
    workload = Workload(sim, genesis, keypairs[: params.council], seed)
    swarm = Swarm(name, seed, params, sim, genesis, workload)
    watch_finality(swarm)
    return swarm


def crash_with_retry(swarm: Swarm, victim: int) -> None:
    """Crash `victim`; its clients retry their unacknowledged submissions elsewhere."""
    swarm.sim.crash(victim)
    swarm.workload.retry_unacked(victim)


def honest_live(swarm: Swarm) -> list[int]:
    return [n.index for n in swarm.sim.nodes if n.alive and n.index not in swarm.dishonest]


def honest_cores(swarm: Swarm) -> list[tuple[int, NodeCore]]:
    """(index, core) of every live honest node."""
    cores = []
    for index in honest_live(swarm):
        core = swarm.sim.nodes[index].core
        assert isinstance(core, NodeCore)
        cores.append((index, core))
    return cores


def snapshot_base_height(core: SimCore) -> int:
    """0 for a node holding the whole history; else the height of the snapshot its ledger
    was restored from (state sync): ops final up to there may be unknown to it."""
    return int(getattr(core, "snapshot_base_height", 0))


def covered_by_state(swarm: Swarm, core: SimCore, op_id: bytes) -> bool:
    """Whether a node restored from a snapshot holds `op_id` only through its final state
    (the op is at or below its author's final seq)."""
    submission = swarm.workload.submissions.get(op_id)
    return (
        snapshot_base_height(core) > 0
        and submission is not None
        and isinstance(core, NodeCore)
        and core.below_final_line(submission.op.envelope)
    )


def converged(swarm: Swarm) -> bool:
    nodes = [swarm.sim.nodes[i].core for i in honest_live(swarm)]
    cores = [core for core in nodes if core is not None]
    if not cores:
        return False
    root = cores[0].ledger.state_root()
    full = [core for core in cores if not snapshot_base_height(core)]
    count = len(full[0].ledger.applied_ids()) if full else 0
    for core in cores:
        if core.ledger.state_root() != root:
            return False
        if not snapshot_base_height(core) and len(core.ledger.applied_ids()) != count:
            return False
    for op_id in swarm.workload.acked:
        for core in cores:
            status = core.ledger.status_of(op_id)[0]
            if status in ("unknown", "pending") and not covered_by_state(swarm, core, op_id):
                return False
    return True


def finish(swarm: Swarm) -> RunResult:
    """Run from the last heal until convergence (or the bound), then check everything."""
    sim = swarm.sim
    result = RunResult(swarm.name, swarm.seed)
    deadline = swarm.healed_at + swarm.params.converge_within_s
    converged_at: list[float] = []

    def probe() -> None:
        if converged(swarm):
            converged_at.append(sim.now)
        elif sim.now + PROBE_INTERVAL_S <= deadline:
            sim.at(sim.now + PROBE_INTERVAL_S, probe)

    final_at: list[float] = []

    def probe_finality() -> None:
        if converged_at and finality_settled(swarm):
            final_at.append(sim.now)
        elif sim.now + PROBE_INTERVAL_S <= deadline:
            sim.at(sim.now + PROBE_INTERVAL_S, probe_finality)

    sim.at(swarm.healed_at, probe)
    sim.at(swarm.healed_at, probe_finality)
    try:
        sim.run_until(deadline, stop=lambda: bool(converged_at) and bool(final_at))
    except SimulationError as exc:
        result.failures.append(f"simulator: {exc.message}")
    if converged_at and sim.faults:
        result.mttr_s = converged_at[0] - swarm.healed_at
    if final_at:
        result.finality_recovered_s = final_at[0] - swarm.healed_at
    elif converged_at:
        result.failures.append(
            f"liveness: honest nodes not all final on the same state "
            f"{swarm.params.converge_within_s}s after the last heal ({describe_finality(swarm)})"
        )
    result.fragments_dropped = fragments_dropped(swarm)
    if not converged_at:
        result.failures.append(
            f"failed reconciliation: honest nodes disagree {swarm.params.converge_within_s}s "
            f"after the last heal at {swarm.healed_at:.3f}s ({describe_divergence(swarm)})"
        )
        if result.fragments_dropped:
            result.failures.append(
                f"{result.fragments_dropped} fragmented messages dropped without recovery"
            )
    result.failures.extend(check_swarm(swarm))
    result.failures.extend(check_finality(swarm))
    for check in swarm.extra_checks:
        result.failures.extend(check(swarm))
    result.failures.extend(f"simulator: {error}" for error in sim.errors[:5])
    result.mttd_s = mttd(sim)
    result.trace_hash = sim.trace_hash()
    result.sync_sessions = sim.sync.sessions
    result.syncs_within_cadence = sim.sync.within_cadence
    result.ops_submitted = len(swarm.workload.submissions)
    result.ops_acked = len(swarm.workload.acked)
    result.frames_delivered = sim.frames_delivered
    result.virtual_s = sim.now
    honest = set(range(len(sim.nodes))) - swarm.dishonest
    log = swarm.finality
    result.finality_latency_s = [r.latency_s for r in log.finalizations if r.node in honest]
    result.final_height = min(
        (sim.nodes[i].core.ledger.final_height for i in honest_live(swarm)),  # type: ignore[union-attr]
        default=0,
    )
    result.evidence_recorded = sum(len(log.evidence.get(i, [])) for i in sorted(honest))
    return result


#: Which detections reveal which fault. A sync that finds missing ops is routine gossip lag in
#: a healthy swarm, so it only counts as detecting a wiped store.
DETECTED_BY: dict[FaultKind, frozenset[str]] = {
    FaultKind.PARTITION: frozenset({"peer_lost"}),
    FaultKind.CRASH: frozenset({"peer_lost"}),
    FaultKind.WIPE: frozenset({"peer_lost", "sync_found_missing", "CatchUpStarted"}),
    FaultKind.FLOOD: frozenset({"PeerMisbehaved"}),
    FaultKind.FORK: frozenset({"OpExcluded", "StateRederived"}),
    FaultKind.EQUIVOCATION: frozenset({"EquivocationRecorded"}),
}


def mttd(sim: Simulation) -> list[float]:
    values = []
    for fault in sim.faults:
        kinds = DETECTED_BY[fault.kind]
        times = [d.time for d in sim.detections if d.time >= fault.injected_at and d.what in kinds]
        if times:
            values.append(min(times) - fault.injected_at)
    return values


#: FrameDecoder counters (summed in NodeCore.status()["fragments"]) of messages given up.
FRAGMENT_DROP_COUNTERS = ("reassemblies_expired", "reassemblies_rejected", "integrity_failures")


def fragments_dropped(swarm: Swarm) -> int:
    total = 0
    for _index, core in honest_cores(swarm):
        counters = core.status().get("fragments", {})
        if isinstance(counters, dict):
            total += sum(int(counters.get(name, 0)) for name in FRAGMENT_DROP_COUNTERS)
    return total


def describe_divergence(swarm: Swarm) -> str:
    parts = []
    for index, core in honest_cores(swarm):
        ledger = core.ledger
        parts.append(
            f"node {index}: root {ledger.state_root().hex()[:12]} "
            f"applied {len(ledger.applied_ids())} pending {len(ledger.pending)}"
        )
    return ", ".join(parts)


def finality_settled(swarm: Swarm) -> bool:
    """Every live honest node has everything it applied final, at one height and one root."""
    cores = [swarm.sim.nodes[i].core for i in honest_live(swarm)]
    if not cores:
        return False
    heights, roots = set(), set()
    for core in cores:
        assert core is not None
        if core.ledger.unfinalized_count():
            return False
        heights.add(core.ledger.final_height)
        roots.add(core.ledger.final_state.root())
    return len(heights) == 1 and len(roots) == 1


def describe_finality(swarm: Swarm) -> str:
    parts = []
    for index, core in honest_cores(swarm):
        ledger = core.ledger
        parts.append(
            f"node {index}: final height {ledger.final_height} "
            f"root {ledger.final_state.root().hex()[:12]} unfinalized {ledger.unfinalized_count()}"
        )
    return ", ".join(parts)


def check_finality(swarm: Swarm) -> list[str]:
    """Agreement per height, offline-verifiable bundles matching the final roots, supply at
    every final checkpoint, handle uniqueness and verifiable evidence (every scenario)."""
    log = swarm.finality
    honest = set(range(len(swarm.sim.nodes))) - swarm.dishonest
    failures: list[str] = list(dict.fromkeys(log.violations))[:3]
    decided: dict[int, set[tuple[bytes, bytes]]] = {}
    own_root: dict[tuple[int, int], bytes] = {}
    for record in log.finalizations:
        if record.node not in honest:
            continue
        decided.setdefault(record.height, set()).add((record.checkpoint_id, record.state_root))
        if record.final_root is not None:
            own_root[(record.node, record.height)] = record.final_root
            if record.final_root != record.state_root:
                failures.append(
                    f"node {record.node}: final root at height {record.height} is not the cut's"
                )
        if record.supply_ok is False:
            failures.append(
                f"node {record.node}: supply invariant broken at final height {record.height}"
            )
    for height, values in sorted(decided.items()):
        if len(values) > 1:
            failures.append(f"agreement: {len(values)} different checkpoints at height {height}")
    failures.extend(_check_bundles(swarm, decided, own_root))
    failures.extend(_check_evidence(swarm, honest))
    return failures[:10]


def _check_bundles(
    swarm: Swarm,
    decided: dict[int, set[tuple[bytes, bytes]]],
    own_root: dict[tuple[int, int], bytes],
) -> list[str]:
    """Every bundle a live honest node holds verifies with the genesis council alone, and its
    cut is the checkpoint (id and state root) the node finalized at that height."""
    failures: list[str] = []
    council = list(swarm.genesis.council)
    verified: set[bytes] = set()
    for index, core in honest_cores(swarm):
        # A node keeps the bundles of its last `bundles_kept` heights (fewer after a state
        # sync): they must run without a gap up to its final height.
        held = False
        for height in range(1, core.final_height + 1):
            data = core.bundle(height)
            if data is None and not held and height < core.final_height:
                continue
            if data is None:
                failures.append(f"node {index}: no bundle for final height {height}")
                break
            held = True
            try:
                digest = crypto.sha256(data)
                bundle = consensus.CheckpointBundle.decode(data)
                if digest not in verified:
                    consensus.verify_bundle(bundle, swarm.genesis.network_id, council)
                    verified.add(digest)
                cut = Cut.decode(bundle.value)
            except RemoteProtocolError as exc:
                failures.append(f"node {index}: bundle {height} does not verify: {exc.code}")
                break
            expected = own_root.get((index, height))
            if cut.height != height or (cut.checkpoint_id, cut.state_root) not in decided.get(
                height, {(cut.checkpoint_id, cut.state_root)}
            ):
                failures.append(f"node {index}: bundle {height} is not the finalized checkpoint")
                break
            if expected is not None and cut.state_root != expected:
                failures.append(f"node {index}: bundle {height} root != final root")
                break
    return failures


def _check_evidence(swarm: Swarm, honest: set[int]) -> list[str]:
    failures: list[str] = []
    council = list(swarm.genesis.council)
    for node in sorted(honest):
        for data in swarm.finality.evidence.get(node, []):
            try:
                evidence = consensus.Evidence.decode(data)
                consensus.verify_evidence(evidence, swarm.genesis.network_id, council)
            except RemoteProtocolError as exc:
                failures.append(f"node {node}: recorded evidence does not verify: {exc.code}")
                break
            if evidence.validator not in swarm.byzantine_keys:
                failures.append(
                    f"node {node}: evidence against honest member {evidence.validator.hex()[:12]}"
                )
                break
    return failures


def check_swarm(swarm: Swarm) -> list[str]:
    failures: list[str] = []
    live = honest_live(swarm)
    if len(live) < len(swarm.sim.nodes) - len(swarm.dishonest):
        failures.append("a node is still down at the end of the run")
    applied_sets = []
    for index in live:
        core = swarm.sim.nodes[index].core
        assert core is not None
        failures.extend(f"node {index}: {f}" for f in check_node(swarm, core))
        if not snapshot_base_height(core):  # a restored node applied only what came after
            applied_sets.append(frozenset(core.ledger.applied_ids()))
    if len(set(applied_sets)) > 1:
        failures.append("honest nodes applied different op sets")
    return failures


def check_node(swarm: Swarm, core: SimCore) -> list[str]:
    ledger = core.ledger
    failures: list[str] = []
    try:
        ledger.check_invariants()
    except AssertionError as exc:
        failures.append(f"ledger invariant broken: {exc}")
    state = ledger.state
    grants = 0
    seqs: dict[bytes, list[int]] = {}
    for op_id in ledger.applied_ids():
        op = ledger.op(op_id)
        if op is None:
            failures.append(f"applied op {op_id.hex()[:12]} unknown")
            continue
        grants += op.kind is Kind.GRANT
        seqs.setdefault(op.author, []).append(op.seq)
    restored = snapshot_base_height(core) > 0  # its history starts at a snapshot
    if not restored and state.granted != grants * swarm.genesis.signup_reward:
        failures.append(f"granted {state.granted} != {grants} grants x reward")
    if state.total_balances() != state.granted - state.burned:
        failures.append("balances do not sum to granted - burned")
    if sum(state.burn_tallies.values()) != state.burned:
        failures.append("burn tallies do not sum to burned")
    for author, author_seqs in sorted(seqs.items()):
        if restored:
            break  # check_invariants checks its chains from the snapshot's seqs on
        if sorted(author_seqs) != list(range(1, len(author_seqs) + 1)):
            failures.append(f"author {author.hex()[:12]} seqs have a gap or duplicate")
    failures.extend(check_acked(swarm, core))
    failures.extend(check_fragments(core))
    return failures


def check_acked(swarm: Swarm, core: SimCore) -> list[str]:
    failures = []
    workload = swarm.workload
    for op_id in sorted(workload.acked):
        status, code = core.ledger.status_of(op_id)
        if status == "applied":
            continue
        if status in ("excluded", "rejected") and code and op_id in workload.expect_excluded:
            continue
        if covered_by_state(swarm, core, op_id):
            # Final before the snapshot it restored from: its state holds the op, and the
            # op itself, should it arrive, looks like a fork of a final chain (rejected).
            continue
        failures.append(f"acknowledged op {op_id.hex()[:12]} lost: {status} {code}".strip())
        if len(failures) >= 3:
            break
    return failures


#: Counters in a core's status() (flat or one level deep) that count fragments lost for good.
FRAGMENT_LOSS_COUNTERS = ("fragments_dropped_unrecovered", "fragments_lost", "chunks_unrecovered")


def check_fragments(core: SimCore) -> list[str]:
    status = core.status()
    found: dict[str, int] = {}
    for key, value in status.items():
        if isinstance(value, dict):
            for inner_key, inner_value in value.items():
                if inner_key in FRAGMENT_LOSS_COUNTERS and isinstance(inner_value, int):
                    found[f"{key}.{inner_key}"] = inner_value
        elif key in FRAGMENT_LOSS_COUNTERS and isinstance(value, int):
            found[key] = value
    return [f"{name} = {count}" for name, count in sorted(found.items()) if count]


# --- scenarios -------------------------------------------------------------------------------


def _times(rng: random.Random, count: int, start: float, end: float) -> list[float]:
    return sorted(rng.uniform(start, end) for _ in range(count))


def _signups(swarm: Swarm, count: int, start: float, end: float) -> None:
    workload = swarm.workload
    for when in _times(swarm.sim.rng, count, start, end):
        swarm.sim.at(when, lambda: workload.grant(workload.new_account()))


def _random_transfers(swarm: Swarm, count: int, start: float, end: float) -> None:
    workload, rng = swarm.workload, swarm.sim.rng

    def one() -> None:
        if len(workload.wallets) < 2:
            return
        payer, payee = rng.sample(workload.wallets, 2)
        workload.transfer(payer, payee)

    for when in _times(rng, count, start, end):
        swarm.sim.at(when, one)


def _fund_accounts(swarm: Swarm, accounts: int, end: float) -> None:
    """Grants to `accounts` new accounts during [0, end]."""
    _signups(swarm, accounts, 0.0, end)


def _bank_workload(swarm: Swarm, params: ScenarioParams) -> float:
    """The common background load: fund the accounts in the first quarter of the workload,
    then random transfers until its end. Returns when funding ends."""
    fund_end = params.workload_s / 4
    _fund_accounts(swarm, params.accounts, fund_end)
    _random_transfers(swarm, params.ops, fund_end, params.workload_s)
    return fund_end


def scenario_signup(seed: int, params: ScenarioParams, factory: FactoryBuilder | None) -> RunResult:
    swarm = build_swarm("signup", seed, params, factory)
    _signups(swarm, params.ops, 0.0, params.workload_s)
    swarm.healed_at = params.workload_s
    swarm.sim.run_until(params.workload_s)
    return finish(swarm)


def scenario_transfers(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    swarm = build_swarm("transfers", seed, params, factory)
    _bank_workload(swarm, params)
    swarm.healed_at = params.workload_s
    swarm.sim.run_until(params.workload_s)
    return finish(swarm)


HYPE_TARGETS = ("launch-party", "bugfix-bounty", "mascot")


def scenario_hype_burns(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    swarm = build_swarm("hype-burns", seed, params, factory)
    workload, rng = swarm.workload, swarm.sim.rng
    fund_end = params.workload_s / 4
    _fund_accounts(swarm, params.accounts, fund_end)

    def one() -> None:
        if workload.wallets:
            wallet = rng.choice(workload.wallets)
            workload.burn(wallet, rng.choice(HYPE_TARGETS))

    for when in _times(rng, params.ops, fund_end, params.workload_s):
        swarm.sim.at(when, one)
    swarm.healed_at = params.workload_s
    swarm.extra_checks.append(_check_tallies_agree)
    swarm.sim.run_until(params.workload_s)
    return finish(swarm)


def _check_tallies_agree(swarm: Swarm) -> list[str]:
    tallies = set()
    for _index, core in honest_cores(swarm):
        tallies.add(tuple(sorted(core.ledger.state.burn_tallies.items())))
    return ["hype tallies differ between nodes"] if len(tallies) > 1 else []


def scenario_ledger_replay(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    """A node loses its whole store and rebuilds the ledger from its peers by sync."""
    swarm = build_swarm("ledger-replay", seed, params, factory)
    sim = swarm.sim
    _bank_workload(swarm, params)
    victim = sim.rng.randrange(params.nodes)
    wipe_at = params.workload_s + 2.0
    restart_at = wipe_at + sim.rng.uniform(0.5, 4.0)
    sim.at(wipe_at, lambda: sim.crash(victim, wipe=True))
    sim.at(restart_at, lambda: sim.restart(victim))
    swarm.healed_at = restart_at
    sim.run_until(restart_at)
    return finish(swarm)


def scenario_partition_heal(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    swarm = build_swarm("partition-heal", seed, params, factory)
    sim = swarm.sim
    fund_end = _bank_workload(swarm, params)
    order = list(range(params.nodes))
    sim.rng.shuffle(order)
    cut = sim.rng.randint(1, params.nodes // 2)
    side_a, side_b = sorted(order[:cut]), sorted(order[cut:])
    split_at = sim.rng.uniform(fund_end, params.workload_s / 2)
    heal_at = params.workload_s + sim.rng.uniform(0.0, 2.0)
    sim.at(split_at, lambda: sim.partition(side_a, side_b))
    sim.at(heal_at, sim.heal)
    swarm.healed_at = heal_at
    sim.run_until(heal_at)
    return finish(swarm)


def scenario_crash_restart(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    swarm = build_swarm("crash-restart", seed, params, factory)
    sim = swarm.sim
    fund_end = _bank_workload(swarm, params)
    victims = sim.rng.sample(range(params.nodes), 2 if params.nodes >= 5 else 1)
    restart_last = 0.0
    for victim in victims:
        crash_at = sim.rng.uniform(fund_end, params.workload_s)
        restart_at = crash_at + sim.rng.uniform(0.2, 3.0)
        restart_last = max(restart_last, restart_at)
        sim.at(crash_at, functools.partial(crash_with_retry, swarm, victim))
        sim.at(restart_at, functools.partial(sim.restart, victim))
    swarm.healed_at = max(restart_last, params.workload_s)
    sim.run_until(swarm.healed_at)
    return finish(swarm)


#: Both flooders send one frame to every honest node this often, for this long.
FLOOD_INTERVAL_S = 0.005
FLOOD_DURATION_S = 2.0
#: Messages in one replay frame: the same valid message repeated (a batch of duplicates).
FLOOD_REPLAY_BATCH = 64
#: The honest nodes of the flood scenario take at most this many messages per peer per second
#: (and this burst). The product default (limits.PEER_MESSAGES_PER_S = 20k) is too high to
#: reach in a simulation that must run 100 seeds in seconds; the token bucket is the same
#: code, so a lower budget exercises it at a lower cost. Honest traffic of this scenario stays
#: far below it (a few dozen messages per peer per second).
FLOOD_PEER_MESSAGES_PER_S = 200.0
FLOOD_PEER_MESSAGES_BURST = 400.0


def _replay_frames(captured: list[bytes]) -> list[bytes]:
    """Batch frames that repeat one captured valid message FLOOD_REPLAY_BATCH times."""
    decoder = FrameDecoder()
    messages: list[bytes] = []
    for frame in captured:
        try:
            messages.extend(decoder.receive_frame(frame, 0.0))
        except RemoteProtocolError:
            continue
    frames = []
    for message in messages[-8:]:
        encoder = FrameEncoder()
        for _ in range(FLOOD_REPLAY_BATCH):
            encoder.queue_message(message, Priority.BULK)
        frames.extend(encoder.frames_to_send())
    return frames


def scenario_flood(seed: int, params: ScenarioParams, factory: FactoryBuilder | None) -> RunResult:
    """Two outside peers flood every node: one with junk frames (scored as malformed), one with
    batches of replayed valid messages (throttled by the per-peer token bucket, then scored).
    Honest nodes must drop both and still converge."""
    junk = KeyPair.from_seed(crypto.sha256(b"swarmd-sim-flooder-junk")).public_key
    replay = KeyPair.from_seed(crypto.sha256(b"swarmd-sim-flooder-replay")).public_key
    config = NodeCoreConfig(
        peer_messages_per_s=FLOOD_PEER_MESSAGES_PER_S,
        peer_messages_burst=FLOOD_PEER_MESSAGES_BURST,
    )
    builder = factory or functools.partial(node_core_factory, config=config)
    swarm = build_swarm("flood", seed, params, builder, outsiders=(junk, replay))
    sim = swarm.sim
    rng = random.Random(seed ^ 0xF100D)
    fund_end = _bank_workload(swarm, params)
    start = sim.rng.uniform(fund_end, params.workload_s / 2)
    replays: list[bytes] = []

    def begin() -> None:
        sim.record_fault(FaultKind.FLOOD, tuple(range(params.nodes)))
        for index in range(params.nodes):
            sim.connect_outsider(junk, index)
            sim.connect_outsider(replay, index)

    def tick() -> None:
        captured = [frame for sender, frame in sim.take_outsider_frames() if sender != junk]
        if captured:
            replays[:] = _replay_frames(captured) or replays
        for index in range(params.nodes):
            sim.inject_frame(junk, index, rng.randbytes(rng.randint(1, 300)))
            if replays:
                sim.inject_frame(replay, index, rng.choice(replays))

    sim.at(start, begin)
    for step in range(int(FLOOD_DURATION_S / FLOOD_INTERVAL_S)):
        sim.at(start + 0.001 + step * FLOOD_INTERVAL_S, tick)
    dropped: dict[bytes, set[int]] = {junk: set(), replay: set()}

    def watch(node: int, event: object) -> None:
        peer = getattr(event, "peer", None)
        if type(event).__name__ == "PeerMisbehaved" and peer in dropped:
            dropped[peer].add(node)

    sim.event_hooks.append(watch)

    def check_dropped(swarm: Swarm) -> list[str]:
        failures = []
        for name, peer in (("junk", junk), ("replay", replay)):
            silent = sorted(set(range(params.nodes)) - dropped[peer])
            if silent:
                failures.append(f"nodes {silent} never dropped the {name} flooder")
        return failures

    swarm.extra_checks.append(check_dropped)
    swarm.healed_at = max(params.workload_s, start + FLOOD_DURATION_S)
    sim.run_until(swarm.healed_at)
    return finish(swarm)


def scenario_fork(seed: int, params: ScenarioParams, factory: FactoryBuilder | None) -> RunResult:
    """An author double-spends: two transfers at the same seq sent to different nodes."""
    swarm = build_swarm("fork", seed, params, factory)
    sim, workload = swarm.sim, swarm.workload
    fund_end = _bank_workload(swarm, params)
    forks = 2
    for when in _times(sim.rng, forks, fund_end + 0.5, params.workload_s):

        def double_spend() -> None:
            if len(workload.wallets) < 3:
                return
            cheat, *payees = sim.rng.sample(workload.wallets, 3)
            nodes = sim.rng.sample(range(params.nodes), 2)
            sim.record_fault(FaultKind.FORK, tuple(nodes))
            workload.fork(cheat, (payees[0], payees[1]), (nodes[0], nodes[1]))

        sim.at(when, double_spend)
    swarm.extra_checks.append(_check_forks_resolved)
    swarm.healed_at = params.workload_s
    sim.run_until(params.workload_s)
    return finish(swarm)


def _check_forks_resolved(swarm: Swarm) -> list[str]:
    """Of each forked pair exactly one op is applied, the same one on every node."""
    failures = []
    pairs: dict[tuple[bytes, int], list[bytes]] = {}
    for op_id in sorted(swarm.workload.expect_excluded):
        op = swarm.workload.submissions[op_id].op
        pairs.setdefault((op.author, op.seq), []).append(op_id)
    for index, core in honest_cores(swarm):
        for pair in pairs.values():
            applied = [i for i in pair if core.ledger.status_of(i)[0] == "applied"]
            if len(applied) > 1:
                failures.append(f"node {index}: both sides of a fork applied")
    return failures


# --- council finality scenarios --------------------------------------------------------------

#: Decisions whose quorum of votes was delivered before a fault still complete locally a few
#: network delays later (delay + jitter <= 70 ms here); after this long, a checkpoint first
#: finalized anywhere is new finality made during the fault.
FAULT_SETTLE_S = 0.5


def _fault_tolerance(council: int) -> int:
    """The paper's f: floor((n - 1) / 3) members may fail."""
    return (council - 1) // 3


def _new_heights_between(swarm: Swarm, start: float, end: float) -> list[int]:
    """Heights first finalized anywhere during (start + FAULT_SETTLE_S, end]."""
    first = swarm.finality.first_finalized_at()
    return sorted(h for h, t in first.items() if start + FAULT_SETTLE_S < t <= end)


def scenario_council_crash(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    """f council members crash; the rest keep finalizing; the crashed restart and catch up."""
    swarm = build_swarm("council-crash", seed, params, factory)
    sim = swarm.sim
    fund_end = _bank_workload(swarm, params)
    victims = sim.rng.sample(range(params.council), _fault_tolerance(params.council))
    crash_at = sim.rng.uniform(fund_end, fund_end + 0.5)
    # Down long enough for a height whose round-0 proposer is down to be decided in a later
    # round: checkpoint interval (1 s) + propose timeout (1 s) + prevote/precommit rounds.
    restart_at = crash_at + sim.rng.uniform(4.0, 5.0)
    for victim in victims:
        sim.at(crash_at, functools.partial(crash_with_retry, swarm, victim))
        sim.at(restart_at, functools.partial(sim.restart, victim))

    def check_kept_finalizing(swarm: Swarm) -> list[str]:
        if _new_heights_between(swarm, crash_at, restart_at):
            return []
        return [f"liveness: nothing finalized while {len(victims)} member(s) were down"]

    swarm.extra_checks.append(check_kept_finalizing)
    swarm.healed_at = max(restart_at, params.workload_s)
    sim.run_until(swarm.healed_at)
    return finish(swarm)


def _council_split(swarm: Swarm, quorum_side: bool) -> tuple[list[int], list[int]]:
    """Split the council in two (one side with a quorum when `quorum_side`, else neither);
    each full node joins a random side."""
    params, rng = swarm.params, swarm.sim.rng
    members = list(range(params.council))
    rng.shuffle(members)
    quorum = consensus.quorum_size(params.council)
    cut = quorum if quorum_side else params.council // 2
    side_a, side_b = members[:cut], members[cut:]
    for full in range(params.council, params.nodes):
        (side_a if rng.random() < 0.5 else side_b).append(full)
    return sorted(side_a), sorted(side_b)


def scenario_council_partition(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    """A split where no side holds a quorum: nothing new may be finalized until the heal."""
    swarm = build_swarm("council-partition", seed, params, factory)
    sim = swarm.sim
    fund_end = _bank_workload(swarm, params)
    side_a, side_b = _council_split(swarm, quorum_side=False)
    split_at = sim.rng.uniform(fund_end, params.workload_s / 2)
    heal_at = params.workload_s + sim.rng.uniform(0.0, 1.0)
    sim.at(split_at, lambda: sim.partition(side_a, side_b))
    sim.at(heal_at, sim.heal)
    # Ops after the heal: finality must resume for them too.
    _random_transfers(swarm, 4, heal_at + 0.1, heal_at + 0.5)

    def check_no_minority_finality(swarm: Swarm) -> list[str]:
        new = _new_heights_between(swarm, split_at, heal_at)
        if new:
            return [f"safety: heights {new} finalized while no side had a quorum"]
        return []

    swarm.extra_checks.append(check_no_minority_finality)
    swarm.healed_at = heal_at + 0.5
    sim.run_until(swarm.healed_at)
    return finish(swarm)


#: How often the byzantine member's second channel sends a conflicting pair of votes.
EQUIVOCATION_INTERVAL_S = 0.25
EQUIVOCATION_DURATION_S = 2.0


def scenario_equivocating_member(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    """A byzantine member double-signs: besides its own votes, it signs two different prevotes
    and two different precommits for its current height and round and sends one of each to
    one half of the swarm and the other to the other half (through a second connection)."""
    channel = KeyPair.from_seed(crypto.sha256(b"swarmd-sim-equivocator-channel")).public_key
    swarm = build_swarm("equivocating-member", seed, params, factory, outsiders=(channel,))
    sim = swarm.sim
    fund_end = _bank_workload(swarm, params)
    byzantine = sim.rng.randrange(params.council)
    keypair = node_keypair(byzantine)
    swarm.dishonest.add(byzantine)
    swarm.byzantine_keys.add(keypair.public_key)
    others = [i for i in range(params.nodes) if i != byzantine]
    start = sim.rng.uniform(fund_end, params.workload_s / 2)
    rng = random.Random(seed ^ 0xB12)

    def begin() -> None:
        sim.record_fault(FaultKind.EQUIVOCATION, tuple(others))
        for index in others:
            sim.connect_outsider(channel, index)

    def double_sign() -> None:
        sim.take_outsider_frames()  # what honest nodes relay back to the channel
        core = sim.nodes[byzantine].core
        if not isinstance(core, NodeCore):
            return
        # The height in progress (or the next one): votes for a decided height are ignored.
        height = core.final_height + 1
        round_ = core.consensus.round if core.consensus.height == height else 0
        halves = rng.sample(others, len(others))
        half = len(halves) // 2
        for kind in (consensus.MessageKind.PREVOTE, consensus.MessageKind.PRECOMMIT):
            for targets in (halves[:half], halves[half:]):
                vote = consensus.sign_vote(
                    keypair, swarm.genesis.network_id, kind, height, round_, rng.randbytes(32)
                )
                frame = _consensus_frame(vote.encode())
                for index in targets:
                    sim.inject_frame(channel, index, frame)

    sim.at(start, begin)
    for step in range(int(EQUIVOCATION_DURATION_S / EQUIVOCATION_INTERVAL_S)):
        sim.at(start + 0.01 + step * EQUIVOCATION_INTERVAL_S, double_sign)

    def check_evidence_everywhere(swarm: Swarm) -> list[str]:
        silent = [i for i in others if not swarm.finality.evidence.get(i)]
        return [f"nodes {silent} recorded no equivocation evidence"] if silent else []

    swarm.extra_checks.append(check_evidence_everywhere)
    swarm.healed_at = max(params.workload_s, start + EQUIVOCATION_DURATION_S)
    sim.run_until(swarm.healed_at)
    return finish(swarm)


def _consensus_frame(payload: bytes) -> bytes:
    """One frame carrying one consensus message, as a peer's transport would send it."""
    encoder = FrameEncoder()
    encoder.queue_message(encode_message(ConsensusEnvelope(payload)), Priority.CONTROL)
    frames = encoder.frames_to_send()
    assert len(frames) == 1
    return frames[0]


def scenario_fork_finality(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    """An author double-spends into the two sides of a partition; after the heal exactly one
    side's op is final everywhere and the other is rejected with a *_final code everywhere."""
    swarm = build_swarm("fork-finality", seed, params, factory)
    sim, workload = swarm.sim, swarm.workload
    fund_end = _bank_workload(swarm, params)
    side_a, side_b = _council_split(swarm, quorum_side=sim.rng.random() < 0.5)
    split_at = fund_end + 0.5
    heal_at = params.workload_s + sim.rng.uniform(0.0, 1.0)
    sim.at(split_at, lambda: sim.partition(side_a, side_b))
    sim.at(heal_at, sim.heal)
    for when in _times(sim.rng, 2, split_at + 0.2, params.workload_s):

        def double_spend() -> None:
            if len(workload.wallets) < 3:
                return
            cheat, *payees = sim.rng.sample(workload.wallets, 3)
            nodes = (sim.rng.choice(side_a), sim.rng.choice(side_b))
            sim.record_fault(FaultKind.FORK, nodes)
            workload.fork(cheat, (payees[0], payees[1]), nodes)

        sim.at(when, double_spend)
    swarm.extra_checks.append(_check_forks_resolved)
    swarm.extra_checks.append(_check_forks_final)
    swarm.healed_at = heal_at
    sim.run_until(heal_at)
    return finish(swarm)


def _check_forks_final(swarm: Swarm) -> list[str]:
    """One side of each fork is final on every node, the other rejected for good everywhere."""
    pairs: dict[tuple[bytes, int], list[bytes]] = {}
    for op_id in sorted(swarm.workload.expect_excluded):
        op = swarm.workload.submissions[op_id].op
        pairs.setdefault((op.author, op.seq), []).append(op_id)
    winners: set[bytes] = set()
    failures = []
    for index, core in honest_cores(swarm):
        for pair in pairs.values():
            final = [i for i in pair if core.ledger.is_final(i)]
            losers = [core.ledger.status_of(i) for i in pair if i not in final]
            if len(final) != 1 or any(
                status not in ("rejected", "excluded") or not code.endswith("_final")
                for status, code in losers
            ):
                failures.append(f"node {index}: fork not settled by finality: {losers}")
            winners.update(final)
    if len(winners) > len(pairs):
        failures.append("different sides of a fork are final on different nodes")
    return failures[:3]


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
    side_a, side_b = _council_split(swarm, quorum_side=sim.rng.random() < 0.5)
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
        op = workload.new_account().author.claim(handle)
        claims[op.op_id] = op
        if sum(c.fields["handle"] == handle for c in claims.values()) == 2:
            contested_at[handle] = sim.now
        workload.submit(op)

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
    for claimant, when in enumerate(_times(sim.rng, RACE_CLAIMANTS, 0.5, params.workload_s)):
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


Scenario = Callable[[int, ScenarioParams, FactoryBuilder | None], RunResult]


def _noisy(network: NetworkConfig, **changes: Any) -> NetworkConfig:
    return replace(network, **changes)


# --- state sync ------------------------------------------------------------------------------

#: The state-sync scenario's core settings: bundles are trimmed after this many heights and a
#: snapshot is made every STATE_SYNC_SNAPSHOT_INTERVAL heights, so that a node away for a few
#: seconds of fast checkpoints falls out of bundle range and must fetch a snapshot.
STATE_SYNC_BUNDLES_KEPT = 2
STATE_SYNC_SNAPSHOT_INTERVAL = 2
STATE_SYNC_CHECKPOINT_INTERVAL_S = 0.25
#: The late joiner is cut off from everyone until the others are STATE_SYNC_LAG_HEIGHTS
#: ahead (checked every STATE_SYNC_POLL_S, at most STATE_SYNC_AWAY_S_MAX), with signups
#: meanwhile so that heights keep coming; then signups after it returns (new ops it must
#: finalize together with the others).
STATE_SYNC_LAG_HEIGHTS = STATE_SYNC_BUNDLES_KEPT + 2
STATE_SYNC_POLL_S = 0.25
STATE_SYNC_AWAY_S_MAX = 10.0
STATE_SYNC_SIGNUPS_AWAY = 16
STATE_SYNC_SIGNUPS_AFTER = 4


def state_sync_factory(genesis: Genesis) -> CoreFactory:
    config = NodeCoreConfig(
        bundles_kept=STATE_SYNC_BUNDLES_KEPT,
        snapshot_interval=STATE_SYNC_SNAPSHOT_INTERVAL,
        checkpoint_interval_s=STATE_SYNC_CHECKPOINT_INTERVAL_S,
    )
    return node_core_factory(genesis, config)


def scenario_state_sync(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    """A node (council member or not) is cut off while the others finalize more heights than
    they keep bundles for; back, it restores the state from a snapshot fetched from its peers
    (state sync), then finalizes new ops together with them."""
    swarm = build_swarm("state-sync", seed, params, factory or state_sync_factory)
    sim = swarm.sim
    fund_end = _bank_workload(swarm, params)
    late = sim.rng.randrange(params.nodes)
    others = [i for i in range(params.nodes) if i != late]
    away_at = sim.rng.uniform(fund_end, params.workload_s / 2)
    lag: list[int] = []
    synced: list[int] = []
    back: list[float] = []

    def leave() -> None:
        sim.partition([late], others)

    def poll() -> None:
        heights = [sim.nodes[i].core.ledger.final_height for i in range(params.nodes)]  # type: ignore[union-attr]
        behind = max(heights) - heights[late]
        if behind >= STATE_SYNC_LAG_HEIGHTS or sim.now >= away_at + STATE_SYNC_AWAY_S_MAX:
            lag.append(behind)
            back.append(sim.now)
            sim.heal()
            _signups(swarm, STATE_SYNC_SIGNUPS_AFTER, sim.now + 1.0, sim.now + 2.0)
        else:
            sim.at(sim.now + STATE_SYNC_POLL_S, poll)

    def hook(node: int, event: object) -> None:
        if node == late and isinstance(event, StateSyncFinished):
            synced.append(event.height)

    sim.event_hooks.append(hook)
    sim.at(away_at, leave)
    sim.at(away_at + STATE_SYNC_POLL_S, poll)
    _signups(swarm, STATE_SYNC_SIGNUPS_AWAY, away_at, away_at + STATE_SYNC_AWAY_S_MAX)
    sim.run_until(away_at)
    while not back:
        sim.run_until(sim.now + STATE_SYNC_POLL_S)
    # The checks start once the signups after the return are in.
    swarm.healed_at = max(back[0] + 2.0, params.workload_s)

    def check(swarm: Swarm) -> list[str]:
        if not lag or lag[0] <= STATE_SYNC_BUNDLES_KEPT:
            return [f"node {late} fell only {lag} heights behind: state sync not exercised"]
        if not synced:
            return [f"node {late} was {lag[0]} heights behind and never finished a state sync"]
        return []

    swarm.extra_checks.append(check)
    sim.run_until(swarm.healed_at)
    return finish(swarm)


#: Each scenario with the network it runs on by default. Loss, duplication and jitter are on in
#: the fault scenarios; clock skew everywhere but signup.
SCENARIOS: dict[str, tuple[Scenario, ScenarioParams]] = {
    "signup": (scenario_signup, ScenarioParams(ops=24)),
    "transfers": (
        scenario_transfers,
        ScenarioParams(network=NetworkConfig(loss=0.01, duplicate=0.01, clock_skew_s_max=0.2)),
    ),
    "hype-burns": (
        scenario_hype_burns,
        ScenarioParams(network=NetworkConfig(clock_skew_s_max=0.2)),
    ),
    "ledger-replay": (
        scenario_ledger_replay,
        ScenarioParams(network=NetworkConfig(clock_skew_s_max=0.2)),
    ),
    "partition-heal": (
        scenario_partition_heal,
        ScenarioParams(
            network=NetworkConfig(loss=0.02, duplicate=0.02, jitter_s=0.05, clock_skew_s_max=0.2)
        ),
    ),
    "crash-restart": (
        scenario_crash_restart,
        ScenarioParams(network=NetworkConfig(commit_delay_s=0.005, clock_skew_s_max=0.2)),
    ),
    "flood": (scenario_flood, ScenarioParams(network=NetworkConfig(clock_skew_s_max=0.2))),
    "fork": (
        scenario_fork,
        ScenarioParams(network=NetworkConfig(loss=0.01, clock_skew_s_max=0.2)),
    ),
    "council-crash": (
        scenario_council_crash,
        ScenarioParams(
            workload_s=8.0, network=NetworkConfig(commit_delay_s=0.005, clock_skew_s_max=0.2)
        ),
    ),
    "council-partition": (
        scenario_council_partition,
        ScenarioParams(network=NetworkConfig(loss=0.01, jitter_s=0.05, clock_skew_s_max=0.2)),
    ),
    "equivocating-member": (
        scenario_equivocating_member,
        ScenarioParams(network=NetworkConfig(clock_skew_s_max=0.2)),
    ),
    "handle-race": (
        scenario_handle_race,
        ScenarioParams(network=NetworkConfig(loss=0.01, clock_skew_s_max=0.2)),
    ),
    "fork-finality": (
        scenario_fork_finality,
        ScenarioParams(network=NetworkConfig(loss=0.01, clock_skew_s_max=0.2)),
    ),
    "state-sync": (
        scenario_state_sync,
        ScenarioParams(
            ops=24, workload_s=6.0, network=NetworkConfig(loss=0.01, clock_skew_s_max=0.2)
        ),
    ),
}


def scenario_names() -> list[str]:
    return list(SCENARIOS)


def run_scenario(
    name: str,
    seed: int,
    params: ScenarioParams | None = None,
    factory: FactoryBuilder | None = None,
) -> RunResult:
    """Run one scenario for one seed. An exception from a core is a failure, not a crash."""
    if name not in SCENARIOS:
        raise SimulationError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    function, defaults = SCENARIOS[name]
    try:
        return function(seed, params or defaults, factory)
    except SimulationError:
        raise
    except Exception as exc:  # a bug in a core: report it with the seed that shows it
        result = RunResult(name, seed)
        result.failures.append(f"exception: {type(exc).__name__}: {exc}")
        return result


# --- summaries -------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 6)

    return {"p50": pick(0.50), "p95": pick(0.95), "max": round(ordered[-1], 6)}


def summarize(scenario: str, results: list[RunResult]) -> dict[str, Any]:
    """The chaos report for one scenario (or "all") over many seeds."""
    digest = hashlib.sha256()
    for result in results:
        digest.update(f"{result.scenario}|{result.seed}|{result.trace_hash}\n".encode())
    sessions = sum(r.sync_sessions for r in results)
    within = sum(r.syncs_within_cadence for r in results)
    return {
        "scenario": scenario,
        "seeds": len(results),
        "failures": [
            {
                "scenario": r.scenario,
                "seed": r.seed,
                "reasons": r.failures,
                "replay": replay_command(r.scenario, r.seed),
            }
            for r in results
            if not r.ok
        ],
        "trace_digest": digest.hexdigest(),
        "mttd_s": percentiles([v for r in results for v in r.mttd_s]),
        "mttr_s": percentiles([r.mttr_s for r in results if r.mttr_s is not None]),
        "sync_sessions": sessions,
        "syncs_within_cadence": round(within / sessions, 6) if sessions else None,
        "ops_submitted": sum(r.ops_submitted for r in results),
        "ops_acked": sum(r.ops_acked for r in results),
        "fragments_dropped": sum(r.fragments_dropped for r in results),
        "finality_latency_s": percentiles([v for r in results for v in r.finality_latency_s]),
        "finality_recovered_s": percentiles(
            [r.finality_recovered_s for r in results if r.finality_recovered_s is not None]
        ),
        "evidence_recorded": sum(r.evidence_recorded for r in results),
        "open_conflict_age_s": percentiles(
            [r.open_conflict_age_s for r in results if r.open_conflict_age_s is not None]
        ),
    }
