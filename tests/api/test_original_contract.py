"""The original rent-a-bot 0.x contract (`seed-api.md`), answer by answer, on both prefixes."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

PREFIXES = ["/rentabot/api/v1.0", "/api/v1.0"]
BUSY = "Cannot lock the requested resource, resource(s) already locked"

COFFEE = {
    "id": 1,
    "name": "coffee-machine",
    "description": "Kitchen coffee machine",
    "endpoint": "tcp://192.168.1.50",
    "tags": "coffee kitchen food",
}


@pytest.fixture(params=PREFIXES)
def prefix(request: pytest.FixtureRequest) -> str:
    """Each test runs under both of the original's prefixes."""
    return str(request.param)


def test_listing_shows_every_resource_in_id_order_with_the_original_fields(
    client: TestClient, prefix: str
) -> None:
    """GET …/resources lists the descriptor's resources 1..N with the original's keys."""
    answer = client.get(f"{prefix}/resources")
    assert answer.status_code == 200
    resources = answer.json()["resources"]
    assert [r["id"] for r in resources] == [1, 2, 3, 4, 5]
    assert resources[0] == {**COFFEE, "lock-token": None, "lock-details": "Resource is available"}
    assert resources[2]["endpoint"] == ""
    assert resources[2]["tags"] == ""
    assert resources[3]["tags"] == "nrf52 ble bench3"


def test_get_one_resource_and_unknown_ids(client: TestClient, prefix: str) -> None:
    """GET …/resources/{id}: the resource, or 404 with the id for unknown ones."""
    assert client.get(f"{prefix}/resources/1").json() == {
        "resource": {**COFFEE, "lock-token": None, "lock-details": "Resource is available"}
    }
    missing = client.get(f"{prefix}/resources/7")
    assert missing.status_code == 404
    assert missing.json() == {"message": "Resource not found", "resource_id": 7}


def test_lock_by_id_returns_a_uuid_token_shown_only_to_the_holder(
    client: TestClient, prefix: str
) -> None:
    """A lock answers the token; the listing then shows a placeholder, not the secret."""
    answer = client.post(f"{prefix}/resources/1/lock")
    assert answer.status_code == 200
    body = answer.json()
    token = body["lock-token"]
    assert str(uuid.UUID(token)) == token
    assert body["message"] == "Resource locked"
    assert body["resource"] == {**COFFEE, "lock-token": token, "lock-details": "Resource locked"}
    shown = client.get(f"{prefix}/resources/1").json()["resource"]
    assert shown["lock-token"] not in (None, token)
    assert shown["lock-details"] == "Resource locked"
    assert token not in client.get(f"{prefix}/resources").text


def test_lock_of_a_held_resource_is_refused_with_403(client: TestClient, prefix: str) -> None:
    """A second lock of the same id: 403 with the original's busy body."""
    assert client.post(f"{prefix}/resources/2/lock").status_code == 200
    busy = client.post(f"{prefix}/resources/2/lock")
    assert busy.status_code == 403
    assert busy.json() == {"message": BUSY, "id": 2, "name": None, "tags": None}


def test_lock_by_id_zero_is_a_bad_request_and_unknown_id_is_404(
    client: TestClient, prefix: str
) -> None:
    """Id 0 answers 400 like the original; an id beyond the inventory answers 404."""
    zero = client.post(f"{prefix}/resources/0/lock")
    assert (zero.status_code, zero.json()["message"]) == (400, "Bad Request")
    missing = client.post(f"{prefix}/resources/99/lock")
    assert missing.status_code == 404
    assert missing.json() == {"message": "Resource not found", "resource_id": 99}


def test_unlock_with_the_token_frees_the_resource(client: TestClient, prefix: str) -> None:
    """Unlock with the holder's token: 200, and the status reads "Resource available"."""
    token = client.post(f"{prefix}/resources/3/lock").json()["lock-token"]
    answer = client.post(f"{prefix}/resources/3/unlock", params={"lock-token": token})
    assert answer.status_code == 200
    assert answer.json() == {"message": "Resource unlocked"}
    resource = client.get(f"{prefix}/resources/3").json()["resource"]
    assert (resource["lock-token"], resource["lock-details"]) == (None, "Resource available")


def test_unlock_errors_match_the_original(client: TestClient, prefix: str) -> None:
    """Free resource: 403 already unlocked; wrong or missing token: 403 invalid; unknown: 404."""
    free = client.post(f"{prefix}/resources/4/unlock", params={"lock-token": "x"})
    assert free.status_code == 403
    assert free.json() == {"message": "Resource is already unlocked", "resource_id": 4}

    token = client.post(f"{prefix}/resources/4/lock").json()["lock-token"]
    wrong = client.post(f"{prefix}/resources/4/unlock", params={"lock-token": "not-it"})
    assert wrong.status_code == 403
    body = wrong.json()
    assert body["message"] == "Cannot unlock resource, the lock token is not valid."
    assert body["invalid-lock-token"] == "not-it"
    assert body["resource"]["id"] == 4
    assert body["resource"]["lock-token"] != token
    missing_token = client.post(f"{prefix}/resources/4/unlock")
    assert missing_token.status_code == 403
    assert missing_token.json()["invalid-lock-token"] is None

    unknown = client.post(f"{prefix}/resources/42/unlock", params={"lock-token": token})
    assert unknown.status_code == 404
    assert unknown.json() == {"message": "Resource not found", "resource_id": 42}
    # The failed attempts changed nothing: the holder still unlocks.
    unlock = client.post(f"{prefix}/resources/4/unlock", params={"lock-token": token})
    assert unlock.status_code == 200


def test_lock_by_criteria_priority_is_id_then_name_then_tags(
    client: TestClient, prefix: str
) -> None:
    """?id= wins over ?name= over ?tag=; ?rid= is an alias of ?id=."""
    by_id = client.post(f"{prefix}/resources/lock", params={"id": "2", "name": "coffee-machine"})
    assert by_id.json()["resource"]["id"] == 2
    by_rid = client.post(f"{prefix}/resources/lock", params={"rid": "3"})
    assert by_rid.json()["resource"]["id"] == 3
    by_name = client.post(
        f"{prefix}/resources/lock", params={"name": "coffee-machine", "tag": "nrf52"}
    )
    assert by_name.json()["resource"]["id"] == 1
    by_tag = client.post(f"{prefix}/resources/lock", params=[("tag", "nrf52"), ("tag", "ble")])
    assert by_tag.json()["resource"]["id"] == 4
    # An empty id falls through to the name, as in the original.
    empty_id = client.post(f"{prefix}/resources/lock", params={"id": "", "tag": "nrf52"})
    assert empty_id.json()["resource"]["id"] == 5


def test_lock_by_tags_needs_every_tag_and_takes_the_first_free_match(
    client: TestClient, prefix: str
) -> None:
    """Tags are ANDed and exact; the lowest free id wins; then 403 when all are held."""
    first = client.post(f"{prefix}/resources/lock", params={"tag": "ble"})
    second = client.post(f"{prefix}/resources/lock", params={"tag": "ble"})
    assert (first.json()["resource"]["id"], second.json()["resource"]["id"]) == (4, 5)
    busy = client.post(f"{prefix}/resources/lock", params={"tag": "ble"})
    assert busy.status_code == 403
    assert busy.json() == {"message": BUSY, "id": None, "name": None, "tags": ["ble"]}
    none = client.post(f"{prefix}/resources/lock", params=[("tag", "ble"), ("tag", "coffee")])
    assert none.status_code == 404
    assert none.json() == {
        "message": "No resource found matching the tag(s)",
        "tags": ["ble", "coffee"],
    }
    case = client.post(f"{prefix}/resources/lock", params={"tag": "BLE"})
    assert case.status_code == 404


def test_lock_by_criteria_not_found_and_bad_request_bodies(client: TestClient, prefix: str) -> None:
    """Unknown id (echoed as a string) or name: 404; nothing usable: 400 Bad Request."""
    by_id = client.post(f"{prefix}/resources/lock", params={"id": "12"})
    assert (by_id.status_code, by_id.json()) == (
        404,
        {"message": "Resource not found", "resource_id": "12"},
    )
    by_name = client.post(f"{prefix}/resources/lock", params={"name": "nope"})
    assert (by_name.status_code, by_name.json()) == (
        404,
        {"message": "Resource not found", "resource_name": "nope"},
    )
    for params in ({}, {"name": ""}, {"colour": "blue"}):
        answer = client.post(f"{prefix}/resources/lock", params=params)
        assert answer.status_code == 400, params
        assert answer.json()["message"] == "Bad Request"


def test_busy_by_criteria_echoes_what_was_asked(client: TestClient, prefix: str) -> None:
    """The 403 of a lock by criteria carries the id and name as sent, and every tag."""
    assert client.post(f"{prefix}/resources/1/lock").status_code == 200
    busy = client.post(f"{prefix}/resources/lock", params={"id": "1", "tag": "x"})
    assert busy.json() == {"message": BUSY, "id": "1", "name": None, "tags": ["x"]}
    busy = client.post(f"{prefix}/resources/lock", params={"name": "coffee-machine"})
    assert busy.json() == {"message": BUSY, "id": None, "name": "coffee-machine", "tags": []}


def test_an_id_of_any_length_answers_404_with_the_id_as_sent(
    client: TestClient, prefix: str
) -> None:
    """Ids beyond 2⁶³, even too long for int(), answer 404 with the id as sent (a string)."""
    for digits, shown in [
        ("0" * 5000 + "7", 7),  # leading zeros do not count
        (str(2**63), str(2**63)),
        ("9" * 26, "9" * 26),
        ("9" * 5000, "9" * 5000),
        ("0" * 5000 + "9" * 5000, "0" * 5000 + "9" * 5000),
    ]:
        for method, path in [
            ("GET", f"{prefix}/resources/{digits}"),
            ("POST", f"{prefix}/resources/{digits}/lock"),
            ("POST", f"{prefix}/resources/{digits}/unlock?lock-token=x"),
        ]:
            answer = client.request(method, path)
            assert answer.status_code == 404, (method, path[:80], answer.text[:200])
            assert answer.json() == {"message": "Resource not found", "resource_id": shown}
    assert client.get(f"{prefix}/resources/{'0' * 5000}1").json()["resource"]["id"] == 1
    assert client.post(f"{prefix}/resources/{'0' * 5000}/lock").status_code == 400  # id 0
    assert client.get(f"{prefix}/resources/{'9' * 5000}/lock").status_code == 405
