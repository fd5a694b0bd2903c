"""The network-rollback seeds the 1,000-seed release check (commit 968cdb0) failed with
"simulator: node N timer stuck at ~8.6": a node confirming its root after the revert
(node_core/rejoin.py) re-armed its retry deadline `asked_at + REJOIN_QUERY_RETRY_S` forever,
because at that very deadline `now - asked_at` rounded to just below the interval and
`handle_timer` did not ask again (a busy loop in a real daemon). Each seed replays exactly:
`swarmd chaos --scenario network-rollback --seed S --json`."""

from __future__ import annotations

import pytest

from swarmd.protocol.sim import scenarios

#: Every seed of the release check's 1,000 that showed the stuck rejoin timer.
STUCK_REJOIN_TIMER_SEEDS = (189, 245, 379, 470, 601, 853, 896, 968, 969)


@pytest.mark.parametrize("seed", STUCK_REJOIN_TIMER_SEEDS)
def test_network_rollback_seed_whose_rejoin_timer_was_stuck_passes(seed: int) -> None:
    result = scenarios.run_scenario("network-rollback", seed)
    assert result.ok, scenarios.format_failure(result)
    assert not any("timer stuck" in failure for failure in result.failures)
