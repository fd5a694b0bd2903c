"""The daemon's driver: feeds a `NodeCore` from the network, clients and its timer.

Like aioquic's asyncio protocol driving a QUIC connection: every input (a peer frame, a peer
coming or going, a client submission, an admin mode change, the timer) calls the core and then
`pump()`, which sends the core's frames through the transports, handles its events (writes go
to the group committer, runtime/commits.py; everything else to metrics and log lines,
runtime/observe.py, and to event subscribers, http/events.py) and re-arms the single timer at
`core.get_timer()`.

Durability: a client submission is acknowledged only after the commit holding it returned
(`submit`), and the driver honours the core's durability-before-send contract (the module
comment of protocol/node_core/events.py): each frame waits in `HeldFrames` until the write its
`after_write` names is durable, in the order the core handed the frames over, and is dropped
when that write's commit failed. A restarted validator then always knows every vote it ever
sent (no equivocation).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.metadata
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from swarmd.protocol import crypto
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.ledger import (
    CreditReceived,
    HandleConflictRaised,
    OpAccepted,
    OpEvicted,
    Outcome,
)
from swarmd.protocol.limits import HELD_FRAMES_MAX
from swarmd.protocol.node_core import (
    SEND_BARRIERS,
    EpochEntered,
    Mode,
    NodeCore,
    NodeEvent,
    OpsReverted,
    OutgoingFrame,
    PeerMisbehaved,
    PersistCheckpoint,
    PersistConsensusState,
    PersistOps,
    PersistPrecommit,
    PersistRollback,
    SnapshotDue,
    StoredOpsWanted,
)
from swarmd.protocol.ops import Op
from swarmd.protocol.rollback import RollbackCertificate

from ..config import NodeConfig, mesh_targets, transport_config
from ..http.events import EventListener, EventStream
from ..logs import get_logger
from ..metrics import NodeMetrics
from ..transport import LinkTransport, PeerInfo, WebRtcTransport, WebSocketTransport
from .bans import PeerGuard
from .commits import NodeWrites
from .dialer import Dialer, dial_state_dict
from .exchange import PeerExchange, offered_relays
from .observe import record
from .persistence import NodeLog, SnapshotBuilds, StoredOps, StoreLog
from .restore import Restored, open_node
from .signing_state import SigningStateFile

log = get_logger("swarmd.daemon")

#: The timer never fires sooner than this after the previous firing, so a core deadline that
#: stays in the past cannot spin the loop.
TIMER_DELAY_S_MIN = 0.001


class HeldFrames:
    """The frames the core handed over, sent once the write each waits for is durable.

    Frames leave in the order the core handed them over: a batch (one `NodeCore.outgoing()`
    call, all with the same `after_write`) waits for its write and for every batch before it.
    `write_done` reports a send barrier's commit (every write up to it, as the committer
    writes in order); a batch whose write failed is dropped (`dropped` counts its frames):
    the core re-broadcasts its votes and hands its signing state over again with them.
    """

    def __init__(
        self, send: Callable[[list[OutgoingFrame]], None], held_max: int = HELD_FRAMES_MAX
    ) -> None:
        self._send = send
        self.held_max = held_max
        self._batches: deque[tuple[int, list[OutgoingFrame]]] = deque()
        self._held = 0  # frames in `_batches`
        #: The newest write id known durable, and the ids whose commit failed.
        self.durable = 0
        self._failed: set[int] = set()
        self.dropped = 0

    def __len__(self) -> int:
        return self._held

    def offer(self, frames: Iterable[OutgoingFrame]) -> None:
        """Send what may leave now, hold the rest (after what is held already); past
        `held_max` held frames the oldest batches are dropped (limits.HELD_FRAMES_MAX)."""
        by_write: dict[int, list[OutgoingFrame]] = {}
        for frame in frames:
            by_write.setdefault(frame.after_write, []).append(frame)
        for after_write in sorted(by_write):
            self._batches.append((after_write, by_write[after_write]))
            self._held += len(by_write[after_write])
        self._release()
        while self._held > self.held_max and self._batches:
            _, frames_dropped = self._batches.popleft()
            self._held -= len(frames_dropped)
            self.dropped += len(frames_dropped)
            log.warning("held_frames_dropped", frames=len(frames_dropped))

    def write_done(self, write_id: int, ok: bool) -> None:
        """The commit holding write `write_id` (and every write before it) returned."""
        if ok:
            self.durable = max(self.durable, write_id)
        else:
            self._failed.add(write_id)
        self._release()

    def _release(self) -> None:
        while self._batches:
            after_write, frames = self._batches[0]
            if after_write in self._failed:
                self.dropped += len(frames)
                log.warning("frames_dropped_after_failed_commit", frames=len(frames))
            elif after_write <= self.durable:
                self._send(frames)
            else:
                return
            self._batches.popleft()
            self._held -= len(frames)


def version() -> str:
    try:
        return importlib.metadata.version("swarmd")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


class Daemon:
    """One running node: core + store + transports. The HTTP servers live in node/http/."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        genesis: Genesis,
        keypair: crypto.KeyPair,
        node_log: NodeLog,
        core: NodeCore,
        metrics: NodeMetrics | None = None,
        signing_state_file: SigningStateFile | None = None,
    ) -> None:
        self.config = config
        self.genesis = genesis
        self.keypair = keypair
        self.node_id = keypair.public_key
        self.node_id_text = crypto.account_id_text(self.node_id)
        self.node_log = node_log
        self.core = core
        self.metrics = metrics or NodeMetrics(process_metrics=False)
        self.metrics.set_node_info(self.node_id_text, genesis.network_id.hex(), version())
        self.committer = NodeWrites(node_log, signing_state_file)
        self.snapshot_builds = SnapshotBuilds(
            core, node_log, self.committer.barrier, self._snapshot_stored
        )
        if isinstance(node_log, StoreLog):
            node_log.known_op = self._known_op
        #: Frames waiting for the write they name (events.py's durability contract).
        self.held_frames = HeldFrames(self._send_frames)
        self.transports: dict[str, LinkTransport] = {}
        self._peer_transport: dict[bytes, LinkTransport] = {}
        archive = node_log.store if isinstance(node_log, StoreLog) else None
        self.events = EventStream(archive, self._author_of)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        #: A pump is scheduled for the end of this turn of the loop (see `on_frame`).
        self._pump_soon = False
        #: The rejoin record last queued for the store (`_store_rejoin`).
        self._rejoin_stored = b""
        #: Bans kept across restarts, admission of inbound handshakes (runtime/bans.py).
        self.guard = PeerGuard(core, node_log, self._close_link)
        #: Peer exchange (runtime/exchange.py), made with the transports.
        self.exchange: PeerExchange | None = None
        self._dialer = Dialer(
            lambda node_id: node_id in self._peer_transport, refusal=self.guard.refusal
        )
        self._loop = asyncio.get_running_loop()
        self._sync_wall_clock()
        #: Frames the transports refused (no link to the peer, a full queue).
        self.frames_refused = 0
        #: Final ops read from the store for peers (older than the ledger's body window).
        self.stored_ops = StoredOps(node_log)
        self.started = False
        #: How `open` rebuilt the core (snapshot height or None, ops replayed, seconds).
        self.restore_info: dict[str, Any] = {"snapshot_height": None}
        #: What `pump` does with each core event type; the others are recorded and published.
        self._event_handlers: dict[type[NodeEvent], Callable[[Any], None]] = {
            PersistOps: self._on_persist_ops,
            OpAccepted: self._on_op_accepted,
            CreditReceived: self._on_credit_received,
            PersistCheckpoint: self._on_persist_checkpoint,
            PersistConsensusState: self.committer.add_consensus_state,
            PersistPrecommit: self.committer.add_precommit,
            SnapshotDue: self._on_snapshot_due,
            OpEvicted: self._on_op_evicted,
            PersistRollback: self._on_persist_rollback,
            OpsReverted: self._on_ops_reverted,
            EpochEntered: self._on_epoch_entered,
            PeerMisbehaved: self._on_peer_misbehaved,
            HandleConflictRaised: self._on_conflict_raised,
            StoredOpsWanted: self._on_stored_ops_wanted,
        }

    # --- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def open(cls, config: NodeConfig, *, metrics: NodeMetrics | None = None) -> Daemon:
        """Open the node's store and rebuild its core (runtime/restore.py)."""
        restored = await open_node(config)
        try:
            return await cls._opened(config, restored, metrics)
        except BaseException:
            # The store's thread would keep the process alive after the error (a startup that
            # fails once the store is open must still exit): close it, as open_node does.
            await restored.node_log.close()
            raise

    @classmethod
    async def _opened(
        cls, config: NodeConfig, restored: Restored, metrics: NodeMetrics | None
    ) -> Daemon:
        core = restored.core
        daemon = cls(
            config,
            genesis=restored.genesis,
            keypair=restored.keypair,
            node_log=restored.node_log,
            core=core,
            metrics=metrics,
            signing_state_file=restored.signing_state_file,
        )
        daemon.restore_info = restored.info()
        await daemon.guard.restore()
        await daemon.events.load()
        daemon.metrics.restored(
            restored.snapshot_height or 0, restored.replayed_ops, restored.elapsed_s
        )
        held = core.node_status().snapshot
        if held is not None:
            daemon.metrics.set_snapshot(held.height, held.size_bytes)
        now = asyncio.get_running_loop().time()
        if restored.mode is not Mode.NORMAL:
            core.set_mode(restored.mode, restored.mode_reason, now)
        observed = await daemon.node_log.read_observed()  # (node_core/observed.py)
        if observed is not None:
            core.restore_observed(observed, now)
        daemon._rejoin_stored = await restored.node_log.get_rejoin()
        core.rejoin.restore(daemon._rejoin_stored, now)  # after the mode: it resumes to it
        return daemon

    def create_transports(self) -> None:
        """Both transports are accepted inbound; `[network].transport` is the one we dial."""
        transport_cfg = transport_config(self.config)
        network_id = self.genesis.network_id
        self.transports = {
            "webrtc": WebRtcTransport(self.keypair, network_id, transport_cfg, self),
            "websocket": WebSocketTransport(self.keypair, network_id, transport_cfg, self),
        }
        for transport in self.transports.values():
            transport.admission = self._admit
        network = self.config.network
        if network.peers_target is not None:  # files written before outbound_target
            log.warning(
                "config_key_deprecated", key="[network].peers_target", use="outbound_target"
            )
        self.exchange = PeerExchange(
            keypair=self.keypair,
            public_url=transport_cfg.public_url,
            transport=self.transports[network.transport],
            peers=self.peers,
            refusal=self.guard.refusal,
            configured=[entry.url for entry in network.peers],
            interval_s=network.exchange_interval_s,
            targets=mesh_targets(network),
            council_link=self._council_link,
            node_log=self.node_log,
            advertise=not network.sentry,
            relays=offered_relays(network),
        )

    def _council_link(self, peer_id: bytes) -> bool:
        """A link between council members (reserved slots; counted in no peer target)."""
        return self.core.is_validator and peer_id in self.core.genesis.council

    def _admit(self, peer_id: bytes) -> None:
        """An inbound handshake: the core's refusals (bans, sentry, slots), then the
        exchange's inbound cap (`[network].inbound_max`)."""
        self.guard.admit(peer_id)
        if self.exchange is not None:
            self.exchange.admit_inbound(peer_id)

    async def start(self) -> None:
        """Start the writer, the transports (routes must be served by now) and the dialers."""
        if not self.transports:
            self.create_transports()
        for transport in self.transports.values():
            await transport.start()
        for entry in self.config.network.peers:
            kind = entry.transport or self.config.network.transport
            self._dialer.dial(self.transports[kind], entry.node_id, entry.url)
        if self.exchange is not None:
            await self.exchange.start()
        self.started = True
        self.pump()

    async def stop(self) -> None:
        self.started = False
        if self.exchange is not None:
            await self.exchange.stop()
        await self._dialer.stop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await asyncio.gather(*(t.stop() for t in self.transports.values()), return_exceptions=True)
        await self.snapshot_builds.stop()
        await self.guard.stop()
        await self.committer.stop()
        await self.events.close()
        # The live (provisional) root at the log's end: the recovery drill checks its replay
        # against it. After a crash the log outgrows it and the drill says so.
        with contextlib.suppress(Exception):
            await self.node_log.record_live_state(self.core.state_root())
        await self.node_log.close()

    def _known_op(self, op_id: bytes) -> Op | None:
        """The op the ledger holds for `op_id` (admitted or pending), if any."""
        ledger = self.core.ledger
        return ledger.op(op_id) or ledger.pending.get(op_id)

    def _author_of(self, op_id: bytes) -> bytes | None:
        op = self._known_op(op_id)
        return None if op is None else op.author

    # --- transport callbacks (TransportEvents) -----------------------------------------------

    def on_peer_connected(self, peer_id: bytes, info: PeerInfo) -> None:
        transport = self.transports.get(info.transport)
        if transport is None:
            return
        if not self.core.peer_connected(peer_id, self._loop.time()):
            reason = self.guard.refusal(peer_id) or "peers_max"
            log.info("peer_refused", peer=crypto.account_id_text(peer_id), reason=reason)
            self.guard.spawn(transport.disconnect(peer_id))
            return
        self._peer_transport[peer_id] = transport
        self._update_peer_metrics()
        self._dialer.peer_changed()
        self.pump()

    def on_frame(self, peer_id: bytes, frame: bytes) -> None:
        self.metrics.frame("received")
        self.core.receive_frame(peer_id, frame, self._loop.time())
        # One pump for every frame that arrives in this turn of the loop: the answers and
        # relays they cause leave batched into few frames instead of one small frame each.
        if not self._pump_soon:
            self._pump_soon = True
            self._loop.call_soon(self._pump_deferred)

    def _pump_deferred(self) -> None:
        self._pump_soon = False
        self.pump()

    def on_peer_disconnected(self, peer_id: bytes, reason: str) -> None:
        transport = self._peer_transport.get(peer_id)
        # A replaced link (glare, reconnect) is already served by the newer link.
        if transport is None or peer_id in transport.peers():
            return
        del self._peer_transport[peer_id]
        self.core.peer_disconnected(peer_id, self._loop.time())
        self._update_peer_metrics()
        self._dialer.peer_changed()
        self.pump()

    # --- client inputs -----------------------------------------------------------------------

    async def submit(self, envelope: bytes) -> Outcome:
        """Admit a client's op; returns once whatever it changed is durable.

        Raises the store's error when the commit failed (the API answers 503).
        """
        outcome = self.core.submit_op(envelope, self._loop.time())
        self.pump()
        await self.committer.barrier()
        return outcome

    async def submit_many(self, envelopes: list[bytes]) -> list[Outcome]:
        """`submit` for a batch: one pump and one commit for all of them."""
        now = self._loop.time()
        outcomes = [self.core.submit_op(envelope, now) for envelope in envelopes]
        self.pump()
        await self.committer.barrier()
        return outcomes

    async def set_mode(self, mode: Mode, reason: str) -> None:
        """Persist the admin mode first, so what status shows survives a restart."""
        await self.node_log.set_mode(mode, reason)
        self.core.set_mode(mode, reason, self._loop.time())
        self.pump()

    def add_listener(self, listener: EventListener, account: bytes | None = None) -> None:
        """Call `listener` with each published event; with `account` (a raw 32-byte key), only
        with the events that name it (`accounts`) or name no account at all."""
        self.events.add_listener(listener, account)

    def remove_listener(self, listener: EventListener, account: bytes | None = None) -> None:
        self.events.remove_listener(listener, account)

    # --- the pump ----------------------------------------------------------------------------

    def pump(self) -> None:
        frames = self.core.outgoing()
        next_event = self.core.next_event
        handle = self._handle_event
        barrier_write = 0
        while (event := next_event()) is not None:
            handle(event)
            if isinstance(event, SEND_BARRIERS):
                barrier_write = event.write_id
        if barrier_write:
            self._track_write(barrier_write)
        self.held_frames.offer(frames)
        self._store_rejoin()
        self._arm_timer()

    def _store_rejoin(self) -> None:
        """Queue the rejoin episode's write when it changed (restart mid-rejoin, rejoin.py)."""
        record = self.core.rejoin.record()
        if record != self._rejoin_stored:
            self._rejoin_stored = record

            async def write() -> None:
                await self.node_log.set_rejoin(record)

            self.committer.add_write(write)

    def _track_write(self, write_id: int) -> None:
        """Tell `held_frames` when the commit holding send barrier `write_id` returned."""
        barrier = self.committer.barrier()

        def done(_: object) -> None:
            ok = not barrier.cancelled() and barrier.exception() is None
            self.held_frames.write_done(write_id, ok)

        if barrier.done():  # nothing new to write (the state is already stored)
            done(barrier)
        else:
            barrier.add_done_callback(done)

    def _send_frames(self, frames: list[OutgoingFrame]) -> None:
        sent = 0
        for out in frames:
            transport = self._peer_transport.get(out.peer)
            # Consensus, bundle and evidence frames jump ahead of queued bulk sync frames.
            if transport is not None and transport.send(out.peer, out.frame, control=out.control):
                sent += 1
            else:
                self.frames_refused += 1
        if sent:
            self.metrics.frame("sent", sent)

    def _arm_timer(self) -> None:
        deadline = self.core.get_timer() if self.started else None
        if deadline is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = self._timer_at = None
            return
        deadline = max(deadline, self._loop.time() + TIMER_DELAY_S_MIN)
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return  # the armed timer fires first; handle_timer re-arms after it
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _sync_wall_clock(self) -> None:
        """The core's wall-clock input (a cut's agreed time): re-read at every timer, so a
        stepped system clock reaches the core within one timer period."""
        self.core.set_wall_clock(time.time_ns() // 1_000_000, self._loop.time())

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self._sync_wall_clock()
        self.core.handle_timer(self._loop.time())
        self.pump()

    # --- what the pump does with each event -------------------------------------------------

    def _handle_event(self, event: NodeEvent) -> None:
        """Route one core event. A `PersistRollback` queues its write (`_on_persist_rollback`)
        and is a send barrier: `pump` tracks it like a checkpoint."""
        handler = self._event_handlers.get(type(event))
        if handler is not None:
            handler(event)
            return
        record(event, self.metrics, self.core)
        if self.events.active:
            self.events.publish(event)

    def _on_persist_ops(self, event: PersistOps) -> None:
        self.committer.add_ops(event.envelopes)

    def _on_op_evicted(self, event: OpEvicted) -> None:
        # Marked expired in the log (after its append), so a restart does not reload it.
        self.committer.add_expired(event.op_id)
        record(event, self.metrics, self.core)
        if self.events.active:
            self.events.publish(event)

    def _on_op_accepted(self, event: OpAccepted) -> None:
        # The hot path: one per admitted op.
        self.metrics.op_result("accepted")
        if self.events.active:
            self.events.publish(event)

    def _on_credit_received(self, event: CreditReceived) -> None:
        # One per grant or transfer: published, nothing recorded.
        if self.events.active:
            self.events.publish(event)

    def _on_persist_checkpoint(self, event: PersistCheckpoint) -> None:
        self.committer.add_checkpoint(event)
        if event.snapshot:
            self.metrics.snapshot_made(event.height, len(event.snapshot))
            log.info("snapshot_made", height=event.height, size_bytes=len(event.snapshot))
        if self.events.active:
            self.events.publish_final_ops(event, self.core.ledger)

    def _on_conflict_raised(self, event: HandleConflictRaised) -> None:
        """Recorded and published as before; its first-raised time is stored too, so its age
        survives a restart (node_core/observed.py)."""
        record(event, self.metrics, self.core)
        if self.events.active:
            self.events.publish(event)
        raised_ms = time.time_ns() // 1_000_000
        self.committer.add_write(lambda: self.node_log.note_conflict(event.handle, raised_ms))

    def _on_snapshot_due(self, event: SnapshotDue) -> None:
        self.snapshot_builds.due(event)

    def _on_stored_ops_wanted(self, event: StoredOpsWanted) -> None:
        """A peer asked for final ops older than the ledger's in-memory window: read them
        from the store (off the loop's hot path) and hand them to the core to send. The ids
        left the ledger's memory too, so the core asks for every id it does not hold: only
        the logged ops at or below their author's final seq (final, or forks that lost to a
        final op, which a peer refuses alike) are sent."""

        async def serve() -> None:
            try:
                envelopes = await self.stored_ops.read(event.op_ids)
            except Exception as exc:  # a closed or failing store: the peer asks again
                log.warning("stored_ops_unread", ops=len(event.op_ids), cause=repr(exc))
                return
            if envelopes:
                envelopes = [e for e in envelopes if self.core.below_final_line(e)]
            if envelopes and self.started:
                self.core.send_stored_ops(event.peer, envelopes, self._loop.time())
                self.pump()

        self.guard.spawn(serve())

    def _on_persist_rollback(self, event: PersistRollback) -> None:
        # Queued in order with the checkpoints: the new epoch's checkpoint at H+1 is written
        # after the old epoch's ones above H moved out. Frames wait for it (like a checkpoint).
        height = RollbackCertificate.decode(event.certificate).height
        log.warning("rollback_certificate_accepted", epoch=event.epoch, height=height)

        async def write() -> None:
            moved = await self.node_log.put_rollback(event.certificate, event.epoch, height)
            log.info("rollback_stored", epoch=event.epoch, height=height, checkpoints_moved=moved)

        self.committer.add_write(write)

    def _on_ops_reverted(self, event: OpsReverted) -> None:
        # The authors' subscribers hear of it once it is durable, so `GET /v1/ops/{id}` then
        # answers `reverted` too (the ledger no longer holds the op: the store knows its author).
        log.warning("ops_reverted", ops=len(event.op_ids), height=event.height, epoch=event.epoch)

        async def write() -> None:
            authors = await self.node_log.mark_reverted(event.op_ids, event.height, event.epoch)
            if self.events.active:
                self.events.publish_reverted(event, authors)

        self.committer.add_write(write)

    def _on_epoch_entered(self, event: EpochEntered) -> None:
        log.warning(
            "epoch_entered", epoch=event.epoch, height=event.height, reverted=event.reverted
        )
        record(event, self.metrics, self.core)

    def _snapshot_stored(self, height: int, size_bytes: int) -> None:
        self.metrics.snapshot_made(height, size_bytes)
        log.info("snapshot_made", height=height, size_bytes=size_bytes)

    def _update_peer_metrics(self) -> None:
        for name in self.transports:
            count = sum(1 for t in self._peer_transport.values() if t.name == name)
            self.metrics.set_peers(name, count)

    # --- reading -----------------------------------------------------------------------------

    def peers(self) -> dict[bytes, PeerInfo]:
        """Peers the core knows, with what their transport reports."""
        result: dict[bytes, PeerInfo] = {}
        for peer_id, transport in self._peer_transport.items():
            info = transport.peers().get(peer_id)
            if info is not None:
                result[peer_id] = info
        return result

    def status(self) -> dict[str, Any]:
        """`/v1/status`: rendered from the core's typed `NodeStatus` and the transports."""
        core = self.core.node_status()
        peer_heights = {peer.peer_id: peer.final_height for peer in core.peers}
        traffic = {peer.peer_id: (peer.bytes_sent, peer.bytes_received) for peer in core.peers}
        peers = []
        for peer_id, info in sorted(self.peers().items()):
            peers.append(
                {
                    "node_id": crypto.account_id_text(peer_id),
                    "transport": info.transport,
                    "direction": info.direction,
                    "url": info.remote_url,
                    "rtt_ms": None if info.rtt_ms is None else round(info.rtt_ms, 3),
                    "candidate_pair": info.candidate_pair,
                    "final_height": peer_heights.get(peer_id, 0),
                    # Frame bytes by message class (protocol/node_core/bandwidth.py).
                    "bytes_sent": traffic.get(peer_id, ({}, {}))[0],
                    "bytes_received": traffic.get(peer_id, ({}, {}))[1],
                }
            )
        best = max(peer_heights.values(), default=0)
        return {
            "node_id": self.node_id_text,
            "network_id": self.genesis.network_id.hex(),
            "network_name": self.genesis.network_name,
            "signup_reward": self.genesis.signup_reward,
            "version": version(),
            "validator": core.validator,
            "mode": core.mode.value,
            "mode_reason": core.mode_reason,
            "final_height": core.final_height,
            "epoch": core.epoch,
            "consensus_height": core.consensus_height,
            "state_root": core.state_root.hex(),
            "applied_ops": core.applied_ops,
            "unfinalized_ops": core.unfinalized_ops,
            "pending_ops": core.pending_ops,
            "sync_lag": max(0, best - core.final_height),
            "catching_up": core.catching_up,
            "root_divergence_height": core.root_divergence_height,
            "rejoin": core.rejoin,
            "signing_halted": core.signing_halted,
            "consensus_round": core.consensus_round,
            "consensus_step": core.consensus_step,
            "conflicts": dataclasses.asdict(core.conflicts),
            "dial": [dial_state_dict(state) for state in self._dialer.states],
            "peers": peers,
            "stats": dataclasses.asdict(core.stats),
            "evidence": core.evidence,
            "open_conflicts": core.open_conflicts,
            "oldest_open_conflict_age_s": core.oldest_open_conflict_age_s,
            # The newest snapshot this node holds (or None) and the state sync in progress.
            "snapshot": None if core.snapshot is None else core.snapshot.as_dict(),
            "state_sync": None if core.state_sync is None else core.state_sync.as_dict(),
            "restore": self.restore_info,
            "commits": self.committer.commits,
            "frames_dropped": self.frames_refused + self.held_frames.dropped,
            # Bans and peer exchange (runtime/bans.py, runtime/exchange.py).
            "netguard": self.guard.status(self.exchange),
            # Frame bytes by message class over every peer (protocol/node_core/bandwidth.py).
            "bytes_sent": core.bytes_sent,
            "bytes_received": core.bytes_received,
        }

    # --- misbehaviour (netguard, runtime/bans.py) ---------------------------------------------

    def _on_peer_misbehaved(self, event: PeerMisbehaved) -> None:
        record(event, self.metrics, self.core)
        if self.events.active:
            self.events.publish(event)
        self.guard.misbehaved(event)

    def _close_link(self, peer_id: bytes) -> None:
        """Close `peer_id`'s link on whichever transport carries it (the core dropped it)."""
        transport = self._peer_transport.get(peer_id)
        if transport is not None:
            self.guard.spawn(transport.disconnect(peer_id))
