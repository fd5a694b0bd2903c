"""The live fuzzers' log scan (tests/live/conftest.py) flags what it must and nothing else."""

from __future__ import annotations

import json

import pytest

from tests.live.conftest import problem

BUGS = {
    "traceback": "Traceback (most recent call last):",
    "not_json": "Error handling request",
    "error_level": json.dumps({"event": "db_write_failed", "level": "error"}),
    "critical_level": json.dumps({"event": "node_crashed", "level": "critical"}),
    "request_failed": json.dumps({"event": "request_failed", "level": "warning"}),
    "exception_field": json.dumps({"event": "x", "level": "info", "exception": "Traceback"}),
    "not_an_object": json.dumps(["a", "list"]),
}
FINE = {
    "info": json.dumps({"event": "offer_refused", "level": "info", "code": "signal_malformed"}),
    "warning": json.dumps({"event": "dial_failed", "level": "warning"}),
    "bad_http_request": json.dumps({"event": "bad_http_request", "level": "info"}),
}


@pytest.mark.parametrize("name", sorted(BUGS))
def test_the_scan_flags(name: str) -> None:
    assert problem(BUGS[name])


@pytest.mark.parametrize("name", sorted(FINE))
def test_the_scan_passes(name: str) -> None:
    assert not problem(FINE[name])
