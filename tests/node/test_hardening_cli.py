"""Issue 14: the command line and the node's start refuse bad input with one typed line."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from swarmd.node.cli.home import init_home
from swarmd.node.cli.main import main
from swarmd.node.logs import reset_logging
from swarmd.protocol import consensus
from swarmd.protocol.checkpoint import Cut
from tests.node import test_checkpoint_cli

TURN = {"network": {"turn_urls": ["turn:127.0.0.1:3478"], "turn_secret": "s3cret"}}


def test_f10_a_config_holding_the_turn_secret_is_owner_only(tmp_path: Path) -> None:
    result = init_home(tmp_path / "home", config_overrides=TURN)

    config = tmp_path / "home" / "swarmd.toml"
    assert "s3cret" in config.read_text()
    assert config.stat().st_mode & 0o777 == 0o600
    assert "turn_secret" in result["note"] and "0600" in result["note"]


def test_f10_overwriting_a_world_readable_config_with_a_secret_narrows_it(
    tmp_path: Path,
) -> None:
    init_home(tmp_path / "home")
    config = tmp_path / "home" / "swarmd.toml"
    config.chmod(0o644)

    init_home(tmp_path / "home", config_overrides=TURN, force=True)

    assert config.stat().st_mode & 0o777 == 0o600


def test_a_config_without_secrets_stays_readable(tmp_path: Path) -> None:
    result = init_home(tmp_path / "home")

    assert "note" not in result
    assert (tmp_path / "home" / "swarmd.toml").stat().st_mode & 0o044 != 0


def test_f5_run_with_the_api_port_in_use_is_one_typed_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        init_home(tmp_path / "home", config_overrides={"api": {"host": "127.0.0.1", "port": port}})
        try:
            status = main(["run", "--home", str(tmp_path / "home")])
        finally:
            reset_logging()

    err = capsys.readouterr().err
    assert status == 1
    assert "Traceback" not in err
    assert f"swarmd: error: cannot listen on 127.0.0.1:{port}" in err
    assert "[address_in_use]" in err
    assert not (tmp_path / "home" / "admin.cookie").exists()


finalized = test_checkpoint_cli.finalized  # the fixture: a bundle finalized by a 4-node swarm


def api_checkpoint_json(bundle: bytes, **fields: object) -> str:
    """What `GET /v1/checkpoints/latest` answers (node/http/api.py get_checkpoint)."""
    decoded = consensus.CheckpointBundle.decode(bundle)
    cut = Cut.decode(decoded.value)
    value = {
        "height": cut.height,
        "round": decoded.round,
        "checkpoint_id": cut.checkpoint_id.hex(),
        "parent_id": cut.parent_id.hex(),
        "state_root": cut.state_root.hex(),
        "heads": [],
        "signers": [],
        "bundle": bundle.hex(),
        **fields,
    }
    return json.dumps(value)


def test_checkpoint_verify_accepts_the_apis_own_json_and_prints_the_state_root(
    tmp_path: Path, finalized: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    swarm, bundle = finalized
    (tmp_path / "genesis.json").write_text(swarm.genesis.to_json())
    (tmp_path / "latest.json").write_text(api_checkpoint_json(bundle))
    root = Cut.decode(consensus.CheckpointBundle.decode(bundle).value).state_root.hex()

    status = main(
        [
            "checkpoint",
            "verify",
            str(tmp_path / "latest.json"),
            "--genesis",
            str(tmp_path / "genesis.json"),
        ]
    )

    out = capsys.readouterr().out
    assert status == 0 and out.startswith("valid: height 1")
    assert f"state root {root}" in out


def test_checkpoint_verify_refuses_json_whose_fields_disagree_with_its_bundle(
    tmp_path: Path, finalized: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    swarm, bundle = finalized
    (tmp_path / "genesis.json").write_text(swarm.genesis.to_json())
    (tmp_path / "lie.json").write_text(api_checkpoint_json(bundle, state_root="00" * 32))

    status = main(
        [
            "--json",
            "checkpoint",
            "verify",
            str(tmp_path / "lie.json"),
            "--genesis",
            str(tmp_path / "genesis.json"),
        ]
    )

    result = json.loads(capsys.readouterr().out)
    assert status == 1 and result["valid"] is False
    assert result["code"] == "checkpoint_json_mismatch"
