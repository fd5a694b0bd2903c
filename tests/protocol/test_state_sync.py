"""Snapshots at checkpoints, restoring from one, and state sync between NodeCores."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

import pytest

from swarmd.protocol import consensus, encoding
from swarmd.protocol.crypto import sha256
from swarmd.protocol.errors import LocalProtocolError
from swarmd.protocol.framing import FRAME_TYPE_BATCH, FrameEncoder
from swarmd.protocol.ledger.snapshot import build_snapshot, state_from_records
from swarmd.protocol.messages import (
    ChunkMessage,
    ChunkMissingMessage,
    ChunkRequestMessage,
    Message,
    SnapshotOfferMessage,
    decode_message,
    encode_message,
)
from swarmd.protocol.node_core import (
    SNAPSHOT_OFFER_INTERVAL_S,
    STATE_SYNC_CHUNK_TIMEOUT_S,
    STATE_SYNC_RETRY_S,
    NodeCore,
    NodeCoreConfig,
    PersistCheckpoint,
    PersistConsensusState,
    PersistOps,
    SnapshotDue,
    SnapshotRestoreError,
    StateSyncFailed,
    StateSyncFinished,
)
from swarmd.protocol.sim.harness import Swarm
from swarmd.protocol.snapshot import (
    FETCH_CHUNK_PASSES_MAX,
    Manifest,
    decode_blob,
    encode_blob,
    split_chunk,
)

SMALL = {"snapshot_interval": 2, "bundles_kept": 4, "checkpoint_interval_s": 0.3}

Tamper = Callable[[Message], Message]


class TamperingSwarm(Swarm):
    """A swarm where the messages node `liar` sends to node `victim` pass through `tamper`
    (batch frames only: the states here are small, nothing is fragmented)."""

    def __init__(self, *args: object, liar: int, victim: int, tamper: Tamper, **kw: object):
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.liar, self.victim, self.tamper = liar, victim, tamper

    def flush(self, i: int) -> None:
        if i != self.liar:
            super().flush(i)
            return
        node = self.nodes[i]
        for peer, frame in node.frames_to_send():
            j = self.index[peer]
            if (i, j) in self.cut:
                continue
            frames = [frame]
            if j == self.victim and frame[1] == FRAME_TYPE_BATCH:
                frames = self._rewrite(frame)
            for out in frames:
                self.counter += 1
                heapq.heappush(self.queue, (self.now + self.delay_s, self.counter, i, j, out))
        while (event := node.next_event()) is not None:
            self.events[i].append(event)

    def _rewrite(self, frame: bytes) -> list[bytes]:
        count = int.from_bytes(frame[2:4], "big")
        lengths = [int.from_bytes(frame[4 + 2 * k : 6 + 2 * k], "big") for k in range(count)]
        offset = 4 + 2 * count
        encoder = FrameEncoder()
        for length in lengths:
            message = decode_message(frame[offset : offset + length])
            offset += length
            encoder.queue_message(encode_message(self.tamper(message)))
        return encoder.frames_to_send()


def grow(swarm: Swarm, heights: int, *, label: str, nodes: tuple[int, ...] = (0, 1, 2)) -> None:
    """Submit one grant per round on the given nodes until they finalized `heights` more."""
    target = min(swarm.nodes[i].final_height for i in nodes) + heights
    for round_ in range(heights * 20):
        if min(swarm.nodes[i].final_height for i in nodes) >= target:
            return
        person = swarm.author(f"{label}-{round_}")
        i = nodes[round_ % len(nodes)]
        assert swarm.submit(i, swarm.members[i].grant(person.key, 100)).status == "accepted"
        swarm.run(until=swarm.now + 0.5)
    raise AssertionError("the swarm did not finalize enough heights")


def events_of(swarm: Swarm, i: int, kind: type) -> list:
    return [e for e in swarm.events[i] if isinstance(e, kind)]


def isolate(swarm: Swarm, i: int) -> None:
    n = len(swarm.nodes)
    swarm.cut = {(i, j) for j in range(n)} | {(j, i) for j in range(n)}


def final_root(node: NodeCore) -> bytes:
    return node.ledger.final_state.root()


# --- snapshots at finalize -------------------------------------------------------------------


def test_finalizing_past_the_interval_emits_a_snapshot_that_rebuilds_the_checkpoint_root() -> None:
    swarm = Swarm(4, seed=3, **SMALL)
    grow(swarm, 5, label="snap")
    checkpoints = events_of(swarm, 0, PersistCheckpoint)
    with_snapshot = [c for c in checkpoints if c.snapshot]
    assert with_snapshot and all(c.height % 2 == 0 for c in with_snapshot)
    assert all(not c.snapshot for c in checkpoints if c.height % 2)
    for checkpoint in with_snapshot:
        manifest, chunks = decode_blob(checkpoint.snapshot)
        assert (manifest.height, manifest.checkpoint_id) == (
            checkpoint.height,
            checkpoint.checkpoint_id,
        )
        records = [record for chunk in chunks for record in split_chunk(chunk)]
        assert state_from_records(records).root() == checkpoint.state_root
    status = swarm.nodes[0].status()["snapshot"]
    newest = with_snapshot[-1]
    assert status["height"] == newest.height and status["chunks"] >= 1
    # bundles_kept trims the bundles served to peers.
    node = swarm.nodes[0]
    assert node.bundle(node.final_height) is not None
    assert node.bundle(node.final_height - 4) is None


def test_snapshot_interval_zero_makes_no_snapshots() -> None:
    swarm = Swarm(4, seed=3, snapshot_interval=0, checkpoint_interval_s=0.3)
    grow(swarm, 3, label="none")
    assert not any(c.snapshot for c in events_of(swarm, 0, PersistCheckpoint))
    assert swarm.nodes[0].status()["snapshot"] is None


# --- restore from a snapshot -----------------------------------------------------------------


def durable(swarm: Swarm, i: int) -> tuple[list[bytes], list[bytes], list[bytes], list[bytes]]:
    envelopes = [e for ev in events_of(swarm, i, PersistOps) for e in ev.envelopes]
    checkpoints = events_of(swarm, i, PersistCheckpoint)
    bundles = [c.bundle for c in checkpoints]
    snapshots = [c.snapshot for c in checkpoints if c.snapshot]
    states = [e.data for e in events_of(swarm, i, PersistConsensusState)]
    return envelopes, bundles, snapshots, states


def restore(swarm: Swarm, i: int, **kw: object) -> NodeCore:
    return NodeCore.restore(
        genesis=swarm.genesis,
        keypair=swarm.keys[i],
        config=NodeCoreConfig(**SMALL),  # type: ignore[arg-type]
        rng=random.Random(7),
        now=swarm.now,
        **kw,  # type: ignore[arg-type]
    )


def test_restore_from_snapshot_equals_full_replay() -> None:
    swarm = Swarm(4, seed=4, **SMALL)
    grow(swarm, 5, label="before")
    # Leave ops unfinalized above the last checkpoint, too.
    person = swarm.author("unfinal")
    swarm.submit(1, swarm.members[1].grant(person.key, 100))
    envelopes, bundles, snapshots, _ = durable(swarm, 1)
    assert len(snapshots) >= 2
    full = restore(swarm, 1, envelopes=envelopes, bundles=bundles)
    for blob in snapshots[-2:]:  # the older one leaves bundles above it to replay
        fast = restore(swarm, 1, envelopes=envelopes, bundles=bundles, snapshot=blob)
        assert fast.final_height == full.final_height == swarm.nodes[1].final_height
        assert final_root(fast) == final_root(full)
        assert fast.state_root() == full.state_root() == swarm.nodes[1].state_root()
        assert fast.ledger.unfinalized_count() == full.ledger.unfinalized_count() >= 1
        # The replayed bundles above the blob's height make newer snapshots in memory.
        newest = fast.final_height - fast.final_height % SMALL["snapshot_interval"]
        assert fast.status()["snapshot"]["height"] == newest >= decode_blob(blob)[0].height


def test_restore_from_snapshot_verifies_only_what_is_above_it() -> None:
    """Handed the whole log and every bundle, a restore from a snapshot checks the signatures
    of the bundles and ops above the snapshot only (the counters the code exposes)."""
    swarm = Swarm(4, seed=4, **SMALL)
    grow(swarm, 5, label="tail")
    envelopes, bundles, snapshots, _ = durable(swarm, 1)
    full = restore(swarm, 1, envelopes=envelopes, bundles=bundles)
    assert full.stats.bundles_verified == len(bundles)
    assert full.ledger.stats.verified == len(envelopes)
    blob = snapshots[-2]  # an older one: bundles and ops above it to replay
    height = decode_blob(blob)[0].height
    fast = restore(swarm, 1, envelopes=envelopes, bundles=bundles, snapshot=blob)
    assert fast.final_height == full.final_height > height
    assert fast.stats.bundles_verified == full.final_height - height
    # The ops above the snapshot's final line (seen from a core holding just the snapshot).
    at_snapshot = restore(swarm, 1, envelopes=[], bundles=bundles[:height], snapshot=blob)
    above = [e for e in envelopes if not at_snapshot.below_final_line(e)]
    assert at_snapshot.stats.bundles_verified == 0 and at_snapshot.final_height == height
    assert fast.ledger.stats.verified == len(above) < len(envelopes)


def test_a_bad_snapshot_raises_snapshot_restore_error() -> None:
    swarm = Swarm(4, seed=4, **SMALL)
    grow(swarm, 3, label="bad")
    envelopes, bundles, snapshots, _ = durable(swarm, 1)
    blob = snapshots[-1]
    manifest, chunks = decode_blob(blob)
    corrupt = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(SnapshotRestoreError, match="corrupt"):
        restore(swarm, 1, envelopes=envelopes, bundles=bundles, snapshot=corrupt)
    with pytest.raises(SnapshotRestoreError, match="corrupt"):
        restore(swarm, 1, envelopes=envelopes, bundles=bundles, snapshot=b"\x00\x00")
    own = [b for b in bundles if consensus.CheckpointBundle.decode(b).height != manifest.height]
    with pytest.raises(SnapshotRestoreError, match="no checkpoint bundle"):
        restore(swarm, 1, envelopes=envelopes, bundles=own, snapshot=blob)
    # A self-consistent blob whose root is not the bundle's checkpoint root.
    wrong_root = Manifest(
        manifest.height,
        manifest.checkpoint_id,
        b"\x01" * 32,
        manifest.chunk_hashes,
        manifest.total_size_bytes,
        manifest.record_count,
    )
    forged = encode_blob(wrong_root, chunks)
    with pytest.raises(SnapshotRestoreError, match="does not match"):
        restore(swarm, 1, envelopes=envelopes, bundles=bundles, snapshot=forged)


def test_a_validator_restored_from_a_snapshot_keeps_finalizing_with_the_others() -> None:
    swarm = Swarm(4, seed=6, **SMALL)
    grow(swarm, 4, label="early")
    envelopes, bundles, snapshots, states = durable(swarm, 2)
    crashed = swarm.nodes[2]
    for node in swarm.nodes:
        node.peer_disconnected(crashed.node_id, swarm.now)
    restored = restore(
        swarm,
        2,
        envelopes=envelopes,
        bundles=bundles,
        snapshot=snapshots[-1],
        consensus_state=states[-1],
        precommits=swarm.precommit_records(2),
    )
    assert restored.final_height == crashed.final_height
    swarm.nodes[2] = restored
    swarm.connect_all()
    grow(swarm, 3, label="late", nodes=(0, 1, 2, 3))
    swarm.run(until=swarm.now + 3.0)
    assert len({final_root(n) for n in swarm.nodes}) == 1
    assert len({n.final_height for n in swarm.nodes}) == 1
    assert restored.final_height > crashed.final_height
    assert restored.consensus.conflicting_signatures_refused == 0


# --- state sync over the wire ----------------------------------------------------------------


def run_offline_and_back(
    swarm: Swarm, *, heights: int = 7, settle_s: float = 8.0, first: tuple[int, ...] = ()
) -> None:
    """Node 3 misses `heights` heights (more than bundles_kept), then comes back: to the
    `first` nodes only for one STATE_SYNC_RETRY_S when given, then to all."""
    grow(swarm, 1, label="warm", nodes=(0, 1, 2, 3))
    swarm.run(until=swarm.now + 1.0)
    isolate(swarm, 3)
    grow(swarm, heights, label="away")
    behind = swarm.nodes[0].final_height - swarm.nodes[3].final_height
    assert behind > SMALL["bundles_kept"]
    swarm.cut = set()
    if first:
        late = swarm.nodes[3]
        others = [i for i in range(3) if i not in first]
        for i in others:
            late.peer_disconnected(swarm.nodes[i].node_id, swarm.now)
            swarm.nodes[i].peer_disconnected(late.node_id, swarm.now)
        swarm.run(until=swarm.now + STATE_SYNC_RETRY_S / 2)
        assert not events_of(swarm, 3, StateSyncFinished)
        for i in others:
            late.peer_connected(swarm.nodes[i].node_id, swarm.now)
            swarm.nodes[i].peer_connected(late.node_id, swarm.now)
    swarm.run(until=swarm.now + settle_s)


def test_an_offline_node_further_behind_than_the_bundles_kept_state_syncs_and_continues() -> None:
    swarm = Swarm(4, seed=8, **SMALL)
    run_offline_and_back(swarm)
    late = swarm.nodes[3]
    finished = events_of(swarm, 3, StateSyncFinished)
    assert finished and finished[0].chunks >= 1 and finished[0].peers >= 1
    stored = [c for c in events_of(swarm, 3, PersistCheckpoint) if c.height == finished[0].height]
    assert stored and stored[0].snapshot and stored[0].final_op_ids == ()
    assert decode_blob(stored[0].snapshot)[0].state_root == stored[0].state_root
    assert late.stats.state_syncs_finished >= 1
    assert sum(n.stats.snapshot_chunks_served for n in swarm.nodes[:3]) >= finished[0].chunks
    assert len({final_root(n) for n in swarm.nodes}) == 1
    assert len({n.final_height for n in swarm.nodes}) == 1
    # It takes part in finality again: new ops become final everywhere, at the same root.
    height = late.final_height
    newcomer = swarm.author("after-sync")
    swarm.submit(3, swarm.members[3].grant(newcomer.key, 100))
    swarm.run(until=swarm.now + 4.0)
    assert late.final_height > height
    assert all(n.ledger.final_state.balance(newcomer.key) == 100 for n in swarm.nodes)
    assert len({final_root(n) for n in swarm.nodes}) == 1
    assert late.status()["state_sync"] is None


def flip(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


def test_a_peer_serving_a_wrong_chunk_is_penalized_and_the_sync_completes_elsewhere() -> None:
    def wrong_chunk(message: Message) -> Message:
        if isinstance(message, ChunkMessage):
            return ChunkMessage(message.manifest_id, message.index, flip(message.data))
        return message

    swarm = TamperingSwarm(4, seed=9, liar=0, victim=3, tamper=wrong_chunk, **SMALL)
    run_offline_and_back(swarm, settle_s=3 * STATE_SYNC_RETRY_S, first=(0,))
    late = swarm.nodes[3]
    failed = events_of(swarm, 3, StateSyncFailed)
    assert failed and "bad_chunk" in failed[0].reason  # the liar was the only source
    assert events_of(swarm, 3, StateSyncFinished)  # retried later with the honest peers
    assert late.status()["peers"].get(swarm.nodes[0].node_id.hex(), {"score": -1})["score"] < 0
    assert len({final_root(n) for n in swarm.nodes}) == 1


def flipping_manifest_field(name: str) -> Tamper:
    """A tamper that flips a bit of one manifest field in every SNAPSHOT_OFFER."""

    def tamper(message: Message) -> Message:
        if isinstance(message, SnapshotOfferMessage):
            value = encoding.decode(message.manifest, size_max=len(message.manifest))
            assert isinstance(value, dict)
            value[name] = flip(value[name])
            return SnapshotOfferMessage(encoding.encode(value), message.bundle)
        return message

    return tamper


def test_a_peer_offering_a_wrong_manifest_is_penalized_and_the_sync_completes_elsewhere() -> None:
    wrong_manifest = flipping_manifest_field("state_root")
    swarm = TamperingSwarm(4, seed=10, liar=1, victim=3, tamper=wrong_manifest, **SMALL)
    run_offline_and_back(swarm, first=(1,))
    late = swarm.nodes[3]
    assert not events_of(swarm, 3, StateSyncFailed)  # refused at the offer: no fetch started
    assert events_of(swarm, 3, StateSyncFinished)
    assert late.status()["peers"].get(swarm.nodes[1].node_id.hex(), {"score": -1})["score"] < 0
    assert len({final_root(n) for n in swarm.nodes}) == 1


def test_a_manifest_listing_wrong_chunks_fails_the_sync_which_is_retried_later() -> None:
    wrong_hashes = flipping_manifest_field("chunk_hashes")
    # The liar is the only peer: its chunks never match its manifest (it answers that it has
    # no such snapshot), so every fetch fails, and is retried once per STATE_SYNC_RETRY_S.
    swarm = TamperingSwarm(4, seed=12, liar=0, victim=3, tamper=wrong_hashes, **SMALL)
    for other in (1, 2):
        swarm.nodes[3].peer_disconnected(swarm.nodes[other].node_id, 0.0)
        swarm.nodes[other].peer_disconnected(swarm.nodes[3].node_id, 0.0)
    run_offline_and_back(swarm, settle_s=2 * STATE_SYNC_RETRY_S + 1.0)
    failures = events_of(swarm, 3, StateSyncFailed)
    assert failures and all("failed on every peer" in f.reason for f in failures)
    starts = swarm.nodes[3].stats.state_syncs_started
    assert 2 <= starts <= 3  # one per STATE_SYNC_RETRY_S at most
    assert not events_of(swarm, 3, StateSyncFinished)


def test_chunk_requests_that_time_out_fail_the_sync_after_bounded_retries() -> None:
    def drop_chunks(message: Message) -> Message:
        if isinstance(message, ChunkMessage):
            # An answer for another snapshot: ignored, so the request times out.
            return ChunkMessage(b"\x00" * 32, message.index, message.data)
        return message

    swarm = TamperingSwarm(4, seed=13, liar=0, victim=3, tamper=drop_chunks, **SMALL)
    for other in (1, 2):
        swarm.nodes[3].peer_disconnected(swarm.nodes[other].node_id, 0.0)
        swarm.nodes[other].peer_disconnected(swarm.nodes[3].node_id, 0.0)
    run_offline_and_back(swarm, settle_s=(FETCH_CHUNK_PASSES_MAX + 1) * STATE_SYNC_CHUNK_TIMEOUT_S)
    failures = events_of(swarm, 3, StateSyncFailed)
    assert failures and "timeouts" in failures[0].reason


@pytest.mark.gate("rl-state-sync-offers")
def test_offers_are_rate_limited_per_peer() -> None:
    swarm = Swarm(4, seed=14, **SMALL)
    grow(swarm, 6, label="offers")
    server = swarm.nodes[0]
    lagging = swarm.nodes[1].node_id
    from swarmd.protocol.messages import BundleRequestMessage

    def ask(now: float) -> None:
        encoder = FrameEncoder()
        encoder.queue_message(encode_message(BundleRequestMessage(1, 1)))
        for frame in encoder.frames_to_send():
            server.receive_frame(lagging, frame, now)

    before = server.stats.snapshot_offers_sent
    ask(swarm.now)
    ask(swarm.now + SNAPSHOT_OFFER_INTERVAL_S / 2)
    assert server.stats.snapshot_offers_sent == before + 1
    ask(swarm.now + SNAPSHOT_OFFER_INTERVAL_S)
    assert server.stats.snapshot_offers_sent == before + 2


def test_unknown_or_out_of_range_chunk_requests_are_answered_missing() -> None:
    swarm = Swarm(4, seed=15, **SMALL)
    grow(swarm, 2, label="chunks")
    server = swarm.nodes[0]
    manifest_id = bytes.fromhex(server.status()["snapshot"]["manifest_id"])
    chunks = server.status()["snapshot"]["chunks"]
    asker = swarm.nodes[1].node_id
    for request in (ChunkRequestMessage(b"\x07" * 32, 0), ChunkRequestMessage(manifest_id, chunks)):
        encoder = FrameEncoder()
        encoder.queue_message(encode_message(request))
        for frame in encoder.frames_to_send():
            server.receive_frame(asker, frame, swarm.now)
    served = server.stats.snapshot_chunks_served
    replies = [f for peer, f in server.frames_to_send() if peer == asker]
    assert replies and server.stats.snapshot_chunks_served == served


def test_random_state_sync_messages_never_escape_the_core() -> None:
    """Offers, chunks and chunk answers with random contents (valid message shapes, bad
    payloads) only ever penalize the sender."""
    swarm = Swarm(4, seed=16, **SMALL)
    grow(swarm, 3, label="fuzz")
    core, sender = swarm.nodes[0], swarm.nodes[1].node_id
    bundle = core.bundle(core.final_height)
    assert bundle is not None
    manifest = bytes.fromhex(core.status()["snapshot"]["manifest_id"])
    rng = random.Random(5)
    junk: list[Message] = []
    for _ in range(40):
        blob = rng.randbytes(rng.randrange(1, 200))
        junk += [
            SnapshotOfferMessage(blob, bundle),
            SnapshotOfferMessage(blob, blob),
            ChunkMessage(manifest, rng.randrange(4), blob),
            ChunkRequestMessage(rng.choice([manifest, blob[:1] * 32]), rng.randrange(1_000)),
        ]
    for message in junk:
        encoder = FrameEncoder()
        encoder.queue_message(encode_message(message))
        for frame in encoder.frames_to_send():
            core.receive_frame(sender, frame, swarm.now)
    assert core.final_height >= 3  # still fine
    assert sender not in core.peer_ids()  # bad offers added up to a disconnection


# --- deferred snapshot builds ----------------------------------------------------------------

DEFERRED = {**SMALL, "snapshot_build": "deferred"}
FROZEN = {**SMALL, "snapshot_build": "frozen"}


class BuildingSwarm(Swarm):
    """A swarm whose nodes build snapshots the way a shell does with snapshot_build =
    "deferred": each SnapshotDue of the nodes in `building` is built at once and handed back
    with `snapshot_built`; the others' are kept in `held` for the test to hand back later."""

    def __init__(self, *args: object, building: tuple[int, ...], **kw: object):
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.building = building
        self.seen = [0] * len(self.nodes)
        self.held: list[list[SnapshotDue]] = [[] for _ in self.nodes]
        self.built: list[list[tuple[SnapshotDue, bool, bytes]]] = [[] for _ in self.nodes]

    def flush(self, i: int) -> None:
        super().flush(i)
        new, self.seen[i] = self.events[i][self.seen[i] :], len(self.events[i])
        for event in new:
            if isinstance(event, SnapshotDue):
                if i in self.building:
                    self.build(i, event)
                else:
                    self.held[i].append(event)

    def build(self, i: int, due: SnapshotDue) -> bool:
        manifest, chunks = build_snapshot(due.state, due.height, due.checkpoint_id, due.state_root)
        installed = self.nodes[i].snapshot_built(manifest, chunks, due.bundle, self.now)
        self.built[i].append((due, installed, encode_blob(manifest, chunks)))
        return installed


def test_config_refuses_an_unknown_build_mode() -> None:
    with pytest.raises(LocalProtocolError, match="snapshot_build"):
        NodeCoreConfig(snapshot_build="lazy")


def test_deferred_builds_give_the_blobs_inline_builds_put_in_the_checkpoint() -> None:
    inline = Swarm(4, seed=3, **SMALL)
    deferred = BuildingSwarm(4, seed=3, building=(0, 1, 2, 3), **DEFERRED)
    grow(inline, 5, label="same")
    grow(deferred, 5, label="same")
    inline_blobs = {c.height: c.snapshot for c in events_of(inline, 0, PersistCheckpoint)}
    built = deferred.built[0]
    assert len(built) >= 2 and all(installed for _, installed, _ in built)
    for due, _, blob in built:
        assert blob == inline_blobs[due.height] != b""
    # The checkpoint carries no blob; its SnapshotDue follows it, with a private state copy.
    events = deferred.events[0]
    for due, _, _ in built:
        index = events.index(due)
        checkpoint = events[index - 1]
        assert isinstance(checkpoint, PersistCheckpoint) and checkpoint.height == due.height
        assert checkpoint.snapshot == b"" and due.state is not deferred.nodes[0].ledger.final_state
        assert due.state.root() == due.state_root == checkpoint.state_root
    node = deferred.nodes[0]
    assert node.status()["snapshot"]["height"] == built[-1][0].height
    assert node.stats.snapshots_made == len(built) and node.stats.snapshots_stale == 0


class FrozenSwarm(BuildingSwarm):
    """`BuildingSwarm` with snapshot_build = "frozen": each build releases its state."""

    def build(self, i: int, due: SnapshotDue) -> bool:
        installed = super().build(i, due)
        self.nodes[i].snapshot_state_released(due.state)
        return installed


def test_frozen_builds_read_the_final_state_itself_and_give_the_inline_blobs() -> None:
    inline = Swarm(4, seed=3, **SMALL)
    frozen = FrozenSwarm(4, seed=3, building=(0, 1, 2), **FROZEN)
    grow(inline, 5, label="same")
    grow(frozen, 5, label="same")
    inline_blobs = {c.height: c.snapshot for c in events_of(inline, 0, PersistCheckpoint)}
    built = frozen.built[0]
    assert len(built) >= 2 and all(installed for _, installed, _ in built)
    for due, _, blob in built:
        assert blob == inline_blobs[due.height] != b""
    # Node 3 holds its first due unbuilt: its final state stays frozen, later snapshot
    # heights are skipped, and the late build still gives the blob of its height.
    node, held = frozen.nodes[3], frozen.held[3]
    assert len(held) == 1 and node.stats.snapshots_skipped >= 1
    assert node.ledger.final_state.base is held[0].state  # checkpoints went to a layer
    assert frozen.build(3, held[0])
    assert frozen.built[3][-1][2] == inline_blobs[held[0].height]
    assert node.ledger.final_state is held[0].state  # released: written back
    assert node.ledger.final_state.root() == frozen.nodes[0].ledger.final_state.root()


def test_snapshot_built_for_an_older_or_equal_height_is_ignored() -> None:
    swarm = BuildingSwarm(4, seed=3, building=(0, 1, 2), **DEFERRED)
    grow(swarm, 5, label="late")
    node, held = swarm.nodes[3], swarm.held[3]
    assert len(held) >= 2 and node.status()["snapshot"] is None  # nothing built yet
    assert swarm.build(3, held[-1])  # the newest finishes first (a skip or a slow build)
    assert not swarm.build(3, held[-2])
    assert not swarm.build(3, held[-1])
    assert node.status()["snapshot"]["height"] == held[-1].height
    assert node.stats.snapshots_made == 1 and node.stats.snapshots_stale == 2


def test_snapshot_built_after_a_state_sync_replaced_the_ledger_is_ignored() -> None:
    swarm = BuildingSwarm(4, seed=8, building=(0, 1, 2), **DEFERRED)
    grow(swarm, 2, label="early", nodes=(0, 1, 2, 3))  # node 3 is due a snapshot before
    run_offline_and_back(swarm)
    late = swarm.nodes[3]
    finished = events_of(swarm, 3, StateSyncFinished)
    assert finished and late.snapshot_base_height == finished[0].height
    before_sync = [due for due in swarm.held[3] if due.height < finished[0].height]
    assert before_sync  # made while warming up, built only now
    assert not swarm.build(3, before_sync[-1])
    assert late.status()["snapshot"]["height"] >= finished[0].height
    # Builds of later heights, after the sync, are installed as usual.
    grow(swarm, 2, label="after", nodes=(0, 1, 2, 3))
    after_sync = [due for due in swarm.held[3] if due.height > finished[0].height]
    assert after_sync and swarm.build(3, after_sync[-1])
    assert late.status()["snapshot"]["height"] == after_sync[-1].height
    assert len({final_root(n) for n in swarm.nodes}) == 1


def test_a_sync_whose_snapshot_was_replaced_takes_the_newer_offer_at_once() -> None:
    # Node 0 is node 3's only peer and answers ChunkMissing for its first offered snapshot (as
    # when it made a newer one before our chunk request came). Once it offers a newer one,
    # node 3 takes it without waiting STATE_SYNC_RETRY_S.
    first: list[bytes] = []

    def replaced(message: Message) -> Message:
        if isinstance(message, SnapshotOfferMessage) and not first:
            first.append(sha256(message.manifest))
        if isinstance(message, ChunkMessage) and first and message.manifest_id == first[0]:
            return ChunkMissingMessage(message.manifest_id, message.index)
        return message

    swarm = TamperingSwarm(4, seed=15, liar=0, victim=3, tamper=replaced, **SMALL)
    grow(swarm, 1, label="warm", nodes=(0, 1, 2, 3))
    swarm.run(until=swarm.now + 1.0)
    isolate(swarm, 3)
    grow(swarm, 7, label="away")
    swarm.cut = {(3, 1), (1, 3), (3, 2), (2, 3)}
    late = swarm.nodes[3]
    for _ in range(40):
        swarm.run(until=swarm.now + 0.1)
        if events_of(swarm, 3, StateSyncFailed):
            break
    failed = events_of(swarm, 3, StateSyncFailed)
    assert failed and not events_of(swarm, 3, StateSyncFinished)
    failed_at = swarm.now
    grow(swarm, 2, label="newer")  # node 0 makes a newer snapshot and offers it
    for _ in range(int(STATE_SYNC_RETRY_S / 0.1)):
        if events_of(swarm, 3, StateSyncFinished):
            break
        swarm.run(until=swarm.now + 0.1)
    finished = events_of(swarm, 3, StateSyncFinished)
    assert finished and finished[0].height > failed[0].height
    assert swarm.now - failed_at < STATE_SYNC_RETRY_S
    assert late.stats.state_syncs_finished == 1
