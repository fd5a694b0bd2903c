"""A minimal in-memory wiring of NodeCores with virtual time (the pattern of h11's
ConnectionPair, for N nodes). The full simulator with faults lives in protocol/simulator.py."""

from __future__ import annotations

import heapq
import random

from swarmd.protocol.genesis import Genesis
from swarmd.protocol.node_core import NodeCore, NodeCoreConfig
from swarmd.protocol.wallet import Author

from .helpers import keypair


class Swarm:
    def __init__(self, n: int = 4, *, seed: int = 1, delay_s: float = 0.01, **config: object):
        self.keys = [keypair(f"swarm-{seed}-{i}") for i in range(n)]
        self.genesis = Genesis.create("swarm", [k.public_key for k in self.keys], signup_reward=100)
        self.now = 0.0
        self.delay_s = delay_s
        self.rng = random.Random(seed)
        cfg = NodeCoreConfig(**config)  # type: ignore[arg-type]
        self.nodes = [
            NodeCore(
                genesis=self.genesis,
                keypair=k,
                config=cfg,
                rng=random.Random(seed * 100 + i),
                now=0.0,
            )
            for i, k in enumerate(self.keys)
        ]
        self.index = {node.node_id: i for i, node in enumerate(self.nodes)}
        self.queue: list[tuple[float, int, int, int, bytes]] = []
        self.counter = 0
        self.events: list[list[object]] = [[] for _ in self.nodes]
        self.cut: set[tuple[int, int]] = set()
        self.connect_all()
        self.members = [Author(k, self.genesis.network_id) for k in self.keys]

    def connect_all(self) -> None:
        """Every node connected to every other (again, after a node was replaced)."""
        for a in self.nodes:
            for b in self.nodes:
                if a is not b:
                    a.peer_connected(b.node_id, self.now)

    def author(self, label: str) -> Author:
        return Author(keypair(label), self.genesis.network_id)

    def flush(self, i: int) -> None:
        node = self.nodes[i]
        for peer, frame in node.frames_to_send():
            j = self.index[peer]
            if (i, j) in self.cut:
                continue
            self.counter += 1
            heapq.heappush(self.queue, (self.now + self.delay_s, self.counter, i, j, frame))
        while (event := node.next_event()) is not None:
            self.events[i].append(event)

    def submit(self, i: int, op: object) -> object:
        outcome = self.nodes[i].submit_op(op.envelope, self.now)  # type: ignore[attr-defined]
        self.flush(i)
        return outcome

    def run(self, until: float, *, max_steps: int = 200_000) -> None:
        for _ in range(max_steps):
            timers = [(t, i) for i, n in enumerate(self.nodes) if (t := n.get_timer()) is not None]
            next_frame = self.queue[0][0] if self.queue else None
            next_timer = min(timers) if timers else None
            candidates = [
                t for t in (next_frame, next_timer[0] if next_timer else None) if t is not None
            ]
            if not candidates or min(candidates) > until:
                self.now = until
                return
            if next_frame is not None and (next_timer is None or next_frame <= next_timer[0]):
                t, _, i, j, frame = heapq.heappop(self.queue)
                self.now = max(self.now, t)
                self.nodes[j].receive_frame(self.nodes[i].node_id, frame, self.now)
                self.flush(j)
            else:
                assert next_timer is not None
                t, i = next_timer
                self.now = max(self.now, t)
                self.nodes[i].handle_timer(self.now)
                self.flush(i)
        raise AssertionError("swarm did not reach the time bound within max_steps")
