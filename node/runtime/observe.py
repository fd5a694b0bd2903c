"""Core events as metrics and log lines: one recorder per event type (a dispatch table)."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

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
    SigningHalted,
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


def _signing_halted(event: SigningHalted, metrics: NodeMetrics, core: NodeCore) -> None:
    # Two processes with one key would equivocate: this one stopped signing (finality.py).
    log.error(
        "key_in_use_elsewhere",
        height=event.height,
        round=event.round,
        kind=event.kind,
        action="another process signs with this node's key (a copy of its home?): stop it, "
        "then restart this node; it signs nothing until then",
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
    SigningHalted: _signing_halted,
    HandleConflictRaised: _handle_conflict,
}


def record(event: NodeEvent, metrics: NodeMetrics, core: NodeCore) -> None:
    """Metrics and log lines for `event` (nothing for the types without a recorder)."""
    recorder = RECORDERS.get(type(event))
    if recorder is not None:
        recorder(event, metrics, core)


# --- product telemetry gauges (branch telemetry; protocol/telemetry.py) ----------------------

#: (gauge suffix, field of the newest day's figures, help text). docs/OPERATIONS.md, "Product
#: telemetry", gives each formula.
_TELEMETRY_FIGURES = (
    ("new_accounts", "new_accounts", "Accounts whose first op became final on the newest day."),
    ("daily_active_accounts", "daily_active", "Distinct authors of ops final on the newest day."),
    (
        "monthly_active_accounts",
        "monthly_active",
        "Distinct authors of ops final in the 30 days ending at the newest day.",
    ),
    (
        "retention_ratio",
        "retention",
        "Of the accounts active 59..30 days ago, the fraction active in the last 30 days.",
    ),
    (
        "credits_velocity",
        "velocity",
        "Credits moved by transfers in the last 30 days / circulating supply at the day's end.",
    ),
    ("transfer_volume_30d", "transfer_volume_30d", "Credits moved by transfers in 30 days."),
    ("circulating_supply", "supply", "Credits granted minus burned, at the newest day's end."),
    ("ops", "ops", "Ops final on the newest day."),
)


class TelemetryGauges:
    """swarmd_telemetry_* gauges: the newest UTC day of GET /v1/telemetry, set at a scrape
    (a figure with no value yet, such as retention before two windows passed, is NaN).
    Telemetry changes only with a stored checkpoint, so a scrape reads it again only when
    `current` (the epoch and the stored final height) moved since the last read."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.current: tuple[int, int] | None = None
        self.figures = {
            field: Gauge(f"swarmd_telemetry_{name}", text, registry=registry)
            for name, field, text in _TELEMETRY_FIGURES
        }
        self.burned = Gauge(
            "swarmd_telemetry_burned_credits",
            "Credits burned on the newest day (all targets; per target: GET /v1/telemetry).",
            registry=registry,
        )
        self.since_height = Gauge(
            "swarmd_telemetry_since_height",
            "First final height the node's telemetry counts (state-synced nodes count less).",
            registry=registry,
        )
        self.day = Gauge(
            "swarmd_telemetry_day", "The newest UTC day (days since 1970-01-01).", registry=registry
        )

    def set(self, report: Mapping[str, Any]) -> None:
        days = report.get("days") or []
        if not days:
            return
        newest = days[-1]
        for field, gauge in self.figures.items():
            value = newest[field]
            gauge.set(float("nan") if value is None else float(value))
        self.burned.set(sum(newest["burns"].values()))
        self.since_height.set(report["since_height"] or 0)
        self.day.set(newest["day"])


_GAUGES: weakref.WeakKeyDictionary[CollectorRegistry, TelemetryGauges] = weakref.WeakKeyDictionary()


def telemetry_gauges(registry: CollectorRegistry) -> TelemetryGauges:
    """The telemetry gauges of `registry`, registered once (a second app on the same daemon
    shares them)."""
    gauges = _GAUGES.get(registry)
    if gauges is None:
        gauges = _GAUGES[registry] = TelemetryGauges(registry)
    return gauges
