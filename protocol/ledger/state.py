"""The ledger's derived state and its incremental state root.

`LedgerState` is plain data: balances, chain positions, handle claims and bindings, council mode
votes, burn tallies and totals. Every change goes through a method that marks the record dirty;
`root()` hashes only the dirty records into the bucketed Merkle tree (`state_tree.StateTree`),
so applying an op costs a few dict updates and the hashing is paid once per root, not once per
op. Code outside this module reads the dicts freely but changes them only through the methods
(or marks the record with `touch_*`), or the root goes stale.

Records and their tree keys (H = sha256, encode = canonical msgpack):

- account  key H("swarmd/state/account\\0" || account)
           value H(encode([balance, spendable, seq, head, unreceived_sum (32 bytes),
                           window_basis, window_grants, granted (bool)]))
- claim    key H("swarmd/state/claim\\0" || claim_id)
           value H(encode([handle, claimant, sorted endorsers, endorsement_keys,
                           sorted revokers]))  (endorsement_keys: [[epoch, depth, op_id], ...])
- mode     key H("swarmd/state/mode\\0" || member)    value H(encode([quiesce (bool)]))
- claims   key H("swarmd/state/claims_mode\\0" || member)  value H(encode([pause (bool)]))
           (only members who ever voted on claims have one; "claims paused" is a quorum of
           True, a function of these records and the genesis quorum, so it has no record)
- handle   key H("swarmd/state/handle\\0" || name)     value H(encode([owner, claim_id]))
  (only bound handles are in the tree)
- burn     key H("swarmd/state/burn\\0" || target)     value H(encode([total]))
- totals   key H("swarmd/state/totals\\0")
           value H(encode([granted, burned, quiesced]))

`unreceived_sum` is the sum, mod 2**256, of H("swarmd/state/unreceived\\0" || credit_id ||
amount as 8 bytes big-endian) over the account's unreceived credits: an incremental,
order-independent digest of the set *with* the amounts, which a node restored from a snapshot
needs to receive those credits without knowing the ops. It is brought up to date when read
(the state root reads it), so a credit received between two roots costs no hashing.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from .. import crypto, encoding
from ..state_tree import StateTree
from .overlay import OverlayMap, OverlaySet, WorkCount

_ACCOUNT_TAG = b"swarmd/state/account\x00"
_CLAIM_TAG = b"swarmd/state/claim\x00"
_MODE_TAG = b"swarmd/state/mode\x00"
_CLAIMS_MODE_TAG = b"swarmd/state/claims_mode\x00"
_HANDLE_TAG = b"swarmd/state/handle\x00"
_BURN_TAG = b"swarmd/state/burn\x00"
_UNRECEIVED_TAG = b"swarmd/state/unreceived\x00"
_TOTALS_KEY = crypto.sha256(b"swarmd/state/totals\x00")


_ID_SPACE = 2**256
#: What `Account.unreceived` reads while an account has no unreceived credit.
_NO_CREDITS: Mapping[bytes, int] = MappingProxyType({})
#: Credit amounts are at most 2**63 - 1 (docs/PROTOCOL.md section 4), so 8 bytes hold them.
_AMOUNT_SIZE_BYTES = 8

#: An endorsement's place in canonical order: (epoch, causal depth, op id). The epoch is the
#: final height the depth counts from (see Ledger), so an endorsement final at an earlier
#: checkpoint always sorts before a later one.
EndorsementKey = tuple[int, int, bytes]


def unreceived_term(credit_id: bytes, amount: int) -> int:
    """One credit's contribution to an account's unreceived digest."""
    preimage = _UNRECEIVED_TAG + credit_id + amount.to_bytes(_AMOUNT_SIZE_BYTES, "big")
    return int.from_bytes(crypto.sha256(preimage), "big")


class Account:
    """One account: balance, chain position and what it may spend.

    `balance` counts every applied credit and debit. `spendable` counts only credits the
    account has *received* (listed in the deps of one of its own ops) minus its debits, so
    `0 <= spendable <= balance`. `unreceived` maps the ids of applied credits to this account
    that it has not received yet to their amounts; `unreceived_sum` is their digest for the
    state root (see the module docstring). `window_basis` and `window_grants` count a council
    member's grants in its current checkpoint window (`window_basis` is also the basis of the
    account's head op). `granted` says the account got its one signup grant.
    """

    __slots__ = (
        "_unhashed",
        "_unreceived",
        "_unreceived_sum",
        "balance",
        "granted",
        "head",
        "seq",
        "spendable",
        "window_basis",
        "window_grants",
    )

    def __init__(self) -> None:
        self.balance = 0
        self.spendable = 0
        self.seq = 0
        self.head = b""
        #: The unreceived credits (None while there are none: most accounts of a large state
        #: have none, and an empty dict per account weighed 64 bytes and one more object to
        #: copy and free per checkpointed account).
        self._unreceived: dict[bytes, int] | None = None
        self._unreceived_sum = 0
        #: Changes to the unreceived set not yet folded into `_unreceived_sum`: (credit id,
        #: amount) -> net count (+1 added, -1 removed). Hashing waits for the next read of
        #: `unreceived_sum` (the state root), so a credit received before then is never hashed
        #: at all; None while empty, to keep idle accounts small.
        self._unhashed: dict[tuple[bytes, int], int] | None = None
        self.window_basis = 0
        self.window_grants = 0
        self.granted = False

    @property
    def unreceived(self) -> Mapping[bytes, int]:
        """The applied credits to this account it has not received yet: id -> amount (read
        only; `add_unreceived` and `remove_unreceived` change it)."""
        return self._unreceived or _NO_CREDITS

    @property
    def unreceived_sum(self) -> int:
        """The digest of the unreceived credits (see the module docstring)."""
        if self._unhashed:
            total = self._unreceived_sum
            for (credit_id, amount), count in self._unhashed.items():
                total += count * unreceived_term(credit_id, amount)
            self._unreceived_sum = total % _ID_SPACE
            self._unhashed = None
        return self._unreceived_sum

    def _note_unhashed(self, credit_id: bytes, amount: int, change: int) -> None:
        unhashed = self._unhashed
        if unhashed is None:
            unhashed = self._unhashed = {}
        key = (credit_id, amount)
        count = unhashed.get(key, 0) + change
        if count:
            unhashed[key] = count
        else:
            del unhashed[key]

    def add_unreceived(self, credit_id: bytes, amount: int) -> None:
        unreceived = self._unreceived
        if unreceived is None:
            unreceived = self._unreceived = {}
        unreceived[credit_id] = amount
        self._note_unhashed(credit_id, amount, 1)

    def remove_unreceived(self, credit_id: bytes) -> int:
        """Forget an unreceived credit; returns its amount."""
        unreceived = self._unreceived
        if unreceived is None:
            raise KeyError(credit_id)
        amount = unreceived.pop(credit_id)
        if not unreceived:
            self._unreceived = None
        self._note_unhashed(credit_id, amount, -1)
        return amount

    def copy(self) -> Account:
        other = Account()
        other.balance, other.spendable = self.balance, self.spendable
        other.seq, other.head = self.seq, self.head
        other._unreceived = dict(self._unreceived) if self._unreceived else None
        other._unreceived_sum = self.unreceived_sum
        other.window_basis, other.window_grants = self.window_basis, self.window_grants
        other.granted = self.granted
        return other

    def as_list(self) -> list[int | bytes | bool]:
        """The account record as hashed into the state root (docs/PROTOCOL.md)."""
        return [
            self.balance,
            self.spendable,
            self.seq,
            self.head,
            self.unreceived_sum.to_bytes(32, "big"),
            self.window_basis,
            self.window_grants,
            self.granted,
        ]


@dataclass
class Claim:
    """A handle claim, the council members who endorsed it and who voted to revoke it.

    `endorsement_keys` holds the canonical keys of its endorsements, ascending, but only the
    `quorum` smallest: endorsements are never withdrawn, so a larger key can never become the
    quorum-th, and keeping only these is exact.
    """

    handle: str
    claimant: bytes
    endorsers: set[bytes] = field(default_factory=set)
    endorsement_keys: list[EndorsementKey] = field(default_factory=list)
    revokers: set[bytes] = field(default_factory=set)

    def quorum_key(self, quorum: int) -> EndorsementKey | None:
        """The key of the quorum-th endorsement, or None while fewer endorsed."""
        return self.endorsement_keys[quorum - 1] if len(self.endorsement_keys) >= quorum else None

    def copy(self) -> Claim:
        return Claim(
            self.handle,
            self.claimant,
            set(self.endorsers),
            list(self.endorsement_keys),
            set(self.revokers),
        )

    def as_list(self) -> list[object]:
        """The claim record as hashed into the state root (docs/PROTOCOL.md)."""
        return [
            self.handle,
            self.claimant,
            sorted(self.endorsers),
            [list(key) for key in self.endorsement_keys],
            sorted(self.revokers),
        ]


@dataclass
class Binding:
    """A bound handle: who owns it through which claim (revocations live on the Claim)."""

    owner: bytes
    claim_id: bytes


class LedgerState:
    """Balances, chains, claims, handles, mode votes, tallies and totals, with a lazily updated
    state root.

    A state is either whole (plain dicts) or an overlay on a whole one (`over`, overlay.py):
    the record maps then hold only what was written since, and `merge` writes that into the
    base. Callers read both kinds alike."""

    def __init__(self) -> None:
        self.accounts: MutableMapping[bytes, Account] = {}
        self.claims: MutableMapping[bytes, Claim] = {}
        self.bindings: MutableMapping[str, Binding] = {}
        self.burn_tallies: MutableMapping[str, int] = {}
        self.granted = 0
        self.burned = 0
        #: Each council member's latest mode vote, by its chain order (True = quiesce).
        self.mode_votes: MutableMapping[bytes, bool] = {}
        self.quiesced = False
        #: Each council member's latest claims vote (True = pause new handle claims).
        self.claims_votes: MutableMapping[bytes, bool] = {}
        self.tree = StateTree()
        #: The whole state this one overlays (None: this one is whole).
        self.base: LedgerState | None = None
        self._dirty_accounts: set[bytes] = set()
        self._dirty_claims: set[bytes] = set()
        self._dirty_mode_votes: set[bytes] = set()
        self._dirty_claims_votes: set[bytes] = set()
        self._dirty_handles: set[str] = set()
        self._dirty_tallies: set[str] = set()
        self._totals_dirty = True

    # --- mutation ---------------------------------------------------------------------------

    def account(self, key: bytes) -> Account:
        """The account for `key` to change, created empty on first use (and marked dirty);
        in an overlay, copied from the base on first write."""
        accounts = self.accounts
        if isinstance(accounts, OverlayMap):
            account = accounts.writable(key)
        else:
            account = accounts.get(key)
        if account is None:
            account = accounts[key] = Account()
        self._dirty_accounts.add(key)
        return account

    def _claim_to_change(self, claim_id: bytes) -> Claim:
        claims = self.claims
        if isinstance(claims, OverlayMap):
            claim: Claim | None = claims.writable(claim_id)
            if claim is None:
                raise KeyError(claim_id)
            return claim
        return claims[claim_id]

    def credit(self, key: bytes, amount: int) -> None:
        self.account(key).balance += amount

    def put_claim(self, claim_id: bytes, claim: Claim) -> None:
        """Add (or replace) a claim record."""
        self.claims[claim_id] = claim
        self._dirty_claims.add(claim_id)

    def add_endorsement(
        self, claim_id: bytes, member: bytes, key: EndorsementKey, quorum: int
    ) -> None:
        """Record `member`'s endorsement of a claim, keeping the `quorum` smallest keys."""
        claim = self._claim_to_change(claim_id)
        claim.endorsers.add(member)
        keys = claim.endorsement_keys
        keys.append(key)
        keys.sort()
        del keys[quorum:]
        self._dirty_claims.add(claim_id)

    def add_revocation(self, claim_id: bytes, member: bytes) -> None:
        self._claim_to_change(claim_id).revokers.add(member)
        self._dirty_claims.add(claim_id)

    def touch_claim(self, claim_id: bytes) -> None:
        """Mark a claim changed in place, so the next root hashes it again."""
        self._dirty_claims.add(claim_id)

    def set_mode_vote(self, member: bytes, quiesce: bool) -> None:
        self.mode_votes[member] = quiesce
        self._dirty_mode_votes.add(member)

    def set_claims_vote(self, member: bytes, pause: bool) -> None:
        self.claims_votes[member] = pause
        self._dirty_claims_votes.add(member)

    def claims_paused(self, quorum: int) -> bool:
        """Whether a quorum's latest claims vote is pause."""
        return sum(self.claims_votes.values()) >= quorum

    def bind(self, handle: str, owner: bytes, claim_id: bytes) -> None:
        self.bindings[handle] = Binding(owner, claim_id)
        self._dirty_handles.add(handle)

    def unbind(self, handle: str) -> None:
        del self.bindings[handle]
        self._dirty_handles.add(handle)

    def add_burn(self, target: str, amount: int) -> int:
        total = self.burn_tallies.get(target, 0) + amount
        self.burn_tallies[target] = total
        self.burned += amount
        self._dirty_tallies.add(target)
        self._totals_dirty = True
        return total

    def add_granted(self, amount: int) -> None:
        self.granted += amount
        self._totals_dirty = True

    def set_quiesced(self, quiesced: bool) -> None:
        self.quiesced = quiesced
        self._totals_dirty = True

    # --- reading ----------------------------------------------------------------------------

    def balance(self, key: bytes) -> int:
        account = self.accounts.get(key)
        return account.balance if account else 0

    def total_balances(self) -> int:
        return sum(account.balance for account in self.accounts.values())

    def claims_by_handle(self) -> dict[str, list[bytes]]:
        """Claim ids per handle, each list sorted (derivable from `claims` at any time)."""
        by_handle: dict[str, list[bytes]] = {}
        for claim_id in sorted(self.claims):
            by_handle.setdefault(self.claims[claim_id].handle, []).append(claim_id)
        return by_handle

    def root(self) -> bytes:
        """The state root; hashes only what changed since the last call."""
        tree = self.tree
        accounts = self.accounts
        for key in self._dirty_accounts:
            tree.set(_record_key(_ACCOUNT_TAG, key), _account_hash(accounts[key]))
        for claim_id in self._dirty_claims:
            claim = self.claims.get(claim_id)
            value = _value_hash(claim.as_list()) if claim else None
            tree.set(_record_key(_CLAIM_TAG, claim_id), value)
        for member in self._dirty_mode_votes:
            vote = self.mode_votes.get(member)
            value = _value_hash([vote]) if vote is not None else None
            tree.set(_record_key(_MODE_TAG, member), value)
        for member in self._dirty_claims_votes:
            vote = self.claims_votes.get(member)
            value = _value_hash([vote]) if vote is not None else None
            tree.set(_record_key(_CLAIMS_MODE_TAG, member), value)
        for handle in self._dirty_handles:
            binding = self.bindings.get(handle)
            value = _value_hash([binding.owner, binding.claim_id]) if binding else None
            tree.set(_record_key(_HANDLE_TAG, handle.encode()), value)
        for target in self._dirty_tallies:
            value = _value_hash([self.burn_tallies[target]])
            tree.set(_record_key(_BURN_TAG, target.encode()), value)
        if self._totals_dirty:
            tree.set(_TOTALS_KEY, _value_hash([self.granted, self.burned, self.quiesced]))
        self._dirty_accounts.clear()
        self._dirty_claims.clear()
        self._dirty_mode_votes.clear()
        self._dirty_claims_votes.clear()
        self._dirty_handles.clear()
        self._dirty_tallies.clear()
        self._totals_dirty = False
        return tree.root()

    @classmethod
    def over(cls, base: LedgerState, work: WorkCount) -> LedgerState:
        """An overlay on the state `base` (whole, or itself a layer over a frozen whole one:
        `Ledger.freeze_final`): O(1) in the records and in the tree's buckets (the tree is an
        overlay too; see StateTree)."""
        base.root()  # flush, so the overlay shares no pending dirty marks
        other = cls()
        other.base = base
        other.accounts = OverlayMap(base.accounts, Account.copy, work)
        other.claims = OverlayMap(base.claims, Claim.copy, work)
        other.bindings = OverlayMap(base.bindings, None, work)
        other.burn_tallies = OverlayMap(base.burn_tallies, None, work)
        other.mode_votes = OverlayMap(base.mode_votes, None, work)
        other.claims_votes = OverlayMap(base.claims_votes, None, work)
        other.granted, other.burned, other.quiesced = base.granted, base.burned, base.quiesced
        other.tree = base.tree.over()
        other._totals_dirty = False
        return other

    def rebase(self, base: LedgerState) -> None:
        """Read through to `base` instead of this overlay's base, which `base` equals (a fresh
        layer over it, or the state a layer was just merged into): O(1)."""
        if self.base is None:
            raise ValueError("only an overlay rebases")
        for mine, theirs in (
            (self.accounts, base.accounts),
            (self.claims, base.claims),
            (self.bindings, base.bindings),
            (self.burn_tallies, base.burn_tallies),
            (self.mode_votes, base.mode_votes),
            (self.claims_votes, base.claims_votes),
        ):
            assert isinstance(mine, OverlayMap)
            mine.base = theirs
        self.tree.rebase(base.tree)
        self.base = base

    def merge(self) -> LedgerState:
        """Write this overlay into its base and return the base, which then equals this state
        (root included); this overlay must not be used afterwards. O(records written)."""
        base = self.base
        if base is None:
            raise ValueError("only an overlay merges")
        self.root()
        for records in (
            self.accounts,
            self.claims,
            self.bindings,
            self.burn_tallies,
            self.mode_votes,
            self.claims_votes,
        ):
            assert isinstance(records, OverlayMap)
            records.merge()
        base.granted, base.burned, base.quiesced = self.granted, self.burned, self.quiesced
        self.tree.merge()
        return base

    def copy(self) -> LedgerState:
        """An independent whole copy (the tree's node hashes are shared copy-on-write)."""
        self.root()  # flush, so the copy shares no pending dirty marks
        other = LedgerState()
        other.accounts = {key: account.copy() for key, account in self.accounts.items()}
        other.claims = {claim_id: claim.copy() for claim_id, claim in self.claims.items()}
        other.bindings = {
            handle: Binding(binding.owner, binding.claim_id)
            for handle, binding in self.bindings.items()
        }
        other.burn_tallies = dict(self.burn_tallies)
        other.granted = self.granted
        other.burned = self.burned
        other.mode_votes = dict(self.mode_votes)
        other.quiesced = self.quiesced
        other.claims_votes = dict(self.claims_votes)
        other.tree = self.tree.copy()
        other._totals_dirty = False
        return other


def _record_key(tag: bytes, key: bytes) -> bytes:
    return crypto.sha256(tag + key)


def _value_hash(record: Sequence[object]) -> bytes:
    return crypto.sha256(encoding.encode(record))


def _account_hash(account: Account) -> bytes:
    """`_value_hash(account.as_list())`, without the canonical-form walk: the record is a flat
    list of ints, bytes and a bool, which msgpack packs canonically as it is (a million of
    them are hashed when a restart rebuilds the state). An int out of the encodable range
    takes the checking path, which raises."""
    record = account.as_list()
    try:
        return crypto.sha256(encoding.pack(record))
    except OverflowError:
        return _value_hash(record)


# --- the ledger's derivations ----------------------------------------------------------------

#: An op's place in canonical order: (causal depth from the last final checkpoint, op id).
CanonicalKey = tuple[int, bytes]
#: What two ops contend for: ("seq", author, seq) or ("grant", recipient, 0).
ConflictKey = tuple[str, bytes, int]


@dataclass(slots=True)
class Checked:
    """What the rules computed for an op about to be applied."""

    spendable_after: int
    window_basis: int
    window_grants: int
    received: tuple[bytes, ...]


@dataclass
class Derivation:
    """A state plus the indexes that deriving it needs; copied to fork the provisional state
    off the final one, and replaced whole when the state is re-derived."""

    state: LedgerState
    applied: set[bytes] | OverlaySet
    excluded: dict[bytes, str]
    conflicts: MutableMapping[ConflictKey, bytes]
    claims_by_handle: MutableMapping[str, list[bytes]]
    #: What the rules computed for each applied non-final op (see `cuts._Cuts._cut_derivation`).
    checked: dict[bytes, Checked] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> Derivation:
        return cls(LedgerState(), set(), {}, {}, {})

    @classmethod
    def around(cls, state: LedgerState) -> Derivation:
        """A derivation whose state came from elsewhere (a snapshot): no op is known, and the
        per-handle index is rebuilt from the claims."""
        return cls(state, set(), {}, {}, state.claims_by_handle())

    def over(self, work: WorkCount) -> Derivation:
        """A derivation above this whole one, as an overlay on it (overlay.py): O(1)."""
        assert isinstance(self.applied, set)
        return Derivation(
            LedgerState.over(self.state, work),
            OverlaySet(self.applied),
            dict(self.excluded),
            OverlayMap(self.conflicts, None, work),
            OverlayMap(self.claims_by_handle, list, work),
            dict(self.checked),
        )

    def pin(self, other: Derivation) -> None:
        """Keep this overlay's view of every record `other` (an overlay on the same base)
        wrote, before `other` is merged into the base (overlay.OverlayMap.pin)."""
        pairs = [
            (self.state.accounts, other.state.accounts),
            (self.state.claims, other.state.claims),
            (self.state.bindings, other.state.bindings),
            (self.state.burn_tallies, other.state.burn_tallies),
            (self.state.mode_votes, other.state.mode_votes),
            (self.state.claims_votes, other.state.claims_votes),
            (self.conflicts, other.conflicts),
            (self.claims_by_handle, other.claims_by_handle),
        ]
        for mine, theirs in pairs:
            assert isinstance(mine, OverlayMap) and isinstance(theirs, OverlayMap)
            mine.pin(list(theirs.written()))
        # The other's records not yet in its tree are put there first, and their buckets are
        # pinned too: otherwise this overlay, writing the same value into a bucket it reads
        # through, would find it unchanged, leave the bucket clean and keep a stale hash.
        other.state.root()
        self.state.tree.pin(list(other.state.tree.written()))

    def merge(self, base: Derivation) -> None:
        """Write this overlay (made by `base.over`) into `base`: O(what it wrote). Excluded
        ids and check results are not merged (a final derivation holds neither)."""
        assert isinstance(self.applied, OverlaySet) and self.applied.base is base.applied
        self.state.merge()
        self.applied.merge()
        assert isinstance(self.claims_by_handle, OverlayMap)
        self.claims_by_handle.merge()
        # Conflict keys are not merged: a final op's keys can never be contended again, and
        # `_conflict_winner_check` answers "final" for them from the final state (seq at or
        # below the author's final seq; a grant to a final granted account) before it reads
        # the conflict keys, so they are per-op bookkeeping of non-final ops only.

    def copy(self) -> Derivation:
        return Derivation(
            self.state.copy(),
            set(self.applied),
            dict(self.excluded),
            dict(self.conflicts),
            {handle: list(claims) for handle, claims in self.claims_by_handle.items()},
            dict(self.checked),
        )
