"""The page at `/` in a real Chromium: the original's table, live, offline, phone-sized, escaped."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from playwright.sync_api import Dialog, Error, Frame, Locator, Page, Request, expect

from tests.browser.conftest import STILL_PAGE, ServerFactory
from tests.support import EXAMPLES, V1, Server, write_descriptor

pytestmark = pytest.mark.browser

HEADERS = ["#", "Name", "Lock Status", "Description", "Endpoint", "Tags", "Holder", "Expires"]
HEADERS += ["Since", "Fence", "Waiting", "Actions"]
PHONE_WIDTH = 390
#: How long (ms) the page may take to show a change pushed by the event stream: the issue's 1 s.
LIVE_TIMEOUT_MS = 1_000

#: Font size of everything with text in a table cell, its `::before` label included.
CELL_FONT_SIZES = """() => {
  const sizes = [];
  for (const cell of document.querySelectorAll('#resources tbody td')) {
    for (const el of [cell, ...cell.querySelectorAll('*')]) {
      sizes.push([el.tagName + ' ' + el.textContent, parseFloat(getComputedStyle(el).fontSize)]);
    }
    const before = getComputedStyle(cell, '::before');
    if (before.content !== 'none' && before.content !== 'normal') {
      sizes.push(['::before ' + before.content, parseFloat(before.fontSize)]);
    }
  }
  return sizes;
}"""


def example_rows() -> list[list[str]]:
    """What examples/resources.yml should show, row by row: #, name, status, text, tags."""
    resources: dict[str, dict[str, Any]] = yaml.safe_load(EXAMPLES.read_text())
    rows = []
    for number, (name, fields) in enumerate(resources.items(), start=1):
        tags = fields.get("tags") or []
        words = tags.split() if isinstance(tags, str) else [str(tag) for tag in tags]
        row = [str(number), name, "Resource is available"]
        row += [fields.get("description") or "", fields.get("endpoint") or ""]
        rows.append(row + list(dict.fromkeys(words)))
    return rows


def status_cell(page: Page, resource_id: int) -> Locator:
    """The Lock Status cell of one resource's row."""
    return page.locator(f'#resources tbody tr[data-resource-id="{resource_id}"] td').nth(2)


def count_navigations(page: Page) -> list[str]:
    """A list that grows with every document the tab's main frame loads."""
    loaded: list[str] = []

    def record(frame: Frame) -> None:
        if frame == page.main_frame:
            loaded.append(frame.url)

    page.on("framenavigated", record)
    return loaded


def assert_fits_the_phone(page: Page) -> None:
    """Nothing is wider than the phone: the document does not scroll sideways.

    A mobile viewport widens itself to fit content that overflows (zooming out), so
    `window.innerWidth` must still be the phone's width for the scroll check to mean anything.
    """
    widths = page.evaluate("() => [window.innerWidth, document.documentElement.scrollWidth]")
    assert widths[0] == PHONE_WIDTH, f"the viewport widened to {widths[0]} px to fit the page"
    assert widths[1] <= widths[0], f"the page is {widths[1]} px wide on a {widths[0]} px phone"


def settled_html(page: Page) -> str:
    """The DOM as HTML, retried while a self-refresh navigates the page away under us."""
    for _ in range(20):
        try:
            return page.content()
        except Error:
            page.wait_for_timeout(100)
    return page.content()


def test_lists_every_example_resource_like_the_original(server: Server, page: Page) -> None:
    """The table has the original's columns and one row per example resource, tags one by one."""
    page.goto(server.url)

    assert page.locator("#resources thead th").all_text_contents() == HEADERS
    rows = page.locator("#resources tbody tr")
    expected = example_rows()
    expect(rows).to_have_count(len(expected))
    for index, want in enumerate(expected):
        cells = rows.nth(index).locator("td")
        expect(cells).to_have_count(len(HEADERS))
        texts = [text.strip() for text in cells.all_text_contents()[:5]]
        tags = cells.nth(5).locator(":scope > *").all_text_contents()
        assert [*texts, *tags] == want, f"row {index + 1}"
        assert rows.nth(index).get_attribute("data-resource-id") == want[0]


def test_a_lock_shows_live_within_a_second_and_never_its_token(server: Server, page: Page) -> None:
    """A lock taken through the API appears in place (no new document) within 1 s; its
    secret token never shows."""
    page.goto(server.url)
    expect(status_cell(page, 2)).to_have_text("Resource is available")
    expect(page.locator("body[data-live=open]")).to_have_count(1)
    loaded = count_navigations(page)
    page.evaluate("() => { window.sameDocument = true; }")

    answer = httpx.post(f"{server.url}{V1}/resources/2/lock", timeout=10.0)
    assert answer.status_code == 200, answer.text
    token = answer.json()["lock-token"]
    try:
        expect(status_cell(page, 2)).to_have_text("Resource locked", timeout=LIVE_TIMEOUT_MS)
        assert loaded == [], "the page reloaded instead of updating in place"
        assert page.evaluate("() => window.sameDocument") is True
        expect(status_cell(page, 1)).to_have_text("Resource is available")
        assert token not in settled_html(page)
    finally:
        unlock = httpx.post(f"{server.url}{V1}/resources/2/unlock", params={"lock-token": token})
        assert unlock.status_code == 200, unlock.text
    expect(status_cell(page, 2)).to_have_text("Resource available", timeout=LIVE_TIMEOUT_MS)


def test_loads_nothing_from_the_internet(server: Server, page: Page) -> None:
    """Every request the page makes (its script, style and event stream) goes to the server."""
    requests: list[str] = []

    def record(request: Request) -> None:
        requests.append(request.url)

    page.on("request", record)
    page.goto(server.url)
    expect(page.locator("#resources tbody tr")).to_have_count(len(example_rows()))
    expect(page.locator("body[data-live=open]")).to_have_count(1)
    assert f"{server.url}/static/page.js" in requests
    assert f"{server.url}/api/v2/events/stream" in requests
    outside = [url for url in requests if urlsplit(url).hostname != "127.0.0.1"]
    assert outside == []
    assert {urlsplit(url).port for url in requests} == {server.port}


def test_readable_on_a_phone(server: Server, phone_page: Page, page: Page, tmp_path: Path) -> None:
    """At 390x844 nothing scrolls sideways, every name is on screen and no cell text is tiny."""
    names = [row[1] for row in example_rows()]
    phone_page.goto(server.url)
    expect(phone_page.locator("#resources tbody tr")).to_have_count(len(names))
    phone_page.screenshot(path=tmp_path / "phone.png", full_page=True)
    assert_fits_the_phone(phone_page)
    for name in names:
        cell = phone_page.locator("#resources tbody").get_by_text(name, exact=True)
        expect(cell).to_be_visible()
        box = cell.bounding_box()
        assert box is not None
        assert box["x"] >= 0, name
        assert box["x"] + box["width"] <= PHONE_WIDTH, name
    sizes: list[list[Any]] = phone_page.evaluate(CELL_FONT_SIZES)
    assert len(sizes) >= len(names) * len(HEADERS)
    assert [(text, size) for text, size in sizes if size < 14] == []

    page.goto(server.url)
    expect(page.locator("#resources thead th")).to_have_count(len(HEADERS))
    expect(page.locator("#resources thead th").first).to_be_visible()
    page.screenshot(path=tmp_path / "desktop.png", full_page=True)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def test_long_values_wrap_on_a_phone(
    serve: ServerFactory, phone_page: Page, tmp_path: Path
) -> None:
    """A long name, a long endpoint and a dozen tags wrap inside a phone's width."""
    tags = [f"tag-number-{number}" for number in range(12)]
    name = "bench-with-a-long-name-and-no-spaces-" + "0123456789" * 3
    endpoint = "ssh://a-long-hostname.lab.example.org:2222/dev/serial/by-id/usb-SEGGER_J-Link-if00"
    descriptor = write_descriptor(
        tmp_path / "long.yml", {name: {"description": "x", "endpoint": endpoint, "tags": tags}}
    )
    server = serve(descriptor, env=STILL_PAGE)
    phone_page.goto(server.url)
    phone_page.screenshot(path=tmp_path / "long-phone.png", full_page=True)
    tag_cell = phone_page.locator("#resources tbody td").nth(5)
    assert tag_cell.locator(":scope > *").all_text_contents() == tags
    assert_fits_the_phone(phone_page)
    for text in (name, endpoint, *tags):
        box = phone_page.locator("#resources tbody").get_by_text(text, exact=True).bounding_box()
        assert box is not None
        assert box["x"] + box["width"] <= PHONE_WIDTH, text


def test_escapes_text_from_the_descriptor(serve: ServerFactory, page: Page, tmp_path: Path) -> None:
    """Markup in a descriptor shows as text and never runs (no dialog opens)."""
    script = "<script>alert(1)</script>"
    image = '"><img src=x onerror=alert(2)>'
    bold = "<b>bold</b>"
    descriptor = write_descriptor(
        tmp_path / "evil.yml",
        {"evil": {"description": script, "endpoint": image, "tags": [bold]}},
    )
    server = serve(descriptor, env=STILL_PAGE)
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    page.goto(server.url)
    page.wait_for_load_state("load")

    cells = page.locator('#resources tbody tr[data-resource-id="1"] td')
    expect(cells.nth(3)).to_have_text(script)
    expect(cells.nth(4)).to_have_text(image)
    expect(cells.nth(5)).to_have_text(bold)
    assert page.locator("main script, main img, main b").count() == 0
    assert dialogs == []

    # The listener does see dialogs: an alert the test itself opens is recorded.
    page.evaluate("() => alert('probe')")
    assert dialogs == ["probe"]


def test_shows_maintenance_and_who_holds_what_until_when(serve: ServerFactory, page: Page) -> None:
    """A resource in maintenance reads "In maintenance" (not available, not green); a held
    one names its holder and when its lease expires; a free one neither."""
    server = serve(EXAMPLES, env=STILL_PAGE)
    admin = {"X-API-Key": server.key()}
    answer = httpx.post(
        f"{server.url}/api/v2/resources/3/maintenance",
        json={"on": True, "reason": "fan broken"},
        headers=admin,
        timeout=10.0,
    )
    assert answer.status_code == 200, answer.text
    lease = httpx.post(
        f"{server.url}/api/v2/leases",
        json={"select": {"ids": [2]}, "ttl": 600, "owner": "ci/job/42"},
        timeout=10.0,
    )
    assert lease.status_code == 201, lease.text
    page.goto(server.url)

    maintenance = status_cell(page, 3)
    expect(maintenance).to_have_text("In maintenance")
    assert "available" not in (maintenance.text_content() or "").lower()
    colours = page.evaluate(
        """() => [3, 1].map(id => getComputedStyle(document.querySelector(
            `#resources tbody tr[data-resource-id="${id}"] td:nth-child(3)`)).color)"""
    )
    assert colours[0] != colours[1], "maintenance must not look like available"
    held = page.locator('#resources tbody tr[data-resource-id="2"] td')
    expect(held.nth(2)).to_have_text("Resource locked")
    expect(held.nth(6)).to_have_text("ci/job/42")
    expect(held.nth(7)).to_have_text(re.compile(r"^in (9|10) min$"))
    free = page.locator('#resources tbody tr[data-resource-id="1"] td')
    expect(free.nth(6)).to_have_text("")
    expect(free.nth(7)).to_have_text("")
