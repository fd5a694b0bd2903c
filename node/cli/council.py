"""`swarmd council ...`: a council member's broadcasts, signed by its node's key.

Every command talks to the home's running node through its admin interface (loopback + the
cookie token, like `swarmd admin`); the node signs with the key in its home and submits
through its core (http/admin_council.py). A node whose key is not a council member answers
`not_council`; a stopped node `cookie_missing` or `node_unreachable`. Each error is one
typed line (or JSON object) and exit status 2.

  swarmd council quiesce|resume --home DIR --reason TEXT
  swarmd council revoke --home DIR --handle NAME [--claim OP_ID]
  swarmd council endorse --home DIR --claim OP_ID
  swarmd council pause-claims|resume-claims --home DIR [--reason TEXT]
  swarmd council rollback --home DIR --to-height H --reason TEXT
  swarmd council status --home DIR
  swarmd council invite --home DIR [--count N]   (cli/invite.py: no node needed)
"""

from __future__ import annotations

import argparse
from typing import Any

from swarmd.protocol import limits

from . import invite
from .admin import admin_client
from .common import EXIT_OK, Add, CliError, Output, load_home_config, nested, no_handler, sub

#: The vote broadcasts that carry only a reason: (command, help).
BROADCASTS = (
    ("quiesce", "vote to quiesce the network (a quorum halts client ops)"),
    ("resume", "vote to resume the network (a quorum lifts a quiesce)"),
    ("pause-claims", "vote to refuse new handle claims (Stage 1)"),
    ("resume-claims", "vote to accept handle claims again"),
)
#: Broadcasts whose --reason is required (an operator must say why the network stops).
REASON_REQUIRED = ("quiesce", "resume", "rollback")


def _claim_hex(text: str) -> str:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != limits.HASH_SIZE_BYTES:
        raise argparse.ArgumentTypeError(f"{text!r} is not an op id (64 hex digits)")
    return value.hex()


def _height(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 (genesis) or more")
    return value


def _reason(text: str) -> str:
    if len(text.encode()) > limits.REASON_SIZE_BYTES_MAX:
        raise argparse.ArgumentTypeError(f"at most {limits.REASON_SIZE_BYTES_MAX} bytes")
    return text


def _post(args: argparse.Namespace, body: dict[str, Any]) -> dict[str, Any]:
    client = admin_client(load_home_config(args.home))
    result: dict[str, Any] = client.post_json(f"/v1/admin/council/{args.action}", body)
    return result


def cmd_broadcast(args: argparse.Namespace, out: Output) -> int:
    body: dict[str, Any] = {"reason": args.reason}
    if args.action == "rollback":
        body["to_height"] = args.to_height
    if args.action in REASON_REQUIRED and not args.reason.strip():
        raise CliError(f"council {args.action} needs a non-empty --reason", "usage")
    result = _post(args, body)
    out.result(result, _broadcast_text(result))
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace, out: Output) -> int:
    body: dict[str, Any] = {"handle": args.handle}
    if args.claim is not None:
        body["claim"] = args.claim
    result = _post(args, body)
    out.result(result, _broadcast_text(result))
    return EXIT_OK


def cmd_endorse(args: argparse.Namespace, out: Output) -> int:
    result = _post(args, {"claim": args.claim})
    out.result(result, _broadcast_text(result))
    return EXIT_OK


def _broadcast_text(result: dict[str, Any]) -> str:
    if result.get("action") == "rollback":
        return f"rollback vote to height {result['to_height']} cast by {result['member']}"
    text = f"{result['kind']} {result['op_id']} {result['status']} (signed by {result['member']})"
    if "handle" in result:
        text += f"\nhandle {result['handle']} claim {result['claim']}"
    return text


def cmd_status(args: argparse.Namespace, out: Output) -> int:
    client = admin_client(load_home_config(args.home))
    result: dict[str, Any] = client.get("/v1/admin/council")
    out.result(result, status_text(result))
    return EXIT_OK


def status_text(status: dict[str, Any]) -> str:
    epoch = status.get("epoch")
    lines = [
        f"council of {len(status['council'])}, quorum {status['quorum']}, "
        f"final height {status['final_height']}"
        + (f", epoch {epoch}" if epoch is not None else "")
        + f", mode {status['mode']}",
        f"this node {'is' if status['member'] else 'is NOT'} a member ({status['node_id']})",
    ]
    for question in status["questions"]:
        state = "DECIDED" if question["decided"] else f"lacks {question['lacks']}"
        lines.append(
            f"{question['question_id']}: {question['yes']}/{question['quorum']} yes, {state}"
        )
        for member, vote in question["votes"].items():
            lines.append(f"    {member}  {_vote_text(question['question'], vote)}")
    provisional = status["provisional"]
    final_votes = _final_votes(status, "quiesce")
    # Not yet final: a member whose provisional latest vote is quiesce while its final one
    # is not (its final quiesce votes are counted in the question above).
    cast = [
        member
        for member, vote in provisional["quiesce_votes"].items()
        if vote and final_votes.get(member) is not True
    ]
    lines.append(f"not yet final: {len(cast)} quiesce vote(s), quiesced: {provisional['quiesced']}")
    if status["lacking_quorum"]:
        lines.append("lacking a quorum: " + ", ".join(status["lacking_quorum"]))
    return "\n".join(lines)


def _final_votes(status: dict[str, Any], question: str) -> dict[str, bool | None]:
    for entry in status["questions"]:
        if entry["question"] == question:
            votes: dict[str, bool | None] = entry["votes"]
            return votes
    return {}


def _vote_text(question: str, vote: bool | None) -> str:
    if vote is None:
        return "-"
    if question == "quiesce":
        return "quiesce" if vote else "resume"
    if question == "pause_claims":
        return "pause" if vote else "resume"
    return question


def register(add: Add) -> None:
    council = add("council", no_handler, "council broadcasts signed by this node's key")
    actions = nested(council, "council_action")
    for action, help_text in BROADCASTS:
        parser = sub(actions, action, cmd_broadcast, help_text)
        parser.add_argument("--home", required=True)
        required = action in REASON_REQUIRED
        parser.add_argument("--reason", type=_reason, required=required, default="")
        parser.set_defaults(action=action)
    rollback = sub(actions, "rollback", cmd_broadcast, "vote to roll the network back to H")
    rollback.add_argument("--home", required=True)
    rollback.add_argument("--to-height", type=_height, required=True)
    rollback.add_argument("--reason", type=_reason, required=True)
    rollback.set_defaults(action="rollback")
    revoke = sub(actions, "revoke", cmd_revoke, "vote to revoke a handle's claim")
    revoke.add_argument("--home", required=True)
    revoke.add_argument("--handle", required=True)
    revoke.add_argument("--claim", type=_claim_hex, help="the claim (default: the bound one)")
    revoke.set_defaults(action="revoke")
    endorse = sub(actions, "endorse", cmd_endorse, "endorse a handle claim")
    endorse.add_argument("--home", required=True)
    endorse.add_argument("--claim", type=_claim_hex, required=True)
    endorse.set_defaults(action="endorse")
    invite.register(actions)
    status = sub(actions, "status", cmd_status, "each member's latest vote on every question")
    status.add_argument("--home", required=True)
