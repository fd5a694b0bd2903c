"""Opening a node at start: genesis, key, store, and the core rebuilt from what is stored.

The restore policy: the newest usable stored snapshot and the ops above it, or the whole log.
A snapshot that cannot be read (CorruptDatabaseError) or restored (SnapshotRestoreError) is
logged as a warning naming its height and the cause, and the next older one is tried, up to
SNAPSHOT_RESTORE_ATTEMPTS_MAX; then the whole log is replayed. A snapshot is derived state, so
losing one costs time, never data.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmd.protocol import consensus, crypto, limits
from swarmd.protocol.errors import ProtocolError
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.ledger import LedgerConfig
from swarmd.protocol.node_core import Mode, NodeCore, NodeCoreConfig, SnapshotRestoreError
from swarmd.storage.errors import CorruptDatabaseError

from ..config import NodeConfig, allowed_peers
from ..logs import get_logger
from .errors import DaemonError, KeyFileError
from .persistence import SNAPSHOT_RESTORE_ATTEMPTS_MAX, NodeLog, open_node_log
from .signing_state import SigningStateFile

log = get_logger("swarmd.restore")

# Stored snapshots tried at start, newest first, before replaying the whole log: the newest
# and the one before it (a crash or a bad sector rarely spoils two). Each failed try costs a
# replay of the ops above that snapshot. Defined in persistence.py, whose pruning keeps them.


def load_keypair(path: Path) -> crypto.KeyPair:
    """A node/wallet key file: JSON {"account_id", "seed": hex} (see `swarmd keygen`)."""
    try:
        value = json.loads(path.read_text())
        keypair = crypto.KeyPair.from_seed(bytes.fromhex(value["seed"]))
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except (OSError, ValueError, KeyError, TypeError, ProtocolError) as exc:
        raise KeyFileError(f"key file {path} is not a swarmd key: {exc}") from None
    return keypair


def served_bundles(config: NodeConfig) -> int:
    """Bundles the core keeps to serve lagging peers: `[sync].bundles_kept`, and with
    `[storage].retain_heights` no more than it (but at least the snapshot interval, the bundles
    after a snapshot), so a peer asking for a pruned range gets state sync before and after a
    restart alike."""
    kept = config.sync.bundles_kept
    retain = config.storage.retain_heights
    if retain:
        kept = min(kept, max(retain, config.consensus.snapshot_interval, 1))
    return kept


def core_config(config: NodeConfig) -> NodeCoreConfig:
    return NodeCoreConfig(
        gossip_fanout=config.sync.gossip_fanout,
        eager_relay_fanout=config.sync.eager_relay_fanout,
        peers_max=config.sync.peers_max,
        delta_sync_interval_s=config.sync.delta_sync_interval_s,
        checkpoint_interval_s=config.consensus.checkpoint_interval_s,
        checkpoint_ops_trigger=config.consensus.checkpoint_ops_trigger,
        snapshot_interval=config.consensus.snapshot_interval,
        # Built in a worker thread (SnapshotBuilds) from the frozen final state: neither the
        # build nor a copy of the state runs on the event loop.
        snapshot_build="frozen",
        bundles_kept=served_bundles(config),
        serve_bytes_per_s_peer=config.sync.serve_bytes_per_s_peer,
        serve_burst_bytes_peer=config.sync.serve_burst_bytes_peer,
        serve_bytes_per_s_total=config.sync.serve_bytes_per_s_total,
        serve_burst_bytes_total=config.sync.serve_burst_bytes_total,
        allowed_peers=allowed_peers(config),
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
            # Older final op bodies are read from the store (StoredOpsWanted, the API); no
            # more heights than the bundles served (their ops are all a catch-up needs).
            final_bodies_heights=min(limits.FINAL_OP_BODIES_HEIGHTS_DAEMON, served_bundles(config)),
        ),
        stored_ops=True,
    )


async def expire_reloaded_pending(node_log: NodeLog, core: NodeCore, ttl_s: float) -> int:
    """Pending ops replayed from the log whose TTL ran out before this start (received more
    than `ttl_s` ago) leave the pool at once and are marked expired in the log, instead of
    starting a fresh TTL at every restart. Returns how many."""
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


async def restore_core(
    node_log: NodeLog, restore: Callable[[int | None, bytes | None], Awaitable[NodeCore]]
) -> tuple[NodeCore, int | None]:
    """The core rebuilt from the newest usable stored snapshot, or by a full replay; and the
    snapshot's height (None after a full replay). See the module comment for the policy.
    `restore(height, blob)` rebuilds it from the snapshot at `height` (None: none)."""
    heights = await node_log.snapshot_heights()
    candidates = heights[::-1][:SNAPSHOT_RESTORE_ATTEMPTS_MAX]
    for height in candidates:
        try:
            blob = await node_log.get_snapshot(height)
            if blob is None:
                continue
            return await restore(height, blob), height
        except (CorruptDatabaseError, SnapshotRestoreError) as exc:
            log.warning(
                "snapshot_restore_failed",
                height=height,
                code=exc.code,
                cause=exc.message,
                fallback="full replay" if height == candidates[-1] else "older snapshot",
            )
    pruned = await node_log.pruned_through()
    if pruned:
        raise DaemonError(
            f"no stored snapshot could be restored and the log is pruned through height "
            f"{pruned} ([storage].retain_heights), so a full replay is impossible: restore a "
            "snapshot into this data file or start from an empty one to state-sync from peers"
        )
    return await restore(None, None), None


@dataclass
class Replay:
    """What a restore reads before the core exists, and what it streamed (for the log)."""

    genesis: Genesis
    keypair: crypto.KeyPair
    config: NodeConfig
    node_log: NodeLog
    certificates: list[bytes]
    reverted_ops: list[bytes]
    consensus_state: bytes | None
    #: The records of the kept precommits `consensus_state` names.
    precommits: list[bytes]
    logged_ops: int = 0
    bundles_read: int = 0
    #: Ops whose missing final height the replay recorded (a store older than schema v6).
    final_heights_recorded: int = 0

    async def core(self, height: int | None, blob: bytes | None) -> NodeCore:
        """The core from the snapshot at `height` (None: from genesis) and what is stored
        above it, streamed in pages: the log rows not final at or below the snapshot (read
        through the store's indexes; the few settled ones among them, lost forks and ops
        final before schema v6, are skipped without a signature check) and only the bundles
        above the snapshot's height."""
        node_log, now = self.node_log, asyncio.get_running_loop().time()
        snapshot_bundles: dict[int, bytes] = {}
        if height is not None:
            bundle = await node_log.get_bundle(height)
            snapshot_bundles = {} if bundle is None else {height: bundle}
        core = NodeCore.begin_restore(
            genesis=self.genesis,
            keypair=self.keypair,
            config=core_config(self.config),
            rng=random.Random(secrets.randbits(64)),
            now=now,
            snapshot=blob,
            snapshot_bundles=snapshot_bundles,
            certificates=self.certificates,
            reverted_ops=self.reverted_ops,
        )
        self.logged_ops = self.bundles_read = self.final_heights_recorded = 0
        final_accounts = core.ledger.final_state.accounts  # the snapshot's (empty: none)
        async for rows in node_log.log_pages(height):
            self.logged_ops += len(rows)
            # At or below its author's final seq: final already or a lost fork (what
            # replay_ops skips too), told by the row's author and seq without decoding it.
            envelopes = [
                envelope
                for author, seq, envelope in rows
                if (account := final_accounts.get(author)) is None or account.seq < seq
            ]
            core.replay_ops(envelopes, now)
        last_snapshot = newest_snapshot_height(await node_log.latest_height(), core.config)
        async for bundles in node_log.bundle_pages(core.final_height):
            self.bundles_read += len(bundles)
            # In slices of the heights whose final ids the core keeps (bundles_kept), so each
            # slice's are still there for the backfill of the final heights a store lacks.
            step = core.config.bundles_kept
            for start in range(0, len(bundles), step):
                before = core.final_height
                core.replay_bundles(bundles[start : start + step], now, last_snapshot)
                self.final_heights_recorded += await node_log.record_missing_final_heights(
                    final_ids_above(core, before)
                )
        core.finish_restore(self.consensus_state, now, self.precommits)
        return core


def final_ids_above(core: NodeCore, height: int) -> list[tuple[int, tuple[bytes, ...]]]:
    """(height, final op ids in canonical order) of the heights above `height` the core still
    keeps (the newest bundles_kept), ascending."""
    kept = core.finality.final_ids_by_height
    return [(final, ids) for final, ids in kept.items() if final > height]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a restart rebuilds the state, and what it built is
    frozen afterwards (gc.freeze: never scanned again by a full collection).

    A restart allocates an object or more per account; at a million accounts the collector's
    passes over the growing heap doubled the rebuild's time, and every later full collection
    of the running node would walk the whole final state for nothing (its records hold no
    reference cycles; they are freed by reference counting when replaced). Nothing else runs
    during a start, so pausing the collector delays no other work."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def newest_snapshot_height(latest_height: int, config: NodeCoreConfig) -> int:
    """The newest snapshot height (a multiple of the interval) at or below the newest stored
    bundle's, -1 when none: the replay rebuilds that snapshot in memory to serve peers."""
    interval = config.snapshot_interval
    if not interval or latest_height < interval:
        return -1
    return latest_height - latest_height % interval


@dataclass
class Restored:
    """What `open_node` rebuilt, for the driver."""

    genesis: Genesis
    keypair: crypto.KeyPair
    node_log: NodeLog
    core: NodeCore
    signing_state_file: SigningStateFile
    mode: Mode
    mode_reason: str
    #: The snapshot the core was restored from (None: a full replay).
    snapshot_height: int | None
    logged_ops: int
    replayed_ops: int
    elapsed_s: float

    def info(self) -> dict[str, Any]:
        """The status's `restore` object."""
        return {
            "snapshot_height": self.snapshot_height,
            "logged_ops": self.logged_ops,
            "replayed_ops": self.replayed_ops,
            "elapsed_s": round(self.elapsed_s, 3),
        }


async def open_node(config: NodeConfig) -> Restored:
    """Load genesis and key, open the store and rebuild the core from it: from the newest
    stored snapshot and the ops above it, or from the whole log (see `restore_core`)."""
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
        retain_heights=config.storage.retain_heights,
        expired_kept=config.limits.pending_ops_max,
    )
    signing_state_file = SigningStateFile.beside(config.node.data_file)
    started = time.perf_counter()
    try:
        # The council's rollback certificates first: the epoch history decides which bundles
        # the replay admits, and a reverted op is never applied again.
        certificates, reverted_ops = await node_log.load_rollbacks()
        mode, reason = await node_log.get_mode()
        # The last sign state: the restored core resumes the height in progress with the
        # votes and the lock it had (SigningStateError when the file is not ours), and the
        # kept precommits the state names come back from their records.
        signing_state = signing_state_file.load()
        replay = Replay(
            genesis,
            keypair,
            config,
            node_log,
            certificates,
            reverted_ops,
            signing_state,
            signing_state_file.load_precommits(signing_state),
        )
        with gc_paused():
            core, snapshot_height = await restore_core(node_log, replay.core)
        await expire_reloaded_pending(node_log, core, config.limits.pending_op_ttl_s)
    except BaseException:
        await node_log.close()
        raise
    elapsed_s = time.perf_counter() - started
    restored = Restored(
        genesis,
        keypair,
        node_log,
        core,
        signing_state_file,
        mode,
        reason,
        snapshot_height,
        replay.logged_ops,
        # After a snapshot restore the ledger holds only the ops above the snapshot's height,
        # so its applied ops are the ones replayed (all of them after a full replay): O(1).
        core.ledger.applied_count(),
        elapsed_s,
    )
    log_restored(restored, replay)
    return restored


def log_restored(restored: Restored, replay: Replay) -> None:
    core = restored.core
    log.info(
        "restored",
        snapshot_height=restored.snapshot_height,
        replayed_ops=restored.replayed_ops,
        ops=replay.logged_ops,
        checkpoints=replay.bundles_read,
        final_heights_recorded=replay.final_heights_recorded,
        epoch=core.epoch,
        reverted_ops=len(replay.reverted_ops),
        final_height=core.final_height,
        state_root=core.state_root().hex(),
        elapsed_s=round(restored.elapsed_s, 3),
    )
