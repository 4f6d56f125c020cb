"""The tags view and the activity view in a real Chromium against a real server: a tag's
counts after a lock and a maintenance, and an event caused through the API showing on an
open activity page within a second, in place and as text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from rentabot.domain.identity import Role
from tests.browser.conftest import STILL_PAGE
from tests.browser.test_page import LIVE_TIMEOUT_MS, count_navigations
from tests.support import Server, write_descriptor

pytestmark = pytest.mark.browser

#: Sets a flag if it ever runs: an owner is text on the activity page.
HOSTILE = '<img src=x onerror="window.pwned=1">\'"</script><script>window.pwned=2</script>'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real server on three `lab` boards (two also `fast`) and a `scope`, shared by the
    module; anonymous callers may lock (the default)."""
    folder: Path = tmp_path_factory.mktemp("tags-activity")
    descriptor = write_descriptor(
        folder / "resources.yml",
        {
            "b1": {"tags": ["lab", "fast"]},
            "b2": {"tags": ["lab", "fast"]},
            "b3": {"tags": ["lab"]},
            "scope": {"tags": ["scope"]},
        },
    )
    with Server(folder / "rentabot.db", descriptor, env=STILL_PAGE) as running:
        yield running


def _lease(server: Server, resource_id: int, owner: str = "ci") -> dict[str, object]:
    answer = httpx.post(
        f"{server.url}/api/v2/leases",
        json={"select": {"ids": [resource_id]}, "ttl": 600, "owner": owner},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    lease: dict[str, object] = answer.json()["lease"]
    return lease


def test_the_tags_view_shows_each_tags_counts_after_a_lock_and_a_maintenance(
    server: Server, page: Page
) -> None:
    """b1 locked and b3 in maintenance: `lab` reads 1 free, 1 held, 1 in maintenance of 3,
    `fast` 1 free and 1 held of 2, `scope` 1 free; a tag's link opens its page."""
    _lease(server, 1)
    admin = server.key("root", Role.ADMIN)
    off = httpx.post(
        f"{server.url}/api/v2/resources/3/maintenance",
        json={"on": True},
        headers={"X-API-Key": admin},
        timeout=10,
    )
    assert off.status_code == 200, off.text
    page.goto(f"{server.url}/tags")
    rows = page.locator("#tags tbody tr")
    expect(rows).to_have_count(3)
    got = [
        [cell.strip() for cell in rows.nth(i).locator("td").all_inner_texts()[:6]] for i in range(3)
    ]
    assert got == [
        ["fast", "1", "1", "0", "2", "0"],
        ["lab", "1", "1", "1", "3", "0"],
        ["scope", "1", "0", "0", "1", "0"],
    ]
    page.locator('#tags tr[data-tag="lab"] a.tag').click()
    expect(page).to_have_url(f"{server.url}/tags/lab")
    expect(page.locator("#pool dd.count.maintenance")).to_have_text("1")


def test_an_event_from_the_api_shows_on_the_open_activity_page_within_a_second(
    server: Server, page: Page
) -> None:
    """With /activity open and following the stream, a lease taken through the API appears
    as the newest row within 1 s, without a new document; its hostile owner is text."""
    page.goto(f"{server.url}/activity")
    expect(page.locator("body[data-live=open]")).to_have_count(1)
    loaded = count_navigations(page)
    page.evaluate("() => { window.sameDocument = true; }")

    lease = _lease(server, 2, owner=HOSTILE)
    newest = page.locator("#activity tbody tr").first
    expect(newest.locator("td").nth(1)).to_have_text("granted", timeout=LIVE_TIMEOUT_MS)
    expect(newest.locator("td").nth(3)).to_have_text(str(lease["id"]))
    expect(newest.locator("td.detail")).to_contain_text(f"owner {HOSTILE}")
    expect(newest.locator("a")).to_have_attribute("href", "/resources/2")
    assert loaded == [], "the page reloaded instead of updating in place"
    assert page.evaluate("() => window.sameDocument") is True
    assert page.evaluate("() => window.pwned") is None
