"""docs/PROTOCOL.md's table of rejection codes and `RejectCode` name the same codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from swarmd.protocol import node_core
from swarmd.protocol.codes import RejectCode, final_code
from swarmd.protocol.errors import MalformedOpError, ProtocolError, RemoteProtocolError

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
_ROW = re.compile(r"^\| `([a-z_]+)` \| (.+) \|$")


def documented_codes() -> dict[str, str]:
    """code -> meaning, from the rows of section 8's table."""
    text = PROTOCOL_MD.read_text()
    section = text.split("## 8. Rejection codes", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        match = _ROW.match(line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} documented twice"
            rows[match.group(1)] = match.group(2).strip()
    return rows


def test_every_code_is_documented() -> None:
    missing = {code.value for code in RejectCode} - documented_codes().keys()
    assert not missing, f"codes missing from docs/PROTOCOL.md section 8: {sorted(missing)}"


def test_every_documented_code_exists() -> None:
    unknown = documented_codes().keys() - {code.value for code in RejectCode}
    assert not unknown, f"codes in docs/PROTOCOL.md that RejectCode lacks: {sorted(unknown)}"


def test_every_documented_code_has_a_meaning() -> None:
    assert all(meaning for meaning in documented_codes().values())


def test_codes_are_their_plain_strings() -> None:
    assert RejectCode.FORK_LOST == "fork_lost"
    assert repr(RejectCode.FORK_LOST) == repr("fork_lost")
    assert f"{RejectCode.FORK_LOST}" == "fork_lost"
    assert json.dumps({RejectCode.BAD_PREV: RejectCode.BAD_PREV}) == '{"bad_prev": "bad_prev"}'


def test_errors_hold_plain_strings() -> None:
    assert type(MalformedOpError.code) is str
    assert type(MalformedOpError("x", code=RejectCode.BAD_AMOUNT).code) is str
    assert RemoteProtocolError.code == RejectCode.REMOTE_PROTOCOL_ERROR
    assert ProtocolError.code == RejectCode.PROTOCOL_ERROR


def test_final_code() -> None:
    assert final_code(RejectCode.FORK_LOST) is RejectCode.FORK_LOST_FINAL
    assert final_code(RejectCode.GRANT_CONFLICT_LOST) is RejectCode.GRANT_CONFLICT_LOST_FINAL
    assert final_code("not_a_code") == "not_a_code_final"


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


def test_every_core_error_code_is_named() -> None:
    assert node_core.NodeCore  # imports every core module, so every error class exists
    core_errors = [
        cls
        for cls in _subclasses(ProtocolError)
        if cls.__module__.startswith("swarmd.protocol.")
        and not cls.__module__.startswith("swarmd.protocol.sim.")
    ]
    assert len(core_errors) > 50
    named = {code.value for code in RejectCode}
    unnamed = [f"{cls.__name__}: {cls.code}" for cls in core_errors if cls.code not in named]
    assert not unnamed, sorted(unnamed)
