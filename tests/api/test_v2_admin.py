"""Operator actions and the audit trail through the v2 API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from rentabot.app import create_app
from rentabot.domain.identity import Role
from rentabot.service.bootstrap import prepare_database
from rentabot.settings import Settings
from tests.support import create_key

#: The admin key's name: what the audit trail records as the actor.
ADMIN_NAME = "ops"


@pytest.fixture
def api(example_settings: Settings) -> Iterator[TestClient]:
    """A client of an app on the example resources."""
    prepare_database(example_settings)
    with TestClient(create_app(example_settings)) as client:
        yield client


@pytest.fixture
def admin(api: TestClient, example_settings: Settings) -> dict[str, str]:
    """The headers of an admin key named ADMIN_NAME."""
    return {"X-API-Key": create_key(example_settings.database_url, ADMIN_NAME, Role.ADMIN)}


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_maintenance_stops_new_grants_but_lets_a_lease_run_to_its_end(
    api: TestClient, admin: dict[str, str]
) -> None:
    """In maintenance: the holder keeps it and can renew; nobody new gets it; back: free."""
    lease = api.post("/api/v2/leases", json={"select": {"ids": [1]}}).json()["lease"]
    on = api.post(
        "/api/v2/resources/1/maintenance", json={"on": True, "reason": "fan broken"}, headers=admin
    )
    assert on.status_code == 200
    assert on.json()["resource"]["state"] == "locked"
    assert (
        api.delete(f"/api/v2/leases/{lease['id']}", headers=_auth(lease["token"])).status_code
        == 200
    )
    listed = api.get("/api/v2/resources", params={"state": "maintenance"}).json()
    assert [r["id"] for r in listed["resources"]] == [1]
    refused = api.post("/api/v2/leases", json={"select": {"ids": [1]}})
    assert refused.status_code == 409
    assert api.post("/rentabot/api/v1.0/resources/1/lock").status_code == 403
    off = api.post("/api/v2/resources/1/maintenance", json={"on": False}, headers=admin)
    assert off.json()["resource"]["state"] == "available"
    assert api.post("/api/v2/leases", json={"select": {"ids": [1]}}).status_code == 201
    audit = api.get("/api/v2/events", params={"resource_id": 1}).json()["events"]
    by_kind = {e["kind"]: e for e in audit}
    assert by_kind["maintenance_on"]["actor"] == ADMIN_NAME
    assert by_kind["maintenance_on"]["detail"] == {"reason": "fan broken"}
    assert by_kind["maintenance_off"]["actor"] == ADMIN_NAME


def test_force_release_ends_the_whole_lease_and_audits_who_and_why(
    api: TestClient, admin: dict[str, str]
) -> None:
    """Force-release frees every resource of the lease; the holder's token is then refused."""
    lease = api.post("/api/v2/leases", json={"select": {"tags": ["nrf52"], "count": 2}}).json()[
        "lease"
    ]
    answer = api.post(
        "/api/v2/resources/4/force-release", json={"reason": "stuck job"}, headers=admin
    )
    assert answer.status_code == 200
    assert answer.json()["lease_id"] == lease["id"]
    assert answer.json()["resource"]["state"] == "available"
    state = api.get(f"/api/v2/leases/{lease['id']}", headers=_auth(lease["token"])).json()
    assert state["lease"]["state"] == "force_released"
    assert state["lease"]["resources"] == []
    renew = api.post(f"/api/v2/leases/{lease['id']}/renew", headers=_auth(lease["token"]))
    assert renew.json()["error"]["code"] == "lease_ended"
    audit = api.get("/api/v2/events", params={"lease_id": lease["id"]}).json()["events"]
    forced = [e for e in audit if e["kind"] == "force_released"]
    assert sorted(e["resource_id"] for e in forced) == [4, 5]
    assert {(e["actor"], e["detail"]["reason"]) for e in forced} == {(ADMIN_NAME, "stuck job")}
    again = api.post("/api/v2/resources/4/force-release", json={}, headers=admin)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "not_locked")
    assert api.post("/api/v2/resources/99/force-release", json={}, headers=admin).status_code == 404


@pytest.mark.parametrize(
    "path", ["/api/v2/resources/1/force-release", "/api/v2/resources/1/maintenance"]
)
def test_an_actor_in_the_body_is_refused_not_recorded(
    api: TestClient, admin: dict[str, str], path: str
) -> None:
    """Who did it comes from the key: a body naming an `actor` is refused with 422 and does
    nothing, so nobody can write another name into the audit trail."""
    lease = api.post("/api/v2/leases", json={"select": {"ids": [1]}}).json()["lease"]
    refused = api.post(path, json={"on": True, "actor": "somebody-else"}, headers=admin)
    assert refused.status_code == 422
    assert "actor" in refused.json()["error"]["message"]
    state = api.get(f"/api/v2/leases/{lease['id']}", headers=_auth(lease["token"])).json()
    assert state["lease"]["state"] == "active"
    actors = {e["actor"] for e in api.get("/api/v2/events").json()["events"]}
    assert "somebody-else" not in actors


def test_events_page_with_since_and_filter_by_resource(api: TestClient) -> None:
    """Events come oldest first; `since` pages without gaps or repeats."""
    for _ in range(3):
        lease = api.post("/api/v2/leases", json={"select": {"ids": [2]}}).json()["lease"]
        api.delete(f"/api/v2/leases/{lease['id']}", headers=_auth(lease["token"]))
    seen: list[int] = []
    since = 0
    while True:
        page = api.get(
            "/api/v2/events", params={"resource_id": 2, "since": since, "limit": 2}
        ).json()
        if not page["events"]:
            break
        seen += [e["id"] for e in page["events"]]
        since = page["last"]
    kinds = [
        e["kind"] for e in api.get("/api/v2/events", params={"resource_id": 2}).json()["events"]
    ]
    assert kinds == ["resource_added"] + ["granted", "released"] * 3
    assert seen == sorted(set(seen))
    assert len(seen) == 7


def test_the_openapi_document_describes_v2_with_examples(api: TestClient) -> None:
    """/openapi.json lists the v2 routes, the error shape, and the acquire example."""
    document = api.get("/openapi.json").json()
    paths = document["paths"]
    for path in (
        "/api/v2/leases",
        "/api/v2/leases/{lease_id}",
        "/api/v2/leases/{lease_id}/renew",
        "/api/v2/tickets/{ticket_id}",
        "/api/v2/queue",
        "/api/v2/resources",
        "/api/v2/events",
        "/api/v2/events/stream",
        "/api/v2/resources/{resource_id}/force-release",
    ):
        assert path in paths, path
    assert "ErrorEnvelope" in document["components"]["schemas"]
    example = document["components"]["schemas"]["LeaseRequest"]["examples"][0]
    assert example["select"] == {"tags": ["nrf52"], "count": 1}
    assert "409" in paths["/api/v2/leases"]["post"]["responses"]
