"""The bounded mesh (protocol/sim/mesh.py): nodes link through address books and the shared
peer-selection policy, each node's degree stays bounded, and de-duplicated relay carries every
consensus message to every node while each node sends it at most once per peer."""

from __future__ import annotations

from collections import Counter

import pytest

from swarmd.protocol import consensus
from swarmd.protocol.crypto import sha256
from swarmd.protocol.framing import FrameDecoder
from swarmd.protocol.messages import BundlesMessage, ConsensusEnvelope, decode_message
from swarmd.protocol.node_core import NodeCore
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
        #: When each consensus payload first crossed a link, and the payload.
        self.first_seen: dict[bytes, float] = {}
        self.payloads: dict[bytes, bytes] = {}
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
                self.payloads.setdefault(digest, message.payload)
            elif isinstance(message, BundlesMessage):
                for bundle in message.bundles:
                    self.bundles[(*key, sha256(bundle))] += 1

    def resent(self) -> list[str]:
        """The consensus messages that crossed some link more than once, described: relay
        sends each once per link, so these are re-broadcasts on the consensus timer (its
        author's, CONSENSUS_REBROADCAST_INTERVAL_S after a height started and still
        undecided): the stall count of a run."""
        index_of = self.index_of
        described = set()
        for (_, _, digest), count in self.consensus.items():
            if count > 1:
                m = consensus.decode_message(self.payloads[digest])
                described.add(f"{m.kind.name} h{m.height} r{m.round} by {index_of[m.validator]}")
        return sorted(described)


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


def _decided_rounds(swarm: Swarm) -> dict[int, int]:
    """Height -> the round that decided it (node 0's bundles)."""
    core = swarm.sim.nodes[0].core
    assert isinstance(core, NodeCore)
    rounds = {}
    for height in range(1, core.final_height + 1):
        data = core.bundle(height)
        assert data is not None
        rounds[height] = consensus.CheckpointBundle.decode(data).round
    return rounds


@pytest.mark.parametrize("seed", range(1, 13))
def test_bounded_mesh_relays_each_consensus_message_once_per_link_to_every_node(
    seed: int,
) -> None:
    # No round stalls on a loss-free mesh: every height is decided in round 0 and no message
    # is re-sent on the consensus timer (a stalled height's messages are, once a second, by
    # design and outside relay de-duplication). Until issue 16's fix, seeds 2, 3, 5, 7 and 9
    # stalled (1, 4, 10 and 11 with an earlier topology): the consensus messages all reached
    # every node within ~50 ms, but a council member lacked ops the proposal's cut (or its
    # own proposal) needed. It had asked a random neighbour for the missing parent, which
    # lacked it too and so never answered, and it postponed the fetch from the peers that
    # announced the op (and held it) until that blind request was FETCH_RETRY_S old, again
    # and again as blind retries renewed it: it prevoted nil at the propose timeout, or as
    # proposer proposed nothing. tests/protocol/test_blind_fetch.py pins the fetch rule.
    swarm, counter, formed_at = _mesh_swarm(seed=seed)
    sim = swarm.sim
    nodes = len(sim.nodes)
    # Connected within four exchange rounds (1 s apart, jittered).
    assert _connected(swarm) and formed_at and formed_at[0] < 4.0
    assert counter.resent() == []
    rounds = _decided_rounds(swarm)
    assert len(rounds) >= 4 and set(rounds.values()) == {0}, rounds
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
