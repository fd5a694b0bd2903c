"""The flood scenario: outside peers send junk and replayed valid messages to every node."""

from __future__ import annotations

import functools
import random

from ... import crypto
from ...crypto import KeyPair
from ...errors import RemoteProtocolError
from ...framing import FrameDecoder, FrameEncoder, Priority
from ...node_core import (
    NodeCoreConfig,
    PeerMisbehaved,
)
from ..simulator import FaultKind
from ..swarm import (
    FactoryBuilder,
    ScenarioParams,
    Swarm,
    build_swarm,
    node_core_factory,
)
from .common import (
    bank_workload,
    finish,
)
from .report import RunResult

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
    fund_end = bank_workload(swarm, params)
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
        if isinstance(event, PeerMisbehaved) and peer in dropped:
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
