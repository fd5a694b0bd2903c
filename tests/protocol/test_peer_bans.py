"""Misbehaviour costs and slots in the node core (sans-I/O): a peer scored down to
PEER_SCORE_MIN is dropped and banned for a doubling, capped time; a banned id is refused with
`peer_banned` until the ban ends; bans are bounded and restorable; council members keep
reserved slots community peers never take; a sentry accepts only its listed peers."""

from __future__ import annotations

import random

from swarmd.protocol import limits
from swarmd.protocol.crypto import KeyPair, sha256
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.node_core import (
    PENALTY_MALFORMED_FRAME,
    NodeCore,
    NodeCoreConfig,
    PeerMisbehaved,
)
from swarmd.protocol.node_core.peers import (
    REFUSED_BANNED,
    REFUSED_NOT_ALLOWED,
    REFUSED_PEERS_MAX,
    REFUSED_SELF,
)

JUNK = b"\xff" * 40  # not a frame: every one costs PENALTY_MALFORMED_FRAME


def key(label: str) -> KeyPair:
    return KeyPair.from_seed(sha256(label.encode()))


COUNCIL = [key(f"ban-council-{i}") for i in range(4)]
GENESIS = Genesis.create("bans", [k.public_key for k in COUNCIL], signup_reward=100)


def make_core(keypair: KeyPair = COUNCIL[0], **config: object) -> NodeCore:
    return NodeCore(
        genesis=GENESIS,
        keypair=keypair,
        config=NodeCoreConfig(**config),  # type: ignore[arg-type]
        rng=random.Random(1),
        now=0.0,
    )


def events_of(core: NodeCore) -> list[object]:
    out = []
    while (event := core.next_event()) is not None:
        out.append(event)
    return out


def frames_to_ban() -> int:
    """Junk frames that take a fresh peer's score to PEER_SCORE_MIN."""
    return -(limits.PEER_SCORE_MIN // PENALTY_MALFORMED_FRAME)


def misbehave(core: NodeCore, peer: bytes, now: float) -> int:
    """Connect `peer` and send junk until the core drops it; the junk frames it took."""
    assert core.peer_connected(peer, now)
    for sent in range(1, 1000):
        core.receive_frame(peer, JUNK, now)
        if peer not in core.peer_ids():
            return sent
    raise AssertionError("never dropped")


def test_a_peer_at_the_score_floor_is_dropped_and_banned_within_a_bounded_count() -> None:
    core = make_core()
    attacker = key("attacker").public_key
    sent = misbehave(core, attacker, 10.0)
    assert sent == frames_to_ban() == 5
    misbehaved = [e for e in events_of(core) if isinstance(e, PeerMisbehaved)]
    assert [e.peer for e in misbehaved] == [attacker]
    ban = core.peer_rules.bans[attacker]
    assert (ban.until, ban.count) == (10.0 + limits.PEER_BAN_S_INITIAL, 1)
    # Its reconnect is refused, with a typed code, and nothing changes.
    assert core.peer_rules.refusal(attacker, 11.0) == REFUSED_BANNED
    assert not core.peer_connected(attacker, 11.0)
    assert attacker not in core.peer_ids()
    # Frames of a refused peer are ignored (no second ban, no new event).
    core.receive_frame(attacker, JUNK, 11.0)
    assert core.peer_rules.bans[attacker].count == 1
    assert events_of(core) == []


def test_the_ban_ends_and_each_further_ban_doubles_up_to_the_cap() -> None:
    core = make_core()
    attacker = key("repeat-offender").public_key
    now = 0.0
    lengths = []
    for _ in range(20):
        misbehave(core, attacker, now)
        ban = core.peer_rules.bans[attacker]
        lengths.append(ban.until - now)
        assert core.peer_rules.refusal(attacker, ban.until - 0.001) == REFUSED_BANNED
        now = ban.until  # the ban is over exactly then
        assert core.peer_rules.refusal(attacker, now) is None
    assert lengths[:3] == [60.0, 120.0, 240.0]
    assert max(lengths) == lengths[-1] == limits.PEER_BAN_S_MAX
    assert core.peer_rules.bans[attacker].count == 20


def test_bans_are_bounded_and_the_one_ending_first_is_forgotten() -> None:
    core = make_core()
    rules = core.peer_rules
    for i in range(limits.PEER_BANS_MAX):
        rules.restore_ban(i.to_bytes(32, "big"), 1000.0 + i, 1)
    assert len(rules.bans) == limits.PEER_BANS_MAX
    newcomer = key("one-more").public_key
    rules.ban(newcomer, 0.0)
    assert len(rules.bans) == limits.PEER_BANS_MAX
    assert (0).to_bytes(32, "big") not in rules.bans  # it ended first
    assert rules.banned(newcomer, 1.0)


def test_a_restored_ban_refuses_and_keeps_counting() -> None:
    """What the shell hands back after a restart: the ban holds and the next one doubles."""
    core = make_core()
    attacker = key("restored").public_key
    core.peer_rules.restore_ban(attacker, 500.0, 3)
    assert not core.peer_connected(attacker, 499.0)
    assert core.peer_rules.refusal(attacker, 499.0) == REFUSED_BANNED
    misbehave(core, attacker, 500.0)
    # The 4th ban: 2**3 times the first.
    assert core.peer_rules.bans[attacker].until == 500.0 + 8 * limits.PEER_BAN_S_INITIAL


def test_own_id_is_refused() -> None:
    core = make_core()
    assert core.peer_rules.refusal(core.node_id, 0.0) == REFUSED_SELF
    assert not core.peer_connected(core.node_id, 0.0)


def test_council_slots_are_reserved_from_community_peers() -> None:
    peers_max = 8
    core = make_core(peers_max=peers_max, gossip_fanout=2)
    reserved = core.peer_rules.reserved_slots()
    assert reserved == len(COUNCIL) - 1
    community = [key(f"community-{i}").public_key for i in range(peers_max)]
    admitted = [peer for peer in community if core.peer_connected(peer, 0.0)]
    assert len(admitted) == peers_max - reserved
    assert core.peer_rules.refusal(community[-1], 0.0) == REFUSED_PEERS_MAX
    # Every other council member still gets in, and the total is the cap.
    for member in COUNCIL[1:]:
        assert core.peer_connected(member.public_key, 0.0)
    assert len(core.peer_ids()) == peers_max


def test_a_community_node_reserves_nothing() -> None:
    core = make_core(key("full-node"), peers_max=4, gossip_fanout=2)
    assert core.peer_rules.reserved_slots() == 0
    peers = [key(f"c-{i}").public_key for i in range(5)]
    assert [core.peer_connected(p, 0.0) for p in peers] == [True] * 4 + [False]


def test_a_sentry_accepts_only_its_listed_peers() -> None:
    sentry = key("sentry").public_key
    core = make_core(allowed_peers=frozenset({sentry, COUNCIL[1].public_key}))
    assert core.peer_connected(sentry, 0.0)
    assert core.peer_connected(COUNCIL[1].public_key, 0.0)
    stranger = key("stranger").public_key
    assert core.peer_rules.refusal(stranger, 0.0) == REFUSED_NOT_ALLOWED
    assert not core.peer_connected(stranger, 0.0)
    assert not core.peer_connected(COUNCIL[2].public_key, 0.0)  # unlisted, council or not
