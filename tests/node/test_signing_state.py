"""The daemon's consensus signing state file: atomic replace, bounded read, and a node that
refuses to start on a signing state that is not its own (it could equivocate otherwise)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from swarmd.node.cli.home import init_home
from swarmd.node.config import load_config
from swarmd.node.runtime.commits import NodeWrites
from swarmd.node.runtime.driver import Daemon
from swarmd.node.runtime.persistence import open_node_log
from swarmd.node.runtime.signing_state import SigningStateFile
from swarmd.protocol import consensus, crypto
from swarmd.protocol.node_core import PersistConsensusState, PersistPrecommit
from swarmd.protocol.wallet import Author

from .test_api import Node, close_node, open_node
from .test_council_cli import wait_for


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


# --- the compact state and the kept precommits' records (branch sigstate) ---------------------

MEMBER = crypto.KeyPair.from_seed(crypto.sha256(b"signing state records member"))
NETWORK = crypto.sha256(b"signing state records network")


def _decided(heights: range, core: consensus.Tendermint | None = None) -> consensus.Tendermint:
    if core is None:
        core = consensus.Tendermint(
            network_id=NETWORK, validators=[MEMBER.public_key], keypair=MEMBER
        )
    for height in heights:
        core.start_height(height, 0.0)
        core.provide_value(height, 0, crypto.sha256(b"value %d" % height) * 64, 0.0)
        assert core.decided
    return core


def _hand_over(writes: NodeWrites, core: consensus.Tendermint) -> bytes:
    """What the driver does with the core's persist events of one step."""
    for precommit_id, record in core.take_unsaved_precommits():
        writes.add_precommit(PersistPrecommit(precommit_id, record))
    state = core.signing_state_compact()
    writes.add_consensus_state(PersistConsensusState(state, core.kept_precommit_ids()))
    return state


async def _writes(tmp_path: Path) -> tuple[NodeWrites, SigningStateFile]:
    data_file = tmp_path / "swarmd.sqlite3"
    node_log = await open_node_log(data_file, network_id=NETWORK, node_key=MEMBER.public_key)
    state_file = SigningStateFile.beside(data_file)
    return NodeWrites(node_log, state_file), state_file


async def _close(writes: NodeWrites) -> None:
    await writes.stop()
    await writes.node_log.close()


def test_records_are_loaded_by_the_ids_a_state_names_and_pruned(tmp_path: Path) -> None:
    state_file = SigningStateFile.beside(tmp_path / "swarmd.sqlite3")
    core = _decided(range(1, 4))
    records = core.take_unsaved_precommits()
    for precommit_id, record in records:
        state_file.save_precommit(precommit_id, record)
    compact = core.signing_state_compact()
    state_file.save(compact)
    assert sorted(os.listdir(tmp_path)) == [
        "swarmd.sqlite3.signing-state",
        "swarmd.sqlite3.signing-state.precommits",
    ]
    assert state_file.load_precommits(state_file.load()) == [record for _, record in records]
    assert state_file.load_precommits(core.signing_state()) == []  # values inside: no records
    assert state_file.load_precommits(None) == []
    (state_file.precommits_dir / "leftover.tmp").write_bytes(b"")
    assert state_file.prune_precommits({records[-1][0]}) == 3
    assert os.listdir(state_file.precommits_dir) == [records[-1][0].hex()]
    # A state whose records are gone is refused, not resumed without its precommits.
    restarted = consensus.Tendermint(
        network_id=NETWORK, validators=[MEMBER.public_key], keypair=MEMBER
    )
    with pytest.raises(consensus.SigningStateError):
        restarted.restore_precommits(compact, state_file.load_precommits(compact))
    (state_file.precommits_dir / records[0][0].hex()).write_bytes(
        b"\0" * (consensus.KEPT_PRECOMMIT_SIZE_BYTES_MAX + 1)
    )
    with pytest.raises(consensus.SigningStateError):
        state_file.load_precommits(compact)


async def test_each_record_is_written_once_and_the_window_is_pruned(tmp_path: Path) -> None:
    """20 heights, a state per height: every record is one file written once (its inode
    never changes while it is kept), and once the last state is durable only the 16 it
    names are left."""
    writes, state_file = await _writes(tmp_path)
    core = _decided(range(1, 3))
    try:
        _hand_over(writes, core)
        await writes.barrier()
        first = {entry.name: entry.inode() for entry in os.scandir(state_file.precommits_dir)}
        assert len(first) == 2
        for height in range(3, 21):
            _decided(range(height, height + 1), core)
            state = _hand_over(writes, core)
            await writes.barrier()
        assert state_file.load() == state
        names = {entry.name: entry.inode() for entry in os.scandir(state_file.precommits_dir)}
        kept = core.kept_precommit_ids()
        assert sorted(names) == sorted(precommit_id.hex() for precommit_id in kept)
        assert len(kept) == consensus.SIGNING_STATE_PRECOMMITS_MAX
        # Its height's 2 KiB value (proposal, locked, valid), not the 16 kept ones.
        assert len(state) < 4 * 2048
    finally:
        await _close(writes)
    assert all(names.get(name, inode) == inode for name, inode in first.items())


async def test_a_failed_record_write_is_retried_before_the_state_naming_it(
    tmp_path: Path,
) -> None:
    writes, state_file = await _writes(tmp_path)
    core = _decided(range(1, 3))
    state_file.precommits_dir.write_bytes(b"")  # a file where the directory goes
    try:
        state = _hand_over(writes, core)
        with pytest.raises(OSError):
            await writes.barrier()
        assert state_file.load() is None  # the state never went without its records
        state_file.precommits_dir.unlink()
        writes.add_consensus_state(PersistConsensusState(state, core.kept_precommit_ids()))
        await writes.barrier()  # the core hands the same state over again: now it is written
    finally:
        await _close(writes)
    assert state_file.load() == state
    assert sorted(os.listdir(state_file.precommits_dir)) == sorted(
        precommit_id.hex() for precommit_id in core.kept_precommit_ids()
    )


async def _finalize_grants(node: Node, council: Author, count: int) -> None:
    """`count` grants, each final before the next: a height (and a kept precommit) each."""
    for _ in range(count):
        grant = council.grant(node.new_author().key, 100)
        assert (await node.submit(grant))[0] == 202
        ledger, op_id = node.daemon.core.ledger, grant.op_id
        await wait_for(node.daemon, lambda: ledger.is_final(op_id))  # noqa: B023 (awaited here)


def _on_disk(node: Node) -> tuple[consensus.SigningState, list[str]]:
    state_file = SigningStateFile.beside(node.daemon.config.node.data_file)
    data = state_file.load()
    assert data is not None
    state = consensus.decode_signing_state(data, node.network_id, node.daemon.node_id)
    return state, sorted(os.listdir(state_file.precommits_dir))


async def test_a_restarted_daemon_keeps_its_precommits_also_from_the_file_before(
    tmp_path: Path,
) -> None:
    """A one-member council daemon: its state file is compact and names exactly the record
    files beside it; a restart restores the same kept precommits; so does a restart from the
    same state written in the format before (values inside, no records), after which the
    node writes every record before its next state."""
    keypair = crypto.KeyPair.from_seed(crypto.sha256(b"signing state daemon"))
    node = await open_node(tmp_path / "home", keypair)
    council = node.council  # keeps its seq across the restarts
    try:
        await _finalize_grants(node, council, 3)
    finally:
        await close_node(node)
    kept = node.daemon.core.consensus.kept_precommit_ids()
    state, files = _on_disk(node)
    assert len(kept) >= 3 and state.precommit_ids == kept and not state.precommits_kept
    assert files == sorted(precommit_id.hex() for precommit_id in kept)
    node = await open_node(node.home)
    await close_node(node)
    assert node.daemon.core.consensus.kept_precommit_ids() == kept
    # The same state in the format before this branch, and no record files.
    state_file = SigningStateFile.beside(node.daemon.config.node.data_file)
    records = state_file.load_precommits(state_file.load())
    pairs = [
        consensus.decode_kept_precommit(r, node.network_id, keypair.public_key) for r in records
    ]
    whole = dataclasses.replace(state, precommit_ids=(), precommits_kept=tuple(pairs))
    state_file.save(whole.encode())
    shutil.rmtree(state_file.precommits_dir)
    node = await open_node(node.home)
    try:
        assert node.daemon.core.consensus.kept_precommit_ids() == kept
        await _finalize_grants(node, council, 1)
    finally:
        await close_node(node)
    now_kept = node.daemon.core.consensus.kept_precommit_ids()
    state, files = _on_disk(node)
    assert now_kept[: len(kept)] == kept and state.precommit_ids == now_kept
    assert files == sorted(precommit_id.hex() for precommit_id in now_kept)
