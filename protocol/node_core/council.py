"""The council control plane in the core (docs/PROTOCOL.md, "Council control plane").

- Quiesced by the council (a quorum's latest mode vote is quiesce, in the provisional or the
  final state) or locally (`Mode.QUIESCED`, set by the node's admin): the node admits only the
  council kinds (`ops.COUNCIL_KINDS`), from local submission and from peers; every other op is
  refused with `quiesced`. An op this node asked for itself (the missing ops of a decided cut,
  of a proposal it validates, of a pending op) is always admitted: refusing it could leave a
  decided height unfinalizable here.
- While the *final* state is quiesced, a cut may become final only when every op it makes
  final is authored by a council member and each member's last op in it is of a council kind
  (`cut_admissible`): validators prevote nil on any other cut, and proposers propose only such
  heads (`council_heads`). Consensus keeps running, so a
  quorum of `council.resume` becomes final and ends the quiesce.
- A proposer whose provisional state is quiesced (the votes admitted, not final yet) proposes
  council-only cuts too (`proposes_council_only`): its quiesced peers would not hold the
  client ops it could add, and the quiesce votes are what must become final first.
- A locally quiesced node keeps its old meaning for itself only: it takes no part in consensus
  (it neither proposes, votes nor relays consensus messages) but still admits council ops. It
  cannot halt the network for good: it is one vote, and its operator lifts it.
- After a rollback certificate the node is quiesced (reason `rollback`) until a quorum of
  `council.resume` votes is final in the new epoch (rollbacks.py, `awaiting_resume`): the
  certificate reverts the quiesce votes final above its height, and the play's resume comes
  after operators confirmed the hashes. It counts as final-state quiesced for the cut rules.
- Claims paused (a quorum's latest claims vote is pause, in the provisional or the final
  state): new `handle.claim` ops are refused with `claims_paused` (same exemption for ops this
  node asked for).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..codes import RejectCode
from ..crypto import sha256
from ..ops import COUNCIL_KINDS, Kind, Op, envelope_kind_number
from .config import Mode

if TYPE_CHECKING:
    from .core import NodeCore

_COUNCIL_KIND_NUMBERS = frozenset(int(kind) for kind in COUNCIL_KINDS)
_CLAIM = int(Kind.HANDLE_CLAIM)

Head = tuple[bytes, int, bytes]


def is_council_op(envelope: bytes) -> bool:
    """Whether an envelope is of a council kind, read from the canonical envelope layout
    without decoding (a non-canonical envelope is not admitted anyway)."""
    return envelope_kind_number(envelope) in _COUNCIL_KIND_NUMBERS


def quiesced(core: NodeCore) -> bool:
    """Quiesced locally or by the council (provisional or final state, or a rollback that
    awaits the council's resume)."""
    ledger = core.ledger
    return core.mode is Mode.QUIESCED or ledger.state.quiesced or final_quiesced(core)


def final_quiesced(core: NodeCore) -> bool:
    """Quiesced by the final history, the same on every node at a height: the final state's
    mode votes, or a rollback certificate entered and no quorum of resumes final in its
    epoch yet (rollbacks.py). Only council-only cuts are decided then."""
    return core.ledger.final_state.quiesced or core.rollbacks.awaiting_resume


def claims_paused(core: NodeCore) -> bool:
    quorum = core.genesis.quorum
    ledger = core.ledger
    return ledger.state.claims_paused(quorum) or ledger.final_state.claims_paused(quorum)


def refusal(core: NodeCore, envelope: bytes) -> str | None:
    """The code an op is refused with by the node's mode, or None when it may be admitted
    (read-only is the caller's: it refuses local submissions only)."""
    if quiesced(core):
        return None if is_council_op(envelope) else RejectCode.QUIESCED
    if envelope_kind_number(envelope) == _CLAIM and claims_paused(core):
        return RejectCode.CLAIMS_PAUSED
    return None


def refusal_from_peer(core: NodeCore, envelope: bytes) -> str | None:
    """`refusal` for an op a peer sent, except that an op this node asked for is admitted."""
    code = refusal(core, envelope)
    if code is None or _asked_for(core, sha256(envelope)):
        return None
    return code


def _asked_for(core: NodeCore, op_id: bytes) -> bool:
    if op_id in core.gossip.fetch_requested:
        return True
    awaiting = core.finality.awaiting_decision
    if awaiting is not None:
        _, cut, _ = awaiting
        return op_id in core.ledger.cut_closure([head for _, _, head in cut.heads])[1]
    return False


def cut_admissible(core: NodeCore, closure: set[bytes]) -> bool:
    """Whether a cut making `closure` final may be decided now: always, unless the final
    state is quiesced; then only when it is council-only (`council_only`)."""
    return not final_quiesced(core) or council_only(core, closure)


def council_only(core: NodeCore, closure: set[bytes]) -> bool:
    """Whether every op of `closure` is authored by a council member and each member's last
    op in it is of a council kind (a member's earlier ops ride along with the council op that
    chains on them: without that, a member who signed a grant just before the quiesce could
    never get its resume final)."""
    ledger = core.ledger
    council = core.genesis.council
    last: dict[bytes, Op] = {}
    for op_id in closure:
        op = ledger.op(op_id)
        if op is None or op.author not in council:
            return False
        top = last.get(op.author)
        if top is None or op.seq > top.seq:
            last[op.author] = op
    return all(op.kind in COUNCIL_KINDS for op in last.values())


def proposes_council_only(core: NodeCore) -> bool:
    """Whether a proposer puts only `council_heads` in its cuts: while the final state is
    quiesced (the rule every validator checks), and also while only the provisional state is
    (a quorum's quiesce votes admitted, not final yet). Then its quiesced peers refuse client
    ops from peers and take one only when they ask for it: a cut with client ops they never
    received (say those a minority side admitted during a split) has each validator fetch
    them from a random peer that mostly lacks them too, rounds time out meanwhile, and the
    quiesce itself is not final until they arrive. The council-only cut decides the votes."""
    return final_quiesced(core) or core.ledger.state.quiesced


def council_heads(core: NodeCore) -> list[Head]:
    """The heads a proposer puts in a cut while `proposes_council_only`: per council member
    with unfinal ops, the highest op of its chain whose closure is council-only on its own
    (sorted by author, like `Ledger.unfinalized_heads`)."""
    ledger = core.ledger
    council = core.genesis.council
    final_accounts = ledger.final_state.accounts
    heads: list[Head] = []
    for author, seq, head in ledger.unfinalized_heads():
        if author not in council:
            continue
        final_account = final_accounts.get(author)
        final_seq = final_account.seq if final_account else 0
        op_id = head
        while seq > final_seq:
            closure, missing = ledger.cut_closure([op_id])
            if not missing and council_only(core, closure):
                heads.append((author, seq, op_id))
                break
            op = ledger.op(op_id)
            if op is None:
                break
            op_id, seq = op.prev, seq - 1
    return heads
