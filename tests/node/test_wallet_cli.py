"""`swarmd wallet ...` for testers through the CLI's main against a real node service (driver,
SQLite store, HTTP on loopback; a one-member council, so its endorsement binds a handle):
show/balance explain spendable, `--to @handle`, `--wait-final`, history, hype, handle, watch
with resume. The CLI blocks on HTTP, so it runs in a worker thread while the node serves."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from swarmd.node.cli import main
from swarmd.node.cli.addressing import wait_final
from swarmd.node.cli.client import NodeClient
from swarmd.node.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError

from .test_council_cli import cli, make_home, start_node

__all__ = ["start_node"]  # the fixture, used by name


async def cli_lines(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[Any]]:
    """A command printing one JSON object a line (watch): its exit code and the objects."""
    code = await asyncio.to_thread(main, ["--json", *argv])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return code, [json.loads(line) for line in lines]


async def new_key(capsys: pytest.CaptureFixture[str], path: Path) -> str:
    code, value = await cli(capsys, "wallet", "new", "--out", str(path))
    assert code == EXIT_OK
    return str(value["account_id"])


@pytest.fixture
async def testers(
    tmp_path: Path, start_node: Any, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    """A running node, and alice and bob granted the signup reward (final)."""
    node = await start_node(make_home(tmp_path / "node"))
    url = node.service.api_url
    council_key = str(node.home / "node.key")
    people: dict[str, Any] = {"url": url, "council_key": council_key, "node": node}
    for name in ("alice", "bob"):
        key = tmp_path / f"{name}.key"
        account = await new_key(capsys, key)
        code, granted = await cli(
            capsys, "wallet", "grant", "--node", url, "--key", council_key, "--to", account,
            "--wait-final",
        )  # fmt: skip
        assert (code, granted["status"]) == (EXIT_OK, "final"), granted
        people[name] = {"key": str(key), "account": account}
    return people


async def test_show_explains_spendable_and_send_by_handle_waits_for_finality(
    testers: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    url, alice, bob = testers["url"], testers["alice"], testers["bob"]

    code, view = await cli(capsys, "wallet", "show", "--node", url, "--key", alice["key"])

    assert code == EXIT_OK and view["account"] == alice["account"]
    assert (view["balance"], view["spendable"], view["unreceived_count"]) == (100, 0, 1)
    assert "not received yet" in view["explained"] and "next op" in view["explained"]
    code, claimed = await cli(
        capsys, "wallet", "claim", "--node", url, "--key", alice["key"], "--handle", "alice",
        "--wait-final",
    )  # fmt: skip
    assert (code, claimed["status"]) == (EXIT_OK, "final"), claimed
    code, endorsed = await cli(
        capsys, "wallet", "endorse", "--node", url, "--key", testers["council_key"],
        "--claim", claimed["op_id"], "--wait-final",
    )  # fmt: skip
    assert (code, endorsed["status"]) == (EXIT_OK, "final"), endorsed
    code, handle = await cli(capsys, "wallet", "handle", "--node", url, "@alice")
    assert code == EXIT_OK and (handle["owner"], handle["final"]) == (alice["account"], True)

    code, sent = await cli(
        capsys, "wallet", "send", "--node", url, "--key", bob["key"], "--to", "@alice",
        "--amount", "30", "--wait-final",
    )  # fmt: skip

    assert (code, sent["status"], sent["kind"]) == (EXIT_OK, "final", "transfer"), sent
    code, balance = await cli(capsys, "wallet", "balance", "--node", url, "@alice")
    assert code == EXIT_OK and balance["balance"] == 130  # received by her claim, plus 30
    assert balance["spendable"] == 100 and balance["unreceived_count"] == 1
    code, history = await cli(capsys, "wallet", "history", "--node", url, "@alice")
    assert code == EXIT_OK
    assert [entry["op"]["kind"] for entry in history["ops"]] == ["handle.claim"]
    assert history["ops"][0]["status"] == "final" and history["next_cursor"] is None


async def test_an_unbound_handle_and_a_rejected_op_exit_1_with_their_code(
    testers: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    url, bob = testers["url"], testers["bob"]
    send = ("wallet", "send", "--node", url, "--key", bob["key"])

    code, error = await cli(capsys, *send, "--to", "@nobody", "--amount", "1", "--wait-final")
    assert (code, error["code"]) == (EXIT_FAILED, "handle_unbound")
    assert "@nobody is not claimed" in error["error"]
    code, error = await cli(capsys, *send, "--to", "@No!", "--amount", "1")
    assert (code, error["code"]) == (EXIT_USAGE, "usage")
    code, error = await cli(capsys, "wallet", "claim", "--node", url, "--key", bob["key"],
                            "--handle", "bobby")  # fmt: skip
    assert code == EXIT_OK
    code, error = await cli(capsys, *send, "--to", "@bobby", "--amount", "1")
    assert (code, error["code"]) == (EXIT_FAILED, "handle_unbound")
    assert "not bound to anyone yet" in error["error"]

    code, error = await cli(
        capsys, *send, "--to", testers["alice"]["account"], "--amount", "1000", "--wait-final"
    )

    assert code == EXIT_FAILED and error["code"] == "insufficient_funds", error


async def test_wait_final_gives_up_after_its_timeout(testers: dict[str, Any]) -> None:
    client = NodeClient(testers["url"])

    with pytest.raises(CliError) as caught:
        await asyncio.to_thread(wait_final, client, "00" * 32, 0.3)

    assert caught.value.code == "wait_timeout" and "last status unknown" in str(caught.value)


async def test_hype_and_watch_resume_after_the_last_event(
    testers: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    url, alice = testers["url"], testers["alice"]
    code, burned = await cli(
        capsys, "wallet", "burn", "--node", url, "--key", alice["key"], "--amount", "5",
        "--target", "cats", "--wait-final",
    )  # fmt: skip
    assert (code, burned["status"]) == (EXIT_OK, "final"), burned

    code, board = await cli(capsys, "wallet", "hype", "--node", url, "--top", "3")
    assert code == EXIT_OK
    assert board["targets"] == [{"target": "cats", "total": 5, "final_total": 5}]
    code, target = await cli(capsys, "wallet", "hype", "--node", url, "cats")
    assert (code, target["total"]) == (EXIT_OK, 5)

    watch = ("wallet", "watch", "--node", url, alice["account"], "--timeout", "10")
    code, events = await cli_lines(capsys, *watch, "--since", "0", "--count", "3")
    assert code == EXIT_OK and len(events) == 3
    assert all(alice["account"] in e.get("accounts", [alice["account"]]) for e in events)
    code, resumed = await cli_lines(capsys, *watch, "--since", str(events[0]["id"]), "--count", "2")
    assert code == EXIT_OK and resumed == events[1:]
    code, error = await cli(capsys, "wallet", "watch", "--node", url, "--since", "x")
    assert (code, error["code"]) == (EXIT_USAGE, "usage")
