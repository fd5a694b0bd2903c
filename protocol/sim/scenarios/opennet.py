"""Open-network scenarios over a bounded mesh (issue 16): community nodes join through two
seeds and churn (`open-network`), and an attacker with many identities tries to eclipse a
council member (`eclipse`). Both link through address books and the shared peer-selection
policy (protocol/peering.py, protocol/sim/mesh.py) instead of a full mesh."""

from __future__ import annotations

import functools

from ... import crypto
from ...crypto import KeyPair
from ...node_core import NodeCore
from ...peering import MeshTargets
from ..mesh import MeshConfig
from ..simulator import FaultKind
from ..swarm import FactoryBuilder, ScenarioParams, Swarm, build_swarm, crash_with_retry
from .common import bank_workload, finish
from .report import RunResult

#: The simulated mesh's targets: smaller than the daemon's (8 out, 24 in) so that a CI-sized
#: swarm of a dozen nodes is a sparse mesh, not a full one.
OPEN_NETWORK_TARGETS = MeshTargets(outbound=3, inbound_max=6, per_source_max=2)
#: Community nodes crashed (and restarted) during the run: one in this many.
CHURN_ONE_IN = 4
#: A churned node is down this long (uniform).
CHURN_DOWN_S = (0.5, 2.0)


def _peer_bound(swarm: Swarm, index: int) -> int:
    """The most links node `index` may hold: its mesh targets plus its council links."""
    assert swarm.mesh is not None
    targets = swarm.mesh.config.targets
    council = swarm.params.council - 1 if index < swarm.params.council else 0
    return targets.outbound + targets.inbound_max + council


def check_bounded_mesh(swarm: Swarm) -> list[str]:
    """Every live node holds a bounded, non-empty peer set (and no more than its core's)."""
    failures = []
    for node in swarm.sim.nodes:
        core = node.core
        if not isinstance(core, NodeCore):
            continue
        assert swarm.mesh is not None
        # Simulated nodes only: an attacker's links (eclipse) are bounded by the core's slots.
        peers = sum(1 for p in core.peer_ids() if p in swarm.mesh.index_of)
        links = len(swarm.sim.neighbours(node.index))
        if not 1 <= peers <= _peer_bound(swarm, node.index):
            failures.append(
                f"node {node.index} holds {peers} peers (bound {_peer_bound(swarm, node.index)})"
            )
        if links > peers:
            failures.append(f"node {node.index}: {links} links but its core knows {peers} peers")
    # Every link but the council's is some node's outbound link: at most `outbound` each.
    assert swarm.mesh is not None
    council = swarm.params.council
    links = sum(len(swarm.sim.neighbours(n.index)) for n in swarm.sim.nodes) // 2
    bound = council * (council - 1) // 2 + len(swarm.sim.nodes) * swarm.mesh.config.targets.outbound
    if links > bound:
        failures.append(f"{links} links: more than the outbound targets allow ({bound})")
    return failures


def scenario_open_network(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    """The council links its members; community nodes join over the first half of the
    workload knowing only two seeds (the first two community nodes), and one in CHURN_ONE_IN
    crashes and restarts. Every node ends with a bounded peer set and all converge."""
    council = params.council
    seeds = (council, council + 1) if params.full_nodes >= 2 else (0, 1)
    mesh = MeshConfig(targets=OPEN_NETWORK_TARGETS, seeds=seeds, council=council)
    swarm = build_swarm("open-network", seed, params, factory, mesh=mesh)
    sim = swarm.sim
    assert swarm.mesh is not None
    open_mesh = swarm.mesh
    for index in range(council):
        open_mesh.join(index)
    community = [i for i in range(council, params.nodes) if i not in seeds]
    for index in community:
        sim.at(
            sim.rng.uniform(0.0, params.workload_s / 2), functools.partial(open_mesh.join, index)
        )
    bank_workload(swarm, params)
    last = params.workload_s
    churned = sorted(sim.rng.sample(community, len(community) // CHURN_ONE_IN))
    for index in churned:
        down_at = sim.rng.uniform(params.workload_s / 2, params.workload_s)
        up_at = down_at + sim.rng.uniform(*CHURN_DOWN_S)
        sim.at(down_at, functools.partial(crash_with_retry, swarm, index))
        sim.at(up_at, functools.partial(sim.restart, index))
        last = max(last, up_at)
    swarm.healed_at = last + 2 * mesh.exchange_interval_s
    swarm.extra_checks.append(check_bounded_mesh)
    sim.run_until(swarm.healed_at)
    return finish(swarm)


# --- eclipse -----------------------------------------------------------------------------------

#: The attacker's identities (each a key with a signed address record).
ECLIPSE_IDENTITIES = 200
#: Node index of the council member under attack.
ECLIPSE_VICTIM = 0


def attacker_keys(count: int = ECLIPSE_IDENTITIES) -> list[KeyPair]:
    return [
        KeyPair.from_seed(crypto.sha256(f"swarmd-sim-eclipse-{i}".encode())) for i in range(count)
    ]


class _Eclipse:
    """An attacker that floods the victim's address book with its identities' records (each
    identity relaying all of them) and takes every inbound slot the victim's core gives it;
    its links stay silent (they swallow what the victim sends)."""

    def __init__(self, swarm: Swarm, keys: list[KeyPair]) -> None:
        assert swarm.mesh is not None
        self.swarm = swarm
        self.ids = [key.public_key for key in keys]
        self.records = [swarm.mesh.add_outsider(key, i) for i, key in enumerate(keys)]
        self.linked = 0
        self.started_at = 0.0
        self.height_at_start = 0
        self.council_link_lost: list[str] = []

    def begin(self) -> None:
        sim, mesh = self.swarm.sim, self.swarm.mesh
        assert mesh is not None
        self.started_at = sim.now
        self.height_at_start = self.swarm.finality.max_height_by(sim.now)
        sim.record_fault(FaultKind.FLOOD, (ECLIPSE_VICTIM,))
        for identity in self.ids:
            mesh.learn(ECLIPSE_VICTIM, self.records, identity)
            self.linked += sim.connect_outsider(identity, ECLIPSE_VICTIM)

    def watch(self) -> None:
        """Every council link of the victim is up (probed through the attack)."""
        sim = self.swarm.sim
        sim.take_outsider_frames()  # swallowed by the attacker
        if sim.nodes[ECLIPSE_VICTIM].core is None:
            return
        for member in range(1, self.swarm.params.council):
            if not sim.links.link(ECLIPSE_VICTIM, member).up:
                self.council_link_lost.append(f"{sim.now:.2f}s: victim lost member {member}")

    def check(self, swarm: Swarm) -> list[str]:
        failures = self.council_link_lost[:3]
        core = swarm.sim.nodes[ECLIPSE_VICTIM].core
        assert isinstance(core, NodeCore) and swarm.mesh is not None
        peers = set(core.peer_ids())
        council = {swarm.sim.nodes[i].node_id for i in range(1, swarm.params.council)}
        if not council <= peers:
            failures.append("the victim's council links are not all up at the end")
        taken = len(peers & set(self.ids))
        slots = core.config.peers_max - core.peer_rules.reserved_slots()
        if not 0 < taken <= slots or self.linked > slots:
            failures.append(f"the attacker holds {taken} links (community slots {slots})")
        book = swarm.mesh.nodes[ECLIPSE_VICTIM].book
        if len(book) > book.entries_max:
            failures.append(f"the victim's address book holds {len(book)} records")
        after = swarm.finality.max_height_by(swarm.sim.now)
        if after <= self.height_at_start:
            failures.append(f"no height finalized after the attack (still {after})")
        return failures


def scenario_eclipse(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    """An attacker with ECLIPSE_IDENTITIES identities floods council member 0's address book
    and inbound slots: its links to the other members (reserved slots) stay up throughout,
    the attacker holds no more than the community slots, and finality goes on."""
    keys = attacker_keys()
    council = params.council
    seeds = (council, council + 1) if params.full_nodes >= 2 else (0, 1)
    mesh = MeshConfig(targets=OPEN_NETWORK_TARGETS, seeds=seeds, council=council)
    outsiders = tuple(key.public_key for key in keys)
    swarm = build_swarm("eclipse", seed, params, factory, outsiders=outsiders, mesh=mesh)
    sim = swarm.sim
    assert swarm.mesh is not None
    for index in range(params.nodes):
        swarm.mesh.join(index)
    attack = _Eclipse(swarm, keys)
    fund_end = bank_workload(swarm, params)
    sim.at(sim.rng.uniform(fund_end / 2, fund_end), attack.begin)
    probe_at = 0.0
    while probe_at < params.workload_s:
        sim.at(probe_at, attack.watch)
        probe_at += 0.25
    swarm.extra_checks.append(attack.check)
    swarm.extra_checks.append(check_bounded_mesh)
    swarm.healed_at = params.workload_s
    sim.run_until(swarm.healed_at)
    return finish(swarm)


# --- the scale point (not in CI: tests/sim/mesh_scale.py runs it) ---------------------------------


def scenario_mesh_scale(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    """A healthy network on a bounded mesh with the daemon's targets (8 outbound, 24
    inbound): every node joins at once through two seeds, then the bank workload. Issue 16's
    scale point is council 31 + 100 full nodes with finality p95 <= 1.5 s virtual."""
    council = params.council
    seeds = (council, council + 1) if params.full_nodes >= 2 else (0, 1)
    mesh = MeshConfig(seeds=seeds, council=council)
    swarm = build_swarm("mesh-scale", seed, params, factory, mesh=mesh)
    assert swarm.mesh is not None
    for index in range(params.nodes):
        swarm.mesh.join(index)
    bank_workload(swarm, params)
    swarm.healed_at = params.workload_s
    swarm.extra_checks.append(check_bounded_mesh)
    swarm.sim.run_until(swarm.healed_at)
    return finish(swarm)
