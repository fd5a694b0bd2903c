"""The small in-memory harness the protocol tests use: frames in flight on virtual time (`Wire`)
and N real node cores wired by it (`Swarm`; the pattern of h11's ConnectionPair, for N nodes).

Unlike `Simulation` (simulator.py) there are no connection epochs, heartbeats, loss or crashes:
every frame takes exactly `delay_s`, a directed pair in `cut` drops what its sender flushes,
and at equal times frames are delivered before timers fire. Tests rely on that exact timing
(they run "until two delays after X"), so they get this model rather than the simulator's.
(Not to be confused with `swarm.Swarm`, one scenario run on the full simulator.)
Deterministic: one seed fixes the keys and every core's rng; nothing reads a clock.
"""

from __future__ import annotations

import heapq
import random

from ..crypto import KeyPair, sha256
from ..genesis import Genesis
from ..ledger import Outcome
from ..node_core import NodeCore, NodeCoreConfig, PersistPrecommit
from ..ops import Op
from ..wallet import Author

#: One frame in flight: (due time, send order, source index, destination index, payload).
InFlight = tuple[float, int, int, int, bytes]


def label_keypair(label: str) -> KeyPair:
    """A key fixed by a label (the same as tests/protocol/helpers.keypair)."""
    return KeyPair.from_seed(sha256(label.encode()))


class Wire:
    """Payloads in flight between numbered endpoints, in (due time, send order) order.

    `cut` holds directed (src, dst) pairs whose sends are dropped. `queue` is a heap and
    `counter` the last send order, public so a test's wiring can push a rewritten frame."""

    def __init__(self) -> None:
        self.queue: list[InFlight] = []
        self.counter = 0
        self.cut: set[tuple[int, int]] = set()

    def send(self, src: int, dst: int, payload: bytes, due: float) -> bool:
        """Queue `payload` for delivery at `due`; False when the pair is cut (dropped)."""
        if (src, dst) in self.cut:
            return False
        self.counter += 1
        heapq.heappush(self.queue, (due, self.counter, src, dst, payload))
        return True

    def next_due(self) -> float | None:
        return self.queue[0][0] if self.queue else None

    def pop(self) -> InFlight:
        """The earliest payload in flight (ties in send order)."""
        return heapq.heappop(self.queue)


class Swarm(Wire):
    """`n` council members' NodeCores, all connected, on a `Wire` with a fixed delay.

    `config` goes to `NodeCoreConfig`. Every event a node emits is kept in `events[i]`."""

    def __init__(self, n: int = 4, *, seed: int = 1, delay_s: float = 0.01, **config: object):
        super().__init__()
        self.keys = [label_keypair(f"swarm-{seed}-{i}") for i in range(n)]
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
        self.events: list[list[object]] = [[] for _ in self.nodes]
        self.connect_all()
        self.members = [Author(k, self.genesis.network_id) for k in self.keys]

    def connect_all(self) -> None:
        """Every node connected to every other (again, after a node was replaced)."""
        for a in self.nodes:
            for b in self.nodes:
                if a is not b:
                    a.peer_connected(b.node_id, self.now)

    def precommit_records(self, i: int) -> list[bytes]:
        """Node `i`'s kept precommits' records (`PersistPrecommit`), every one it emitted:
        with its last `PersistConsensusState`, for `NodeCore.restore(precommits=...)` (the
        core takes the ones the state names)."""
        return [e.data for e in self.events[i] if isinstance(e, PersistPrecommit)]

    def author(self, label: str) -> Author:
        return Author(label_keypair(label), self.genesis.network_id)

    def funded_claim(self, claimant: Author, handle: str, i: int = 0) -> Op:
        """Submit a signup grant for `claimant` (by the last member) to node `i` and return a
        claim receiving it, unsubmitted: state costs credits (`claim_unfunded` otherwise)."""
        grant = self.members[-1].grant(claimant.key, self.genesis.signup_reward)
        assert self.submit(i, grant).status == "accepted", "the signup grant was refused"
        return claimant.claim(handle, deps=[grant.op_id])

    def flush(self, i: int) -> None:
        """Put node `i`'s frames on the wire and collect its events."""
        node = self.nodes[i]
        for peer, frame in node.frames_to_send():
            self.send(i, self.index[peer], frame, self.now + self.delay_s)
        while (event := node.next_event()) is not None:
            self.events[i].append(event)

    def submit(self, i: int, op: Op) -> Outcome:
        outcome = self.nodes[i].submit_op(op.envelope, self.now)
        self.flush(i)
        return outcome

    def _next_timer(self) -> tuple[float, int] | None:
        timers = [(t, i) for i, n in enumerate(self.nodes) if (t := n.get_timer()) is not None]
        return min(timers) if timers else None

    def run(self, until: float, *, max_steps: int = 200_000) -> None:
        """Deliver frames and fire timers in time order up to `until` (frames first at ties)."""
        for _ in range(max_steps):
            next_frame = self.next_due()
            next_timer = self._next_timer()
            candidates = [
                t for t in (next_frame, next_timer[0] if next_timer else None) if t is not None
            ]
            if not candidates or min(candidates) > until:
                self.now = until
                return
            if next_frame is not None and (next_timer is None or next_frame <= next_timer[0]):
                t, _, i, j, frame = self.pop()
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
