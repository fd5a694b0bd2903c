"""One scenario run in the making: the simulation, the real node cores it drives, the client
workload and the finality log the checkers read (deterministic).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import consensus, crypto
from ..crypto import KeyPair
from ..genesis import Genesis
from ..ledger import HandleBound, HandleConflictRaised, HandleUnbound
from ..node_core import (
    CheckpointFinalized,
    EquivocationRecorded,
    NodeCore,
    NodeCoreConfig,
    SnapshotRestoreError,
)
from .mesh import Mesh, MeshConfig
from .network import NetworkConfig
from .simulator import CoreFactory, DurableStore, SimCore, Simulation
from .workload import Workload

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
                certificates=store.certificates,
                reverted_ops=store.reverted_ops,
            )

        if store.snapshot is not None:
            try:
                return restore(store.snapshot)
            except SnapshotRestoreError:
                pass
        return restore(None)

    return build


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
    #: The epoch of the bundle finalized (a rollback certificate makes the heights above its
    #: H decided again in the next epoch: agreement is per (epoch, height)).
    epoch: int = 0


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
            _bundle_epoch(core, event.height),
        )
    )


def _bundle_epoch(core: SimCore | None, height: int) -> int:
    """The epoch of the bundle `core` holds for `height` (0 when it holds none)."""
    bundle = getattr(core, "bundle", None)
    data = bundle(height) if bundle is not None else None
    if not isinstance(data, bytes):
        return 0
    return consensus.CheckpointBundle.decode(data).epoch


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
    #: The bounded mesh the nodes link through (None: a full mesh).
    mesh: Mesh | None = None


def build_swarm(
    name: str,
    seed: int,
    params: ScenarioParams,
    factory_builder: FactoryBuilder | None = None,
    outsiders: tuple[bytes, ...] = (),
    mesh: MeshConfig | None = None,
) -> Swarm:
    """A swarm over a full mesh, or over a bounded mesh (`mesh`): then only the council is
    linked and the seeds joined; the scenario calls `swarm.mesh.join` for the others."""
    keypairs = [node_keypair(i) for i in range(params.nodes)]
    genesis = sim_genesis(keypairs[: params.council])
    factory = (factory_builder or node_core_factory)(genesis)
    sim = Simulation(
        seed=seed,
        keypairs=keypairs,
        factory=factory,
        network=params.network,
        outsiders=outsiders,
        edges=None if mesh is None else (),
    )
    workload = Workload(sim, genesis, keypairs[: params.council], seed)
    swarm = Swarm(name, seed, params, sim, genesis, workload)
    if mesh is not None:
        swarm.mesh = Mesh(sim, mesh, seed)
        swarm.mesh.start()
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
