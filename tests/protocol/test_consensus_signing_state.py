"""The compact signing state (branch sigstate): the state made durable at every consensus step
does not grow with the kept precommits' values, each kept precommit is made durable once (its
record, before the first state naming it), a crash after any write restores exactly the kept
precommits the last durable state names and never signs a conflicting message, and the
formats written before (kept precommits inside, and none at all) are still read."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from swarmd.protocol import encoding
from swarmd.protocol.consensus import (
    CONSENSUS_VALUE_SIZE_BYTES_MAX,
    SIGNING_STATE_COMPACT_SIZE_BYTES_MAX,
    SIGNING_STATE_PRECOMMIT_IDS_MAX,
    SIGNING_STATE_PRECOMMITS_MAX,
    ConsensusMessage,
    SigningState,
    SigningStateError,
    Tendermint,
    decode_kept_precommit,
    decode_signing_state,
    kept_precommit_id,
    signing_state_precommit_ids,
)
from swarmd.protocol.crypto import KeyPair, sha256
from swarmd.protocol.limits import SIGNING_STATE_STEP_OVERHEAD_BYTES_MAX
from swarmd.protocol.node_core import (
    SEND_BARRIERS,
    NodeCore,
    PersistConsensusState,
    PersistPrecommit,
)
from swarmd.protocol.sim.harness import Swarm

from .test_consensus_restart import Durable, assert_no_conflicts, durable_of, grant
from .test_node_core import fund

MEMBER = KeyPair.from_seed(sha256(b"compact signing state member"))
NETWORK = sha256(b"compact signing state network")
VECTOR = Path(__file__).parent.parent / "vectors" / "signing_state_settle2.json"


def _core(epoch: int = 0, member: KeyPair = MEMBER, network: bytes = NETWORK) -> Tendermint:
    return Tendermint(
        network_id=network, validators=[member.public_key], keypair=member, epoch=epoch
    )


def _values_in(state: SigningState) -> int:
    """Bytes of the values a state holds: its proposals', its locked and its valid value."""
    proposals = sum(len(m.value or b"") for m in state.messages)
    return proposals + len(state.locked_value or b"") + len(state.valid_value or b"")


# --- the bytes of a step -----------------------------------------------------------------------


def test_a_step_writes_a_small_state_and_each_kept_precommit_once() -> None:
    """A lone validator decides a height per step with values near the size limit. Each step
    makes durable the records of the precommits new to it (one) and the compact state, whose
    bytes besides the height's own values stay within SIGNING_STATE_STEP_OVERHEAD_BYTES_MAX
    with 1 or 16 precommits kept: the kept values are never rewritten."""
    core, rng = _core(), random.Random(7)
    value_size = CONSENSUS_VALUE_SIZE_BYTES_MAX - 64
    heights = SIGNING_STATE_PRECOMMITS_MAX + 4
    written: list[bytes] = []
    sizes: list[int] = []
    for height in range(1, heights + 1):
        core.start_height(height, 0.0)
        core.provide_value(height, 0, rng.randbytes(value_size), 0.0)
        assert core.decided and core.messages_to_send()  # the shell persists, then sends
        records = core.take_unsaved_precommits()
        state = core.signing_state_compact()
        decoded = decode_signing_state(state, NETWORK, MEMBER.public_key)
        assert [precommit_id for precommit_id, _ in records] == [core.kept_precommit_ids()[-1]]
        assert decoded.precommit_ids == core.kept_precommit_ids()
        assert len(state) <= SIGNING_STATE_COMPACT_SIZE_BYTES_MAX
        assert len(state) - _values_in(decoded) <= SIGNING_STATE_STEP_OVERHEAD_BYTES_MAX
        assert core.take_unsaved_precommits() == []  # handed over once
        written += [precommit_id for precommit_id, _ in records]
        sizes.append(len(state))
    assert len(set(written)) == len(written) == heights
    assert len(core.kept_precommit_ids()) == SIGNING_STATE_PRECOMMITS_MAX
    # 16 kept precommits cost their ids only (34 bytes each), not their values ...
    assert sizes[-1] - sizes[0] <= SIGNING_STATE_PRECOMMITS_MAX * 40
    # ... which the whole state (what every step wrote before) carries.
    assert len(core.signing_state()) > SIGNING_STATE_PRECOMMITS_MAX * value_size + sizes[-1]


def test_each_kept_precommit_is_persisted_once_before_the_state_naming_it() -> None:
    """In a four-member council every member's events: a PersistPrecommit per kept precommit,
    never twice, each before the first PersistConsensusState naming it; the event's ids are
    the state's; both are send barriers (frames after them wait for them)."""
    assert PersistPrecommit in SEND_BARRIERS and PersistConsensusState in SEND_BARRIERS
    swarm = Swarm(4, seed=51)
    fund(swarm, 4)
    swarm.run(until=4.0)
    grant(swarm, "second height", member=1)
    swarm.run(until=8.0)
    for i in range(4):
        written: set[bytes] = set()
        states = 0
        for event in swarm.events[i]:
            if isinstance(event, PersistPrecommit):
                assert event.precommit_id not in written
                message, value = decode_kept_precommit(
                    event.data, swarm.genesis.network_id, swarm.keys[i].public_key
                )
                assert kept_precommit_id(message) == event.precommit_id
                assert message.value_id == sha256(value)
                written.add(event.precommit_id)
            elif isinstance(event, PersistConsensusState):
                states += 1
                state = decode_signing_state(
                    event.data, swarm.genesis.network_id, swarm.keys[i].public_key
                )
                assert state.precommit_ids == event.precommit_ids
                assert set(state.precommit_ids) <= written
                assert state.precommits_kept == state.old_precommits == ()
        assert len(written) >= 2 and states > len(written)


# --- crashes -----------------------------------------------------------------------------------


def _restored(swarm: Swarm, durable: Durable) -> NodeCore:
    return NodeCore.restore(
        genesis=swarm.genesis,
        keypair=swarm.keys[0],
        rng=random.Random(77),
        now=swarm.now,
        envelopes=durable.envelopes,
        bundles=durable.bundles,
        consensus_state=durable.consensus_state,
        precommits=list(durable.precommits.values()),
    )


def _named(swarm: Swarm, durable: Durable) -> tuple[bytes, ...]:
    if durable.consensus_state is None:
        return ()
    key = swarm.keys[0].public_key
    return decode_signing_state(
        durable.consensus_state, swarm.genesis.network_id, key
    ).precommit_ids


def test_a_crash_after_any_write_restores_what_the_last_durable_state_names() -> None:
    """A lone member's history cut after each of its writes (a kill -9 there: the later
    writes are lost): the restarted core keeps exactly the precommits the last durable state
    names, what the state with the values inside restored. Cut between a record and its
    state, the record's precommit (which never left) is not among them."""
    swarm = Swarm(1, seed=61)
    fund(swarm, 2)
    swarm.run(until=3.0)
    for label in ("b", "c", "d"):
        grant(swarm, label)
        swarm.run(until=swarm.now + 3.0)
    events = list(swarm.events[0])
    cuts = [k for k, e in enumerate(events) if isinstance(e, PersistPrecommit)]
    assert len(cuts) >= 3
    for k in [*cuts, *(k + 1 for k in cuts)]:
        durable = durable_of(events[: k + 1])
        restored = _restored(swarm, durable)
        assert restored.consensus.kept_precommit_ids() == _named(swarm, durable)
        if isinstance(events[k], PersistPrecommit):
            assert events[k].precommit_id not in restored.consensus.kept_precommit_ids()
        else:
            assert isinstance(events[k], PersistConsensusState)
            assert events[k - 1].precommit_id in restored.consensus.kept_precommit_ids()


def test_a_member_killed_between_a_record_and_its_state_never_signs_a_conflict() -> None:
    """Killed after the record of its precommit at height h was durable but before the state
    naming it (so the precommit never left), a lone member restarts, decides h again (with a
    cut of another time: another value) and goes on: its durable states never hold two
    messages for one slot, the unsent precommit is never kept nor named, and the precommits
    it keeps are the ones it signed."""
    swarm = Swarm(1, seed=71)
    fund(swarm, 2)
    swarm.run(until=3.0)
    grant(swarm, "before the kill")
    swarm.run(until=swarm.now + 3.0)
    events = list(swarm.events[0])
    cut = max(k for k, e in enumerate(events) if isinstance(e, PersistPrecommit))
    lost = events[cut]
    assert isinstance(lost, PersistPrecommit)
    durable = durable_of(events[: cut + 1])
    before = len(durable.states)
    key = swarm.keys[0].public_key
    unsent, _ = decode_kept_precommit(lost.data, swarm.genesis.network_id, key)
    swarm.events[0] = events[: cut + 1]
    swarm.nodes[0] = restored = _restored(swarm, durable)
    swarm.run(until=swarm.now + 3.0)
    grant(swarm, "after the restart")
    swarm.run(until=swarm.now + 3.0)
    assert restored.final_height > unsent.height
    after = durable_of(swarm.events[0])
    assert len(after.states) > before
    signed: list[ConsensusMessage] = []
    for data in after.states:
        state = decode_signing_state(data, swarm.genesis.network_id, key)
        assert lost.precommit_id not in state.precommit_ids
        signed += state.messages
    assert_no_conflicts(signed)
    # The slot of the unsent precommit was signed again, for another value: had the record
    # been restored, the member would hold (and show in a settlement) two precommits there.
    again = [m for m in signed if (m.kind, m.height, m.round) == (unsent.kind, unsent.height, 0)]
    assert again and all(m.value_id != unsent.value_id for m in again)
    assert lost.precommit_id not in restored.consensus.kept_precommit_ids()
    whole = decode_signing_state(restored.consensus.signing_state(), swarm.genesis.network_id, key)
    assert_no_conflicts(signed + [m for m, _ in whole.precommits_kept])
    assert restored.consensus.conflicting_signatures_refused == 0


# --- the formats before ------------------------------------------------------------------------


def _vector() -> tuple[KeyPair, bytes, bytes]:
    vector = json.loads(VECTOR.read_text())
    member = KeyPair.from_seed(bytes.fromhex(vector["member_seed"]))
    return member, bytes.fromhex(vector["network_id"]), bytes.fromhex(vector["state"])


def test_a_state_written_before_sigstate_restores_the_same_and_becomes_records() -> None:
    """The vector was written by the code before this branch (kept precommits with their
    values inside): it restores the same precommits, hands each over once as a record, and
    a restart from the compact state and those records restores the same again."""
    member, network, old = _vector()
    decoded = decode_signing_state(old, network, member.public_key)
    assert [(m.epoch, m.height) for m, _ in decoded.old_precommits] == [(0, 1), (0, 2), (0, 3)]
    assert [(m.epoch, m.height) for m, _ in decoded.precommits_kept] == [(1, 2)]
    assert signing_state_precommit_ids(old) == []  # the shell has no record to load
    core = _core(1, member, network)
    core.restore_precommits(old)
    assert core.old_precommits(0) == list(decoded.old_precommits)
    pairs = decoded.old_precommits + decoded.precommits_kept
    assert core.kept_precommit_ids() == tuple(kept_precommit_id(m) for m, _ in pairs)
    core.restore_signing_state(old, 0.0)  # the height: the same state again adds nothing
    records = core.take_unsaved_precommits()
    assert sorted(precommit_id for precommit_id, _ in records) == sorted(core.kept_precommit_ids())
    compact = core.signing_state_compact()
    assert len(compact) < len(old)
    assert signing_state_precommit_ids(compact) == list(core.kept_precommit_ids())
    restarted = _core(1, member, network)
    restarted.restore_precommits(compact, [record for _, record in reversed(records)])
    assert restarted.kept_precommit_ids() == core.kept_precommit_ids()
    assert restarted.old_precommits(0) == core.old_precommits(0)
    assert restarted.take_unsaved_precommits() == []  # records already
    with pytest.raises(SigningStateError, match="have no record"):
        _core(1, member, network).restore_precommits(compact, [records[0][1]])


def test_a_state_without_kept_precommits_is_still_read() -> None:
    member, network, old = _vector()
    fields = encoding.decode(old)
    del fields["precommits_kept"], fields["old_precommits"]
    before_settle2 = encoding.encode(fields)
    state = decode_signing_state(before_settle2, network, member.public_key)
    assert (state.height, state.precommits_kept, state.precommit_ids) == (2, (), ())
    core = _core(1, member, network)
    core.restore_precommits(before_settle2)
    assert core.kept_precommit_ids() == () and core.take_unsaved_precommits() == []


def test_a_bad_compact_state_or_record_is_refused() -> None:
    core = _core()
    core.start_height(1, 0.0)
    core.provide_value(1, 0, b"value", 0.0)
    fields = encoding.decode(core.signing_state_compact())
    (record,) = [data for _, data in core.take_unsaved_precommits()]
    ids = fields["precommit_ids"]
    bad_ids = [
        [sha256(b"%d" % i) for i in range(SIGNING_STATE_PRECOMMIT_IDS_MAX + 1)],  # the limit
        ids * 2,  # one named twice
        [ids[0][:31]],  # not an id
    ]
    for items in bad_ids:
        with pytest.raises(SigningStateError):
            decode_signing_state(
                encoding.encode({**fields, "precommit_ids": items}), NETWORK, MEMBER.public_key
            )
    message, value = encoding.decode(record)
    other = KeyPair.from_seed(sha256(b"another member"))
    for bad in (
        encoding.encode([message, value + b"x"]),  # not the value its id names
        encoding.encode([message]),  # not a record
        b"\xc1",  # not even canonical encoding
    ):
        with pytest.raises(SigningStateError):
            decode_kept_precommit(bad, NETWORK, MEMBER.public_key)
    with pytest.raises(SigningStateError):  # another member's record
        decode_kept_precommit(record, NETWORK, other.public_key)
    assert signing_state_precommit_ids(b"junk") == []


def test_a_node_restored_from_a_whole_state_writes_its_records_before_a_compact_one() -> None:
    """A node restarted on a state with the values inside (the file a node before this
    branch left) keeps its precommits, and the first time it writes a state again, it writes
    every one's record before it: the compact state never names a record not durable."""
    swarm = Swarm(1, seed=81)
    fund(swarm, 2)
    swarm.run(until=3.0)
    grant(swarm, "before the upgrade")
    swarm.run(until=swarm.now + 3.0)
    live = swarm.nodes[0]
    kept = live.consensus.kept_precommit_ids()
    assert len(kept) >= 2
    # What such a node made durable: no records, its state with the values inside.
    old_events = [e for e in swarm.events[0] if not isinstance(e, PersistPrecommit)]
    durable = durable_of(old_events)
    durable.consensus_state = live.consensus.signing_state()
    swarm.events[0] = []
    swarm.nodes[0] = restored = _restored(swarm, durable)
    assert restored.consensus.kept_precommit_ids() == kept
    grant(swarm, "after the upgrade")
    swarm.run(until=swarm.now + 3.0)
    events = swarm.events[0]
    first = next(k for k, e in enumerate(events) if isinstance(e, PersistConsensusState))
    written = [e.precommit_id for e in events[:first] if isinstance(e, PersistPrecommit)]
    assert set(kept) <= set(written) and len(written) == len(set(written))
    upgraded = durable_of(old_events + events)
    assert _restored(swarm, upgraded).consensus.kept_precommit_ids() == (
        restored.consensus.kept_precommit_ids()
    )
