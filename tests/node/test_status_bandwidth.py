"""`swarmd status` prints the bytes sent and received over peer links, by message class."""

from __future__ import annotations

from typing import Any

from swarmd.node.cli.status import status_text


def _status(**extra: Any) -> dict[str, Any]:
    base = {"node_id": "sw1me", "mode": "normal", "final_height": 7, "peers": []}
    return {**base, "state_root": "ab" * 32, **extra}


def test_the_text_shows_byte_totals_and_classes_in_their_order() -> None:
    sent = {"consensus": 100, "bundle": 0, "gossip": 2000, "delta_sync": 30}
    received = {"consensus": 90, "gossip": 1000, "state_sync": 5, "other_kind": 1}
    text = status_text(_status(bytes_sent=sent, bytes_received=received), 0.0)
    assert (
        "  bytes: sent=2130 received=1096 (sent/received by class: consensus=100/90 "
        "bundle=0/0 gossip=2000/1000 delta_sync=30/0 state_sync=0/5 other_kind=0/1)"
    ) in text


def test_a_status_without_byte_figures_prints_no_byte_line() -> None:
    assert "bytes:" not in status_text(_status(), 0.0)
