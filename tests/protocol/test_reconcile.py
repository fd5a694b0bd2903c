"""Range-based set reconciliation: exact differences, limits, and the decoder invariant."""

from __future__ import annotations

import contextlib
import hashlib
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmd.protocol import encoding, limits
from swarmd.protocol.errors import LocalProtocolError, RemoteProtocolError
from swarmd.protocol.reconcile import (
    MESSAGE_SIZE_BYTES_MIN,
    IdSet,
    ReconcileError,
    ReconcileMessageError,
    Reconciler,
    ReconcileRoundsExceededError,
    fingerprint_of,
)

SESSION_MESSAGES_MAX = 200  # the helper's own loop bound; sessions end far sooner


def make_ids(count: int, seed: int = 0) -> list[bytes]:
    return [hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(count)]


class Session:
    """Two Reconcilers wired together (h11 ConnectionPair style); records every message."""

    def __init__(self, initiator_ids: list[bytes], responder_ids: list[bytes], **kwargs: int):
        self.initiator = Reconciler(IdSet.from_ids(initiator_ids), **kwargs)
        self.responder = Reconciler(IdSet.from_ids(responder_ids), **kwargs)
        self.messages: list[bytes] = []

    def run(self) -> Session:
        message: bytes | None = self.initiator.initiate()
        for _ in range(SESSION_MESSAGES_MAX):
            assert message is not None
            self.messages.append(message)
            reply = self.responder.respond(message)
            if reply is None:
                return self
            self.messages.append(reply)
            message = self.initiator.reconcile(reply)
            if message is None:
                return self
        raise AssertionError("session did not end")


def assert_exact(session: Session, initiator_ids: list[bytes], responder_ids: list[bytes]) -> None:
    only_initiator = set(initiator_ids) - set(responder_ids)
    only_responder = set(responder_ids) - set(initiator_ids)
    initiator, responder = session.initiator, session.responder
    assert set(initiator.have_ids) == only_initiator
    assert set(initiator.need_ids) == only_responder
    assert set(responder.have_ids) == only_responder
    assert set(responder.need_ids) == only_initiator
    for found in (initiator.have_ids, initiator.need_ids, responder.have_ids, responder.need_ids):
        assert len(found) == len(set(found))
    assert initiator.is_complete and responder.is_complete
    assert initiator.rounds == responder.rounds == len(session.messages)
    assert initiator.bytes_sent == responder.bytes_received
    assert initiator.bytes_received == responder.bytes_sent
    assert sum(map(len, session.messages)) == initiator.bytes_sent + initiator.bytes_received
    assert max(map(len, session.messages)) <= initiator.message_size_max


# --- IdSet -----------------------------------------------------------------------------------


def test_fingerprint_is_negentropy_definition() -> None:
    ids = make_ids(200)
    id_sum = sum(int.from_bytes(i, "little") for i in ids) % 2**256
    # 200 as Negentropy's varint: 7-bit groups, most significant first, continuation bit set.
    expected = hashlib.sha256(id_sum.to_bytes(32, "little") + bytes([0x81, 0x48])).digest()[:16]
    assert fingerprint_of(ids) == expected
    assert fingerprint_of([]) == hashlib.sha256(bytes(32) + b"\x00").digest()[:16]
    id_set = IdSet.from_ids(ids)
    assert id_set.fingerprint(0, len(id_set)) == expected


def edit_both(id_set: IdSet, model: set[bytes], is_add: bool, id_: bytes) -> None:
    """One add or discard on the IdSet and on the plain-set model; both must agree on
    whether it changed anything."""
    if is_add:
        assert id_set.add(id_) == (id_ not in model)
        model.add(id_)
    else:
        assert id_set.discard(id_) == (id_ in model)
        model.discard(id_)


@settings(max_examples=60, deadline=None)
@given(
    start=st.lists(st.binary(min_size=32, max_size=32), max_size=60),
    edits=st.lists(st.tuples(st.booleans(), st.binary(min_size=32, max_size=32)), max_size=60),
    data=st.data(),
)
def test_id_set_fingerprints_follow_inserts_and_removals(
    start: list[bytes], edits: list[tuple[bool, bytes]], data: st.DataObject
) -> None:
    id_set = IdSet.from_ids(start)
    model = set(start)
    for is_add, id_ in edits:
        edit_both(id_set, model, is_add, id_)
        ordered = sorted(model)
        lo = data.draw(st.integers(0, len(ordered)))
        hi = data.draw(st.integers(lo, len(ordered)))
        assert id_set.fingerprint(lo, hi) == fingerprint_of(ordered[lo:hi])
        assert len(id_set) == len(model)
        assert list(id_set) == ordered
        assert (id_ in id_set) == (id_ in model)


@settings(max_examples=100, deadline=None)
@given(
    start=st.lists(st.sampled_from([bytes([b]) * 32 for b in range(12)]), max_size=12),
    batches=st.lists(
        st.lists(
            st.tuples(st.booleans(), st.sampled_from([bytes([b]) * 32 for b in range(12)])),
            max_size=10,
        ),
        max_size=8,
    ),
    data=st.data(),
)
def test_id_set_settles_batched_edits_between_queries(
    start: list[bytes], batches: list[list[tuple[bool, bytes]]], data: st.DataObject
) -> None:
    """Adds and discards are journaled and merged at the next ordered query: many edits to
    the same few ids (add, discard, add again) between two queries end where a plain set does."""
    id_set = IdSet.from_ids(start)
    model = set(start)
    for batch in batches:
        for is_add, id_ in batch:
            edit_both(id_set, model, is_add, id_)
            assert len(id_set) == len(model)
        ordered = sorted(model)
        lo = data.draw(st.integers(0, len(ordered)))
        hi = data.draw(st.integers(lo, len(ordered)))
        assert id_set.fingerprint(lo, hi) == fingerprint_of(ordered[lo:hi])
        assert id_set.fingerprint(0, len(ordered)) == fingerprint_of(ordered)
        assert id_set.ids_between(0, len(ordered)) == ordered
        assert id_set.bisect(None) == len(ordered)


def test_id_set_rejects_bad_ids_and_ranges() -> None:
    with pytest.raises(LocalProtocolError):
        IdSet.from_ids([b"short"])
    id_set = IdSet()
    with pytest.raises(LocalProtocolError):
        id_set.add(b"x" * 33)
    with pytest.raises(LocalProtocolError):
        id_set.fingerprint(0, 1)
    assert "not bytes" not in id_set


def test_id_set_bisect_by_bound() -> None:
    ids = sorted(make_ids(100))
    id_set = IdSet.from_ids(ids)
    assert id_set.bisect(ids[10]) == 10
    assert id_set.bisect(bytes(32)) == 0
    assert id_set.bisect(None) == 100


# --- sessions --------------------------------------------------------------------------------

id_pool = st.lists(st.binary(min_size=32, max_size=32), unique=True, max_size=400)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pool=id_pool,
    data=st.data(),
    message_size_max=st.sampled_from([MESSAGE_SIZE_BYTES_MIN, 3000, 8192, None]),
)
def test_random_differences_both_ways_are_found_exactly(
    pool: list[bytes], data: st.DataObject, message_size_max: int | None
) -> None:
    placement = data.draw(st.lists(st.sampled_from("abc"), min_size=len(pool), max_size=len(pool)))
    initiator_ids = [i for i, where in zip(pool, placement, strict=True) if where in "ab"]
    responder_ids = [i for i, where in zip(pool, placement, strict=True) if where in "bc"]
    kwargs = {} if message_size_max is None else {"message_size_max": message_size_max}
    session = Session(initiator_ids, responder_ids, **kwargs).run()
    assert_exact(session, initiator_ids, responder_ids)


@pytest.mark.parametrize("seed", range(5))
def test_scattered_differences_in_a_larger_set(seed: int) -> None:
    rng = random.Random(seed)
    common = make_ids(20_000, seed)
    only_initiator, only_responder = make_ids(37, seed + 100), make_ids(23, seed + 200)
    initiator_ids = common + only_initiator
    responder_ids = common + only_responder
    rng.shuffle(responder_ids)
    session = Session(initiator_ids, responder_ids).run()
    assert_exact(session, initiator_ids, responder_ids)
    assert len(session.messages) <= math.ceil(math.log(20_060, 16)) + 2


def test_empty_sets() -> None:
    session = Session([], []).run()
    assert_exact(session, [], [])
    assert len(session.messages) == 2
    assert sum(map(len, session.messages)) < 32


def test_identical_sets_take_one_round_trip_and_few_bytes() -> None:
    ids = make_ids(5000)
    session = Session(ids, list(reversed(ids))).run()
    assert_exact(session, ids, ids)
    assert len(session.messages) == 2  # the fingerprints and the empty "done" reply
    assert len(session.messages[0]) <= limits.RECONCILE_BRANCHING * 32
    assert len(session.messages[1]) <= 8


def test_identical_small_sets() -> None:
    ids = make_ids(limits.RECONCILE_ID_LIST_MAX)
    session = Session(ids, ids).run()
    assert_exact(session, ids, ids)
    assert len(session.messages) == 2


@pytest.mark.parametrize("count", [1, limits.RECONCILE_ID_LIST_MAX, 1000])
def test_one_side_empty(count: int) -> None:
    ids = make_ids(count)
    for initiator_ids, responder_ids in ((ids, []), ([], ids)):
        session = Session(initiator_ids, responder_ids).run()
        assert_exact(session, initiator_ids, responder_ids)
        assert len(session.messages) <= 3
        # Each id crosses once, plus a little framing.
        assert sum(map(len, session.messages)) <= count * 32 * 1.1 + 600


def test_large_difference_is_split_across_messages() -> None:
    common = make_ids(3000)
    only_initiator, only_responder = make_ids(700, 1), make_ids(900, 2)
    initiator_ids, responder_ids = common + only_initiator, common + only_responder
    session = Session(initiator_ids, responder_ids, message_size_max=8192).run()
    assert_exact(session, initiator_ids, responder_ids)
    # 1600 ids * 32 bytes = 51 KB cannot cross in fewer than seven 8 KiB messages.
    assert len(session.messages) > 7
    assert max(map(len, session.messages)) <= 8192


def test_large_difference_from_empty_side_with_default_size() -> None:
    ids = make_ids(6000)  # 192 KB of ids: at least four full messages
    session = Session([], ids).run()
    assert_exact(session, [], ids)
    assert max(map(len, session.messages)) > limits.RECONCILE_MESSAGE_SIZE_BYTES_MAX * 0.9


def test_clustered_difference_costs_near_the_difference() -> None:
    ordered = sorted(make_ids(100_000))
    differing = ordered[40_000:41_000]
    initiator_ids = ordered[:40_000] + differing[::2] + ordered[41_000:]
    responder_ids = ordered[:40_000] + differing[1::2] + ordered[41_000:]
    session = Session(initiator_ids, responder_ids).run()
    assert_exact(session, initiator_ids, responder_ids)
    assert sum(map(len, session.messages)) / (1000 * 32) <= 3
    assert len(session.messages) <= math.ceil(math.log(100_000, 16)) + 2


def test_round_limit_raises_a_typed_error_and_keeps_valid_partial_results() -> None:
    common = make_ids(2000)
    only_initiator, only_responder = make_ids(400, 1), make_ids(400, 2)
    session = Session(
        common + only_initiator, common + only_responder, message_size_max=2048, rounds_max=6
    )
    with pytest.raises(ReconcileRoundsExceededError) as caught:
        session.run()
    assert caught.value.code == "reconcile_rounds_exceeded"
    assert isinstance(caught.value, RemoteProtocolError)
    assert session.initiator.rounds <= 6 and session.responder.rounds <= 6
    assert set(session.initiator.have_ids) <= set(only_initiator)
    assert set(session.initiator.need_ids) <= set(only_responder)
    assert session.initiator.have_ids or session.initiator.need_ids


def test_ids_inserted_during_a_session_do_not_break_it() -> None:
    common = make_ids(3000)
    only_initiator, only_responder = make_ids(50, 1), make_ids(50, 2)
    live = make_ids(200, 3)
    session = Session(common + only_initiator, common + only_responder)
    message: bytes | None = session.initiator.initiate()
    for step in range(SESSION_MESSAGES_MAX):
        assert message is not None
        reply = session.responder.respond(message)
        for id_ in live[step * 20 : step * 20 + 10]:
            session.initiator.ids.add(id_)
        for id_ in live[step * 20 + 10 : step * 20 + 20]:
            session.responder.ids.add(id_)
        if reply is None:
            break
        message = session.initiator.reconcile(reply)
        if message is None:
            break
    initiator_now, responder_now = set(session.initiator.ids), set(session.responder.ids)
    assert set(only_initiator) <= set(session.initiator.have_ids) <= initiator_now - responder_now
    assert set(only_responder) <= set(session.initiator.need_ids) <= responder_now - initiator_now


# --- API misuse and configuration ------------------------------------------------------------


def test_api_misuse_is_a_local_error() -> None:
    initiator = Reconciler(IdSet())
    with pytest.raises(LocalProtocolError):
        initiator.reconcile(b"")
    first = initiator.initiate()
    with pytest.raises(LocalProtocolError):
        initiator.initiate()
    with pytest.raises(LocalProtocolError):
        initiator.respond(first)
    for size in (MESSAGE_SIZE_BYTES_MIN - 1, limits.RECONCILE_MESSAGE_SIZE_BYTES_MAX + 1):
        with pytest.raises(LocalProtocolError):
            Reconciler(IdSet(), message_size_max=size)
    with pytest.raises(LocalProtocolError):
        Reconciler(IdSet(), rounds_max=0)


def test_id_diff_that_answers_nothing_is_rejected() -> None:
    message = encoding.encode([1, [[None, 3, b"", b""]]])
    with pytest.raises(ReconcileMessageError):
        Reconciler(IdSet()).respond(message)


@pytest.mark.parametrize(
    "value",
    [
        [2, [[None, 0]]],  # unknown version
        [1, []],  # no items
        [1, [[b"\x01", 1, bytes(16)]]],  # the last range must end at infinity
        [1, [[None, 1, bytes(16)], [None, 0]]],  # infinity before the end
        [1, [[b"\x05", 0], [b"\x03", 1, bytes(16)], [None, 0]]],  # bounds go down
        [1, [[b"\x05\x00", 1, bytes(16)], [None, 0]]],  # trailing zero in a bound
        [1, [[b"\x05", 0], [None, 0]]],  # unmerged skips
        [1, [[None, 1, bytes(15)]]],  # short fingerprint
        [1, [[None, 2, bytes(31)]]],  # partial id
        [1, [[None, 2, b"\x02" * 32 + b"\x01" * 32]]],  # ids out of order
        [1, [[b"\x02", 2, b"\x03" * 32], [None, 0]]],  # id outside its range
        [1, [[None, 2, b"".join(make_ids(33))]]],  # more than RECONCILE_ID_LIST_MAX ids
        [1, [[None, 7]]],  # unknown mode
        [1, [[None, True]]],  # a bool is not a mode
        [1, [[None, 1, bytes(16), 0]]],  # extra entry
        [1, [{"a": 1}]],
        {"version": 1},
    ],
)
def test_malformed_messages_raise_reconcile_errors(value: encoding.Value) -> None:
    with pytest.raises(ReconcileMessageError):
        Reconciler(IdSet.from_ids(make_ids(100))).respond(encoding.encode(value))


# --- fuzzing: any input parses or raises a RemoteProtocolError subclass ------------------------


def _feed_both_sides(message: bytes, initiator_ids: IdSet, responder_ids: IdSet) -> None:
    responder = Reconciler(responder_ids)
    with contextlib.suppress(ReconcileError):
        responder.respond(message)
    initiator = Reconciler(initiator_ids)
    initiator.initiate()
    with contextlib.suppress(ReconcileError):
        initiator.reconcile(message)


def _recorded_session() -> tuple[list[bytes], IdSet, IdSet]:
    common = make_ids(600)
    initiator_ids, responder_ids = common + make_ids(40, 1), common[:550] + make_ids(40, 2)
    session = Session(initiator_ids, responder_ids, message_size_max=4096).run()
    return session.messages, IdSet.from_ids(initiator_ids), IdSet.from_ids(responder_ids)


RECORDED_MESSAGES, FUZZ_INITIATOR_IDS, FUZZ_RESPONDER_IDS = _recorded_session()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_other_errors(message: bytes) -> None:
    _feed_both_sides(message, FUZZ_INITIATOR_IDS, FUZZ_RESPONDER_IDS)


@settings(max_examples=300, deadline=None)
@given(
    index=st.integers(0, len(RECORDED_MESSAGES) - 1),
    edits=st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255), st.integers(0, 2))),
)
def test_mutated_messages_never_escape_as_other_errors(
    index: int, edits: list[tuple[int, int, int]]
) -> None:
    message = bytearray(RECORDED_MESSAGES[index])
    for position, byte, kind in edits:
        position %= len(message) + 1
        if kind == 0 and position < len(message):
            message[position] = byte
        elif kind == 1:
            message.insert(position, byte)
        elif position < len(message):
            del message[position]
    _feed_both_sides(bytes(message), FUZZ_INITIATOR_IDS, FUZZ_RESPONDER_IDS)


def _mutate_value(value: encoding.Value, draw: st.DataObject) -> encoding.Value:
    """Replace one random node of a decoded message with a plausible wrong value."""
    if isinstance(value, list) and value and draw.draw(st.booleans()):
        index = draw.draw(st.integers(0, len(value) - 1))
        copy = list(value)
        action = draw.draw(st.integers(0, 3))
        if action == 0:
            del copy[index]
        elif action == 1:
            copy.insert(index, copy[index])
        else:
            copy[index] = _mutate_value(copy[index], draw)
        return copy
    return draw.draw(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-2, 2**16),
            st.binary(max_size=70),
            st.sampled_from([bytes(16), bytes(32), b"\xff" * 32, b"\x80", b""]),
            st.lists(st.integers(0, 3), max_size=4),
        )
    )


@settings(max_examples=400, deadline=None)
@given(index=st.integers(0, len(RECORDED_MESSAGES) - 1), data=st.data())
def test_structurally_mutated_messages_never_escape_as_other_errors(
    index: int, data: st.DataObject
) -> None:
    value = encoding.decode(RECORDED_MESSAGES[index])
    mutated = encoding.encode(_mutate_value(value, data))
    _feed_both_sides(mutated, FUZZ_INITIATOR_IDS, FUZZ_RESPONDER_IDS)


def test_every_truncation_of_a_valid_message_is_rejected() -> None:
    for message in RECORDED_MESSAGES[:4]:
        for end in range(len(message)):
            with pytest.raises(ReconcileError):
                Reconciler(FUZZ_RESPONDER_IDS).respond(message[:end])
