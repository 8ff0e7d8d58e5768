"""Browser-test harness for the web page: Debian's Chromium through Playwright, screenshots, servers.

Import the fixtures in a test module (``from web_helpers import browser, open_page, web``).
Playwright drives the system Chromium (``/usr/bin/chromium``, installed by ``make setup``, or the one
``ICHAIN_CHROMIUM`` names); it never downloads a browser.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import pytest

from ichain._cli.provide import daemon_report
from ichain.config import IChainConfig
from ichain.web import WebService, create_app
from ichain.web.server import BackgroundServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ARTIFACTS = ROOT / "tests" / "artifacts" / "web"
CHROMIUM = os.environ.get("ICHAIN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1200, "height": 900}
#: How long a step of the lifecycle may take on a loaded 2-core machine (Docker runs included).
STEP_MS = 120_000


# ---- browser ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium (Playwright never downloads a browser here).

    Module scope: each test module imports this fixture, and Playwright's sync API allows one
    running instance at a time, so each module's browser is closed before the next one starts.
    """
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Chromium missing: run `make setup` (step chromium)"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def open_page(browser):
    """Factory: a fresh browser context + page at a URL (desktop size unless told).

    A fresh context holds no session cookie: open the URL the server prints (``server.page_url(path)``, with
    the per-launch ``?token=``), as a user does; the page then lands on ``path`` without the token.
    """
    contexts = []

    def _open(url: str, viewport: dict = DESKTOP):
        ctx = browser.new_context(viewport=viewport, accept_downloads=True)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(20_000)
        response = page.goto(url)
        if "token=" in url:
            assert response is not None and response.ok and "token=" not in page.url, (
                f"signing in with the page's URL failed: {response and response.status} at {page.url}")
        return page

    yield _open
    for ctx in contexts:
        ctx.close()


def session_cookie(server: BackgroundServer) -> str:
    """The ``Cookie`` header value of a browser signed in to ``server``."""
    return f"{server.guard.cookie_name}={server.guard.token}"


def get(server: BackgroundServer, path: str) -> str:
    """GET a path of the page as a signed-in browser would (with the session cookie); the body as text."""
    request = urllib.request.Request(server.url + path, headers={"Cookie": session_cookie(server)})
    with urllib.request.urlopen(request, timeout=30) as r:
        return r.read().decode()


def shot(page, name: str) -> Path:
    """Save a full-page screenshot as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def assert_accessible_basics(page) -> None:
    """Every visible form field has a label, every control is reachable by keyboard, no sideways scroll."""
    unlabeled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter(e => e.type !== 'hidden' && e.offsetParent !== null)
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
        .map(e => e.outerHTML)""")
    assert unlabeled == []
    untabbable = page.evaluate("""() => [...document.querySelectorAll('a[href], button, input, select')]
        .filter(e => e.offsetParent !== null && (e.tabIndex < 0 || e.disabled))
        .map(e => e.outerHTML)""")
    assert untabbable == []
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px at width {page.viewport_size['width']}"


@pytest.fixture(scope="module")
def web_market():
    """A TaskMarket with short windows on the test anvil (not recorded in the shared registry)."""
    from ape import accounts

    from ichain.market import Market

    return Market.deploy(accounts.test_accounts[8], save=False, validation_window=120, min_timeout=60,
                         max_timeout=3600)


@pytest.fixture
def web(tmp_path):
    """Factory: serve the page for an account on a market; stopped after the test."""
    running = []

    def _serve(account, market_factory, *, state: Path | None = None, tasks_root: Path = EXAMPLES,
               daemon_states: dict[str, Path] | None = None):
        """``daemon_states``: the state file of each provider daemon the dashboard shows, by address."""
        files = dict(daemon_states or {})

        def daemon_state(address: str) -> dict | None:
            path = files.get(address)
            return daemon_report(path) if path is not None and path.is_file() else None

        service = WebService(account=account, market_factory=market_factory,
                             config=IChainConfig(state_dir=state or tmp_path / "state"), tasks_root=tasks_root,
                             daemon_state=daemon_state)
        server = BackgroundServer(create_app(service)).start()
        running.append((server, service))
        return server

    yield _serve
    for server, service in running:
        server.stop()
        service.close()


def trusting_pair(market, provider, validator, price: int = 10**15) -> None:
    """Register ``provider`` and ``validator`` (no daemons) with an offer covering the example tasks, and make the
    provider trust the validator, once."""
    from ichain.transfer import KeyPair

    from offer_helpers import publish

    for who in (provider, validator):
        if not market.worker(who.address).registered:
            market.register(KeyPair.generate().public_bytes, price, sender=who)
        publish(market, who)  # what their daemons would have published: they can run the examples
    if not market.trusts(provider.address, validator.address):
        market.set_trust(validator.address, True, sender=provider)
