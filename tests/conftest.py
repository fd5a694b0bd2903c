"""Shared test fixtures and settings."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# CI runs the heavier profile; both are deterministic per test (derandomized examples come from
# the test's own seed database only when a failure is replayed).
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
