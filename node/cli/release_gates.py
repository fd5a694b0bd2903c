"""The deployment plan's gates, rollback plays and open items, as one table each.

docs/CURRENT_STATUS.md (`swarmd release status`) maps every entry here to what measures it:
the simulator scenarios named in GATES, the tests carrying `@pytest.mark.gate("<id>")` (found
by an AST scan of tests/), and the BENCHMARKS.md rows whose first column starts with one of
the entry's benchmark prefixes. The wording of each gate is quoted verbatim from the Swarm
Credits Deployment Plan (its Success Metrics, Rollback Play and Stage N objective bullets), so
the status page can be checked against the plan line by line.

A gate id is what a test names in its marker; tests/conftest.py refuses a marker naming an id
that is not in GATES or OPEN_ITEMS, so a typo cannot silently leave a gate uncovered.
"""

from __future__ import annotations

from dataclasses import dataclass

#: What a plan entry is: a success metric (a gate a release must meet), a rollback play step,
#: or an objective the plan states as a requirement on the release process itself.
METRIC = "success metric"
PLAY = "rollback play"
OBJECTIVE = "objective"


@dataclass(frozen=True)
class Gate:
    id: str
    stage: str
    kind: str
    wording: str  # the plan's exact words
    scenarios: tuple[str, ...] = ()
    benchmarks: tuple[str, ...] = ()  # prefixes of BENCHMARKS.md rows' first column
    docs: tuple[str, ...] = ()  # "FILE#Heading": the runbook an operator follows


@dataclass(frozen=True)
class OpenItem:
    id: str
    area: str  # one of OPEN_AREAS
    wording: str


_S0, _S1, _S2, _SN = (
    "Stage 0 – Internal Swarm Dry Run",
    "Stage 1 – Limited Beta",
    "Stage 2 – Broad Rollout",
    "Stage N – Continuous Hardening",
)
_BANK = ("signup", "transfers", "hype-burns", "ledger-replay")
_OPS = "docs/OPERATIONS.md#"
_DRILL = _OPS + "The recovery drill (Stage 0 gate; rollback play of every stage)"
_RB0 = _OPS + "S0: Stage 0 (internal dry run): reset, replay, re-issue the last stable checkpoint"
_RB1 = (
    _OPS + "S1: Stage 1 (limited beta): suspend claims, revoke endorsements, read-only, reinstate"
)
_RB2 = (
    _OPS
    + "S2: Stage 2 (broad rollout): revert to the last signed checkpoint, resync, confirm hashes"
)
_RBN = _OPS + "SN: Stage N (continuous hardening): quiesce by council broadcast, then revert"
_TRAINING = "docs/TRAINING_UPDATES.md#Training updates: what each role does in a rollback play"
_RELEASE = _OPS + "Cutting a release candidate"

GATES: tuple[Gate, ...] = (
    Gate(
        "s0-reconciliation",
        _S0,
        METRIC,
        "0 failed reconciliation events across ≥100 scripted retries per scenario.",
        scenarios=_BANK,
        benchmarks=("simulator, all",),
    ),
    Gate(
        "s0-nonce-advancement",
        _S0,
        METRIC,
        "Deterministic nonce advancement through the validation pipeline with no dropped "
        "fragments.",
        scenarios=("transfers", "flood", "fork"),
        benchmarks=("validation pipeline", "framing round trip"),
    ),
    Gate(
        "s0-recovery-drills",
        _S0,
        METRIC,
        "IndexedDB recovery drills restore balances to the latest signed checkpoint on every node.",
        scenarios=("crash-restart", "state-sync"),
        benchmarks=("recovery of 100k ops", "recovery drill from a snapshot"),
        docs=(_DRILL,),
    ),
    Gate("s0-play-reset", _S0, PLAY, "Reset local IndexedDB stores.", docs=(_RB0,)),
    Gate(
        "s0-play-replay",
        _S0,
        PLAY,
        "Replay signed payload logs captured during the run.",
        scenarios=("ledger-replay",),
        docs=(_RB0,),
    ),
    Gate(
        "s0-play-reissue",
        _S0,
        PLAY,
        "Re-issue the last stable checkpoint bundle and validate hash parity.",
        docs=(_RB0,),
    ),
    Gate(
        "s1-syncs-within-cadence",
        _S1,
        METRIC,
        "≥90% of delta syncs complete within the configured cadence.",
        scenarios=("partition-heal",),
        benchmarks=("set reconciliation",),
    ),
    Gate(
        "s1-conflicts-72h",
        _S1,
        METRIC,
        "No unresolved conflicts older than 72 hours.",
        scenarios=("handle-race",),
    ),
    Gate(
        "s1-onboarding",
        _S1,
        METRIC,
        "Onboarding flows complete in under 2 minutes with UI response <100 ms at P95.",
        benchmarks=("API response times",),
    ),
    Gate(
        "s1-play-suspend-claims",
        _S1,
        PLAY,
        "Suspend new claims by revoking council endorsements and broadcasting "
        "`handle.conflict` rejections.",
        scenarios=("claims-paused",),
        docs=(_RB1,),
    ),
    Gate(
        "s1-play-read-only",
        _S1,
        PLAY,
        "Shift nodes into read-only mode while the previous checkpoint is reinstated.",
        scenarios=("council-quiesce",),
        docs=(_RB1,),
    ),
    Gate(
        "s1-play-drill-procedure",
        _S1,
        PLAY,
        "Provide operators with the Stage 0 recovery drill procedure for local state resets.",
        docs=(_DRILL, _RB1),
    ),
    Gate(
        "s2-quorum-endorsements",
        _S2,
        METRIC,
        "≥⅔ quorum endorsements per registry checkpoint.",
        scenarios=("council-crash", "council-partition", "equivocating-member", "fork-finality"),
        benchmarks=("4-node swarm",),
    ),
    Gate(
        "s2-retention",
        _S2,
        METRIC,
        "≥60% monthly active retention rate over rolling 30-day windows.",
    ),
    Gate(
        "s2-credits-velocity",
        _S2,
        METRIC,
        "Credits velocity aligns with roadmap growth targets (baseline defined during Stage 1).",
    ),
    Gate(
        "s2-play-revert",
        _S2,
        PLAY,
        "If quorum metrics drop or conflicting roots emerge, revert to the last signed "
        "checkpoint bundle.",
        scenarios=("network-rollback",),
        docs=(_RB2,),
    ),
    Gate(
        "s2-play-resync",
        _S2,
        PLAY,
        "Require operators to resync from anchored snapshots and confirm gossip hashes before "
        "rejoining.",
        scenarios=("state-sync",),
        docs=(_RB2,),
    ),
    Gate(
        "s2-play-guidance",
        _S2,
        PLAY,
        "Issue community-wide guidance referencing `docs/TRAINING_UPDATES.md` to ensure "
        "consistent recovery actions.",
        docs=(_TRAINING, _RB2),
    ),
    Gate(
        "sn-ci-rollback-verification",
        _SN,
        OBJECTIVE,
        "Automate rollback verification in CI pipelines.",
        docs=(_RELEASE,),
    ),
    Gate(
        "sn-rc-chaos-and-drills",
        _SN,
        METRIC,
        "Every release candidate passes automated chaos suites and recovery drills.",
        docs=(_RELEASE,),
    ),
    Gate(
        "sn-mttd-mttr-trend",
        _SN,
        METRIC,
        "Mean time to detect (MTTD) and mean time to recover (MTTR) trends downward over "
        "successive releases.",
        docs=(_OPS + "Chaos and benchmarks",),
    ),
    Gate(
        "sn-play-snapshot-catalog",
        _SN,
        PLAY,
        "Maintain signed snapshot catalog with diffable manifests.",
        docs=(_OPS + "Snapshots, restart and state sync", _RBN),
    ),
    Gate(
        "sn-play-quiescence",
        _SN,
        PLAY,
        "Automate peer quiescence via council broadcast before applying reversions.",
        scenarios=("council-quiesce", "network-rollback"),
        docs=(_RBN,),
    ),
)

#: The plan's Stage 0 objective: "Close outstanding credit concurrency, ledger accuracy, and
#: rate limiting items from `docs/CURRENT_STATUS.md`".
OPEN_AREAS = ("credit concurrency", "ledger accuracy", "rate limiting")

OPEN_ITEMS: tuple[OpenItem, ...] = (
    OpenItem(
        "cc-double-spend",
        "credit concurrency",
        "Two transfers spending the same received credit: one applies, the other is rejected "
        "(no overdraft, no double receive).",
    ),
    OpenItem(
        "cc-fork-same-seq",
        "credit concurrency",
        "Two ops of one author with the same seq (a fork): every node keeps the same one, in "
        "any delivery order.",
    ),
    OpenItem(
        "cc-order-independent-root",
        "credit concurrency",
        "The same op set delivered in any order gives the same state root.",
    ),
    OpenItem(
        "cc-concurrent-appends",
        "credit concurrency",
        "Concurrent submissions through the group committer each get their own log seq.",
    ),
    OpenItem(
        "la-replay-parity",
        "ledger accuracy",
        "A replay of the signed log reproduces every checkpoint's signed state root.",
    ),
    OpenItem(
        "la-lost-op-detected",
        "ledger accuracy",
        "A lost op is reported at the first checkpoint height that needs it.",
    ),
    OpenItem(
        "la-partial-cut",
        "ledger accuracy",
        "Finalizing a partial cut gives the same states as deriving from scratch.",
    ),
    OpenItem(
        "rl-http-per-client",
        "rate limiting",
        "The HTTP API answers 429 `rate_limited` to a client above its token bucket.",
    ),
    OpenItem(
        "rl-signup",
        "rate limiting",
        "Onboarding signups are gated by proof of work and a rate (429 `signup_rate_limited`).",
    ),
    OpenItem(
        "rl-state-sync-offers",
        "rate limiting",
        "State-sync offers are rate limited per peer.",
    ),
    OpenItem(
        "rl-peer-messages",
        "rate limiting",
        "A peer sending above `peer_messages_per_s` has its messages dropped and its score "
        "lowered (`rate_limited`).",
    ),
)

#: Gates whose tests on real daemons (tests/node, tests/integration) `swarmd release check`
#: runs as the recovery drills; the rollback plays are every PLAY gate.
DRILL_GATES = ("s0-recovery-drills", "s0-play-reset", "s0-play-replay", "s0-play-reissue")
#: The test folders whose tests drive real daemons (SQLite stores, loopback sockets).
REAL_DAEMON_TEST_DIRS = ("tests/node/", "tests/integration/")


def known_ids() -> frozenset[str]:
    """Every id a `gate(...)` marker may name."""
    return frozenset(gate.id for gate in GATES) | frozenset(item.id for item in OPEN_ITEMS)


def play_gates() -> tuple[str, ...]:
    return tuple(gate.id for gate in GATES if gate.kind == PLAY and gate.id not in DRILL_GATES)
