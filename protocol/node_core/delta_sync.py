"""Delta sync: a range-based set reconciliation over the unfinalized op ids with each peer,
every `delta_sync_interval_s` (skipped at most SYNC_SKIPS_MAX times in a row while the peer's
announcements flow at our final height); at the end both sides push the ops the other lacks.
The initiator's SYNC_HELLO carries its final height: a peer behind it gets bundles."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import RemoteProtocolError
from ..framing import Priority
from ..limits import SYNC_SESSION_TIMEOUT_INTERVALS, SYNC_SKIPS_MAX
from ..messages import BundleRequestMessage, ReconcileMessage, SyncHelloMessage, encode_message
from ..reconcile import Reconciler
from .events import SyncSessionFinished
from .peers import PENALTY_MALFORMED_MESSAGE, Peer, SyncSession

if TYPE_CHECKING:
    from .core import NodeCore


class DeltaSync:
    """The sync sessions this node starts and answers (their state sits in each Peer)."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        self.next_session_id = 1

    def start(self, peer: Peer, now: float) -> None:
        peer.next_sync_at = now + self.core.config.delta_sync_interval_s
        if self.may_skip(peer, now):
            peer.sync_skips += 1
            self.core.stats.sync_sessions_skipped += 1
            return
        peer.sync_skips = 0
        previous = peer.outgoing_sync
        if (
            previous is not None
            and now - previous.started_at < self.core.config.delta_sync_interval_s
        ):
            return  # still running; a session older than one interval is replaced (lost)
        if previous is not None:
            self.core.stats.sync_sessions_lost += 1
        session = SyncSession(self.next_session_id, Reconciler(self.core._unfinal_ids), now, True)
        self.next_session_id += 1
        peer.outgoing_sync = session
        first = session.reconciler.initiate()
        hello = SyncHelloMessage(session.session_id, self.core.final_height, first)
        peer.encoder.queue_message(encode_message(hello), Priority.BULK)

    def may_skip(self, peer: Peer, now: float) -> bool:
        """Whether a session with `peer` can wait one more interval: its announcements arrive
        (gossip flows both ways between us, so our sets differ by in-flight ops only, which
        a session would report for nothing), it announced our final height (neither side needs
        bundles), and fewer than SYNC_SKIPS_MAX sessions in a row were skipped."""
        return (
            peer.synced
            and peer.sync_skips < SYNC_SKIPS_MAX
            and peer.announced_at is not None
            and now - peer.announced_at <= self.core.config.delta_sync_interval_s
            and peer.announced_height == self.core.final_height
            and not self.core.finality.catching_up
        )

    def on_hello(self, peer: Peer, message: SyncHelloMessage, now: float) -> None:
        self.core.finality.note_peer_height(peer, message.final_height)
        if message.final_height < self.core.final_height:
            # The peer is behind: send the bundles it needs next (it asks for more if needed).
            request = BundleRequestMessage(message.final_height + 1, 8)
            self.core.finality.serve_bundles(peer, request)
        session = SyncSession(message.session_id, Reconciler(self.core._unfinal_ids), now, False)
        peer.incoming_sync = session
        self.continue_responder(peer, session, message.reconcile)

    def on_reconcile(self, peer: Peer, message: ReconcileMessage, now: float) -> None:
        if message.from_initiator:
            session = peer.incoming_sync
            if session is None or session.session_id != message.session_id:
                return
            self.continue_responder(peer, session, message.payload)
            return
        session = peer.outgoing_sync
        if session is None or session.session_id != message.session_id:
            return
        try:
            reply = session.reconciler.reconcile(message.payload)
        except RemoteProtocolError as exc:
            peer.outgoing_sync = None
            self.core.stats.sync_sessions_lost += 1
            self.core.peer_rules.penalize(peer, PENALTY_MALFORMED_MESSAGE, exc.code)
            return
        if reply is not None and not session.reconciler.is_complete:
            out = ReconcileMessage(session.session_id, True, reply)
            peer.encoder.queue_message(encode_message(out), Priority.BULK)
            return
        if reply is not None:
            out = ReconcileMessage(session.session_id, True, reply)
            peer.encoder.queue_message(encode_message(out), Priority.BULK)
        self.finish(peer, session, now)
        peer.outgoing_sync = None

    def continue_responder(self, peer: Peer, session: SyncSession, payload: bytes) -> None:
        try:
            reply = session.reconciler.respond(payload)
        except RemoteProtocolError as exc:
            peer.incoming_sync = None
            self.core.peer_rules.penalize(peer, PENALTY_MALFORMED_MESSAGE, exc.code)
            return
        if reply is not None:
            out = ReconcileMessage(session.session_id, False, reply)
            peer.encoder.queue_message(encode_message(out), Priority.BULK)
        if reply is None or session.reconciler.is_complete:
            self.core.gossip.send_ops(peer, session.reconciler.have_ids, Priority.BULK)
            peer.incoming_sync = None

    def finish(self, peer: Peer, session: SyncSession, now: float) -> None:
        reconciler = session.reconciler
        if session.initiator:
            peer.synced = True
        pushed = self.core.gossip.send_ops(peer, reconciler.have_ids, Priority.BULK)
        duration = now - session.started_at
        within = duration <= self.core.config.delta_sync_interval_s
        total_bytes = reconciler.bytes_sent + reconciler.bytes_received
        self.core.stats.sync_sessions += 1
        self.core.stats.sync_sessions_within_cadence += within
        self.core.stats.sync_bytes += total_bytes
        self.core.stats.sync_bytes_sent += reconciler.bytes_sent
        self.core.stats.sync_bytes_received += reconciler.bytes_received
        self.core._emit(
            SyncSessionFinished(
                peer.peer_id,
                duration,
                reconciler.rounds,
                total_bytes,
                within,
                pushed + len(reconciler.need_ids),
            )
        )

    def maybe_abandon(self, peer: Peer, now: float) -> None:
        limit = self.core.config.delta_sync_interval_s * SYNC_SESSION_TIMEOUT_INTERVALS
        if peer.outgoing_sync and now - peer.outgoing_sync.started_at > limit:
            peer.outgoing_sync = None
            self.core.stats.sync_sessions_lost += 1
        if peer.incoming_sync and now - peer.incoming_sync.started_at > limit:
            peer.incoming_sync = None
