"""The `store` fixture the storage tests share: each test runs on SQLite and on the memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarmd.storage import api
from swarmd.storage.memory import MemoryDatabase, MemoryStore
from swarmd.storage.store import Store

from .test_store import NETWORK_ID, NODE_KEY


@pytest.fixture(params=["sqlite", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[api.OpStore]:
    opened: api.OpStore
    if request.param == "sqlite":
        opened = await Store.open(tmp_path / "db", network_id=NETWORK_ID, node_key=NODE_KEY)
    else:
        opened = await MemoryStore.open(MemoryDatabase(), network_id=NETWORK_ID, node_key=NODE_KEY)
    yield opened
    await opened.close()
