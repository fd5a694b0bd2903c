"""Issue 14, F6 and F7: a database path that cannot be a database is refused, typed, before
SQLite (or aiosqlite's worker thread) touches it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from swarmd.storage.errors import CorruptDatabaseError, StorageIOError
from swarmd.storage.store import Store
from tests.storage.test_store import NETWORK_ID, NODE_KEY


async def test_f7_a_zero_length_file_is_a_corrupt_database_and_is_left_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "swarmd.db"
    path.touch()

    with pytest.raises(CorruptDatabaseError) as raised:
        await Store.open(path, network_id=NETWORK_ID, node_key=NODE_KEY)

    assert raised.value.code == "corrupt_database"
    assert path.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["swarmd.db"]


async def test_f7_read_only_open_refuses_a_zero_length_file(tmp_path: Path) -> None:
    path = tmp_path / "swarmd.db"
    path.touch()

    with pytest.raises(CorruptDatabaseError):
        await Store.open_read_only(path, network_id=NETWORK_ID)

    assert path.stat().st_size == 0


@pytest.mark.parametrize("read_only", [False, True])
async def test_f6_a_directory_is_refused_without_starting_a_worker_thread(
    tmp_path: Path, read_only: bool
) -> None:
    path = tmp_path / "swarmd.db"
    path.mkdir()
    threads = set(threading.enumerate())

    with pytest.raises(StorageIOError, match="not a regular file"):
        if read_only:
            await Store.open_read_only(path, network_id=NETWORK_ID)
        else:
            await Store.open(path, network_id=NETWORK_ID, node_key=NODE_KEY)

    # aiosqlite's worker thread outliving a failed connect is what printed "Event loop is
    # closed" after the CLI's loop had ended: no thread may be left (or have been started).
    assert set(threading.enumerate()) <= threads


async def test_a_new_path_still_creates_a_database(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "new.db", network_id=NETWORK_ID, node_key=NODE_KEY)
    await store.close()

    assert (tmp_path / "new.db").stat().st_size > 0
