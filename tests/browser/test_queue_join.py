"""Joining the queue at the page, in a real Chromium against a real server: the person's
place is a real ticket (seen through the API), the page shows it moving as the people ahead
are served, and when the holder releases, the page raises an in-page alert and a browser
notification, and the lease is the person's."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from rentabot.domain.identity import Role
from tests.browser.conftest import STILL_PAGE
from tests.browser.test_page import LIVE_TIMEOUT_MS
from tests.support import Server, write_descriptor

pytestmark = pytest.mark.browser

#: Replaces the browser's Notification with one that records what it was asked to show (a
#: headless browser has no screen to show it on); permission is granted, as a person would.
RECORD_NOTIFICATIONS = """
window.__notified = [];
window.Notification = class {
  static permission = "granted";
  static requestPermission() { return Promise.resolve("granted"); }
  constructor(title, options) { window.__notified.push([title, (options || {}).body || ""]); }
};
"""
#: How long (ms) the page may take to tell of a grant: a long-poll answers at once on it.
GRANT_TIMEOUT_MS = 5_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real server on two boards (tagged `lab`)."""
    folder: Path = tmp_path_factory.mktemp("join")
    descriptor = write_descriptor(
        folder / "resources.yml",
        {
            "board-a": {"description": "a board", "tags": ["lab"]},
            "board-b": {"description": "another board", "tags": ["lab"]},
        },
    )
    with Server(folder / "rentabot.db", descriptor, env=STILL_PAGE) as running:
        yield running


@pytest.fixture
def person(browser: Browser) -> Iterator[Page]:
    """A tab whose notifications are recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(RECORD_NOTIFICATIONS)
    yield context.new_page()
    context.close()


def _sign_in(page: Page, server: Server, name: str) -> None:
    page.goto(f"{server.url}/signin")
    page.fill("#key", server.key(name, Role.LOCK))
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_contain_text(f"{name} (lock)")


def _api(server: Server, name: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"X-API-Key": server.key(name, Role.LOCK)}, timeout=30
    )


def _lock(client: httpx.Client, resource_id: int) -> int:
    answer = client.post("/api/v2/leases", json={"select": {"ids": [resource_id]}, "ttl": 600})
    assert answer.status_code == 201, answer.text
    lease_id: int = answer.json()["lease"]["id"]
    return lease_id


def _holder(server: Server, resource_id: int) -> str | None:
    answer = httpx.get(f"{server.url}/api/v2/resources", timeout=10)
    (resource,) = [r for r in answer.json()["resources"] if r["id"] == resource_id]
    holder = resource["holder"]
    return None if holder is None else str(holder["principal"])


def test_a_person_who_joins_the_queue_is_told_and_holds_it_when_the_holder_releases(
    server: Server, person: Page, page: Page
) -> None:
    """bob holds board-a; ada joins its queue from its page: a real ticket of hers (the API's
    queue), place 1 on the page, and another open page's Waiting column for board-a goes
    from 0 to 1 live. bob releases through the API: the page alerts and notifies her, the
    API shows her holding board-a (the other page's count back to 0); she releases it from
    the page."""
    with _api(server, "bob") as bob:
        lease = _lock(bob, 1)
        page.goto(server.url)
        waiting = page.locator('#resources tr[data-resource-id="1"] td.waiting')
        expect(page.locator("body")).to_have_attribute("data-live", "open")
        expect(waiting).to_have_text("0")
        _sign_in(person, server, "ada")
        person.goto(f"{server.url}/resources/1")
        person.get_by_role("button", name="Join the queue").click()
        expect(person.locator(".notice")).to_contain_text("In the queue: place 1")
        expect(person.locator("#my-queue .place")).to_have_text("place 1")
        expect(waiting).to_have_text("1", timeout=LIVE_TIMEOUT_MS)
        (ticket,) = httpx.get(f"{server.url}/api/v2/queue", timeout=10).json()["tickets"]
        assert ticket["principal"] == "ada"
        assert ticket["resource_ids"] == [1]

        assert bob.delete(f"/api/v2/leases/{lease}").status_code == 200
        alert = person.locator('.granted[role="alert"]')
        expect(alert).to_contain_text("Your turn: board-a is yours", timeout=GRANT_TIMEOUT_MS)
        notified = person.evaluate("() => window.__notified")
        assert [title for title, _ in notified] == ["rentabot: your turn"]
        assert "board-a" in notified[0][1]
        assert _holder(server, 1) == "ada"
        assert httpx.get(f"{server.url}/api/v2/queue", timeout=10).json()["tickets"] == []
        expect(waiting).to_have_text("0", timeout=LIVE_TIMEOUT_MS)

    person.goto(f"{server.url}/resources/1")
    person.get_by_role("button", name="Release").click()
    expect(person.locator(".notice")).to_contain_text("Released")
    assert _holder(server, 1) is None


def test_the_page_shows_the_place_moving_as_the_people_ahead_are_served(
    server: Server, person: Page
) -> None:
    """bob holds board-b and carol waits for it (a long-poll through the API); ada joins at
    place 2. bob releases: carol is served and ada's page moves to place 1 without a reload.
    carol releases: ada is told it is her turn."""
    with _api(server, "bob") as bob, _api(server, "carol") as carol:
        held = _lock(bob, 2)
        carol_lease: dict[str, int] = {}

        def carol_waits() -> None:
            answer = carol.post(
                "/api/v2/leases", json={"select": {"ids": [2]}, "ttl": 600, "wait": 25}
            )
            carol_lease["id"] = answer.json()["lease"]["id"]

        waiter = threading.Thread(target=carol_waits)
        waiter.start()
        try:
            for _ in range(50):
                if httpx.get(f"{server.url}/api/v2/queue", timeout=10).json()["tickets"]:
                    break
                person.wait_for_timeout(100)
            _sign_in(person, server, "ada")
            person.goto(f"{server.url}/resources/2")
            person.get_by_role("button", name="Join the queue").click()
            place = person.locator("#my-queue .place")
            expect(place).to_have_text("place 2")

            assert bob.delete(f"/api/v2/leases/{held}").status_code == 200
            waiter.join(timeout=10)
            assert _holder(server, 2) == "carol"
            expect(place).to_have_text("place 1", timeout=GRANT_TIMEOUT_MS)
            expect(person.locator(".granted")).to_have_count(0)

            assert carol.delete(f"/api/v2/leases/{carol_lease['id']}").status_code == 200
            expect(person.locator(".granted")).to_contain_text(
                "board-b is yours", timeout=GRANT_TIMEOUT_MS
            )
            assert _holder(server, 2) == "ada"
        finally:
            waiter.join(timeout=30)
    person.get_by_role("link", name="Open board-b").click()
    person.get_by_role("button", name="Release").click()
    expect(person.locator(".notice")).to_contain_text("Released")


def test_a_person_reserves_two_by_tag_from_the_tag_page_then_waits_for_one(
    server: Server, person: Page
) -> None:
    """On /tags/lab ada reserves 2: both boards are hers, in one lease (through the API).
    Then bob, on the same page, sees no Reserve (none free) and joins the queue for one
    `lab` board; when ada releases, the page tells him, and it is his."""
    _sign_in(person, server, "ada")
    person.goto(f"{server.url}/tags/lab")
    form = person.locator("#reserve-tag")
    form.get_by_label("How many to reserve").fill("2")
    form.get_by_role("button", name="Reserve").click()
    expect(person.locator(".notice")).to_contain_text("Reserved board-a, board-b")
    assert (_holder(server, 1), _holder(server, 2)) == ("ada", "ada")

    context = person.context.browser.new_context()  # type: ignore[union-attr]
    context.add_init_script(RECORD_NOTIFICATIONS)
    bob = context.new_page()
    try:
        _sign_in(bob, server, "bob")
        bob.goto(f"{server.url}/tags/lab")
        expect(bob.locator("#reserve-tag")).to_have_count(0)
        bob.locator("#join-tag").get_by_role("button", name="Join the queue").click()
        expect(bob.locator(".notice")).to_contain_text("In the queue: place 1")
        # One lease holds both: releasing it frees both, and bob's one goes to him.
        person.goto(f"{server.url}/resources/2")
        person.get_by_role("button", name="Release").click()
        expect(bob.locator(".granted")).to_contain_text(
            "board-a is yours", timeout=GRANT_TIMEOUT_MS
        )
        assert (_holder(server, 1), _holder(server, 2)) == ("bob", None)
        bob.get_by_role("link", name="Open board-a").click()
        bob.get_by_role("button", name="Release").click()
        expect(bob.locator(".notice")).to_contain_text("Released")
    finally:
        context.close()
    assert (_holder(server, 1), _holder(server, 2)) == (None, None)
