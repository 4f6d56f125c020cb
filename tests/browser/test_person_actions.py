"""A person's actions on a resource's page that test_actions.py and test_queue_join.py leave
out, clicked in a real Chromium against a real server and each checked through the HTTP API:
reserve for a chosen time and extend the same lease, leave the queue from the panel (audited),
an admin's maintenance on and off and force-release (reason and actor in the audit trail),
no Operator section for anyone else, and no operator action without its confirmation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from rentabot.domain.identity import Role
from tests.browser.conftest import STILL_PAGE
from tests.support import Server, write_descriptor

pytestmark = pytest.mark.browser

#: How far (s) a lease's deadline may be from now + its ttl: the time between the click and
#: the check, on a shared machine.
SLACK_S = 60
#: Who signs in at the page, and the admin. `Server.key` keeps one key per name, so the
#: admin has a name of its own.
PERSON, ADMIN, OTHER = "ada", "root", "bob"
#: Resource id → name, in descriptor order (ids are given in that order).
BOARDS = {1: "board-a", 2: "board-b", 3: "board-c", 4: "board-d"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real server on four boards: one per test that changes a resource."""
    folder: Path = tmp_path_factory.mktemp("person")
    descriptor = write_descriptor(
        folder / "resources.yml",
        {name: {"description": f"{name} for a test"} for name in BOARDS.values()},
    )
    with Server(folder / "rentabot.db", descriptor, env=STILL_PAGE) as running:
        yield running


def _sign_in(page: Page, server: Server, name: str, role: Role = Role.LOCK) -> None:
    page.goto(f"{server.url}/signin")
    page.fill("#key", server.key(name, role))
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_contain_text(f"{name} ({role.label})")


def _resource(server: Server, resource_id: int) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/api/v2/resources", timeout=10)
    assert answer.status_code == 200, answer.text
    (resource,) = [r for r in answer.json()["resources"] if r["id"] == resource_id]
    return dict(resource)


def _events(server: Server, kind: str, **filters: int) -> list[dict[str, Any]]:
    answer = httpx.get(f"{server.url}/api/v2/events", params={**filters, "limit": 1000}, timeout=10)
    assert answer.status_code == 200, answer.text
    return [e for e in answer.json()["events"] if e["kind"] == kind]


def _history(server: Server, resource_id: int) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/api/v2/resources/{resource_id}/history", timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _lock_as_other(server: Server, resource_id: int) -> int:
    """A lease of `OTHER`'s on the resource, taken through the API; its id."""
    answer = httpx.post(
        f"{server.url}/api/v2/leases",
        json={"select": {"ids": [resource_id]}, "ttl": 600},
        headers={"X-API-Key": server.key(OTHER, Role.LOCK)},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    lease_id: int = answer.json()["lease"]["id"]
    return lease_id


def _release_as_other(server: Server, lease_id: int) -> None:
    """End `OTHER`'s lease if it still runs (a test that failed may leave it)."""
    httpx.delete(
        f"{server.url}/api/v2/leases/{lease_id}",
        headers={"X-API-Key": server.key(OTHER, Role.LOCK)},
        timeout=10,
    )


def _use_it(page: Page) -> Locator:
    return page.locator('section[aria-labelledby="use-heading"]')


def _operator_form(page: Page, button: str) -> Locator:
    """The Operator section's form whose button says `button`."""
    operator = page.locator('section[aria-labelledby="admin-heading"]')
    return operator.locator("form").filter(has=page.get_by_role("button", name=button))


def test_reserve_for_15_minutes_then_extend_to_4_hours_keeps_the_lease_and_moves_its_deadline(
    server: Server, page: Page
) -> None:
    """On board-a's page ada reserves it for 15 min: her lease expires about now + 900 s
    (through the API). Extend with 4 h chosen: the same lease now expires about now + 4 h.
    Release on the page frees it."""
    _sign_in(page, server, PERSON)
    page.goto(f"{server.url}/resources/1")
    _use_it(page).locator('select[name="ttl"]').select_option(label="15 min")
    _use_it(page).get_by_role("button", name="Reserve").click()
    expect(page.locator(".notice")).to_contain_text("Reserved board-a")
    holder = _resource(server, 1)["holder"]
    assert holder["principal"] == PERSON
    assert holder["expires_at"] == pytest.approx(time.time() + 900, abs=SLACK_S)
    lease_id = holder["lease_id"]

    _use_it(page).get_by_label("Extend by").select_option(label="4 h")
    _use_it(page).get_by_role("button", name="Extend").click()
    expect(page.locator(".notice")).to_contain_text("Extended")
    holder = _resource(server, 1)["holder"]
    assert holder["lease_id"] == lease_id
    assert holder["expires_at"] == pytest.approx(time.time() + 4 * 3600, abs=SLACK_S)
    (renewed,) = _events(server, "renewed", lease_id=lease_id)
    assert renewed["actor"] == PERSON

    _use_it(page).get_by_role("button", name="Release").click()
    expect(page.locator(".notice")).to_contain_text("Released")
    assert _resource(server, 1)["holder"] is None
    lease = httpx.get(f"{server.url}/api/v2/leases/{lease_id}", timeout=10).json()["lease"]
    assert lease["state"] == "released"


def test_leave_the_queue_from_the_panel_ends_the_ticket_and_is_audited_as_the_person(
    server: Server, page: Page
) -> None:
    """bob holds board-b (through the API); ada joins its queue on its page and the panel
    shows her place. She clicks Leave the queue in the panel: her ticket is gone from the
    API's queue, and the audit trail has `ticket_cancelled` for that ticket by ada."""
    lease_id = _lock_as_other(server, 2)
    try:
        _sign_in(page, server, PERSON)
        page.goto(f"{server.url}/resources/2")
        page.get_by_role("button", name="Join the queue").click()
        expect(page.locator(".notice")).to_contain_text("In the queue: place 1")
        panel = page.locator("#my-queue")
        expect(panel.locator(".place")).to_have_text("place 1")
        (ticket,) = httpx.get(f"{server.url}/api/v2/queue", timeout=10).json()["tickets"]
        assert (ticket["principal"], ticket["resource_ids"]) == (PERSON, [2])

        panel.get_by_role("button", name="Leave the queue").click()
        expect(page.locator(".notice")).to_contain_text("Cancelled")
        assert httpx.get(f"{server.url}/api/v2/queue", timeout=10).json()["tickets"] == []
        (cancelled,) = [
            e
            for e in _events(server, "ticket_cancelled")
            if e["detail"] == {"ticket": ticket["id"]}
        ]
        assert cancelled["actor"] == PERSON
        expect(page.locator("#my-queue li")).to_have_count(0)
        assert _resource(server, 2)["holder"]["principal"] == OTHER
    finally:
        _release_as_other(server, lease_id)
    assert _resource(server, 2)["holder"] is None


def test_an_admin_turns_maintenance_on_and_off_and_force_releases_with_reasons_on_the_page(
    server: Server, page: Page
) -> None:
    """root (admin) on board-c's page: Maintenance on with "flaky usb" puts it in maintenance
    (API) with the reason and root in its history and events; Maintenance off puts it back.
    Then bob locks it through the API; root force-releases it, the confirmation naming bob,
    with a reason: it is free, bob's lease ended, and `force_released` names root and why."""
    _sign_in(page, server, ADMIN, Role.ADMIN)
    page.goto(f"{server.url}/resources/3")
    form = _operator_form(page, "Maintenance on")
    form.get_by_label("Reason").fill("flaky usb")
    form.get_by_label("Take board-c out of service").check()
    form.get_by_role("button", name="Maintenance on").click()
    expect(page.locator(".notice")).to_contain_text("Maintenance on")
    assert _resource(server, 3)["state"] == "maintenance"
    (period,) = _history(server, 3)["maintenance"]
    assert (period["reason"], period["actor"], period["end"]) == ("flaky usb", ADMIN, None)
    (on,) = _events(server, "maintenance_on", resource_id=3)
    assert (on["actor"], on["detail"]) == (ADMIN, {"reason": "flaky usb"})

    form = _operator_form(page, "Maintenance off")
    form.get_by_label("Put board-c back in service").check()
    form.get_by_role("button", name="Maintenance off").click()
    expect(page.locator(".notice")).to_contain_text("Maintenance off")
    assert _resource(server, 3)["state"] == "available"
    (period,) = _history(server, 3)["maintenance"]
    assert period["end"] is not None
    assert period["end_actor"] == ADMIN
    (off,) = _events(server, "maintenance_off", resource_id=3)
    assert off["actor"] == ADMIN

    lease_id = _lock_as_other(server, 3)
    try:
        page.goto(f"{server.url}/resources/3")
        form = _operator_form(page, "Force-release")
        form.get_by_label("Reason").fill("job hung, board needed")
        form.get_by_label(f"End the lease of {OTHER}").check()
        form.get_by_role("button", name="Force-release").click()
        expect(page.locator(".notice")).to_contain_text("Force-released")
        resource = _resource(server, 3)
        assert (resource["state"], resource["holder"]) == ("available", None)
        lease = httpx.get(f"{server.url}/api/v2/leases/{lease_id}", timeout=10).json()["lease"]
        assert lease["state"] == "force_released"
        (forced,) = _events(server, "force_released", resource_id=3)
        assert forced["lease_id"] == lease_id
        assert (forced["actor"], forced["detail"]["reason"]) == (ADMIN, "job hung, board needed")
        (hold,) = _history(server, 3)["holds"]
        assert (hold["ended_by"], hold["end_actor"], hold["reason"]) == (
            "force_released",
            ADMIN,
            "job hung, board needed",
        )
    finally:
        _release_as_other(server, lease_id)


def test_a_person_who_is_not_an_admin_sees_no_operator_section_and_cannot_force_release(
    server: Server, page: Page
) -> None:
    """ada (lock role) on board-c while bob holds it: no Operator section, no
    Force-release or Maintenance button; a force-release posted from her page anyway is
    refused (403) and bob still holds it."""
    lease_id = _lock_as_other(server, 3)
    try:
        _sign_in(page, server, PERSON)
        page.goto(f"{server.url}/resources/3")
        expect(page.locator("#holder")).to_contain_text(OTHER)
        expect(page.get_by_role("heading", name="Operator")).to_have_count(0)
        expect(page.get_by_role("button", name="Force-release")).to_have_count(0)
        expect(page.get_by_role("button", name="Maintenance on")).to_have_count(0)
        status = page.evaluate(
            """async () => (await fetch("/actions/force-release", {
                method: "POST", redirect: "manual",
                headers: {"Content-Type": "application/x-www-form-urlencoded"},
                body: "resource_id=3&confirm=1&reason=mine",
            })).status"""
        )
        assert status == 403
        assert _resource(server, 3)["holder"]["principal"] == OTHER
    finally:
        _release_as_other(server, lease_id)


#: Records, on the page, each form submitted and each field the browser's check refused.
WATCH_FORMS = """() => {
  document.addEventListener("submit", (e) => window.__formEvents.push("submit"), true);
  document.addEventListener("invalid", (e) => window.__formEvents.push("invalid"), true);
}"""


def test_an_operator_form_is_not_submitted_without_its_confirmation_ticked(
    server: Server, page: Page
) -> None:
    """bob holds board-d. root fills a reason but does not tick: the browser does not submit
    Force-release or Maintenance on (the box is required), and with the browser's check
    turned off the server refuses them too: board-d stays bob's, not in maintenance.
    Ticked, Force-release goes through (so the form itself works)."""
    lease_id = _lock_as_other(server, 4)
    try:
        _sign_in(page, server, ADMIN, Role.ADMIN)
        page.goto(f"{server.url}/resources/4")
        page.evaluate(WATCH_FORMS)
        for button in ("Force-release", "Maintenance on"):
            form = _operator_form(page, button)
            form.get_by_label("Reason").fill("not sure")
            page.evaluate("() => { window.__formEvents = []; }")
            form.get_by_role("button", name=button).click()
            assert page.evaluate("() => window.__formEvents") == ["invalid"]
            assert form.locator('input[name="confirm"]').evaluate("box => box.matches(':invalid')")

        for button, refused in (
            ("Force-release", "Not released: tick the confirmation first"),
            ("Maintenance on", "Not changed: tick the confirmation first"),
        ):
            form = _operator_form(page, button)
            form.evaluate("form => { form.noValidate = true; }")
            form.get_by_role("button", name=button).click()
            expect(page.locator(".notice")).to_have_text(refused)
        resource = _resource(server, 4)
        assert (resource["state"], resource["holder"]["lease_id"]) == ("locked", lease_id)
        assert _history(server, 4)["maintenance"] == []
        assert _events(server, "maintenance_on", resource_id=4) == []
        assert _events(server, "force_released", resource_id=4) == []

        form = _operator_form(page, "Force-release")
        form.get_by_label(f"End the lease of {OTHER}").check()
        form.get_by_role("button", name="Force-release").click()
        expect(page.locator(".notice")).to_contain_text("Force-released")
        assert _resource(server, 4)["holder"] is None
    finally:
        _release_as_other(server, lease_id)
