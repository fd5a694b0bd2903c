"""Council finality scenarios: f members crash, a split with no quorum, an equivocating member."""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence

from ... import consensus, crypto
from ...crypto import KeyPair
from ...errors import RemoteProtocolError
from ...framing import FrameDecoder, FrameEncoder, Priority
from ...messages import BundlesMessage, ConsensusEnvelope, decode_message, encode_message
from ...node_core import (
    CheckpointFinalized,
    NodeCore,
)
from ..simulator import FaultKind
from ..swarm import (
    FactoryBuilder,
    ScenarioParams,
    Swarm,
    build_swarm,
    crash_with_retry,
    node_keypair,
)
from .common import (
    bank_workload,
    council_split,
    finish,
    random_transfers,
)
from .report import RunResult

# --- council finality scenarios --------------------------------------------------------------

#: Decisions whose quorum of votes was delivered before a fault still complete locally a few
#: network delays later (delay + jitter <= 70 ms here); after this long, a checkpoint first
#: finalized anywhere is new finality made during the fault (council-crash's liveness check;
#: council-partition's safety check asks which precommits decided instead: a vote delivered
#: before a split can complete a decision much later, e.g. once the local votes it waited
#: for were re-broadcast, so no settle time fits it).
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
    fund_end = bank_workload(swarm, params)
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


def scenario_council_partition(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    """A split where no side holds a quorum: nothing may be finalized during it but what a
    quorum of precommits available on the finalizing node's side decided (the side's own
    members', and those delivered to the side before the split: a vote cast before a fault
    still counts, so a decision can complete after it)."""
    swarm = build_swarm("council-partition", seed, params, factory)
    sim = swarm.sim
    fund_end = bank_workload(swarm, params)
    side_a, side_b = council_split(swarm, quorum_side=False)
    split_at = sim.rng.uniform(fund_end, params.workload_s / 2)
    heal_at = params.workload_s + sim.rng.uniform(0.0, 1.0)
    watch = PrecommitWatch(swarm)

    def split() -> None:
        watch.phase = "split"
        sim.partition(side_a, side_b)

    def heal() -> None:
        watch.phase = "healed"
        sim.heal()

    sim.at(split_at, split)
    sim.at(heal_at, heal)
    # Ops after the heal: finality must resume for them too.
    random_transfers(swarm, 4, heal_at + 0.1, heal_at + 0.5)

    def check_no_minority_finality(swarm: Swarm) -> list[str]:
        new = minority_decisions(
            watch.decisions, (side_a, side_b), watch.known, swarm.genesis.council
        )
        if new:
            return [f"safety: heights {new} finalized while no side had a quorum"]
        return []

    swarm.extra_checks.append(check_no_minority_finality)
    swarm.healed_at = heal_at + 0.5
    sim.run_until(swarm.healed_at)
    return finish(swarm)


#: A precommit as a bundle carries it: (member key, signature).
SignedPrecommit = tuple[bytes, bytes]


class PrecommitWatch:
    """What the council-partition check reads: every precommit delivered to each node before
    the split (alone or inside a bundle; frames decoded per directed link, as test_mesh's
    FrameCounter does), and each finalization during the split with the bundle that decided
    it. Watching only: nothing here changes the run or its trace."""

    def __init__(self, swarm: Swarm) -> None:
        self.swarm = swarm
        self.index_of = {node.node_id: node.index for node in swarm.sim.nodes}
        self.decoders: dict[tuple[int, int], FrameDecoder] = {}
        #: Per node: the precommits delivered to it before the split.
        self.known: dict[int, set[SignedPrecommit]] = {}
        #: (node, bundle) of every finalization between the split and the heal.
        self.decisions: list[tuple[int, consensus.CheckpointBundle]] = []
        #: "before" the split, during the "split", "healed" after it.
        self.phase = "before"
        swarm.sim.frame_hooks.append(self.on_frame)
        swarm.sim.event_hooks.append(self.on_event)

    def on_frame(self, src_id: bytes, dst: int, frame: bytes) -> None:
        source = self.index_of.get(src_id)
        if self.phase != "before" or source is None:
            return
        decoder = self.decoders.setdefault((source, dst), FrameDecoder())
        try:
            messages = [decode_message(data) for data in decoder.receive_frame(frame, 0.0)]
        except RemoteProtocolError:
            return  # (no honest node sends one)
        known = self.known.setdefault(dst, set())
        for message in messages:
            if isinstance(message, ConsensusEnvelope):
                vote = consensus.decode_message(message.payload)
                if vote.kind is consensus.MessageKind.PRECOMMIT:
                    known.add((vote.validator, vote.signature))
            elif isinstance(message, BundlesMessage):
                for data in message.bundles:
                    known.update(consensus.CheckpointBundle.decode(data).precommits)

    def on_event(self, node: int, event: object) -> None:
        if self.phase != "split" or not isinstance(event, CheckpointFinalized):
            return
        core = self.swarm.sim.nodes[node].core
        data = core.bundle(event.height) if isinstance(core, NodeCore) else None
        if data is not None:
            self.decisions.append((node, consensus.CheckpointBundle.decode(data)))


def minority_decisions(
    decisions: list[tuple[int, consensus.CheckpointBundle]],
    sides: tuple[list[int], ...],
    known: dict[int, set[SignedPrecommit]],
    council: Sequence[bytes],
) -> list[int]:
    """Heights finalized on some node during a split without a quorum of precommits that its
    side could hold: those its side's members signed and those delivered to a node of its
    side before the split. Node i signs with `node_keypair(i)`."""
    quorum = consensus.quorum_size(len(council))
    bad: set[int] = set()
    for node, bundle in decisions:
        side = next(side for side in sides if node in side)
        members = {node_keypair(i).public_key for i in side} & set(council)
        available: set[SignedPrecommit] = set()
        for index in side:
            available |= known.get(index, set())
        backed = {key for key, signature in bundle.precommits if key in members}
        backed |= {key for key, signature in bundle.precommits if (key, signature) in available}
        if len(backed) < quorum:
            bad.add(bundle.height)
    return sorted(bad)


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
    fund_end = bank_workload(swarm, params)
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
