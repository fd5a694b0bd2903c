"""Peer selection, sans-I/O: which learned addresses a node dials, and how many links it
keeps (issue 16). The daemon (node/runtime/exchange.py) and the simulator's mesh
(protocol/sim/mesh.py) both call `choose_dials` and `MeshTargets`, so the topology the
scenarios prove is the one daemons build.

Bounded degree: a node dials until it holds `MeshTargets.outbound` outbound links and
accepts at most `MeshTargets.inbound_max` inbound ones from non-council peers. Links between
council members are reserved slots (peers.py) and count in neither bound.

Diversity: candidates are grouped by their source (the peer whose exchange answer named
them; configured seeds form one group) and by the network group of their URL
(addresses.url_group: IPv4 /16, IPv6 /32, DNS domain). Dials go round robin across groups,
the group whose source and network hold the fewest outbound links first; no source and no
network group (loopback excepted: a devnet is one host) gets more than
`MeshTargets.per_source_max` outbound links. One peer, or an attacker's many identities
behind one peer or in one network, can never place all of a node's outbound links. Within a
group, fewer failed dials first, then a draw from the caller's `random.Random`.

Tried share (`plan_dials(tried_percent=...)`, the daemon's ADDRESS_DIALS_TRIED_PERCENT): the
first picks of a plan come from "tried" records only (nodes linked to before), so a book
flooded with "new" records cannot take every dial. The simulator's mesh passes 0 (its
topology, and so its trace hashes, are those of before the share).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import limits
from .addresses import AddressBook, AddressRecord, url_group

#: Why a node refuses an inbound link beyond `MeshTargets.inbound_max` (the daemon's
#: handshake answers it as its refusal code).
REFUSED_INBOUND_MAX = "inbound_max"
#: The group of configured seeds (they have no source peer).
SEED_SOURCE = b""
#: Records in one exchange answer (our own first): enough to learn a neighbourhood per
#: round, small enough that one answer is at most ~64 KiB.
EXCHANGE_RECORDS_MAX = 32
#: Peers asked per exchange round (chosen at random among the connected and configured ones).
EXCHANGE_SOURCES_PER_ROUND = 8


@dataclass(frozen=True, slots=True)
class MeshTargets:
    outbound: int = limits.MESH_OUTBOUND_TARGET
    inbound_max: int = limits.MESH_INBOUND_MAX
    per_source_max: int = limits.MESH_OUTBOUND_PER_SOURCE_MAX

    def dials_wanted(self, outbound: int) -> int:
        """Outbound links still missing."""
        return max(0, self.outbound - outbound)

    def accepts_inbound(self, inbound: int, *, council_link: bool) -> bool:
        """Whether a node holding `inbound` non-council inbound links takes one more (a link
        between council members always: it has a reserved slot)."""
        return council_link or inbound < self.inbound_max


@dataclass(frozen=True, slots=True)
class Candidate:
    """A dialable address: its node, the peer it was learned from (None for a configured
    seed), its URL's network group (addresses.url_group) and its failed dials so far."""

    node_id: bytes
    source: bytes | None
    scope: str
    failures: int = 0

    @property
    def source_key(self) -> bytes:
        return SEED_SOURCE if self.source is None else self.source


def choose_dials(
    candidates: Iterable[Candidate],
    *,
    want: int,
    linked: Sequence[tuple[bytes | None, str]],
    rng: random.Random,
    per_source_max: int = limits.MESH_OUTBOUND_PER_SOURCE_MAX,
) -> list[bytes]:
    """Up to `want` node ids to dial, diverse by source and network group (module
    docstring). `linked` holds the (source, group) of each outbound link held now.
    Deterministic for a given rng state: candidates are taken in node id order and every tie
    is broken by a draw."""
    by_source: dict[bytes, int] = {}
    by_scope: dict[str, int] = {}
    for source, scope in linked:
        held = SEED_SOURCE if source is None else source
        by_source[held] = by_source.get(held, 0) + 1
        by_scope[scope] = by_scope.get(scope, 0) + 1
    groups: dict[tuple[bytes, str], list[tuple[int, float, bytes]]] = {}
    for candidate in sorted(candidates, key=lambda c: c.node_id):
        entry = (candidate.failures, rng.random(), candidate.node_id)
        groups.setdefault((candidate.source_key, candidate.scope), []).append(entry)
    for entries in groups.values():
        entries.sort()
    order = {key: rng.random() for key in sorted(groups)}
    chosen: list[bytes] = []
    while len(chosen) < want:
        open_groups = [
            key
            for key in sorted(groups)
            if groups[key]
            and by_source.get(key[0], 0) < per_source_max
            and (key[1] == "loopback" or by_scope.get(key[1], 0) < per_source_max)
        ]
        if not open_groups:
            break
        group = min(
            open_groups, key=lambda k: (by_source.get(k[0], 0), by_scope.get(k[1], 0), order[k])
        )
        chosen.append(groups[group].pop(0)[2])
        by_source[group[0]] = by_source.get(group[0], 0) + 1
        by_scope[group[1]] = by_scope.get(group[1], 0) + 1
    return chosen


# --- the exchange, shared by the daemon and the simulator -------------------------------------


def records_to_share(
    own: AddressRecord | None, book: AddressBook, now: float, rng: random.Random
) -> list[AddressRecord]:
    """An exchange answer: our own record first (when we have one), then a random sample of
    the book (its tried records first, at most ADDRESS_SHARE_NEW_MAX only heard of;
    AddressBook.sample), EXCHANGE_RECORDS_MAX at most in all."""
    shared = [] if own is None else [own]
    return shared + book.sample(EXCHANGE_RECORDS_MAX - len(shared), now, rng)


def plan_dials(
    book: AddressBook,
    *,
    now: float,
    transport: str,
    own_scope: str,
    skip: set[bytes],
    linked: Sequence[tuple[bytes | None, str]],
    want: int,
    rng: random.Random,
    per_source_max: int = limits.MESH_OUTBOUND_PER_SOURCE_MAX,
    tried_percent: int = 0,
) -> list[tuple[bytes, str]]:
    """(node id, URL) of the book's addresses to dial now, up to `want`: due and dialable
    (AddressBook.dial_candidates) and chosen for diversity (`choose_dials`).

    With `tried_percent` (the daemon passes ADDRESS_DIALS_TRIED_PERCENT; the simulator's mesh
    0) the first `ceil(want * tried_percent / 100)` picks come from tried records only, then
    the rest from all: a book flooded with new records cannot take every dial while a node
    linked to before is due. They come first in the plan, so they are dialed first."""
    due = book.dial_candidates(now, transport, own_scope, skip)
    if not due or want <= 0:
        return []
    urls = dict(due)
    candidates = [
        Candidate(
            node_id, book.entries[node_id].source, url_group(url), book.entries[node_id].failures
        )
        for node_id, url in due
    ]
    chosen: list[bytes] = []
    held = list(linked)
    tried_want = -(-want * tried_percent // 100)
    if tried_want > 0:
        tried = [c for c in candidates if book.entries[c.node_id].tried]
        chosen = choose_dials(
            tried, want=tried_want, linked=held, rng=rng, per_source_max=per_source_max
        )
        picked = set(chosen)
        held += [(c.source, c.scope) for c in tried if c.node_id in picked]
        candidates = [c for c in candidates if c.node_id not in picked]
    chosen += choose_dials(
        candidates, want=want - len(chosen), linked=held, rng=rng, per_source_max=per_source_max
    )
    return [(node_id, urls[node_id]) for node_id in chosen]
