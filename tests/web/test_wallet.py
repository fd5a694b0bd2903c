"""A beta tester's way in, in a real browser against a real 4-node devnet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from swarmd.node.cli import main
from swarmd.node.cli.client import NodeClient, author_from_node
from swarmd.node.cli.common import load_key_file
from swarmd.protocol import crypto
from swarmd.protocol.ops import Kind
from tests.vectors.make_vectors import VECTOR_FILE

from .conftest import screenshot

pytestmark = pytest.mark.integration

#: Puzzle cost in the tests: small, so a signup takes milliseconds; the path is the same.
TEST_POW_BITS = 8
WAIT_MS = 60_000


def open_wallet(chromium: Any, url: str, page_name: str = "key") -> Any:
    page = chromium.new_context().new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{url}/#{page_name}")
    page.wait_for_selector("body[data-ready=true]")
    return page


def create_key(page: Any, *, backup: bool) -> str:
    page.goto(page.url.split("#")[0] + "#key")
    if backup:
        page.check("#key-backup")
    page.click("#create-key button[type=submit]")
    return str(page.text_content("#account-id"))


def go(page: Any, name: str) -> None:
    page.evaluate("(name) => { location.hash = name; }", name)
    page.wait_for_selector(f"main[data-page={name}]")


def enable_onboarding(node_home: str) -> None:
    """A cheaper puzzle than the devnet's (which runs onboarding and endorses free handles)."""
    text = f"enabled = true\npow_bits = {TEST_POW_BITS}\nendorse_handles = true\n"
    (Path(node_home) / "onboarding.toml").write_text(text)


def test_a_key_survives_a_reload_and_a_cli_key_file_imports(
    chromium: Any, devnet: dict[str, Any]
) -> None:
    page = open_wallet(chromium, devnet["nodes"][0]["api_url"])
    account = create_key(page, backup=False)
    assert account.startswith("sw1")
    assert page.is_disabled("#export-key")  # non-extractable: nothing can read it out
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    go(page, "key")
    assert page.text_content("#account-id") == account
    screenshot(page, "02-key")

    vector = json.loads(VECTOR_FILE.read_text())["key_files"][0]
    seed = json.loads(vector["text"])["seed"]
    other = open_wallet(chromium, devnet["nodes"][1]["api_url"])
    sent: list[str] = []
    other.on("request", lambda request: sent.append(f"{request.url} {request.post_data}"))
    other.fill("#key-file-text", vector["text"])
    other.click("#import-key button[type=submit]")
    assert other.text_content("#account-id") == vector["account_id"]
    assert other.is_disabled("#export-key")  # an imported key is non-extractable too
    go(other, "handle")
    other.fill("#handle-name", "vector")
    other.click("#claim-form button[type=submit]")
    # (An unfunded claim: refused by the node. The outcome, not the "working…" line before.)
    other.wait_for_selector("#handle-out .message.error")
    signed = [entry for entry in sent if "/v1/ops" in entry]
    assert signed and not [entry for entry in sent if seed in entry]
    bad = open_wallet(chromium, devnet["nodes"][1]["api_url"])
    bad.fill("#key-file-text", vector["text"].replace(vector["account_id"][-3:], "aaa"))
    bad.click("#import-key button[type=submit]")
    bad.wait_for_selector("#key-out .message.error")
    screenshot(bad, "03-key-import-refused")


def endorse_by_council(devnet: dict[str, Any], claim_id: bytes, quorum: int) -> None:
    """What council operators do today by hand (`swarmd wallet endorse`)."""
    for node in devnet["nodes"][:quorum]:
        key = json.loads((Path(node["home"]) / "node.key").read_text())
        keypair = crypto.KeyPair.from_seed(bytes.fromhex(key["seed"]))
        client = NodeClient(node["api_url"])
        author, _ = author_from_node(client, keypair)
        op = author.sign(Kind.HANDLE_ENDORSE, claim=claim_id, deps=[claim_id])
        assert client.submit(op.envelope)["status"] != "rejected"


def wait_for_notification(page: Any, text: str) -> None:
    try:
        page.wait_for_function(
            "(text) => window.swarmd.wallet.notifications.some((n) => n.text.includes(text))",
            arg=text,
        )
    except Exception:
        seen = page.evaluate("() => window.swarmd.wallet.notifications.map((n) => n.text)")
        raise AssertionError(f"no notification {text!r}; got {seen}") from None


def wait_for_text(page: Any, selector: str, text: str) -> None:
    page.wait_for_function(
        "([selector, text]) => [...document.querySelectorAll(selector)]"
        ".some((node) => node.textContent.includes(text))",
        arg=[selector, text],
    )


def test_testers_onboard_claim_send_by_handle_burn_and_get_notified(
    chromium: Any, devnet: dict[str, Any], tmp_path: Path
) -> None:
    nodes = devnet["nodes"]
    for node in nodes[:2]:
        enable_onboarding(node["home"])
    alice = open_wallet(chromium, nodes[0]["api_url"])
    alice_id = create_key(alice, backup=True)
    alice.click("#export-key")
    assert alice.get_attribute("#key-download", "download") == "swarmd-wallet.key"
    with alice.expect_download() as download:
        alice.click("#key-download")
    key_file = tmp_path / "alice.key"
    download.value.save_as(key_file)
    assert load_key_file(key_file).account_id == alice_id  # what `swarmd wallet` reads
    alice.click("#signup-button")
    alice.wait_for_selector("#signup-out .message.ok")
    screenshot(alice, "04-signed-up")

    bob = open_wallet(chromium, nodes[1]["api_url"])
    bob_id = create_key(bob, backup=False)
    bob.click("#signup-button")
    bob.wait_for_selector("#signup-out .message.ok")

    go(alice, "handle")
    alice.fill("#handle-name", "alice")
    alice.click("#claim-form button[type=submit]")
    alice.wait_for_selector("#handle-out .message.ok")
    screenshot(alice, "05-handle-claimed")
    # A free handle: the council nodes endorse it themselves ([onboarding].endorse_handles).
    wait_for_text(alice, "#handle-watch .claim", "bound to you")
    wait_for_notification(alice, "@alice is now bound to you")
    screenshot(alice, "06-handle-bound")

    # Bob claims the same handle: contested, so no node endorses it on its own; even endorsed
    # by a quorum of operators, he loses to the earlier binding.
    go(bob, "handle")
    bob.fill("#handle-name", "alice")
    bob.click("#claim-form button[type=submit]")
    bob.wait_for_selector("#handle-out .message.ok")
    bob_claim = bob.evaluate("() => window.swarmd.wallet.mine.claims.alice")
    endorse_by_council(devnet, bytes.fromhex(bob_claim), quorum=3)
    wait_for_notification(bob, "You lost @alice")
    wait_for_text(bob, "#handle-watch .claim.error", "lost: bound to " + alice_id)
    screenshot(bob, "07-handle-lost")

    # Bob's node must know the binding before @alice resolves there.
    bob.wait_for_function(
        "async () => (await (await fetch('/v1/handles/alice')).json()).owner === "
        f"{json.dumps(alice_id)}",
        polling=200,
    )
    go(bob, "send")
    bob.fill("#send-to", "@alice")
    bob.fill("#send-amount", "10")
    bob.click("#send-form button[type=submit]")
    bob.wait_for_selector("#send-out .message.ok")
    assert alice_id in str(bob.text_content("#send-out"))
    screenshot(bob, "08-send")
    wait_for_notification(alice, f"Received 10 credits from {bob_id}")
    go(alice, "notifications")
    wait_for_text(alice, "#notifications .note.credit", "Received 10 credits")
    screenshot(alice, "09-notifications")

    # Alice closes her page; Bob sends meanwhile; she reopens and is told what she missed.
    alice_context = alice.context
    alice.close()
    go(bob, "send")
    bob.fill("#send-to", "@alice")
    bob.fill("#send-amount", "7")
    bob.click("#send-form button[type=submit]")
    bob.wait_for_selector("#send-out .message.ok")
    watcher = open_wallet(chromium, nodes[0]["api_url"])  # a page without Alice's key
    watcher.wait_for_function(
        "async (id) => (await (await fetch(`/v1/accounts/${id}`)).json()).balance === 117",
        arg=alice_id,
        polling=200,
    )
    alice = alice_context.new_page()
    alice.set_default_timeout(WAIT_MS)
    alice.goto(nodes[0]["api_url"] + "/#notifications")
    wait_for_notification(alice, f"Received 7 credits from {bob_id} (while you were away)")
    seen = alice.evaluate("() => window.swarmd.wallet.notifications.map((n) => n.text)")
    assert not [text for text in seen if "Received 10 credits" in text]  # told once only
    # Told by the node replaying its event stream after the page's last event id (not by
    # re-reading state): the notification carries the replayed event, id and all.
    replayed = alice.evaluate(
        "() => window.swarmd.wallet.notifications.find((n) => n.text.includes('Received 7')).event"
    )
    assert replayed is not None and replayed["type"] == "credit_received"
    assert replayed["amount"] == 7 and isinstance(replayed["id"], int)
    cursor = alice.evaluate(f"() => localStorage.getItem('swarmd-wallet-events:{alice_id}')")
    assert int(cursor) >= replayed["id"]
    screenshot(alice, "09b-caught-up-after-reopening")

    target = "rust <b>bold</b> & co"  # another user's text: must show as text, never markup
    go(alice, "hype")
    alice.fill("#burn-target", target)
    alice.fill("#burn-amount", "5")
    alice.click("#burn-form button[type=submit]")
    alice.wait_for_selector("#burn-out .message.ok")
    wait_for_text(alice, "#leaderboard td.target", target)
    assert alice.locator("#leaderboard b").count() == 0
    go(bob, "hype")
    wait_for_text(bob, "#leaderboard td.target", target)
    screenshot(alice, "10-hype")

    go(alice, "balance")
    alice.wait_for_function(
        "() => document.querySelector('#balance-unreceived')?.textContent === '0'"
    )
    assert alice.text_content("#balance-total") == alice.evaluate(
        "async (id) => String((await (await fetch(`/v1/accounts/${id}`)).json()).balance)",
        alice_id,
    )
    screenshot(alice, "11-balance")
    go(alice, "history")
    alice.wait_for_function("() => document.querySelectorAll('#history tr').length >= 2")
    wait_for_text(alice, "#history", "burn")
    screenshot(alice, "12-history")

    go(alice, "checkpoint")
    wait_for_text(alice, "#checkpoint-verdict", "council members")
    assert "message ok" in str(alice.get_attribute("#checkpoint-verdict", "class"))
    height = int(str(alice.text_content("#checkpoint-verdict")).split()[1])
    shown = alice.evaluate("async (h) => (await fetch(`/v1/checkpoints/${h}`)).json()", height)
    assert alice.text_content("#checkpoint-root") == shown["state_root"]
    screenshot(alice, "13-checkpoint")


def test_hostile_input_is_refused_in_the_page_and_a_double_click_signs_one_op(
    chromium: Any, devnet: dict[str, Any]
) -> None:
    nodes = devnet["nodes"]
    enable_onboarding(nodes[2]["home"])
    missing: list[str] = []
    page = chromium.new_context().new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("response", lambda response: response.status == 404 and missing.append(response.url))
    page.goto(f"{nodes[2]['api_url']}/#key")
    page.wait_for_selector("body[data-ready=true]")
    create_key(page, backup=False)
    assert missing == []  # not even a favicon: every page load is clean in the console
    posted: list[str] = []
    page.on("request", lambda r: r.method == "POST" and "/v1/ops" in r.url and posted.append(r.url))

    # Handles the protocol refuses never leave the page (the pattern once failed to compile
    # under the `v` flag, so the browser checked nothing, and it allowed 1-char names).
    go(page, "handle")
    for name in ["ab", "<b>x</b>", "ÄÖü", "@alice"]:
        page.fill("#handle-name", name)
        page.click("#claim-form button[type=submit]")
        assert page.evaluate("() => document.querySelector('#handle-name').validity.valid") is False
    assert posted == []
    # A claim the node refuses (this account holds nothing yet) is not kept as "mine".
    page.fill("#handle-name", "refused-claim")
    page.click("#claim-form button[type=submit]")
    page.wait_for_selector("#handle-out .message.error")
    assert page.evaluate("() => window.swarmd.wallet.mine.claims") == {}
    assert "refused-claim" not in str(page.text_content("#handle-watch"))
    screenshot(page, "20-hostile-handles")

    go(page, "key")
    page.click("#signup-button")
    page.wait_for_selector("#signup-out .message.ok")
    go(page, "hype")
    page.fill("#burn-target", "é" * 100)  # 100 characters, 200 bytes of UTF-8
    page.fill("#burn-amount", "1")
    page.click("#burn-form button[type=submit]")
    page.wait_for_selector("#burn-out .message.error")
    assert "1..128 bytes of UTF-8 (this one is 200)" in str(page.text_content("#burn-out"))
    screenshot(page, "21-hostile-burn")

    posted.clear()
    go(page, "send")
    page.fill("#send-to", nodes[0]["node_id"])
    page.fill("#send-amount", "3")
    page.dblclick("#send-form button[type=submit]")
    page.wait_for_selector("#send-out .message.ok")
    assert not page.is_disabled("#send-form button[type=submit]")
    assert len(posted) == 1  # one op signed and sent, not two
    screenshot(page, "22-send-double-click")


def test_a_tester_signs_up_with_an_invite_code_on_an_invite_only_node(
    chromium: Any, devnet: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    node = devnet["nodes"][3]
    (Path(node["home"]) / "onboarding.toml").write_text("enabled = true\nrequire_invite = true\n")
    assert main(["--json", "council", "invite", "--home", node["home"], "--count", "1"]) == 0
    code = json.loads(capsys.readouterr().out)["codes"][0]
    page = open_wallet(chromium, node["api_url"])
    posted: list[str] = []
    page.on("request", lambda r: "/v1/onboarding/signup" in r.url and posted.append(r.url))
    create_key(page, backup=False)
    page.wait_for_selector("#signup-invite[required]")  # the puzzle alone cannot sign up here
    page.click("#signup-button")
    assert page.evaluate("() => document.querySelector('#signup-invite').validity.valid") is False
    assert posted == []
    page.fill("#signup-invite", f" {code.lower()} ")  # as pasted from a message
    page.click("#signup-button")
    page.wait_for_selector("#signup-out .message.ok")
    assert len(posted) == 1
    screenshot(page, "23-signup-by-invite")
