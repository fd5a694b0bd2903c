"""Shared test fixtures and settings."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from swarmd.node.cli.release_gates import known_ids

# CI runs the heavier profile; both are deterministic per test (derandomized examples come from
# the test's own seed database only when a failure is replayed).
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


# --- release: `@pytest.mark.gate("<id>")` names the plan gate or open item a test measures
# (docs/CURRENT_STATUS.md lists them; node/cli/release_gates.py holds the ids). An unknown id is
# a collection error, so a typo cannot leave a gate silently uncovered.


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The `slow` tests (10 to 55 s each: the 100-seed scenario runs, the crash sweeps, the quick
    # release check) run first: pytest-xdist hands tests out in collection order, so when they
    # came last (tests/sim sorts late) one worker still ran them while the other had finished.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    known = known_ids()
    for item in items:
        for marker in item.iter_markers("gate"):
            if len(marker.args) != 1 or marker.args[0] not in known:
                raise pytest.UsageError(
                    f"{item.nodeid}: gate marker {marker.args!r} names no id of "
                    "node/cli/release_gates.py"
                )
