"""The ledger's derived state and its incremental state root.

`LedgerState` is plain data: balances, chain positions, handles, burn tallies and totals. Every
change marks a record dirty; `root()` hashes only the dirty records into the bucketed Merkle
tree (`state_tree.StateTree`), so applying an op costs a few dict updates and the hashing is
paid once per root, not once per op.

Records and their tree keys (H = sha256, encode = canonical msgpack):

- account  key H("swarmd/state/account\\0" || account)
           value H(encode([balance, spendable, seq, head, unreceived_sum (32 bytes),
                           window_basis, window_grants]))
- handle   key H("swarmd/state/handle\\0" || name)     value H(encode([owner, claim_id]))
  (only bound handles are in the tree)
- burn     key H("swarmd/state/burn\\0" || target)     value H(encode([total]))
- totals   key H("swarmd/state/totals\\0")             value H(encode([granted, burned, quiesced]))
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import crypto, encoding
from .state_tree import StateTree

_ACCOUNT_TAG = b"swarmd/state/account\x00"
_HANDLE_TAG = b"swarmd/state/handle\x00"
_BURN_TAG = b"swarmd/state/burn\x00"
_TOTALS_KEY = crypto.sha256(b"swarmd/state/totals\x00")


_ID_SPACE = 2**256


class Account:
    """One account: balance, chain position and what it may spend.

    `balance` counts every applied credit and debit. `spendable` counts only credits the
    account has *received* (listed in the deps of one of its own ops) minus its debits, so
    `0 <= spendable <= balance`. `unreceived` holds the ids of applied credits to this account
    that it has not received yet; `unreceived_sum` is their sum mod 2**256, an incremental,
    order-independent digest of that set for the state root. `window_basis` and
    `window_grants` count a council member's grants in its current checkpoint window.
    """

    __slots__ = (
        "balance",
        "head",
        "seq",
        "spendable",
        "unreceived",
        "unreceived_sum",
        "window_basis",
        "window_grants",
    )

    def __init__(self) -> None:
        self.balance = 0
        self.spendable = 0
        self.seq = 0
        self.head = b""
        self.unreceived: set[bytes] = set()
        self.unreceived_sum = 0
        self.window_basis = 0
        self.window_grants = 0

    def add_unreceived(self, credit_id: bytes) -> None:
        self.unreceived.add(credit_id)
        self.unreceived_sum = (self.unreceived_sum + int.from_bytes(credit_id)) % _ID_SPACE

    def remove_unreceived(self, credit_id: bytes) -> None:
        self.unreceived.remove(credit_id)
        self.unreceived_sum = (self.unreceived_sum - int.from_bytes(credit_id)) % _ID_SPACE

    def copy(self) -> Account:
        other = Account()
        other.balance, other.spendable = self.balance, self.spendable
        other.seq, other.head = self.seq, self.head
        other.unreceived, other.unreceived_sum = set(self.unreceived), self.unreceived_sum
        other.window_basis, other.window_grants = self.window_basis, self.window_grants
        return other

    def as_list(self) -> list[int | bytes]:
        """The account record as hashed into the state root (docs/PROTOCOL.md)."""
        return [
            self.balance,
            self.spendable,
            self.seq,
            self.head,
            self.unreceived_sum.to_bytes(32, "big"),
            self.window_basis,
            self.window_grants,
        ]


@dataclass
class Claim:
    """A handle claim and the council members who endorsed it."""

    handle: str
    claimant: bytes
    endorsers: set[bytes] = field(default_factory=set)


@dataclass
class Binding:
    """A bound handle: who owns it through which claim, and who voted to revoke it."""

    owner: bytes
    claim_id: bytes
    revokers: set[bytes] = field(default_factory=set)


class LedgerState:
    """Balances, chains, handles, tallies and totals, with a lazily updated state root."""

    def __init__(self) -> None:
        self.accounts: dict[bytes, Account] = {}
        self.claims: dict[bytes, Claim] = {}
        self.bindings: dict[str, Binding] = {}
        self.burn_tallies: dict[str, int] = {}
        self.granted = 0
        self.burned = 0
        #: Each council member's latest mode vote, by its chain order (True = quiesce).
        self.mode_votes: dict[bytes, bool] = {}
        self.quiesced = False
        self.tree = StateTree()
        self._dirty_accounts: set[bytes] = set()
        self._dirty_handles: set[str] = set()
        self._dirty_tallies: set[str] = set()
        self._totals_dirty = True

    # --- mutation ---------------------------------------------------------------------------

    def account(self, key: bytes) -> Account:
        """The account for `key`, created empty on first use (and marked dirty)."""
        account = self.accounts.get(key)
        if account is None:
            account = self.accounts[key] = Account()
        self._dirty_accounts.add(key)
        return account

    def credit(self, key: bytes, amount: int) -> None:
        self.account(key).balance += amount

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

    def root(self) -> bytes:
        """The state root; hashes only what changed since the last call."""
        tree = self.tree
        for key in self._dirty_accounts:
            account = self.accounts[key]
            tree.set(_account_key(key), crypto.sha256(encoding.encode(account.as_list())))
        for handle in self._dirty_handles:
            binding = self.bindings.get(handle)
            value = (
                crypto.sha256(encoding.encode([binding.owner, binding.claim_id]))
                if binding
                else None
            )
            tree.set(crypto.sha256(_HANDLE_TAG + handle.encode()), value)
        for target in self._dirty_tallies:
            value = crypto.sha256(encoding.encode([self.burn_tallies[target]]))
            tree.set(crypto.sha256(_BURN_TAG + target.encode()), value)
        if self._totals_dirty:
            totals = encoding.encode([self.granted, self.burned, self.quiesced])
            tree.set(_TOTALS_KEY, crypto.sha256(totals))
        self._dirty_accounts.clear()
        self._dirty_handles.clear()
        self._dirty_tallies.clear()
        self._totals_dirty = False
        return tree.root()

    def copy(self) -> LedgerState:
        """An independent copy (the tree is copied cheaply; see StateTree.copy)."""
        self.root()  # flush, so the copy shares no pending dirty marks
        other = LedgerState()
        other.accounts = {key: account.copy() for key, account in self.accounts.items()}
        other.claims = {
            claim_id: Claim(claim.handle, claim.claimant, set(claim.endorsers))
            for claim_id, claim in self.claims.items()
        }
        other.bindings = {
            handle: Binding(binding.owner, binding.claim_id, set(binding.revokers))
            for handle, binding in self.bindings.items()
        }
        other.burn_tallies = dict(self.burn_tallies)
        other.granted = self.granted
        other.burned = self.burned
        other.mode_votes = dict(self.mode_votes)
        other.quiesced = self.quiesced
        other.tree = self.tree.copy()
        other._totals_dirty = False
        return other


def _account_key(key: bytes) -> bytes:
    return crypto.sha256(_ACCOUNT_TAG + key)
