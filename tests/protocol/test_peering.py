"""Peer selection (protocol/peering.py): bounded degree targets, diversity by source and scope
across a node's outbound links, and the exchange answer."""

from __future__ import annotations

import random
from collections import Counter

from swarmd.protocol import limits
from swarmd.protocol.addresses import AddressBook, AddressRecord, url_group
from swarmd.protocol.crypto import KeyPair, sha256
from swarmd.protocol.peering import (
    EXCHANGE_RECORDS_MAX,
    Candidate,
    MeshTargets,
    choose_dials,
    plan_dials,
    records_to_share,
)

NOW = 1_700_000_000.0


def node(label: str) -> bytes:
    return sha256(label.encode())


def key(label: str) -> KeyPair:
    return KeyPair.from_seed(sha256(label.encode()))


def test_targets_bound_outbound_and_inbound_but_never_council_links() -> None:
    targets = MeshTargets()
    assert targets.dials_wanted(0) == limits.MESH_OUTBOUND_TARGET
    assert targets.dials_wanted(limits.MESH_OUTBOUND_TARGET + 3) == 0
    assert targets.accepts_inbound(limits.MESH_INBOUND_MAX - 1, council_link=False)
    assert not targets.accepts_inbound(limits.MESH_INBOUND_MAX, council_link=False)
    assert targets.accepts_inbound(limits.MESH_INBOUND_MAX, council_link=True)


def test_one_source_never_places_more_than_its_share_of_outbound_links() -> None:
    attacker = node("attacker")
    flood = [Candidate(node(f"sybil-{i}"), attacker, f"public:10.{i}.0.0/16") for i in range(200)]
    honest = [
        Candidate(node(f"honest-{i}"), node(f"peer-{i % 3}"), f"public:11.{i}.0.0/16")
        for i in range(6)
    ]
    chosen = choose_dials(flood + honest, want=8, linked=[], rng=random.Random(1))
    assert len(chosen) == 8
    from_attacker = [n for n in chosen if n in {c.node_id for c in flood}]
    # Round robin over the four sources: the attacker's 200 records get a quarter.
    assert len(from_attacker) == 2
    assert {c.node_id for c in honest} <= set(chosen)
    # With only the attacker's records left, it still gets no more than its share.
    alone = choose_dials(flood, want=8, linked=[], rng=random.Random(1))
    assert len(alone) == limits.MESH_OUTBOUND_PER_SOURCE_MAX


def test_links_held_count_toward_the_source_share_and_scopes_are_mixed() -> None:
    a, b = node("a"), node("b")
    candidates = [Candidate(node(f"a{i}"), a, "loopback") for i in range(5)]
    candidates += [Candidate(node(f"b{i}"), b, "private:10.0.0.0/16") for i in range(5)]
    held = [(a, "loopback")] * 3
    chosen = choose_dials(candidates, want=4, linked=held, rng=random.Random(2), per_source_max=4)
    sources = Counter(a if n in {c.node_id for c in candidates[:5]} else b for n in chosen)
    assert sources == Counter({b: 3, a: 1})
    # Round robin: the group with fewer links goes first.
    first = choose_dials(candidates, want=1, linked=held, rng=random.Random(3))
    assert first[0] in {c.node_id for c in candidates[5:]}


def test_fewer_failures_first_and_the_choice_is_deterministic() -> None:
    source = node("s")
    candidates = [Candidate(node(f"c{i}"), source, "loopback", failures=i % 3) for i in range(9)]
    one = choose_dials(candidates, want=3, linked=[], rng=random.Random(7), per_source_max=8)
    again = choose_dials(
        list(reversed(candidates)), want=3, linked=[], rng=random.Random(7), per_source_max=8
    )
    assert one == again
    failures = {c.node_id: c.failures for c in candidates}
    assert all(failures[n] == 0 for n in one)


def test_seeds_form_one_group() -> None:
    seeds = [Candidate(node(f"seed{i}"), None, "loopback") for i in range(6)]
    chosen = choose_dials(seeds, want=8, linked=[], rng=random.Random(4), per_source_max=2)
    assert len(chosen) == 2


def test_plan_dials_uses_the_book_and_skips_what_is_connected() -> None:
    book = AddressBook(node("me"))
    records = []
    for i in range(12):
        url = f"http://127.0.0.{i + 2}:7000"
        records.append(AddressRecord.sign(key(f"n{i}"), {"websocket": url}, NOW, 600))
    for i, record in enumerate(records):
        book.add(record, node(f"src{i % 3}"), NOW)
    skip = {records[0].node_id}
    plan = plan_dials(
        book,
        now=NOW,
        transport="websocket",
        own_scope="loopback",
        skip=skip,
        linked=[],
        want=5,
        rng=random.Random(5),
        per_source_max=2,
    )
    assert len(plan) == 5
    assert records[0].node_id not in {n for n, _ in plan}
    assert all(url.startswith("http://127.0.0.") for _, url in plan)
    assert (
        plan_dials(
            book,
            now=NOW,
            transport="webrtc",
            own_scope="loopback",
            skip=set(),
            linked=[],
            want=5,
            rng=random.Random(5),
        )
        == []
    )


def test_the_exchange_answer_is_our_record_then_a_bounded_sample() -> None:
    book = AddressBook(node("me"))
    for i in range(50):
        urls = {"websocket": f"http://127.0.0.2:{1000 + i}"}
        book.add(AddressRecord.sign(key(f"n{i}"), urls, NOW, 600), node(f"src{i % 5}"), NOW)
    own = AddressRecord.sign(key("me"), {"websocket": "http://127.0.0.1:1"}, NOW, 600)
    # Only heard of: our record and ADDRESS_SHARE_NEW_MAX of them.
    answer = records_to_share(own, book, NOW, random.Random(1))
    assert answer[0] == own and len(answer) == 1 + limits.ADDRESS_SHARE_NEW_MAX
    for i in range(50):
        book.dial_succeeded(key(f"n{i}").public_key)
    answer = records_to_share(own, book, NOW, random.Random(1))
    assert answer[0] == own and len(answer) == EXCHANGE_RECORDS_MAX
    assert len(records_to_share(None, book, NOW, random.Random(1))) == EXCHANGE_RECORDS_MAX


def test_one_network_group_never_places_more_than_its_share() -> None:
    """An attacker's identities relayed by many sources but all in one /16."""
    flood = [
        Candidate(node(f"sybil-{i}"), node(f"sybil-src-{i}"), url_group(f"http://10.66.{i}.1"))
        for i in range(200)
    ]
    honest = [
        Candidate(node(f"h{i}"), node("peer"), url_group(f"http://10.{i}.0.1")) for i in range(3)
    ]
    chosen = choose_dials(flood + honest, want=8, linked=[], rng=random.Random(1))
    from_flood = [n for n in chosen if n in {c.node_id for c in flood}]
    assert len(from_flood) == limits.MESH_OUTBOUND_PER_SOURCE_MAX
    assert {c.node_id for c in honest} <= set(chosen)
    # Loopback (a devnet on one host) is one group without a cap.
    devnet = [Candidate(node(f"d{i}"), node(f"s{i}"), "loopback") for i in range(8)]
    assert len(choose_dials(devnet, want=8, linked=[], rng=random.Random(1))) == 8


def test_url_groups() -> None:
    assert url_group("http://127.0.0.1:7000") == url_group("http://localhost:1") == "loopback"
    assert url_group("http://10.1.2.3:7000") == "private:10.1.0.0/16"
    assert url_group("https://a.node.example.net") == "public:example.net"
    assert url_group("http://[2001:db8::1]:7000").endswith(":2001:db8::/32")


def flooded_book(tried: int) -> tuple[AddressBook, set[bytes]]:
    """A book with 200 new records an attacker relayed from many sources and networks, and
    `tried` honest records this node linked to before; returns the book and the honest ids."""
    book = AddressBook(node("me"), per_source_max=limits.ADDRESS_BOOK_MAX)
    for i in range(200):
        url = f"http://10.{100 + i % 100}.{i // 100}.1:7000"
        book.add(
            AddressRecord.sign(key(f"sybil-{i}"), {"websocket": url}, NOW, 600), node(f"x{i}"), NOW
        )
    honest = set()
    for i in range(tried):
        record = AddressRecord.sign(
            key(f"h{i}"), {"websocket": f"http://10.{i + 1}.0.1:7000"}, NOW, 600
        )
        book.add(record, node(f"peer-{i}"), NOW)
        book.dial_succeeded(record.node_id)
        honest.add(record.node_id)
    return book, honest


def plan(book: AddressBook, want: int, tried_percent: int, seed: int = 1) -> list[bytes]:
    chosen = plan_dials(
        book,
        now=NOW,
        transport="websocket",
        own_scope="private",
        skip=set(),
        linked=[],
        want=want,
        rng=random.Random(seed),
        tried_percent=tried_percent,
    )
    return [node_id for node_id, _ in chosen]


def test_a_fixed_share_of_dials_goes_to_tried_records_first() -> None:
    """ADDRESS_DIALS_TRIED_PERCENT: 200 new records (an attacker's flood, spread over 100
    networks and 200 sources) and 3 tried ones. Without the share, the tried ones are 3 of 203
    candidates and the draw rarely takes one; with it, the first half of the plan (rounded up)
    is tried records, dialed first."""
    book, honest = flooded_book(tried=3)
    want = limits.MESH_OUTBOUND_TARGET
    share = -(-want * limits.ADDRESS_DIALS_TRIED_PERCENT // 100)
    assert share >= 3  # the 3 tried ones fit in the share
    for seed in range(5):
        chosen = plan(book, want, limits.ADDRESS_DIALS_TRIED_PERCENT, seed)
        assert len(chosen) == want
        assert set(chosen[:3]) == honest  # all tried ones, first (fewer than the share)
    # With more tried records than the share, exactly the share comes from them first.
    book, honest = flooded_book(tried=6)
    chosen = plan(book, want, limits.ADDRESS_DIALS_TRIED_PERCENT)
    assert set(chosen[:share]) <= honest and len(chosen) == want
    # One missing link: the one dial goes to a tried record (ceil of half of 1).
    assert plan(book, 1, limits.ADDRESS_DIALS_TRIED_PERCENT)[0] in honest
    # No tried record due: the dials still go out (a fresh node must join).
    fresh, _ = flooded_book(tried=0)
    assert len(plan(fresh, want, limits.ADDRESS_DIALS_TRIED_PERCENT)) == want


def test_without_a_tried_share_plan_dials_is_unchanged() -> None:
    """tried_percent=0 (the simulator's mesh) draws exactly what plan_dials drew before the
    share existed: choose_dials over all candidates with the same rng."""
    book, honest = flooded_book(tried=3)
    candidates = [
        Candidate(n, book.entries[n].source, url_group(url), book.entries[n].failures)
        for n, url in book.dial_candidates(NOW, "websocket", "private", set())
    ]
    expected = choose_dials(candidates, want=8, linked=[], rng=random.Random(9))
    assert plan(book, 8, 0, seed=9) == expected
    assert not honest <= set(expected)  # the flood takes most draws without the share
