"""The browser tests' tools: Debian's Chromium driven by Playwright, screenshots and axe-core.

Debian's Chromium is /usr/bin/chromium, installed by the test session itself (`apt-get install -y
chromium`, as root) when missing; Playwright's own browser download is not available here, so
Playwright drives this one (`executable_path`). Screenshots of each page are saved under
.gatewayz/test-artifacts/web/ (GATEWAYZ_TEST_ARTIFACTS overrides); axe-core is vendored in
tests/web/vendor."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import GatewayServer

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("GATEWAYZ_TEST_ARTIFACTS", ROOT / ".gatewayz" / "test-artifacts")) / "web"
AXE = (Path(__file__).parent / "vendor" / "axe-core-4.14.1.min.js").read_text()


def chromium() -> str:
    if not CHROMIUM.exists() and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, timeout=300)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
            check=False,
            env=env,
            timeout=900,
        )
    if not CHROMIUM.exists():
        pytest.skip(
            "SKIPPED LOUDLY: Debian's chromium is not installed and could not be (not root, or no "
            "apt-get): the dashboard's browser tests did not run"
        )
    return str(CHROMIUM)


def launch() -> Iterator[Any]:
    """One headless browser (a module's fixture)."""
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


def new_page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


def sign_in(page: Any, gateway: GatewayServer, key: str) -> None:
    page.goto(f"{gateway.url}/sign-in")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{gateway.url}/dashboard")


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def serious_violations(page: Any) -> list[str]:
    page.evaluate(AXE)  # through the debugger: the page's CSP (no inline script) stays on
    result = page.evaluate(
        "async () => { const r = await axe.run(document); return [r.passes.length, r.violations]; }"
    )
    passes, violations = result
    assert passes > 10, "axe-core did not run its checks"
    return [f"{v['id']}: {v['help']}" for v in violations if v["impact"] in ("serious", "critical")]
