"""`swarmd council ...` and `swarmd admin ...` against a real node service (driver, SQLite store,
HTTP servers on loopback): the happy paths and the refusals (not a council member, node not
running, bad arguments), each a typed error with exit status 2; and the devnet's report of a
node that exits.

The CLI is blocking (urllib), so it runs in a worker thread while the node serves on the loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from swarmd.node.cli import main
from swarmd.node.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Output,
    load_home_config,
    open_home_store,
)
from swarmd.node.cli.council import status_text
from swarmd.node.cli.devnet import NodeHome, free_ports, report_exit, restart_argv
from swarmd.node.cli.home import init_home
from swarmd.node.http.admin import write_cookie
from swarmd.node.http.admin_council import ClaimsVoting, RollbackProposing
from swarmd.node.runtime.driver import Daemon
from swarmd.node.runtime.service import NodeService
from swarmd.protocol import crypto
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.node_core import NodeCore
from swarmd.protocol.wallet import Author

WAIT_S = 10.0
FAST = {"consensus": {"checkpoint_interval_s": 0.05, "timeout_propose_s": 0.2}}


@dataclass
class Running:
    home: Path
    service: NodeService

    @property
    def daemon(self) -> Daemon:
        assert self.service.daemon is not None
        return self.service.daemon


def make_home(home: Path, *, council_size: int = 1, genesis: Genesis | None = None) -> Path:
    api_port, admin_port = free_ports(2)
    overrides = {**FAST, "api": {"port": api_port}, "admin": {"port": admin_port}}
    keypair = crypto.KeyPair.from_seed(os.urandom(32))
    init_home(
        home,
        keypair=keypair,
        genesis=genesis,
        council_size=council_size,
        config_overrides=overrides,
    )
    return home


@pytest.fixture
async def start_node() -> AsyncIterator[Callable[[Path], Any]]:
    services: list[NodeService] = []

    async def start(home: Path) -> Running:
        service = NodeService(load_home_config(str(home)))
        await service.start()
        services.append(service)
        return Running(home, service)

    yield start
    for service in services:
        await service.stop()


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    """Run `swarmd --json ...` in a thread (it blocks on HTTP); its exit code and JSON."""
    code = await asyncio.to_thread(main, ["--json", *argv])
    # The node in this process logs to stdout too; the command prints one JSON line.
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 1, lines
    value: dict[str, Any] = json.loads(lines[0])
    return code, value


async def wait_for(daemon: Daemon, predicate: Callable[[], bool]) -> None:
    """Wait, on the node's own events (no sleeps), until `predicate` holds."""
    changed = asyncio.Event()

    def listener(_event: dict[str, Any]) -> None:
        changed.set()

    daemon.add_listener(listener)
    try:
        async with asyncio.timeout(WAIT_S):
            while not predicate():
                changed.clear()
                await changed.wait()
    finally:
        daemon.remove_listener(listener)


async def test_quiesce_is_signed_by_the_node_key_and_final(
    tmp_path: Path, start_node: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    node = await start_node(make_home(tmp_path / "a"))
    home = str(node.home)

    code, result = await cli(capsys, "council", "quiesce", "--home", home, "--reason", "drill")

    assert code == EXIT_OK, result
    assert (result["kind"], result["status"]) == ("council.quiesce", "accepted")
    assert result["member"] == node.daemon.node_id_text
    ledger = node.daemon.core.ledger
    op = ledger.op(bytes.fromhex(result["op_id"]))
    assert op is not None and op.author == node.daemon.node_id and op.fields["reason"] == "drill"
    # A one-member council: its vote is a quorum, so client ops are refused at once.
    assert ledger.state.quiesced
    stranger = Author(crypto.KeyPair.from_seed(os.urandom(32)), node.daemon.genesis.network_id)
    outcome = node.daemon.core.submit_op(stranger.claim("bob").envelope, 0.0)
    assert (outcome.status, outcome.code) == ("rejected", "quiesced")

    code, status = await cli(capsys, "council", "status", "--home", home)

    assert code == EXIT_OK and status["member"] is True and status["mode"] == "quiesced"
    assert status["provisional"] == {
        "quiesced": True,
        "quiesce_votes": {node.daemon.node_id_text: True},
    }
    assert status["questions"][0]["question"] == "quiesce"


@pytest.mark.gate("sn-play-quiescence")
async def test_a_quorum_quiesce_becomes_final_and_a_resume_lifts_it(
    tmp_path: Path, start_node: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bug 1 of issue 12: today consensus stops as soon as the provisional state is quiesced,
    so the quiesce never becomes final and the resume is refused."""
    node = await start_node(make_home(tmp_path / "a"))
    home, ledger = str(node.home), node.daemon.core.ledger
    code, _ = await cli(capsys, "council", "quiesce", "--home", home, "--reason", "drill")
    assert code == EXIT_OK
    await wait_for(node.daemon, lambda: ledger.final_state.quiesced)
    code, status = await cli(capsys, "council", "status", "--home", home)
    assert status["questions"][0]["decided"] is True
    assert status["questions"][0]["votes"] == {node.daemon.node_id_text: True}

    code, resumed = await cli(capsys, "council", "resume", "--home", home, "--reason", "done")

    assert code == EXIT_OK, resumed
    await wait_for(node.daemon, lambda: not ledger.final_state.quiesced)


async def test_votes_without_a_quorum_show_as_lacking(
    tmp_path: Path, start_node: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Four members, only this one running: its votes are admitted but never reach a quorum.
    node = await start_node(make_home(tmp_path / "a", council_size=4))
    home = str(node.home)

    code, first = await cli(capsys, "council", "quiesce", "--home", home, "--reason", "r1")
    assert code == EXIT_OK and first["status"] == "accepted"
    code, second = await cli(capsys, "council", "resume", "--home", home, "--reason", "r2")
    assert code == EXIT_OK and second["status"] == "accepted"
    # Both signed on one chain: the resume follows the quiesce.
    ledger = node.daemon.core.ledger
    resume = ledger.op(bytes.fromhex(second["op_id"]))
    assert resume is not None and resume.prev == bytes.fromhex(first["op_id"])

    code, status = await cli(capsys, "council", "status", "--home", home)

    assert code == EXIT_OK and status["quorum"] == 3 and len(status["council"]) == 4
    assert status["provisional"]["quiesce_votes"][node.daemon.node_id_text] is False
    assert status["questions"][0]["lacks"] == 3 and "quiesce" in status["lacking_quorum"]


@pytest.mark.gate("s1-play-suspend-claims")
async def test_endorse_then_revoke_a_handle(
    tmp_path: Path, start_node: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    node = await start_node(make_home(tmp_path / "a"))
    home, daemon = str(node.home), node.daemon
    claimant = Author(crypto.KeyPair.from_seed(os.urandom(32)), daemon.genesis.network_id)
    member = Author(daemon.keypair, daemon.genesis.network_id)  # the one-member council
    grant = member.grant(claimant.key, daemon.genesis.signup_reward)  # state costs credits
    assert (await daemon.submit(grant.envelope)).status == "accepted"
    claim = claimant.claim("ada", deps=[grant.op_id])
    assert (await daemon.submit(claim.envelope)).status == "accepted"

    code, endorsed = await cli(
        capsys, "council", "endorse", "--home", home, "--claim", claim.op_id.hex()
    )

    assert code == EXIT_OK and endorsed["kind"] == "handle.endorse"
    assert (endorsed["handle"], endorsed["claim"]) == ("ada", claim.op_id.hex())
    ledger = daemon.core.ledger
    await wait_for(daemon, lambda: "ada" in ledger.final_state.bindings)

    code, revoked = await cli(capsys, "council", "revoke", "--home", home, "--handle", "ada")

    assert code == EXIT_OK and revoked["kind"] == "handle.revoke"
    assert revoked["claim"] == claim.op_id.hex()
    await wait_for(daemon, lambda: "ada" not in ledger.final_state.bindings)
    code, status = await cli(capsys, "council", "status", "--home", home)
    by_question = {q["question"]: q for q in status["questions"]}
    assert by_question["revoke"]["decided"] and by_question["revoke"]["handle"] == "ada"
    assert by_question["endorse"]["yes"] == 1

    # Revoking again is the core's typed refusal, passed through.
    code, again = await cli(
        capsys, "council", "revoke", "--home", home, "--handle", "ada", "--claim", claim.op_id.hex()
    )
    assert (code, again["code"]) == (EXIT_FAILED, "already_revoked")
    code, unknown = await cli(capsys, "council", "revoke", "--home", home, "--handle", "nobody")
    assert (code, unknown["code"]) == (EXIT_FAILED, "unknown_handle")
    code, unknown = await cli(capsys, "council", "endorse", "--home", home, "--claim", "ab" * 32)
    assert (code, unknown["code"]) == (EXIT_FAILED, "unknown_claim")


async def test_a_node_outside_the_council_cannot_sign(
    tmp_path: Path, start_node: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    member_home = make_home(tmp_path / "member")
    genesis = Genesis.from_json((member_home / "genesis.json").read_bytes())
    outsider = await start_node(make_home(tmp_path / "outsider", genesis=genesis))
    home = str(outsider.home)

    for argv in (
        ["quiesce", "--reason", "x"],
        ["resume", "--reason", "x"],
        ["revoke", "--handle", "ada"],
        ["endorse", "--claim", "cd" * 32],
        ["pause-claims"],
        ["rollback", "--to-height", "0", "--reason", "x"],
    ):
        code, value = await cli(capsys, "council", *argv[:1], "--home", home, *argv[1:])
        assert (code, value["code"]) == (EXIT_FAILED, "not_council"), argv
    assert outsider.daemon.core.ledger.state.accounts.get(outsider.daemon.node_id) is None
    code, status = await cli(capsys, "council", "status", "--home", home)
    assert code == EXIT_OK and status["member"] is False


async def test_pending_core_work_answers_not_supported(
    tmp_path: Path, start_node: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """pause-claims/resume-claims need Author.pause_claims (branch quiesce), rollback needs
    NodeCore.propose_rollback (branch rollback): typed `not_supported` until they land."""
    node = await start_node(make_home(tmp_path / "a"))
    home = str(node.home)
    author = Author(node.daemon.keypair, node.daemon.genesis.network_id)

    code, paused = await cli(capsys, "council", "pause-claims", "--home", home)
    if isinstance(author, ClaimsVoting):
        assert code == EXIT_OK and paused["kind"] == "council.pause_claims"
    else:
        assert (code, paused["code"]) == (EXIT_FAILED, "not_supported")
    code, rollback = await cli(
        capsys, "council", "rollback", "--home", home, "--to-height", "0", "--reason", "x"
    )
    if issubclass(NodeCore, RollbackProposing):
        assert code == EXIT_OK and rollback["to_height"] == 0
    else:
        assert (code, rollback["code"]) == (EXIT_FAILED, "not_supported")


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["council", "quiesce", "--home", "{home}"], "usage"),  # --reason is required
        (["council", "quiesce", "--home", "{home}", "--reason", " "], "usage"),
        (["council", "quiesce", "--home", "{home}", "--reason", "x" * 300], "usage"),
        (["council", "endorse", "--home", "{home}", "--claim", "xyz"], "usage"),
        (["council", "revoke", "--home", "{home}"], "usage"),
        (
            ["council", "rollback", "--home", "{home}", "--to-height", "-1", "--reason", "r"],
            "usage",
        ),
        (["council", "sideways", "--home", "{home}"], "usage"),
        (["council", "status", "--home", "{home}/nowhere"], "no_home"),
        (["council", "quiesce", "--home", "{home}", "--reason", "r"], "cookie_missing"),
        (["council", "status", "--home", "{home}"], "cookie_missing"),
    ],
)
def test_bad_arguments_exit_2_and_a_stopped_node_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: str
) -> None:
    home = make_home(tmp_path / "a")
    filled = [item.format(home=home) for item in argv]

    exit_code = main(["--json", *filled])

    value = json.loads(capsys.readouterr().out)
    expected = EXIT_USAGE if code == "usage" else EXIT_FAILED  # usage 2, refusals 1
    assert (exit_code, value["code"]) == (expected, code), value


def test_an_unreachable_node_is_a_typed_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = make_home(tmp_path / "a")
    # A cookie left behind by a crashed node: nothing listens on the admin port.
    write_cookie(load_home_config(str(home)).admin.cookie_file)

    exit_code = main(["--json", "council", "status", "--home", str(home)])

    value = json.loads(capsys.readouterr().out)
    assert (exit_code, value["code"]) == (EXIT_FAILED, "node_unreachable")


# --- swarmd admin on a stopped node ----------------------------------------------------------


async def stored_mode(home: Path) -> tuple[str, str]:
    store, _ = await open_home_store(str(home))
    try:
        mode, reason = await store.get_mode()
    finally:
        await store.close()
    return mode.value, reason


async def test_admin_mode_on_a_stopped_node_is_honoured_at_start(
    tmp_path: Path, start_node: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    home = make_home(tmp_path / "a")

    code, value = await cli(capsys, "admin", "quiesce", "--home", str(home), "--reason", "drill")

    assert code == EXIT_OK
    assert (value["mode"], value["mode_reason"], value["node"]) == ("quiesced", "drill", "stopped")
    assert await stored_mode(home) == ("quiesced", "drill")
    node = await start_node(home)
    assert (node.daemon.core.mode.value, node.daemon.core.mode_reason) == ("quiesced", "drill")

    # Running now: the same command goes through the admin interface.
    code, value = await cli(capsys, "admin", "resume", "--home", str(home))
    assert code == EXIT_OK and (value["mode"], value["node"]) == ("normal", "running")
    assert node.daemon.core.mode.value == "normal"


async def test_admin_mode_with_a_stale_cookie_writes_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = make_home(tmp_path / "a")
    write_cookie(load_home_config(str(home)).admin.cookie_file)  # left by a kill -9

    code, value = await cli(capsys, "admin", "read-only", "--home", str(home), "--reason", "r")

    assert code == EXIT_OK and (value["mode"], value["node"]) == ("read-only", "stopped")
    assert await stored_mode(home) == ("read_only", "r")


# --- swarmd devnet's report of a node that exits ----------------------------------------------


def test_devnet_reports_an_exited_node_with_its_restart_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = NodeHome(2, tmp_path / "node-2", crypto.KeyPair.from_seed(os.urandom(32)), 1, 2)

    report_exit(node, -9, Output(False))
    text = capsys.readouterr().err
    report_exit(node, 3, Output(True))
    value = json.loads(capsys.readouterr().out)

    assert f"node-2 ({node.node_id}) exited (signal 9)" in text
    assert str(tmp_path / "node-2" / "node.log") in text
    assert f"restart it with: {shlex.join(restart_argv(node))}" in text
    assert restart_argv(node)[-3:] == ["run", "--home", str(tmp_path / "node-2")]
    assert (value["event"], value["index"], value["exit_code"]) == ("node_exited", 2, 3)
    assert value["restart_argv"] == restart_argv(node)


def _council_status(final: dict[str, bool | None], provisional: dict[str, bool | None]) -> Any:
    """A `GET /v1/admin/council` body with these final and provisional quiesce votes."""
    yes = sum(1 for vote in final.values() if vote)
    return {
        "node_id": "sw1node",
        "member": True,
        "council": sorted(final),
        "quorum": 3,
        "final_height": 7,
        "epoch": 0,
        "mode": "normal",
        "provisional": {
            "quiesced": sum(1 for v in provisional.values() if v) >= 3,
            "quiesce_votes": provisional,
        },
        "questions": [
            {
                "question": "quiesce",
                "question_id": "quiesce",
                "votes": final,
                "yes": yes,
                "quorum": 3,
                "decided": yes >= 3,
                "lacks": max(0, 3 - yes),
            }
        ],
        "claims_with_votes": [],
        "lacking_quorum": [] if yes >= 3 else ["quiesce"],
    }


def test_council_status_counts_only_the_quiesce_votes_not_yet_final() -> None:
    """The `not yet final` line counted every provisional quiesce vote, final ones too: with
    three final quiesce votes it said 3 were not yet final."""
    final: dict[str, bool | None] = {"a": True, "b": True, "c": True, "d": None}
    text = status_text(_council_status(final, dict(final)))
    assert "not yet final: 0 quiesce vote(s), quiesced: True" in text
    # d's quiesce is cast but not final; a's resume is cast (not a quiesce vote).
    provisional: dict[str, bool | None] = {"a": False, "b": True, "c": True, "d": True}
    text = status_text(_council_status(final, provisional))
    assert "not yet final: 1 quiesce vote(s), quiesced: True" in text
    none_final: dict[str, bool | None] = {"a": None, "b": None, "c": False, "d": None}
    text = status_text(_council_status(none_final, {"a": True, "b": True, "c": True, "d": None}))
    assert "not yet final: 3 quiesce vote(s), quiesced: True" in text
