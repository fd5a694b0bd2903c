"""The simulator's bounded mesh (issue 16): nodes link through address books and the shared
peer-selection policy (protocol/peering.py) instead of a full mesh.

Every node has an `AddressBook` and a signed `AddressRecord` (a loopback URL per node index).
A node joins knowing only the seeds' records; from then on, every `exchange_interval_s`
(jittered) it forgets links that went down, asks up to EXCHANGE_SOURCES_PER_ROUND connected
peers for their exchange answer (`records_to_share`: the daemon's GET /v1/peers/records,
modelled beside the frame stream, so its bytes are not in the trace) and dials what
`plan_dials` chooses until it holds `MeshTargets.outbound` outbound links. A dialed node
takes the link while `MeshTargets.accepts_inbound` and its core agree. Council members link
to each other when they start (reserved slots) and again after a restart, like operators'
configured `[network].peers`.

Outsiders (an attacker's identities) may have records too: a node that dials one gets a link
to it (`Simulation.connect_outsider`) if its core takes it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..addresses import AddressBook, AddressRecord, url_group
from ..crypto import KeyPair
from ..peering import EXCHANGE_SOURCES_PER_ROUND, MeshTargets, plan_dials, records_to_share
from .errors import SimulationError
from .simulator import Simulation

#: The transport and scope every simulated address uses: private addresses, node `i` alone
#: in the /16 10.(i+1).0.0 (so network-group diversity sees distinct hosts); outsiders (an
#: attacker) share 10.251.0.0/16.
SIM_TRANSPORT = "websocket"
SIM_SCOPE = "private"
SIM_NODES_MAX = 250


def sim_url(index: int) -> str:
    if index < SIM_NODES_MAX:
        return f"http://10.{index + 1}.0.1:7000"
    other = index - SIM_NODES_MAX
    return f"http://10.251.{other // 250}.{other % 250 + 1}:7000"


@dataclass(frozen=True)
class MeshConfig:
    targets: MeshTargets = field(default_factory=MeshTargets)
    #: Nodes every joining node knows from its configuration.
    seeds: tuple[int, ...] = (0, 1)
    exchange_interval_s: float = 1.0
    #: Council members (indices below this) link to each other at once.
    council: int = 0


@dataclass
class MeshNode:
    book: AddressBook
    #: Outbound links: peer id -> (source of its record, scope).
    outbound: dict[bytes, tuple[bytes | None, str]] = field(default_factory=dict)
    #: Inbound non-council links (peer ids).
    inbound: set[bytes] = field(default_factory=set)
    joined: bool = False
    dials: int = 0


class Mesh:
    """See the module docstring. Draws from its own rng, so the topology never shifts the
    network's draws of the simulation."""

    def __init__(self, sim: Simulation, config: MeshConfig, seed: int) -> None:
        self.sim = sim
        self.config = config
        self.rng = random.Random(seed ^ 0x3E5)
        if len(sim.nodes) > SIM_NODES_MAX:
            raise SimulationError(f"a simulated mesh holds at most {SIM_NODES_MAX} nodes")
        self.index_of = {node.node_id: node.index for node in sim.nodes}
        self.records: dict[bytes, AddressRecord] = {}
        self.nodes: list[MeshNode] = []
        for node in sim.nodes:
            self.records[node.node_id] = _record(node.keypair, node.index)
            self.nodes.append(MeshNode(AddressBook(node.node_id)))

    def add_outsider(self, keypair: KeyPair, number: int) -> AddressRecord:
        """A record for outsider `number` (addresses in the outsiders' /16)."""
        record = self.records[keypair.public_key] = _record(keypair, SIM_NODES_MAX + number)
        return record

    def start(self) -> None:
        """Link the council and let the seeds join at once."""
        council = self.config.council
        for a in range(council):
            for b in range(a + 1, council):
                self.sim.connect(a, b)
        for index in self.config.seeds:
            self.join(index)

    def join(self, index: int) -> None:
        """Node `index` starts with the seeds' records and runs exchange rounds from now."""
        mesh_node = self.nodes[index]
        if mesh_node.joined:
            return
        mesh_node.joined = True
        now = self.sim.now
        for seed in self.config.seeds:
            record = self.records[self.sim.nodes[seed].node_id]
            mesh_node.book.add(record, None, now)
        self.round(index)

    def learn(self, index: int, records: list[AddressRecord], source: bytes | None) -> int:
        """Records reach node `index` from `source` (an exchange answer); how many it kept."""
        book, now = self.nodes[index].book, self.sim.now
        return sum(book.add(record, source, now) for record in records)

    def is_council(self, peer_id: bytes) -> bool:
        index = self.index_of.get(peer_id)
        return index is not None and index < self.config.council

    def round(self, index: int) -> None:
        """One exchange round of node `index`, then the next one is scheduled."""
        sim = self.sim
        interval = self.config.exchange_interval_s
        sim.at(sim.now + interval * self.rng.uniform(0.8, 1.2), lambda: self.round(index))
        if sim.nodes[index].core is None:
            return
        self.prune(index)
        if index < self.config.council:
            for other in range(self.config.council):
                if other != index and not sim.links.link(index, other).up:
                    sim.connect(index, other)
        self.exchange(index)
        self.dial(index)

    def prune(self, index: int) -> None:
        """Forget the links that went down (a crash, a ban, a refusal)."""
        mesh_node = self.nodes[index]
        for peer_id in sorted(set(mesh_node.outbound) | mesh_node.inbound):
            if not self.linked(index, peer_id):
                mesh_node.outbound.pop(peer_id, None)
                mesh_node.inbound.discard(peer_id)
                if (index, peer_id) in self.sim.banned:
                    mesh_node.book.demote(peer_id)  # as the daemon: no longer vouched for

    def linked(self, index: int, peer_id: bytes) -> bool:
        other = self.index_of.get(peer_id)
        if other is None:
            return (index, peer_id) not in self.sim.banned
        return self.sim.links.link(index, other).up

    def exchange(self, index: int) -> None:
        now = self.sim.now
        # Connected peers and the configured seeds (their exchange answer is an HTTP GET:
        # a seed whose peer slots are full still answers it).
        peers = [p for p in self.sim.neighbours(index) if self.sim.links.link(index, p).up]
        peers = sorted(set(peers) | {s for s in self.config.seeds if s != index})
        peers = [p for p in peers if self.sim.nodes[p].core is not None and self.nodes[p].joined]
        asked = self.rng.sample(peers, min(EXCHANGE_SOURCES_PER_ROUND, len(peers)))
        for peer in sorted(asked):
            peer_id = self.sim.nodes[peer].node_id
            answer = records_to_share(self.records[peer_id], self.nodes[peer].book, now, self.rng)
            self.learn(index, answer, peer_id)

    def dial(self, index: int) -> None:
        mesh_node, targets = self.nodes[index], self.config.targets
        want = targets.dials_wanted(len(mesh_node.outbound))
        if not want:
            return
        connected = set(mesh_node.outbound) | mesh_node.inbound
        if index < self.config.council:
            connected |= {self.sim.nodes[i].node_id for i in range(self.config.council)}
        plan = plan_dials(
            mesh_node.book,
            now=self.sim.now,
            transport=SIM_TRANSPORT,
            own_scope=SIM_SCOPE,
            skip=connected | {self.sim.nodes[index].node_id},
            linked=list(mesh_node.outbound.values()),
            want=want,
            rng=self.rng,
            per_source_max=targets.per_source_max,
        )
        for peer_id, url in plan:
            mesh_node.dials += 1
            if self.dial_one(index, peer_id):
                source = mesh_node.book.entries[peer_id].source
                mesh_node.outbound[peer_id] = (source, url_group(url))
                mesh_node.book.dial_succeeded(peer_id)
            else:
                mesh_node.book.dial_failed(peer_id, self.sim.now)

    def dial_one(self, index: int, peer_id: bytes) -> bool:
        other = self.index_of.get(peer_id)
        if other is None:
            return self.sim.connect_outsider(peer_id, index)
        target = self.nodes[other]
        council_link = self.is_council(peer_id) and index < self.config.council
        if not target.joined or self.sim.nodes[other].core is None:
            return False
        if not self.config.targets.accepts_inbound(len(target.inbound), council_link=council_link):
            return False
        if not self.sim.connect(index, other):
            return False
        if not council_link:
            target.inbound.add(self.sim.nodes[index].node_id)
        return True

    def degree(self, index: int) -> int:
        return len(self.sim.neighbours(index))


def _record(keypair: KeyPair, index: int) -> AddressRecord:
    return AddressRecord.sign(keypair, {SIM_TRANSPORT: sim_url(index)}, 0.0)
