"""`swarmd checkpoint verify` checks a bundle offline with the genesis keys only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swarmd.node.cli import main
from swarmd.protocol import consensus
from swarmd.protocol.sim.harness import Swarm


@pytest.fixture(scope="module")
def finalized() -> tuple[Swarm, bytes]:
    swarm = Swarm(4, seed=3)
    person = swarm.author("verify-me")
    swarm.submit(0, swarm.members[0].grant(person.key, 100))
    swarm.run(until=4.0)
    bundle = swarm.nodes[2].bundle(1)
    assert bundle is not None
    return swarm, bundle


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict]:
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_valid_bundle_verifies(tmp_path: Path, finalized, capsys) -> None:
    swarm, bundle = finalized
    (tmp_path / "genesis.json").write_text(swarm.genesis.to_json())
    (tmp_path / "bundle.hex").write_text(bundle.hex())
    code, result = run_json(
        capsys,
        [
            "checkpoint",
            "verify",
            str(tmp_path / "bundle.hex"),
            "--genesis",
            str(tmp_path / "genesis.json"),
            "--json",
        ],
    )
    assert code == 0 and result["valid"] is True
    assert result["height"] == 1
    assert result["state_root"] == swarm.nodes[0].ledger.final_state.root().hex()
    assert len(result["signers"]) >= swarm.genesis.quorum


def test_tampered_bundle_and_wrong_genesis_fail(tmp_path: Path, finalized, capsys) -> None:
    swarm, bundle = finalized
    (tmp_path / "genesis.json").write_text(swarm.genesis.to_json())
    decoded = consensus.CheckpointBundle.decode(bundle)
    forged = consensus.CheckpointBundle(
        decoded.height, decoded.round, decoded.value + b"x", decoded.precommits
    )
    (tmp_path / "forged.bin").write_bytes(forged.encode())
    code, result = run_json(
        capsys,
        [
            "checkpoint",
            "verify",
            str(tmp_path / "forged.bin"),
            "--genesis",
            str(tmp_path / "genesis.json"),
            "--json",
        ],
    )
    assert code == 1 and result["valid"] is False
    other = Swarm(4, seed=9)
    (tmp_path / "other.json").write_text(other.genesis.to_json())
    (tmp_path / "bundle.bin").write_bytes(bundle)
    code, result = run_json(
        capsys,
        [
            "checkpoint",
            "verify",
            str(tmp_path / "bundle.bin"),
            "--genesis",
            str(tmp_path / "other.json"),
            "--json",
        ],
    )
    assert code == 1 and result["valid"] is False


def test_missing_files_are_typed_errors(tmp_path: Path, capsys) -> None:
    code, result = run_json(
        capsys,
        [
            "checkpoint",
            "verify",
            str(tmp_path / "nope"),
            "--genesis",
            str(tmp_path / "g"),
            "--json",
        ],
    )
    assert code == 1 and result["code"] == "genesis_missing"
