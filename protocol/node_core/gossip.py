"""Gossip: admitting ops, pushing them (eager) or announcing their ids (lazy relay), fetching
announced ids that no push brought in time, and the missing parents of pending ops."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import limits
from ..codes import RejectCode
from ..framing import Priority
from ..ledger import Outcome
from ..limits import (
    ANNOUNCE_FETCH_DELAY_S,
    ANNOUNCED_IDS_MAX,
    ANNOUNCED_IDS_PER_PEER_MAX,
    ANNOUNCERS_PER_ID_MAX,
    FETCH_REQUESTED_MAX,
    FETCH_RETRY_S,
    FETCH_SCAN_S,
)
from ..messages import (
    ANNOUNCE_IDS_PER_MESSAGE_MAX,
    OPS_PER_MESSAGE_MAX,
    AnnounceMessage,
    FetchMessage,
    OpsMessage,
    encode_message,
)
from ..ops import op_id_of
from . import council
from .config import Mode
from .events import PersistOps, StoredOpsWanted
from .peers import PENALTY_BAD_OP, Peer

if TYPE_CHECKING:
    from .core import NodeCore


@dataclass(slots=True)
class Announced:
    """An op id a peer announced that we lack: fetched from `announcers` in turn."""

    due: float
    origin: bytes  # the first announcer (its share of ANNOUNCED_IDS_PER_PEER_MAX)
    announcers: list[bytes]


class Gossip:
    """Push and lazy relay of ops, and the fetches that back them."""

    def __init__(self, core: NodeCore, now: float) -> None:
        self.core = core
        #: Envelopes to gossip and ids to announce per peer, flushed in batches by
        #: NodeCore.frames_with_priority().
        self.gossip_out: dict[bytes, list[bytes]] = {}
        self.announce_out: dict[bytes, list[bytes]] = {}
        #: Announced ids we lack: first tries (due at announcement + ANNOUNCE_FETCH_DELAY_S)
        #: and retries (due FETCH_RETRY_S after a fetch), each in due order.
        self.announced: OrderedDict[bytes, Announced] = OrderedDict()
        self.announce_retries: OrderedDict[bytes, Announced] = OrderedDict()
        self.fetch_requested: OrderedDict[bytes, float] = OrderedDict()
        #: Requested ids whose last FETCH went to a random peer (a missing parent or a cut's
        #: op, `request_missing`): that peer may lack them, and a FETCH of ops a peer lacks is
        #: not answered, so an announcer of one is asked at once rather than FETCH_RETRY_S later
        #: (a subset of `fetch_requested`'s keys, so within FETCH_REQUESTED_MAX).
        self.fetched_blind: set[bytes] = set()
        self.last_fetch_scan = now

    def scan_missing(self, now: float) -> None:
        """Look for the missing parents of pending ops, at most every FETCH_SCAN_S."""
        if self.core.ledger.pending.missing_count() and now - self.last_fetch_scan >= FETCH_SCAN_S:
            self.last_fetch_scan = now
            self.request_missing(now)

    def deadlines(self) -> list[float]:
        """When the oldest first try and the oldest retry of an announced id fall due."""
        queues = (self.announced, self.announce_retries)
        return [queue[next(iter(queue))].due for queue in queues if queue]

    def admit_op(self, envelope: bytes, now: float, *, source: Peer | None) -> Outcome:
        rollbacks = self.core.rollbacks
        if (rollbacks.reverted or rollbacks.unresolved) and type(envelope) is bytes:
            op_id = op_id_of(envelope)
            if rollbacks.is_reverted(op_id) and rollbacks.refuses(op_id, envelope, now):
                self.core.stats.ops_refused_reverted += 1
                # Reverted by a rollback certificate: refused from anyone, never re-applied (a
                # lagging peer may still relay it in good faith: no penalty).
                return Outcome(op_id, "rejected", RejectCode.OP_REVERTED, "reverted by rollback")
        outcome = self.core.ledger.receive_op(envelope, now)
        status = outcome.status
        if status == "duplicate":
            self.core.stats.ops_duplicate += source is not None
        elif status in ("accepted", "pending", "excluded"):
            op_id = outcome.op_id
            self.core._unfinal_ids.add(op_id)
            self.fetch_requested.pop(op_id, None)
            self.fetched_blind.discard(op_id)
            self.core._emit(PersistOps((envelope,)))
            if self.core.finality.first_unfinal_at is None:
                self.core.finality.first_unfinal_at = now
            if source is None:
                self.push(envelope, op_id, source=None, fanout=self.core.config.gossip_fanout)
            else:
                self.relay(envelope, op_id, source)
        elif (
            outcome.status == "rejected"
            and source is not None
            and outcome.code in ("bad_signature", "malformed_op", "non_canonical_encoding")
        ):
            self.core.peer_rules.penalize(source, PENALTY_BAD_OP, outcome.code)
        self.core._drain_ledger_events()
        return outcome

    def relay(self, envelope: bytes, op_id: bytes, source: Peer) -> None:
        """An op admitted from `source`: council broadcasts (rare, and the only ops a quiesced
        node takes, which ignores announcements) are pushed to every other peer; any other op
        to `eager_relay_fanout` peers and announced to the rest."""
        announced = self.announced.pop(op_id, None) or self.announce_retries.pop(op_id, None)
        skip = {source.peer_id}
        if announced is not None:
            self.release_announced(announced)
            skip.update(announced.announcers)  # they hold it: no need to tell them
        if council.is_council_op(envelope):
            self.push(envelope, op_id, source=skip, fanout=limits.PEERS_MAX, announce=False)
        else:
            self.push(envelope, op_id, source=skip, fanout=self.core.config.eager_relay_fanout)

    def push(
        self,
        envelope: bytes,
        op_id: bytes,
        *,
        source: set[bytes] | None,
        fanout: int,
        announce: bool = True,
    ) -> None:
        """Push `envelope` to `fanout` random peers not in `source`; announce it to the rest."""
        peers = self.core._peer_order
        candidates = peers if source is None else [p for p in peers if p not in source]
        if len(candidates) <= fanout:
            eager, lazy = candidates, []
        else:
            eager = self.core.rng.sample(candidates, fanout) if fanout else []
            chosen = set(eager)
            lazy = [p for p in candidates if p not in chosen] if announce else []
        _append_to_each(self.gossip_out, eager, envelope)
        _append_to_each(self.announce_out, lazy, op_id)
        self.core.stats.ops_gossiped += len(eager)
        self.core.stats.ops_announced += len(lazy)

    def flush(self) -> None:
        """Queue the ops gossiped since the last flush as OPS messages of up to
        OPS_PER_MESSAGE_MAX envelopes and the announced ids as ANNOUNCE messages of up to
        ANNOUNCE_IDS_PER_MESSAGE_MAX: one message (one decode, one rate-limit token at the
        receiver) per batch instead of per op."""
        if self.gossip_out:
            for peer_id in sorted(self.gossip_out):
                envelopes = self.gossip_out[peer_id]
                peer = self.core._peers.get(peer_id)
                if peer is None:
                    continue
                for start in range(0, len(envelopes), OPS_PER_MESSAGE_MAX):
                    chunk = tuple(envelopes[start : start + OPS_PER_MESSAGE_MAX])
                    peer.encoder.queue_message(encode_message(OpsMessage(chunk)), Priority.NORMAL)
            self.gossip_out.clear()
        if self.announce_out:
            height = self.core.final_height
            for peer_id in sorted(self.announce_out):
                ids = self.announce_out[peer_id]
                peer = self.core._peers.get(peer_id)
                if peer is None:
                    continue
                for start in range(0, len(ids), ANNOUNCE_IDS_PER_MESSAGE_MAX):
                    chunk = tuple(ids[start : start + ANNOUNCE_IDS_PER_MESSAGE_MAX])
                    message = encode_message(AnnounceMessage(height, chunk))
                    peer.encoder.queue_message(message, Priority.NORMAL)
            self.announce_out.clear()

    def knows(self, op_id: bytes) -> bool:
        """Applied, excluded, pending or remembered as rejected."""
        ledger = self.core.ledger
        return ledger.op(op_id) is not None or ledger.status_of(op_id)[0] != "unknown"

    def on_announce(self, peer: Peer, message: AnnounceMessage, now: float) -> None:
        """Remember the announced ids we lack; `_fetch_announced` asks for them once
        ANNOUNCE_FETCH_DELAY_S passed without a push bringing them. A quiesced node ignores
        announcements: it takes council broadcasts only, and those are pushed in full."""
        peer.announced_at = now
        peer.announced_height = message.final_height
        if self.core.effective_mode is Mode.QUIESCED:
            return
        peer_id = peer.peer_id
        for op_id in message.op_ids:
            entry = self.announced.get(op_id) or self.announce_retries.get(op_id)
            if entry is not None:
                if (
                    peer_id not in entry.announcers
                    and len(entry.announcers) < ANNOUNCERS_PER_ID_MAX
                ):
                    entry.announcers.append(peer_id)
                continue
            if self.knows(op_id):
                continue
            if (
                len(self.announced) + len(self.announce_retries) >= ANNOUNCED_IDS_MAX
                or peer.announced_outstanding >= ANNOUNCED_IDS_PER_PEER_MAX
            ):
                self.core.stats.announces_ignored += 1
                continue
            peer.announced_outstanding += 1
            self.announced[op_id] = Announced(now + ANNOUNCE_FETCH_DELAY_S, peer_id, [peer_id])

    def release_announced(self, entry: Announced) -> None:
        origin = self.core._peers.get(entry.origin)
        if origin is not None and origin.announced_outstanding > 0:
            origin.announced_outstanding -= 1

    def fetch_announced(self, now: float) -> None:
        """FETCH the announced ids that are due from their next announcer (grouped per peer).
        An id whose announcers are all tried (or gone) is dropped: delta sync finds it."""
        by_peer: dict[bytes, list[bytes]] = {}
        for queue in (self.announced, self.announce_retries):
            while queue:
                op_id = next(iter(queue))
                entry = queue[op_id]
                if entry.due > now:
                    break
                del queue[op_id]
                self.fetch_one_announced(op_id, entry, now, by_peer)
        if not by_peer:
            return
        self.forget_oldest_requests()
        for peer_id in sorted(by_peer):
            ids = by_peer[peer_id]
            peer = self.core._peers[peer_id]
            for start in range(0, len(ids), limits.FETCH_OPS_PER_REQUEST_MAX):
                chunk = tuple(ids[start : start + limits.FETCH_OPS_PER_REQUEST_MAX])
                peer.encoder.queue_message(encode_message(FetchMessage(chunk)), Priority.NORMAL)
            self.core.stats.announced_fetched += len(ids)

    def fetch_one_announced(
        self, op_id: bytes, entry: Announced, now: float, by_peer: dict[bytes, list[bytes]]
    ) -> None:
        if self.knows(op_id):
            self.release_announced(entry)
            return
        requested = self.fetch_requested.get(op_id)
        if (
            requested is not None
            and now < requested + FETCH_RETRY_S
            and op_id not in self.fetched_blind
        ):
            # Asked an announcer already: wait for that answer. (Asked a random peer for a
            # missing parent instead: it may lack the op and never answer, while an announcer
            # holds it. Waiting on that blind request stalled bounded meshes: issue 16.)
            entry.due = now + FETCH_RETRY_S
            self.announce_retries[op_id] = entry
            return
        while entry.announcers and entry.announcers[0] not in self.core._peers:
            entry.announcers.pop(0)
        if not entry.announcers:
            self.release_announced(entry)
            return
        peer_id = entry.announcers.pop(0)
        by_peer.setdefault(peer_id, []).append(op_id)
        self.fetch_requested[op_id] = now
        self.fetch_requested.move_to_end(op_id)
        self.fetched_blind.discard(op_id)
        entry.due = now + FETCH_RETRY_S
        self.announce_retries[op_id] = entry

    def forget_oldest_requests(self) -> None:
        while len(self.fetch_requested) > FETCH_REQUESTED_MAX:
            op_id, _ = self.fetch_requested.popitem(last=False)
            self.fetched_blind.discard(op_id)

    def send_ops(self, peer: Peer, op_ids: list[bytes], priority: Priority) -> int:
        """Send the ops we hold among `op_ids`; final ones whose bodies left memory are asked
        of the shell (`StoredOpsWanted`), which sends them with `send_envelopes`. Their ids
        left memory too (issue 13), so every id the ledger does not hold at all is asked: the
        shell sends only the logged ops at or below their author's final seq."""
        envelopes = []
        stored = []
        ledger = self.core.ledger
        for op_id in op_ids:
            op = ledger.op(op_id)
            if op is None:
                op = ledger.pending.get(op_id)
            if op is not None:
                envelopes.append(op.envelope)
            elif self.core.config.stored_ops and self._maybe_stored_final(op_id):
                stored.append(op_id)
        self.send_envelopes(peer, envelopes, priority)
        if stored:
            self.core._emit(StoredOpsWanted(peer.peer_id, tuple(stored)))
        return len(envelopes)

    def _maybe_stored_final(self, op_id: bytes) -> bool:
        ledger = self.core.ledger
        if ledger.is_final(op_id):
            return True
        reverted = self.core.rollbacks.reverted and self.core.rollbacks.is_reverted(op_id)
        return not reverted and ledger.status_of(op_id)[0] == "unknown"

    def send_envelopes(self, peer: Peer, envelopes: list[bytes], priority: Priority) -> None:
        for start in range(0, len(envelopes), OPS_PER_MESSAGE_MAX):
            chunk = tuple(envelopes[start : start + OPS_PER_MESSAGE_MAX])
            peer.encoder.queue_message(encode_message(OpsMessage(chunk)), priority)

    def on_ops(self, peer: Peer, message: OpsMessage, now: float) -> None:
        """Ops pushed, fetched or synced to us; while quiesced or with claims paused, the
        node's mode may refuse some (council.refusal_from_peer)."""
        core = self.core
        restricted = council.quiesced(core) or council.claims_paused(core)
        core.stats.ops_received += len(message.envelopes)
        for envelope in message.envelopes:
            if not restricted or council.refusal_from_peer(core, envelope) is None:
                self.admit_op(envelope, now, source=peer)

    def on_fetch(self, peer: Peer, message: FetchMessage, now: float) -> None:
        op_ids = message.op_ids
        # NORMAL, like gossip: with lazy relay a fetch answer is the gossip of that op.
        self.send_ops(peer, list(op_ids), Priority.NORMAL)

    def request_missing(self, now: float) -> None:
        """Fetch the parents pending ops wait for, and the ops of a decided cut we lack."""
        wanted = self.core.ledger.pending.missing_ids()
        if self.core.finality.awaiting_decision is not None:
            _, cut, _ = self.core.finality.awaiting_decision
            wanted += self.core.ledger.cut_closure([head for _, _, head in cut.heads])[1]
        for op_id, (_, _, cut) in list(self.core.finality.validation_waiting.items()):
            wanted += self.core.ledger.cut_closure([head for _, _, head in cut.heads])[1]
            del op_id
        # An id announced and not yet fetched is left to `fetch_announced`, which asks a peer
        # that holds it within ANNOUNCE_FETCH_DELAY_S. (One whose announcer was asked already
        # is asked again here once FETCH_RETRY_S passed: that answer may be lost, and the next
        # announcer is up to FETCH_RETRY_S away.)
        due = [
            op_id
            for op_id in dict.fromkeys(wanted)
            if now - self.fetch_requested.get(op_id, -FETCH_RETRY_S) >= FETCH_RETRY_S
            and op_id not in self.announced
        ][: limits.FETCH_OPS_PER_REQUEST_MAX]
        if not due or not self.core._peers:
            return
        for op_id in due:
            self.fetch_requested[op_id] = now
            self.fetch_requested.move_to_end(op_id)
            self.fetched_blind.add(op_id)
        self.forget_oldest_requests()
        peers = self.core._peer_order
        target = self.core._peers[peers[self.core.rng.randrange(len(peers))]]
        target.encoder.queue_message(encode_message(FetchMessage(tuple(due))), Priority.BULK)
        self.core.stats.ops_fetched += len(due)


def _append_to_each(queues: dict[bytes, list[bytes]], peer_ids: list[bytes], item: bytes) -> None:
    """Append `item` to the queue of each peer (hot path: no list built for a known peer)."""
    for peer_id in peer_ids:
        queue = queues.get(peer_id)
        if queue is None:
            queues[peer_id] = [item]
        else:
            queue.append(item)
