"""The event stream: the JSON schema of the events pushed to subscribers, and who gets which.

`EventStream.publish` turns a core event into its public JSON form (`PUBLISHERS`, one builder
per event type) and hands it to the listeners it concerns: unfiltered listeners get every
event; a listener following an account (raw 32-byte key) gets the events that name it
(`accounts`) or name no account at all. Matching compares raw keys, so an event's JSON (hex,
base32 account ids) is built only when somebody receives it. The WebSocket route that serves
the stream is in http/api.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

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

EventListener = Callable[[dict[str, Any]], None]


# --- the JSON schema ---------------------------------------------------------------------------

_text = crypto.account_id_text


def _op_accepted(event: OpAccepted) -> dict[str, Any]:
    return {
        "type": "op_accepted",
        "op_id": event.op_id.hex(),
        "kind": event.kind.label,
        "accounts": [_text(event.author)],
        "seq": event.seq,
    }


def _credit_received(event: CreditReceived) -> dict[str, Any]:
    return {
        "type": "credit_received",
        "account": _text(event.account),
        "accounts": [_text(event.account), _text(event.sender)],
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
        "height": event.height,
    }


def _handle_bound(event: HandleBound) -> dict[str, Any]:
    return {
        "type": "handle_bound",
        "handle": event.handle,
        "owner": _text(event.owner),
        "accounts": [_text(event.owner)],
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

#: The raw account keys an event concerns (its JSON `accounts`), per event type; the types not
#: here concern every subscriber (a checkpoint, a mode change, a rejection).
ACCOUNTS: dict[type[NodeEvent], Callable[[Any], tuple[bytes, ...]]] = {
    OpAccepted: lambda event: (event.author,),
    CreditReceived: lambda event: (event.account, event.sender),
    HandleBound: lambda event: (event.owner,),
}


def public_event(event: NodeEvent) -> dict[str, Any] | None:
    """The JSON form pushed to WebSocket subscribers (None: not published)."""
    publisher = PUBLISHERS.get(type(event))
    return None if publisher is None else publisher(event)


def event_accounts(event: NodeEvent) -> tuple[bytes, ...] | None:
    """The raw account keys `event` concerns; None: it concerns every subscriber."""
    accounts = ACCOUNTS.get(type(event))
    return None if accounts is None else accounts(event)


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
    """Publishes core events to the subscribers they concern (JSON built only for them)."""

    def __init__(self) -> None:
        self.subscribers = Subscribers()

    @property
    def active(self) -> bool:
        return self.subscribers.count > 0

    def add_listener(self, listener: EventListener, account: bytes | None = None) -> None:
        self.subscribers.add(listener, account)

    def remove_listener(self, listener: EventListener, account: bytes | None = None) -> None:
        self.subscribers.remove(listener, account)

    def publish(self, event: NodeEvent) -> None:
        accounts = event_accounts(event)
        subscribers = self.subscribers
        if accounts is None:
            listeners = subscribers.everyone()
        else:
            listeners = subscribers.for_accounts(accounts)
        if listeners:
            published = public_event(event)
            if published is not None:
                _deliver(listeners, published)

    def publish_final_ops(self, event: PersistCheckpoint, ledger: Ledger) -> None:
        """One `op_final` event per op of the checkpoint: to the subscribers of its author or
        payee, every one; to unfiltered subscribers up to FINAL_OPS_PUBLISHED_UNFILTERED_MAX,
        then one `op_final_truncated` event."""
        subscribers = self.subscribers
        unfiltered = subscribers.unfiltered
        by_account = subscribers.by_account
        height = event.height
        unfiltered_left = FINAL_OPS_PUBLISHED_UNFILTERED_MAX if unfiltered else 0
        for op_id in event.final_op_ids:
            if not by_account and unfiltered_left <= 0:
                break
            op = ledger.op(op_id)
            listeners: list[EventListener] = []
            if by_account and op is not None:
                listeners = subscribers.following((op.author, op.to) if op.to else (op.author,))
            if unfiltered_left > 0:
                unfiltered_left -= 1
                listeners = unfiltered + listeners
            if not listeners:
                continue
            accounts = []
            if op is not None:
                accounts.append(_text(op.author))
                if op.to:
                    accounts.append(_text(op.to))
            published = {"type": "op_final", "op_id": op_id.hex(), "height": height}
            published["accounts"] = accounts
            _deliver(listeners, published)
        ops = len(event.final_op_ids)
        if unfiltered and ops > FINAL_OPS_PUBLISHED_UNFILTERED_MAX:
            truncated = {
                "type": "op_final_truncated",
                "height": height,
                "ops": ops,
                "published": FINAL_OPS_PUBLISHED_UNFILTERED_MAX,
            }
            _deliver(unfiltered, truncated)

    def publish_reverted(self, event: OpsReverted, authors: dict[bytes, bytes]) -> None:
        """One `op_reverted` event per op a rollback certificate reverted, to the subscribers
        of its author (`authors`: op id -> author, the logged ones) and unfiltered ones."""
        subscribers = self.subscribers
        for op_id in event.op_ids:
            author = authors.get(op_id)
            following = (author,) if author is not None else ()
            listeners = subscribers.for_accounts(following)
            if not listeners:
                continue
            published: dict[str, Any] = {
                "type": "op_reverted",
                "op_id": op_id.hex(),
                "code": "op_reverted",
                "height": event.height,
                "epoch": event.epoch,
                "accounts": [_text(author)] if author is not None else [],
            }
            _deliver(listeners, published)


def _deliver(listeners: list[EventListener], event: dict[str, Any]) -> None:
    for listener in list(listeners):
        try:
            listener(event)
        except Exception:
            log.exception("listener_failed")
