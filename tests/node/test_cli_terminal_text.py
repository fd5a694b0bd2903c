"""Text another user wrote (burn targets, mode reasons, event fields) reaches the operator's
terminal as text: control characters and newlines are escaped, so nobody can clear the screen,
recolour it or forge a line of `swarmd` output through a burn target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from swarmd.node.cli.common import EXIT_FAILED, Output, shown
from swarmd.node.cli.main import main
from swarmd.node.cli.status import status_text
from swarmd.node.cli.telemetry import telemetry_text
from swarmd.protocol import crypto

#: Clear the screen, turn red, then a line break that would pass for our own next line.
HOSTILE = "evil\x1b[2J\x1b[31mFAKE\nswarmd: all good\u202e"


def test_shown_escapes_every_unprintable_character_and_keeps_the_rest() -> None:
    assert shown(HOSTILE) == "evil\\x1b[2J\\x1b[31mFAKE\\nswarmd: all good\\u202e"
    assert shown("rust <b>bold</b> & co, é, 🚀") == "rust <b>bold</b> & co, é, 🚀"


def test_telemetry_burn_targets_cannot_reach_the_terminal_as_control_sequences() -> None:
    day: dict[str, Any] = {
        "date": "2026-12-07",
        "ops": 3,
        "new_accounts": 1,
        "daily_active": 1,
        "monthly_active": 1,
        "retention": None,
        "velocity": 0.5,
        "supply": 99,
        "burns": {HOSTILE: 1, "launch-party": 2},
    }
    report = {
        "since_height": 1,
        "since_day": "2026-12-07",
        "latest_day": "2026-12-07",
        "latest_height": 4,
        "window_days": 30,
        "days": [day, {**day, "date": "2026-12-08", "burns": {}}],
    }
    text = telemetry_text(report)
    assert "\x1b" not in text and "\u202e" not in text
    assert len(text.splitlines()) == 4  # the totals, the header and one row per day
    assert "evil\\x1b[2J\\x1b[31mFAKE\\nswarmd: all good\\u202e=1,launch-party=2" in text
    assert text.splitlines()[-1].endswith(" -")  # a day without burns


def test_a_mode_reason_is_one_escaped_line_of_status() -> None:
    status = {
        "node_id": "sw1me",
        "mode": "read_only",
        "mode_reason": HOSTILE,
        "final_height": 7,
        "peers": [],
        "state_root": "ab" * 32,
    }
    text = status_text(status, now=1000.0)
    assert "\x1b" not in text
    assert "  mode: read_only (reason: evil\\x1b[2J" in text
    assert not any(line.startswith("swarmd: all good") for line in text.splitlines())


def test_human_output_never_carries_a_control_character(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Output(as_json=False).result({}, "line one \x1b[2J\u202e\nline two")
    printed = capsys.readouterr().out
    assert printed.splitlines() == ["line one \\x1b[2J\\u202e", "line two"]  # ours stay
    Output(as_json=True).result({"target": HOSTILE})
    assert '"evil\\u001b[2J' in capsys.readouterr().out  # JSON escapes it by itself


def test_an_error_is_one_line_whatever_its_message_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "a\nswarmd: error: forged [ok]\x1b[2J.key"
    to = crypto.KeyPair.from_seed(bytes(32)).account_id
    code = main(["wallet", "send", "--key", str(key), "--to", to, "--amount", "1"])
    printed = capsys.readouterr().err
    assert code == EXIT_FAILED
    assert len(printed.splitlines()) == 1 and "\x1b" not in printed
    assert printed.startswith("swarmd: error: key file ") and "\\nswarmd: error: forged" in printed
    assert printed.rstrip().endswith("[key_file_missing]")
