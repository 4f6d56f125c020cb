"""The tags view, a tag's page and the activity view through HTTP (ASGI): counts follow a
lock and a maintenance, hostile tags and reasons render as text, an unknown tag is a 404,
and the activity lists the latest events newest first."""

from __future__ import annotations

import html
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from fastapi.testclient import TestClient
from markupsafe import escape

from rentabot.app import create_app
from rentabot.domain.identity import Role
from rentabot.service.bootstrap import prepare_database
from rentabot.settings import Settings
from rentabot.web.activity_page import ACTIVITY_LIMIT
from rentabot.web.views import MAX_FILTER
from tests.support import create_key

#: A tag holds no whitespace (the descriptor refuses it), so this one does without.
HOSTILE_TAG = "<img/src=x/onerror=alert(1)>\"'</script>"
HOSTILE = "<img src=x onerror=alert(1)>\"'</script><script>alert(2)</script>"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str, str]]:
    """An app on four boards (`lab`, one also `fast`, one with the hostile tag) and a scope;
    anonymous callers read; an `alice` lock key and a `root` admin key."""
    folder: Path = tmp_path_factory.mktemp("tags")
    descriptor = folder / "resources.yml"
    descriptor.write_text(
        yaml.safe_dump(
            {
                "b1": {"tags": ["lab", "fast"]},
                "b2": {"tags": ["lab"]},
                "b3": {"tags": ["lab"]},
                "b4": {"tags": ["lab", HOSTILE_TAG]},
                "scope": {"tags": ["scope"]},
            }
        )
    )
    settings = Settings(
        database_url=f"sqlite:///{folder / 'rentabot.db'}",
        resource_descriptor=descriptor,
        anonymous_role="read",
        long_poll_seconds=0.5,
    )
    prepare_database(settings)
    alice = create_key(settings.database_url, "alice", Role.LOCK)
    root = create_key(settings.database_url, "root", Role.ADMIN)
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        yield client, alice, root


def _counts(page: str, tag: str) -> dict[str, int]:
    """The counts in the tags view's row of `tag`."""
    row = page.split(f'<tr data-tag="{escape(tag)}">', 1)[1].split("</tr>", 1)[0]
    return {name: int(value) for name, value in re.findall(r'class="count (\w+)">(\d+)</td>', row)}


def test_tag_counts_follow_a_lock_and_a_maintenance_and_a_waiter(
    site: tuple[TestClient, str, str],
) -> None:
    """Locking b1, taking b2 out of service and a request waiting for `fast` change the rows
    of `lab` and `fast` (and leave `scope`), on the tags view and on the tag's page."""
    client, alice, root = site
    before = client.get("/tags")
    assert before.status_code == 200
    assert _counts(before.text, "lab") == {
        "free": 4,
        "held": 0,
        "maintenance": 0,
        "total": 4,
        "waiting": 0,
    }
    held = client.post(
        "/api/v2/leases", json={"select": {"ids": [1]}, "ttl": 600}, headers={"X-API-Key": alice}
    )
    assert held.status_code == 201, held.text
    off = client.post(
        "/api/v2/resources/2/maintenance",
        json={"on": True, "reason": HOSTILE},
        headers={"X-API-Key": root},
    )
    assert off.status_code == 200, off.text
    waiting = client.post(
        "/api/v2/leases",
        json={"select": {"tags": ["fast"], "count": 1}, "ttl": 60, "wait": 300},
        headers={"X-API-Key": alice},
    )
    assert waiting.status_code == 202, waiting.text
    try:
        page = client.get("/tags").text
        assert _counts(page, "lab") == {
            "free": 2,
            "held": 1,
            "maintenance": 1,
            "total": 4,
            "waiting": 0,
        }
        assert _counts(page, "fast") == {
            "free": 0,
            "held": 1,
            "maintenance": 0,
            "total": 1,
            "waiting": 1,
        }
        assert _counts(page, "scope")["free"] == 1
        assert '<a href="/?tag=lab">' in page
        assert '<a class="tag" href="/tags/lab">' in page
        tag = client.get("/tags/fast")
        assert tag.status_code == 200
        pool = tag.text.split('id="pool"', 1)[1].split("</dl>", 1)[0]
        assert re.findall(r'class="count (\w+)">(\d+)', pool) == [
            ("free", "0"),
            ("held", "1"),
            ("maintenance", "0"),
            ("total", "1"),
            ("waiting", "1"),
        ]
    finally:
        ticket_id = waiting.json()["ticket"]["id"]
        client.delete(f"/api/v2/tickets/{ticket_id}", headers={"X-API-Key": alice})


def test_a_tags_page_shows_its_usage_chart_and_the_lines_that_lock_one(
    site: tuple[TestClient, str, str],
) -> None:
    """The tag's page has the 7- and 30-day figures with their charts, and the `rentabot run`
    and curl lines for the tag."""
    client, _, _ = site
    page = client.get("/tags/lab").text
    assert "Last 7 days" in page
    assert "Last 30 days" in page
    assert page.count("<svg") == 2
    run, curl = (
        shlex.split(html.unescape(line))
        for line in re.findall(r'<pre class="snippet"><code>(.*?)</code></pre>', page)
    )
    assert run[:6] == ["rentabot", "run", "--url", "http://testserver", "--tag", "lab"]
    assert "http://testserver/api/v2/leases" in curl
    assert json.loads(curl[curl.index("-d") + 1])["select"] == {"tags": ["lab"], "count": 1}


def test_hostile_tags_render_as_text_on_the_tags_view_and_their_own_page(
    site: tuple[TestClient, str, str],
) -> None:
    """The hostile tag is escaped in the row, in its links (percent-encoded) and on its own
    page (title, heading, lines); the page carries the CSP."""
    client, _, _ = site
    escaped = str(escape(HOSTILE_TAG))
    overview = client.get("/tags")
    assert HOSTILE_TAG not in overview.text
    assert escaped in overview.text
    assert f'href="/tags/{quote(HOSTILE_TAG)}"' in overview.text
    assert "script-src 'self'" in overview.headers["Content-Security-Policy"]
    page = client.get(f"/tags/{quote(HOSTILE_TAG, safe='')}")
    assert page.status_code == 200
    assert HOSTILE_TAG not in page.text
    assert "<img" not in page.text
    assert "<script>" not in page.text
    assert page.text.count(escaped) >= 2


def test_an_unknown_empty_or_overlong_tag_is_a_404_page_that_escapes_it(
    site: tuple[TestClient, str, str],
) -> None:
    """A tag no resource carries, a tag path with nothing in it, and a tag past the bound:
    the not-found page, the tag (bounded) as text."""
    client, _, _ = site
    unknown = client.get(f"/tags/{quote(HOSTILE, safe='')}")
    assert unknown.status_code == 404
    assert "No resource carries the tag" in unknown.text
    assert "<script>alert(2)" not in unknown.text
    assert "&lt;script&gt;" in unknown.text
    assert client.get("/tags/").status_code == 404
    long = client.get("/tags/" + "x" * (MAX_FILTER + 1))
    assert long.status_code == 404
    assert "x" * (MAX_FILTER + 1) not in long.text


def test_the_activity_lists_the_latest_events_newest_first_as_text(
    site: tuple[TestClient, str, str],
) -> None:
    """A release then a renewal show newest first, each row linking its resource; the
    maintenance reason (hostile) is text; at most ACTIVITY_LIMIT rows; the API's events
    are the same ones."""
    client, alice, _ = site
    for _ in range(ACTIVITY_LIMIT // 2 + 5):  # more events than the view shows
        lease = client.post(
            "/api/v2/leases",
            json={"select": {"ids": [3]}, "ttl": 600, "owner": "job-<b>7</b>"},
            headers={"X-API-Key": alice},
        ).json()["lease"]
        released = client.delete(f"/api/v2/leases/{lease['id']}", headers={"X-API-Key": alice})
        assert released.status_code == 200, released.text
    answer = client.get("/activity")
    assert answer.status_code == 200
    page = answer.text
    ids = [int(i) for i in re.findall(r'data-event-id="(\d+)"', page)]
    assert len(ids) == ACTIVITY_LIMIT
    assert ids == sorted(ids, reverse=True)
    latest = client.get("/api/v2/events", params={"since": ids[0] - 1}).json()["events"]
    assert [e["id"] for e in latest] == [ids[0]]
    assert latest[0]["kind"] == "released"
    first_row = page.split(f'data-event-id="{ids[0]}">', 1)[1].split("</tr>", 1)[0]
    assert '<a href="/resources/3">b3</a>' in first_row  # by name, not id
    assert "released" in first_row
    assert ">alice<" in first_row
    assert f'data-since="{ids[0]}"' in page
    assert "job-&lt;b&gt;7&lt;/b&gt;" in page
    assert "<b>7</b>" not in page


def test_the_activity_escapes_a_hostile_reason_and_the_nav_lists_the_views(
    site: tuple[TestClient, str, str],
) -> None:
    """Right after a maintenance with a hostile reason, its row shows the reason as text;
    every page's nav links the tags and activity views."""
    client, _, root = site
    done = client.post(
        "/api/v2/resources/5/maintenance",
        json={"on": True, "reason": HOSTILE},
        headers={"X-API-Key": root},
    )
    assert done.status_code == 200, done.text
    page = client.get("/activity").text
    assert "maintenance on" in page
    assert ">root<" in page
    assert HOSTILE not in page
    assert str(escape(HOSTILE)) in page
    for path in ("/", "/tags", "/activity", "/queue"):
        nav = client.get(path).text
        assert '<a href="/tags">Tags</a>' in nav
        assert '<a href="/activity">Activity</a>' in nav
