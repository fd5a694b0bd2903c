"""Browser tests: Playwright for Python driving Debian's chromium (headless, loopback only)
against a real devnet started the way a user starts it.

Chromium is launched with executable_path=/usr/bin/chromium (nothing is downloaded) and the
flags that keep it from reaching any host but the devnet's (docs: STACK.md browser notes).
Every test saves screenshots under .build/screenshots/ (the README names the folder).
"""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api as playwright_sync

# One browser and one flag list (no background traffic to outside hosts) for the tests and
# `swarmd bench onboarding`.
from swarmd.benchmarks.onboarding import CHROMIUM, CHROMIUM_ARGS

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".build" / "screenshots"
DEVNET_START_TIMEOUT_S = 120.0
CLI = "import sys; from swarmd.node.cli import main; sys.exit(main())"
WEB_DIST = Path(__file__).resolve().parents[2] / "node" / "web" / "dist" / "app.js"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Playwright's sync API keeps its event loop current while it runs, which would break the
    async tests that follow: so it lives for one module only and is stopped after it."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    if not WEB_DIST.exists():
        pytest.fail("the web wallet is not built: make (runs npm ci && npm run build)")
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`swarmd devnet --nodes 4` in its own process; the JSON line it prints once up."""
    home = tmp_path_factory.mktemp("web") / "devnet"
    process = subprocess.Popen(
        [
            sys.executable,
            "-P",
            "-c",
            CLI,
            "devnet",
            "--nodes",
            "4",
            "--transport",
            "websocket",
            "--home",
            str(home),
            "--json",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(DEVNET_START_TIMEOUT_S):
                pytest.fail("the devnet did not come up")
        yield json.loads(process.stdout.readline())
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
