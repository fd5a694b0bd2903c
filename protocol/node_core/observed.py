"""What an operator watches that must survive a restart: each council member's participation
(participation.py) and when each open handle conflict was first raised (conflicts.py).

Both live in the core's memory on its monotonic clock. The core hands them to the shell with
each checkpoint (`PersistCheckpoint.observed`, times as wall-clock UTC ms) and the shell also
notes each conflict the moment it is raised (a conflict that stays open is one finality does
not settle: no checkpoint may come to carry it). After a restart the shell gives the stored
record back (`NodeCore.restore_observed`): the participation counts continue from it (the
bundle replay does not count the heights it covers twice, and a snapshot restore does not lose
the heights below the snapshot) and a conflict still open keeps its first-raised age (without
this a restarted node did not count it at all: the replay does not raise conflicts again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core import NodeCore


@dataclass(frozen=True, slots=True)
class MemberRecord:
    key: bytes
    signed: int
    missed: int
    last_signed_height: int
    last_signed_ms: int  # wall-clock UTC ms when that checkpoint became final here (0: never)


@dataclass(frozen=True, slots=True)
class Observed:
    """The record at final height `height` (the participation counts cover 1..height)."""

    height: int
    members: tuple[MemberRecord, ...]  # by key
    conflicts: tuple[tuple[str, int], ...]  # (handle, first raised, wall-clock UTC ms) by handle


def observed_of(core: NodeCore, now: float) -> Observed:
    """The record of `core` at its final height: O(council + open conflicts)."""
    members = tuple(
        MemberRecord(
            key,
            member.signed,
            member.missed,
            member.last_signed_height,
            0 if member.last_signed_at is None else core.wall_ms(member.last_signed_at),
        )
        for key, member in sorted(core.finality.participation.members.items())
    )
    conflicts = tuple(
        (handle, core.wall_ms(raised))
        for handle, raised in sorted(core.conflicts.open_conflicts.items())
    )
    return Observed(core.final_height, members, conflicts)


def restore_observed(core: NodeCore, observed: Observed, now: float) -> bool:
    """Continue from a stored record (after `NodeCore.restore` and `set_wall_clock`). The
    participation counts are taken only when the record is at the restored final height (it is
    written with that checkpoint); False when they were not. Stored conflicts whose handle is
    still unbound are open again with their stored first-raised time."""
    wall_now = core.wall_ms(now)

    def local(wall_ms: int) -> float:
        return now - max(0, wall_now - wall_ms) / 1000

    # The replay does not raise conflicts again (its ledger events are dropped): a stored one
    # whose handle is still unbound in the final state is open again, with its first age.
    open_conflicts = core.conflicts.open_conflicts
    bound = core.ledger.final_state.bindings
    for handle, raised_ms in observed.conflicts:
        if handle not in bound:
            open_conflicts[handle] = min(open_conflicts.get(handle, now), local(raised_ms))
    if observed.height != core.final_height:
        return False
    members = core.finality.participation.members
    for record in observed.members:
        member = members.get(record.key)
        if member is None:
            continue  # (not a member of this genesis: a record of another network)
        member.signed, member.missed = record.signed, record.missed
        member.last_signed_height = record.last_signed_height
        member.last_signed_at = local(record.last_signed_ms) if record.last_signed_ms else None
    return True
