"""State sync: serving our newest snapshot (offers, chunks) to peers further behind than the
bundles we keep, and fetching, checking and installing a peer's snapshot when we are."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import consensus
from ..checkpoint import Cut
from ..crypto import sha256
from ..errors import LocalProtocolError, RemoteProtocolError
from ..framing import Priority
from ..genesis import Genesis
from ..ledger import Ledger
from ..ledger.snapshot import build_snapshot, state_from_records
from ..ledger.state import LedgerState
from ..limits import SNAPSHOT_OFFER_INTERVAL_S, STATE_SYNC_CHUNK_TIMEOUT_S, STATE_SYNC_RETRY_S
from ..messages import (
    BundleRequestMessage,
    ChunkMessage,
    ChunkMissingMessage,
    ChunkRequestMessage,
    SnapshotOfferMessage,
    encode_message,
)
from ..ops import Op
from ..reconcile import IdSet
from ..rollback import EpochHistory, RollbackError
from ..snapshot import (
    ChunkRejected,
    ChunkVerified,
    FetchCompleted,
    FetchFailed,
    Manifest,
    SnapshotFetcher,
    decode_blob,
    decode_manifest,
    encode_blob,
    split_chunk,
)
from .events import (
    PersistCheckpoint,
    SnapshotOfferMismatchError,
    SnapshotRestoreError,
    StateSyncFailed,
    StateSyncFinished,
)
from .peers import PENALTY_BAD_SNAPSHOT, Peer
from .serve_rate import answer_size_max

if TYPE_CHECKING:
    from .core import NodeCore


@dataclass(frozen=True)
class Snapshot:
    """Our newest snapshot, served to peers: manifest, chunks and the bundle of its height."""

    manifest: Manifest
    chunks: tuple[bytes, ...]
    bundle: bytes


@dataclass
class StateSyncRun:
    """A state sync in progress: the offered manifest (checked against `bundle`) and the
    fetcher of its chunks."""

    manifest: Manifest
    bundle: bytes
    fetcher: SnapshotFetcher
    started_at: float
    offered_by: list[bytes]
    contributors: list[bytes] = field(default_factory=list)
    #: Offerers that answered a chunk request with ChunkMissing: they no longer serve this
    #: snapshot (replaced by their newer one; see `StateSync.on_offer`).
    gone: list[bytes] = field(default_factory=list)


class StateSync:
    """Our newest snapshot (served to lagging peers) and the state sync in progress."""

    def __init__(self, core: NodeCore, now: float) -> None:
        self.core = core
        self.snapshot: Snapshot | None = None
        self.run: StateSyncRun | None = None
        self.retry_at = now
        #: The height of a failed sync whose offerers all answered that they no longer had
        #: it (0: none): a newer offer is taken before `retry_at` (see on_offer).
        self.replaced_height = 0

    def restore_from_blob(self, blob: bytes, by_height: dict[int, bytes]) -> None:
        """Continue from a snapshot this node stored itself (a restart): its account keys
        are not checked as curve points again (`state_from_records`)."""
        try:
            manifest, chunks = decode_blob(blob)
        except RemoteProtocolError as exc:
            raise SnapshotRestoreError(f"corrupt snapshot blob: {exc.message}") from exc
        bundle = by_height.get(manifest.height)
        if bundle is None:
            raise SnapshotRestoreError(
                f"no checkpoint bundle of the snapshot's height {manifest.height} in the log"
            )
        try:
            state = signed_snapshot_state(
                manifest,
                chunks,
                bundle,
                self.core.genesis,
                self.core.rollbacks.history,
                check_keys=False,
            )
        except RemoteProtocolError as exc:
            raise SnapshotRestoreError(
                f"snapshot at height {manifest.height} does not match: {exc.message}"
            ) from exc
        self.install(manifest, chunks, state, bundle)

    def install(
        self, manifest: Manifest, chunks: list[bytes], state: LedgerState, bundle: bytes
    ) -> list[Op]:
        """Continue from the checked final `state` at the manifest's height; returns the
        unfinalized ops the previous ledger held (the caller re-admits them)."""
        old = self.core.ledger
        held = [op for op in old.known_ops() if not old.is_final(op.op_id)]
        held += [entry.op for entry in old.pending.entries()]
        height = manifest.height
        self.core.ledger = Ledger.restore_final(
            self.core.genesis, state, height, self.core.config.ledger, owned=True
        )
        self.core.finality.last_checkpoint_id = manifest.checkpoint_id
        # Bundles held from before the gap are dropped: the kept ones run without a gap up to
        # the final height (what _serve_bundles and the offer trigger assume).
        self.core.finality.bundles.clear()
        self.core.finality.final_ids_by_height.clear()
        self.core.finality.bundles[height] = bundle
        for stale in [h for h in sorted(self.core.finality.future_bundles) if h <= height]:
            del self.core.finality.future_bundles[stale]
        self.core.finality.awaiting_decision = None
        self.core.finality.validation_waiting.clear()
        self.core._unfinal_ids = IdSet()
        self.snapshot = Snapshot(manifest, tuple(chunks), bundle)
        self.core.snapshot_base_height = height
        self.core.rollbacks.snapshot_installed(height)
        return held

    def make_snapshot(self, height: int, cut: Cut, bundle: bytes, *, encode: bool) -> bytes:
        """Snapshot the final state just reached (kept to serve peers); its blob if `encode`."""
        try:
            state = self.core.ledger.final_state
            manifest, chunks = build_snapshot(state, height, cut.checkpoint_id, cut.state_root)
        except LocalProtocolError:
            self.core.stats.snapshots_failed += 1  # a state over the snapshot limits: none made
            return b""
        self.snapshot = Snapshot(manifest, tuple(chunks), bundle)
        self.core.stats.snapshots_made += 1
        return encode_blob(manifest, chunks) if encode else b""

    def built(self, manifest: Manifest, chunks: list[bytes], bundle: bytes) -> bool:
        """See NodeCore.snapshot_built."""
        current = self.snapshot
        if (
            (current is not None and current.manifest.height >= manifest.height)
            or manifest.height < self.core.snapshot_base_height
            or manifest.height > self.core.final_height
        ):
            self.core.stats.snapshots_stale += 1
            return False
        self.snapshot = Snapshot(manifest, tuple(chunks), bundle)
        self.core.stats.snapshots_made += 1
        return True

    def offer(self, peer: Peer, first_height: int) -> None:
        """The peer wants final heights we no longer keep bundles for: offer our snapshot, if
        it reaches that far, at most every SNAPSHOT_OFFER_INTERVAL_S."""
        snapshot = self.snapshot
        if snapshot is None or snapshot.manifest.height < first_height:
            return
        offered_at = peer.snapshot_offered_at
        if offered_at is not None and self.core._now - offered_at < SNAPSHOT_OFFER_INTERVAL_S:
            return
        peer.snapshot_offered_at = self.core._now
        self.core.stats.snapshot_offers_sent += 1
        offer = SnapshotOfferMessage(snapshot.manifest.encoded, snapshot.bundle)
        peer.encoder.queue_message(encode_message(offer), Priority.BULK)

    def serve_chunk(self, peer: Peer, request: ChunkRequestMessage, now: float) -> None:
        snapshot = self.snapshot
        if (
            snapshot is None
            or snapshot.manifest.manifest_id != request.manifest_id
            or request.index >= snapshot.manifest.chunk_count
        ):
            missing = ChunkMissingMessage(request.manifest_id, request.index)
            peer.encoder.queue_message(encode_message(missing), Priority.NORMAL)
            return
        data = snapshot.chunks[request.index]
        if not self.core.serve_rate.admit(peer, request, answer_size_max([data])):
            return  # held for the send rate (serve_rate.py)
        chunk = ChunkMessage(request.manifest_id, request.index, data)
        peer.encoder.queue_message(encode_message(chunk), Priority.BULK)
        self.core.stats.snapshot_chunks_served += 1

    def on_offer(self, peer: Peer, offer: SnapshotOfferMessage, now: float) -> None:
        sync = self.run
        if sync is not None and sha256(offer.manifest) == sync.manifest.manifest_id:
            sync.fetcher.add_peer(peer.peer_id, now)  # another source of the same chunks
            if peer.peer_id not in sync.offered_by:
                sync.offered_by.append(peer.peer_id)
            return
        if sync is not None:
            if len(sync.gone) < len(sync.offered_by):
                return  # the sync in progress still has a source
            above = sync.manifest.height
        elif now < self.retry_at:
            if not self.replaced_height:
                return
            above = self.replaced_height
        else:
            above = 0
        manifest = self._checked_offer(peer, offer)
        if manifest is None or manifest.height <= max(self.core.final_height, above):
            return  # refused, or bundles or an earlier sync got us there
        # Past here with `above` set: every offerer of the sync in progress (or of the one
        # that just failed) answered that it no longer has that snapshot (peers keep only
        # their newest, made every few heights: our chunk request came after theirs moved
        # on), and a newer one is offered: take it now, not after the chunk passes and
        # STATE_SYNC_RETRY_S (a node catching up, e.g. after a divergence, would lose seconds
        # per snapshot it raced). A liar gains nothing: a switch needs a higher signed height.
        if sync is not None:
            self.run = None
            self.core.stats.state_syncs_failed += 1
            reason = "snapshot replaced by a newer one"
            self.core._emit(StateSyncFailed(sync.manifest.height, reason))
        self.replaced_height = 0
        self._start(peer, manifest, offer.bundle, now)

    def _checked_offer(self, peer: Peer, offer: SnapshotOfferMessage) -> Manifest | None:
        """The offered manifest, checked against its signed bundle; None when refused."""
        try:
            manifest = decode_manifest(offer.manifest)
            if manifest.encoded != offer.manifest:
                raise SnapshotOfferMismatchError("the manifest is not canonically encoded")
            check_snapshot_bundle(
                manifest, offer.bundle, self.core.genesis, self.core.rollbacks.history
            )
        except RollbackError:
            return None  # a snapshot of a reverted height or a future epoch: in good faith
        except RemoteProtocolError as exc:
            self.core.peer_rules.penalize(peer, PENALTY_BAD_SNAPSHOT, exc.code)
            return None
        return manifest

    def _start(self, peer: Peer, manifest: Manifest, bundle: bytes, now: float) -> None:
        fetcher = SnapshotFetcher(
            manifest,
            [peer.peer_id],
            now,
            self.core.rng,
            request_timeout_s=STATE_SYNC_CHUNK_TIMEOUT_S,
        )
        self.run = StateSyncRun(manifest, bundle, fetcher, now, [peer.peer_id])
        self.core.stats.state_syncs_started += 1
        # Ask the other peers that are far enough ahead, so that those holding the same
        # snapshot offer it too and the chunks come from all of them.
        request = encode_message(BundleRequestMessage(self.core.final_height + 1, 1))
        for peer_id in self.core._peer_order:
            other = self.core._peers[peer_id]
            if peer_id != peer.peer_id and other.final_height >= manifest.height:
                other.encoder.queue_message(request, Priority.CONTROL)

    def on_chunk(self, peer: Peer, message: ChunkMessage | ChunkMissingMessage, now: float) -> None:
        sync = self.run
        if sync is None or message.manifest_id != sync.manifest.manifest_id:
            return  # a late answer to a finished or abandoned sync
        if isinstance(message, ChunkMessage):
            sync.fetcher.receive_chunk(peer.peer_id, message.index, message.data, self.core._now)
            return
        sync.fetcher.receive_failure(peer.peer_id, message.index, self.core._now)
        if peer.peer_id in sync.offered_by and peer.peer_id not in sync.gone:
            sync.gone.append(peer.peer_id)  # see on_offer: a newer offer may replace the sync

    def pump(self, now: float) -> None:
        """Send the fetcher's chunk requests and act on its events."""
        sync = self.run
        if sync is None:
            return
        manifest_id = sync.manifest.manifest_id
        for peer_id, index in sync.fetcher.requests_to_send():
            peer = self.core._peers.get(peer_id)
            if peer is not None:  # a peer gone meanwhile: the request times out, goes elsewhere
                request = encode_message(ChunkRequestMessage(manifest_id, index))
                peer.encoder.queue_message(request, Priority.NORMAL)
        while self.run is sync and (event := sync.fetcher.next_event()) is not None:
            if isinstance(event, ChunkVerified):
                self.core.stats.snapshot_chunks_fetched += 1
                if event.peer not in sync.contributors:
                    sync.contributors.append(event.peer)
            elif isinstance(event, ChunkRejected):
                liar = self.core._peers.get(event.peer)
                if liar is not None:
                    self.core.peer_rules.penalize(liar, PENALTY_BAD_SNAPSHOT, event.reason)
            elif isinstance(event, FetchCompleted):
                self.finish(sync, list(event.chunks), now)
            elif isinstance(event, FetchFailed):
                self.fail(sync.manifest.height, event.reason, now)
                if len(sync.gone) == len(sync.offered_by):  # see on_offer
                    self.replaced_height = sync.manifest.height

    def finish(self, sync: StateSyncRun, chunks: list[bytes], now: float) -> None:
        self.run = None
        manifest = sync.manifest
        try:
            state = rebuild_snapshot_state(manifest, chunks)
        except RemoteProtocolError as exc:
            # Every chunk matched the manifest, so the manifest itself lied: blame its offerers.
            for peer_id in sync.offered_by:
                if (peer := self.core._peers.get(peer_id)) is not None:
                    self.core.peer_rules.penalize(peer, PENALTY_BAD_SNAPSHOT, exc.code)
            self.fail(manifest.height, exc.code, now)
            return
        if manifest.height <= self.core.final_height:
            return  # overtaken by bundles meanwhile: nothing to install
        held = self.install(manifest, chunks, state, sync.bundle)
        for op in held:
            if not self.core._seq_below_final_line(op.author, op.seq):
                outcome = self.core.ledger.receive_verified(op, now)  # verified when first admitted
                if outcome.status in ("accepted", "pending", "excluded"):
                    self.core._unfinal_ids.add(outcome.op_id)
        self.core.ledger.drain_events()  # these ops were reported when first admitted
        self.core.finality.last_final_at = now
        self.core.finality.first_unfinal_at = now if self.core.ledger.unfinalized_count() else None
        self.core.stats.state_syncs_finished += 1
        blob = encode_blob(manifest, chunks)
        self.core._emit(
            PersistCheckpoint(
                manifest.height, manifest.checkpoint_id, manifest.state_root, sync.bundle, (), blob
            )
        )
        self.core._emit(StateSyncFinished(manifest.height, len(chunks), len(sync.contributors)))
        if self.core.rejoin.target is not None:
            self.core.rejoin.reached_final(now)
        self.core.finality.continue_catch_up(now, persist=True)

    def fail(self, height: int, reason: str, now: float) -> None:
        self.run = None
        self.retry_at = now + STATE_SYNC_RETRY_S
        self.replaced_height = 0
        self.core.stats.state_syncs_failed += 1
        self.core._emit(StateSyncFailed(height, reason))


def check_snapshot_bundle(
    manifest: Manifest, bundle: bytes, genesis: Genesis, history: EpochHistory | None = None
) -> None:
    """Raise a RemoteProtocolError subclass unless `bundle` is a council-signed checkpoint
    bundle whose cut is the manifest's height, checkpoint id and state root (and, given an
    epoch `history`, one it admits: a rollback.RollbackError subclass otherwise)."""
    decoded = consensus.CheckpointBundle.decode(bundle)
    consensus.verify_bundle(decoded, genesis.network_id, list(genesis.council))
    if history is not None:
        history.check_bundle(decoded)
    cut = Cut.decode(decoded.value)
    if (decoded.height, cut.height, cut.checkpoint_id, cut.state_root) != (
        manifest.height,
        manifest.height,
        manifest.checkpoint_id,
        manifest.state_root,
    ):
        raise SnapshotOfferMismatchError("the manifest is not the checkpoint of the bundle")


def rebuild_snapshot_state(
    manifest: Manifest, chunks: list[bytes], *, check_keys: bool = True
) -> LedgerState:
    """The state the (already verified) chunks hold; raises a RemoteProtocolError subclass
    unless its root is the manifest's state root (hash parity). `check_keys=False`: a
    snapshot this node wrote itself (see `state_from_records`)."""
    records = [record for chunk in chunks for record in split_chunk(chunk)]
    if len(records) != manifest.record_count:
        raise SnapshotOfferMismatchError("the chunks do not hold the manifest's record count")
    state = state_from_records(records, check_keys=check_keys)
    if state.root() != manifest.state_root:
        raise SnapshotOfferMismatchError("the rebuilt state root is not the checkpoint's")
    return state


def signed_snapshot_state(
    manifest: Manifest,
    chunks: list[bytes],
    bundle: bytes,
    genesis: Genesis,
    history: EpochHistory | None = None,
    *,
    check_keys: bool = True,
) -> LedgerState:
    """The state of a stored snapshot, once `bundle` proves its manifest (council-signed, same
    height, checkpoint id and root) and the chunks rebuild that root; a RemoteProtocolError
    subclass otherwise."""
    check_snapshot_bundle(manifest, bundle, genesis, history)
    return rebuild_snapshot_state(manifest, chunks, check_keys=check_keys)
