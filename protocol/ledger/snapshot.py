"""The ledger's derived state as snapshot records, and back.

`state_records` turns a `LedgerState` into canonical-msgpack records that `snapshot.build_manifest`
packs into chunks; `state_from_records` rebuilds the state from them. The records are the
snapshot's content, so their form is part of the protocol (docs/parts/state.md):

Every record is a canonical msgpack array whose first element is its record type. Records are
sorted by (type, sort key) and that order is required on input, so one state has exactly one
snapshot, duplicates are impossible, and an account always precedes its continuations.

==== ============ ===================================================================== ========
type name         array                                                                 sort key
==== ============ ===================================================================== ========
1    account      [1, account, balance, spendable, seq, head, window_basis,             account
                  window_grants, granted (bool), unreceived_count, unreceived_credits]
2    unreceived   [2, account, part, unreceived_credits]                                account
                                                                                        || part
3    claim        [3, claim_id, handle, claimant, endorsers, endorsement_keys,          claim_id
                  revokers]
4    binding      [4, handle, owner, claim_id]                                          handle
5    burn         [5, target, total]                                                    target
6    mode_vote    [6, member, quiesce (bool)]                                           member
7    totals       [7, granted, burned, quiesced (bool)]                                 (empty)
8    claims_vote  [8, member, pause (bool)]                                             member
==== ============ ===================================================================== ========

Member sets (`endorsers`, `revokers`) are one byte string: the 32-byte keys in strictly
ascending order, concatenated. `unreceived_credits` is one byte string of 40-byte entries,
credit id (32 bytes) then amount (8 bytes big-endian, 1..2**63-1), in strictly ascending id
order. `endorsement_keys` is an array of `[epoch, depth, op_id]` arrays in strictly ascending
order, at most one per endorser (the ledger keeps only the quorum smallest). An account's
unreceived credits are cut into parts of `UNRECEIVED_CREDITS_PER_RECORD_MAX`: part 0 rides in
the account record, parts 1.. in `unreceived` records (part is a 4-byte big-endian number in the
sort key); every part but the last is full, so a huge set still gives records below the
snapshot's per-record size limit. Strings sort by their UTF-8 bytes.

Beyond the shape of each record, `state_from_records` checks what every honest state satisfies:
keys are valid Ed25519 keys, `0 <= spendable <= balance`, a binding names a claim of that handle
by its owner, exactly one totals record, sum(balances) == granted - burned and
sum(burn tallies) == burned. Hash parity (the rebuilt root equals the checkpoint's root) is the
caller's final check; every record, claims and mode votes included, is covered by the root
(docs/PROTOCOL.md section 5).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .. import crypto, encoding, limits, snapshot
from ..codes import RejectCode
from ..errors import LocalProtocolError, RemoteProtocolError
from ..ops import check_handle
from .state import Account, Claim, EndorsementKey, LedgerState

RECORD_ACCOUNT = 1
RECORD_UNRECEIVED = 2
RECORD_CLAIM = 3
RECORD_BINDING = 4
RECORD_BURN = 5
RECORD_MODE_VOTE = 6
RECORD_TOTALS = 7
#: Added with the claims votes (council.pause_claims / resume_claims). A state without them
#: gives exactly the records it gave before, so the manifest version stays 1; a reader that
#: predates them refuses a type-8 record as an unknown record type (it fails closed).
RECORD_CLAIMS_VOTE = 8

#: A record must fit one snapshot chunk together with its length prefix (records are never
#: split by the chunker), and decoding must accept it.
RECORD_SIZE_BYTES_MAX = min(
    limits.SNAPSHOT_CHUNK_SIZE_BYTES - snapshot.RECORD_LENGTH_PREFIX_BYTES,
    limits.ENCODED_VALUE_SIZE_BYTES_MAX,
)
UNRECEIVED_CREDITS_PER_RECORD_MAX = limits.UNRECEIVED_CREDITS_PER_RECORD_MAX  # why: see limits.py
#: Endorsers and revokers are council members, so a set never holds more than the council.
MEMBER_SET_SIZE_MAX = limits.COUNCIL_SIZE_MAX
#: Generous bound on everything in an account record besides its id bytes: the type, key,
#: head, six 9-byte ints, a bool and the msgpack headers take under 150 bytes.
_ACCOUNT_RECORD_OVERHEAD_BYTES_MAX = 256
#: Ints in records are the ones msgpack may carry in canonical form (encoding module).
_INT_FIELD_MAX = 2**64 - 1
#: Continuation part numbers are 4 bytes in the sort key.
_PART_MAX = 2**32 - 1

#: An unreceived credit is its id and its amount (amounts are below 2**63).
_AMOUNT_SIZE = 8
#: One encoded endorsement key: an array header, two ints of at most 9 bytes, a 34-byte bin.
_ENDORSEMENT_KEY_SIZE_BYTES_MAX = 1 + 9 + 9 + 34

_ID_SIZE = limits.HASH_SIZE_BYTES
_CREDIT_SIZE = _ID_SIZE + _AMOUNT_SIZE
assert _ID_SIZE == limits.PUBLIC_KEY_SIZE_BYTES
assert limits.AMOUNT_MAX < 2 ** (8 * _AMOUNT_SIZE)
assert (
    UNRECEIVED_CREDITS_PER_RECORD_MAX * _CREDIT_SIZE + _ACCOUNT_RECORD_OVERHEAD_BYTES_MAX
    <= RECORD_SIZE_BYTES_MAX
)
assert (
    MEMBER_SET_SIZE_MAX * (_ID_SIZE * 2 + _ENDORSEMENT_KEY_SIZE_BYTES_MAX) + 1024
    <= RECORD_SIZE_BYTES_MAX
)
assert MEMBER_SET_SIZE_MAX <= limits.ENCODED_CONTAINER_ENTRIES_MAX


class SnapshotRecordError(RemoteProtocolError):
    """A snapshot record that is malformed, out of order, duplicated or inconsistent."""

    code: str = RejectCode.SNAPSHOT_RECORD_INVALID


# --- encoding --------------------------------------------------------------------------------

SortKey = tuple[int, bytes]


def state_records(state: LedgerState) -> list[bytes]:
    """Every piece of `state` as canonical records, in (type, sort key) order.

    This runs over every account at each snapshot height, so it is written for speed: each
    record type is emitted in its own sorted pass (the types are already in order, so no
    global sort is needed), and values that are canonical by construction (ints in range,
    bytes, bools, str, lists of them) are packed directly instead of through
    `encoding.encode`'s generic normalizing walk. The bytes are the same; the pinned-output
    test in tests/protocol/test_ledger_snapshot.py holds them.
    """
    pack = msgpack.Packer(use_bin_type=True).pack
    try:
        records = _pack_records(pack, state)
    except (OverflowError, TypeError, ValueError) as exc:
        # The values are canonical by construction; msgpack refuses an int outside its range
        # (OverflowError), the only way one could not be.
        raise LocalProtocolError(f"a snapshot record cannot be encoded: {exc}") from exc
    if max(map(len, records)) > RECORD_SIZE_BYTES_MAX:  # the asserts above make this unreachable
        raise AssertionError("a snapshot record over RECORD_SIZE_BYTES_MAX")
    return records


def build_snapshot(
    state: LedgerState, height: int, checkpoint_id: bytes, state_root: bytes
) -> tuple[snapshot.Manifest, list[bytes]]:
    """The snapshot (manifest and chunks) of `state`, the final state of checkpoint
    `checkpoint_id` at `height` whose root is `state_root`.

    Pure and reads `state` only, so a shell may run it in a worker thread on a private copy
    (NodeCore's SnapshotDue). Raises LocalProtocolError subclasses (SnapshotTooLargeError) for
    a state over the snapshot limits.
    """
    return snapshot.build_manifest(height, checkpoint_id, state_root, state_records(state))


_Pack = Callable[[object], bytes]


def _pack_records(pack: _Pack, state: LedgerState) -> list[bytes]:
    records: list[bytes] = []
    continuations: list[bytes] = []
    accounts = state.accounts
    for key in sorted(accounts):
        _account_records(pack, key, accounts[key], records, continuations)
    records.extend(continuations)  # type 2 sorts by account then part: this order
    claims = state.claims
    for claim_id in sorted(claims):
        claim = claims[claim_id]
        value = [
            RECORD_CLAIM,
            claim_id,
            claim.handle,
            claim.claimant,
            _join_ids(claim.endorsers),
            [list(key) for key in claim.endorsement_keys],
            _join_ids(claim.revokers),
        ]
        records.append(pack(value))
    bindings = state.bindings
    for handle in sorted(bindings, key=str.encode):
        binding = bindings[handle]
        value = [RECORD_BINDING, handle, binding.owner, binding.claim_id]
        records.append(pack(value))
    tallies = state.burn_tallies
    for target in sorted(tallies, key=str.encode):
        records.append(pack([RECORD_BURN, target, tallies[target]]))
    votes = state.mode_votes
    for member in sorted(votes):
        records.append(pack([RECORD_MODE_VOTE, member, votes[member]]))
    totals = [RECORD_TOTALS, state.granted, state.burned, state.quiesced]
    records.append(pack(totals))
    claims_votes = state.claims_votes
    for member in sorted(claims_votes):
        records.append(pack([RECORD_CLAIMS_VOTE, member, claims_votes[member]]))
    return records


def _account_records(
    pack: _Pack, key: bytes, account: Account, records: list[bytes], continuations: list[bytes]
) -> None:
    """Append the account record to `records` and its unreceived parts to `continuations`."""
    unreceived = account.unreceived
    count = len(unreceived)
    step = UNRECEIVED_CREDITS_PER_RECORD_MAX
    credits: list[bytes] = []
    if count == 1:  # the common case: no sorting and no list of credits
        ((credit_id, amount),) = unreceived.items()
        first_part = credit_id + amount.to_bytes(_AMOUNT_SIZE, "big")
    elif count:
        credits = [
            credit_id + amount.to_bytes(_AMOUNT_SIZE, "big")
            for credit_id, amount in sorted(unreceived.items())
        ]
        first_part = b"".join(credits[:step])
    else:
        first_part = b""
    value = [
        RECORD_ACCOUNT,
        key,
        account.balance,
        account.spendable,
        account.seq,
        account.head,
        account.window_basis,
        account.window_grants,
        account.granted,
        count,
        first_part,
    ]
    records.append(pack(value))
    for part, start in enumerate(range(step, count, step), start=1):
        part_credits = b"".join(credits[start : start + step])
        continuations.append(pack([RECORD_UNRECEIVED, key, part, part_credits]))


def _join_ids(ids: Iterable[bytes]) -> bytes:
    return b"".join(sorted(ids))


# --- decoding --------------------------------------------------------------------------------


@dataclass
class _Builder:
    """What `state_from_records` has read so far."""

    state: LedgerState = field(default_factory=LedgerState)
    last_sort_key: SortKey | None = None
    #: Per account still expecting continuations: (declared count, next part, last id).
    open_accounts: dict[bytes, tuple[int, int, bytes]] = field(default_factory=dict)
    totals_seen: bool = False
    #: Whether account keys are checked as curve points (see `state_from_records`).
    check_keys: bool = True


def state_from_records(records: Iterable[bytes], *, check_keys: bool = True) -> LedgerState:
    """Rebuild a LedgerState from `state_records` output; its root() equals the original's.

    Any malformed, misordered, duplicated or inconsistent record raises SnapshotRecordError.
    The number of records is bounded by the snapshot manifest the caller already checked.

    `check_keys=False` is for a snapshot this node wrote itself (a restart): account keys are
    not checked as curve points (~22 us each, most of a restart at a million accounts; every
    key in it came from an op whose keys were checked at admission) and records are not
    re-encoded to check their canonical form. The caller still checks the rebuilt root
    against the council-signed one; key lengths and every field's range are checked.
    """
    builder = _Builder(check_keys=check_keys)
    decode = _decode_record if check_keys else _decode_own_record
    for record in records:
        value = decode(record)
        kind = value[0]
        reader = _READERS.get(kind) if type(kind) is int else None
        if reader is None:
            raise SnapshotRecordError(f"unknown snapshot record type {kind!r}")
        sort_key = reader(builder, value)
        if builder.last_sort_key is not None and sort_key <= builder.last_sort_key:
            raise SnapshotRecordError("snapshot records are duplicated or out of order")
        builder.last_sort_key = sort_key
    _finish(builder)
    return builder.state


def _decode_record(record: bytes) -> list[Any]:
    if not isinstance(record, bytes):
        raise SnapshotRecordError("a snapshot record must be bytes")
    try:
        value = encoding.decode(record, size_max=RECORD_SIZE_BYTES_MAX)
    except RemoteProtocolError as exc:
        raise SnapshotRecordError(f"snapshot record: {exc.message}") from exc
    if not isinstance(value, list) or not value:
        raise SnapshotRecordError("a snapshot record must be a non-empty array")
    return value


def _decode_own_record(record: bytes) -> list[Any]:
    """`_decode_record` for a snapshot this node wrote: the canonical-form re-encoding check
    is left out (it guards hash parity against a peer's non-canonical bytes; the rebuilt root
    is still checked against the signed one, and the store checks the blob's checksum)."""
    try:
        value = encoding.unpack(record, size_max=RECORD_SIZE_BYTES_MAX)
    except RemoteProtocolError as exc:
        raise SnapshotRecordError(f"snapshot record: {exc.message}") from exc
    if not isinstance(value, list) or not value:
        raise SnapshotRecordError("a snapshot record must be a non-empty array")
    return value


def _read_account(builder: _Builder, value: list[Any]) -> SortKey:
    _check_length(value, 11, "account")
    _, key, balance, spendable, seq, head, window_basis, window_grants, granted, count, credits = (
        value
    )
    _check_account_key(builder, key, "account")
    balance = _int(balance, "balance", _INT_FIELD_MAX)
    spendable = _int(spendable, "spendable", balance)
    seq = _int(seq, "seq", limits.SEQ_MAX)
    if not isinstance(head, bytes) or len(head) != (_ID_SIZE if seq else 0):
        raise SnapshotRecordError("head must be 32 bytes, or empty exactly when seq is 0")
    count = _int(count, "unreceived_count", _INT_FIELD_MAX)
    account = builder.state.account(key)
    account.balance, account.spendable = balance, spendable
    account.seq, account.head = seq, head
    account.window_basis = _int(window_basis, "window_basis", snapshot.HEIGHT_MAX)
    account.window_grants = _int(window_grants, "window_grants", _INT_FIELD_MAX)
    if not isinstance(granted, bool):
        raise SnapshotRecordError("granted must be a bool")
    account.granted = granted
    step = UNRECEIVED_CREDITS_PER_RECORD_MAX
    last = _add_unreceived(account, credits, min(count, step), b"")
    if count > step:
        builder.open_accounts[key] = (count, 1, last)
    return (RECORD_ACCOUNT, key)


def _read_unreceived(builder: _Builder, value: list[Any]) -> SortKey:
    _check_length(value, 4, "unreceived")
    _, key, part, credits = value
    _check_account_key(builder, key, "unreceived")
    part = _int(part, "part", _PART_MAX)
    expected = builder.open_accounts.get(key)
    if expected is None or part != expected[1]:
        raise SnapshotRecordError("unreceived part without its account or out of sequence")
    count, _, last = expected
    step = UNRECEIVED_CREDITS_PER_RECORD_MAX
    account = builder.state.accounts[key]
    last = _add_unreceived(account, credits, min(step, count - part * step), last)
    if count > (part + 1) * step:
        builder.open_accounts[key] = (count, part + 1, last)
    else:
        del builder.open_accounts[key]
    return (RECORD_UNRECEIVED, key + part.to_bytes(4, "big"))


def _add_unreceived(account: Account, credits: object, expected: int, last: bytes) -> bytes:
    """Add one part's credits (whose ids must continue the ascending order after `last`)."""
    if not isinstance(credits, bytes) or len(credits) % _CREDIT_SIZE:
        raise SnapshotRecordError(f"unreceived_credits must be {_CREDIT_SIZE}-byte entries")
    count = len(credits) // _CREDIT_SIZE
    if count != expected:
        raise SnapshotRecordError(f"unreceived part holds {count} credits, expected {expected}")
    for offset in range(0, len(credits), _CREDIT_SIZE):
        credit_id = credits[offset : offset + _ID_SIZE]
        amount = int.from_bytes(credits[offset + _ID_SIZE : offset + _CREDIT_SIZE], "big")
        if credit_id <= last:
            raise SnapshotRecordError("unreceived credit ids are not strictly ascending")
        if not 1 <= amount <= limits.AMOUNT_MAX:
            raise SnapshotRecordError(f"an unreceived amount must be in 1..{limits.AMOUNT_MAX}")
        account.add_unreceived(credit_id, amount)
        last = credit_id
    return last


def _read_claim(builder: _Builder, value: list[Any]) -> SortKey:
    _check_length(value, 7, "claim")
    _, claim_id, handle, claimant, endorsers, keys, revokers = value
    _check_id(claim_id, "claim_id")
    _check_handle(handle)
    _check_key(claimant, "claimant")
    endorser_set = set(_split_members(endorsers, "endorsers"))
    endorsement_keys = _endorsement_keys(keys, len(endorser_set))
    revoker_set = set(_split_members(revokers, "revokers"))
    claim = Claim(handle, claimant, endorser_set, endorsement_keys, revoker_set)
    builder.state.put_claim(claim_id, claim)
    return (RECORD_CLAIM, claim_id)


def _endorsement_keys(value: object, endorser_count: int) -> list[EndorsementKey]:
    """Strictly ascending [epoch, depth, op_id] keys, at most one per endorser and none
    without endorsers."""
    if not isinstance(value, list) or len(value) > endorser_count:
        raise SnapshotRecordError("endorsement_keys must be a list of at most one per endorser")
    if endorser_count and not value:
        raise SnapshotRecordError("endorsement_keys is empty for an endorsed claim")
    keys: list[EndorsementKey] = []
    for item in value:
        if not isinstance(item, list) or len(item) != 3:
            raise SnapshotRecordError("an endorsement key is [epoch, depth, op_id]")
        epoch = _int(item[0], "epoch", snapshot.HEIGHT_MAX)
        depth = _int(item[1], "depth", _INT_FIELD_MAX, minimum=1)
        _check_id(item[2], "endorsement op_id")
        key = (epoch, depth, item[2])
        if keys and key <= keys[-1]:
            raise SnapshotRecordError("endorsement keys are not strictly ascending")
        keys.append(key)
    return keys


def _read_binding(builder: _Builder, value: list[Any]) -> SortKey:
    _check_length(value, 4, "binding")
    _, handle, owner, claim_id = value
    _check_handle(handle)
    _check_key(owner, "owner")
    _check_id(claim_id, "claim_id")
    claim = builder.state.claims.get(claim_id)
    if claim is None or claim.handle != handle or claim.claimant != owner:
        raise SnapshotRecordError("a binding must name a claim of its handle by its owner")
    builder.state.bind(handle, owner, claim_id)
    return (RECORD_BINDING, handle.encode())


def _read_burn(builder: _Builder, value: list[Any]) -> SortKey:
    _check_length(value, 3, "burn")
    _, target, total = value
    if (
        not isinstance(target, str)
        or not target
        or len(target.encode()) > limits.BURN_TARGET_SIZE_BYTES_MAX
    ):
        raise SnapshotRecordError("burn target must be a non-empty str of at most 128 bytes")
    # A tally exists only after a burn, and burns move at least one credit.
    builder.state.add_burn(target, _int(total, "burn total", _INT_FIELD_MAX, minimum=1))
    return (RECORD_BURN, target.encode())


def _read_mode_vote(builder: _Builder, value: list[Any]) -> SortKey:
    _check_length(value, 3, "mode_vote")
    _, member, quiesce = value
    _check_key(member, "member")
    if not isinstance(quiesce, bool):
        raise SnapshotRecordError("a mode vote must be a bool")
    builder.state.set_mode_vote(member, quiesce)
    return (RECORD_MODE_VOTE, member)


def _read_claims_vote(builder: _Builder, value: list[Any]) -> SortKey:
    _check_length(value, 3, "claims_vote")
    _, member, pause = value
    _check_key(member, "member")
    if not isinstance(pause, bool):
        raise SnapshotRecordError("a claims vote must be a bool")
    builder.state.set_claims_vote(member, pause)
    return (RECORD_CLAIMS_VOTE, member)


def _read_totals(builder: _Builder, value: list[Any]) -> SortKey:
    _check_length(value, 4, "totals")
    _, granted, burned, quiesced = value
    state = builder.state
    granted = _int(granted, "granted", _INT_FIELD_MAX)
    if _int(burned, "burned", _INT_FIELD_MAX) != state.burned:
        raise SnapshotRecordError("burned differs from the sum of the burn tallies")
    if not isinstance(quiesced, bool):
        raise SnapshotRecordError("quiesced must be a bool")
    state.add_granted(granted)
    state.set_quiesced(quiesced)
    builder.totals_seen = True
    return (RECORD_TOTALS, b"")


def _finish(builder: _Builder) -> None:
    if builder.open_accounts:
        raise SnapshotRecordError("an account's unreceived parts are missing")
    if not builder.totals_seen:
        raise SnapshotRecordError("the totals record is missing")
    state = builder.state
    if state.total_balances() != state.granted - state.burned:
        raise SnapshotRecordError("balances do not add up to granted - burned")


_Reader = Callable[[_Builder, list[Any]], SortKey]
_READERS: dict[int, _Reader] = {
    RECORD_ACCOUNT: _read_account,
    RECORD_UNRECEIVED: _read_unreceived,
    RECORD_CLAIM: _read_claim,
    RECORD_BINDING: _read_binding,
    RECORD_BURN: _read_burn,
    RECORD_MODE_VOTE: _read_mode_vote,
    RECORD_TOTALS: _read_totals,
    RECORD_CLAIMS_VOTE: _read_claims_vote,
}


# --- field checks ----------------------------------------------------------------------------


def _check_length(value: list[Any], length: int, name: str) -> None:
    if len(value) != length:
        raise SnapshotRecordError(f"a {name} record has {length} elements, not {len(value)}")


def _int(value: object, name: str, maximum: int, *, minimum: int = 0) -> int:
    if type(value) is not int or not minimum <= value <= maximum:
        raise SnapshotRecordError(f"{name} must be an int in {minimum}..{maximum}")
    return value


def _check_id(value: object, name: str) -> None:
    if not isinstance(value, bytes) or len(value) != _ID_SIZE:
        raise SnapshotRecordError(f"{name} must be {_ID_SIZE} bytes")


def _check_key(value: object, name: str) -> None:
    _check_id(value, name)
    try:
        crypto.check_public_key(value)  # type: ignore[arg-type]
    except RemoteProtocolError as exc:
        raise SnapshotRecordError(f"{name}: {exc.message}") from exc


def _check_account_key(builder: _Builder, value: object, name: str) -> None:
    if builder.check_keys:
        _check_key(value, name)
    else:
        _check_id(value, name)


def _check_handle(value: object) -> None:
    try:
        check_handle(value)
    except RemoteProtocolError as exc:
        raise SnapshotRecordError(f"handle: {exc.message}") from exc


def _split_ids(value: object, name: str, count_max: int) -> list[bytes]:
    """Strictly ascending 32-byte ids, concatenated."""
    if not isinstance(value, bytes) or len(value) % _ID_SIZE:
        raise SnapshotRecordError(f"{name} must be concatenated {_ID_SIZE}-byte ids")
    ids = [value[i : i + _ID_SIZE] for i in range(0, len(value), _ID_SIZE)]
    if len(ids) > count_max:
        raise SnapshotRecordError(f"{name} holds more than {count_max} ids")
    if any(ids[i] >= ids[i + 1] for i in range(len(ids) - 1)):
        raise SnapshotRecordError(f"{name} are not strictly ascending")
    return ids


def _split_members(value: object, name: str) -> list[bytes]:
    members = _split_ids(value, name, MEMBER_SET_SIZE_MAX)
    for member in members:
        _check_key(member, name)
    return members


__all__ = [
    "RECORD_SIZE_BYTES_MAX",
    "UNRECEIVED_CREDITS_PER_RECORD_MAX",
    "SnapshotRecordError",
    "build_snapshot",
    "state_from_records",
    "state_records",
]
