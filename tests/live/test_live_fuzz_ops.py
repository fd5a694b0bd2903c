"""Hypothesis submits correctly signed ops of every kind to a live node (issue 14).

schemathesis cannot make a signed op, so its `POST /v1/ops` examples all stop at the decoder.
Here each example is a short sequence of real ops, signed by the node's own council key, by a
few tester keys whose chains the test follows, or by fresh keys: every kind, amounts up to the
limit, random targets, handles and reasons, dependencies on ops the node has seen (and on
unknown ids), and chain positions that are right, stale, ahead or forked. They go in as raw
envelopes, JSON `{"envelope": hex}` or msgpack batches. Then the op and its author's account
are read back, the way a wallet follows a submission.

Every answer must be 202 with a documented status, or a typed refusal in the JSON error shape
(400 for a rejected op, 503 only as read-only/quiesced); the reads must answer 200 or 404; the
node's log must show no bug; the node must still answer `/v1/status` at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from swarmd.protocol import encoding, limits
from swarmd.protocol.crypto import KeyPair, account_id_text
from swarmd.protocol.errors import ProtocolError
from swarmd.protocol.ops import Kind, Op, build_op
from tests.live.conftest import LiveNode, fuzz_examples

#: The 202 answers docs/parts/daemon.md lists (`excluded`: the op lost a fork arbitration).
SUBMIT_STATUSES = {"accepted", "pending", "excluded", "duplicate", "rejected"}
#: Refusals a mode explains (503); any other 5xx is a bug.
MODE_CODES = {"read_only", "quiesced"}
#: Ops per example: enough for a grant, a transfer of it and a claim with its endorsement.
STEPS_MAX = 6
TIMEOUT_S = 10.0


@dataclass
class Chain:
    keypair: KeyPair
    seq: int = 0
    head: bytes = b""


@dataclass
class World:
    """What the test knows of the node across examples: authors' chains and op ids seen."""

    node: LiveNode
    chains: list[Chain]
    #: The genesis signup reward: the only amount a grant may carry.
    reward: int
    op_ids: list[bytes] = field(default_factory=list)
    claims: list[Op] = field(default_factory=list)


@pytest.fixture(scope="module")
def world(live_node: LiveNode) -> Iterator[World]:
    testers = [Chain(KeyPair.from_seed(os.urandom(32))) for _ in range(3)]
    reward = live_node.status()["signup_reward"]
    yield World(live_node, [Chain(live_node.keypair), *testers], reward)


amounts = st.integers(0, 10) | st.integers(0, limits.AMOUNT_MAX + 1) | st.just(limits.AMOUNT_MAX)
texts = st.text(max_size=40) | st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
#: (kind, author index (-1: a fresh key), chain position, amount, text, dep picks, transport)
#: Mostly value and handle ops; council votes rarely, and no quiesce (the admin fuzz votes it):
#: a council of one would quiesce at once and every later op would only meet 503.
kinds = st.sampled_from(
    [
        *(Kind.GRANT, Kind.GRANT, Kind.TRANSFER, Kind.TRANSFER, Kind.BURN, Kind.BURN),
        *(Kind.HANDLE_CLAIM, Kind.HANDLE_CLAIM, Kind.HANDLE_ENDORSE, Kind.HANDLE_REVOKE),
        *(Kind.COUNCIL_RESUME, Kind.COUNCIL_PAUSE_CLAIMS, Kind.COUNCIL_RESUME_CLAIMS),
    ]
)
steps = st.tuples(
    kinds,
    st.sampled_from([0, 0, 1, 2, 3, -1]),
    st.sampled_from(["next", "next", "next", "stale", "ahead", "forked"]),
    amounts,
    texts,
    st.lists(st.integers(0, 2**16), max_size=3),
    st.sampled_from(["raw", "json", "batch"]),
)


def _fields(world: World, kind: Kind, amount: int, text: str, deps: list[bytes]) -> dict[str, Any]:
    to = world.chains[amount % len(world.chains)].keypair.public_key
    claim = world.claims[amount % len(world.claims)] if world.claims else None
    if kind == Kind.GRANT:  # mostly the one valid amount, so testers get funds to move
        return {"to": to, "amount": world.reward if amount <= 10 else amount}
    if kind == Kind.TRANSFER:
        return {"to": to, "amount": amount, "deps": deps}
    if kind == Kind.BURN:
        return {"amount": amount, "target": text, "deps": deps}
    if kind == Kind.HANDLE_CLAIM:
        return {"handle": text}
    if kind == Kind.HANDLE_ENDORSE:
        claim_id = claim.op_id if claim else os.urandom(32)
        return {"claim": claim_id, "deps": [claim_id]}
    if kind == Kind.HANDLE_REVOKE:
        handle = claim.fields["handle"] if claim else text
        return {"handle": handle, "deps": [claim.op_id] if claim else deps}
    return {"reason": text}


def build(world: World, step: tuple[Any, ...]) -> tuple[Op, Chain | None] | None:
    """The signed op of one step (None when the drawn fields cannot make a valid op)."""
    kind, who, position, amount, text, picks, _ = step
    chain = world.chains[who] if who >= 0 else Chain(KeyPair.from_seed(os.urandom(32)))
    known = world.op_ids or [os.urandom(32)]
    deps = [known[pick % len(known)] if pick % 5 else os.urandom(32) for pick in picks]
    seq, prev = {
        "next": (chain.seq + 1, chain.head),
        "stale": (max(chain.seq, 1), chain.head),
        "ahead": (chain.seq + 2, chain.head),
        "forked": (chain.seq + 1, os.urandom(32) if chain.seq else b""),
    }[position]
    fields = _fields(world, kind, amount, text, deps)
    op_deps = [dep for dep in fields.pop("deps", []) if dep != prev]
    try:
        op = build_op(
            chain.keypair,
            world.node.network_id,
            kind,
            seq=seq,
            prev=prev,
            deps=op_deps,
            **fields,
        )
    except ProtocolError:
        return None
    return op, (chain if who >= 0 and position == "next" else None)


def error_body(response: requests.Response) -> dict[str, Any]:
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()
    assert isinstance(body["error"], str) and isinstance(body["code"], str), body
    assert body["code"], body
    return body


def submit(node: LiveNode, http: requests.Session, op: Op, via: str) -> str | None:
    """Submit `op`; its status when the node took it (202), None when refused."""
    url, data, kind = node.url + "/v1/ops", op.envelope, "application/octet-stream"
    if via == "json":
        data, kind = json.dumps({"envelope": op.envelope.hex()}).encode(), "application/json"
    elif via == "batch":
        url, data, kind = url + "/batch", encoding.encode([op.envelope]), "application/msgpack"
    response = http.post(url, data=data, headers={"Content-Type": kind}, timeout=TIMEOUT_S)
    if response.status_code != 202:
        body = error_body(response)
        assert response.status_code == 400 or (
            response.status_code == 503 and body["code"] in MODE_CODES
        ), (response.status_code, body)
        event(f"refused: {body['code']}")
        return None
    body = response.json()
    result = body["results"][0] if via == "batch" else body
    assert result["op_id"] == op.op_id.hex() and result["status"] in SUBMIT_STATUSES, body
    status: str = result["status"]
    return status


def read_back(node: LiveNode, http: requests.Session, op: Op) -> None:
    response = http.get(f"{node.url}/v1/ops/{op.op_id.hex()}", timeout=TIMEOUT_S)
    assert response.status_code in (200, 404), response.text
    if response.status_code == 404:
        error_body(response)
    account = http.get(f"{node.url}/v1/accounts/{account_id_text(op.author)}", timeout=TIMEOUT_S)
    assert account.status_code == 200, account.text


@settings(
    max_examples=fuzz_examples(),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
@given(plan=st.lists(steps, min_size=1, max_size=STEPS_MAX))
def test_signed_ops_of_every_kind_get_typed_answers(
    world: World, http: requests.Session, plan: list[tuple[Any, ...]]
) -> None:
    node = world.node
    for step in plan:
        built = build(world, step)
        if built is None:
            continue
        op, chain = built
        status = submit(node, http, op, step[-1])
        event(f"{op.kind.label}: {status or 'refused'}")  # --hypothesis-show-statistics
        if status in ("accepted", "pending"):
            world.op_ids.append(op.op_id)
            if op.kind == Kind.HANDLE_CLAIM:
                world.claims.append(op)
            if chain is not None:
                chain.seq, chain.head = op.seq, op.op_id
        read_back(node, http, op)
    found = node.problems()
    assert not found, "node log shows a bug:\n" + "\n".join(found[:20])


def test_the_node_is_healthy_after_the_ops_fuzz(world: World) -> None:
    world.node.assert_healthy()
    with contextlib.suppress(KeyError):
        assert world.node.status()["final_height"] >= 0
