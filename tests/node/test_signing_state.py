"""The daemon's consensus signing state file: atomic replace, bounded read, and a node that
refuses to start on a signing state that is not its own (it could equivocate otherwise)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swarmd.node.cli.home import init_home
from swarmd.node.config import load_config
from swarmd.node.runtime.driver import Daemon
from swarmd.node.runtime.signing_state import SigningStateFile
from swarmd.protocol import consensus, crypto


def test_save_replaces_the_file_and_load_reads_it_back(tmp_path: Path) -> None:
    state_file = SigningStateFile.beside(tmp_path / "swarmd.sqlite3")
    assert state_file.path == tmp_path / "swarmd.sqlite3.signing-state"
    assert state_file.load() is None
    state_file.save(b"first")
    state_file.save(b"second")
    assert state_file.load() == b"second"
    assert sorted(os.listdir(tmp_path)) == ["swarmd.sqlite3.signing-state"]


def test_an_oversized_file_is_a_typed_error(tmp_path: Path) -> None:
    state_file = SigningStateFile(tmp_path / "state")
    state_file.path.write_bytes(b"\0" * (consensus.SIGNING_STATE_SIZE_BYTES_MAX + 1))
    with pytest.raises(consensus.SigningStateError):
        state_file.load()


async def test_a_node_refuses_a_signing_state_that_is_not_its_own(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home, keypair=crypto.KeyPair.from_seed(crypto.sha256(b"signing state node")))
    config = load_config(home / "swarmd.toml")
    SigningStateFile.beside(config.node.data_file).save(b"\x80")  # an empty map: not a state
    with pytest.raises(consensus.SigningStateError):
        await Daemon.open(config)
    # The store was closed again and is intact: without the bad file the node opens.
    SigningStateFile.beside(config.node.data_file).path.unlink()
    daemon = await Daemon.open(config)
    await daemon.stop()


def test_a_signing_state_with_kept_precommits_round_trips_through_the_file(tmp_path: Path) -> None:
    """The kept precommits (settlement, docs/PROTOCOL.md) are part of the state on disk: a
    validator's state read back from the file restores them into a fresh core of the next
    epoch as its old precommits, each with its value."""
    member = crypto.KeyPair.from_seed(crypto.sha256(b"signing state kept precommits"))
    network = crypto.sha256(b"signing state network")
    core = consensus.Tendermint(network_id=network, validators=[member.public_key], keypair=member)
    values = {}
    for height in (1, 2):
        value = crypto.sha256(b"value %d" % height)  # the core treats values as opaque bytes
        values[height] = value
        core.start_height(height, 0.0)
        core.provide_value(height, 0, value, 0.0)
        assert core.decided
    state_file = SigningStateFile.beside(tmp_path / "swarmd.sqlite3")
    state_file.save(core.signing_state())
    data = state_file.load()
    assert data is not None
    state = consensus.decode_signing_state(data, network, member.public_key)
    assert [(m.height, v) for m, v in state.precommits_kept] == sorted(values.items())
    restarted = consensus.Tendermint(
        network_id=network, validators=[member.public_key], keypair=member, epoch=1
    )
    restarted.restore_precommits(data)
    assert [(m.height, v) for m, v in restarted.old_precommits(0)] == sorted(values.items())
