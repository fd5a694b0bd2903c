"""The daemon's CLI subcommands: init, wallet and admin argument and file errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from swarmd.node.cli import main
from swarmd.node.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from swarmd.node.config import load_config
from swarmd.protocol.genesis import Genesis


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["--json", *argv])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    return code, json.loads(out[0])


def test_init_single_node_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "node"

    code, value = run_json(capsys, "init", "--home", str(home), "--api-port", "7301")

    assert code == EXIT_OK and value["council_member"] is True
    assert value["council"] == [value["node_id"]]
    config = load_config(home / "swarmd.toml")
    assert config.api.port == 7301 and config.node.key_file == home / "node.key"
    assert (home / "node.key").stat().st_mode & 0o777 == 0o600
    genesis = Genesis.from_json((home / "genesis.json").read_text())
    assert genesis.network_id.hex() == value["network_id"]


def test_init_council_and_join(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, first = run_json(capsys, "init", "--home", str(tmp_path / "a"), "--council", "4")
    assert code == EXIT_OK and len(first["council"]) == 4
    member_key = first["member_key_files"][0]

    code, second = run_json(
        capsys,
        "init",
        "--home",
        str(tmp_path / "b"),
        "--genesis",
        str(tmp_path / "a" / "genesis.json"),
        "--key",
        member_key,
        "--peer",
        "http://127.0.0.1:7000",
    )

    assert code == EXIT_OK and second["council_member"] is True
    assert second["network_id"] == first["network_id"]
    config = load_config(tmp_path / "b" / "swarmd.toml")
    assert [peer.url for peer in config.network.peers] == ["http://127.0.0.1:7000"]


def test_init_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_json(capsys, "init", "--home", str(tmp_path))[0] == EXIT_OK

    code, value = run_json(capsys, "init", "--home", str(tmp_path))

    assert (code, value["code"]) == (EXIT_FAILED, "file_exists")


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["init"], "usage"),
        (["init", "--home", "{tmp}/x", "--api-port", "70000"], "usage"),
        (["init", "--home", "{tmp}/x", "--genesis", "{tmp}/missing.json"], "genesis_missing"),
        (["init", "--home", "{tmp}/x", "--genesis", "{tmp}/bad.json"], "invalid_genesis"),
        (["init", "--home", "{tmp}/x", "--key", "{tmp}/bad.json"], "bad_key_file"),
        (["run", "--home", "{tmp}/nowhere"], "no_home"),
        (["wallet"], "usage"),
        (["wallet", "new"], "usage"),
        (["wallet", "balance", "sw1nope"], "usage"),
        (["wallet", "send", "--key", "{tmp}/k", "--to", "sw1nope", "--amount", "1"], "usage"),
        (
            ["wallet", "send", "--key", "{tmp}/missing.key", "--to", "{acct}", "--amount", "0"],
            "usage",
        ),
        (
            ["wallet", "send", "--key", "{tmp}/missing.key", "--to", "{acct}", "--amount", "5"],
            "key_file_missing",
        ),
        (
            ["wallet", "burn", "--key", "{tmp}/bad.json", "--amount", "5", "--target", "t"],
            "bad_key_file",
        ),
        (["wallet", "claim", "--key", "{tmp}/missing.key", "--handle", "NO"], "bad_handle"),
        (["wallet", "balance", "--node", "ftp://x", "{acct}"], "usage"),
        (["admin", "read-only", "--home", "{tmp}/nowhere"], "no_home"),
        (["admin", "sideways", "--home", "{tmp}"], "usage"),
        (["status", "--node", "http://127.0.0.1:1"], "node_unreachable"),
        (["status", "--node", "http://[::1"], "usage"),  # (urllib raised a bare ValueError)
        (["status", "--node", "http://a b"], "usage"),
        (["status", "--node", "http://127.0.0.1:99999"], "usage"),
        (["status", "--node", "http://"], "usage"),
        (["wallet", "watch", "--since", "-5"], "usage"),  # (was HTTP 400 without the code)
        (["wallet", "watch", "--since", "1" * 20], "usage"),
        (["devnet", "--nodes", "0"], "usage"),
    ],
)
def test_bad_arguments_exit_2_and_refusals_1_with_a_json_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: str
) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["--json", "wallet", "new", "--out", str(tmp_path / "w.key")]) == EXIT_OK
    account = json.loads(capsys.readouterr().out)["account_id"]
    filled = [item.format(tmp=tmp_path, acct=account) for item in argv]

    exit_code, value = run_json(capsys, *filled)

    assert exit_code == (EXIT_USAGE if code == "usage" else EXIT_FAILED)
    assert value["code"] == code, value
    assert value["error"]


def test_admin_without_a_running_node_writes_its_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_json(capsys, "init", "--home", str(tmp_path))[0] == EXIT_OK

    code, value = run_json(capsys, "admin", "quiesce", "--home", str(tmp_path))

    assert (code, value["mode"], value["node"]) == (EXIT_OK, "quiesced", "stopped")


def test_wallet_new_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "w.key")
    code, value = run_json(capsys, "wallet", "new", "--out", path)
    assert code == EXIT_OK and value["account_id"].startswith("sw1")

    code, value = run_json(capsys, "wallet", "new", "--out", path)

    assert (code, value["code"]) == (EXIT_FAILED, "file_exists")
