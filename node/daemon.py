"""The daemon's driver: feeds a `NodeCore` from the network, clients and its timer.

Like aioquic's asyncio protocol driving a QUIC connection: every input (a peer frame, a peer
coming or going, a client submission, an admin mode change, the timer) calls the core and then
`pump()`, which sends the core's frames through the transports, handles its events (writes go
to the group committer; everything else to metrics, event subscribers and log lines) and
re-arms the single timer at `core.get_timer()`.

Durability: `PersistOps` and `PersistCheckpoint` events are queued, in order, for one writer
task that commits everything queued so far in one go (group commit). A client submission is
acknowledged only after the commit holding it returned (`submit`). `PersistConsensusState` (the
validator's last sign state) is written by the same commit to a file beside the database, and
the frames of a pump that emitted it or a `PersistCheckpoint` are sent only once that commit
returned: a restarted validator then always knows every vote it ever sent (no equivocation).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import random
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarmd.protocol import consensus, crypto
from swarmd.protocol.errors import LocalProtocolError, ProtocolError
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.ledger import (
    CouncilModeChanged,
    CreditReceived,
    HandleBound,
    HandleConflictRaised,
    HypeBurned,
    LedgerConfig,
    OpAccepted,
    OpEvicted,
    OpExcluded,
    OpRejected,
    Outcome,
)
from swarmd.protocol.node_core import (
    CheckpointFinalized,
    EquivocationRecorded,
    HandleConflictRejected,
    Mode,
    ModeChanged,
    NodeCore,
    NodeCoreConfig,
    NodeEvent,
    PeerMisbehaved,
    PersistCheckpoint,
    PersistConsensusState,
    PersistOps,
    SnapshotDue,
    SnapshotRestoreError,
    StateSyncFailed,
    StateSyncFinished,
    SyncSessionFinished,
)
from swarmd.protocol.ops import Op
from swarmd.storage.errors import CorruptDatabaseError

from .config import NodeConfig, transport_config
from .logs import get_logger
from .metrics import NodeMetrics
from .persistence import NodeLog, SnapshotBuilds, StoreLog, open_node_log
from .transport import LinkTransport, PeerInfo, WebRtcTransport, WebSocketTransport

log = get_logger("swarmd.daemon")

#: (peer id, frame, control) as NodeCore.frames_with_priority returns them.
OutgoingFrame = tuple[bytes, bytes, bool]

#: Envelopes one commit writes at most; a longer queue is cut into several commits so one
#: transaction's memory stays bounded (8 KiB x 4096 = 32 MiB).
COMMIT_BATCH_OPS_MAX = 4096
#: The timer never fires sooner than this after the previous firing, so a core deadline that
#: stays in the past cannot spin the loop.
TIMER_DELAY_S_MIN = 0.001
#: `op_final` events an unfiltered subscriber (no account filter) gets per checkpoint. A
#: saturated checkpoint finalizes ~16k ops, more than a subscriber's queue holds: past this
#: bound an unfiltered subscriber gets one `op_final_truncated` event (height, ops, published)
#: and the `checkpoint_final` event with the op count instead. Below the API's per-client
#: queue (EVENTS_QUEUED_PER_CLIENT_MAX) so a big checkpoint alone does not cut a client that
#: keeps up. Subscribers filtered by account get `op_final` for every op of their account.
FINAL_OPS_PUBLISHED_UNFILTERED_MAX = 256
#: Dialing a configured peer: first retry delay and the cap (doubled per failure, jittered).
DIAL_BACKOFF_INITIAL_S = 0.25
DIAL_BACKOFF_MAX_S = 5.0
#: Stored snapshots tried at start, newest first, before replaying the whole log: the newest
#: and the one before it (a crash or a bad sector rarely spoils two). Each failed try costs a
#: replay of the ops above that snapshot.
SNAPSHOT_RESTORE_ATTEMPTS_MAX = 2


class DaemonError(LocalProtocolError):
    code = "daemon_error"


class KeyFileError(LocalProtocolError):
    code = "bad_key_file"


def version() -> str:
    try:
        return importlib.metadata.version("swarmd")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def load_keypair(path: Path) -> crypto.KeyPair:
    """A node/wallet key file: JSON {"account_id", "seed": hex} (see `swarmd keygen`)."""
    import json

    try:
        value = json.loads(path.read_text())
        keypair = crypto.KeyPair.from_seed(bytes.fromhex(value["seed"]))
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except (OSError, ValueError, KeyError, TypeError, ProtocolError) as exc:
        raise KeyFileError(f"key file {path} is not a swarmd key: {exc}") from None
    return keypair


def core_config(config: NodeConfig) -> NodeCoreConfig:
    return NodeCoreConfig(
        gossip_fanout=config.sync.gossip_fanout,
        eager_relay_fanout=config.sync.eager_relay_fanout,
        peers_max=config.sync.peers_max,
        delta_sync_interval_s=config.sync.delta_sync_interval_s,
        checkpoint_interval_s=config.consensus.checkpoint_interval_s,
        checkpoint_ops_trigger=config.consensus.checkpoint_ops_trigger,
        snapshot_interval=config.consensus.snapshot_interval,
        # Built in a worker thread (SnapshotBuilds), not on the event loop.
        snapshot_build="deferred",
        bundles_kept=config.sync.bundles_kept,
        consensus=consensus.ConsensusConfig(
            timeout_propose_s=config.consensus.timeout_propose_s,
            timeout_prevote_s=config.consensus.timeout_prevote_s,
            timeout_precommit_s=config.consensus.timeout_precommit_s,
            timeout_delta_s=config.consensus.timeout_delta_s,
        ),
        ledger=LedgerConfig(
            pending_ops_max=config.limits.pending_ops_max,
            pending_ops_per_author_max=config.limits.pending_ops_per_author_max,
            pending_op_ttl_s=config.limits.pending_op_ttl_s,
        ),
    )


# --- the consensus signing state --------------------------------------------------------------

#: The signing state file is named after the database file with this suffix, so that it
#: moves with the node's data directory.
SIGNING_STATE_FILE_SUFFIX = ".signing-state"


class SigningStateFile:
    """The validator's last sign state (`PersistConsensusState`), one file replaced atomically:
    written to a temporary file, fsynced, renamed over the old one and the directory fsynced,
    so after a kill -9 it holds either the previous state or the new one, never a mix. It is a
    file and not a database row because it may hold whole proposed values (up to
    consensus.SIGNING_STATE_SIZE_BYTES_MAX), far beyond what the store keeps in meta."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def beside(cls, data_file: Path) -> SigningStateFile:
        return cls(data_file.with_name(data_file.name + SIGNING_STATE_FILE_SUFFIX))

    def load(self) -> bytes | None:
        try:
            with self.path.open("rb") as file:
                data = file.read(consensus.SIGNING_STATE_SIZE_BYTES_MAX + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DaemonError(f"cannot read the signing state {self.path}: {exc}") from None
        if len(data) > consensus.SIGNING_STATE_SIZE_BYTES_MAX:
            raise consensus.SigningStateError(f"{self.path} is larger than a signing state")
        return data

    def save(self, data: bytes) -> None:
        """Blocking (run it in a thread); durable when it returns."""
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


# --- group commit ----------------------------------------------------------------------------


@dataclass
class _Batch:
    envelopes: list[bytes] = field(default_factory=list)
    checkpoints: list[PersistCheckpoint] = field(default_factory=list)
    consensus_state: bytes | None = None  # the latest one queued; it replaces the stored one
    expired: list[bytes] = field(default_factory=list)  # evicted pending ops (after their append)
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommitter:
    """One writer task; everything queued while a commit runs goes into the next one."""

    def __init__(
        self, node_log: NodeLog, signing_state_file: SigningStateFile | None = None
    ) -> None:
        self.node_log = node_log
        self.signing_state_file = signing_state_file
        self._consensus_state_stored: bytes | None = None
        self._open: _Batch | None = None
        self._in_flight: _Batch | None = None
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0
        self.failures = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def add_ops(self, envelopes: tuple[bytes, ...]) -> None:
        self._batch().envelopes.extend(envelopes)

    def add_checkpoint(self, checkpoint: PersistCheckpoint) -> None:
        self._batch().checkpoints.append(checkpoint)

    def add_expired(self, op_id: bytes) -> None:
        self._batch().expired.append(op_id)

    def add_consensus_state(self, data: bytes) -> None:
        """Queue the signing state. The core hands over the same state with every periodic
        re-broadcast: when it is the stored one and no commit is pending, nothing is written
        (a failed commit leaves the old state stored, so the next hand-over writes it)."""
        if self.signing_state_file is None:
            return
        idle = self._open is None and self._in_flight is None
        if idle and data == self._consensus_state_stored:
            return
        self._batch().consensus_state = data

    def barrier(self) -> asyncio.Future[None]:
        """Done when everything queued so far is durable (or failed to be)."""
        if self._open is not None:
            return self._open.done
        if self._in_flight is not None:
            return self._in_flight.done
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def stop(self) -> None:
        """Commit what is queued, then stop the writer."""
        if self._task is None:
            return
        with contextlib.suppress(Exception):
            await self.barrier()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def _batch(self) -> _Batch:
        if self._open is None:
            self._open = _Batch()
            self._wakeup.set()
        return self._open

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._open = self._open, None
            if batch is None:
                continue
            self._in_flight = batch
            try:
                await self._write(batch)
            except Exception as exc:
                self.failures += 1
                log.error("commit_failed", error=getattr(exc, "code", type(exc).__name__))
                batch.done.set_exception(exc)
                batch.done.exception()  # retrieved here: callers may not be waiting
            else:
                self.commits += 1
                batch.done.set_result(None)
            finally:
                self._in_flight = None

    async def _write(self, batch: _Batch) -> None:
        # Ops first: a checkpoint's ops were always queued before it (the core emits them in
        # that order), so writing in queue order keeps "a stored checkpoint's ops are stored".
        envelopes = batch.envelopes
        for start in range(0, len(envelopes), COMMIT_BATCH_OPS_MAX):
            await self.node_log.append_ops(envelopes[start : start + COMMIT_BATCH_OPS_MAX])
        for checkpoint in batch.checkpoints:
            await self.node_log.put_checkpoint(checkpoint)
        if batch.expired:
            await self.node_log.mark_expired(batch.expired)
        # Last: a signing state is never durable before the checkpoints that precede it.
        if batch.consensus_state is not None and self.signing_state_file is not None:
            await asyncio.to_thread(self.signing_state_file.save, batch.consensus_state)
            self._consensus_state_stored = batch.consensus_state


# --- restoring at start ----------------------------------------------------------------------


async def expire_reloaded_pending(node_log: NodeLog, core: NodeCore, ttl_s: float) -> int:
    """Pending ops replayed from the log whose TTL ran out before this start (received more
    than `ttl_s` ago) leave the pool at once and are marked expired in the log, instead of
    starting a fresh TTL at every restart (issue 13). Returns how many."""
    pending = [entry.op.op_id for entry in core.ledger.pending.entries()]
    if not pending:
        return 0
    received = await node_log.received_at_ms(pending)
    cutoff_ms = int(time.time() * 1000) - int(ttl_s * 1000)
    stale = [op_id for op_id in pending if received.get(op_id, cutoff_ms + 1) <= cutoff_ms]
    if stale:
        core.ledger.drop_pending(stale)
        await node_log.mark_expired(stale)
    return len(stale)


async def _restore_core(
    node_log: NodeLog, restore: Callable[[bytes | None], NodeCore]
) -> tuple[NodeCore, int | None]:
    """The core rebuilt from the newest usable stored snapshot, or by a full replay; and the
    snapshot's height (None after a full replay).

    A snapshot that cannot be read (CorruptDatabaseError) or restored (SnapshotRestoreError)
    is logged as a warning naming its height and the cause, and the next older one is tried,
    up to SNAPSHOT_RESTORE_ATTEMPTS_MAX; then the whole log is replayed. A snapshot is derived
    state, so losing one costs time, never data.
    """
    heights = await node_log.snapshot_heights()
    candidates = heights[::-1][:SNAPSHOT_RESTORE_ATTEMPTS_MAX]
    for height in candidates:
        try:
            blob = await node_log.get_snapshot(height)
            if blob is None:
                continue
            return restore(blob), height
        except (CorruptDatabaseError, SnapshotRestoreError) as exc:
            log.warning(
                "snapshot_restore_failed",
                height=height,
                code=exc.code,
                cause=exc.message,
                fallback="full replay" if height == candidates[-1] else "older snapshot",
            )
    return restore(None), None


# --- the daemon ------------------------------------------------------------------------------

EventListener = Callable[[dict[str, Any]], None]


class _Subscribers:
    """Event listeners, unfiltered or by the raw 32-byte account key they follow.

    Matching compares raw keys, so an event's JSON (hex, base32 account ids) is built only
    when somebody receives it.
    """

    def __init__(self) -> None:
        self.unfiltered: list[EventListener] = []
        self.by_account: dict[bytes, list[EventListener]] = {}
        self.count = 0

    def add(self, listener: EventListener, account: bytes | None) -> None:
        if account is None:
            self.unfiltered.append(listener)
        else:
            self.by_account.setdefault(account, []).append(listener)
        self.count += 1

    def remove(self, listener: EventListener, account: bytes | None) -> None:
        listeners = self.unfiltered if account is None else self.by_account.get(account, [])
        with contextlib.suppress(ValueError):
            listeners.remove(listener)
            self.count -= 1
        if account is not None and not listeners:
            self.by_account.pop(account, None)

    def everyone(self) -> list[EventListener]:
        result = list(self.unfiltered)
        for listeners in self.by_account.values():
            result += listeners
        return result

    def following(self, accounts: tuple[bytes, ...]) -> list[EventListener]:
        """The listeners following one of `accounts`, each once."""
        result: list[EventListener] = []
        for account in accounts:
            for listener in self.by_account.get(account, ()):
                if listener not in result:
                    result.append(listener)
        return result

    def for_accounts(self, accounts: tuple[bytes, ...]) -> list[EventListener]:
        """Unfiltered listeners plus those following one of `accounts` (each once)."""
        if not self.by_account:
            return self.unfiltered
        return self.unfiltered + self.following(accounts)


class Daemon:
    """One running node: core + store + transports. The HTTP servers live in node/api.py."""

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
        self.committer = GroupCommitter(node_log, signing_state_file)
        self.snapshot_builds = SnapshotBuilds(
            core, node_log, self.committer.barrier, self._snapshot_stored
        )
        if isinstance(node_log, StoreLog):
            node_log.known_op = self._known_op
        # Frames waiting for a commit, in the order the core produced them: (the commit they
        # wait for or None, frames). A batch waits for its own commit and for every batch
        # before it, so frames never overtake each other.
        self._held_frames: deque[
            tuple[asyncio.Future[None] | None, list[tuple[bytes, bytes, bool]]]
        ]
        self._held_frames = deque()
        self.transports: dict[str, LinkTransport] = {}
        self._peer_transport: dict[bytes, LinkTransport] = {}
        self._subscribers = _Subscribers()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        #: A pump is scheduled for the end of this turn of the loop (see `on_frame`).
        self._pump_soon = False
        self._dial_tasks: list[asyncio.Task[None]] = []
        self._peer_changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self.frames_dropped = 0
        self.started = False
        #: How `open` rebuilt the core (snapshot height or None, ops replayed, seconds).
        self.restore_info: dict[str, Any] = {"snapshot_height": None}

    # --- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def open(cls, config: NodeConfig, *, metrics: NodeMetrics | None = None) -> Daemon:
        """Load genesis and key, open the store and rebuild the core from it: from the newest
        stored snapshot and the ops above it, or from the whole log (see `_restore_core`)."""
        try:
            genesis = Genesis.from_json(config.node.genesis_file.read_bytes())
        except OSError as exc:
            raise DaemonError(f"cannot read genesis {config.node.genesis_file}: {exc}") from None
        keypair = load_keypair(config.node.key_file)
        node_log = await open_node_log(
            config.node.data_file,
            network_id=genesis.network_id,
            node_key=keypair.public_key,
            synchronous=config.node.synchronous,
            snapshots_kept=config.storage.snapshots_kept,
        )
        signing_state_file = SigningStateFile.beside(config.node.data_file)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            envelopes, bundles = await node_log.load()
            mode, reason = await node_log.get_mode()
            # The last sign state: the restored core resumes the height in progress with the
            # votes and the lock it had (SigningStateError when the file is not ours).
            consensus_state = signing_state_file.load()

            def restore(snapshot: bytes | None) -> NodeCore:
                return NodeCore.restore(
                    genesis=genesis,
                    keypair=keypair,
                    config=core_config(config),
                    rng=random.Random(secrets.randbits(64)),
                    now=loop.time(),
                    envelopes=envelopes,
                    bundles=bundles,
                    consensus_state=consensus_state,
                    snapshot=snapshot,
                )

            core, snapshot_height = await _restore_core(node_log, restore)
            await expire_reloaded_pending(node_log, core, config.limits.pending_op_ttl_s)
        except BaseException:
            await node_log.close()
            raise
        daemon = cls(
            config,
            genesis=genesis,
            keypair=keypair,
            node_log=node_log,
            core=core,
            metrics=metrics,
            signing_state_file=signing_state_file,
        )
        elapsed_s = time.perf_counter() - started
        # After a snapshot restore the ledger holds only the ops above the snapshot's height,
        # so its applied ops are the ones replayed (all of them after a full replay).
        replayed_ops = len(core.ledger.applied_ids())
        daemon.restore_info = {
            "snapshot_height": snapshot_height,
            "logged_ops": len(envelopes),
            "replayed_ops": replayed_ops,
            "elapsed_s": round(elapsed_s, 3),
        }
        daemon.metrics.restored(snapshot_height or 0, replayed_ops, elapsed_s)
        held = core.status().get("snapshot")
        if held is not None:
            daemon.metrics.set_snapshot(held["height"], held["size_bytes"])
        log.info(
            "restored",
            snapshot_height=snapshot_height,
            replayed_ops=replayed_ops,
            ops=len(envelopes),
            checkpoints=len(bundles),
            final_height=core.final_height,
            state_root=core.state_root().hex(),
            elapsed_s=round(elapsed_s, 3),
        )
        if mode is not Mode.NORMAL:
            core.set_mode(mode, reason, loop.time())
        return daemon

    def create_transports(self) -> None:
        """Both transports are accepted inbound; `[network].transport` is the one we dial."""
        transport_cfg = transport_config(self.config)
        network_id = self.genesis.network_id
        self.transports = {
            "webrtc": WebRtcTransport(self.keypair, network_id, transport_cfg, self),
            "websocket": WebSocketTransport(self.keypair, network_id, transport_cfg, self),
        }

    async def start(self) -> None:
        """Start the writer, the transports (routes must be served by now) and the dialers."""
        if not self.transports:
            self.create_transports()
        self.committer.start()
        for transport in self.transports.values():
            await transport.start()
        for entry in self.config.network.peers:
            kind = entry.transport or self.config.network.transport
            task = asyncio.create_task(self._keep_dialing(kind, entry.node_id, entry.url))
            self._dial_tasks.append(task)
        self.started = True
        self.pump()

    async def stop(self) -> None:
        self.started = False
        for task in self._dial_tasks:
            task.cancel()
        await asyncio.gather(*self._dial_tasks, return_exceptions=True)
        self._dial_tasks.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await asyncio.gather(*(t.stop() for t in self.transports.values()), return_exceptions=True)
        await self.snapshot_builds.stop()
        await self.committer.stop()
        # The live (provisional) root at the log's end: the recovery drill checks its replay
        # against it. After a crash the log outgrows it and the drill says so.
        with contextlib.suppress(Exception):
            await self.node_log.record_live_state(self.core.state_root())
        await self.node_log.close()

    async def _keep_dialing(self, kind: str, node_id: bytes | None, url: str) -> None:
        """Dial a configured peer until connected; dial again whenever it is gone."""
        transport = self.transports[kind]
        delay_s = DIAL_BACKOFF_INITIAL_S
        rng = random.Random()
        while True:
            if node_id is not None and node_id in self._peer_transport:
                self._peer_changed.clear()
                await self._peer_changed.wait()
                continue
            try:
                connected = await transport.connect(node_id, url)
                node_id = connected
                delay_s = DIAL_BACKOFF_INITIAL_S
                continue
            except (ProtocolError, OSError, TimeoutError) as exc:
                log.warning(
                    "dial_failed",
                    url=url,
                    error=getattr(exc, "code", type(exc).__name__),
                    detail=str(exc),
                )
            await asyncio.sleep(delay_s * rng.uniform(0.5, 1.0))
            delay_s = min(delay_s * 2, DIAL_BACKOFF_MAX_S)

    def _known_op(self, op_id: bytes) -> Op | None:
        """The op the ledger holds for `op_id` (admitted or pending), if any."""
        ledger = self.core.ledger
        return ledger.op(op_id) or ledger.pending.get(op_id)

    # --- transport callbacks (TransportEvents) -----------------------------------------------

    def on_peer_connected(self, peer_id: bytes, info: PeerInfo) -> None:
        transport = self.transports.get(info.transport)
        if transport is None:
            return
        if not self.core.peer_connected(peer_id, self._loop.time()):
            log.info("peer_refused", peer=crypto.account_id_text(peer_id), reason="peers_max")
            return
        self._peer_transport[peer_id] = transport
        self._update_peer_metrics()
        self._peer_changed.set()
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
        self._peer_changed.set()
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
        self._subscribers.add(listener, account)

    def remove_listener(self, listener: EventListener, account: bytes | None = None) -> None:
        self._subscribers.remove(listener, account)

    # --- the pump ----------------------------------------------------------------------------

    def pump(self) -> None:
        frames = self.core.frames_with_priority()
        commit_first = False
        next_event = self.core.next_event
        handle = self._handle_event
        while (event := next_event()) is not None:
            commit_first |= handle(event)
        if commit_first:
            # These frames may carry votes recorded by the signing state (or rely on the
            # checkpoint) just queued: they leave only once the commit holding it returned.
            barrier = self.committer.barrier()
            self._held_frames.append((barrier, frames))
            if barrier.done():  # nothing new to write (the state is already stored)
                self._release_frames()
            else:
                barrier.add_done_callback(lambda _: self._release_frames())
        elif self._held_frames:
            self._held_frames.append((None, frames))
        elif frames:
            self._send_frames(frames)
        self._arm_timer()

    def _release_frames(self) -> None:
        """Send the held frames whose commits are done, in order; a failed commit drops them
        (the core re-broadcasts its votes, and hands the state over again with them)."""
        while self._held_frames:
            barrier, frames = self._held_frames[0]
            if barrier is not None and not barrier.done():
                return
            self._held_frames.popleft()
            if barrier is not None and (barrier.cancelled() or barrier.exception() is not None):
                self.frames_dropped += len(frames)
                log.warning("frames_dropped_after_failed_commit", frames=len(frames))
                continue
            self._send_frames(frames)

    def _send_frames(self, frames: list[OutgoingFrame]) -> None:
        sent = 0
        for peer_id, frame, control in frames:
            transport = self._peer_transport.get(peer_id)
            # Consensus, bundle and evidence frames jump ahead of queued bulk sync frames.
            if transport is not None and transport.send(peer_id, frame, control=control):
                sent += 1
            else:
                self.frames_dropped += 1
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

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self.core.handle_timer(self._loop.time())
        self.pump()

    def _handle_event(self, event: NodeEvent) -> bool:
        """Route one core event; True when the frames of this pump must wait for the commit."""
        kind = type(event)
        if kind is PersistOps:
            self.committer.add_ops(event.envelopes)  # type: ignore[union-attr]
            return False
        if kind is OpAccepted:  # the hot path: one per admitted op
            self.metrics.op_result("accepted")
            if self._subscribers.count:
                self._publish_event(event)
            return False
        if kind is CreditReceived:  # one per grant or transfer: published, nothing recorded
            if self._subscribers.count:
                self._publish_event(event)
            return False
        if kind is PersistCheckpoint:
            assert isinstance(event, PersistCheckpoint)
            self.committer.add_checkpoint(event)
            if event.snapshot:
                self.metrics.snapshot_made(event.height, len(event.snapshot))
                log.info("snapshot_made", height=event.height, size_bytes=len(event.snapshot))
            if self._subscribers.count:
                self._publish_final_ops(event)
            return True
        if kind is PersistConsensusState:
            assert isinstance(event, PersistConsensusState)
            self.committer.add_consensus_state(event.data)
            return True
        if kind is SnapshotDue:
            assert isinstance(event, SnapshotDue)
            self.snapshot_builds.due(event)
            return False
        self._record(event)
        if self._subscribers.count:
            self._publish_event(event)
        return False

    def _snapshot_stored(self, height: int, size_bytes: int) -> None:
        self.metrics.snapshot_made(height, size_bytes)
        log.info("snapshot_made", height=height, size_bytes=size_bytes)

    def _record(self, event: NodeEvent) -> None:
        """Metrics and log lines."""
        metrics = self.metrics
        if isinstance(event, OpAccepted):
            metrics.op_result("accepted")
        elif isinstance(event, OpRejected):
            metrics.op_result("rejected", event.code)
        elif isinstance(event, OpExcluded):
            metrics.op_result("excluded", event.code)
        elif isinstance(event, OpEvicted):
            metrics.op_result("evicted", event.code)
            self.committer.add_expired(event.op_id)
        elif isinstance(event, CheckpointFinalized):
            metrics.set_final_height(event.height)
            metrics.observe_finality(event.latency_s)
            metrics.checkpoint_bundle()
            metrics.set_pending(len(self.core.ledger.pending))
            log.info(
                "checkpoint_final",
                height=event.height,
                ops=event.ops,
                state_root=event.state_root.hex(),
                latency_s=round(event.latency_s, 4),
            )
        elif isinstance(event, SyncSessionFinished):
            metrics.sync_session(event.within_cadence)
        elif isinstance(event, StateSyncFinished):
            metrics.state_sync("finished", event.chunks)
            log.info(
                "state_sync_finished", height=event.height, chunks=event.chunks, peers=event.peers
            )
        elif isinstance(event, StateSyncFailed):
            metrics.state_sync("failed")
            log.warning("state_sync_failed", height=event.height, reason=event.reason)
        elif isinstance(event, EquivocationRecorded):
            metrics.equivocation()
            log.warning("equivocation", validator=crypto.account_id_text(event.validator))
        elif isinstance(event, PeerMisbehaved):
            log.warning("peer_misbehaved", peer=crypto.account_id_text(event.peer), code=event.code)
        elif isinstance(event, ModeChanged):
            metrics.set_mode(event.mode.replace("-", "_"))
            log.info("mode_changed", mode=event.mode, reason=event.reason)
        elif isinstance(event, HandleConflictRaised):
            log.info("handle_conflict", handle=event.handle)

    def _publish_event(self, event: NodeEvent) -> None:
        """Publish a core event to the subscribers it concerns (JSON built only for them)."""
        accounts = _event_accounts(event)
        subscribers = self._subscribers
        if accounts is None:
            listeners = subscribers.everyone()
        else:
            listeners = subscribers.for_accounts(accounts)
        if listeners:
            published = _public_event(event)
            if published is not None:
                self._deliver(listeners, published)

    def _publish_final_ops(self, event: PersistCheckpoint) -> None:
        """One `op_final` event per op of the checkpoint: to the subscribers of its author or
        payee, every one; to unfiltered subscribers up to FINAL_OPS_PUBLISHED_UNFILTERED_MAX,
        then one `op_final_truncated` event."""
        subscribers = self._subscribers
        unfiltered = subscribers.unfiltered
        by_account = subscribers.by_account
        ledger = self.core.ledger
        height = event.height
        unfiltered_left = FINAL_OPS_PUBLISHED_UNFILTERED_MAX if unfiltered else 0
        for op_id in event.final_op_ids:
            if not by_account and unfiltered_left <= 0:
                break
            op = ledger.op(op_id)
            listeners: list[EventListener] = []
            if by_account and op is not None:
                listeners = subscribers.following((op.author, op.to) if op.to else (op.author,))
            if unfiltered_left > 0:
                unfiltered_left -= 1
                listeners = unfiltered + listeners
            if not listeners:
                continue
            accounts = []
            if op is not None:
                accounts.append(crypto.account_id_text(op.author))
                if op.to:
                    accounts.append(crypto.account_id_text(op.to))
            published = {"type": "op_final", "op_id": op_id.hex(), "height": height}
            published["accounts"] = accounts
            self._deliver(listeners, published)
        ops = len(event.final_op_ids)
        if unfiltered and ops > FINAL_OPS_PUBLISHED_UNFILTERED_MAX:
            truncated = {
                "type": "op_final_truncated",
                "height": height,
                "ops": ops,
                "published": FINAL_OPS_PUBLISHED_UNFILTERED_MAX,
            }
            self._deliver(unfiltered, truncated)

    def _deliver(self, listeners: list[EventListener], event: dict[str, Any]) -> None:
        for listener in list(listeners):
            try:
                listener(event)
            except Exception:
                log.exception("listener_failed")

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
        core_status = self.core.status()
        peer_heights = {
            peer_hex: value["final_height"] for peer_hex, value in core_status["peers"].items()
        }
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
                    "final_height": peer_heights.get(peer_id.hex(), 0),
                }
            )
        best = max(peer_heights.values(), default=0)
        return {
            "node_id": self.node_id_text,
            "network_id": self.genesis.network_id.hex(),
            "network_name": self.genesis.network_name,
            "signup_reward": self.genesis.signup_reward,
            "version": version(),
            "validator": core_status["validator"],
            "mode": core_status["mode"],
            "mode_reason": core_status["mode_reason"],
            "final_height": core_status["final_height"],
            "consensus_height": core_status["consensus_height"],
            "state_root": core_status["state_root"],
            "applied_ops": core_status["applied_ops"],
            "unfinalized_ops": core_status["unfinalized_ops"],
            "pending_ops": core_status["pending_ops"],
            "sync_lag": max(0, best - core_status["final_height"]),
            "peers": peers,
            "stats": core_status["stats"],
            "evidence": core_status["evidence"],
            "open_conflicts": core_status["open_conflicts"],
            "oldest_open_conflict_age_s": core_status["oldest_open_conflict_age_s"],
            # The newest snapshot this node holds (or None) and the state sync in progress.
            "snapshot": core_status.get("snapshot"),
            "state_sync": core_status.get("state_sync"),
            "restore": self.restore_info,
            "commits": self.committer.commits,
            "frames_dropped": self.frames_dropped,
        }


def _event_accounts(event: NodeEvent) -> tuple[bytes, ...] | None:
    """The raw account keys an event concerns (its JSON `accounts`); None: it concerns every
    subscriber (a checkpoint, a mode change, a rejection)."""
    kind = type(event)
    if kind is OpAccepted:
        assert isinstance(event, OpAccepted)
        return (event.author,)
    if kind is CreditReceived:
        assert isinstance(event, CreditReceived)
        return (event.account, event.sender)
    if kind is HandleBound:
        assert isinstance(event, HandleBound)
        return (event.owner,)
    return None


def _public_event(event: NodeEvent) -> dict[str, Any] | None:
    """The JSON form pushed to WebSocket subscribers (None: not published)."""
    text = crypto.account_id_text
    if isinstance(event, OpAccepted):
        return {
            "type": "op_accepted",
            "op_id": event.op_id.hex(),
            "kind": event.kind.label,
            "accounts": [text(event.author)],
            "seq": event.seq,
        }
    if isinstance(event, CreditReceived):
        return {
            "type": "credit_received",
            "account": text(event.account),
            "accounts": [text(event.account), text(event.sender)],
            "amount": event.amount,
            "op_id": event.op_id.hex(),
            "sender": text(event.sender),
        }
    if isinstance(event, HandleConflictRaised):
        return {
            "type": "handle_conflict",
            "handle": event.handle,
            "losing_claim": event.losing_claim.hex(),
            "winning_claim": event.winning_claim.hex(),
        }
    if isinstance(event, HandleConflictRejected):
        return {
            "type": "handle_conflict_rejected",
            "handle": event.handle,
            "winning_claim": event.winning_claim.hex(),
            "losing_claims": [claim.hex() for claim in event.losing_claims],
            "height": event.height,
        }
    if isinstance(event, HandleBound):
        return {
            "type": "handle_bound",
            "handle": event.handle,
            "owner": text(event.owner),
            "accounts": [text(event.owner)],
            "claim_id": event.claim_id.hex(),
        }
    if isinstance(event, HypeBurned):
        return {
            "type": "hype_burned",
            "target": event.target,
            "amount": event.amount,
            "total": event.total,
            "op_id": event.op_id.hex(),
        }
    if isinstance(event, CheckpointFinalized):
        return {
            "type": "checkpoint_final",
            "height": event.height,
            "checkpoint_id": event.checkpoint_id.hex(),
            "state_root": event.state_root.hex(),
            "ops": event.ops,
        }
    if isinstance(event, ModeChanged):
        return {"type": "mode_changed", "mode": event.mode, "reason": event.reason}
    if isinstance(event, CouncilModeChanged):
        return {"type": "council_mode_changed", "quiesced": event.quiesced}
    if isinstance(event, OpRejected):
        return {"type": "op_rejected", "op_id": event.op_id.hex(), "code": event.code}
    return None


# --- the whole service: daemon + public API + admin interface ------------------------------


class NodeService:
    """Opens the daemon and serves its HTTP API and admin interface; `stop` undoes it all."""

    def __init__(self, config: NodeConfig, *, metrics: NodeMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.daemon: Daemon | None = None
        self.api_url = ""
        self.admin_url: str | None = None
        self._runners: list[Any] = []
        self._token = ""

    async def start(self) -> Daemon:
        from aiohttp import web

        from .admin import build_admin_app, write_cookie
        from .api import build_app

        config = self.config
        daemon = self.daemon = await Daemon.open(config, metrics=self.metrics)
        try:
            daemon.create_transports()
            runner = web.AppRunner(build_app(daemon), access_log=None, shutdown_timeout=2.0)
            await runner.setup()
            self._runners.append(runner)
            await daemon.start()
            await web.TCPSite(runner, config.api.host, config.api.port).start()
            host, port = runner.addresses[0][:2]
            self.api_url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
            self._token = write_cookie(config.admin.cookie_file)
            admin = web.AppRunner(build_admin_app(daemon, self._token), access_log=None)
            await admin.setup()
            self._runners.append(admin)
            if config.admin.port:
                await web.TCPSite(admin, config.admin.host, config.admin.port).start()
                self.admin_url = f"http://{config.admin.host}:{admin.addresses[0][1]}"
            if config.admin.unix_socket is not None:
                with contextlib.suppress(FileNotFoundError):
                    config.admin.unix_socket.unlink()
                await web.UnixSite(admin, str(config.admin.unix_socket)).start()
        except BaseException:
            await self.stop()
            raise
        log.info("node_ready", api=self.api_url, admin=self.admin_url, mode=daemon.core.mode.value)
        return daemon

    async def stop(self) -> None:
        from .admin import remove_cookie

        if self._token:
            remove_cookie(self.config.admin.cookie_file, self._token)
            self._token = ""
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self.daemon is not None:
            daemon, self.daemon = self.daemon, None
            await daemon.stop()


async def run_until_signalled(config: NodeConfig) -> None:
    """`swarmd run`: serve until SIGINT or SIGTERM, then stop cleanly."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    service = NodeService(config, metrics=NodeMetrics())
    await service.start()
    try:
        await stop.wait()
    finally:
        log.info("node_stopping")
        await service.stop()
