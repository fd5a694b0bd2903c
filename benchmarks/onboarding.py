"""`swarmd bench onboarding`: a beta tester's way in, in a real browser, against a real swarm.

Starts N real `swarmd run` processes on loopback (the devnet machinery, onboarding and
`endorse_handles` on as `swarmd devnet` runs them) and a background load of transfers, then
drives the web wallet in headless Chromium (Debian's `/usr/bin/chromium` through Playwright,
loopback only, the flags tests/web uses) `--runs` times, each in a fresh browser context:

- `onboarding_s`: from opening the page to the handle bound: create a key, sign up (the
  puzzle), wait until the reward is final, claim a free handle, wait until it is bound.
- `ui_ms`: for every click of the flow (buttons, and the navigation to the balance, history,
  hype and handle pages), from the click event's timestamp to the first DOM change after it
  (the Performance API clock: `event.timeStamp`, `performance.now()` in a MutationObserver);
  what a tester sees as the page answering. (Typing is not counted: a keystroke changes an
  input's value, not the DOM.)
- `notification_ms`: from the submission of a transfer to the tester (by this process, over
  HTTP) to the toast on the tester's page showing it (wall clock on both sides, same machine).

Prints p50/p95 of each (`--json`: one object). Targets (issue 15): onboarding_s_p95 < 10,
ui_ms_p95 < 50, notification_ms_p95 < 100.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, async_playwright

from swarmd.node.cli.devnet import DEVNET_ONBOARDING, NodeHome, Swarm
from swarmd.protocol import crypto
from swarmd.protocol.ops import Op
from swarmd.protocol.wallet import Author

from .common import emit, percentile

CHROMIUM = Path(os.environ.get("SWARMD_CHROMIUM", "/usr/bin/chromium"))
#: No background traffic to any outside host (tests/web/conftest.py uses these too).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--metrics-recording-only",
]
#: One step of the flow (a page load, a signup, a binding) must finish within this long.
STEP_TIMEOUT_MS = 60_000
#: Accounts sending transfers in the background, one chain each.
LOAD_ACCOUNTS = 8

#: Installed in every page before its own scripts: records input-to-DOM-change delays and
#: the wall-clock time of each toast (the notification a tester sees).
PAGE_PROBE = """
(() => {
  const probe = { ui: [], toasts: [], waiting: [] };
  window.__bench = probe;
  addEventListener("click", (event) => probe.waiting.push(event.timeStamp), true);
  const observer = new MutationObserver(() => {
    const now = performance.now();
    for (const stamp of probe.waiting.splice(0)) probe.ui.push(now - stamp);
    const toast = document.querySelector("#toast");
    if (toast && !toast.hidden && toast.textContent !== probe.lastToast) {
      probe.lastToast = toast.textContent;
      probe.toasts.push({ text: toast.textContent, at: performance.timeOrigin + now });
    }
  });
  addEventListener("DOMContentLoaded", () => observer.observe(document.body,
    { childList: true, subtree: true, characterData: true, attributes: true }));
})();
"""


def overrides(pow_bits: int) -> dict[str, dict[str, Any]]:
    return {
        "api": {"rate_limit_per_s": 1_000_000.0, "rate_limit_burst": 10_000_000},
        "onboarding": {
            **DEVNET_ONBOARDING,
            "pow_bits": pow_bits,
            "signups_per_address_per_hour": 1_000_000,
            "signups_per_hour": 1_000_000,
        },
    }


class Load:
    """Funded accounts sending each other 1 credit at a steady total rate (background)."""

    def __init__(self, swarm: Swarm, rate: float) -> None:
        self.swarm = swarm
        self.rate = rate
        network_id = swarm.genesis.network_id
        self.council = [Author(node.keypair, network_id) for node in swarm.nodes]
        self.people = [
            Author(crypto.KeyPair.from_seed(os.urandom(32)), network_id)
            for _ in range(LOAD_ACCOUNTS + 1)
        ]
        self.sent = 0
        self.task: asyncio.Task[None] | None = None

    def node_of(self, index: int) -> NodeHome:
        return self.swarm.nodes[index % len(self.swarm.nodes)]

    async def fund(self) -> None:
        """One grant each, final before any browser signs up (the council nodes sign their
        onboarding grants on the same chains)."""
        reward = self.swarm.genesis.signup_reward
        grants: list[Op] = []
        for index, person in enumerate(self.people):
            grant = self.council[index % len(self.council)].grant(person.key, reward)
            await self._submit(self.node_of(index), grant)
            grants.append(grant)
        for index, person in enumerate(self.people):
            # Receive the grant now, so every later transfer needs no deps.
            await self._submit(
                self.node_of(index),
                person.transfer(self.people[index - 1].key, 1, receive=[grants[index].op_id]),
            )
        await self.swarm.wait_converged(min_height=1)

    async def _submit(self, node: NodeHome, op: Op) -> float:
        start = time.time()
        status, body = await self.swarm.submit(node, op)
        if status != 202:
            raise RuntimeError(f"node {node.index} refused a load op: {body}")
        return start

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        interval = 1.0 / self.rate
        index = 0
        while True:
            payer = index % LOAD_ACCOUNTS
            payee = (payer + 1) % LOAD_ACCOUNTS
            op = self.people[payer].transfer(self.people[payee].key, 1)
            await self._submit(self.node_of(payer), op)
            self.sent += 1
            index += 1
            await asyncio.sleep(interval)

    async def send_to(self, account: bytes, amount: int) -> float:
        """A transfer from the spare account to `account`; its submission time (wall clock)."""
        op = self.people[-1].transfer(account, amount)
        return await self._submit(self.node_of(0), op)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


async def onboard_once(
    browser: Browser, url: str, load: Load, run: int
) -> tuple[float, list[float], float]:
    """One tester's way in; (onboarding s, UI delays in ms, notification ms)."""
    context = await browser.new_context()
    await context.add_init_script(PAGE_PROBE)
    page = await context.new_page()
    page.set_default_timeout(STEP_TIMEOUT_MS)
    start = time.perf_counter()
    await page.goto(f"{url}/#key")
    await page.wait_for_selector("body[data-ready=true]")
    await page.click("#create-key button[type=submit]")
    account_id = str(await page.text_content("#account-id"))
    await page.click("#signup-button")
    await page.wait_for_selector("#signup-out .message.ok")
    await page.wait_for_function(
        "async (id) => (await (await fetch(`/v1/accounts/${id}`)).json()).final_balance > 0",
        arg=account_id,
        polling=50,
    )
    for name in ("balance", "history", "hype", "handle"):
        await go(page, name)
    handle = f"t{run}-{os.urandom(3).hex()}"
    await page.fill("#handle-name", handle)
    await page.click("#claim-form button[type=submit]")
    await page.wait_for_function(
        "(name) => [...document.querySelectorAll('#handle-watch .claim')]"
        ".some((node) => node.textContent.startsWith(`@${name}: bound to you`))",
        arg=handle,
    )
    onboarding_s = time.perf_counter() - start
    amount = 2 + run
    sent_at = await load.send_to(crypto.parse_account_id(account_id), amount)
    text = f"Received {amount} credits"
    toast = await page.wait_for_function(
        "(text) => window.__bench.toasts.find((t) => t.text.includes(text))", arg=text
    )
    shown_at = float((await toast.json_value())["at"])
    ui = [float(value) for value in await page.evaluate("() => window.__bench.ui")]
    await context.close()
    return onboarding_s, ui, shown_at - sent_at * 1000


async def go(page: Page, name: str) -> None:
    """Open a page from the navigation bar, as a tester does."""
    await page.click(f"nav a[href='#{name}']")
    await page.wait_for_selector(f"main[data-page={name}]")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="swarmd-bench-") as directory:
        swarm = Swarm.create(
            Path(directory) / "swarm",
            args.nodes,
            transport=args.transport,
            config_overrides=overrides(args.pow_bits),
        )
        await swarm.start()
        load = Load(swarm, args.load_ops_per_s)
        try:
            await swarm.wait_connected()
            await load.fund()
            load.start()
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
                )
                samples = [
                    await onboard_once(browser, swarm.nodes[0].url, load, i)
                    for i in range(args.runs)
                ]
                await browser.close()
        finally:
            await load.stop()
            await swarm.stop()
    onboarding = [s[0] for s in samples]
    ui = [delay for s in samples for delay in s[1]]
    notification = [s[2] for s in samples]
    return {
        "runs": args.runs,
        "nodes": args.nodes,
        "pow_bits": args.pow_bits,
        "load_ops_per_s": args.load_ops_per_s,
        "load_ops_sent": load.sent,
        "onboarding_s_p50": round(percentile(onboarding, 0.5), 2),
        "onboarding_s_p95": round(percentile(onboarding, 0.95), 2),
        "ui_ms_p50": round(percentile(ui, 0.5), 1),
        "ui_ms_p95": round(percentile(ui, 0.95), 1),
        "ui_inputs": len(ui),
        "notification_ms_p50": round(percentile(notification, 0.5), 1),
        "notification_ms_p95": round(percentile(notification, 0.95), 1),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="swarmd bench onboarding", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="testers onboarded, one at a time")
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--transport", choices=["webrtc", "websocket"], default="websocket")
    parser.add_argument(
        "--pow-bits", type=int, default=DEVNET_ONBOARDING["pow_bits"], help="signup puzzle cost"
    )
    parser.add_argument(
        "--load-ops-per-s", type=float, default=20.0, help="background transfers per second"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 100 or not 1 <= args.nodes <= 16 or args.load_ops_per_s <= 0:
        parser.error("need 1 <= --runs <= 100, 1 <= --nodes <= 16, --load-ops-per-s > 0")
    emit(asyncio.run(run(args)), args.json)
    return 0
