"""The v2 lease API through HTTP: acquire, renew, release, fences, request ids, errors."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from rentabot.app import create_app
from rentabot.service.bootstrap import prepare_database
from rentabot.settings import Settings


class FakeClock:
    """A clock the test moves by hand, so expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    """The app's clock."""
    return FakeClock()


@pytest.fixture
def api(example_settings: Settings, clock: FakeClock) -> Iterator[TestClient]:
    """A client of an app on the example resources, with a hand-moved clock."""
    prepare_database(example_settings)
    with TestClient(create_app(example_settings, clock=clock)) as client:
        yield client


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_acquire_by_tags_and_count_returns_token_fences_and_deadline(
    api: TestClient, clock: FakeClock
) -> None:
    """Two nrf52 boards at once: 201 with both, their fences, and now + ttl as deadline."""
    answer = api.post(
        "/api/v2/leases",
        json={"select": {"tags": ["nrf52"], "count": 2}, "ttl": 60, "owner": "ci/job/1"},
    )
    assert answer.status_code == 201
    lease = answer.json()["lease"]
    assert [r["name"] for r in lease["resources"]] == ["nrf52-board-1", "nrf52-board-2"]
    assert [r["fence"] for r in lease["resources"]] == [1, 1]
    assert lease["resources"][0]["properties"] == {"jlink": "50123456", "serial": "683012345"}
    assert (lease["state"], lease["owner"], lease["ttl"]) == ("active", "ci/job/1", 60)
    assert lease["expires_at"] == clock.now + 60
    assert len(lease["token"]) == 36


def test_all_or_nothing_when_part_of_a_selection_is_held(api: TestClient) -> None:
    """Asking for two names of which one is held grants neither (409) and holds nothing."""
    held = api.post("/api/v2/leases", json={"select": {"names": ["nrf52-board-2"]}})
    assert held.status_code == 201
    both = api.post(
        "/api/v2/leases", json={"select": {"names": ["nrf52-board-1", "nrf52-board-2"]}}
    )
    assert both.status_code == 409
    assert both.json()["error"]["code"] == "busy"
    listing = api.get("/api/v2/resources", params={"state": "locked"}).json()
    assert [r["name"] for r in listing["resources"]] == ["nrf52-board-2"]


def test_not_found_and_not_enough(api: TestClient) -> None:
    """Unknown names and more resources than exist answer 404 with a reason."""
    unknown = api.post("/api/v2/leases", json={"select": {"names": ["nope"]}})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "not_found")
    too_many = api.post("/api/v2/leases", json={"select": {"tags": ["nrf52"], "count": 3}})
    assert too_many.status_code == 404
    assert "Only 2 resource(s)" in too_many.json()["error"]["message"]


def test_invalid_requests_answer_422_with_a_code(api: TestClient) -> None:
    """Unknown fields, bad types, ids with names, and a non-positive TTL: 422 invalid_request."""
    for body in (
        {"select": {"tags": ["x"]}, "ttl": 0},
        {"select": {"tags": ["x"]}, "colour": "red"},
        {"select": {"ids": [1], "names": ["a"]}},
        {"select": {"ids": "one"}},
        {},
    ):
        answer = api.post("/api/v2/leases", json=body)
        assert answer.status_code == 422, body
        assert answer.json()["error"]["code"] == "invalid_request"
    assert api.post("/api/v2/leases", content=b"not json").status_code == 422


def test_renew_moves_the_deadline_and_expiry_frees_the_resources(
    api: TestClient, clock: FakeClock
) -> None:
    """Renewed before the deadline it lives on; past it, it is refused and its resource freed."""
    lease = api.post("/api/v2/leases", json={"select": {"ids": [1]}, "ttl": 10}).json()["lease"]
    path, auth = f"/api/v2/leases/{lease['id']}", _auth(lease["token"])
    clock.now += 9.9
    renewed = api.post(f"{path}/renew", headers=auth, json={"ttl": 20})
    assert renewed.status_code == 200
    assert renewed.json()["lease"]["expires_at"] == clock.now + 20
    clock.now += 20
    late = api.post(f"{path}/renew", headers=auth)
    assert (late.status_code, late.json()["error"]["code"]) == (403, "lease_ended")
    assert api.delete(path, headers=auth).status_code == 403
    # The sweep runs every 0.25 s of real time; wait for it to end the lease.
    for _ in range(100):
        if api.get(path, headers=auth).json()["lease"]["state"] == "expired":
            break
        time.sleep(0.05)
    assert api.get(path, headers=auth).json()["lease"]["state"] == "expired"
    again = api.post("/api/v2/leases", json={"select": {"ids": [1]}}).json()["lease"]
    assert again["resources"][0]["fence"] == 2


def test_only_the_token_releases_and_a_release_is_final(api: TestClient) -> None:
    """Wrong or missing token: 403, nothing changes; the right one releases once."""
    lease = api.post("/api/v2/leases", json={"select": {"ids": [2]}}).json()["lease"]
    path = f"/api/v2/leases/{lease['id']}"
    assert api.delete(path, headers=_auth("wrong")).status_code == 403
    assert api.delete(path).status_code == 403
    assert api.get(path, headers=_auth("wrong")).status_code == 403
    released = api.delete(path, headers=_auth(lease["token"]))
    assert released.status_code == 200
    assert released.json()["lease"]["state"] == "released"
    second = api.delete(path, headers=_auth(lease["token"]))
    assert (second.status_code, second.json()["error"]["code"]) == (403, "lease_ended")
    assert api.get("/api/v2/leases/999", headers=_auth("x")).status_code == 404


def test_a_retried_request_id_gets_the_same_lease(api: TestClient) -> None:
    """The same request_id twice: one lease, returned both times."""
    body = {"select": {"tags": ["ble"]}, "request_id": "job-7-attempt-1"}
    first = api.post("/api/v2/leases", json=body).json()["lease"]
    second = api.post("/api/v2/leases", json=body).json()["lease"]
    assert first == second
    listing = api.get("/api/v2/resources", params=[("tag", "ble"), ("state", "locked")]).json()
    assert listing["total"] == 1


def test_v1_lock_with_ttl_expires(api: TestClient, clock: FakeClock) -> None:
    """`?ttl=` on the original lock call gives a lease that the sweep ends after its TTL."""
    token = api.post("/rentabot/api/v1.0/resources/3/lock?ttl=5").json()["lock-token"]
    assert api.post("/rentabot/api/v1.0/resources/3/lock").status_code == 403
    clock.now += 5
    for _ in range(100):
        if api.get("/api/v1.0/resources/3").json()["resource"]["lock-token"] is None:
            break
        time.sleep(0.05)
    assert api.get("/api/v1.0/resources/3").json()["resource"]["lock-token"] is None
    refused = api.post("/api/v1.0/resources/3/unlock", params={"lock-token": token})
    assert refused.status_code == 403
    assert api.post("/api/v1.0/resources/3/lock?ttl=-1").status_code == 400
    assert api.post("/api/v1.0/resources/3/lock?ttl=soon").status_code == 400


def test_resources_filter_by_tag_and_state_and_page(api: TestClient) -> None:
    """Tags all match, state filters, offset and limit page, total counts every match."""
    api.post("/api/v2/leases", json={"select": {"ids": [4]}})
    page = api.get("/api/v2/resources", params={"limit": 2, "offset": 1}).json()
    assert [r["id"] for r in page["resources"]] == [2, 3]
    assert page["total"] == 5
    free_ble = api.get("/api/v2/resources", params={"tag": "ble", "state": "available"}).json()
    assert [r["id"] for r in free_ble["resources"]] == [5]
    assert "token" not in str(api.get("/api/v2/resources").json())


def test_a_locked_resource_names_its_holder_but_never_its_token(api: TestClient) -> None:
    """The listing gives a held resource's lease id, owner and deadline; a free one none."""
    body = {"select": {"ids": [2]}, "ttl": 60, "owner": "ci/job/9"}
    lease = api.post("/api/v2/leases", json=body).json()["lease"]
    listed = {r["id"]: r for r in api.get("/api/v2/resources").json()["resources"]}
    assert listed[2]["holder"] == {
        "lease_id": lease["id"],
        "owner": "ci/job/9",
        "principal": None,
        "acquired_at": lease["acquired_at"],
        "expires_at": lease["expires_at"],
    }
    assert listed[1]["holder"] is None
    assert lease["token"] not in str(listed)


def test_a_wait_that_runs_out_answers_409_with_the_last_queue_position(
    client: TestClient,
) -> None:
    """Held, and a 0.3 s wait (real clock): 409 not_granted, with why and the place it had."""
    assert client.post("/api/v2/leases", json={"select": {"ids": [1]}}).status_code == 201
    answer = client.post("/api/v2/leases", json={"select": {"ids": [1]}, "wait": 0.3})
    assert answer.status_code == 409
    assert answer.json()["error"] == {
        "code": "not_granted",
        "message": "Not granted: the request timed out",
        "reason": "timed_out",
        "position": 1,
    }
