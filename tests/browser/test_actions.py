"""A person's actions at the page in a real Chromium against a real server: reserve and
release clicked end to end (checked through the API), hostile owners and descriptors run no
script, and an action posted from another origin is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Dialog, Page, expect

from rentabot.domain.identity import Role
from tests.browser.conftest import STILL_PAGE
from tests.browser.test_csrf import OtherSite
from tests.support import Server, write_descriptor

pytestmark = pytest.mark.browser

#: Sets a flag (and opens a dialog) if it ever runs: text, not markup, everywhere.
HOSTILE = '<img src=x onerror="window.pwned=1;alert(1)">\'"</script><script>window.pwned=2</script>'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real server on two boards, one of them named and described with hostile text."""
    folder: Path = tmp_path_factory.mktemp("actions")
    descriptor = write_descriptor(
        folder / "resources.yml",
        {
            "board-a": {"description": "a plain board", "endpoint": "tcp://a", "tags": ["lab"]},
            HOSTILE[:60]: {
                "description": HOSTILE * 20,
                "endpoint": HOSTILE,
                "tags": ["lab"],
                "properties": {"note": HOSTILE},
            },
        },
    )
    with Server(folder / "rentabot.db", descriptor, env=STILL_PAGE) as running:
        yield running


def _sign_in(page: Page, server: Server, name: str) -> None:
    page.goto(f"{server.url}/signin")
    page.fill("#key", server.key(name, Role.LOCK))
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_contain_text(f"{name} (lock)")


def _held(server: Server) -> list[dict[str, object]]:
    answer = httpx.get(f"{server.url}/api/v2/resources", params={"state": "locked"}, timeout=10)
    resources: list[dict[str, object]] = answer.json()["resources"]
    return resources


def test_reserve_then_release_clicked_make_and_end_a_real_lease(server: Server, page: Page) -> None:
    """Reserve on a free row makes a lease owned by the person (seen through the API);
    Release on the same row frees it."""
    _sign_in(page, server, "ada")
    row = page.locator('#resources tr[data-resource-id="1"]')
    row.get_by_label("Duration for board-a").select_option("900")
    row.get_by_role("button", name="Reserve").click()
    expect(page.locator(".notice")).to_contain_text("Reserved board-a")
    (held,) = _held(server)
    assert held["id"] == 1
    assert held["holder"]["principal"] == "ada"  # type: ignore[index]
    row.get_by_role("button", name="Release").click()
    expect(page.locator(".notice")).to_contain_text("Released")
    assert _held(server) == []


def test_hostile_text_runs_no_script_and_a_stranger_cannot_release(
    server: Server, page: Page
) -> None:
    """A lease with a hostile owner shows as text on a page with hostile names; nothing
    runs (no dialog, no flag); another person sees no Release button for it."""
    lease = httpx.post(
        f"{server.url}/api/v2/leases",
        json={"select": {"ids": [2]}, "ttl": 600, "owner": HOSTILE},
        headers={"X-API-Key": server.key("ci", Role.LOCK)},
        timeout=10,
    )
    assert lease.status_code == 201, lease.text
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    try:
        _sign_in(page, server, "bob")
        row = page.locator('#resources tr[data-resource-id="2"]')
        expect(row.locator(".holder")).to_contain_text("<img src=x")
        expect(row.get_by_role("button", name="Release")).to_have_count(0)
        assert page.locator("main img, main script").count() == 0
        assert page.evaluate("() => window.pwned") is None
        assert dialogs == []
        page.evaluate("() => alert('probe')")
        assert dialogs == ["probe"]
    finally:
        lease_id = lease.json()["lease"]["id"]
        httpx.delete(
            f"{server.url}/api/v2/leases/{lease_id}",
            headers={"X-API-Key": server.key("ci", Role.LOCK)},
            timeout=10,
        )


def test_a_reserve_posted_from_another_origin_is_refused(server: Server, page: Page) -> None:
    """A signed-in person's browser posting Reserve from a sibling port gets 403; nothing
    is leased."""
    _sign_in(page, server, "ada")
    forged = f"""<!doctype html><form method="post" action="{server.url}/actions/reserve">
    <input type="hidden" name="resource_id" value="1"><button>go</button></form>"""
    with OtherSite(forged) as other:
        page.goto(other.url)
        with page.expect_response(f"{server.url}/actions/reserve") as posted:
            page.get_by_role("button", name="go").click()
        assert posted.value.status == 403
    assert _held(server) == []
