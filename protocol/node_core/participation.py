"""Council participation: per member, the final checkpoints it signed (its precommit is in
the bundle), the ones it missed, and when it last signed one. Read from each bundle as it
becomes final (replays at start included), so the figures cover this process's history;
nothing here changes what the node does. (Signers per checkpoint: the shell reads the kept
bundle, `NodeCore.bundle(height)`, when it sees CheckpointFinalized.)"""

from __future__ import annotations

from dataclasses import dataclass

from .. import consensus
from ..errors import RemoteProtocolError


@dataclass
class MemberParticipation:
    signed: int = 0
    missed: int = 0
    last_signed_height: int = 0
    last_signed_at: float | None = None  # the core's clock when that checkpoint became final


class Participation:
    """Per council member (genesis order: sorted keys), bounded by the council size."""

    def __init__(self, council: tuple[bytes, ...]) -> None:
        self.members: dict[bytes, MemberParticipation] = {
            key: MemberParticipation() for key in council
        }

    def observe(self, height: int, bundle: bytes, now: float) -> None:
        try:
            signers = {key for key, _ in consensus.CheckpointBundle.decode(bundle).precommits}
        except RemoteProtocolError:
            return  # finalized from a bundle that verified: cannot happen; count nothing
        for key, member in self.members.items():
            if key in signers:
                member.signed += 1
                member.last_signed_height = height
                member.last_signed_at = now
            else:
                member.missed += 1
