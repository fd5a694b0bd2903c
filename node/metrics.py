"""Prometheus metrics of one node, with the `prometheus-client` package.

Each `NodeMetrics` owns its own `CollectorRegistry`, so several nodes in one process (tests,
an in-process devnet) never share or collide on series. The shell calls the small methods
below at the points where things happen; the HTTP API serves `render()` with `CONTENT_TYPE`
at `[metrics].path`.

The hot counters (op results, frames, HTTP requests: several per op under load) are counted
in plain ints and folded into their Prometheus counters when the metrics are rendered, so a
count costs a dict update instead of a labelled-child lookup and a lock.

Every label value comes from a closed set (result codes, route templates, directions); as a
guard against a bug that would put an unbounded value into a label (a raw URL path, a peer
id), each metric keeps at most `LABEL_SETS_PER_METRIC_MAX` distinct label sets and folds the
rest into the value "other".
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from swarmd.protocol import crypto
from swarmd.protocol.errors import LocalProtocolError
from swarmd.protocol.node_core import NodeStatus

#: The Content-Type of `render()` (the text exposition format prometheus-client writes).
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Distinct label sets per metric. Result/reason codes number a few dozen and route templates
#: x statuses a few hundred at most; beyond this a label is being fed something unbounded.
LABEL_SETS_PER_METRIC_MAX = 512
OTHER_LABEL_VALUE = "other"

#: Finality latency buckets (seconds from an op's acceptance to the checkpoint that finalizes
#: it): checkpoints are cut every CHECKPOINT_INTERVAL_S (0.5 s) by default, so most ops land
#: between 0.25 s and 3 s; the long tail covers council crashes and partitions.
FINALITY_LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)

MODES = ("normal", "read_only", "quiesced")
STATE_SYNC_RESULTS = ("finished", "failed")
DIRECTIONS = ("sent", "received")

CONSENSUS_STEPS = ("propose", "prevote", "precommit")
CONFLICT_KINDS = ("contested_handles", "claims_below_quorum", "stuck_handles", "unresolved_forks")
#: Signers / n of a final checkpoint: 2/3 and 3/4 separate quorum sizes of small councils.
SIGNERS_RATIO_BUCKETS = (0.5, 0.6667, 0.7, 0.75, 0.8, 0.9, 0.99, 1.0)

#: `swarmd_fragments_total{event}` -> the core's fragment counter (NodeStatus.fragments).
FRAGMENT_EVENTS = {
    "sent": "fragments_sent",
    "received": "fragments_received",
    "duplicate": "fragments_duplicate",
    "discarded": "fragments_discarded",
    "reassembled": "reassemblies_completed",
    "dropped_timeout": "reassemblies_expired",
    "refused_limit": "reassemblies_rejected",
    "integrity_failure": "integrity_failures",
}


class MetricsUsageError(LocalProtocolError):
    """A caller passed a label value outside its closed set (a mode, a direction)."""

    code = "metrics_misuse"


class NodeMetrics:
    """The metrics of one node; see the module docstring."""

    def __init__(self, process_metrics: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if process_metrics:
            # CPU, memory, open file descriptors of this process (from /proc; absent elsewhere).
            ProcessCollector(registry=self.registry)
        self._label_sets: dict[str, set[tuple[str, ...]]] = {}
        # Counts not yet folded into their Prometheus counters (see `_fold`), by label values.
        self._op_counts: dict[tuple[str, str], int] = {}
        self._frame_counts: dict[str, int] = {}
        self._http_counts: dict[tuple[str, str], int] = {}
        #: The core's cumulative counts at the last `observe_status` (see `_advance`).
        self._core_totals: dict[str, int] = {}
        registry = self.registry
        self.ops = Counter(
            "swarmd_ops_total",
            "Ops processed, by result (accepted, rejected, excluded, evicted) and reason code.",
            ["result", "reason"],
            registry=registry,
        )
        self.pending_ops = Gauge(
            "swarmd_pending_ops", "Ops waiting in the pending pool.", registry=registry
        )
        self.peers = Gauge(
            "swarmd_peers", "Connected peers, by transport.", ["transport"], registry=registry
        )
        self.sync_sessions = Counter(
            "swarmd_sync_sessions_total",
            "Delta sync sessions started here, by whether they finished within the cadence "
            "(replaced, abandoned and failed sessions count as false).",
            ["within_cadence"],
            registry=registry,
        )
        self.sync_bytes = Counter(
            "swarmd_sync_bytes_total",
            "Reconciliation bytes of finished delta sync sessions started here, by direction.",
            ["direction"],
            registry=registry,
        )
        self.frames = Counter(
            "swarmd_frames_total",
            "Transport frames, by direction.",
            ["direction"],
            registry=registry,
        )
        self.fragments = Counter(
            "swarmd_fragments_total",
            "Fragment events, summed over every peer: " + ", ".join(FRAGMENT_EVENTS) + ".",
            ["event"],
            registry=registry,
        )
        self._init_ledger_metrics(registry)
        self._init_bandwidth_metrics(registry)

    def _init_bandwidth_metrics(self, registry: CollectorRegistry) -> None:
        """Frame bytes by direction and message class (protocol/node_core/bandwidth.py)."""
        self.bytes = Counter(
            "swarmd_bytes_total",
            "Peer link frame bytes, by direction and message class, over every peer.",
            ["direction", "class"],
            registry=registry,
        )
        # Series only for connected peers (removed when a peer goes): at most
        # PEERS_MAX x 2 directions x 6 classes, whatever the churn.
        self.peer_bytes = Counter(
            "swarmd_peer_bytes_total",
            "Frame bytes of each connected peer's link, by direction and message class.",
            ["peer", "direction", "class"],
            registry=registry,
        )
        self._peer_byte_series: set[tuple[str, str, str]] = set()
        self.serve_requests = Counter(
            "swarmd_serve_requests_held_total",
            "Chunk and bundle requests held for the bulk sync send rate (deferred), and those "
            "dropped because the peer's queue of held requests was full (dropped).",
            ["result"],
            registry=registry,
        )

    def _init_ledger_metrics(self, registry: CollectorRegistry) -> None:
        self.final_height = Gauge(
            "swarmd_final_height", "Height of the latest final checkpoint.", registry=registry
        )
        self.finality_latency = Histogram(
            "swarmd_finality_latency_seconds",
            "Time from accepting an op to the final checkpoint that includes it.",
            buckets=FINALITY_LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.http_requests = Counter(
            "swarmd_http_requests_total",
            "HTTP requests served, by route template and status code.",
            ["route", "status"],
            registry=registry,
        )
        self.admin_mode = Gauge(
            "swarmd_admin_mode",
            "1 for the node's current mode (normal, read_only, quiesced), 0 for the others.",
            ["mode"],
            registry=registry,
        )
        self.checkpoint_bundles = Counter(
            "swarmd_checkpoint_bundles_total",
            "Signed checkpoint bundles verified and stored (made here or received).",
            registry=registry,
        )
        self.equivocations = Counter(
            "swarmd_equivocations_total",
            "Council equivocations proven (two conflicting votes or proposals of one member), "
            "counted once per piece of evidence. Op forks count in swarmd_ops_total as excluded.",
            registry=registry,
        )
        self.websocket_clients = Gauge(
            "swarmd_websocket_clients", "Connected event-stream clients.", registry=registry
        )
        self.info = Gauge(
            "swarmd_node_info",
            "Always 1; labels identify the node and its network.",
            ["node_id", "network_id", "version"],
            registry=registry,
        )
        for mode in MODES:
            self.admin_mode.labels(mode=mode).set(1 if mode == "normal" else 0)
        self._init_snapshot_metrics(registry)

    def _init_snapshot_metrics(self, registry: CollectorRegistry) -> None:
        self.snapshots = Counter(
            "swarmd_snapshots_total",
            "State snapshots made at final checkpoints (or fetched by state sync) and stored.",
            registry=registry,
        )
        self.snapshot_height = Gauge(
            "swarmd_snapshot_height", "Height of the newest state snapshot.", registry=registry
        )
        self.snapshot_size = Gauge(
            "swarmd_snapshot_size_bytes", "Size of the newest state snapshot.", registry=registry
        )
        self.state_syncs = Counter(
            "swarmd_state_sync_sessions_total",
            "State sync sessions (restoring from a peer's snapshot), by result.",
            ["result"],
            registry=registry,
        )
        self.state_sync_chunks = Counter(
            "swarmd_state_sync_chunks_total",
            "Snapshot chunks fetched and verified by finished state sync sessions.",
            registry=registry,
        )
        self.restore_seconds = Gauge(
            "swarmd_restore_seconds",
            "Time the last start took to rebuild the node from its store.",
            registry=registry,
        )
        self.restore_replayed_ops = Gauge(
            "swarmd_restore_replayed_ops",
            "Ops replayed at the last start (those above the snapshot restored from, or all).",
            registry=registry,
        )
        self.restore_snapshot_height = Gauge(
            "swarmd_restore_snapshot_height",
            "Height of the snapshot the last start restored from (0: a full replay).",
            registry=registry,
        )
        for result in STATE_SYNC_RESULTS:
            self.state_syncs.labels(result=result)
        self._init_status_metrics(registry)

    def _init_status_metrics(self, registry: CollectorRegistry) -> None:
        """Gauges read from the core's NodeStatus at each scrape (`observe_status`)."""

        def gauge(name: str, text: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, text, list(labels), registry=registry)

        self.sync_lag = gauge("swarmd_sync_lag", "Final heights behind the best connected peer.")
        self.best_peer_height = gauge(
            "swarmd_best_peer_height", "Highest final height a connected peer announced."
        )
        self.catching_up = gauge("swarmd_catching_up", "1 while fetching bundles from peers ahead.")
        self.consensus_height = gauge("swarmd_consensus_height", "Height consensus runs at.")
        self.consensus_round = gauge("swarmd_consensus_round", "Round of the current height.")
        self.consensus_step = gauge(
            "swarmd_consensus_step", "1 for the current step, 0 for the others.", ("step",)
        )
        self.unfinalized_ops = gauge("swarmd_unfinalized_ops", "Applied ops not final yet.")
        self.open_conflicts = gauge(
            "swarmd_open_conflicts",
            "Open conflicts by kind: contested_handles, claims_below_quorum, stuck_handles, "
            "unresolved_forks.",
            ("kind",),
        )
        self.oldest_conflict_age = gauge(
            "swarmd_oldest_open_conflict_age_seconds",
            "Age of the oldest contested handle (since this process saw it raised).",
        )
        self.since_final = gauge(
            "swarmd_seconds_since_final_checkpoint",
            "Seconds since the last checkpoint became final here (or since start).",
        )
        self.member_signed = gauge(
            "swarmd_council_heights_signed",
            "Final checkpoints (seen by this process) carrying the member's precommit.",
            ("member",),
        )
        self.member_missed = gauge(
            "swarmd_council_heights_missed",
            "Final checkpoints (seen by this process) without the member's precommit.",
            ("member",),
        )
        self.member_last_heard = gauge(
            "swarmd_council_last_signed_age_seconds",
            "Seconds since the last final checkpoint the member signed became final here "
            "(absent until it signed one).",
            ("member",),
        )
        self.signers_ratio = Histogram(
            "swarmd_checkpoint_signers_ratio",
            "Signers / council size of each final checkpoint.",
            buckets=SIGNERS_RATIO_BUCKETS,
            registry=registry,
        )
        self.peer_rtt = gauge(
            "swarmd_peer_rtt_seconds", "Heartbeat round-trip time, by peer.", ("peer",)
        )
        self.root_divergence_height = gauge(
            "swarmd_root_divergence_height",
            "First height whose council-signed root differed from ours, while the node "
            "recovers from it (0 otherwise).",
        )
        self.signing_halted = gauge(
            "swarmd_signing_halted",
            "1 when a message signed with this validator's key that it did not sign arrived "
            "(another process holds the key): the node signs nothing until restarted.",
        )
        for step in CONSENSUS_STEPS:
            self.consensus_step.labels(step=step).set(0)
        for kind in CONFLICT_KINDS:
            self.open_conflicts.labels(kind=kind).set(0)

    # --- what the shell calls --------------------------------------------------------------

    def set_node_info(self, node_id: str, network_id: str, version: str) -> None:
        self.info.labels(node_id=node_id, network_id=network_id, version=version).set(1)

    def op_result(self, result: str, reason: str = "", count: int = 1) -> None:
        """Count op outcomes; `reason` is the stable error code ("" when accepted)."""
        counts = self._op_counts
        key = (result, reason)
        if key not in counts:
            result, reason = self._bounded("ops", result, reason)
            key = (result, reason)
        counts[key] = counts.get(key, 0) + count

    def set_pending(self, count: int) -> None:
        self.pending_ops.set(count)

    def set_peers(self, transport: str, count: int) -> None:
        (transport,) = self._bounded("peers", transport)
        self.peers.labels(transport=transport).set(count)

    def frame(self, direction: str, count: int = 1) -> None:
        """Count frames; `direction` is "sent" or "received"."""
        counts = self._frame_counts
        if direction in counts:
            counts[direction] += count
        else:
            counts[_direction(direction)] = count

    def set_final_height(self, height: int) -> None:
        self.final_height.set(height)

    def observe_finality(self, seconds: float) -> None:
        self.finality_latency.observe(max(0.0, seconds))

    def http_request(self, route: str, status: int) -> None:
        """Count a request; `route` must be the route template ("/accounts/{id}"), not a path."""
        counts = self._http_counts
        key = (route, str(status))
        if key not in counts:
            key = self._bounded("http_requests", *key)  # type: ignore[assignment]
        counts[key] = counts.get(key, 0) + 1

    def set_mode(self, mode: str) -> None:
        """Mark `mode` (one of MODES) as current."""
        if mode not in MODES:
            raise MetricsUsageError(f"unknown mode {mode!r}")
        for known in MODES:
            self.admin_mode.labels(mode=known).set(1 if known == mode else 0)

    def checkpoint_bundle(self) -> None:
        self.checkpoint_bundles.inc()

    def equivocation(self) -> None:
        self.equivocations.inc()

    def snapshot_made(self, height: int, size_bytes: int) -> None:
        self.snapshots.inc()
        self.set_snapshot(height, size_bytes)

    def set_snapshot(self, height: int, size_bytes: int) -> None:
        """The newest snapshot held (also the one restored from at start)."""
        self.snapshot_height.set(height)
        self.snapshot_size.set(size_bytes)

    def state_sync(self, result: str, chunks: int = 0) -> None:
        """Count a state sync session; `result` is one of STATE_SYNC_RESULTS."""
        if result not in STATE_SYNC_RESULTS:
            raise MetricsUsageError(f"state sync result must be one of {STATE_SYNC_RESULTS}")
        self.state_syncs.labels(result=result).inc()
        self.state_sync_chunks.inc(chunks)

    def restored(self, snapshot_height: int, replayed_ops: int, seconds: float) -> None:
        self.restore_snapshot_height.set(snapshot_height)
        self.restore_replayed_ops.set(replayed_ops)
        self.restore_seconds.set(seconds)

    def set_websocket_clients(self, count: int) -> None:
        self.websocket_clients.set(count)

    def observe_status(self, status: NodeStatus, now: float) -> None:
        """Feed the figures the core counts itself from its typed status; `now` is the clock
        the shell gives the core. The shell calls this before every render."""
        self._observe_counts(status)
        self._observe_bytes(status)
        self.sync_lag.set(status.sync_lag)
        self.best_peer_height.set(status.best_peer_height)
        self.catching_up.set(1 if status.catching_up else 0)
        self.consensus_height.set(status.consensus_height)
        self.consensus_round.set(status.consensus_round)
        for step in CONSENSUS_STEPS:
            self.consensus_step.labels(step=step).set(1 if step == status.consensus_step else 0)
        self.unfinalized_ops.set(status.unfinalized_ops)
        for kind in CONFLICT_KINDS:
            self.open_conflicts.labels(kind=kind).set(getattr(status.conflicts, kind))
        self.oldest_conflict_age.set(status.oldest_open_conflict_age_s)
        self.since_final.set(max(0.0, now - status.last_final_at))
        self.root_divergence_height.set(status.root_divergence_height)
        self.signing_halted.set(1 if status.signing_halted else 0)
        for member in status.council:
            (name,) = self._bounded("council", crypto.account_id_text(member.key))
            self.member_signed.labels(member=name).set(member.signed)
            self.member_missed.labels(member=name).set(member.missed)
            if member.last_signed_at is not None:
                age = max(0.0, now - member.last_signed_at)
                self.member_last_heard.labels(member=name).set(age)

    def observe_signers(self, signers: int, council: int) -> None:
        """One final checkpoint signed by `signers` of the `council` members."""
        if council:
            self.signers_ratio.observe(signers / council)

    def set_peer_rtts(self, rtts: dict[str, float | None]) -> None:
        """The heartbeat RTT (seconds) of each connected peer; peers gone lose their series."""
        self.peer_rtt.clear()
        for peer, rtt in sorted(rtts.items()):
            if rtt is not None:
                (name,) = self._bounded("peer_rtt", peer)
                self.peer_rtt.labels(peer=name).set(rtt)

    def _observe_counts(self, status: NodeStatus) -> None:
        stats = status.stats
        not_within = (
            stats.sync_sessions - stats.sync_sessions_within_cadence + stats.sync_sessions_lost
        )
        sessions = self.sync_sessions
        self._advance(
            "sync:true", sessions.labels(within_cadence="true"), stats.sync_sessions_within_cadence
        )
        self._advance("sync:false", sessions.labels(within_cadence="false"), not_within)
        self._advance("bytes:sent", self.sync_bytes.labels(direction="sent"), stats.sync_bytes_sent)
        self._advance(
            "bytes:received",
            self.sync_bytes.labels(direction="received"),
            stats.sync_bytes_received,
        )
        for event, name in FRAGMENT_EVENTS.items():
            count = status.fragments.get(name, 0)
            self._advance(f"fragments:{event}", self.fragments.labels(event=event), count)
        self.pending_ops.set(status.pending_ops)

    def _observe_bytes(self, status: NodeStatus) -> None:
        """`swarmd_bytes_total` and, per connected peer, `swarmd_peer_bytes_total`; a peer no
        longer connected loses its series (its bytes stay in the node-wide counter). Also the
        requests held for the bulk sync send rate (serve_rate.py)."""
        for direction, totals in (("sent", status.bytes_sent), ("received", status.bytes_received)):
            for kind, total in totals.items():
                counter = self.bytes.labels(direction, kind)
                self._advance(f"traffic:{direction}:{kind}", counter, total)
        for result in ("deferred", "dropped"):
            total = getattr(status.stats, f"serve_requests_{result}")
            self._advance(f"serve:{result}", self.serve_requests.labels(result), total)
        current: set[tuple[str, str, str]] = set()
        for peer in status.peers:
            name = crypto.account_id_text(peer.peer_id)
            for direction, counts in (("sent", peer.bytes_sent), ("received", peer.bytes_received)):
                for kind, total in counts.items():
                    labels = (name, direction, kind)
                    current.add(labels)
                    key = "peer_traffic:" + ":".join(labels)
                    self._advance(key, self.peer_bytes.labels(*labels), total)
        for labels in sorted(self._peer_byte_series - current):
            self.peer_bytes.remove(*labels)
            self._core_totals.pop("peer_traffic:" + ":".join(labels), None)
        self._peer_byte_series = current

    def _advance(self, key: str, counter: Counter, total: int) -> None:
        """Add to `counter` what the core's cumulative `total` gained since the last call (all
        of it when the total went down: a new core, counting from zero again)."""
        seen = self._core_totals.get(key, 0)
        counter.inc(total - seen if total >= seen else total)
        self._core_totals[key] = total

    def render(self) -> bytes:
        """The exposition text of every metric of this node."""
        self._fold()
        return generate_latest(self.registry)

    def _fold(self) -> None:
        """Add the plain counts to their Prometheus counters (the keys stay, at zero)."""
        for (result, reason), count in self._op_counts.items():
            if count:
                self.ops.labels(result=result, reason=reason).inc(count)
                self._op_counts[(result, reason)] = 0
        for direction, count in self._frame_counts.items():
            if count:
                self.frames.labels(direction=direction).inc(count)
                self._frame_counts[direction] = 0
        for (route, status), count in self._http_counts.items():
            if count:
                self.http_requests.labels(route=route, status=status).inc(count)
                self._http_counts[(route, status)] = 0

    # --- helpers ---------------------------------------------------------------------------

    def _bounded(self, metric: str, *values: str) -> tuple[str, ...]:
        """`values` unless this metric already has too many label sets; then all "other"."""
        seen = self._label_sets.setdefault(metric, set())
        if values in seen:
            return values
        if len(seen) >= LABEL_SETS_PER_METRIC_MAX:
            return tuple(OTHER_LABEL_VALUE for _ in values)
        seen.add(values)
        return values


def _direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise MetricsUsageError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    return direction
