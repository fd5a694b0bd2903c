"""docs/CURRENT_STATUS.md is generated from the code (`swarmd release status`): the committed
page must be what the generator writes now, and the generator must say what it claims (a gate
no test marks is uncovered, an unknown marker or scenario is a problem)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from swarmd.node.cli import main
from swarmd.node.cli.release_gates import GATES, OPEN_AREAS, OPEN_ITEMS, known_ids
from swarmd.node.cli.release_status import (
    STATUS_FILE,
    generate,
    read_sources,
    scan_gate_markers,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_status_page_is_the_generated_one() -> None:
    committed = (ROOT / STATUS_FILE).read_text(encoding="utf-8")
    assert committed == generate(ROOT), (
        f"{STATUS_FILE} is out of date: run `make status-doc` (swarmd release status) and commit it"
    )


def test_the_generator_finds_no_problem_in_this_checkout() -> None:
    sources = read_sources(ROOT)
    assert sources.problems == []
    assert "## Problems found while generating" not in generate(ROOT)


def test_every_gate_and_open_item_has_a_unique_id_and_the_areas_are_the_plans() -> None:
    ids = [gate.id for gate in GATES] + [item.id for item in OPEN_ITEMS]
    assert len(ids) == len(set(ids)) == len(known_ids())
    assert OPEN_AREAS == ("credit concurrency", "ledger accuracy", "rate limiting")
    assert {item.area for item in OPEN_ITEMS} == set(OPEN_AREAS)


def test_the_drill_and_play_tests_the_release_check_runs_are_marked() -> None:
    marked = scan_gate_markers(ROOT)
    drills = marked["s0-recovery-drills"]
    assert "tests/node/test_recovery.py::test_reset_then_recover_restores_the_same_state" in drills
    assert any("from_the_newest_snapshot" in test for test in drills)
    assert any(test.startswith("tests/integration/") for test in marked["sn-play-quiescence"])


def write_checkout(root: Path, test_source: str) -> Path:
    """A minimal checkout: this repo's docs and records, and one test file of our own."""
    for name in ("docs", "BENCHMARKS.md", "CHAOS_HISTORY.jsonl"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name)
        else:
            shutil.copy(source, root / name)
    (root / "tests").mkdir()
    (root / "tests" / "test_gates.py").write_text(test_source, encoding="utf-8")
    return root


MARKED = """
import pytest

pytestmark = [pytest.mark.gate("s2-retention")]


@pytest.mark.gate("rl-peer-messages")
def test_function():
    pass


@pytest.mark.gate("s2-credits-velocity")
class TestGroup:
    def test_method(self):
        pass
"""


def test_markers_on_functions_classes_and_modules_cover_their_gates(tmp_path: Path) -> None:
    plain = generate(write_checkout(tmp_path / "plain", "def test_nothing():\n    pass\n"))
    assert "- `s2-retention`\n" in plain and "- `s2-credits-velocity`\n" in plain
    assert "| — | **open** |" in plain  # rl-peer-messages: no test closes it
    root = write_checkout(tmp_path / "marked", MARKED)
    marked = scan_gate_markers(root)
    assert marked["s2-retention"] == [
        "tests/test_gates.py::TestGroup::test_method",
        "tests/test_gates.py::test_function",
    ]
    assert marked["s2-credits-velocity"] == ["tests/test_gates.py::TestGroup::test_method"]
    page = generate(root)
    assert "- `s2-retention`\n" not in page and "- `s2-credits-velocity`\n" not in page
    assert "`tests/test_gates.py::test_function` | closed |" in page
    assert page == generate(root)  # deterministic


def test_an_unknown_gate_marker_is_reported_as_a_problem(tmp_path: Path) -> None:
    source = 'import pytest\n\n@pytest.mark.gate("no-such-gate")\ndef test_x():\n    pass\n'
    page = generate(write_checkout(tmp_path, source))
    assert "## Problems found while generating" in page
    assert "tests mark unknown gate 'no-such-gate'" in page


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_status_check_fails_on_a_stale_page_until_it_is_rewritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_checkout(tmp_path, "def test_nothing():\n    pass\n")
    (root / STATUS_FILE).write_text("# edited by hand\n", encoding="utf-8")
    code, report = run(capsys, "release", "status", "--check", "--root", str(root))
    assert code == 1 and report["up_to_date"] is False
    code, report = run(capsys, "release", "status", "--root", str(root))
    assert code == 0 and report["written"] is True
    code, report = run(capsys, "release", "status", "--check", "--root", str(root))
    assert code == 0 and report["up_to_date"] is True


def test_a_folder_that_is_no_checkout_is_a_typed_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, error = run(capsys, "release", "status", "--root", str(tmp_path))
    assert code == 1 and error["code"] == "not_a_checkout"


def test_seeds_known_to_fail_are_listed_from_the_scenario_tests(tmp_path: Path) -> None:
    root = write_checkout(tmp_path, "def test_nothing():\n    pass\n")
    assert "Seeds known to fail" in generate(root) and "\n- none\n" in generate(root)
    (root / "tests" / "sim").mkdir()
    (root / "tests" / "sim" / "test_scenarios.py").write_text(
        'KNOWN_FAILURES: dict[tuple[str, int], str] = {("fork", 9): "why", ("fork", 3): "how"}\n',
        encoding="utf-8",
    )
    page = generate(root)
    assert "- `fork` seed 3: how\n- `fork` seed 9: why\n" in page
