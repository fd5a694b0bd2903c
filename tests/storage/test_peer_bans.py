"""The peer-ban table (schema version 4, netguard): both stores keep exactly what was last
written, survive a reopen, and refuse a call over the bound or with a malformed row."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmd.storage import api
from swarmd.storage.errors import StoreUsageError
from swarmd.storage.memory import MemoryDatabase, MemoryStore
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
