"""The deterministic swarm simulator: N node cores over a seeded virtual network (sans-I/O).

A discrete-event loop (a heap of ``(time, seq, action)``) drives pure node cores with virtual
time over the network of network.py (per-link delay, jitter, loss, duplication, partitions,
connection epochs). Faults are partitions, crashes (the core is dropped; its durable store
survives) and restarts (the core is rebuilt from the durable store), store wipes and per-node
clock skew.

Persistence is modelled like the shell's store, and the simulator honours the core's
durability-before-send contract (protocol/node_core/events.py): each ``Persist*`` event (ops,
checkpoint, signing state, rollback certificate) is a write that becomes durable
``commit_delay_s`` after the event is drained (at once when the delay is 0), in write order;
each frame waits until the write its ``after_write`` names is durable, in the order the core
handed frames over; a crash loses the uncommitted writes and the frames waiting on them, and
the restarted node restores from what was durable. A client op counts as *acknowledged* only
once it is durable on the node it was submitted to. Core events are dispatched by their class
(`EVENT_HANDLERS`), so renaming an event class breaks the import here instead of silently
stopping persistence.

Determinism: every random choice comes from one `random.Random(seed)`, every iteration is over
lists or sorted keys, and nothing reads a clock. The trace hash is sha256 over every delivered
frame's ``(time, src, dst, sha256(frame))`` and every core event's canonical repr, in order, so
the same seed and the same code give the same trace hash in any process.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from ..crypto import KeyPair, VerifiedCache, remembering_verifications
from ..ledger import Ledger, OpExcluded, Outcome, StateRederived
from ..node_core import (
    CatchUpStarted,
    EquivocationRecorded,
    OpsReverted,
    OutgoingFrame,
    PeerMisbehaved,
    PersistCheckpoint,
    PersistConsensusState,
    PersistOps,
    PersistPrecommit,
    PersistRollback,
    SyncSessionFinished,
)
from ..ops import op_id_of
from .errors import SimActionsExceededError, SimulationError
from .network import Links, NetworkConfig, pair
from .trace import canonical_repr

# --- bounds ----------------------------------------------------------------------------------

#: Actions one simulation may execute. A scenario of a few hundred ops over ~60 virtual seconds
#: runs well under 10**6 actions; a core that keeps re-arming a timer in the past would spin
#: the loop forever, so the bound turns that bug into a reported failure instead of a hang.
SIM_ACTIONS_MAX = 3_000_000
#: Frames one node may hand over per input call. A core flushes at most a few hundred per call;
#: more means a runaway sender, reported rather than simulated.
SIM_FRAMES_PER_DRAIN_MAX = 100_000
#: Events one node may emit per input call (a rederive of a few hundred ops emits ~1000).
SIM_EVENTS_PER_DRAIN_MAX = 1_000_000
#: Timer firings at one node at one virtual instant: a core whose timer stays in the past after
#: `handle_timer` is re-armed a little later instead of spinning (counted as a failure).
SIM_TIMER_REFIRES_MAX = 1_000
#: Successful signature verifications one simulation remembers (crypto.VerifiedCache, 32-byte
#: digests: ~5 MB when full). A CI scenario makes a few hundred distinct ones; the documented
#: large open-network run (47 nodes) a few thousand. Full, the cache starts over (slower,
#: never different).
SIM_VERIFIED_CACHE_ENTRIES_MAX = 1 << 16


# --- the core contract -----------------------------------------------------------------------


class SimCore(Protocol):
    """What the simulator needs from a node core (`swarmd.protocol.node_core.NodeCore`)."""

    @property
    def node_id(self) -> bytes: ...

    @property
    def ledger(self) -> Ledger: ...

    def peer_connected(self, peer_id: bytes, now: float) -> object: ...

    def peer_disconnected(self, peer_id: bytes, now: float) -> None: ...

    def receive_frame(self, peer_id: bytes, frame: bytes, now: float) -> None: ...

    def submit_op(self, envelope: bytes, now: float) -> Outcome: ...

    def handle_timer(self, now: float) -> None: ...

    def get_timer(self) -> float | None: ...

    def outgoing(self) -> list[OutgoingFrame]: ...

    def next_event(self) -> object | None: ...

    def status(self) -> dict[str, Any]: ...


@dataclass
class DurableStore:
    """What a node's store holds across a crash: op envelopes, checkpoint bundles and the
    newest state snapshot."""

    envelopes: list[bytes] = field(default_factory=list)
    bundles: list[bytes] = field(default_factory=list)
    op_ids: set[bytes] = field(default_factory=set)
    # Consensus signing state: the latest durable PersistConsensusState data, for
    # NodeCore.restore(consensus_state=...).
    consensus_state: bytes | None = None
    # Kept precommits' records (PersistPrecommit) by id, for NodeCore.restore(precommits=...).
    precommits: dict[bytes, bytes] = field(default_factory=dict)
    # The newest PersistCheckpoint.snapshot blob (durable with its bundle), for
    # NodeCore.restore(snapshot=...).
    snapshot: bytes | None = None
    # Accepted rollback certificates in order (PersistRollback) and the ids of the ops they
    # reverted (OpsReverted), for NodeCore.restore(certificates=..., reverted_ops=...).
    certificates: list[bytes] = field(default_factory=list)
    reverted_ops: list[bytes] = field(default_factory=list)

    def copy(self) -> DurableStore:
        return DurableStore(
            list(self.envelopes),
            list(self.bundles),
            set(self.op_ids),
            self.consensus_state,
            dict(self.precommits),
            self.snapshot,
            list(self.certificates),
            list(self.reverted_ops),
        )


@dataclass
class PendingWrite:
    """A write drained from a core, durable at `commit_at` unless the node crashes first."""

    commit_at: float
    write_id: int
    envelopes: tuple[bytes, ...] = ()
    bundles: tuple[bytes, ...] = ()
    snapshot: bytes = b""
    consensus_state: bytes | None = None
    precommit_ids: tuple[bytes, ...] = ()
    precommit: tuple[bytes, bytes] | None = None
    certificate: bytes | None = None
    #: OpsReverted ids drained after this write: stored in the same transaction.
    reverted_ops: list[bytes] = field(default_factory=list)


class CoreFactory(Protocol):
    """Builds a node's core: fresh when `store` is None, else restored from it."""

    def __call__(
        self,
        index: int,
        keypair: KeyPair,
        rng: random.Random,
        now: float,
        store: DurableStore | None,
    ) -> SimCore: ...


# --- faults --------------------------------------------------------------------------------


class FaultKind(Enum):
    PARTITION = "partition"
    CRASH = "crash"
    WIPE = "wipe"
    FLOOD = "flood"
    FORK = "fork"
    EQUIVOCATION = "equivocation"


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    injected_at: float
    nodes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Detection:
    """A sign that some node noticed a fault: a lost peer, misbehaviour or a divergence."""

    time: float
    node: int
    what: str


# --- nodes -----------------------------------------------------------------------------------


@dataclass
class SimNode:
    index: int
    keypair: KeyPair
    skew_s: float
    core: SimCore | None = None
    incarnation: int = 0
    durable: DurableStore = field(default_factory=DurableStore)
    #: Writes not yet durable, in write order; lost on crash.
    uncommitted: list[PendingWrite] = field(default_factory=list)
    #: The newest durable write id of this incarnation's core (they number from 1).
    durable_write: int = 0
    #: Frames waiting for their write (`after_write`), in the order the core handed them over.
    held: deque[OutgoingFrame] = field(default_factory=deque)
    timer_generation: int = 0
    timer_at: float | None = None
    timer_refires: int = 0
    timer_refire_at: float = -1.0

    @property
    def node_id(self) -> bytes:
        return self.keypair.public_key

    @property
    def alive(self) -> bool:
        return self.core is not None


@dataclass
class SyncStats:
    sessions: int = 0
    within_cadence: int = 0


Action = Callable[[], object]
EventHook = Callable[[int, object], None]


class Simulation:
    """Node cores over a seeded virtual network; call the fault methods from scheduled actions.

    `now` is the true virtual time; node `i` sees ``now + skew_i``.
    """

    def __init__(
        self,
        *,
        seed: int,
        keypairs: list[KeyPair],
        factory: CoreFactory,
        network: NetworkConfig | None = None,
        outsiders: Iterable[bytes] = (),
        edges: Iterable[tuple[int, int]] | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.network = network or NetworkConfig()
        self.factory = factory
        self.now = 0.0
        self.actions = 0
        self._heap: list[tuple[float, int, Action]] = []
        self._seq = 0
        self._trace = hashlib.sha256()
        #: Signature verifications that succeeded in this simulation (see `run_until`).
        self.verified = VerifiedCache(SIM_VERIFIED_CACHE_ENTRIES_MAX)
        self.frames_delivered = 0
        self.frames_lost = 0
        self.events_seen = 0
        self.faults: list[Fault] = []
        self.detections: list[Detection] = []
        self.sync = SyncStats()
        self.errors: list[str] = []
        self.event_hooks: list[EventHook] = []
        #: Called with (node index, op id) when an op becomes durable on a node.
        self.commit_hooks: list[Callable[[int, bytes], None]] = []
        #: Called with (sender id, receiver index, frame) for every delivered frame.
        self.frame_hooks: list[Callable[[bytes, int, bytes], None]] = []
        #: Outsiders each node stopped listening to (it banned or disconnected them).
        self.banned: set[tuple[int, bytes]] = set()
        skew = self.network.clock_skew_s_max
        self.nodes = [
            SimNode(index, keypair, self.rng.uniform(-skew, skew) if skew else 0.0)
            for index, keypair in enumerate(keypairs)
        ]
        self._index_of = {node.node_id: node.index for node in self.nodes}
        if len(self._index_of) != len(self.nodes):
            raise SimulationError("node keys must be distinct")
        #: Peers outside the simulated cores (e.g. a flooding attacker): frames to them vanish.
        self.outsiders = list(outsiders)
        self._outsider_set = frozenset(self.outsiders)
        #: The links shells keep (None: a full mesh). A bounded mesh (mesh.py) adds links with
        #: `connect`; a crash drops the dead node's links and its restart dials again.
        self.edges: set[tuple[int, int]] | None = None if edges is None else set()
        self.links = Links(self.network, self.rng)
        self._outsider_frames: list[tuple[bytes, bytes]] = []
        for node in self.nodes:
            self._start_core(node, None)
        if edges is None:
            for a in range(len(self.nodes)):
                for b in range(a + 1, len(self.nodes)):
                    self._link_up(a, b)
        else:
            for a, b in sorted(pair(a, b) for a, b in edges):
                self.connect(a, b)

    # --- the event loop --------------------------------------------------------------------

    def at(self, time: float, action: Action) -> None:
        """Run `action` at virtual `time` (not before now). Ties run in scheduling order."""
        self._seq += 1
        heapq.heappush(self._heap, (max(time, self.now), self._seq, action))

    def run_until(self, time: float, stop: Callable[[], bool] | None = None) -> None:
        """Execute actions up to `time` (or until `stop()` is true after an action).

        Every simulated node verifies the same votes, bundles and ops: verifications that
        succeeded once are remembered for the whole simulation (`self.verified`)."""
        with remembering_verifications(self.verified):
            while self._heap and self._heap[0][0] <= time:
                self.actions += 1
                if self.actions > SIM_ACTIONS_MAX:
                    raise SimActionsExceededError(f"more than {SIM_ACTIONS_MAX} actions")
                when, _, action = heapq.heappop(self._heap)
                self.now = when
                action()
                if stop is not None and stop():
                    return
        self.now = max(self.now, time)

    def local_time(self, node: SimNode) -> float:
        return self.now + node.skew_s

    def trace_hash(self) -> str:
        return self._trace.copy().hexdigest()

    # --- driving one core ------------------------------------------------------------------

    def _start_core(self, node: SimNode, store: DurableStore | None) -> None:
        rng = random.Random(self.rng.getrandbits(64))
        node.incarnation += 1
        node.durable_write = 0
        node.core = self.factory(node.index, node.keypair, rng, self.local_time(node), store)
        # Consensus signing state: a factory that does not pass store.consensus_state to
        # NodeCore.restore gets it handed over here (resuming twice is a no-op).
        resume = getattr(node.core, "resume_consensus", None)
        if store is not None and store.consensus_state is not None and callable(resume):
            resume(store.consensus_state, self.local_time(node), list(store.precommits.values()))
        node.timer_at = None
        self._after_input(node)

    def _after_input(self, node: SimNode) -> None:
        """Drain frames and events of `node` and re-arm its timer (after every input call)."""
        core = node.core
        if core is None:
            return
        frames = core.outgoing()
        if len(frames) > SIM_FRAMES_PER_DRAIN_MAX:
            self.errors.append(f"node {node.index} flushed {len(frames)} frames at once")
        for _ in range(SIM_EVENTS_PER_DRAIN_MAX):
            event = core.next_event()
            if event is None:
                break
            self._on_event(node, event)
        # The writes these frames wait for were just drained (and, without a commit delay,
        # are durable already): send what may leave, hold the rest.
        if node.core is not core:
            return  # an event hook crashed the node: its frames are gone with it
        node.held.extend(frames)
        self._release_frames(node)
        self._arm_timer(node)

    def _release_frames(self, node: SimNode) -> None:
        """Send the held frames whose write is durable, in order (a frame never overtakes)."""
        held = node.held
        while held and held[0].after_write <= node.durable_write:
            out = held.popleft()
            self._send(node, out.peer, out.frame)

    def _arm_timer(self, node: SimNode) -> None:
        assert node.core is not None
        local = node.core.get_timer()
        if local is None:
            if node.timer_at is not None:
                node.timer_generation += 1
                node.timer_at = None
            return
        when = max(local - node.skew_s, self.now)
        if when == node.timer_at:
            return
        node.timer_generation += 1
        node.timer_at = when
        generation, incarnation = node.timer_generation, node.incarnation

        def fire() -> None:
            if node.incarnation != incarnation or node.timer_generation != generation:
                return
            node.timer_at = None
            self._fire_timer(node, local)

        self.at(when, fire)

    def _fire_timer(self, node: SimNode, deadline_local: float) -> None:
        assert node.core is not None
        if node.timer_refire_at == self.now:
            node.timer_refires += 1
            if node.timer_refires > SIM_TIMER_REFIRES_MAX:
                self.errors.append(f"node {node.index} timer stuck at {self.now:.3f}")
                node.timer_refires = 0
                self.at(self.now + 0.1, lambda: self._after_input(node))
                return
        else:
            node.timer_refire_at, node.timer_refires = self.now, 0
        # (t - skew) + skew may round to just below t: the core must see its deadline reached.
        node.core.handle_timer(max(self.local_time(node), deadline_local))
        self._after_input(node)

    def _on_event(self, node: SimNode, event: object) -> None:
        self.events_seen += 1
        self._trace.update(f"E|{self.now!r}|{node.index}|{canonical_repr(event)}\n".encode())
        handler = EVENT_HANDLERS.get(type(event))
        if handler is not None:
            handler(self, node, event)
        for hook in self.event_hooks:
            hook(node.index, event)

    def _on_persist_ops(self, node: SimNode, event: PersistOps) -> None:
        self._persist(node, event.write_id, envelopes=tuple(event.envelopes))

    def _on_persist_checkpoint(self, node: SimNode, event: PersistCheckpoint) -> None:
        self._persist(node, event.write_id, bundles=(event.bundle,), snapshot=event.snapshot)

    def _on_persist_precommit(self, node: SimNode, event: PersistPrecommit) -> None:
        self._persist(node, event.write_id, precommit=(event.precommit_id, event.data))

    def _on_persist_consensus_state(self, node: SimNode, event: PersistConsensusState) -> None:
        self._persist(
            node, event.write_id, consensus_state=event.data, precommit_ids=event.precommit_ids
        )

    def _on_persist_rollback(self, node: SimNode, event: PersistRollback) -> None:
        self._persist(node, event.write_id, certificate=event.certificate)

    def _on_ops_reverted(self, node: SimNode, event: OpsReverted) -> None:
        # Stored with the write drained before it (its certificate's): lost with it.
        if node.uncommitted:
            node.uncommitted[-1].reverted_ops.extend(event.op_ids)
        else:
            node.durable.reverted_ops.extend(event.op_ids)

    def _on_sync_session_finished(self, node: SimNode, event: SyncSessionFinished) -> None:
        self.sync.sessions += 1
        self.sync.within_cadence += bool(event.within_cadence)
        if event.missing:
            self.detect(node.index, "sync_found_missing")

    def _on_detection(self, node: SimNode, event: object) -> None:
        """The core noticed something wrong: a detection named after the event class."""
        self.detect(node.index, type(event).__name__)

    def _on_peer_misbehaved(self, node: SimNode, event: PeerMisbehaved) -> None:
        self._on_detection(node, event)
        self._drop_peer(node, event.peer)

    def detect(self, node: int, what: str) -> None:
        self.detections.append(Detection(self.now, node, what))

    # --- persistence -----------------------------------------------------------------------

    def _drop_peer(self, node: SimNode, peer: object) -> None:
        """The core dropped a peer (misbehaviour): the shell closes that connection."""
        if not isinstance(peer, bytes):
            return
        if peer in self._outsider_set:
            self.banned.add((node.index, peer))
            return
        other = self._index_of.get(peer)
        if other is not None:
            self.errors.append(f"node {node.index} dropped honest node {other} as misbehaving")
            self._link_down(node.index, other)

    def _persist(self, node: SimNode, write_id: int, **what: Any) -> None:
        """A write of `node`'s core: durable after the commit delay, in write order."""
        write = PendingWrite(self.now + self.network.commit_delay_s, write_id, **what)
        if self.network.commit_delay_s == 0:
            self._commit(node, write)
            return
        node.uncommitted.append(write)
        incarnation = node.incarnation

        def commit() -> None:
            if node.incarnation != incarnation or not node.uncommitted:
                return
            self._commit(node, node.uncommitted.pop(0))
            self._release_frames(node)

        self.at(write.commit_at, commit)

    def _commit(self, node: SimNode, write: PendingWrite) -> None:
        store = node.durable
        store.bundles.extend(write.bundles)
        if write.snapshot:
            store.snapshot = write.snapshot
        if write.precommit is not None:
            store.precommits[write.precommit[0]] = write.precommit[1]
        if write.consensus_state is not None:
            store.consensus_state = write.consensus_state
            named = set(write.precommit_ids)
            store.precommits = {k: v for k, v in store.precommits.items() if k in named}
        if write.certificate is not None:
            store.certificates.append(write.certificate)
        store.reverted_ops.extend(write.reverted_ops)
        node.durable_write = max(node.durable_write, write.write_id)
        for envelope in write.envelopes:
            op_id = op_id_of(envelope)
            if op_id not in store.op_ids:
                store.op_ids.add(op_id)
                store.envelopes.append(envelope)
                for hook in self.commit_hooks:
                    hook(node.index, op_id)

    # --- the network -----------------------------------------------------------------------

    def reachable(self, a: int, b: int) -> bool:
        return self.links.reachable(a, b)

    def _send(self, node: SimNode, peer_id: bytes, frame: bytes) -> None:
        dst_index = self._index_of.get(peer_id)
        if dst_index is None:
            if peer_id in self._outsider_set:
                self._outsider_frames.append((node.node_id, frame))
            else:
                self.errors.append(f"node {node.index} sent to unknown peer {peer_id.hex()[:16]}")
            return
        link = self.links.link(node.index, dst_index)
        if not link.up:
            return  # the connection is gone: the transport refuses the send
        if link.broken:
            self.frames_lost += 1
            return
        delays = self.links.delays()
        if delays is None:
            self.frames_lost += 1
            return
        for delay in delays:
            self._schedule_delivery(node.index, dst_index, link.epoch, frame, self.now + delay)

    def _schedule_delivery(self, src: int, dst: int, epoch: int, frame: bytes, when: float) -> None:
        def deliver() -> None:
            link = self.links.link(src, dst)
            target = self.nodes[dst]
            if not link.up or link.epoch != epoch or target.core is None:
                self.frames_lost += 1
                return
            if not self.reachable(src, dst):
                self.frames_lost += 1
                return
            self._deliver(self.nodes[src].node_id, target, frame)

        self.at(when, deliver)

    def _deliver(self, src_id: bytes, target: SimNode, frame: bytes) -> None:
        assert target.core is not None
        self.frames_delivered += 1
        digest = hashlib.sha256(frame).hexdigest()
        self._trace.update(f"F|{self.now!r}|{src_id.hex()}|{target.index}|{digest}\n".encode())
        for hook in self.frame_hooks:
            hook(src_id, target.index, frame)
        target.core.receive_frame(src_id, frame, self.local_time(target))
        self._after_input(target)

    def connect(self, a: int, b: int) -> bool:
        """A shell dials: keep the link between `a` and `b` (a bounded mesh); True when it
        is up (both cores took it and they can reach each other)."""
        if self.edges is None:
            raise SimulationError("connect() is for a bounded mesh (Simulation(edges=...))")
        key = pair(a, b)
        self.edges.add(key)
        self._link_up(*key)
        if not self.links.link(*key).up:
            self.edges.discard(key)
        return self.links.link(*key).up

    def neighbours(self, index: int) -> list[int]:
        """The nodes `index` keeps a link with (every other node in a full mesh)."""
        if self.edges is None:
            return [other for other in range(len(self.nodes)) if other != index]
        return sorted(b if a == index else a for a, b in self.edges if index in (a, b))

    def _link_up(self, a: int, b: int) -> None:
        link = self.links.link(a, b)
        node_a, node_b = self.nodes[a], self.nodes[b]
        if link.up or node_a.core is None or node_b.core is None or not self.reachable(a, b):
            return
        if self.edges is not None and pair(a, b) not in self.edges:
            return
        now_a = self.local_time(node_a)
        if self.edges is not None and not node_a.core.peer_connected(node_b.node_id, now_a):
            return  # refused (slots, ban): a full mesh never sees a refusal
        link.up = True
        link.broken = False
        link.epoch += 1
        if self.edges is None:
            node_a.core.peer_connected(node_b.node_id, now_a)
        self._after_input(node_a)
        if node_b.core is not None:
            taken = node_b.core.peer_connected(node_a.node_id, self.local_time(node_b))
            if self.edges is not None and not taken:
                link.up = False  # refused: the dialer's side is closed again, no loss seen
                if node_a.core is not None:
                    node_a.core.peer_disconnected(node_b.node_id, now_a)
                    self._after_input(node_a)
                return
            self._after_input(node_b)

    def _link_down(self, a: int, b: int) -> None:
        link = self.links.link(a, b)
        if not link.up:
            return
        link.up = False
        for here, there in ((a, b), (b, a)):
            node = self.nodes[here]
            if node.core is not None:
                node.core.peer_disconnected(self.nodes[there].node_id, self.local_time(node))
                self.detect(here, "peer_lost")
                self._after_input(node)

    # --- outsiders (attackers) -------------------------------------------------------------

    def connect_outsider(self, outsider_id: bytes, node: int) -> bool:
        """An outsider's link to `node`: True when its core took it."""
        target = self.nodes[node]
        if target.core is None:
            return False
        taken = bool(target.core.peer_connected(outsider_id, self.local_time(target)))
        self._after_input(target)
        return taken

    def inject_frame(self, outsider_id: bytes, node: int, frame: bytes) -> None:
        """Deliver a frame from an outsider now (it bypasses loss: the attacker is adjacent)."""
        target = self.nodes[node]
        if target.core is not None and (node, outsider_id) not in self.banned:
            self._deliver(outsider_id, target, frame)

    def take_outsider_frames(self) -> list[tuple[bytes, bytes]]:
        """Frames honest nodes sent to outsiders since the last call: (sender id, frame)."""
        frames, self._outsider_frames = self._outsider_frames, []
        return frames

    # --- faults ----------------------------------------------------------------------------

    def partition(self, *groups: Iterable[int]) -> None:
        """Cut every link between different groups (nodes in no group keep all their links)."""
        involved = self.links.cut_between(groups)
        self.faults.append(Fault(FaultKind.PARTITION, self.now, tuple(involved)))
        for a, b in sorted(self.links.cut):
            self.at(self.now + self.network.detect_s, functools.partial(self._detect_cut, a, b))

    def _detect_cut(self, a: int, b: int) -> None:
        if not self.reachable(a, b):
            self._link_down(a, b)

    def heal(self) -> None:
        for a, b in self.links.heal():
            self.at(self.now + self.network.reconnect_s, functools.partial(self._reconnect, a, b))

    def _reconnect(self, a: int, b: int) -> None:
        if self.links.link(a, b).up:
            # The heartbeat had not noticed the cut yet: the old connection is replaced.
            self._link_down(a, b)
        self._link_up(a, b)

    def crash(self, index: int, *, wipe: bool = False) -> None:
        """Kill a node: its core and uncommitted writes are gone; `wipe` also loses its store."""
        node = self.nodes[index]
        if node.core is None:
            return
        node.core = None
        node.incarnation += 1
        # Uncommitted writes are lost, and so are the frames that waited for them.
        node.uncommitted.clear()
        node.held.clear()
        node.timer_at = None
        if wipe:
            # The signing state and its precommits' records: kept, like the daemon's files beside
            # a wiped database; losing them would let the node sign again where it signed.
            old = node.durable
            node.durable = DurableStore(consensus_state=old.consensus_state)
            node.durable.precommits = old.precommits
        kind = FaultKind.WIPE if wipe else FaultKind.CRASH
        self.faults.append(Fault(kind, self.now, (index,)))
        for other in self.neighbours(index):
            link = self.links.link(index, other)
            link.epoch += 1  # frames in flight to or from the dead node are lost
            link.broken = link.up
            self.at(
                self.now + self.network.detect_s,
                functools.partial(self._detect_dead, index, other),
            )

    def _detect_dead(self, dead: int, other: int) -> None:
        if self.nodes[dead].core is None:
            self._link_down(dead, other)
            if self.edges is not None:
                self.edges.discard(pair(dead, other))  # its restart dials again

    def restart(self, index: int) -> None:
        """Rebuild a crashed node from its durable store and reconnect it."""
        node = self.nodes[index]
        if node.core is not None:
            return
        self._start_core(node, node.durable.copy())
        if self.edges is not None:
            # A bounded mesh: the restarted node dials again (mesh.py); links the survivors
            # still believe up end with the new handshake.
            for other in self.neighbours(index):
                self._forget_restarted(index, other)
            return
        for other in self.neighbours(index):
            if other != index:
                self.at(
                    self.now + self.network.reconnect_s,
                    functools.partial(self._reconnect_restarted, index, other),
                )

    def _forget_restarted(self, index: int, other: int) -> None:
        assert self.edges is not None
        self.edges.discard(pair(index, other))
        link = self.links.link(index, other)
        if link.up:
            link.up = False
            peer = self.nodes[other]
            if peer.core is not None:
                peer.core.peer_disconnected(self.nodes[index].node_id, self.local_time(peer))
                self.detect(other, "peer_lost")
                self._after_input(peer)

    def _reconnect_restarted(self, index: int, other: int) -> None:
        link = self.links.link(index, other)
        if link.up:
            link.up = False  # the restarted side has no connection any more
            peer = self.nodes[other]
            if peer.core is not None:
                peer.core.peer_disconnected(self.nodes[index].node_id, self.local_time(peer))
                self.detect(other, "peer_lost")  # the new handshake shows the peer restarted
                self._after_input(peer)
        self._link_up(index, other)

    def record_fault(self, kind: FaultKind, nodes: tuple[int, ...]) -> None:
        """Record a fault the scenario injects itself (a flood, a fork)."""
        self.faults.append(Fault(kind, self.now, nodes))

    # --- clients ---------------------------------------------------------------------------

    def call(self, index: int, label: str, action: Callable[[SimCore, float], object]) -> bool:
        """An operator acts on node `index` now (e.g. a council member's shell proposing a
        rollback): `action(core, local time)`, then its frames and events go out as after any
        input. False if the node is down."""
        node = self.nodes[index]
        if node.core is None:
            return False
        action(node.core, self.local_time(node))
        self._trace.update(f"C|{self.now!r}|{index}|{label}\n".encode())
        self._after_input(node)
        return True

    def submit(self, index: int, envelope: bytes) -> Outcome | None:
        """A client submits an op to node `index` now; None if the node is down."""
        node = self.nodes[index]
        if node.core is None:
            return None
        outcome = node.core.submit_op(envelope, self.local_time(node))
        self._trace.update(f"S|{self.now!r}|{index}|{canonical_repr(outcome)}\n".encode())
        self._after_input(node)
        return outcome


EventHandler = Callable[[Simulation, SimNode, Any], None]

#: What the simulator (the shell) does with each core event class; other events only go to
#: the trace and the event hooks. Detections name the event class (`Detection.what`).
EVENT_HANDLERS: dict[type, EventHandler] = {
    PersistOps: Simulation._on_persist_ops,
    PersistCheckpoint: Simulation._on_persist_checkpoint,
    PersistPrecommit: Simulation._on_persist_precommit,
    PersistConsensusState: Simulation._on_persist_consensus_state,
    PersistRollback: Simulation._on_persist_rollback,
    OpsReverted: Simulation._on_ops_reverted,
    SyncSessionFinished: Simulation._on_sync_session_finished,
    CatchUpStarted: Simulation._on_detection,
    OpExcluded: Simulation._on_detection,
    StateRederived: Simulation._on_detection,
    EquivocationRecorded: Simulation._on_detection,
    # Misbehaviour: detected, and the shell drops the peer's connection at once.
    PeerMisbehaved: Simulation._on_peer_misbehaved,
}
