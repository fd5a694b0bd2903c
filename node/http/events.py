"""The event stream: the JSON schema of the events pushed to subscribers, who gets which, and
the retained window clients resume from.

`EventStream.publish` gives every published core event an id (increasing, also across node
restarts) and keeps it in a bounded window (limits.EVENTS_RETAINED_MAX, stored in the node's
SQLite store at each checkpoint and on stop), then hands its public JSON form (`PUBLISHERS`,
one builder per event type) to the listeners it concerns. An event names the raw account
keys it concerns (`ACCOUNTS`, published as `accounts`), or none when it concerns every
subscriber (a checkpoint, a mode change). Unfiltered listeners get every event; a listener
following an account gets exactly the events that name it plus those that concern everyone
(never another account's rejection, burn or conflict). JSON is built once per event, only
when somebody receives or stores it.

Resuming (`replay`): the retained events after the client's last id; a typed `gap` event
first when events after that id are no longer retained (`window_exceeded`), and a retained
`gap` event where a run of the node ended without storing its last events (`unclean_stop`).
Ids are `run << EVENT_ID_RUN_SHIFT | n`: each start of the node is a new run, so an id is
never reused even when a crash lost the end of the previous run. The WebSocket route that
serves the stream is in http/api.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from swarmd.protocol import crypto
from swarmd.protocol.ledger import (
    CouncilModeChanged,
    CreditReceived,
    HandleBound,
    HandleConflictRaised,
    HypeBurned,
    Ledger,
    OpAccepted,
    OpRejected,
)
from swarmd.protocol.limits import EVENTS_RETAINED_MAX
from swarmd.protocol.node_core import (
    CheckpointFinalized,
    HandleConflictRejected,
    ModeChanged,
    NodeEvent,
    OpsReverted,
    PersistCheckpoint,
)

from ..logs import get_logger

log = get_logger("swarmd.daemon")

#: `op_final` events an unfiltered subscriber (no account filter) gets per checkpoint. A
#: saturated checkpoint finalizes ~16k ops, more than a subscriber's queue holds: past this
#: bound an unfiltered subscriber gets one `op_final_truncated` event (height, ops, published)
#: and the `checkpoint_final` event with the op count instead. Below the API's per-client
#: queue (EVENTS_QUEUED_PER_CLIENT_MAX) so a big checkpoint alone does not cut a client that
#: keeps up. Subscribers filtered by account get `op_final` for every op of their account.
FINAL_OPS_PUBLISHED_UNFILTERED_MAX = 256

#: An event id is `run << EVENT_ID_RUN_SHIFT | n`: 2**40 events per run of the node, and ids
#: stay exact JavaScript numbers (below 2**53) for 8191 restarts.
EVENT_ID_RUN_SHIFT = 40

#: The window is stored at a checkpoint at most once per this many seconds (and on stop): a
#: saturated node rewrites up to EVENTS_RETAINED_MAX rows per store, ~40 ms of JSON and SQLite
#: work, so storing at every 0.5 s checkpoint would cost it ~8% of its event loop. A crash
#: loses at most this much of the window's end (a `gap` event says so after the restart).
EVENTS_STORE_INTERVAL_S = 1.0

#: The store's meta key of the stream's bookkeeping (run, clean stop, complete-since id).
EVENTS_META_KEY = "event_stream"

EventListener = Callable[[dict[str, Any]], None]
#: The author of an op this node knows (admitted or pending), or None.
AuthorOf = Callable[[bytes], bytes | None]


class EventArchive(Protocol):
    """Where the retained window is kept across restarts (storage.store.Store)."""

    async def append_events(
        self, rows: Sequence[tuple[int, bytes | None, str]], kept: int, meta: tuple[str, bytes]
    ) -> None: ...

    async def read_events(self) -> list[tuple[int, bytes | None, str]]: ...

    async def get_meta(self, key: str) -> bytes | None: ...


# --- the JSON schema ---------------------------------------------------------------------------

_text = crypto.account_id_text


def _op_accepted(event: OpAccepted) -> dict[str, Any]:
    return {
        "type": "op_accepted",
        "op_id": event.op_id.hex(),
        "kind": event.kind.label,
        "seq": event.seq,
    }


def _credit_received(event: CreditReceived) -> dict[str, Any]:
    return {
        "type": "credit_received",
        "account": _text(event.account),
        "amount": event.amount,
        "op_id": event.op_id.hex(),
        "sender": _text(event.sender),
    }


def _handle_conflict(event: HandleConflictRaised) -> dict[str, Any]:
    return {
        "type": "handle_conflict",
        "handle": event.handle,
        "losing_claim": event.losing_claim.hex(),
        "winning_claim": event.winning_claim.hex(),
    }


def _handle_conflict_rejected(event: HandleConflictRejected) -> dict[str, Any]:
    return {
        "type": "handle_conflict_rejected",
        "handle": event.handle,
        "winning_claim": event.winning_claim.hex(),
        "losing_claims": [claim.hex() for claim in event.losing_claims],
        "losing_accounts": [_text(holder) for holder in event.holders],
        "height": event.height,
    }


def _handle_bound(event: HandleBound) -> dict[str, Any]:
    return {
        "type": "handle_bound",
        "handle": event.handle,
        "owner": _text(event.owner),
        "claim_id": event.claim_id.hex(),
    }


def _hype_burned(event: HypeBurned) -> dict[str, Any]:
    return {
        "type": "hype_burned",
        "target": event.target,
        "amount": event.amount,
        "total": event.total,
        "op_id": event.op_id.hex(),
    }


def _checkpoint_final(event: CheckpointFinalized) -> dict[str, Any]:
    return {
        "type": "checkpoint_final",
        "height": event.height,
        "checkpoint_id": event.checkpoint_id.hex(),
        "state_root": event.state_root.hex(),
        "ops": event.ops,
    }


def _mode_changed(event: ModeChanged) -> dict[str, Any]:
    return {"type": "mode_changed", "mode": event.mode, "reason": event.reason}


def _council_mode_changed(event: CouncilModeChanged) -> dict[str, Any]:
    return {"type": "council_mode_changed", "quiesced": event.quiesced}


def _op_rejected(event: OpRejected) -> dict[str, Any]:
    return {"type": "op_rejected", "op_id": event.op_id.hex(), "code": event.code}


#: The JSON form pushed to subscribers, per event type (types not here are not published).
#: `id` and `accounts` are added to it (see `Retained.public`).
PUBLISHERS: dict[type[NodeEvent], Callable[[Any], dict[str, Any]]] = {
    OpAccepted: _op_accepted,
    CreditReceived: _credit_received,
    HandleConflictRaised: _handle_conflict,
    HandleConflictRejected: _handle_conflict_rejected,
    HandleBound: _handle_bound,
    HypeBurned: _hype_burned,
    CheckpointFinalized: _checkpoint_final,
    ModeChanged: _mode_changed,
    CouncilModeChanged: _council_mode_changed,
    OpRejected: _op_rejected,
}


def _authors(author_of: AuthorOf, *op_ids: bytes) -> tuple[bytes, ...]:
    """The known authors of `op_ids`, each once, in order."""
    result: list[bytes] = []
    for op_id in op_ids:
        author = author_of(op_id)
        if author is not None and author not in result:
            result.append(author)
    return tuple(result)


def _conflict_rejected_accounts(
    event: HandleConflictRejected, author_of: AuthorOf
) -> tuple[bytes, ...]:
    winners = _authors(author_of, event.winning_claim) if event.winning_claim else ()
    return tuple(dict.fromkeys(event.holders + winners))


#: The raw account keys an event concerns (its JSON `accounts`), per event type, given who
#: authored an op. The types not here concern every subscriber (a checkpoint, a mode change).
#: A rejection of an op this node never admitted names nobody (its submitter had the answer
#: of its POST): only unfiltered subscribers get it.
ACCOUNTS: dict[type[NodeEvent], Callable[[Any, AuthorOf], tuple[bytes, ...]]] = {
    OpAccepted: lambda event, _: (event.author,),
    CreditReceived: lambda event, _: (event.account, event.sender),
    HandleBound: lambda event, _: (event.owner,),
    HypeBurned: lambda event, author_of: _authors(author_of, event.op_id),
    OpRejected: lambda event, author_of: _authors(author_of, event.op_id),
    HandleConflictRaised: lambda event, author_of: _authors(
        author_of, event.losing_claim, event.winning_claim
    ),
    HandleConflictRejected: _conflict_rejected_accounts,
}


def _no_author(op_id: bytes) -> bytes | None:
    return None


def public_event(event: NodeEvent, author_of: AuthorOf = _no_author) -> dict[str, Any] | None:
    """The JSON form pushed to subscribers, without its id (None: not published)."""
    publisher = PUBLISHERS.get(type(event))
    if publisher is None:
        return None
    published = publisher(event)
    accounts = event_accounts(event, author_of)
    if accounts is not None:
        published["accounts"] = [_text(account) for account in accounts]
    return published


def event_accounts(event: NodeEvent, author_of: AuthorOf = _no_author) -> tuple[bytes, ...] | None:
    """The raw account keys `event` concerns; None: it concerns every subscriber."""
    accounts = ACCOUNTS.get(type(event))
    return None if accounts is None else accounts(event, author_of)


# --- the retained window -------------------------------------------------------------------


class Retained:
    """One published event: its id, the accounts it concerns (None: everyone) and its JSON,
    built from `source` (a core event or the JSON itself) the first time it is needed."""

    __slots__ = ("accounts", "id", "json", "source")

    def __init__(self, event_id: int, source: Any, accounts: tuple[bytes, ...] | None) -> None:
        self.id = event_id
        self.source = source
        self.accounts = accounts
        self.json: dict[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        if self.json is None:
            source = self.source
            if isinstance(source, dict):
                published = dict(source)
            else:
                published = PUBLISHERS[type(source)](source)
            if self.accounts is not None:
                published["accounts"] = [_text(account) for account in self.accounts]
            published["id"] = self.id
            self.json = published
            self.source = None
        return self.json

    def concerns(self, account: bytes | None) -> bool:
        """Whether a subscriber following `account` (None: unfiltered) gets this event."""
        return account is None or self.accounts is None or account in self.accounts

    def row(self) -> tuple[int, bytes | None, str]:
        accounts = None if self.accounts is None else b"".join(self.accounts)
        return self.id, accounts, json.dumps(self.public(), separators=(",", ":"))

    @classmethod
    def from_row(cls, row: tuple[int, bytes | None, str]) -> Retained:
        event_id, accounts, text = row
        keys = None if accounts is None else _split_keys(accounts)
        entry = cls(event_id, None, keys)
        entry.json = json.loads(text)
        return entry


def _split_keys(blob: bytes) -> tuple[bytes, ...]:
    return tuple(blob[i : i + 32] for i in range(0, len(blob), 32))


def gap_event(event_id: int, reason: str, since: int) -> dict[str, Any]:
    """Events after `since` up to `id` may be missing (`reason`): re-read the state."""
    return {"type": "gap", "id": event_id, "reason": reason, "since": since}


class Window:
    """The retained events, oldest first, and the ids they cover: every event with an id
    above `complete_since` is here (or behind a retained `gap` event)."""

    def __init__(self, run: int = 0) -> None:
        self.events: deque[Retained] = deque()
        self.run = run
        self.next_id = (run << EVENT_ID_RUN_SHIFT) + 1
        self.complete_since = 0

    def add(self, source: Any, accounts: tuple[bytes, ...] | None) -> Retained:
        entry = Retained(self.next_id, source, accounts)
        self.next_id += 1
        self.events.append(entry)
        if len(self.events) > EVENTS_RETAINED_MAX:
            self.complete_since = self.events.popleft().id
        return entry

    def skip(self, count: int) -> None:
        """`count` events published but not retained: ids are spent, resuming before them
        is a gap."""
        self.next_id += count
        self.complete_since = self.next_id - 1
        self.events.clear()

    def after(self, event_id: int) -> Iterator[Retained]:
        """The retained events with an id above `event_id`, oldest first."""
        if self.events and self.events[-1].id <= event_id:
            return iter(())
        return (entry for entry in self.events if entry.id > event_id)

    def replay(self, since: int, account: bytes | None) -> list[dict[str, Any]]:
        """What a subscriber resuming after id `since` missed (see the module docstring)."""
        if since >= self.next_id:
            return [gap_event(self.next_id - 1, "unknown_id", since)]
        result = []
        if since < self.complete_since:
            result.append(gap_event(self.complete_since, "window_exceeded", since))
        result += (entry.public() for entry in self.after(since) if entry.concerns(account))
        return result

    def meta(self, clean: bool) -> tuple[str, bytes]:
        state = {"run": self.run, "clean": clean, "complete_since": self.complete_since}
        return EVENTS_META_KEY, json.dumps(state).encode()


#: What an unreadable archive raises: SQLite on a damaged page or a row that is not UTF-8,
#: json and the row parsing on bytes that are not what this module wrote.
ARCHIVE_ERRORS = (sqlite3.DatabaseError, ValueError, KeyError, TypeError, IndexError)


async def load_window(archive: EventArchive) -> tuple[Window, int]:
    """The window as the previous run of the node left it, for a new run, and the newest id
    stored; a retained `gap` event when that run stopped without storing its last events.

    The archive only serves resuming subscribers (every event is derived from the ops and
    checkpoints, which the store checks on its own): when it cannot be read (a damaged page, a
    row that is not what we wrote), the node still starts, with a window that holds nothing
    before this run, so a subscriber resuming from an older id gets a `gap` and re-reads state.
    """
    stored = await archive.get_meta(EVENTS_META_KEY)
    if stored is None:
        return Window(), 0
    state: Any = None
    try:
        state = json.loads(stored)
        window = Window(int(state["run"]) + 1)
        window.complete_since = int(state["complete_since"])
        clean = bool(state["clean"])
        for row in await archive.read_events():
            window.events.append(Retained.from_row(row))
    except ARCHIVE_ERRORS as exc:
        return _unreadable_archive(state if isinstance(state, dict) else {}, exc), 0
    stored_id = window.events[-1].id if window.events else 0
    if not clean:
        last = window.events[-1].id if window.events else window.complete_since
        start = window.next_id - 1
        window.events.append(Retained(start, gap_event(start, "unclean_stop", last), None))
    while len(window.events) > EVENTS_RETAINED_MAX:
        window.complete_since = window.events.popleft().id
    return window, stored_id


def _unreadable_archive(state: dict[str, Any], exc: Exception) -> Window:
    """A new run after an archive that cannot be read: ids still move on past the stored run
    when its number is readable, and nothing before this run is retained."""
    run = state.get("run")
    window = Window(run + 1 if isinstance(run, int) and run >= 0 else 0)
    window.complete_since = window.next_id - 1
    log.warning("events_archive_unreadable", code="corrupt_database", error=str(exc)[:200])
    return window


# --- the subscribers ---------------------------------------------------------------------------


class Subscribers:
    """Event listeners, unfiltered or by the raw 32-byte account key they follow."""

    def __init__(self) -> None:
        self.unfiltered: list[EventListener] = []
        self.by_account: dict[bytes, list[EventListener]] = {}
        self.count = 0

    def add(self, listener: EventListener, account: bytes | None) -> None:
        if account is None:
            self.unfiltered.append(listener)
        else:
            self.by_account.setdefault(account, []).append(listener)
        self.count += 1

    def remove(self, listener: EventListener, account: bytes | None) -> None:
        listeners = self.unfiltered if account is None else self.by_account.get(account, [])
        with contextlib.suppress(ValueError):
            listeners.remove(listener)
            self.count -= 1
        if account is not None and not listeners:
            self.by_account.pop(account, None)

    def everyone(self) -> list[EventListener]:
        result = list(self.unfiltered)
        for listeners in self.by_account.values():
            result += listeners
        return result

    def following(self, accounts: tuple[bytes, ...]) -> list[EventListener]:
        """The listeners following one of `accounts`, each once."""
        result: list[EventListener] = []
        for account in accounts:
            for listener in self.by_account.get(account, ()):
                if listener not in result:
                    result.append(listener)
        return result

    def for_accounts(self, accounts: tuple[bytes, ...]) -> list[EventListener]:
        """Unfiltered listeners plus those following one of `accounts` (each once)."""
        if not self.by_account:
            return self.unfiltered
        return self.unfiltered + self.following(accounts)


class EventStream:
    """Publishes core events to the subscribers they concern and keeps the retained window
    (in `archive` when given; `load` it before the node starts, `close` it after)."""

    def __init__(
        self, archive: EventArchive | None = None, author_of: AuthorOf = _no_author
    ) -> None:
        self.subscribers = Subscribers()
        self.archive = archive
        self.author_of = author_of
        self.window = Window()
        #: The newest id stored in the archive.
        self.stored_id = 0
        self._storing: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        """Every published event is retained, listened to or not."""
        return True

    @property
    def last_id(self) -> int:
        return self.window.next_id - 1

    def add_listener(self, listener: EventListener, account: bytes | None = None) -> None:
        self.subscribers.add(listener, account)

    def remove_listener(self, listener: EventListener, account: bytes | None = None) -> None:
        self.subscribers.remove(listener, account)

    def replay(self, since: int, account: bytes | None = None) -> list[dict[str, Any]]:
        """The events a subscriber resuming after id `since` missed (with their ids)."""
        return self.window.replay(since, account)

    def publish(self, event: NodeEvent) -> None:
        if type(event) not in PUBLISHERS:
            return
        accounts = event_accounts(event, self.author_of)
        entry = self.window.add(event, accounts)
        subscribers = self.subscribers
        if accounts is None:
            listeners = subscribers.everyone()
        else:
            listeners = subscribers.for_accounts(accounts)
        if listeners:
            _deliver(listeners, entry.public())

    def publish_final_ops(self, event: PersistCheckpoint, ledger: Ledger) -> None:
        """One `op_final` event per op of the checkpoint: to the subscribers of its author or
        payee, every one; to unfiltered subscribers up to FINAL_OPS_PUBLISHED_UNFILTERED_MAX,
        then one `op_final_truncated` event. The window retains the last
        EVENTS_RETAINED_MAX of them. Then the window is stored."""
        subscribers = self.subscribers
        unfiltered = subscribers.unfiltered
        height = event.height
        op_ids = event.final_op_ids
        unfiltered_left = FINAL_OPS_PUBLISHED_UNFILTERED_MAX if unfiltered else 0
        skipped = max(0, len(op_ids) - EVENTS_RETAINED_MAX)
        if skipped:
            self._deliver_unretained_final_ops(op_ids[:skipped], height, ledger, unfiltered_left)
            unfiltered_left = max(0, unfiltered_left - skipped)
        for op_id in op_ids[skipped:]:
            op = ledger.op(op_id)
            accounts = () if op is None else ((op.author, op.to) if op.to else (op.author,))
            final = {"type": "op_final", "op_id": op_id.hex(), "height": height}
            entry = self.window.add(final, accounts)
            listeners = subscribers.following(accounts) if subscribers.by_account else []
            if unfiltered_left > 0:
                unfiltered_left -= 1
                listeners = unfiltered + listeners
            if listeners:
                _deliver(listeners, entry.public())
        ops = len(op_ids)
        if ops > FINAL_OPS_PUBLISHED_UNFILTERED_MAX:
            truncated = {
                "type": "op_final_truncated",
                "height": height,
                "ops": ops,
                "published": FINAL_OPS_PUBLISHED_UNFILTERED_MAX,
            }
            # Only unfiltered subscribers were cut short: nobody else is concerned.
            entry = self.window.add(truncated, ())
            if unfiltered:
                _deliver(unfiltered, entry.public())
        self.store_soon()

    def _deliver_unretained_final_ops(
        self, op_ids: Sequence[bytes], height: int, ledger: Ledger, unfiltered_left: int
    ) -> None:
        """The `op_final` events of a checkpoint too big for the window: delivered live
        (their ids spent), not retained."""
        subscribers = self.subscribers
        first = self.window.next_id
        self.window.skip(len(op_ids))
        for offset, op_id in enumerate(op_ids):
            if not subscribers.by_account and unfiltered_left <= 0:
                break
            op = ledger.op(op_id)
            accounts = () if op is None else ((op.author, op.to) if op.to else (op.author,))
            listeners = subscribers.following(accounts) if subscribers.by_account else []
            if unfiltered_left > 0:
                unfiltered_left -= 1
                listeners = subscribers.unfiltered + listeners
            if listeners:
                final = {"type": "op_final", "op_id": op_id.hex(), "height": height}
                _deliver(listeners, Retained(first + offset, final, accounts).public())

    # --- keeping the window across restarts --------------------------------------------------

    async def load(self) -> None:
        """Take over the window the previous run stored, and start a new run (stored now, so
        a crash of this run cannot reuse its ids)."""
        if self.archive is None:
            return
        self.window, self.stored_id = await load_window(self.archive)
        await self._store(clean=False)

    def store_soon(self) -> None:
        """Store the events retained since the last store, in the background."""
        if self.archive is None or (self._storing is not None and not self._storing.done()):
            return
        if self.last_id > self.stored_id:
            self._storing = asyncio.ensure_future(self._store_pending())

    async def _store_pending(self) -> None:
        try:
            while self.last_id > self.stored_id:
                await self._store(clean=False)
                await asyncio.sleep(EVENTS_STORE_INTERVAL_S)
        except Exception:
            log.exception("events_store_failed")

    async def _store(self, *, clean: bool) -> None:
        if self.archive is None:
            return
        last_id = self.last_id
        rows = [entry.row() for entry in self.window.after(self.stored_id)]
        await self.archive.append_events(rows, EVENTS_RETAINED_MAX, self.window.meta(clean))
        self.stored_id = last_id

    async def close(self) -> None:
        """Store the rest of the window and mark this run's end as clean."""
        if self._storing is not None:
            self._storing.cancel()  # a store under way still commits (the store shields it)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._storing
        with contextlib.suppress(Exception):
            await self._store(clean=True)

    def publish_reverted(self, event: OpsReverted, authors: dict[bytes, bytes]) -> None:
        """One `op_reverted` event per op a rollback certificate reverted, retained in the
        window (so a client resuming with `since` gets it) and delivered to the subscribers of
        its author (`authors`: op id -> author, the logged ones) and unfiltered ones."""
        subscribers = self.subscribers
        for op_id in event.op_ids:
            author = authors.get(op_id)
            following = (author,) if author is not None else ()
            source: dict[str, Any] = {
                "type": "op_reverted",
                "op_id": op_id.hex(),
                "code": "op_reverted",
                "height": event.height,
                "epoch": event.epoch,
            }
            entry = self.window.add(source, following)
            listeners = subscribers.for_accounts(following)
            if listeners:
                _deliver(listeners, entry.public())


def _deliver(listeners: list[EventListener], event: dict[str, Any]) -> None:
    for listener in list(listeners):
        try:
            listener(event)
        except Exception:
            log.exception("listener_failed")
