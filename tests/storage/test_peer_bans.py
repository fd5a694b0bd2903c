"""The peer-ban table (schema version 4, netguard): both stores keep exactly what was last
written, survive a reopen, and refuse a call over the bound or with a malformed row."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from swarmd.protocol import limits
from swarmd.storage import api
from swarmd.storage.errors import StoreUsageError
from swarmd.storage.memory import MemoryDatabase, MemoryStore
from swarmd.storage.schema import SCHEMA_VERSION
from swarmd.storage.store import Store

NETWORK_ID = b"\x01" * 32
NODE_KEY = b"\x02" * 32


def ban(index: int, until_ms: int = 1_000, count: int = 1) -> api.PeerBan:
    return api.PeerBan(index.to_bytes(32, "big"), until_ms, count)


async def test_sqlite_bans_survive_a_reopen_and_are_replaced_whole(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db", network_id=NETWORK_ID, node_key=NODE_KEY)
    await store.replace_peer_bans([ban(2, 5_000, 3), ban(1)])
    await store.close()
    store = await Store.open(tmp_path / "db", network_id=NETWORK_ID, node_key=NODE_KEY)
    assert await store.load_peer_bans() == [ban(1), ban(2, 5_000, 3)]
    await store.replace_peer_bans([ban(3)])
    assert await store.load_peer_bans() == [ban(3)]
    await store.close()


async def test_memory_bans_survive_a_reopen() -> None:
    database = MemoryDatabase()
    store = await MemoryStore.open(database, network_id=NETWORK_ID, node_key=NODE_KEY)
    await store.replace_peer_bans([ban(7, 9, 2)])
    await store.close()
    store = await MemoryStore.open(database, network_id=NETWORK_ID, node_key=NODE_KEY)
    assert await store.load_peer_bans() == [ban(7, 9, 2)]
    await store.close()


@pytest.mark.parametrize(
    "bans",
    [
        [ban(i) for i in range(api.PEER_BANS_STORED_MAX + 1)],
        [ban(1), ban(1)],
        [api.PeerBan(b"short", 1, 1)],
        [ban(1, count=0)],
        [ban(1, until_ms=-1)],
    ],
    ids=["over-the-bound", "twice", "short-id", "zero-count", "negative-time"],
)
async def test_bad_ban_lists_are_refused(tmp_path: Path, bans: list[api.PeerBan]) -> None:
    store = await Store.open(tmp_path / "db", network_id=NETWORK_ID, node_key=NODE_KEY)
    await store.replace_peer_bans([ban(9)])
    with pytest.raises(StoreUsageError):
        await store.replace_peer_bans(bans)
    assert await store.load_peer_bans() == [ban(9)]  # nothing was written
    await store.close()


async def test_the_bound_itself_is_stored(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db", network_id=NETWORK_ID, node_key=NODE_KEY)
    bans = [ban(i) for i in range(api.PEER_BANS_STORED_MAX)]
    await store.replace_peer_bans(bans)
    assert len(await store.load_peer_bans()) == api.PEER_BANS_STORED_MAX
    await store.close()


# --- the address book table (same migration) ---------------------------------------------------


def entry(index: int, source: bytes = b"", failures: int = 0) -> api.AddressEntry:
    return api.AddressEntry(index.to_bytes(32, "big"), b"record-%d" % index, source, failures)


async def test_sqlite_address_book_survives_a_reopen_and_is_replaced_whole(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "db", network_id=NETWORK_ID, node_key=NODE_KEY)
    await store.replace_address_book([entry(2, b"\x07" * 32, 3), entry(1)])
    await store.close()
    store = await Store.open(tmp_path / "db", network_id=NETWORK_ID, node_key=NODE_KEY)
    assert await store.load_address_book() == [entry(1), entry(2, b"\x07" * 32, 3)]
    await store.replace_address_book([])
    assert await store.load_address_book() == []
    await store.close()


async def test_memory_address_book_survives_a_reopen() -> None:
    database = MemoryDatabase()
    store = await MemoryStore.open(database, network_id=NETWORK_ID, node_key=NODE_KEY)
    await store.replace_address_book([entry(5)])
    await store.close()
    store = await MemoryStore.open(database, network_id=NETWORK_ID, node_key=NODE_KEY)
    assert await store.load_address_book() == [entry(5)]
    await store.close()


@pytest.mark.parametrize(
    "entries",
    [
        [entry(i) for i in range(api.ADDRESS_BOOK_STORED_MAX + 1)],
        [entry(1), entry(1)],
        [api.AddressEntry(b"\x01" * 32, b"r" * 4096, b"", 0)],
        [entry(1, source=b"s" * 33)],
        [entry(1, failures=-1)],
    ],
    ids=["over-the-bound", "twice", "record-too-big", "source-too-long", "negative-failures"],
)
async def test_bad_address_books_are_refused(
    tmp_path: Path, entries: list[api.AddressEntry]
) -> None:
    store = await Store.open(tmp_path / "db", network_id=NETWORK_ID, node_key=NODE_KEY)
    await store.replace_address_book([entry(9)])
    with pytest.raises(StoreUsageError):
        await store.replace_address_book(entries)
    assert await store.load_address_book() == [entry(9)]
    await store.close()


# --- tried marks and anchors (schema v10, peers2) ---------------------------------------------


async def test_tried_marks_and_anchors_survive_a_reopen(tmp_path: Path) -> None:
    rows = [
        api.AddressEntry(bytes([1]) * 32, b"r1", b"", 0, tried=True, anchor=2),
        api.AddressEntry(bytes([2]) * 32, b"r2", b"\x07" * 32, 1, tried=True),
        api.AddressEntry(bytes([3]) * 32, b"r3", b"\x07" * 32, 0, anchor=1),
        entry(4),
    ]
    store = await Store.open(tmp_path / "db", network_id=NETWORK_ID, node_key=NODE_KEY)
    await store.replace_address_book(rows)
    await store.close()
    store = await Store.open(tmp_path / "db", network_id=NETWORK_ID, node_key=NODE_KEY)
    loaded = await store.load_address_book()
    assert loaded == sorted(rows, key=lambda row: row.node_id)
    marks = {row.node_id[0]: (row.tried, row.anchor) for row in loaded}
    assert marks == {1: (True, 2), 2: (True, 0), 3: (False, 1), 0: (False, 0)}
    await store.close()


async def test_rows_stored_before_v10_read_as_new_and_no_anchor(tmp_path: Path) -> None:
    """A book written by v9 code (four columns) keeps its rows through the v10 migration."""
    store = await Store.open(tmp_path / "db", network_id=NETWORK_ID, node_key=NODE_KEY)
    await store.close()
    with sqlite3.connect(tmp_path / "db") as connection:
        connection.execute("ALTER TABLE address_book DROP COLUMN tried")
        connection.execute("ALTER TABLE address_book DROP COLUMN anchor")
        connection.execute(
            "INSERT INTO address_book VALUES (?, ?, ?, ?)", (bytes([5]) * 32, b"r5", b"", 2)
        )
        connection.execute(
            "UPDATE meta SET value = ? WHERE key = ?",
            (str(SCHEMA_VERSION - 1).encode(), api.META_SCHEMA_VERSION),
        )
    connection.close()
    store = await Store.open(tmp_path / "db", network_id=NETWORK_ID, node_key=NODE_KEY)
    assert await store.load_address_book() == [api.AddressEntry(bytes([5]) * 32, b"r5", b"", 2)]
    await store.close()


@pytest.mark.parametrize(
    "bad",
    [
        api.AddressEntry(bytes([1]) * 32, b"r", b"", 0, anchor=limits.ADDRESS_ANCHORS_MAX + 1),
        api.AddressEntry(bytes([1]) * 32, b"r", b"", 0, anchor=-1),
        api.AddressEntry(bytes([1]) * 32, b"r", b"", 0, tried=1),  # type: ignore[arg-type]
    ],
    ids=["anchor-over-ADDRESS_ANCHORS_MAX", "negative-anchor", "tried-not-bool"],
)
async def test_bad_tried_or_anchor_values_are_refused(
    tmp_path: Path, bad: api.AddressEntry
) -> None:
    store = await MemoryStore.open(MemoryDatabase(), network_id=NETWORK_ID, node_key=NODE_KEY)
    with pytest.raises(StoreUsageError):
        await store.replace_address_book([bad])
    await store.close()
