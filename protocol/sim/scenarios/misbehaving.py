"""The misbehaving-peer scenario: an outside peer sends malformed frames and messages to every
node, is banned within a bounded number of them, and every reconnect during its ban is refused
while the swarm goes on finalizing."""

from __future__ import annotations

import math
import random

from ... import crypto, limits
from ...crypto import KeyPair
from ...framing import FrameEncoder, Priority
from ...node_core import (
    PENALTY_MALFORMED_FRAME,
    PENALTY_MALFORMED_MESSAGE,
    NodeCore,
    PeerMisbehaved,
)
from ...node_core.peers import REFUSED_BANNED
from ..simulator import FaultKind
from ..swarm import FactoryBuilder, ScenarioParams, Swarm, build_swarm, node_core_factory
from .common import bank_workload, finish
from .report import RunResult

#: The attacker sends one bad frame to every node this often, for this long.
BAD_FRAME_INTERVAL_S = 0.02
BAD_FRAMES_DURATION_S = 1.0
#: And tries to reconnect to every node this often until the workload ends.
RECONNECT_INTERVAL_S = 0.25
#: A node must ban the attacker within this many bad frames: enough to take a fresh score to
#: PEER_SCORE_MIN with the cheapest kind sent (a malformed message).
BAD_FRAMES_BEFORE_BAN_MAX = math.ceil(
    -limits.PEER_SCORE_MIN / min(PENALTY_MALFORMED_FRAME, PENALTY_MALFORMED_MESSAGE)
)


def _bad_frame(rng: random.Random) -> bytes:
    """Junk that is not a frame, or a well-formed frame whose message does not decode."""
    if rng.random() < 0.5:
        return rng.randbytes(rng.randint(1, 300))
    encoder = FrameEncoder()
    encoder.queue_message(b"\xc1" + rng.randbytes(rng.randint(0, 200)), Priority.BULK)
    return encoder.frames_to_send()[0]


class _Attack:
    """What the attacker did to each node and what each node did about it."""

    def __init__(self, swarm: Swarm, attacker: bytes, seed: int) -> None:
        self.swarm = swarm
        self.attacker = attacker
        self.rng = random.Random(seed ^ 0xBAD)
        nodes = swarm.params.nodes
        self.sent_before_ban = [0] * nodes
        self.banned_at: list[float | None] = [None] * nodes
        self.reconnects_refused = [0] * nodes
        self.failures: list[str] = []

    def begin(self) -> None:
        sim = self.swarm.sim
        sim.record_fault(FaultKind.FLOOD, tuple(range(self.swarm.params.nodes)))
        for index in range(self.swarm.params.nodes):
            sim.connect_outsider(self.attacker, index)

    def send_bad_frames(self) -> None:
        for index in range(self.swarm.params.nodes):
            if self.banned_at[index] is None:
                self.sent_before_ban[index] += 1
                self.swarm.sim.inject_frame(self.attacker, index, _bad_frame(self.rng))

    def reconnect(self) -> None:
        """Try every node that banned us: each must refuse (the ban outlasts the run)."""
        sim = self.swarm.sim
        for index, banned_at in enumerate(self.banned_at):
            node = sim.nodes[index]
            if banned_at is None or node.core is None:
                continue
            now = sim.local_time(node)
            if node.core.peer_connected(self.attacker, now):
                self.failures.append(f"node {index} took the banned attacker back")
                sim.connect_outsider(self.attacker, index)  # the shell goes on with the link
                continue
            core = node.core
            if isinstance(core, NodeCore) and core.peer_rules.refusal(self.attacker, now) != (
                REFUSED_BANNED
            ):
                self.failures.append(f"node {index} refused the attacker, but not as banned")
            self.reconnects_refused[index] += 1

    def watch(self, node: int, event: object) -> None:
        if isinstance(event, PeerMisbehaved) and event.peer == self.attacker:
            if self.banned_at[node] is not None:
                self.failures.append(f"node {node} dropped the attacker twice")
            self.banned_at[node] = self.swarm.sim.now

    def check(self, swarm: Swarm) -> list[str]:
        failures = list(self.failures)
        for index, banned_at in enumerate(self.banned_at):
            sent = self.sent_before_ban[index]
            if banned_at is None:
                failures.append(f"node {index} never banned the attacker ({sent} bad frames)")
            elif sent > BAD_FRAMES_BEFORE_BAN_MAX:
                failures.append(f"node {index} banned the attacker after {sent} bad frames")
            elif not self.reconnects_refused[index]:
                failures.append(f"node {index}: no reconnect was tried during its ban")
        return failures


def scenario_misbehaving_peer(
    seed: int, params: ScenarioParams, factory: FactoryBuilder | None
) -> RunResult:
    """An outside peer sends bad frames until banned, then keeps reconnecting: every node
    bans it within BAD_FRAMES_BEFORE_BAN_MAX bad frames, refuses each reconnect with
    `peer_banned`, and the swarm converges and finalizes."""
    attacker = KeyPair.from_seed(crypto.sha256(b"swarmd-sim-misbehaving-peer")).public_key
    swarm = build_swarm(
        "misbehaving-peer", seed, params, factory or node_core_factory, outsiders=(attacker,)
    )
    sim = swarm.sim
    attack = _Attack(swarm, attacker, seed)
    fund_end = bank_workload(swarm, params)
    start = sim.rng.uniform(fund_end, params.workload_s / 2)
    sim.at(start, attack.begin)
    for step in range(int(BAD_FRAMES_DURATION_S / BAD_FRAME_INTERVAL_S)):
        sim.at(start + 0.001 + step * BAD_FRAME_INTERVAL_S, attack.send_bad_frames)
    reconnect_at = start + RECONNECT_INTERVAL_S
    while reconnect_at < params.workload_s:
        sim.at(reconnect_at, attack.reconnect)
        reconnect_at += RECONNECT_INTERVAL_S
    sim.event_hooks.append(attack.watch)
    swarm.extra_checks.append(attack.check)
    swarm.healed_at = max(params.workload_s, start + BAD_FRAMES_DURATION_S)
    sim.run_until(swarm.healed_at)
    return finish(swarm)
