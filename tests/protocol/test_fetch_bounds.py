"""The fetch bounds of protocol/limits.py reached: the missing-parent scan runs at most every
FETCH_SCAN_S, the ids remembered as requested stay within FETCH_REQUESTED_MAX (the oldest
forgotten first), and a snapshot fetch drops a peer after FETCH_PEER_TIMEOUTS_MAX timeouts in
a row and remembers at most FETCH_BANNED_PEERS_MAX dropped peers."""

from __future__ import annotations

import random

from swarmd.protocol.limits import (
    ANNOUNCE_FETCH_DELAY_S,
    ANNOUNCED_IDS_MAX,
    ANNOUNCED_IDS_PER_PEER_MAX,
    FETCH_BANNED_PEERS_MAX,
    FETCH_PEER_TIMEOUTS_MAX,
    FETCH_REQUESTED_MAX,
    FETCH_RETRY_S,
    FETCH_SCAN_S,
    PEERS_MAX,
)
from swarmd.protocol.messages import ANNOUNCE_IDS_PER_MESSAGE_MAX, AnnounceMessage, OpsMessage
from swarmd.protocol.sim.harness import Swarm
from swarmd.protocol.snapshot import (
    ChunkRequestTimedOut,
    FetchCompleted,
    PeerDropped,
    SnapshotFetcher,
)

from .test_lazy_relay import Wire, fake_id
from .test_snapshot import GOOD, SILENT, small_snapshot
from .test_snapshot import INFLIGHT as SNAPSHOT_INFLIGHT
from .test_snapshot import make_swarm as snapshot_swarm


def fetched_ids(wire: Wire) -> set[bytes]:
    return {op_id for _, ids in wire.fetches() for op_id in ids}


def test_missing_parents_are_looked_for_at_most_every_fetch_scan_s() -> None:
    swarm = Swarm(2, delta_sync_interval_s=60.0)
    core = swarm.nodes[0]
    wire = Wire(core)
    sender = swarm.nodes[1].node_id
    first, second = swarm.members[1], swarm.author("second")
    to = swarm.author("to").key
    parent_a, child_a = first.grant(to, 1), first.grant(to, 2)
    parent_b, child_b = second.burn(1, "x"), second.burn(1, "y")
    start = 1.0  # (1.0 + FETCH_SCAN_S) - 1.0 == FETCH_SCAN_S in floats; 10.0 would round below
    wire.send(sender, OpsMessage((child_a.envelope,)), start)
    assert parent_a.op_id in fetched_ids(wire)  # the first scan is due at once
    wire.send(sender, OpsMessage((child_b.envelope,)), start + FETCH_SCAN_S / 2)
    assert core.ledger.pending.missing_count() == 2
    assert parent_b.op_id not in fetched_ids(wire)  # not scanned again so soon
    wire.send(sender, OpsMessage((child_b.envelope,)), start + FETCH_SCAN_S)
    assert fetched_ids(wire) == {parent_b.op_id}  # parent a is asked for once per retry


def test_ids_remembered_as_requested_stay_within_fetch_requested_max() -> None:
    swarm = Swarm(1, delta_sync_interval_s=60.0)
    core = swarm.nodes[0]
    wire = Wire(core)
    per_peer = ANNOUNCED_IDS_PER_PEER_MAX
    peers = [fake_id(f"announcer {p}") for p in range(ANNOUNCED_IDS_MAX // per_peer)]
    first_round = [fake_id(f"id {i}") for i in range(len(peers) * per_peer)]
    second_round = [fake_id(f"late id {i}") for i in range(2_000)]
    assert len(first_round) <= FETCH_REQUESTED_MAX < len(first_round) + len(second_round)

    def announce(peer: bytes, ids: list[bytes], now: float) -> None:
        for start in range(0, len(ids), ANNOUNCE_IDS_PER_MESSAGE_MAX):
            chunk = tuple(ids[start : start + ANNOUNCE_IDS_PER_MESSAGE_MAX])
            wire.send(peer, AnnounceMessage(0, chunk), now)

    for p, peer in enumerate(peers):
        assert core.peer_connected(peer, 0.0)
        announce(peer, first_round[p * per_peer : (p + 1) * per_peer], 0.0)
    core.handle_timer(ANNOUNCE_FETCH_DELAY_S)
    assert len(fetched_ids(wire)) == len(first_round)
    # Their only announcer was asked: once FETCH_RETRY_S passed they are dropped (delta sync
    # would find them), which makes room to announce more.
    core.handle_timer(ANNOUNCE_FETCH_DELAY_S + FETCH_RETRY_S)
    announce(peers[0], second_round, 2.0)
    core.handle_timer(2.0 + ANNOUNCE_FETCH_DELAY_S)
    assert fetched_ids(wire) == set(second_round)
    requested = core.gossip.fetch_requested
    assert len(requested) == FETCH_REQUESTED_MAX
    forgotten = len(first_round) + len(second_round) - FETCH_REQUESTED_MAX
    assert first_round[forgotten - 1] not in requested and first_round[forgotten] in requested


def test_a_silent_peer_is_dropped_after_fetch_peer_timeouts_max_timeouts_in_a_row() -> None:
    swarm, chunks = snapshot_swarm([SILENT, GOOD])
    assert SNAPSHOT_INFLIGHT > FETCH_PEER_TIMEOUTS_MAX  # a whole batch times out at once
    final = swarm.run()
    assert isinstance(final, FetchCompleted) and list(final.chunks) == chunks
    silent = b"peer-0"
    timeouts = [e for e in swarm.events if isinstance(e, ChunkRequestTimedOut)]
    assert [e.peer for e in timeouts] == [silent] * FETCH_PEER_TIMEOUTS_MAX
    dropped = [e for e in swarm.events if isinstance(e, PeerDropped)]
    assert [(e.peer, e.reason) for e in dropped] == [(silent, "timeouts")]


def test_banned_snapshot_peers_are_remembered_up_to_fetch_banned_peers_max() -> None:
    manifest, chunks, _ = small_snapshot(3000)  # enough chunks to ask every peer at once
    anchor = b"anchor"  # asked, never answers: keeps the fetch alive while liars come and go
    fetcher = SnapshotFetcher(manifest, [anchor], now=0.0, rng=random.Random(1))
    liars: list[bytes] = []
    banned: list[bytes] = []  # in the order they were dropped
    while len(liars) <= FETCH_BANNED_PEERS_MAX:
        batch = [f"liar {len(liars) + i}".encode() for i in range(PEERS_MAX - 1)]
        for peer in batch:
            fetcher.add_peer(peer, 0.0)
        while len(fetcher.peers) > 1:
            asked = [(p, i) for p, i in fetcher.requests_to_send() if p != anchor]
            assert asked  # each liar is asked something, and lies
            for peer, index in asked:
                if peer in fetcher.peers:
                    lie = bytes([chunks[index][0] ^ 1]) + chunks[index][1:]
                    fetcher.receive_chunk(peer, index, lie, 0.0)
        assert fetcher.peers == [anchor]  # every liar was dropped and banned
        liars += batch
        while (event := fetcher.next_event()) is not None:
            if isinstance(event, PeerDropped):
                banned.append(event.peer)
    assert sorted(banned) == sorted(liars)
    forgotten = len(banned) - FETCH_BANNED_PEERS_MAX
    fetcher.add_peer(banned[forgotten], 0.0)  # still banned: refused
    assert fetcher.peers == [anchor]
    fetcher.add_peer(banned[forgotten - 1], 0.0)  # forgotten: a chance again
    assert fetcher.peers == sorted([anchor, banned[forgotten - 1]])
