"""Peer exchange, sans-I/O: signed address records, the bounded address book with per-source
quotas, dial backoff per address, the dials-per-minute budget and the dial scope rule."""

from __future__ import annotations

import random

import pytest

from swarmd.protocol import encoding, limits
from swarmd.protocol.addresses import (
    ADDRESS_DOMAIN_TAG,
    AddressBook,
    AddressRecord,
    AddressRecordError,
    DialBudget,
    dialable,
    url_scope,
)
from swarmd.protocol.crypto import KeyPair, sha256

NOW = 1_700_000_000.0


def key(label: str) -> KeyPair:
    return KeyPair.from_seed(sha256(label.encode()))


def record(label: str, host: str = "127.0.0.5", now: float = NOW, ttl: int = 600) -> AddressRecord:
    urls = {"websocket": f"http://{host}:7000", "webrtc": f"http://{host}:7000"}
    return AddressRecord.sign(key(label), urls, now, ttl)


def test_a_record_round_trips_and_verifies() -> None:
    signed = record("a")
    decoded = AddressRecord.decode(signed.encode(), NOW)
    assert decoded == signed
    assert decoded.url("websocket") == "http://127.0.0.5:7000"
    assert decoded.url("quic") is None


def test_a_record_relayed_with_another_url_is_refused() -> None:
    signed = record("a")
    forged = AddressRecord(
        signed.node_id, (("websocket", "http://127.0.0.9:1"),), signed.expires_at, signed.signature
    )
    with pytest.raises(AddressRecordError) as refused:
        AddressRecord.decode(forged.encode(), NOW)
    assert refused.value.code == "address_record_invalid"


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",
        encoding.encode([b"x", b"y"]),
        encoding.encode([encoding.encode([b"k" * 32, [["websocket", "ftp://h"]], 1]), b"s"]),
        encoding.encode([encoding.encode([b"k" * 32, [], 1]), b"s"]),
        encoding.encode([encoding.encode([b"k" * 32, [["tcp", "http://h"]], 1]), b"s"]),
        b"\x00" * (limits.ADDRESS_RECORD_SIZE_BYTES_MAX + 1),
    ],
    ids=["not-msgpack", "body-not-a-list", "bad-scheme", "no-url", "bad-transport", "too-big"],
)
def test_malformed_records_are_typed_errors(data: bytes) -> None:
    with pytest.raises(AddressRecordError):
        AddressRecord.decode(data, NOW)


def test_expired_and_far_future_records_are_refused() -> None:
    with pytest.raises(AddressRecordError, match="expired"):
        AddressRecord.decode(record("a", ttl=10).encode(), NOW + 11)
    future = AddressRecord.sign(key("a"), {"websocket": "http://127.0.0.1:1"}, NOW + 86_400)
    with pytest.raises(AddressRecordError, match="future"):
        AddressRecord.decode(future.encode(), NOW)


def test_one_source_fills_at_most_its_quota() -> None:
    book = AddressBook(key("me").public_key, entries_max=64, per_source_max=4)
    attacker = key("attacker").public_key
    added = [book.add(record(f"sybil-{i}"), attacker, NOW) for i in range(10)]
    assert added == [True] * 4 + [False] * 6
    honest = key("honest").public_key
    assert book.add(record("friend"), honest, NOW)
    assert len(book) == 5


def test_a_full_book_evicts_from_the_most_represented_source_never_a_seed() -> None:
    book = AddressBook(key("me").public_key, entries_max=6, per_source_max=4)
    assert book.add(record("seed"), None, NOW)
    big, small = key("big").public_key, key("small").public_key
    for i in range(4):
        assert book.add(record(f"big-{i}", ttl=100 + i), big, NOW)
    assert book.add(record("small-0"), small, NOW)
    assert book.add(record("small-1"), small, NOW)  # full: one of big's goes (expiring first)
    assert len(book) == 6
    assert key("big-0").public_key not in book.entries
    assert key("seed").public_key in book.entries
    # A book of seeds only refuses learned records.
    seeds = AddressBook(key("me").public_key, entries_max=1)
    assert seeds.add(record("s"), None, NOW)
    assert not seeds.add(record("t"), big, NOW)


def test_own_stale_and_expired_records_are_refused_and_learned_ones_expire() -> None:
    me = key("me")
    book = AddressBook(me.public_key)
    assert not book.add(record("me"), None, NOW)
    assert not book.add(record("old", ttl=5), key("p").public_key, NOW + 6)
    assert book.add(record("n", ttl=100), key("p").public_key, NOW)
    assert not book.add(record("n", ttl=50), key("p").public_key, NOW)  # older: ignored
    assert book.add(record("n", ttl=200), key("p").public_key, NOW)  # fresher: replaces
    assert book.add(record("seed", ttl=1), None, NOW)
    assert book.expire(NOW + 1000) == 1
    assert list(book.entries) == [key("seed").public_key]  # a seed outlives its record


def test_dial_candidates_back_off_per_address_and_skip_the_connected() -> None:
    book = AddressBook(key("me").public_key)
    a, b = key("a").public_key, key("b").public_key
    book.add(record("a"), None, NOW)
    book.add(record("b"), None, NOW)
    due = book.dial_candidates(NOW, "websocket", "loopback", skip=set())
    assert sorted(node for node, _ in due) == sorted([a, b])
    book.dial_failed(a, NOW)
    assert [n for n, _ in book.dial_candidates(NOW, "websocket", "loopback", set())] == [b]
    assert [n for n, _ in book.dial_candidates(NOW, "websocket", "loopback", {b})] == []
    later = NOW + limits.ADDRESS_DIAL_BACKOFF_S_INITIAL
    assert [n for n, _ in book.dial_candidates(later, "websocket", "loopback", {b})] == [a]
    book.dial_failed(a, later)  # second failure: twice as long
    assert book.entries[a].next_dial_at == later + 2 * limits.ADDRESS_DIAL_BACKOFF_S_INITIAL
    for _ in range(40):
        book.dial_failed(a, later)
    assert book.entries[a].next_dial_at == later + limits.ADDRESS_DIAL_BACKOFF_S_MAX
    book.dial_succeeded(a)
    assert book.entries[a].failures == 0


def test_learned_addresses_are_dialed_only_within_our_scope() -> None:
    """A loopback node never dials a public or private address a peer told it about."""
    book = AddressBook(key("me").public_key)
    for label, host in (("lo", "127.0.0.7"), ("lan", "10.1.2.3"), ("net", "203.0.113.9")):
        book.add(record(label, host), key("peer").public_key, NOW)
    due = book.dial_candidates(NOW, "websocket", "loopback", set())
    assert [url for _, url in due] == ["http://127.0.0.7:7000"]
    assert url_scope("http://localhost:1") == "loopback"
    assert url_scope("https://node.example.net") == "public"
    assert url_scope("http://192.168.1.1:7000") == "private"
    assert not dialable("http://192.168.1.1:7000", "loopback")


def test_sample_is_bounded_and_unexpired() -> None:
    book = AddressBook(key("me").public_key)
    for i in range(10):
        book.add(record(f"n{i}", ttl=10 if i < 5 else 1000), None, NOW)
        book.dial_succeeded(key(f"n{i}").public_key)
    shared = book.sample(8, NOW + 100, random.Random(1))
    assert len(shared) == 5
    assert all(r.expires_at >= NOW + 100 for r in shared)


def test_a_record_is_tried_once_a_dial_to_it_succeeded_and_stays_tried_when_refreshed() -> None:
    book = AddressBook(key("me").public_key)
    a = key("a").public_key
    book.add(record("a"), key("peer").public_key, NOW)
    assert not book.entries[a].tried  # only heard of
    book.dial_failed(a, NOW)
    assert not book.entries[a].tried
    book.dial_succeeded(a)
    assert book.entries[a].tried
    assert book.add(record("a", now=NOW + 10), key("other").public_key, NOW + 10)
    assert book.entries[a].tried
    book.demote(a)  # it misbehaved and was banned
    assert not book.entries[a].tried
    assert book.sample(31, NOW + 10, random.Random(1), new_max=0) == []


def test_a_flooded_book_shares_its_tried_records_and_few_new_ones() -> None:
    """The eclipse victim's book: 200 attacker records only heard of, all in one /16, a few
    honest nodes it linked to and a few more it only heard of. Its answers carry every tried
    record and at most ADDRESS_SHARE_NEW_MAX new ones, one per network group: one attacker
    record at most, so the flood can neither fill the answer nor crowd out honest records."""
    book = AddressBook(key("victim").public_key)
    sybils = {key(f"sybil-{i}").public_key for i in range(200)}
    for i in range(200):
        book.add(record(f"sybil-{i}", f"10.66.{i}.1"), key(f"sybil-{i}").public_key, NOW)
    honest = [key(f"honest-{i}").public_key for i in range(5)]
    for i, node_id in enumerate(honest):
        book.add(record(f"honest-{i}", f"10.{i}.0.1"), key("peer").public_key, NOW)
        book.dial_succeeded(node_id)
    heard = {key(f"heard-{i}").public_key for i in range(6)}
    for i in range(6):
        book.add(record(f"heard-{i}", f"10.{100 + i}.0.1"), key("peer").public_key, NOW)
    saw_sybil = False
    for seed in range(20):
        shared = [r.node_id for r in book.sample(31, NOW, random.Random(seed))]
        assert len(shared) == len(honest) + limits.ADDRESS_SHARE_NEW_MAX
        assert sorted(shared[: len(honest)]) == sorted(honest)
        new = shared[len(honest) :]
        assert len(sybils.intersection(new)) <= 1 and len(set(new)) == len(new)
        assert len(heard.intersection(new)) >= limits.ADDRESS_SHARE_NEW_MAX - 1
        saw_sybil |= bool(sybils.intersection(new))
    assert saw_sybil  # the attacker's network is one group among others, not excluded
    assert len(book.sample(3, NOW, random.Random(1))) == 3  # all tried when enough are
    assert book.sample(31, NOW, random.Random(1), new_max=0)[5:] == []


def test_new_records_on_loopback_count_one_group_per_url() -> None:
    """A devnet on one host: new records are not all one group (diversity exempts it)."""
    book = AddressBook(key("me").public_key)
    for i in range(10):
        urls = {"websocket": f"http://127.0.0.1:{7000 + i}"}
        book.add(AddressRecord.sign(key(f"n{i}"), urls, NOW, 600), None, NOW)
    assert len(book.sample(31, NOW, random.Random(1))) == limits.ADDRESS_SHARE_NEW_MAX


def test_the_dial_budget_bounds_dials_per_minute() -> None:
    budget = DialBudget(per_minute=30, now=NOW)
    assert sum(budget.take(NOW) for _ in range(100)) == 30
    assert not budget.take(NOW + 1)
    assert budget.take(NOW + 2)  # one token every 2 s
    assert sum(budget.take(NOW + 62) for _ in range(100)) == 30


# --- each bound of limits.py reached at its default value -----------------------------------


def test_a_record_is_valid_exactly_ADDRESS_RECORD_TTL_S_after_signing() -> None:
    signed = AddressRecord.sign(key("a"), {"websocket": "http://127.0.0.1:1"}, NOW)
    assert signed.expires_at == NOW + limits.ADDRESS_RECORD_TTL_S
    at_expiry = NOW + limits.ADDRESS_RECORD_TTL_S
    assert AddressRecord.decode(signed.encode(), at_expiry) == signed
    with pytest.raises(AddressRecordError, match="expired"):
        AddressRecord.decode(signed.encode(), at_expiry + 1)


def test_an_expiry_ADDRESS_CLOCK_SKEW_S_past_the_ttl_is_accepted_one_more_second_is_not() -> None:
    urls = {"websocket": "http://127.0.0.1:1"}
    furthest = limits.ADDRESS_RECORD_TTL_S + limits.ADDRESS_CLOCK_SKEW_S
    ahead = AddressRecord.sign(key("a"), urls, NOW, ttl_s=furthest)
    assert AddressRecord.decode(ahead.encode(), NOW) == ahead
    too_far = AddressRecord.sign(key("a"), urls, NOW, ttl_s=furthest + 1)
    with pytest.raises(AddressRecordError, match="future"):
        AddressRecord.decode(too_far.encode(), NOW)


def test_a_url_of_ADDRESS_URL_SIZE_BYTES_MAX_is_accepted_one_byte_more_is_not() -> None:
    prefix = "http://127.0.0.1:1/"
    longest = prefix + "a" * (limits.ADDRESS_URL_SIZE_BYTES_MAX - len(prefix))
    assert len(longest.encode()) == limits.ADDRESS_URL_SIZE_BYTES_MAX
    signed = AddressRecord.sign(key("a"), {"websocket": longest, "webrtc": longest}, NOW)
    assert AddressRecord.decode(signed.encode(), NOW).url("webrtc") == longest
    with pytest.raises(AddressRecordError, match="url length"):
        AddressRecord.sign(key("a"), {"websocket": longest + "a"}, NOW)
    # A peer's record carrying the long URL is refused on decode too (not only when signing).
    body = encoding.encode([key("a").public_key, [["websocket", longest + "a"]], int(NOW) + 60])
    with pytest.raises(AddressRecordError, match="url length"):
        AddressRecord.decode(encoding.encode([body, b"s" * 64]), NOW)


def test_one_source_holds_exactly_ADDRESS_BOOK_PER_SOURCE_MAX_records_by_default() -> None:
    book = AddressBook(key("me").public_key)
    peer = key("peer").public_key
    quota = limits.ADDRESS_BOOK_PER_SOURCE_MAX
    added = [book.add(record(f"q-{i}"), peer, NOW) for i in range(quota + 1)]
    assert added == [True] * quota + [False]
    assert len(book) == quota
    assert book.add(record(f"q-{quota}"), key("other").public_key, NOW)  # another source may


def test_the_default_book_holds_ADDRESS_BOOK_MAX_records_then_evicts_one_per_add() -> None:
    book = AddressBook(key("me").public_key)
    quota = limits.ADDRESS_BOOK_PER_SOURCE_MAX
    sources = [key(f"src-{s}").public_key for s in range(limits.ADDRESS_BOOK_MAX // quota)]
    # The book never verifies signatures (decode does): unsigned records keep this fast.
    template = record("template")
    for s, source in enumerate(sources):
        for i in range(quota):
            node_id = sha256(f"n-{s}-{i}".encode())
            entry = AddressRecord(node_id, template.urls, template.expires_at + s * quota + i, b"")
            assert book.add(entry, source, NOW)
    assert len(book) == limits.ADDRESS_BOOK_MAX
    late = key("late").public_key
    assert book.add(
        AddressRecord(sha256(b"late"), template.urls, template.expires_at, b""), late, NOW
    )
    assert len(book) == limits.ADDRESS_BOOK_MAX  # full: one record of a 32-strong source went
    assert sha256(b"n-0-0") not in book.entries  # the one expiring first among the 32-strong
    assert sha256(b"late") in book.entries


def test_the_default_dial_budget_allows_ADDRESS_DIALS_PER_MINUTE_MAX_dials_per_minute() -> None:
    budget = DialBudget(now=NOW)
    burst = limits.ADDRESS_DIALS_PER_MINUTE_MAX
    assert [budget.take(NOW) for _ in range(burst + 1)] == [True] * burst + [False]
    refill = 60 / limits.ADDRESS_DIALS_PER_MINUTE_MAX  # one dial back per refill seconds
    assert not budget.take(NOW + refill * 0.99)
    assert budget.take(NOW + refill)
    assert sum(budget.take(NOW + 3600) for _ in range(2 * burst)) == burst


# --- TURN relays in the record (mesh branch) --------------------------------------------------

RELAYS = ("turn:relay.example.net:3478", "turns:relay.example.net:5349?transport=tcp")


def test_a_record_offers_its_turn_relays_signed() -> None:
    signed = AddressRecord.sign(key("r"), {"websocket": "http://127.0.0.5:7000"}, NOW, 600, RELAYS)
    decoded = AddressRecord.decode(signed.encode(), NOW)
    assert decoded.relays == RELAYS == signed.relays
    # A relay swapped in by whoever relays the record breaks the signature.
    forged = AddressRecord(
        signed.node_id, signed.urls, signed.expires_at, signed.signature, ("turn:evil.example:1",)
    )
    with pytest.raises(AddressRecordError):
        AddressRecord.decode(forged.encode(), NOW)


def test_a_record_without_relays_keeps_the_three_field_body() -> None:
    plain = AddressRecord.sign(key("p"), {"websocket": "http://127.0.0.5:7000"}, NOW, 600)
    body, _ = encoding.decode(plain.encode())
    assert len(encoding.decode(body)) == 3  # what nodes from before relays decode
    assert AddressRecord.decode(plain.encode(), NOW).relays == ()


@pytest.mark.parametrize(
    "relays",
    [
        tuple(f"turn:r{i}.example.net:3478" for i in range(limits.ADDRESS_RELAYS_MAX + 1)),
        ("turn:" + "r" * limits.ADDRESS_RELAY_URL_SIZE_BYTES_MAX,),
        ("stun:relay.example.net:3478",),
        ("turn:user:secret@relay.example.net:3478",),
        ("turn:",),
    ],
)
def test_relays_out_of_bounds_are_refused_when_signing(relays: tuple[str, ...]) -> None:
    with pytest.raises(AddressRecordError):
        AddressRecord.sign(key("b"), {"websocket": "http://127.0.0.5:7000"}, NOW, 600, relays)


def test_relays_out_of_bounds_are_refused_when_decoding() -> None:
    signer = key("d")
    for relays in (
        [],
        [f"turn:r{i}.example.net:1" for i in range(limits.ADDRESS_RELAYS_MAX + 1)],
        ["turn:b.example:1", "turn:a.example:1"],
        [7],
    ):
        body = encoding.encode(
            [signer.public_key, [["websocket", "http://127.0.0.5:7000"]], int(NOW) + 60, relays]
        )
        data = encoding.encode([body, signer.sign(ADDRESS_DOMAIN_TAG + body)])
        with pytest.raises(AddressRecordError):
            AddressRecord.decode(data, NOW)
    # The largest record allowed still fits the record size bound.
    biggest = AddressRecord.sign(
        signer,
        {
            t: "http://h/" + "p" * (limits.ADDRESS_URL_SIZE_BYTES_MAX - 9)
            for t in ("webrtc", "websocket")
        },
        NOW,
        600,
        tuple(
            f"turn:{i}" + "r" * (limits.ADDRESS_RELAY_URL_SIZE_BYTES_MAX - 6)
            for i in range(limits.ADDRESS_RELAYS_MAX)
        ),
    )
    assert AddressRecord.decode(biggest.encode(), NOW) == biggest
