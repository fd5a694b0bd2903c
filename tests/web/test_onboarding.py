"""`[onboarding]`: the validated config section, one-time invite codes (`swarmd council invite`)
and `endorse_handles`, against a real single-node daemon with SQLite (a one-member council: its
endorsement alone binds a handle)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from swarmd.node.cli import main
from swarmd.node.cli.common import EXIT_FAILED, EXIT_OK
from swarmd.node.cli.home import init_home
from swarmd.node.config import ConfigRangeError, ConfigTypeError, parse_config_text
from swarmd.node.web import invites
from swarmd.node.web.api_routes import OnboardingKey
from swarmd.protocol import crypto, encoding
from swarmd.protocol.genesis import Genesis
from tests.node.test_api import FAST, Node, close_node, open_node
from tests.node.test_council_cli import wait_for

ONBOARDING = {"enabled": True, "pow_bits": 8, "endorse_handles": True}


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    keypair = crypto.KeyPair.from_seed(os.urandom(32))
    opened = await open_node(tmp_path / "home", keypair, onboarding=ONBOARDING)
    yield opened
    await close_node(opened)


async def signup(node: Node, body: Any) -> tuple[int, dict[str, Any]]:
    response = await node.api.post("/v1/onboarding/signup", json=body)
    return response.status, await response.json()


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["--json", *argv])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 1, lines
    return code, json.loads(lines[0])


@pytest.mark.parametrize(
    ("text", "error", "key_path"),
    [
        ("[onboarding]\npow_bits = 33\n", ConfigRangeError, "[onboarding].pow_bits"),
        ("[onboarding]\nenabled = 1\n", ConfigTypeError, "[onboarding].enabled"),
        ("[onboarding]\nsignups_per_hour = 0\n", ConfigRangeError, "[onboarding].signups_per_hour"),
        (
            "[onboarding]\nendorse_handles = 'yes'\n",
            ConfigTypeError,
            "[onboarding].endorse_handles",
        ),
    ],
)
def test_the_section_is_validated_with_typed_errors(
    tmp_path: Path, text: str, error: type[Exception], key_path: str
) -> None:
    with pytest.raises(error) as caught:
        parse_config_text(text, tmp_path)
    assert key_path in str(caught.value)
    config = parse_config_text("[onboarding]\nenabled = true\n", tmp_path)
    assert config.onboarding.enabled and not config.onboarding.endorse_handles
    assert config.onboarding.invite_codes_file == tmp_path.absolute() / "invites.txt"


async def test_invite_codes_are_issued_by_the_cli_and_work_once(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(node.home)
    code, issued = await asyncio.to_thread(
        run_json, capsys, "council", "invite", "--home", home, "--count", "2"
    )
    assert code == EXIT_OK and len(issued["codes"]) == 2 and issued["unused"] == 2
    stored = Path(issued["invite_codes_file"]).read_text()
    assert not [c for c in issued["codes"] if c in stored]  # only their hashes are kept
    alice, bob = (crypto.KeyPair.from_seed(os.urandom(32)) for _ in range(2))

    status, body = await signup(node, {"account": alice.account_id, "invite": issued["codes"][0]})
    assert status == 202 and body["amount"] == node.daemon.genesis.signup_reward, body
    status, body = await signup(node, {"account": bob.account_id, "invite": issued["codes"][0]})
    assert (status, body["code"]) == (403, "invite_used")
    status, body = await signup(node, {"account": bob.account_id, "invite": "NOTACODE"})
    assert (status, body["code"]) == (403, "bad_invite")
    assert invites.unused_count(Path(issued["invite_codes_file"])) == 1

    (node.home / "onboarding.toml").write_text("enabled = true\nrequire_invite = true\n")
    status, body = await signup(node, {"account": bob.account_id, "nonce": 0})
    assert (status, body["code"]) == (403, "invite_required")
    status, body = await signup(node, {"account": bob.account_id, "invite": issued["codes"][1]})
    assert status == 202, body


def test_invite_refuses_a_home_that_is_not_a_council_members(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_json(capsys, "init", "--home", str(tmp_path / "a"), "--council", "2")[0] == 0
    outsider = tmp_path / "b"
    code, _ = run_json(
        capsys, "init", "--home", str(outsider), "--genesis", str(tmp_path / "a" / "genesis.json")
    )
    assert code == EXIT_OK

    code, error = run_json(capsys, "council", "invite", "--home", str(outsider))

    assert (code, error["code"]) == (EXIT_FAILED, "not_council")


async def wait_bound(node: Node, handle: str) -> dict[str, Any]:
    """Wait, on the node's own events, until `handle` is bound in its final state."""
    final = node.daemon.core.ledger

    await wait_for(node.daemon, lambda: handle in final.final_state.bindings)
    status, view = await node.get(f"/v1/handles/{handle}")
    assert status == 200 and view["final"]
    return view


async def test_a_free_handle_is_endorsed_and_a_contested_one_left_to_arbitration(
    node: Node,
) -> None:
    onboarding = node.api.server.app[OnboardingKey]
    member = node.daemon.keypair.public_key
    reward = node.daemon.genesis.signup_reward
    alice, bob, carol = node.new_author(), node.new_author(), node.new_author()
    grants = [node.council.grant(person.key, reward) for person in (alice, bob, carol)]
    for grant in grants:
        assert (await node.submit(grant))[0] == 202

    claim = alice.claim("alice", deps=[grants[0].op_id])
    assert (await node.submit(claim))[0] == 202
    bound = await wait_bound(node, "alice")

    assert (bound["owner"], bound["claim_id"]) == (alice.keypair.account_id, claim.op_id.hex())
    assert node.daemon.core.ledger.state.accounts[member].seq == 4  # 3 grants, 1 endorsement

    # Two claims for one free handle, admitted together; and a claim for a bound handle.
    first = bob.claim("shared", deps=[grants[1].op_id])
    second = carol.claim("shared", deps=[grants[2].op_id])
    body = encoding.encode([first.envelope, second.envelope])
    response = await node.api.post(
        "/v1/ops/batch", data=body, headers={"Content-Type": "application/msgpack"}
    )
    assert response.status == 202
    late = carol.claim("alice")
    assert (await node.submit(late))[0] == 202
    await onboarding.idle()

    assert node.daemon.core.ledger.state.accounts[member].seq == 4  # nothing endorsed
    status, view = await node.get("/v1/handles/shared")
    assert status == 200 and view["owner"] is None
    assert [c["endorsements"] for c in view["claims"]] == [0, 0]
    _, alice_view = await node.get("/v1/handles/alice")
    assert alice_view["owner"] == alice.keypair.account_id


async def test_a_read_only_node_refuses_signups_with_its_reason_and_keeps_the_invite(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    code, issued = await asyncio.to_thread(
        run_json, capsys, "council", "invite", "--home", str(node.home), "--count", "1"
    )
    assert code == EXIT_OK
    tester = crypto.KeyPair.from_seed(os.urandom(32))
    assert (await node.set_mode("read-only", "disk replacement")).status == 200

    status, body = await signup(node, {"account": tester.account_id, "invite": issued["codes"][0]})

    assert (status, body["code"]) == (503, "read_only"), body  # as POST /v1/ops answers
    assert body["reason"] == "disk replacement" and "disk replacement" in body["error"]
    assert invites.unused_count(Path(issued["invite_codes_file"])) == 1  # not spent on nothing
    assert (await node.set_mode("normal", "")).status == 200
    status, body = await signup(node, {"account": tester.account_id, "invite": issued["codes"][0]})
    assert status == 202, body


async def test_a_grant_the_ledger_refuses_leaves_the_invite_code_unspent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A council of one whose member may grant once per window: the second signup's grant is
    # refused by the ledger (grant_cap_exceeded), after its invite code was checked.
    keypair = crypto.KeyPair.from_seed(os.urandom(32))
    genesis = Genesis.create("invite-cap", [keypair.public_key], grants_per_member_per_window=1)
    home = tmp_path / "home"
    init_home(
        home, keypair=keypair, genesis=genesis, config_overrides={**FAST, "onboarding": ONBOARDING}
    )
    node = await open_node(home)
    try:
        code, issued = await asyncio.to_thread(
            run_json, capsys, "council", "invite", "--home", str(home), "--count", "2"
        )
        assert code == EXIT_OK
        first, second = (crypto.KeyPair.from_seed(os.urandom(32)) for _ in range(2))
        status, body = await signup(
            node, {"account": first.account_id, "invite": issued["codes"][0]}
        )
        assert status == 202, body
        status, body = await signup(
            node, {"account": second.account_id, "invite": issued["codes"][1]}
        )
        assert (status, body["code"]) == (409, "grant_cap_exceeded"), body
        assert invites.unused_count(Path(issued["invite_codes_file"])) == 1  # the second lives
        status, body = await signup(
            node, {"account": first.account_id, "invite": issued["codes"][0]}
        )
        assert (status, body["code"]) == (409, "already_signed_up"), body
    finally:
        await close_node(node)
