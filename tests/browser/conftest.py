"""Fixtures for the page's tests: Debian's Chromium through Playwright, and real servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Error, Page, sync_playwright

from tests.conftest import skip_or_fail
from tests.support import EXAMPLES, Server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Long enough that the page never reloads under a test that does not want it to.
STILL_PAGE = {"RENTABOT_PAGE_REFRESH_SECONDS": "3600"}

#: Starts a server on a descriptor (`env` as for `Server`); it stops when the test ends.
ServerFactory = Callable[..., Server]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A headless Debian Chromium driven by Playwright's sync API, shared by a module.

    Not by the session: Playwright's sync API keeps an event loop running in this thread
    until it stops, and the async tests that follow need the thread to themselves.
    """
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
        except Error as error:
            skip_or_fail(f"{CHROMIUM} does not start: {error}")
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh desktop-sized tab (1280x800) in its own context: no cookies or cache shared."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


@pytest.fixture
def phone_page(browser: Browser) -> Iterator[Page]:
    """A fresh tab as a phone shows it: 390x844 CSS pixels, mobile viewport, 3x pixel density."""
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, device_scale_factor=3
    )
    yield context.new_page()
    context.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start real `rentabot serve` processes, each on its own database; stopped at the end."""
    servers: list[Server] = []

    def start(descriptor: Path, env: dict[str, str] | None = None) -> Server:
        number = len(servers)
        server = Server(tmp_path / f"rentabot-{number}.db", descriptor, env=env)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real server on examples/resources.yml whose page does not reload during a test.

    Shared by a module's tests to save a server start each: they only read, never lock.
    """
    database = tmp_path_factory.mktemp("examples") / "rentabot.db"
    with Server(database, EXAMPLES, env=STILL_PAGE) as running:
        yield running
