"""A start that fails once the store is open closes the store: before, `Daemon.open` left the
store's thread running after the error, so `swarmd run` printed the error and then never
exited (the audit branch found it with a damaged events row). Any step after the store opened
(the stored rejoin record here) must release it."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from swarmd.node.config import load_config
from swarmd.node.runtime.driver import Daemon
from swarmd.node.runtime.persistence import REJOIN_META_KEY
from swarmd.protocol import crypto
from swarmd.protocol.node_core.rejoin import RejoinRecordError

from .test_api import close_node, open_node


async def test_a_failed_open_closes_the_store_so_the_node_can_open_again(tmp_path: Path) -> None:
    node = await open_node(tmp_path / "home", crypto.KeyPair.from_seed(os.urandom(32)))
    await close_node(node)
    database = node.home / "swarmd.sqlite3"
    with sqlite3.connect(database) as db:
        db.execute(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)", (REJOIN_META_KEY, b"\xc1 not a record")
        )
    db.close()
    config = load_config(node.home / "swarmd.toml")

    with pytest.raises(RejoinRecordError):
        await Daemon.open(config)
    # The store was closed by the failed open: it opens again in this process (an open store
    # holds the file's lock) and fails the same way, not with a lock error.
    with pytest.raises(RejoinRecordError):
        await Daemon.open(config)

    with sqlite3.connect(database) as db:
        db.execute("DELETE FROM meta WHERE key = ?", (REJOIN_META_KEY,))
    db.close()
    restarted = await Daemon.open(config)
    await restarted.node_log.close()
