"""A damaged event archive (the window of events kept for resuming subscribers) does not stop
the node: it starts with a window that holds nothing before this run, logs
`events_archive_unreadable`, and a subscriber resuming from an older id gets a `gap` (it then
re-reads state). Before, a row that was no longer UTF-8 ended `swarmd run` in a traceback."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from swarmd.node.http.events import EVENT_ID_RUN_SHIFT, EVENTS_META_KEY, Window, load_window
from swarmd.protocol import crypto
from swarmd.protocol.limits import EVENTS_RETAINED_MAX
from swarmd.storage.store import Store

from .test_api import close_node, open_node
from .test_events_resume import subscribe, until


def damage(path: Path, sql: str, *parameters: Any) -> None:
    """What a flipped byte does to a row, written with a plain SQLite connection (the store is
    closed: its lock file proves it)."""
    with sqlite3.connect(path) as db:
        db.execute(sql, parameters)
    db.close()


NETWORK_ID = os.urandom(32)
NODE_KEY = crypto.KeyPair.from_seed(os.urandom(32)).public_key


async def stored_window(path: Path, run: int) -> None:
    store = await Store.open(path, network_id=NETWORK_ID, node_key=NODE_KEY)
    try:
        window = Window(run)
        for n in range(3):
            window.add({"type": "mode_changed", "mode": "normal", "reason": str(n)}, None)
        rows = [entry.row() for entry in window.after(0)]
        await store.append_events(rows, EVENTS_RETAINED_MAX, window.meta(clean=True))
    finally:
        await store.close()


async def reload(path: Path) -> tuple[Window, int]:
    store = await Store.open(path, network_id=NETWORK_ID, node_key=NODE_KEY)
    try:
        return await load_window(store)
    finally:
        await store.close()


async def test_a_row_that_is_not_utf8_starts_a_new_run_behind_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    await stored_window(path, run=2)
    damage(
        path,
        "UPDATE events SET event = CAST(X'FFFE7B22' AS TEXT) WHERE id = ?",
        (2 << EVENT_ID_RUN_SHIFT) + 2,
    )

    window, stored_id = await reload(path)

    assert stored_id == 0 and not window.events
    assert window.next_id == (3 << EVENT_ID_RUN_SHIFT) + 1  # ids still move on past run 2
    since = (2 << EVENT_ID_RUN_SHIFT) + 1
    assert window.replay(since, None) == [
        {"type": "gap", "id": 3 << EVENT_ID_RUN_SHIFT, "reason": "window_exceeded", "since": since}
    ]


async def test_meta_or_rows_that_are_not_ours_start_a_new_run(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    await stored_window(path, run=0)
    damage(path, "UPDATE events SET event = ? WHERE id = 2", '{"type": "mode_chan')
    window, _ = await reload(path)
    assert window.next_id == (1 << EVENT_ID_RUN_SHIFT) + 1 and not window.events

    damage(path, "UPDATE meta SET value = ? WHERE key = ?", b'{"run": "x"', EVENTS_META_KEY)
    window, _ = await reload(path)
    assert window.next_id == 1 and window.complete_since == 0 and not window.events


async def test_a_node_with_a_damaged_archive_starts_and_answers_resumes_with_a_gap(
    tmp_path: Path,
) -> None:
    node = await open_node(tmp_path / "home", crypto.KeyPair.from_seed(os.urandom(32)))
    ws, _ = await subscribe(node, "since=0")
    grant = node.council.grant(node.new_author().key, 100)
    assert (await node.submit(grant))[0] == 202
    await until(ws, "op_final", grant.op_id.hex())  # events stored in the archive
    await ws.close()
    await close_node(node)
    damage(node.home / "swarmd.sqlite3", "UPDATE events SET event = CAST(X'FF' AS TEXT)")

    restarted = await open_node(node.home)
    try:
        ws, _ = await subscribe(restarted, "since=1")
        gap = await ws.receive_json()
        await ws.close()
    finally:
        await close_node(restarted)

    assert gap["type"] == "gap" and gap["reason"] == "window_exceeded" and gap["since"] == 1
