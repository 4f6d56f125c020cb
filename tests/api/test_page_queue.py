"""The page's queue parts through HTTP (ASGI): joining the queue from a resource, the Waiting
column and a resource's own queue, a retired resource that is still held, and a join from
another origin refused."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_plus

import pytest
import yaml
from fastapi.testclient import TestClient

from rentabot.app import create_app
from rentabot.domain.identity import Role
from rentabot.service.bootstrap import prepare_database
from rentabot.settings import Settings
from tests.support import create_key

BOARDS = {"board-a": {"tags": ["lab"]}, "board-b": {"tags": ["lab"]}, "spare": {"tags": ["x"]}}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[TestClient, Settings, str, str]]:
    """An app on three boards, with an `alice` and a `bob` lock key; anonymous callers read."""
    descriptor = tmp_path / "resources.yml"
    descriptor.write_text(yaml.safe_dump(BOARDS))
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'rentabot.db'}",
        resource_descriptor=descriptor,
        anonymous_role="read",
    )
    prepare_database(settings)
    alice = create_key(settings.database_url, "alice", Role.LOCK)
    bob = create_key(settings.database_url, "bob", Role.LOCK)
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        yield client, settings, alice, bob


def _signed_in(client: TestClient, key: str) -> dict[str, str]:
    answer = client.post(
        "/signin",
        data={"key": key},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    session = answer.cookies["rentabot_session"]
    client.cookies.clear()
    return {"Cookie": f"rentabot_session={session}", "Origin": "http://testserver"}


def _said(answer: object) -> str:
    location: str = answer.headers["location"]  # type: ignore[attr-defined]
    return unquote_plus(location.split("done=", 1)[1])


def _row(page: str, resource_id: int) -> str:
    found = re.search(rf'<tr id="resource-{resource_id}".*?</tr>', page, re.S)
    assert found, f"no row for resource {resource_id}"
    return found.group(0)


def _waiting(page: str, resource_id: int) -> int:
    found = re.search(r'class="waiting">(\d+)<', _row(page, resource_id))
    assert found
    return int(found.group(1))


def test_joining_a_held_resource_queues_the_person_and_the_views_count_them(
    site: tuple[TestClient, Settings, str, str],
) -> None:
    """alice holds board-a; bob's join is a ticket of his at place 1 (through the API), the
    Waiting column says 1 for board-a and board-b's tag-mates count only what could take them,
    and board-a's page lists bob in its queue. A join of a free resource leases it at once."""
    client, _, alice, bob = site
    held = client.post(
        "/api/v2/leases", json={"select": {"ids": [1]}, "ttl": 600}, headers={"X-API-Key": alice}
    )
    assert held.status_code == 201
    as_bob = _signed_in(client, bob)
    joined = client.post(
        "/actions/join",
        data={"resource_id": "1", "ttl": "900", "wait": "3600", "back": "/resources/1"},
        headers=as_bob,
        follow_redirects=False,
    )
    assert joined.status_code == 303
    assert _said(joined).startswith("In the queue: place 1")
    (ticket,) = client.get("/api/v2/queue").json()["tickets"]
    assert (ticket["principal"], ticket["resource_ids"]) == ("bob", [1])
    assert ticket["wait_until"] - ticket["created_at"] == pytest.approx(3600, abs=5)

    page = client.get("/").text
    assert (_waiting(page, 1), _waiting(page, 2), _waiting(page, 3)) == (1, 0, 0)
    resource = client.get("/resources/1").text
    queue = re.search(r'<table id="resource-queue">.*?</table>', resource, re.S)
    assert queue
    assert f'data-ticket-id="{ticket["id"]}"' in queue.group(0)
    assert "bob" in queue.group(0)
    assert "Nobody waits for it." in client.get("/resources/2").text

    free = client.post(
        "/actions/join", data={"resource_id": "2"}, headers=as_bob, follow_redirects=False
    )
    assert _said(free) == "Reserved board-b: it was free and nobody waited"
    locked = client.get("/api/v2/resources", params={"state": "locked"}).json()["resources"]
    assert {(r["id"], r["holder"]["principal"]) for r in locked} == {(1, "alice"), (2, "bob")}


def test_a_join_by_tag_counts_for_every_resource_carrying_it(
    site: tuple[TestClient, Settings, str, str],
) -> None:
    """Both `lab` boards held; a join for one `lab` board waits, and both rows count it."""
    client, _, alice, bob = site
    both = {"select": {"tags": ["lab"], "count": 2}, "ttl": 600}
    assert client.post("/api/v2/leases", json=both, headers={"X-API-Key": alice}).status_code == 201
    joined = client.post(
        "/actions/join",
        data={"tag": "lab", "count": "1"},
        headers=_signed_in(client, bob),
        follow_redirects=False,
    )
    assert _said(joined).startswith("In the queue: place 1")
    page = client.get("/").text
    assert (_waiting(page, 1), _waiting(page, 2), _waiting(page, 3)) == (1, 1, 0)


def test_a_retired_resource_still_held_says_so_until_released(
    site: tuple[TestClient, Settings, str, str],
) -> None:
    """spare leaves the descriptor while alice holds it: its row says retired; once
    released, it is gone from the page."""
    client, settings, alice, _ = site
    held = client.post(
        "/api/v2/leases", json={"select": {"ids": [3]}, "ttl": 600}, headers={"X-API-Key": alice}
    )
    assert settings.resource_descriptor is not None
    settings.resource_descriptor.write_text(
        yaml.safe_dump({k: v for k, v in BOARDS.items() if k != "spare"})
    )
    prepare_database(settings)
    row = _row(client.get("/").text, 3)
    assert 'class="status retired"' in row
    assert "retired: gone once released" in row
    assert "Join queue" not in row
    client.delete(f"/api/v2/leases/{held.json()['lease']['id']}", headers={"X-API-Key": alice})
    assert 'id="resource-3"' not in client.get("/").text


def test_a_join_from_another_origin_or_without_sign_in_is_refused(
    site: tuple[TestClient, Settings, str, str],
) -> None:
    """A cookie join from a sibling port is 403; an anonymous one is refused; nothing waits."""
    client, _, alice, bob = site
    client.post(
        "/api/v2/leases", json={"select": {"ids": [1]}, "ttl": 600}, headers={"X-API-Key": alice}
    )
    forged = _signed_in(client, bob) | {"Origin": "http://testserver:8081"}
    answer = client.post(
        "/actions/join", data={"resource_id": "1"}, headers=forged, follow_redirects=False
    )
    assert answer.status_code == 403
    anonymous = client.post(
        "/actions/join",
        data={"resource_id": "1"},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert anonymous.status_code in {401, 403}
    assert client.get("/api/v2/queue").json()["tickets"] == []
