"""The settlement of an epoch entered by a rollback certificate (docs/PROTOCOL.md "Settlement").

The first height of every epoch after a rollback (H+1) decides a *settlement* cut and nothing
else: no ops (no heads; the parent's state root), plus the old-epoch values it settles, each a
council member's signed precommit of the ended epoch at a height above H with the value (cut)
it precommitted. Once it is final, every node reverts the ops of every settled cut
(`Rollbacks.revert_cut`, also the ones that arrive later), so the new epoch agrees on the
reverted set before it finalizes anything.

- A member entering the epoch shows its own kept precommits above H (`Tendermint.old_precommits`,
  kept through `enter_epoch`) in a SETTLEMENT message to every peer; every node verifies and
  relays each new one once and remembers it (`known`; a quota per member, the precommit's
  signer: SETTLEMENT_VALUES_PER_SIGNER_MAX values and SETTLEMENT_SIGNER_BYTES_MAX bytes).
- The proposer of the settlement height lists the values it knows (`value`), picked fairly
  when they exceed one cut (`_fair`): level by level, each member's first value, then each
  one's second, and so on (smallest first within a level), so a member flooding made-up
  values never pushes out a correct member's few values.
- A validator prevotes a settlement only if each listed value verifies and the list holds
  every value IT precommitted above H (`valid`). A value a quorum precommitted in the old
  epoch (a bundle of it may exist somewhere) therefore appears in every decided settlement:
  the settlement's 2f+1 prevoters and the value's 2f+1 precommitters share a correct member.
- At the settlement height any other cut is invalid, and a settlement cut at any other height.

A member's kept precommits are durable with its signing state (`PersistPrecommit` records the
`PersistConsensusState` names), so a member restarted between its precommit and the
settlement still shows and requires them (`restored`).

Limits of this version: a settlement must fit one consensus value (the S2 play's quiesced
old-epoch cuts are council-only and small); a faulty member may show made-up values, within
its quota, whose ops the settlement reverts (docs/PROTOCOL.md "Settlement", the open points).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import consensus
from ..checkpoint import Cut, proposal_time_ms, time_valid
from ..errors import RemoteProtocolError
from ..framing import Priority
from ..limits import (
    ENCODED_VALUE_SIZE_BYTES_MAX,
    SETTLEMENT_SIGNER_BYTES_MAX,
    SETTLEMENT_VALUES_MAX,
    SETTLEMENT_VALUES_PER_SIGNER_MAX,
)
from ..messages import ROLLBACK_ITEMS_PER_MESSAGE_MAX, SettlementMessage, encode_message
from ..rollback import verify_settled
from .peers import Peer

if TYPE_CHECKING:
    from .core import NodeCore

Item = tuple[bytes, bytes]

#: Bytes a settlement cut takes besides its listed pairs, and each pair besides its precommit
#: and value (msgpack headers), for the proposer's fair pick (`value` checks the exact size).
_CUT_OVERHEAD_BYTES = 512
_ITEM_OVERHEAD_BYTES = 16


#: Bytes of items one SETTLEMENT message carries (`_item_size` each): what a receiver decodes
#: (one encoded value) less the message's own header.
_MESSAGE_BYTES_MAX = ENCODED_VALUE_SIZE_BYTES_MAX - _CUT_OVERHEAD_BYTES


def _item_size(item: Item) -> int:
    return len(item[0]) + len(item[1]) + _ITEM_OVERHEAD_BYTES


def settlement_messages(items: list[Item]) -> list[SettlementMessage]:
    """`items` in SETTLEMENT messages of at most ROLLBACK_ITEMS_PER_MESSAGE_MAX items and
    _MESSAGE_BYTES_MAX bytes each, in order: a receiver refuses a message larger than one
    encoded value, and 16 values of large cuts are (one item always fits: its value is at most
    a consensus value)."""
    messages: list[SettlementMessage] = []
    batch: list[Item] = []
    size = 0
    for item in items:
        item_size = _item_size(item)
        if batch and (
            len(batch) == ROLLBACK_ITEMS_PER_MESSAGE_MAX or size + item_size > _MESSAGE_BYTES_MAX
        ):
            messages.append(SettlementMessage(tuple(batch)))
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        messages.append(SettlementMessage(tuple(batch)))
    return messages


class Settlement:
    """The old-epoch values known for the current epoch's settlement; its proposal, its
    validity and its effect."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        #: value id -> (precommit, value): shown to us for the current epoch's settlement.
        self.known: dict[bytes, Item] = {}
        #: signer -> [values, bytes] of `known` (the quota per member).
        self.load: dict[bytes, list[int]] = {}

    # --- where the settlement is ---------------------------------------------------------

    def is_height(self, height: int) -> bool:
        """Whether `height` is the current epoch's settlement height (H+1 after a rollback)."""
        rollbacks = self.core.rollbacks
        return rollbacks.history.current_epoch > 0 and height == rollbacks.epoch_first_height()

    def due(self) -> bool:
        """Whether the settlement is the next height to decide (started with no op waiting)."""
        return self.is_height(self.core.final_height + 1)

    def _ended(self) -> tuple[int, int]:
        """(the ended epoch, its H)."""
        history = self.core.rollbacks.history
        ended = history.current_epoch - 1
        _, end = history.heights_of(ended)
        assert end is not None
        return ended, end

    # --- showing and learning old precommits ---------------------------------------------

    def entered(self) -> None:
        """After `enter_epoch` by a certificate: show our own precommits above H to every
        peer (a member's `old_precommits`; nothing for others)."""
        self.known, self.load = {}, {}
        self._show_own()

    def restored(self) -> None:
        """After our kept precommits came back from the signing state (a restart): while the
        settlement is due, show them as `entered` did (peers that connect get them)."""
        if self.due():
            self._show_own()

    def _show_own(self) -> None:
        _, height = self._ended()
        items = [(m.encode(), value) for m, value in self.core.consensus.old_precommits(height)]
        fresh = [item for item in items if self._learn(item)]
        self._send(fresh, None)

    def serve(self, peer: Peer) -> None:
        """On connect, while the settlement is not decided: what we know of it."""
        if self.due() and self.known:
            self._send_to(peer, sorted(self.known.values()))

    def on_message(self, peer: Peer, message: SettlementMessage, now: float) -> None:
        """Learn and relay (once) the old-epoch precommits shown; ones that do not verify for
        the current epoch's settlement are dropped (a peer in another epoch sends them in good
        faith)."""
        del now
        if not self.due():
            return
        fresh = [item for item in message.items if self._learn(item)]
        self._send(fresh, peer.peer_id)

    def _learn(self, item: Item) -> bool:
        """Remember a verified item; False when invalid, known, or over its signer's quota."""
        value_id = self._verify(item)
        return value_id is not None and self._remember(value_id, item)

    def _remember(self, value_id: bytes, item: Item) -> bool:
        """Keep a verified item unless known or over its signer's quota (module docstring)."""
        if value_id in self.known:
            return False
        signer = consensus.decode_message(item[0]).validator
        load = self.load.setdefault(signer, [0, 0])
        size = _item_size(item)
        if (
            load[0] >= SETTLEMENT_VALUES_PER_SIGNER_MAX
            or load[1] + size > SETTLEMENT_SIGNER_BYTES_MAX
        ):
            return False
        load[0], load[1] = load[0] + 1, load[1] + size
        self.known[value_id] = item
        return True

    def _verify(self, item: Item) -> bytes | None:
        ended, height = self._ended()
        genesis = self.core.genesis
        try:
            return verify_settled(
                item[0], item[1], genesis.network_id, list(genesis.council), ended, height
            )
        except RemoteProtocolError:
            return None

    def _send(self, items: list[Item], source: bytes | None) -> None:
        for peer_id in self.core._peer_order:
            if peer_id != source:
                self._send_to(self.core._peers[peer_id], items)

    def _send_to(self, peer: Peer, items: list[Item]) -> None:
        for message in settlement_messages(items):
            peer.encoder.queue_message(encode_message(message), Priority.CONTROL)

    # --- proposing, validating, applying -------------------------------------------------

    def value(self, height: int, now: float) -> bytes | None:
        """The settlement cut we propose at `height`: the values we know (all of them when
        they fit, else a fair pick, `_fair`), sorted; None when it would not fit one consensus
        value."""
        finality = self.core.finality
        time_ms = proposal_time_ms(self.core.wall_ms(now), finality.parent_time_ms())
        root = self.core.ledger.final_state.root()
        settled = tuple(sorted(self._fair()))
        cut = Cut(finality.last_checkpoint_id, height, (), root, time_ms, settled)
        value = cut.encode()
        return value if len(value) <= consensus.CONSENSUS_VALUE_SIZE_BYTES_MAX else None

    def _fair(self) -> list[Item]:
        """At most SETTLEMENT_VALUES_MAX known items within one consensus value, picked level
        by level: every member's first value (in byte order), then every member's second, and so
        on; within a level the smallest first, and one that does not fit is left out."""
        by_signer: dict[bytes, list[Item]] = {}
        for item in sorted(self.known.values()):
            by_signer.setdefault(consensus.decode_message(item[0]).validator, []).append(item)
        queues = [by_signer[signer] for signer in sorted(by_signer)]
        budget = consensus.CONSENSUS_VALUE_SIZE_BYTES_MAX - _CUT_OVERHEAD_BYTES
        picked: list[Item] = []
        for level in range(SETTLEMENT_VALUES_PER_SIGNER_MAX):
            row = sorted(
                (q[level] for q in queues if level < len(q)), key=lambda i: (_item_size(i), i)
            )
            for item in row:
                if len(picked) < SETTLEMENT_VALUES_MAX and _item_size(item) <= budget:
                    picked.append(item)
                    budget -= _item_size(item)
        return picked

    def valid(self, cut: Cut, now: float) -> bool:
        """The settlement's validity rule (module docstring); the values it lists are learned
        (a later proposer of ours lists them too)."""
        finality = self.core.finality
        if (
            cut.settled is None
            or cut.heads
            or cut.state_root != self.core.ledger.final_state.root()
        ):
            return False
        if not time_valid(cut.time_ms, finality.parent_time_ms(), self.core.wall_ms(now)):
            return False
        listed: set[bytes] = set()
        for item in cut.settled:
            value_id = self._verify(item)
            if value_id is None or value_id in listed:
                return False
            listed.add(value_id)
            self._remember(value_id, item)
        _, height = self._ended()
        own = self.core.consensus.old_precommits(height)
        return all(message.value_id in listed for message, _ in own)

    def apply(self, cut: Cut, now: float) -> None:
        """A settlement became final: revert the ops of every cut it settles (those we hold
        now, and those that arrive later, `Rollbacks.revert_cut`)."""
        assert cut.settled is not None
        for precommit, value in cut.settled:
            try:
                epoch = consensus.decode_message(precommit).epoch
                settled = Cut.decode(value)
            except RemoteProtocolError:
                continue  # (a quorum of validators checked it: not reached)
            heads = [(op_id, author, seq) for author, seq, op_id in settled.heads]
            self.core.rollbacks.revert_cut(heads, epoch, now)
        self.known, self.load = {}, {}
