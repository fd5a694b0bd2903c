"""The core's durability-before-send contract (node_core/events.py's module comment): every
Persist* event carries the next write id, and every frame names the newest send barrier."""

from __future__ import annotations

import random

from swarmd.protocol.node_core import (
    SEND_BARRIERS,
    NodeCore,
    OutgoingFrame,
    PersistCheckpoint,
    PersistConsensusState,
    PersistEvent,
    PersistOps,
)
from swarmd.protocol.sim.harness import Swarm


class ContractSwarm(Swarm):
    """The harness, reading `outgoing()` and checking each frame's `after_write` against the
    send barriers its node emitted so far."""

    def __init__(self, n: int = 4) -> None:
        self.writes: list[list[int]] = [[] for _ in range(n)]
        self.barrier: list[int] = [0] * n
        self.frames: list[list[OutgoingFrame]] = [[] for _ in range(n)]
        super().__init__(n)

    def flush(self, i: int) -> None:
        node = self.nodes[i]
        frames = node.outgoing()
        while (event := node.next_event()) is not None:
            self.events[i].append(event)
            if isinstance(event, PersistEvent):
                self.writes[i].append(event.write_id)
                if isinstance(event, SEND_BARRIERS):
                    self.barrier[i] = event.write_id
        for out in frames:
            # Every barrier the input emitted is out before its frames are handed over.
            assert out.after_write == self.barrier[i]
            self.frames[i].append(out)
            self.send(i, self.index[out.peer], out.frame, self.now + self.delay_s)


def test_writes_are_numbered_in_order_and_frames_wait_for_the_newest_barrier() -> None:
    swarm = ContractSwarm(4)
    for i in range(4):
        person = swarm.author(f"person-{i}")
        assert swarm.submit(i, swarm.members[i].grant(person.key, 100)).status == "accepted"
    swarm.run(until=8.0)
    for i, core in enumerate(swarm.nodes):
        assert core.final_height >= 1
        kinds = {type(e) for e in swarm.events[i]}
        assert {PersistOps, PersistCheckpoint, PersistConsensusState} <= kinds
        # 1, 2, 3, ... with no gap: the shell can tell "write n durable" from the order.
        assert swarm.writes[i] == list(range(1, len(swarm.writes[i]) + 1))
        waits = [out.after_write for out in swarm.frames[i]]
        assert waits == sorted(waits)  # frames never wait for an older write than before
        assert waits[-1] > 0  # a member's votes wait for its signing state


def test_ops_alone_are_no_send_barrier() -> None:
    swarm = ContractSwarm(2)
    swarm.run(until=0.0)
    before = swarm.barrier[0]
    op = swarm.members[0].grant(swarm.author("no barrier").key, 100)
    assert swarm.submit(0, op).status == "accepted"
    persisted = [e for e in swarm.events[0] if isinstance(e, PersistOps)]
    assert persisted and persisted[-1].write_id > before
    assert swarm.frames[0][-1].after_write == before  # the op leaves without waiting


def test_a_restored_core_numbers_its_writes_from_one_again() -> None:
    swarm = ContractSwarm(4)
    swarm.submit(1, swarm.members[1].grant(swarm.author("restored").key, 100))
    swarm.run(until=6.0)
    core = swarm.nodes[0]
    assert core.final_height >= 1
    envelopes = [env for e in swarm.events[0] if isinstance(e, PersistOps) for env in e.envelopes]
    bundles = [b for h in range(1, core.final_height + 1) if (b := core.bundle(h)) is not None]
    restored = NodeCore.restore(
        genesis=swarm.genesis,
        keypair=swarm.keys[0],
        config=core.config,
        rng=random.Random(5),
        now=swarm.now,
        envelopes=envelopes,
        bundles=bundles,
    )
    # The replay's writes came from the store: nothing it did is a write due, so a frame
    # handed over now waits for nothing.
    restored.peer_connected(swarm.keys[1].public_key, swarm.now)
    assert restored.final_height == core.final_height
    assert restored.next_event() is None
    assert all(out.after_write == 0 for out in restored.outgoing())
    grant = swarm.members[0].grant(swarm.author("after restore").key, 100)
    assert restored.submit_op(grant.envelope, swarm.now).status == "accepted"
    writes = []
    while (event := restored.next_event()) is not None:
        if isinstance(event, PersistEvent):
            writes.append(event.write_id)
    assert writes and writes == list(range(1, len(writes) + 1))
