"""What one run found (`RunResult`), the chaos report over many seeds (`summarize`) and the
command that replays a failing run (deterministic).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunResult:
    scenario: str
    seed: int
    trace_hash: str = ""
    failures: list[str] = field(default_factory=list)
    mttd_s: list[float] = field(default_factory=list)
    mttr_s: float | None = None
    sync_sessions: int = 0
    syncs_within_cadence: int = 0
    ops_submitted: int = 0
    ops_acked: int = 0
    frames_delivered: int = 0
    #: Fragmented messages given up (expired, rejected, corrupt) on live honest nodes; each
    #: must be recovered by sync, which convergence proves.
    fragments_dropped: int = 0
    virtual_s: float = 0.0
    #: CheckpointFinalized.latency_s of every finalization on an honest node (virtual s).
    finality_latency_s: list[float] = field(default_factory=list)
    #: The highest height final on every honest node at the end.
    final_height: int = 0
    #: Last heal -> every honest node final on everything it applied (virtual s).
    finality_recovered_s: float | None = None
    #: Equivocation evidence recorded by honest nodes (each verified by the checker).
    evidence_recorded: int = 0
    #: handle-race: the longest a contested handle stayed without a final owner everywhere.
    open_conflict_age_s: float | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "ok": self.ok,
            "failures": list(self.failures),
            "trace_hash": self.trace_hash,
            "mttd_s": [round(value, 6) for value in self.mttd_s],
            "mttr_s": None if self.mttr_s is None else round(self.mttr_s, 6),
            "sync_sessions": self.sync_sessions,
            "syncs_within_cadence": self.syncs_within_cadence,
            "ops_submitted": self.ops_submitted,
            "ops_acked": self.ops_acked,
            "frames_delivered": self.frames_delivered,
            "fragments_dropped": self.fragments_dropped,
            "virtual_s": round(self.virtual_s, 6),
            "final_height": self.final_height,
            "finality_latency_s": percentiles(self.finality_latency_s),
            "finality_recovered_s": _rounded(self.finality_recovered_s),
            "evidence_recorded": self.evidence_recorded,
            "open_conflict_age_s": _rounded(self.open_conflict_age_s),
            "replay": replay_command(self.scenario, self.seed),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def replay_command(scenario: str, seed: int) -> str:
    return f"swarmd chaos --scenario {scenario} --seed {seed} --json"


def format_failure(result: RunResult) -> str:
    """One paragraph for a failing run: what broke and the command that replays it."""
    reasons = "; ".join(result.failures) or "no failure"
    return (
        f"scenario {result.scenario} seed {result.seed} failed: {reasons}\n"
        f"  replay: {replay_command(result.scenario, result.seed)}"
    )


# --- summaries -------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 6)

    return {"p50": pick(0.50), "p95": pick(0.95), "max": round(ordered[-1], 6)}


def summarize(scenario: str, results: list[RunResult]) -> dict[str, Any]:
    """The chaos report for one scenario (or "all") over many seeds."""
    digest = hashlib.sha256()
    for result in results:
        digest.update(f"{result.scenario}|{result.seed}|{result.trace_hash}\n".encode())
    sessions = sum(r.sync_sessions for r in results)
    within = sum(r.syncs_within_cadence for r in results)
    return {
        "scenario": scenario,
        "seeds": len(results),
        "failures": [
            {
                "scenario": r.scenario,
                "seed": r.seed,
                "reasons": r.failures,
                "replay": replay_command(r.scenario, r.seed),
            }
            for r in results
            if not r.ok
        ],
        "trace_digest": digest.hexdigest(),
        "mttd_s": percentiles([v for r in results for v in r.mttd_s]),
        "mttr_s": percentiles([r.mttr_s for r in results if r.mttr_s is not None]),
        "sync_sessions": sessions,
        "syncs_within_cadence": round(within / sessions, 6) if sessions else None,
        "ops_submitted": sum(r.ops_submitted for r in results),
        "ops_acked": sum(r.ops_acked for r in results),
        "fragments_dropped": sum(r.fragments_dropped for r in results),
        "finality_latency_s": percentiles([v for r in results for v in r.finality_latency_s]),
        "finality_recovered_s": percentiles(
            [r.finality_recovered_s for r in results if r.finality_recovered_s is not None]
        ),
        "evidence_recorded": sum(r.evidence_recorded for r in results),
        "open_conflict_age_s": percentiles(
            [r.open_conflict_age_s for r in results if r.open_conflict_age_s is not None]
        ),
    }
