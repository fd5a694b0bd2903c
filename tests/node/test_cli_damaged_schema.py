"""A store whose schema was damaged in a way the store does not check on open (a table gone)
still gets one typed line from the CLI, never a traceback: before, `swarmd rollback` on such
a node printed sqlite3's traceback (the audit branch's finding, reproduced by hand)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from swarmd.node.cli.main import main
from swarmd.protocol import crypto

from .test_api import close_node, open_node


async def _stopped_node(home: Path) -> None:
    await close_node(await open_node(home, crypto.KeyPair.from_seed(os.urandom(32))))


def test_a_missing_table_is_one_typed_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Synchronous: the CLI runs its own event loop, as from a shell.
    node_home = tmp_path / "home"
    asyncio.run(_stopped_node(node_home))
    home = str(node_home)
    assert main(["admin", "quiesce", "--home", home, "--reason", "drill"]) == 0
    with sqlite3.connect(node_home / "swarmd.sqlite3") as db:
        db.execute("DROP TABLE telemetry_days")
    db.close()
    capsys.readouterr()

    status = main(["rollback", "--home", home, "--to-height", "0", "--yes"])

    err = capsys.readouterr().err
    assert status == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("swarmd: error: the database could not be used")
    assert err.rstrip().endswith("[storage_error]")
