"""The people's page through HTTP (ASGI): filters, sort and server-side paging over 10,000
resources, escaping of hostile text, the CSP, and reserve / extend / release by identity."""

from __future__ import annotations

import html
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from markupsafe import escape

from rentabot.app import create_app
from rentabot.domain.identity import Role
from rentabot.service.bootstrap import prepare_database
from rentabot.settings import Settings
from tests.support import create_key

HOSTILE = "<img src=x onerror=alert(1)>\"'</script><script>alert(2)</script>"
RESOURCES = 10_000


def _descriptor() -> dict[str, object]:
    resources: dict[str, object] = {
        f"board-{n:05d}": {
            "description": f"board number {n}",
            "endpoint": f"tcp://10.0.{n // 256}.{n % 256}",
            "tags": "lab " + ("even" if n % 2 == 0 else "odd") + (" rare" if n % 1000 == 0 else ""),
        }
        for n in range(RESOURCES)
    }
    resources["hostile"] = {
        "description": HOSTILE + "x" * 5000,
        "endpoint": HOSTILE,
        "tags": "hostile",
        "properties": {"note": HOSTILE},
    }
    return resources


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str, str]]:
    """An app on 10,001 resources, an `alice` and a `bob` lock key (shared by the module)."""
    folder: Path = tmp_path_factory.mktemp("page")
    descriptor = folder / "resources.yml"
    descriptor.write_text(yaml.safe_dump(_descriptor()))
    settings = Settings(
        database_url=f"sqlite:///{folder / 'rentabot.db'}",
        resource_descriptor=descriptor,
        anonymous_role="read",
    )
    prepare_database(settings)
    alice = create_key(settings.database_url, "alice", Role.LOCK)
    bob = create_key(settings.database_url, "bob", Role.LOCK)
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        yield client, alice, bob


def _ids(html: str) -> list[int]:
    return [int(found) for found in re.findall(r'data-resource-id="(\d+)"', html)]


def _signed_in(client: TestClient, key: str) -> dict[str, str]:
    answer = client.post(
        "/signin",
        data={"key": key},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    session = answer.cookies["rentabot_session"]
    client.cookies.clear()  # each call names its own session: no browser's jar is shared
    return {"Cookie": f"rentabot_session={session}", "Origin": "http://testserver"}


def test_the_first_page_of_10000_resources_is_one_page_with_the_total(
    site: tuple[TestClient, str, str],
) -> None:
    """The first page shows 50 rows in id order and says how many match in all."""
    client, _, _ = site
    answer = client.get("/")
    assert answer.status_code == 200
    assert _ids(answer.text) == list(range(1, 51))
    assert f"{RESOURCES + 1} resources match" in answer.text
    assert 'http-equiv="refresh"' not in answer.text


def test_tag_filters_must_all_match_and_pages_follow_on(
    site: tuple[TestClient, str, str],
) -> None:
    """`tag=even rare` keeps the 10 boards with both; page 2 of `odd` starts after page 1."""
    client, _, _ = site
    rare = client.get("/", params={"tag": "even rare"}).text
    assert "10 resources match" in rare
    assert len(_ids(rare)) == 10
    first = _ids(client.get("/", params={"tag": "odd", "size": "25"}).text)
    second = _ids(client.get("/", params={"tag": "odd", "size": "25", "page": "2"}).text)
    assert len(first) == len(second) == 25
    assert max(first) < min(second)
    assert all(n % 2 == 0 for n in first + second)  # board-00001 has id 2


def test_free_text_state_and_sort_filter_in_the_database(
    site: tuple[TestClient, str, str],
) -> None:
    """Text matches name, description or endpoint (with `%` taken literally); sort by name."""
    client, _, _ = site
    assert "1 resources match" in client.get("/", params={"q": "BOARD-09999"}).text
    assert "0 resources match" in client.get("/", params={"q": "%%"}).text
    assert "1 resources match" in client.get("/", params={"q": "10.0.39.15"}).text
    by_name = client.get("/", params={"sort": "name", "size": "25", "page": "1"}).text
    assert _ids(by_name)[0] == 1
    assert "0 resources match" in client.get("/", params={"state": "locked"}).text


def test_nonsense_filters_fall_back_instead_of_failing(
    site: tuple[TestClient, str, str],
) -> None:
    """Unknown states, sorts and page numbers open the default view, never a 500."""
    client, _, _ = site
    answer = client.get("/", params={"state": "x", "sort": "1;drop", "page": "-3", "size": "x"})
    assert answer.status_code == 200
    assert _ids(answer.text)[:1] == [1]


def test_hostile_text_is_escaped_and_every_page_has_a_strict_csp(
    site: tuple[TestClient, str, str],
) -> None:
    """Names, descriptions and endpoints are escaped; the CSP forbids inline scripts."""
    client, _, _ = site
    answer = client.get("/", params={"tag": "hostile"})
    assert "1 resources match" in answer.text
    assert "<img src=x" not in answer.text
    assert "<script>alert" not in answer.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in answer.text
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "<script>" not in answer.text
    assert "<style>" not in answer.text
    assert "content-security-policy" in client.get("/signin").headers


def test_reserve_extend_release_by_identity_and_not_someone_elses(
    site: tuple[TestClient, str, str],
) -> None:
    """A person reserves a free board (a real lease, theirs), extends it; another person
    cannot release it; its holder can, from a second sign-in."""
    client, alice, bob = site
    as_alice = _signed_in(client, alice)
    done = client.post(
        "/actions/reserve",
        data={"resource_id": "7", "ttl": "900", "back": "/?q=board-00006"},
        headers=as_alice,
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"].startswith("/?q=board-00006&done=Reserved")
    held = client.get("/api/v2/resources", params={"state": "locked"}).json()["resources"]
    assert [r["id"] for r in held] == [7]
    lease_id = held[0]["holder"]["lease_id"]
    assert held[0]["holder"]["principal"] == "alice"
    mine = client.get("/", params={"mine": "1"}, headers=as_alice).text
    assert _ids(mine) == [7]
    assert "Release" in mine

    as_bob = _signed_in(client, bob)
    refused = client.post(
        "/actions/release",
        data={"lease_id": str(lease_id)},
        headers=as_bob,
        follow_redirects=False,
    )
    assert "Not+released" in refused.headers["location"]
    assert client.get("/api/v2/resources", params={"state": "locked"}).json()["total"] == 1

    again = _signed_in(client, alice)
    extended = client.post(
        "/actions/extend",
        data={"lease_id": str(lease_id), "ttl": "3600"},
        headers=again,
        follow_redirects=False,
    )
    assert "done=Extended" in extended.headers["location"]
    released = client.post(
        "/actions/release",
        data={"lease_id": str(lease_id)},
        headers=again,
        follow_redirects=False,
    )
    assert "done=Released" in released.headers["location"]
    assert client.get("/api/v2/resources", params={"state": "locked"}).json()["total"] == 0


def test_an_action_from_another_origin_or_without_sign_in_is_refused(
    site: tuple[TestClient, str, str],
) -> None:
    """A cookie write from a sibling port is 403; an anonymous reserve is refused."""
    client, alice, _ = site
    headers = _signed_in(client, alice) | {"Origin": "http://testserver:8081"}
    answer = client.post(
        "/actions/reserve", data={"resource_id": "3"}, headers=headers, follow_redirects=False
    )
    assert answer.status_code == 403
    anonymous = client.post(
        "/actions/reserve",
        data={"resource_id": "3"},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert anonymous.status_code in {401, 403}
    assert client.get("/api/v2/resources", params={"state": "locked"}).json()["total"] == 0


def test_a_resource_page_escapes_everything_and_its_curl_line_locks_it(
    site: tuple[TestClient, str, str],
) -> None:
    """The hostile resource's page shows its properties as text; the curl line's body, sent
    as the snippet says, makes a real lease on that very resource."""
    client, alice, _ = site
    found = client.get("/", params={"tag": "hostile"}).text
    (resource_id,) = _ids(found)
    page = client.get(f"/resources/{resource_id}")
    assert page.status_code == 200
    assert "<img src=x" not in page.text
    assert "<script>alert" not in page.text
    assert "content-security-policy" in page.headers
    lines = [html.unescape(line) for line in re.findall(r"<code>(.*?)</code>", page.text)]
    run, curl = lines
    assert run.startswith(f"rentabot run --url http://testserver --id {resource_id} ")
    words = shlex.split(curl)
    body = words[words.index("-d") + 1]
    answer = client.post(
        "/api/v2/leases",
        content=body,
        headers={"X-API-Key": alice, "Content-Type": "application/json"},
    )
    assert answer.status_code == 201, answer.text
    assert [r["id"] for r in answer.json()["lease"]["resources"]] == [resource_id]
    lease_id = answer.json()["lease"]["id"]
    assert client.delete(f"/api/v2/leases/{lease_id}", headers={"X-API-Key": alice}).is_success
    assert client.get("/resources/99999999").status_code == 404


def test_an_admin_forces_release_and_maintenance_only_when_confirmed(
    tmp_path: Path,
) -> None:
    """Force-release and maintenance without the confirmation change nothing; confirmed,
    they end the holder's lease and take the resource out of service, with the reason."""
    descriptor = tmp_path / "r.yml"
    descriptor.write_text(yaml.safe_dump({"a": {"tags": "x"}, "b": {"tags": "x"}}))
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", resource_descriptor=descriptor
    )
    prepare_database(settings)
    admin = create_key(settings.database_url, "root", Role.ADMIN)
    ada = create_key(settings.database_url, "ada", Role.LOCK)
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        lease = client.post(
            "/api/v2/leases",
            json={"select": {"ids": [1]}, "ttl": 600},
            headers={"X-API-Key": ada},
        )
        assert lease.status_code == 201
        page = client.get("/resources/1", headers={"X-API-Key": admin}).text
        assert "End the lease of ada" in page
        as_root = _signed_in(client, admin)
        form = {"resource_id": "1", "reason": "<b>stuck</b>", "back": "/resources/1"}
        unconfirmed = client.post(
            "/actions/force-release", data=form, headers=as_root, follow_redirects=False
        )
        assert "tick+the+confirmation" in unconfirmed.headers["location"]
        assert client.get("/api/v2/resources", params={"state": "locked"}).json()["total"] == 1
        done = client.post(
            "/actions/force-release",
            data=form | {"confirm": "1"},
            headers=as_root,
            follow_redirects=False,
        )
        assert done.headers["location"].startswith("/resources/1?done=Force-released")
        assert client.get("/api/v2/resources", params={"state": "locked"}).json()["total"] == 0
        on = client.post(
            "/actions/maintenance",
            data=form | {"on": "1", "confirm": "1"},
            headers=as_root,
            follow_redirects=False,
        )
        assert "Maintenance+on" in on.headers["location"]
        state = client.get("/api/v2/resources", params={"state": "maintenance"}).json()
        assert [r["id"] for r in state["resources"]] == [1]
        events = client.get("/api/v2/events", headers={"X-API-Key": admin}).json()
        reasons = [e["detail"].get("reason") for e in events["events"]]
        assert reasons.count("<b>stuck</b>") == 2
        assert "<b>stuck</b>" not in client.get("/resources/1").text


def test_a_resource_page_shows_its_history_and_usage_with_hostile_owners_escaped(
    site: tuple[TestClient, str, str],
) -> None:
    """A lease taken and released through the API appears in the resource's history on its
    page (owner escaped, ended "released"), beside figures for 7 and 30 days and their
    charts; a resource nobody held has figures but no hold."""
    client, alice, _ = site
    key = {"X-API-Key": alice}
    lease = client.post(
        "/api/v2/leases", json={"select": {"ids": [42]}, "owner": HOSTILE}, headers=key
    ).json()["lease"]
    released = client.delete(
        f"/api/v2/leases/{lease['id']}",
        headers={**key, "Authorization": f"Bearer {lease['token']}"},
    )
    assert released.status_code == 200, released.text
    page = client.get("/resources/42").text
    section = page.split('<section class="usage"', 1)[1].split("</section>", 1)[0]
    assert "<img" not in section
    assert "<script>" not in section
    assert str(escape(HOSTILE)) in section
    assert "released" in section
    assert section.count("<svg") == 2
    assert "last 7 days" in section
    assert "last 30 days" in section
    quiet = client.get("/resources/43").text.split('<section class="usage"', 1)[1]
    assert str(escape(HOSTILE)) not in quiet.split("</section>", 1)[0]
