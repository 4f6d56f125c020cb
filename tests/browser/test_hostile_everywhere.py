"""Hostile text runs no script anywhere on the site, in a real Chromium against a real server:
in resource names, descriptions, endpoints, properties and tags; in lease and ticket
owners; in maintenance and force-release reasons; and in what the queue panel and the grant
alert show. Every view is opened signed in, with a dialog recorder and a flag each payload
would set."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Dialog, Page, expect

from rentabot.domain.identity import Role
from tests.browser.conftest import STILL_PAGE
from tests.support import Server, write_descriptor

pytestmark = pytest.mark.browser

#: Sets `window.pwned` (and opens a dialog) if it ever runs as markup.
HOSTILE = (
    '<img src=x onerror="window.pwned=1;alert(1)">\'"</script>'
    "<script>window.pwned=2;alert(2)</script><svg onload=alert(3)>"
)
#: A tag is one word (no space, no comma): the same attack, without spaces.
HOSTILE_TAG = "<svg/onload=window.pwned=4;alert(4)>"
NAME = HOSTILE[:60]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A plain board and a hostile one; waiters that hang up stay queued for the test."""
    folder: Path = tmp_path_factory.mktemp("hostile")
    descriptor = write_descriptor(
        folder / "resources.yml",
        {
            "board-a": {"description": "a plain board", "tags": ["lab"]},
            NAME: {
                "description": HOSTILE * 10,
                "endpoint": HOSTILE,
                "tags": [HOSTILE_TAG, "lab"],
                "properties": {"note": HOSTILE},
            },
        },
    )
    env = STILL_PAGE | {"RENTABOT_QUEUE_KEEPALIVE": "600"}
    with Server(folder / "rentabot.db", descriptor, env=env) as running:
        yield running


def _sign_in(page: Page, server: Server, name: str, role: Role) -> None:
    page.goto(f"{server.url}/signin")
    page.fill("#key", server.key(name, role))
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_contain_text(f"{name} ({role.label})")


def _untouched(page: Page, dialogs: list[str], where: str) -> None:
    page.wait_for_timeout(150)  # let any event handler (onerror, onload) fire
    assert page.evaluate("() => window.pwned") is None, f"a payload ran on {where}"
    assert dialogs == [], f"a dialog opened on {where}: {dialogs}"
    assert page.locator("main img, main script, main iframe").count() == 0, where


def test_no_view_runs_hostile_text_from_descriptors_owners_reasons_or_the_queue(
    server: Server, page: Page
) -> None:
    """The hostile board is held by a lease with a hostile owner, a CI ticket with a hostile
    owner waits for it, board-a is in maintenance for a hostile reason; the signed-in person
    joins the hostile board's queue, an admin force-releases it with a hostile reason, and the
    person's grant alert names it. No view runs anything; the text is there, as text."""
    ci = {"X-API-Key": server.key("ci", Role.LOCK)}
    admin = {"X-API-Key": server.key("root", Role.ADMIN)}
    held = httpx.post(
        f"{server.url}/api/v2/leases",
        json={"select": {"ids": [2]}, "ttl": 600, "owner": HOSTILE},
        headers=ci,
        timeout=10,
    )
    assert held.status_code == 201, held.text
    # A CI job waits with a hostile owner, then hangs up: the long keep-alive keeps it.
    with contextlib.suppress(httpx.ReadTimeout):
        httpx.post(
            f"{server.url}/api/v2/leases",
            json={"select": {"tags": [HOSTILE_TAG]}, "ttl": 60, "wait": 600, "owner": HOSTILE},
            headers=ci,
            timeout=1,
        )
    maintenance = httpx.post(
        f"{server.url}/api/v2/resources/1/maintenance",
        json={"on": True, "reason": HOSTILE},
        headers=admin,
        timeout=10,
    )
    assert maintenance.status_code == 200, maintenance.text

    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    _sign_in(page, server, "ada", Role.LOCK)
    page.goto(f"{server.url}/resources/2")
    page.get_by_role("button", name="Join the queue").click()
    expect(page.locator("#my-queue .place")).to_have_text("place 2")

    views = ["/", "/?q=%3Cimg", "/resources/1", "/resources/2", "/queue", "/tags"]
    views += [f"/tags/{quote(HOSTILE_TAG, safe='')}", "/tags/lab", "/activity"]
    for view in views:
        page.goto(f"{server.url}{view}")
        _untouched(page, dialogs, view)
    page.goto(f"{server.url}/")
    expect(page.locator("#resources")).to_contain_text(NAME)
    expect(page.locator('#resources tr[data-resource-id="2"] .holder')).to_contain_text(
        "<img src=x"
    )
    page.goto(f"{server.url}/tags")
    expect(page.locator("#tags")).to_contain_text(HOSTILE_TAG)

    # The CI ticket (ahead) leaves; the admin ends the hostile lease: ada is told on the page.
    (ticket, _) = httpx.get(f"{server.url}/api/v2/queue", timeout=10).json()["tickets"]
    assert httpx.delete(
        f"{server.url}/api/v2/tickets/{ticket['id']}", headers=ci, timeout=10
    ).is_success
    page.goto(f"{server.url}/activity")
    forced = httpx.post(
        f"{server.url}/api/v2/resources/2/force-release",
        json={"reason": HOSTILE},
        headers=admin,
        timeout=10,
    )
    assert forced.status_code == 200, forced.text
    alert = page.locator('.granted[role="alert"]')
    expect(alert).to_contain_text(f"Your turn: {NAME}", timeout=5_000)
    expect(page.locator("#activity")).to_contain_text("force released", timeout=5_000)
    _untouched(page, dialogs, "/activity with the grant alert")
    page.goto(f"{server.url}/resources/2")
    expect(page.locator("main")).to_contain_text(HOSTILE[:30])
    _untouched(page, dialogs, "/resources/2 with its history")
    page.get_by_role("button", name="Release").click()
    expect(page.locator(".notice")).to_contain_text("Released")
