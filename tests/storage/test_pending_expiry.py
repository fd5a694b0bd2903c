"""Pending ops that never became valid do not come back after a restart past their expiry
(issue 13): the daemon's restore expires them by the time they were first received, and the
log marks them EXPIRED so later restarts do not replay them at all."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from swarmd.node.cli.home import init_home
from swarmd.node.config import load_config
from swarmd.node.runtime.driver import Daemon
from swarmd.protocol import crypto
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.ops import Op
from swarmd.protocol.wallet import Author
from swarmd.storage import api
from swarmd.storage.store import Store

JUNK_OLD = 30
JUNK_FRESH = 5


def junk_ops(network_id: bytes, count: int, label: bytes) -> list[Op]:
    """Transfers from throwaway keys that receive a credit nobody ever made: pending forever."""
    ops = []
    for index in range(count):
        key = crypto.KeyPair.from_seed(crypto.sha256(label + b"%d" % index))
        other = crypto.KeyPair.from_seed(crypto.sha256(label + b"to%d" % index)).public_key
        unknown = crypto.sha256(label + b"unknown%d" % index)
        ops.append(Author(key, network_id).transfer(other, 1, receive=[unknown]))
    return ops


async def log_ops(path: Path, network_id: bytes, ops: list[Op], received_at_ms: int) -> None:
    store = await Store.open(path, network_id=network_id)
    try:
        applied = api.OpStatus.APPLIED
        rows = [
            api.NewOp(op.op_id, op.author, op.seq, op.envelope, applied, received_at_ms)
            for op in ops
        ]
        await store.append_ops(rows)
    finally:
        await store.close()


async def statuses(path: Path, network_id: bytes, ops: list[Op]) -> set[api.OpStatus]:
    store = await Store.open(path, network_id=network_id)
    try:
        return {row.status for row in await store.get_ops([op.op_id for op in ops])}
    finally:
        await store.close()


async def open_and_stop(home: Path) -> tuple[set[bytes], int]:
    """(ids pending in the restored core, ops the restore read from the log)."""
    daemon = await Daemon.open(load_config(home / "swarmd.toml"))
    try:
        pending = {entry.op.op_id for entry in daemon.core.ledger.pending.entries()}
        return pending, int(daemon.restore_info["logged_ops"])
    finally:
        await daemon.stop()


async def scenario(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home, keypair=crypto.KeyPair.from_seed(os.urandom(32)))
    config = load_config(home / "swarmd.toml")
    network_id = Genesis.from_json(config.node.genesis_file.read_bytes()).network_id
    await open_and_stop(home)  # creates the store
    ttl_ms = int(config.limits.pending_op_ttl_s * 1000)
    now_ms = int(time.time() * 1000)
    old = junk_ops(network_id, JUNK_OLD, b"old")
    fresh = junk_ops(network_id, JUNK_FRESH, b"fresh")
    await log_ops(config.node.data_file, network_id, old, now_ms - 2 * ttl_ms)
    await log_ops(config.node.data_file, network_id, fresh, now_ms)

    pending, logged = await open_and_stop(home)
    # The old junk is not pending after the restart; the fresh junk still waits, as it would.
    assert pending == {op.op_id for op in fresh}
    assert logged == JUNK_OLD + JUNK_FRESH
    assert await statuses(config.node.data_file, network_id, old) == {api.OpStatus.EXPIRED}
    assert await statuses(config.node.data_file, network_id, fresh) == {api.OpStatus.APPLIED}

    # The next restart does not even read the expired ones back.
    pending, logged = await open_and_stop(home)
    assert pending == {op.op_id for op in fresh}
    assert logged == JUNK_FRESH


def test_junk_pending_ops_do_not_come_back_after_a_restart_past_their_expiry(
    tmp_path: Path,
) -> None:
    asyncio.run(scenario(tmp_path))
