"""The queue view through HTTP (ASGI): waiting requests in serving order with their owner
(escaped), and cancelling one's own ticket while someone else's is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from rentabot.app import create_app
from rentabot.domain.identity import Role
from rentabot.service.bootstrap import prepare_database
from rentabot.settings import Settings
from tests.support import create_key

HOSTILE = "<img src=x onerror=alert(1)>\"'</script>"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str, str]]:
    """An app on two boards, an `alice` and a `bob` lock key (shared by the module)."""
    folder: Path = tmp_path_factory.mktemp("queue")
    descriptor = folder / "resources.yml"
    descriptor.write_text(yaml.safe_dump({"b1": {"tags": "lab"}, "b2": {"tags": "lab"}}))
    settings = Settings(
        database_url=f"sqlite:///{folder / 'rentabot.db'}",
        resource_descriptor=descriptor,
        anonymous_role="read",
        long_poll_seconds=0.5,
    )
    prepare_database(settings)
    alice = create_key(settings.database_url, "alice", Role.LOCK)
    bob = create_key(settings.database_url, "bob", Role.LOCK)
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        yield client, alice, bob


def _session(client: TestClient, key: str) -> dict[str, str]:
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


def test_the_queue_lists_waiters_in_order_and_only_the_owner_cancels(
    site: tuple[TestClient, str, str],
) -> None:
    """Two waiters show in serving order with escaped owners; alice's cancel of bob's ticket
    is refused, bob's own cancel removes it."""
    client, alice, bob = site
    body = {"select": {"tags": ["lab"], "count": 2}, "ttl": 600}
    held = client.post("/api/v2/leases", json=body, headers={"X-API-Key": alice})
    assert held.status_code == 201, held.text
    tickets = []
    for key in (bob, alice):
        asked = {"select": {"tags": ["lab"], "count": 1}, "ttl": 60, "wait": 300, "owner": HOSTILE}
        answer = client.post("/api/v2/leases", json=asked, headers={"X-API-Key": key})
        assert answer.status_code == 202, answer.text
        tickets.append(answer.json()["ticket"]["id"])
    page = client.get("/queue").text
    assert HOSTILE not in page
    assert "&lt;img src=x" in page
    assert page.index(f'data-ticket-id="{tickets[0]}"') < page.index(
        f'data-ticket-id="{tickets[1]}"'
    )
    as_alice, as_bob = _session(client, alice), _session(client, bob)
    form = {"ticket_id": str(tickets[0]), "back": "/queue"}
    refused = client.post("/actions/cancel", data=form, headers=as_alice, follow_redirects=False)
    assert refused.status_code == 303
    assert "Not+cancelled" in refused.headers["location"]
    assert f'data-ticket-id="{tickets[0]}"' in client.get("/queue").text
    done = client.post("/actions/cancel", data=form, headers=as_bob, follow_redirects=False)
    assert done.headers["location"] == "/queue?done=Cancelled"
    page = client.get("/queue").text
    assert f'data-ticket-id="{tickets[0]}"' not in page
    assert f'data-ticket-id="{tickets[1]}"' in page
