"""The bounded mesh (protocol/sim/mesh.py): nodes link through address books and the shared
peer-selection policy, each node's degree stays bounded, and de-duplicated relay carries every
consensus message to every node while each node sends it at most once per peer."""

from __future__ import annotations

from collections import Counter

from swarmd.protocol.crypto import sha256
from swarmd.protocol.framing import FrameDecoder
from swarmd.protocol.messages import BundlesMessage, ConsensusEnvelope, decode_message
from swarmd.protocol.peering import MeshTargets
from swarmd.protocol.sim.checkers import converged
from swarmd.protocol.sim.mesh import MeshConfig
from swarmd.protocol.sim.network import NetworkConfig
from swarmd.protocol.sim.scenarios.common import bank_workload
from swarmd.protocol.sim.swarm import ScenarioParams, Swarm, build_swarm

COUNCIL, FULL = 4, 20
TARGETS = MeshTargets(outbound=3, inbound_max=5, per_source_max=2)


class FrameCounter:
    """Decodes every delivered frame per directed link and counts consensus payloads and
    bundles per (sender, receiver)."""

    def __init__(self, swarm: Swarm) -> None:
        self.index_of = {node.node_id: node.index for node in swarm.sim.nodes}
        self.decoders: dict[tuple[int, int], FrameDecoder] = {}
        self.consensus: Counter[tuple[int, int, bytes]] = Counter()
        self.bundles: Counter[tuple[int, int, bytes]] = Counter()
        #: When each consensus payload first crossed a link.
        self.first_seen: dict[bytes, float] = {}
        self.sim = swarm.sim
        swarm.sim.frame_hooks.append(self.on_frame)

    def on_frame(self, src_id: bytes, dst: int, frame: bytes) -> None:
        key = (self.index_of[src_id], dst)
        decoder = self.decoders.setdefault(key, FrameDecoder())
        for data in decoder.receive_frame(frame, 0.0):
            message = decode_message(data)
            if isinstance(message, ConsensusEnvelope):
                digest = sha256(message.payload)
                self.consensus[(*key, digest)] += 1
                self.first_seen.setdefault(digest, self.sim.now)
            elif isinstance(message, BundlesMessage):
                for bundle in message.bundles:
                    self.bundles[(*key, sha256(bundle))] += 1


def _mesh_swarm(seed: int) -> tuple[Swarm, FrameCounter, list[float]]:
    network = NetworkConfig(loss=0.0, duplicate=0.0)
    params = ScenarioParams(council=COUNCIL, full_nodes=FULL, ops=20, network=network)
    mesh = MeshConfig(targets=TARGETS, seeds=(0, 1), council=COUNCIL)
    swarm = build_swarm("mesh-relay", seed, params, mesh=mesh)
    assert swarm.mesh is not None
    counter = FrameCounter(swarm)
    for index in range(params.nodes):
        swarm.mesh.join(index)
    bank_workload(swarm, params)
    formed_at: list[float] = []

    def probe() -> None:
        if _connected(swarm):
            formed_at.append(swarm.sim.now)
        else:
            swarm.sim.at(swarm.sim.now + 0.05, probe)

    swarm.sim.at(0.0, probe)
    swarm.sim.run_until(params.workload_s + 6.0)
    return swarm, counter, formed_at


def _connected(swarm: Swarm) -> bool:
    seen, todo = {0}, [0]
    while todo:
        for other in swarm.sim.neighbours(todo.pop()):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return len(seen) == len(swarm.sim.nodes)


def test_bounded_mesh_relays_each_consensus_message_once_per_link_to_every_node() -> None:
    # A seed where no consensus round stalls: a stalled round's messages are re-sent on the
    # consensus timer (about once a second), by design and outside relay de-duplication. On
    # the merged base seeds 1, 4, 10 and 11 of 1-12 stall; with tried/new address books
    # (different topologies) seeds 2, 3, 5, 7 and 9 do. Seed 6 stalls in neither.
    swarm, counter, formed_at = _mesh_swarm(seed=6)
    sim = swarm.sim
    nodes = len(sim.nodes)
    assert _connected(swarm) and formed_at and formed_at[0] < 3.0
    degrees = [len(sim.neighbours(i)) for i in range(nodes)]
    # Bounded: outbound target + inbound bound (+ the reserved council links), not a full mesh.
    community_bound = TARGETS.outbound + TARGETS.inbound_max
    assert max(degrees[COUNCIL:]) <= community_bound < nodes - 1
    assert max(degrees[:COUNCIL]) <= community_bound + COUNCIL - 1
    assert sum(degrees) < nodes * (nodes - 1) / 3
    assert counter.consensus, "no consensus message crossed the mesh"
    # At most once per (sender, receiver) for every consensus payload.
    assert max(counter.consensus.values()) == 1
    # And every payload sent once the mesh was connected reached every node (its author
    # holds it already); earlier ones reached the nodes linked by then.
    reached: dict[bytes, set[int]] = {}
    for src, dst, digest in counter.consensus:
        reached.setdefault(digest, set()).update((src, dst))
    later = [d for d in reached if counter.first_seen[d] >= formed_at[0]]
    assert len(later) >= 10
    assert all(len(reached[digest]) == nodes for digest in later)
    # Bundles: pushed once per link when a node finalizes (answers to a peer's bundle
    # request or sync hello may repeat one on the wire); every node finalized every height.
    assert counter.bundles
    assert converged(swarm)
    heights = [node.core.ledger.final_height for node in sim.nodes if node.core is not None]
    assert min(heights) >= 1


def test_mesh_forms_through_two_seeds_with_diverse_outbound_links() -> None:
    swarm, _, _ = _mesh_swarm(seed=9)
    assert swarm.mesh is not None
    community = range(COUNCIL, len(swarm.sim.nodes))
    outbound = [len(swarm.mesh.nodes[index].outbound) for index in community]
    # Near the target (a dial refused by a full node backs off before the next try).
    assert sum(outbound) >= 0.8 * TARGETS.outbound * len(outbound)
    assert min(outbound) >= 1 and max(outbound) <= TARGETS.outbound
    for index in community:
        mesh_node = swarm.mesh.nodes[index]
        sources = Counter(source for source, _ in mesh_node.outbound.values())
        assert max(sources.values()) <= TARGETS.per_source_max
        assert len(mesh_node.inbound) <= TARGETS.inbound_max
