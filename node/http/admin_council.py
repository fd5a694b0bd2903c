"""Council broadcasts through the admin interface: signed by the node's own key.

A council member's node holds the member's key (the key in its home), so the admin interface
signs the council's ops with it and submits them through the core like a client op (the core
decides what a quiesced node still admits). Routes (admin token required, like every admin
route):

  POST /v1/admin/council/quiesce        {"reason": text}
  POST /v1/admin/council/resume         {"reason": text}
  POST /v1/admin/council/revoke         {"handle": name[, "claim": op id hex]}
  POST /v1/admin/council/endorse        {"claim": op id hex}
  POST /v1/admin/council/pause-claims   {"reason": text}
  POST /v1/admin/council/resume-claims  {"reason": text}
  POST /v1/admin/council/rollback       {"to_height": H, "reason": text}
  GET  /v1/admin/council                each member's latest vote on every open question

A node whose key is not in the genesis council answers 403 `not_council` before signing.

Pending core work is reached through two small interfaces, `ClaimsVoting` (protocol/wallet.py's
`Author.pause_claims/resume_claims`, branch quiesce) and `RollbackProposing`
(`NodeCore.propose_rollback`, branch rollback). Until the object in hand has the method, the
route answers 501 `not_supported`; once it lands, the route works with no change here.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from aiohttp import web

from swarmd.protocol import crypto, limits
from swarmd.protocol.errors import ProtocolError
from swarmd.protocol.ledger.state import LedgerState
from swarmd.protocol.ops import Kind, Op, check_handle
from swarmd.protocol.wallet import Author

from ..runtime.driver import Daemon
from .body import parse_json
from .errors import ApiError, DaemonKey

#: Claims listed by the council status (those with at least one endorsement or revocation,
#: undecided ones first); the counts are always given. An operator reads it on a terminal.
COUNCIL_STATUS_CLAIMS_LISTED_MAX = 256


@runtime_checkable
class ClaimsVoting(Protocol):
    """Signs the Stage 1 claim-pause votes (`Author.pause_claims/resume_claims`)."""

    def pause_claims(self, reason: str = "") -> Op: ...

    def resume_claims(self, reason: str = "") -> Op: ...


@runtime_checkable
class RollbackProposing(Protocol):
    """Starts a council rollback to a final height (`NodeCore.propose_rollback`): the core
    signs the member's rollback vote and gossips it."""

    def propose_rollback(self, height: int, reason: str, now: float) -> object: ...


def add_council_routes(app: web.Application) -> None:
    app.router.add_get("/v1/admin/council", get_council)
    for action, handler in _ACTIONS.items():
        app.router.add_post(f"/v1/admin/council/{action}", _route(action, handler))


# --- signing -------------------------------------------------------------------------------------


def member_author(daemon: Daemon) -> Author:
    """An `Author` for the node's key at its provisional chain position; 403 `not_council`
    when the key is not a council member."""
    if daemon.node_id not in daemon.genesis.council:
        raise ApiError(
            403,
            "not_council",
            f"this node ({daemon.node_id_text}) is not a council member of this network",
        )
    account = daemon.core.ledger.state.accounts.get(daemon.node_id)
    seq, head = (account.seq, account.head) if account is not None else (0, b"")
    return Author(daemon.keypair, daemon.genesis.network_id, seq=seq, head=head)


async def submit_signed(daemon: Daemon, action: str, op: Op) -> dict[str, Any]:
    """Submit an op the node signed; answered once durable, like `POST /v1/ops`."""
    try:
        outcome = await daemon.submit(op.envelope)
    except (ProtocolError, OSError, sqlite3.Error) as exc:
        code = getattr(exc, "code", "storage_error")
        raise ApiError(503, code, "the node could not store the op; try again later") from None
    body: dict[str, Any] = {
        "action": action,
        "kind": op.kind.label,
        "op_id": op.op_id.hex(),
        "member": daemon.node_id_text,
        "status": outcome.status,
    }
    if outcome.status == "rejected":
        status = 503 if outcome.code in ("read_only", "quiesced") else 400
        detail = outcome.detail or outcome.code
        extra = {"action": action, "kind": op.kind.label, "op_id": body["op_id"]}
        raise ApiError(status, outcome.code, f"{op.kind.label} refused: {detail}", **extra)
    return body


# --- request fields ------------------------------------------------------------------------------


def _reason(value: dict[str, Any], *, required: bool = False) -> str:
    reason = value.get("reason", "")
    if not isinstance(reason, str) or len(reason.encode()) > limits.REASON_SIZE_BYTES_MAX:
        raise ApiError(
            400,
            "bad_reason",
            f"reason must be text of at most {limits.REASON_SIZE_BYTES_MAX} bytes",
        )
    if required and not reason.strip():
        raise ApiError(400, "bad_reason", "a reason is required")
    return reason


def _claim_id(text: object) -> bytes:
    try:
        value = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        value = b""
    if len(value) != limits.HASH_SIZE_BYTES:
        raise ApiError(
            400, "bad_claim", f"claim must be an op id ({limits.HASH_SIZE_BYTES} bytes hex)"
        )
    return value


def _known_claim(state: LedgerState, claim_id: bytes) -> None:
    if claim_id not in state.claims:
        raise ApiError(404, "unknown_claim", f"no claim {claim_id.hex()} is known to this node")


def revoke_target(state: LedgerState, handle: str, claim: object) -> bytes:
    """The claim a revocation of `handle` names: the given one, else the bound one, else the
    handle's only claim."""
    if claim is not None:
        claim_id = _claim_id(claim)
        _known_claim(state, claim_id)
        if state.claims[claim_id].handle != handle:
            raise ApiError(400, "bad_claim", f"claim {claim_id.hex()} is not a claim of {handle}")
        return claim_id
    binding = state.bindings.get(handle)
    if binding is not None:
        bound: bytes = binding.claim_id
        return bound
    claims = sorted(cid for cid, item in state.claims.items() if item.handle == handle)
    if not claims:
        raise ApiError(404, "unknown_handle", f"no claim of {handle} is known to this node")
    only: bytes = claims[0]
    if len(claims) > 1:
        raise ApiError(
            409,
            "ambiguous_handle",
            f"{handle} is not bound and has {len(claims)} claims: name one with `claim`",
            claims=[cid.hex() for cid in claims[:COUNCIL_STATUS_CLAIMS_LISTED_MAX]],
        )
    return only


# --- the actions ---------------------------------------------------------------------------------

#: One council action: the daemon and the request's JSON object in, the response body out.
Action = Callable[[Daemon, dict[str, Any]], Any]


async def _quiesce(daemon: Daemon, value: dict[str, Any]) -> dict[str, Any]:
    reason = _reason(value, required=True)
    return await submit_signed(daemon, "quiesce", member_author(daemon).quiesce(reason))


async def _resume(daemon: Daemon, value: dict[str, Any]) -> dict[str, Any]:
    reason = _reason(value, required=True)
    return await submit_signed(daemon, "resume", member_author(daemon).resume(reason))


async def _revoke(daemon: Daemon, value: dict[str, Any]) -> dict[str, Any]:
    handle = value.get("handle")
    try:
        check_handle(handle)
    except ProtocolError as exc:
        raise ApiError(400, exc.code, exc.message) from None
    assert isinstance(handle, str)
    author = member_author(daemon)
    claim_id = revoke_target(daemon.core.ledger.state, handle, value.get("claim"))
    op = author.sign(Kind.HANDLE_REVOKE, handle=handle, deps=[claim_id])
    result = await submit_signed(daemon, "revoke", op)
    return {**result, "handle": handle, "claim": claim_id.hex()}


async def _endorse(daemon: Daemon, value: dict[str, Any]) -> dict[str, Any]:
    claim_id = _claim_id(value.get("claim"))
    author = member_author(daemon)
    state = daemon.core.ledger.state
    _known_claim(state, claim_id)
    op = author.sign(Kind.HANDLE_ENDORSE, claim=claim_id, deps=[claim_id])
    result = await submit_signed(daemon, "endorse", op)
    return {**result, "handle": state.claims[claim_id].handle, "claim": claim_id.hex()}


def _not_supported(what: str, where: str) -> ApiError:
    return ApiError(
        501, "not_supported", f"{what} is not supported by this build yet (needs {where})"
    )


async def _claims_vote(daemon: Daemon, value: dict[str, Any], pause: bool) -> dict[str, Any]:
    reason = _reason(value)
    author = member_author(daemon)
    action = "pause-claims" if pause else "resume-claims"
    if not isinstance(author, ClaimsVoting):
        raise _not_supported(f"council {action}", "Author.pause_claims/resume_claims")
    op = author.pause_claims(reason) if pause else author.resume_claims(reason)
    return await submit_signed(daemon, action, op)


async def _pause_claims(daemon: Daemon, value: dict[str, Any]) -> dict[str, Any]:
    return await _claims_vote(daemon, value, True)


async def _resume_claims(daemon: Daemon, value: dict[str, Any]) -> dict[str, Any]:
    return await _claims_vote(daemon, value, False)


async def _rollback(daemon: Daemon, value: dict[str, Any]) -> dict[str, Any]:
    height = value.get("to_height")
    if type(height) is not int or height < 0:
        raise ApiError(400, "bad_height", "to_height must be a final height (0 = genesis)")
    reason = _reason(value, required=True)
    member_author(daemon)  # the membership check
    core = daemon.core
    final_height = core.ledger.final_height
    if not isinstance(core, RollbackProposing):
        raise _not_supported("council rollback", "NodeCore.propose_rollback")
    if height > final_height:
        raise ApiError(
            400, "bad_height", f"height {height} is not final here (final: {final_height})"
        )
    result = core.propose_rollback(height, reason, asyncio.get_running_loop().time())
    daemon.pump()
    await daemon.committer.barrier()
    return {
        "action": "rollback",
        "to_height": height,
        "member": daemon.node_id_text,
        "result": None if result is None else str(result),
    }


_ACTIONS: dict[str, Action] = {
    "quiesce": _quiesce,
    "resume": _resume,
    "revoke": _revoke,
    "endorse": _endorse,
    "pause-claims": _pause_claims,
    "resume-claims": _resume_claims,
    "rollback": _rollback,
}


def _route(action: str, handler: Action) -> Callable[[web.Request], Any]:
    async def route(request: web.Request) -> web.Response:
        value = await json_object(request)
        return web.json_response(await handler(request.app[DaemonKey], value))

    route.__name__ = f"post_council_{action.replace('-', '_')}"
    return route


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (an empty body is `{}`), read by the one bounded reader (a
    body nested thousands deep is a typed 400, not a RecursionError)."""
    size_max = limits.ADMIN_JSON_BODY_SIZE_BYTES_MAX
    value = parse_json(await request.content.read(size_max + 1) or b"{}", size_max)
    if not isinstance(value, dict):
        raise ApiError(400, "bad_request", "body must be a JSON object")
    return value


# --- the council status --------------------------------------------------------------------------


async def get_council(request: web.Request) -> web.Response:
    return web.json_response(council_status(request.app[DaemonKey]))


def council_status(daemon: Daemon) -> dict[str, Any]:
    """Each member's latest vote on every question, from the node's final state (and the
    mode votes of its provisional state, so a vote just cast shows before it is final)."""
    genesis = daemon.genesis
    core = daemon.core
    final = core.ledger.final_state
    quorum = genesis.quorum
    members = [crypto.account_id_text(key) for key in genesis.council]
    questions = [_tally("quiesce", genesis.council, final.mode_votes, quorum, final.quiesced)]
    claims_votes = getattr(final, "claims_votes", None)
    if isinstance(claims_votes, dict):
        paused = sum(claims_votes.values()) >= quorum
        questions.append(_tally("pause_claims", genesis.council, claims_votes, quorum, paused))
    claim_questions, claims_with_votes = _claim_questions(final, genesis.council, quorum)
    questions += claim_questions
    core_status = core.status()
    return {
        "node_id": daemon.node_id_text,
        "member": daemon.node_id in genesis.council,
        "council": members,
        "quorum": quorum,
        "final_height": core.ledger.final_height,
        "epoch": core_status.get("epoch"),
        "mode": core.effective_mode.value,
        "provisional": {
            "quiesced": core.ledger.state.quiesced,
            "quiesce_votes": _votes(genesis.council, core.ledger.state.mode_votes),
        },
        "questions": questions,
        "claims_with_votes": claims_with_votes,
        "lacking_quorum": [q["question_id"] for q in questions if not q["decided"]],
    }


def _votes(council: tuple[bytes, ...], votes: Mapping[bytes, bool]) -> dict[str, bool | None]:
    return {crypto.account_id_text(member): votes.get(member) for member in council}


def _tally(
    question: str, council: tuple[bytes, ...], votes: Mapping[bytes, bool], quorum: int, on: bool
) -> dict[str, Any]:
    """A yes/no question every member votes on (latest vote counts): quiesce, pause claims."""
    yes = sum(1 for member in council if votes.get(member))
    return {
        "question": question,
        "question_id": question,
        "votes": _votes(council, votes),
        "yes": yes,
        "quorum": quorum,
        "decided": on,
        "lacks": 0 if on else max(0, quorum - yes),
    }


def _claim_questions(
    state: LedgerState, council: tuple[bytes, ...], quorum: int
) -> tuple[list[dict[str, Any]], int]:
    """Endorsement and revocation questions of the claims any member voted on."""
    rows: list[tuple[bool, str, bytes, dict[str, Any]]] = []
    for claim_id in sorted(state.claims):
        claim = state.claims[claim_id]
        for question, voters in (("endorse", claim.endorsers), ("revoke", claim.revokers)):
            if not voters:
                continue
            decided = len(voters) >= quorum
            row = {
                "question": question,
                "question_id": f"{question}:{claim.handle}:{claim_id.hex()[:12]}",
                "handle": claim.handle,
                "claim": claim_id.hex(),
                "claimant": crypto.account_id_text(claim.claimant),
                "votes": {
                    crypto.account_id_text(member): member in voters or None for member in council
                },
                "yes": len(voters),
                "quorum": quorum,
                "decided": decided,
                "lacks": max(0, quorum - len(voters)),
            }
            rows.append((decided, claim.handle, claim_id, row))
    rows.sort(key=lambda item: (item[0], item[1], item[2]))
    return [row for *_, row in rows[:COUNCIL_STATUS_CLAIMS_LISTED_MAX]], len(rows)
