"""Core events as metrics and log lines: one recorder per event type (a dispatch table)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from swarmd.protocol import consensus, crypto
from swarmd.protocol.ledger import (
    HandleConflictRaised,
    OpAccepted,
    OpEvicted,
    OpExcluded,
    OpRejected,
)
from swarmd.protocol.node_core import (
    CheckpointFinalized,
    EquivocationRecorded,
    ModeChanged,
    NodeCore,
    NodeEvent,
    PeerMisbehaved,
    RootDiverged,
    StateSyncFailed,
    StateSyncFinished,
)

from ..logs import get_logger
from ..metrics import NodeMetrics

log = get_logger("swarmd.daemon")

#: A recorder: the event, the metrics and the core (read for gauges such as the pool size).
Recorder = Callable[[Any, NodeMetrics, NodeCore], None]


def _op_accepted(event: OpAccepted, metrics: NodeMetrics, core: NodeCore) -> None:
    metrics.op_result("accepted")


def _op_rejected(event: OpRejected, metrics: NodeMetrics, core: NodeCore) -> None:
    metrics.op_result("rejected", event.code)


def _op_excluded(event: OpExcluded, metrics: NodeMetrics, core: NodeCore) -> None:
    metrics.op_result("excluded", event.code)


def _op_evicted(event: OpEvicted, metrics: NodeMetrics, core: NodeCore) -> None:
    metrics.op_result("evicted", event.code)


def _checkpoint_finalized(event: CheckpointFinalized, metrics: NodeMetrics, core: NodeCore) -> None:
    metrics.set_final_height(event.height)
    metrics.observe_finality(event.latency_s)
    metrics.checkpoint_bundle()
    metrics.set_pending(len(core.ledger.pending))
    bundle = core.bundle(event.height)
    if bundle is not None:
        signers = len(consensus.CheckpointBundle.decode(bundle).precommits)
        metrics.observe_signers(signers, len(core.genesis.council))
    log.info(
        "checkpoint_final",
        height=event.height,
        ops=event.ops,
        state_root=event.state_root.hex(),
        latency_s=round(event.latency_s, 4),
    )


def _state_sync_finished(event: StateSyncFinished, metrics: NodeMetrics, core: NodeCore) -> None:
    metrics.state_sync("finished", event.chunks)
    log.info("state_sync_finished", height=event.height, chunks=event.chunks, peers=event.peers)


def _state_sync_failed(event: StateSyncFailed, metrics: NodeMetrics, core: NodeCore) -> None:
    metrics.state_sync("failed")
    log.warning("state_sync_failed", height=event.height, reason=event.reason)


def _equivocation(event: EquivocationRecorded, metrics: NodeMetrics, core: NodeCore) -> None:
    metrics.equivocation()
    log.warning("equivocation", validator=crypto.account_id_text(event.validator))


def _peer_misbehaved(event: PeerMisbehaved, metrics: NodeMetrics, core: NodeCore) -> None:
    log.warning("peer_misbehaved", peer=crypto.account_id_text(event.peer), code=event.code)


def _root_diverged(event: RootDiverged, metrics: NodeMetrics, core: NodeCore) -> None:
    # The node halted read-only (reason root_divergence) and re-fetches its state: rejoin.py.
    log.error(
        "root_divergence",
        first_divergent_height=event.first_height,
        height=event.height,
        own_root=event.own_root.hex(),
        signed_root=event.signed_root.hex(),
    )


def _mode_changed(event: ModeChanged, metrics: NodeMetrics, core: NodeCore) -> None:
    metrics.set_mode(event.mode.replace("-", "_"))
    log.info("mode_changed", mode=event.mode, reason=event.reason)


def _handle_conflict(event: HandleConflictRaised, metrics: NodeMetrics, core: NodeCore) -> None:
    log.info("handle_conflict", handle=event.handle)


RECORDERS: dict[type[NodeEvent], Recorder] = {
    OpAccepted: _op_accepted,
    OpRejected: _op_rejected,
    OpExcluded: _op_excluded,
    OpEvicted: _op_evicted,
    CheckpointFinalized: _checkpoint_finalized,
    StateSyncFinished: _state_sync_finished,
    StateSyncFailed: _state_sync_failed,
    EquivocationRecorded: _equivocation,
    PeerMisbehaved: _peer_misbehaved,
    ModeChanged: _mode_changed,
    RootDiverged: _root_diverged,
    HandleConflictRaised: _handle_conflict,
}


def record(event: NodeEvent, metrics: NodeMetrics, core: NodeCore) -> None:
    """Metrics and log lines for `event` (nothing for the types without a recorder)."""
    recorder = RECORDERS.get(type(event))
    if recorder is not None:
        recorder(event, metrics, core)
