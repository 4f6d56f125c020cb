"""The pipeline lines' Copy buttons in a real Chromium against a real server: what lands on
the clipboard is the line shown, and the curl line taken from the clipboard, run as a shell
would split it, makes a real lease."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from rentabot.domain.identity import Role
from tests.browser.conftest import STILL_PAGE
from tests.support import Server, write_descriptor

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real server on two `lab` boards, one with a name a shell would mangle unquoted."""
    folder: Path = tmp_path_factory.mktemp("copy")
    descriptor = write_descriptor(
        folder / "resources.yml",
        {"board-a": {"tags": ["lab"]}, "board $(b) 'two'": {"tags": ["lab", "it's"]}},
    )
    with Server(folder / "rentabot.db", descriptor, env=STILL_PAGE) as running:
        yield running


@pytest.fixture
def clipboard_page(browser: Browser, server: Server) -> Iterator[Page]:
    """A tab allowed to read and write this server's clipboard."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 800},
        permissions=["clipboard-read", "clipboard-write"],
    )
    yield context.new_page()
    context.close()


def _copy(page: Page, what: str) -> str:
    page.get_by_role("button", name=f"Copy {what}").click()
    expect(page.get_by_role("button", name=f"Copy {what}")).to_have_text("Copied")
    text: str = page.evaluate("navigator.clipboard.readText()")
    return text


def test_copy_puts_each_line_of_a_resource_on_the_clipboard_and_the_curl_line_locks_it(
    server: Server, clipboard_page: Page
) -> None:
    """Both buttons copy their line exactly; the copied curl line's body, sent with a key,
    leases that very resource."""
    page = clipboard_page
    page.goto(f"{server.url}/resources/2")
    shown = page.locator(".snippet-box code").all_text_contents()
    run = _copy(page, "the rentabot run line")
    curl = _copy(page, "the curl line")
    assert [run, curl] == shown
    assert shlex.split(run)[:6] == ["rentabot", "run", "--url", server.url, "--id", "2"]
    words = shlex.split(curl)
    assert words[words.index("-X") + 2] == f"{server.url}/api/v2/leases"
    answer = httpx.post(
        f"{server.url}/api/v2/leases",
        content=words[words.index("-d") + 1],
        headers={"X-API-Key": server.key("ci", Role.LOCK), "Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    lease = answer.json()["lease"]
    assert [r["id"] for r in lease["resources"]] == [2]
    assert httpx.delete(
        f"{server.url}/api/v2/leases/{lease['id']}",
        headers={"X-API-Key": server.key("ci", Role.LOCK)},
        timeout=10,
    ).is_success


def test_copy_on_a_tags_page_copies_a_line_that_quotes_the_tag_for_the_shell(
    server: Server, clipboard_page: Page
) -> None:
    """A tag with a quote in it comes back whole from the copied line, split as a shell would."""
    page = clipboard_page
    page.goto(f"{server.url}/tags/it%27s")
    run = _copy(page, "the rentabot run line")
    words = shlex.split(run)
    assert words[words.index("--tag") + 1] == "it's"


def test_without_javascript_the_lines_are_there_and_no_button_is(
    browser: Browser, server: Server
) -> None:
    """Readable without JavaScript: the lines show; the Copy button needs script, so it is
    not offered there."""
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{server.url}/resources/1")
    expect(page.locator(".snippet-box code")).to_have_count(2)
    expect(page.get_by_role("button", name="Copy the curl line")).to_have_count(0)
    context.close()
