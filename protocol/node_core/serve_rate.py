"""Send-rate limits for bulk sync serving (issue 16): the state-sync chunks and catch-up
bundles this node serves to peers that ask for them.

Two token buckets in bytes, fed by the core's `now`: one per peer
(`NodeCoreConfig.serve_bytes_per_s_peer`, burst `serve_burst_bytes_peer`) and one for all
peers together (`serve_bytes_per_s_total`, burst `serve_burst_bytes_total`). An answer is sent
when both buckets hold its size (capped at the burst, so an answer larger than the burst waits
for a full bucket instead of forever) and costs both its whole size. So over any span of `t`
seconds a peer gets at most burst + rate x t bytes of answers (plus at most one answer above
the burst), and all peers together at most the total's.

The size charged is `answer_size_max`, an upper bound of the encoded answer computed from its
payloads before anything is encoded: a held request costs no encoding, and the bytes really
sent never exceed what was charged. An answer that must wait is not built: its request waits
in the peer's queue (at most SERVE_DEFERRED_PER_PEER_MAX; past it the request is dropped and
counted, and the asker's timeout asks again or elsewhere) and is handled again, in arrival
order, when the buckets allow (`next_at`, `pump`). Peers take turns one request at a time, in
peer-id order, so one fast asker cannot starve the others of the total.

What the limits cover: CHUNK answers to CHUNK_REQUEST (state_sync.py), BUNDLES answers to
BUNDLE_REQUEST or to a lagging peer's SYNC_HELLO and OPS answers to CHECKPOINT_OPS_REQUEST
(finality.py: a catch-up fetching a height's final ops), the OPS answers of final
ops the shell read from its store for a peer (`StoredOpsAnswer`: NodeCore.send_stored_ops
after a `StoredOpsWanted`; the daemon's catch-up of a peer below the in-memory window), held
with their envelopes like a request, and the old-epoch bundles above H a node pushes with a
rollback certificate, after the ops of theirs it holds (rollbacks.py, a `HeldPush`: held like
a request, in the same queue, and sent whole when the buckets allow; only ever later than
queued, so still after the certificate it follows). Consensus, gossip, certificates and the
reconciliation itself are not bulk sync and are never held here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..limits import OPS_PER_MESSAGE_MAX, SERVE_DEFERRED_PER_PEER_MAX, SERVE_RATE_BUCKETS_MAX
from ..messages import BundleRequestMessage, CheckpointOpsRequest, ChunkRequestMessage

if TYPE_CHECKING:
    from .core import NodeCore
    from .peers import Peer

#: Tokens short of an answer's size that still let it go (float rounding of refills).
TOKENS_EPSILON = 1e-6
#: msgpack framing of an answer beyond its payloads: the array header, the type, a 32-byte id
#: with its bin header and one int (at most 9 bytes) fit in this...
MESSAGE_ENCODING_BYTES_MAX = 64
#: ...plus at most this per payload (a bin 32 header).
PAYLOAD_HEADER_BYTES_MAX = 5


@dataclass(frozen=True, slots=True)
class StoredOpsAnswer:
    """Final op envelopes the shell read from its store for a peer (the answer to a
    `StoredOpsWanted`), sent as OPS messages at bulk priority once the buckets allow."""

    envelopes: tuple[bytes, ...]


@dataclass(frozen=True, eq=False)
class HeldPush:
    """Bulk frames this node sends unasked (the old-epoch bundles above H pushed with a
    rollback certificate): `size` bytes at most, sent by `send` once admitted. One object is
    shared by every peer it goes to (its bytes are not copied per peer)."""

    size: int
    send: Callable[[Peer], None]


#: A request whose answer is rate limited (a stored-ops answer is held with its envelopes; a
#: push is sent like an answer).
ServedRequest = (
    ChunkRequestMessage | BundleRequestMessage | CheckpointOpsRequest | StoredOpsAnswer | HeldPush
)


def answer_size_max(payloads: list[bytes]) -> int:
    """At least the encoded size of a CHUNK or BUNDLES message carrying `payloads`."""
    return MESSAGE_ENCODING_BYTES_MAX + sum(len(p) + PAYLOAD_HEADER_BYTES_MAX for p in payloads)


def ops_answer_size_max(envelopes: list[bytes]) -> int:
    """At least the encoded size of the OPS messages carrying `envelopes`
    (OPS_PER_MESSAGE_MAX a message, as gossip.send_envelopes splits them)."""
    return sum(
        answer_size_max(envelopes[start : start + OPS_PER_MESSAGE_MAX])
        for start in range(0, len(envelopes), OPS_PER_MESSAGE_MAX)
    )


@dataclass
class Bucket:
    """Bytes that may be sent now (up to `burst`), refilled at `rate` per second."""

    rate: float
    burst: float
    tokens: float
    at: float

    def refill(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now

    def needs(self, size: int) -> float:
        """Tokens an answer of `size` bytes waits for (capped at the burst)."""
        return min(float(size), self.burst)

    def holds(self, size: int) -> bool:
        """Whether the tokens cover an answer of `size` bytes; within TOKENS_EPSILON, so the
        time `ready_at` names is always ready despite float rounding (no timer spins)."""
        return self.tokens >= self.needs(size) - TOKENS_EPSILON

    def ready_at(self, size: int) -> float:
        """When the bucket will hold what an answer of `size` bytes needs (after `refill`)."""
        missing = self.needs(size) - self.tokens
        return self.at if missing <= 0 else self.at + missing / self.rate


@dataclass
class Deferred:
    request: ServedRequest
    size: int  # the answer's size when it was held (the timer's estimate)


class ServeRate:
    """The buckets and the queues of held requests; see the module docstring."""

    def __init__(self, core: NodeCore, now: float) -> None:
        self.core = core
        config = core.config
        self.total = Bucket(
            config.serve_bytes_per_s_total,
            config.serve_burst_bytes_total,
            config.serve_burst_bytes_total,
            now,
        )
        self.buckets: dict[bytes, Bucket] = {}
        self.deferred: dict[bytes, deque[Deferred]] = {}
        #: The held request `pump` is handling again (it may go before the rest of the queue).
        self._serving: ServedRequest | None = None
        self._blocked = False

    def admit(self, peer: Peer, request: ServedRequest, size: int) -> bool:
        """Whether the answer (`size` bytes) to `request` may be sent now; if so both buckets
        are charged. Otherwise the request is held (or dropped when the queue is full)."""
        now = self.core._now
        queue = self.deferred.get(peer.peer_id)
        if queue and self._serving is not request:
            self._hold(peer, request, size)  # earlier requests of this peer go first
            return False
        bucket = self._bucket(peer.peer_id, now)
        self.total.refill(now)
        if not (bucket.holds(size) and self.total.holds(size)):
            if self._serving is request:
                self._blocked = True
                assert queue is not None
                queue[0].size = size
            else:
                self._hold(peer, request, size)
            return False
        bucket.tokens -= size
        self.total.tokens -= size
        return True

    def push(self, peer: Peer, held: HeldPush) -> None:
        """Send `held` to `peer` now if the buckets allow, else hold it (like a request)."""
        if self.admit(peer, held, held.size):
            held.send(peer)

    def next_at(self) -> float | None:
        """When the first held request can be answered (None when none is held)."""
        if not self.deferred:
            return None
        times = []
        for peer_id, queue in self.deferred.items():
            size = queue[0].size
            bucket = self.buckets[peer_id]
            times.append(max(bucket.ready_at(size), self.total.ready_at(size)))
        return min(times)

    def pump(self, now: float) -> None:
        """Handle held requests again while the buckets allow, one per peer per turn."""
        if not self.deferred:
            return
        core = self.core
        progress = True
        while progress:
            progress = False
            for peer_id in sorted(self.deferred):
                queue = self.deferred[peer_id]
                peer = core._peers.get(peer_id)
                if peer is None:
                    del self.deferred[peer_id]  # the peer left: nobody to answer
                    continue
                request = queue[0].request
                self._serving, self._blocked = request, False
                if isinstance(request, StoredOpsAnswer):
                    core.serve_stored_ops(peer, request)
                elif isinstance(request, HeldPush):
                    self.push(peer, request)
                else:
                    core._dispatch(peer, request, now)
                self._serving = None
                if self._blocked:
                    continue
                queue.popleft()
                progress = True
                if not queue:
                    del self.deferred[peer_id]

    def _hold(self, peer: Peer, request: ServedRequest, size: int) -> None:
        queue = self.deferred.setdefault(peer.peer_id, deque())
        if len(queue) >= SERVE_DEFERRED_PER_PEER_MAX:
            self.core.stats.serve_requests_dropped += 1
            return
        queue.append(Deferred(request, size))
        self.core.stats.serve_requests_deferred += 1

    def _bucket(self, peer_id: bytes, now: float) -> Bucket:
        bucket = self.buckets.get(peer_id)
        if bucket is None:
            if len(self.buckets) >= SERVE_RATE_BUCKETS_MAX:
                self._forget_idle_buckets(now)
            config = self.core.config
            rate, burst = config.serve_bytes_per_s_peer, config.serve_burst_bytes_peer
            bucket = self.buckets[peer_id] = Bucket(rate, burst, burst, now)
        bucket.refill(now)
        return bucket

    def _forget_idle_buckets(self, now: float) -> None:
        """Drop the buckets of peers not connected and holding nothing: full ones first (a
        new bucket starts full anyway), then the rest (a peer gone that long owes little)."""
        idle = [
            peer_id
            for peer_id in sorted(self.buckets)
            if peer_id not in self.core._peers and peer_id not in self.deferred
        ]
        for bucket_id in idle:
            self.buckets[bucket_id].refill(now)
        idle.sort(key=lambda peer_id: -self.buckets[peer_id].tokens)
        for peer_id in idle[: max(1, len(idle) // 2)]:
            del self.buckets[peer_id]
