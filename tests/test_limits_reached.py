"""Every bound named in protocol/limits.py is reached by some test: this test fails for any
name no test file mentions, except those listed below with their reason.

Mentioning a name is the cheap proxy: a test that names a bound almost always drives a value
to it (or asserts the default a config takes from it). A new limit therefore comes with its
test, or with an entry here that a reviewer reads.
"""

from __future__ import annotations

import re
from pathlib import Path

from swarmd.protocol import limits

TESTS = Path(__file__).resolve().parent

#: Bounds no correct input can reach: each guards against a bug in our own loop, so reaching
#: it would take a broken engine, not a test of this one.
UNREACHABLE = {
    # Every drain pass moves consensus forward (a step, a round or a height): a few suffice.
    "CONSENSUS_DRAIN_PASSES_MAX": "guards drain_consensus against an engine bug looping",
    # Every rule firing moves the step or round forward or sets a fire-once flag.
    "CONSENSUS_RULE_FIRINGS_PER_INPUT_MAX": "guards the Tendermint rule loop against a bug",
}

#: Not reached by a test yet: a debt, listed so that it is visible and cannot grow unnoticed.
#: Remove a name when a test reaches it (the test below fails if a listed name is mentioned).
NOT_YET_REACHED: set[str] = set()


def limit_names() -> list[str]:
    return sorted(name for name in vars(limits) if re.fullmatch(r"[A-Z][A-Z0-9_]*", name))


def mentioned_in_tests() -> set[str]:
    me = Path(__file__).resolve()
    text = "\n".join(
        path.read_text(encoding="utf-8") for path in sorted(TESTS.rglob("*.py")) if path != me
    )
    return set(re.findall(r"\b[A-Z][A-Z0-9_]*\b", text))


def test_every_limit_is_reached_by_a_test() -> None:
    names = limit_names()
    assert len(names) > 50  # the scan found the module's constants
    mentioned = mentioned_in_tests()
    exempt = set(UNREACHABLE) | NOT_YET_REACHED
    missing = [name for name in names if name not in mentioned and name not in exempt]
    assert missing == [], f"limits no test reaches: {missing}"


def test_the_exemptions_are_limits_and_still_unreached() -> None:
    names = set(limit_names())
    mentioned = mentioned_in_tests()
    exempt = set(UNREACHABLE) | NOT_YET_REACHED
    assert exempt <= names, f"not in limits.py: {sorted(exempt - names)}"
    reached = sorted(exempt & mentioned)
    assert reached == [], f"reached by a test now, drop from the lists: {reached}"
