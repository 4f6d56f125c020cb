"""Upstream rent-a-bot 1.x's `/api/v1` (`upstream-v1-api.md`), call by call, on SQLite and
PostgreSQL; and where rentabot deliberately answers otherwise (docs/api-upstream-1x.md)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rentabot.app import create_app
from rentabot.service.bootstrap import prepare_database
from rentabot.settings import Settings
from tests.support import postgres_schema, write_descriptor

API = "/api/v1/resources"
#: Upstream 1.0's words, as its server answers them (checked against 1.0 itself).
BUSY = "Cannot lock the requested resource, resource is already locked"

_TAGS = {
    1: "misc,first",
    17: "coffee,kitchen",
    19: "coffee,kitchen",
    18: "lab,bench",
    20: "lab,bench",
}
#: A 1.x-style inventory: one resource per test, so tests share one app per database.
RESOURCES: dict[str, object] = {
    f"bot-{n}": {
        "description": f"bot number {n}",
        "endpoint": f"tcp://10.0.0.{n}",
        "tags": _TAGS.get(n, "misc"),
    }
    for n in range(1, 21)
}


@contextmanager
def _database(kind: str, directory: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'db.sqlite'}"
    else:
        with postgres_schema() as url:
            yield url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """One app per database on the 1.x-style inventory of 20 bots."""
    directory: Path = tmp_path_factory.mktemp(f"upstream-{request.param}")
    descriptor = write_descriptor(directory / "resources.yml", RESOURCES)
    with _database(request.param, directory) as url:
        settings = Settings(database_url=url, resource_descriptor=descriptor)
        prepare_database(settings)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield client


def _at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _lock(api: TestClient, resource_id: int, ttl: int | None = None) -> dict[str, object]:
    answer = api.post(f"{API}/{resource_id}/lock", json={"ttl": ttl} if ttl else None)
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_listing_and_get_use_1x_field_names_and_a_free_token_is_empty(api: TestClient) -> None:
    """GET /resources and /resources/{id}: 1.x's kebab-case object; tags as a comma string."""
    listing = api.get(API)
    assert listing.status_code == 200
    resources = listing.json()["resources"]
    assert [r["id"] for r in resources] == list(range(1, 21))
    one = api.get(f"{API}/1")
    assert one.status_code == 200
    assert one.json() == {
        "resource": {
            "id": 1,
            "name": "bot-1",
            "description": "bot number 1",
            "lock-token": "",
            "lock-details": "Resource is available",
            "endpoint": "tcp://10.0.0.1",
            "tags": "misc,first",
            "lock-acquired-at": None,
            "lock-expires-at": None,
            "max-lock-duration": 86400,
        }
    }
    assert resources[0] == one.json()["resource"]


def test_get_unknown_or_non_integer_ids(api: TestClient) -> None:
    """404 `{resource_id, message}` for unknown ids; 422 FastAPI detail for non-integers;
    `1.0` names resource 1, as in 1.x."""
    missing = api.get(f"{API}/99")
    assert missing.status_code == 404
    assert missing.json() == {"resource_id": 99, "message": "Resource not found"}
    bad = api.get(f"{API}/abc")
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["path", "resource_id"]
    assert api.get(f"{API}/1.0").json()["resource"]["id"] == 1


def test_lock_by_id_answers_the_token_and_times_and_lasts_the_default_hour(
    api: TestClient,
) -> None:
    """POST /{id}/lock without a body: 200 with message, lock-token (UUID4), resource,
    locked-at and expires-at (+00:00), an hour apart; the resource shows them with `Z`."""
    body = _lock(api, 2)
    token = str(body["lock-token"])
    assert str(uuid.UUID(token)) == token
    assert set(body) == {"message", "lock-token", "resource", "locked-at", "expires-at"}
    assert str(body["locked-at"]).endswith("+00:00")
    assert _at(str(body["expires-at"])) - _at(str(body["locked-at"])) == pytest.approx(3600)
    resource = body["resource"]
    assert isinstance(resource, dict)
    assert resource["lock-token"] == token
    assert resource["lock-expires-at"].endswith("Z")
    assert _at(resource["lock-expires-at"]) == pytest.approx(_at(str(body["expires-at"])))


def test_lock_with_a_json_ttl_and_a_query_ttl_is_ignored(api: TestClient) -> None:
    """`{"ttl": 120}` gives a two-minute lock; `?ttl=` is ignored (1.x's default applies)."""
    body = _lock(api, 3, ttl=120)
    assert _at(str(body["expires-at"])) - _at(str(body["locked-at"])) == pytest.approx(120)
    queried = api.post(f"{API}/4/lock?ttl=5").json()
    assert _at(queried["expires-at"]) - _at(queried["locked-at"]) == pytest.approx(3600)


def test_others_never_see_a_holders_token(api: TestClient) -> None:
    """Listings, GET and the busy 403 show `hidden`, never the token (1.x shows it)."""
    token = str(_lock(api, 5)["lock-token"])
    shown = api.get(f"{API}/5").json()["resource"]
    assert shown["lock-token"] == "hidden"
    assert shown["lock-details"] == "Resource locked"
    assert token not in api.get(API).text
    busy = api.post(f"{API}/5/lock")
    assert busy.status_code == 403
    assert busy.json() == {"resource_id": 5, "message": BUSY}
    by_name = api.post(f"{API}/lock?name=bot-5")
    assert (by_name.status_code, by_name.json()) == (403, {"resource_id": 5, "message": BUSY})
    assert token not in busy.text


def test_a_ttl_above_the_maximum_is_400_with_1x_body(api: TestClient) -> None:
    """ttl > 86400: 400 `{resource_id, ttl, max_lock_duration, message}`; nothing locked."""
    answer = api.post(f"{API}/6/lock", json={"ttl": 86401})
    assert answer.status_code == 400
    body = answer.json()
    assert body == {
        "resource_id": 6,
        "ttl": 86401,
        "max_lock_duration": 86400,
        "message": "Requested TTL (86401s) exceeds maximum allowed duration (86400s)",
    }
    assert api.get(f"{API}/6").json()["resource"]["lock-token"] == ""
    assert api.post(f"{API}/99/lock").status_code == 404


def test_lock_by_criteria_id_beats_name_beats_tags(api: TestClient) -> None:
    """`?id=` wins over `?name=`, which wins over `?tag=`."""
    by_id = api.post(f"{API}/lock?id=7&name=bot-8&tag=lab")
    assert by_id.json()["resource"]["id"] == 7
    by_name = api.post(f"{API}/lock?name=bot-8&tag=coffee")
    assert by_name.json()["resource"]["id"] == 8


def test_lock_by_tags_needs_every_tag_and_takes_the_lowest_free_id(api: TestClient) -> None:
    """Repeated `?tag=`: every one must match; the first free match in id order."""
    first = api.post(f"{API}/lock?tag=kitchen&tag=coffee").json()["resource"]
    assert (first["id"], first["tags"]) == (17, "coffee,kitchen")
    second = api.post(f"{API}/lock?tag=coffee&tag=kitchen").json()["resource"]
    assert second["id"] == 19
    none = api.post(f"{API}/lock?tag=coffee&tag=lab")
    assert none.status_code == 404
    assert none.json() == {
        "tags": ["coffee", "lab"],
        "message": "No resource found matching the tag(s)",
    }


def test_lock_by_criteria_refusals_have_1x_status_and_body(api: TestClient) -> None:
    """No parameter or id=0: 400 Bad Request; unknown name: 404 `{resource_name}`; a
    non-integer id: 422; a held id: 403."""
    assert api.post(f"{API}/lock").json() == {"message": "Bad Request"}
    assert api.post(f"{API}/lock").status_code == 400
    assert api.post(f"{API}/lock?id=0").status_code == 400
    unknown = api.post(f"{API}/lock?name=nobody")
    assert unknown.status_code == 404
    assert unknown.json()["resource_name"] == "nobody"
    assert api.post(f"{API}/lock?id=abc").status_code == 422
    _lock(api, 9)
    assert api.post(f"{API}/lock?id=9").status_code == 403


def test_every_tag_match_held_is_403_with_the_tags(api: TestClient) -> None:
    """When every resource carrying the tags is locked: 403 `{tags, message}`."""
    while api.post(f"{API}/lock?tag=lab&tag=bench").status_code == 200:
        pass
    busy = api.post(f"{API}/lock?tag=lab&tag=bench")
    assert busy.status_code == 403
    assert busy.json() == {
        "tags": ["lab", "bench"],
        "message": "No available resource found matching the tag(s)",
    }


def test_unlock_with_the_token_then_again_and_with_a_wrong_token(api: TestClient) -> None:
    """Unlock: 200 `Resource unlocked`; again 403 `{resource_id}`; a wrong or missing token
    403 `{resource, invalid-lock-token}` whose resource hides the real token; unknown 404."""
    token = str(_lock(api, 11)["lock-token"])
    wrong = api.post(f"{API}/11/unlock", params={"lock-token": "nope"})
    assert wrong.status_code == 403
    assert wrong.json()["invalid-lock-token"] == "nope"
    assert wrong.json()["message"] == "Cannot unlock resource, the lock token is not valid."
    assert wrong.json()["resource"]["id"] == 11
    assert token not in wrong.text
    assert api.post(f"{API}/11/unlock").status_code == 403
    done = api.post(f"{API}/11/unlock", params={"lock-token": token})
    assert (done.status_code, done.json()) == (200, {"message": "Resource unlocked"})
    again = api.post(f"{API}/11/unlock", params={"lock-token": token})
    assert again.status_code == 403
    assert again.json() == {"resource_id": 11, "message": "Resource is already unlocked"}
    assert api.post(f"{API}/99/unlock", params={"lock-token": token}).status_code == 404


def test_extend_pushes_the_deadline_and_answers_1x_fields(api: TestClient) -> None:
    """extend?lock-token&additional-ttl=N: 200 `{message, new-expires-at,
    total-lock-duration}`, the lock now lasting until about now + N."""
    locked = _lock(api, 12, ttl=60)
    token = str(locked["lock-token"])
    answer = api.post(f"{API}/12/extend", params={"lock-token": token, "additional-ttl": 7200})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"message", "new-expires-at", "total-lock-duration"}
    assert _at(body["new-expires-at"]) - _at(str(locked["locked-at"])) == pytest.approx(7200, abs=5)
    assert isinstance(body["total-lock-duration"], int)
    assert body["total-lock-duration"] == pytest.approx(7200, abs=5)
    shown = api.get(f"{API}/12").json()["resource"]
    assert _at(shown["lock-expires-at"]) == pytest.approx(_at(body["new-expires-at"]))


def test_extend_never_shortens_and_refuses_non_positive_seconds(api: TestClient) -> None:
    """A shorter additional-ttl keeps the later deadline (1.x shortens); N <= 0 is 422."""
    locked = _lock(api, 13, ttl=3000)
    token = str(locked["lock-token"])
    short = api.post(f"{API}/13/extend", params={"lock-token": token, "additional-ttl": 10})
    assert short.status_code == 200
    assert _at(short.json()["new-expires-at"]) == pytest.approx(_at(str(locked["expires-at"])))
    for n in ("0", "-5"):
        refused = api.post(f"{API}/13/extend", params={"lock-token": token, "additional-ttl": n})
        assert refused.status_code == 422, n
    after = api.get(f"{API}/13").json()["resource"]["lock-expires-at"]
    assert _at(after) == pytest.approx(_at(str(locked["expires-at"])))


def test_extend_refusals(api: TestClient) -> None:
    """Missing parameters 422; beyond 86400 in all 400; bad token or free resource 403
    without the token; unknown id 404."""
    token = str(_lock(api, 14)["lock-token"])
    assert api.post(f"{API}/14/extend", params={"lock-token": token}).status_code == 422
    assert api.post(f"{API}/14/extend", params={"additional-ttl": 10}).status_code == 422
    too_long = api.post(f"{API}/14/extend", params={"lock-token": token, "additional-ttl": 86400})
    assert too_long.status_code == 400
    assert set(too_long.json()) == {"resource_id", "total_duration", "max_lock_duration", "message"}
    assert too_long.json()["total_duration"] >= 86400
    bad = api.post(f"{API}/14/extend", params={"lock-token": "nope", "additional-ttl": 10})
    assert bad.status_code == 403
    assert bad.json()["message"] == "Cannot extend lock, the lock token is not valid."
    assert token not in bad.text
    free = api.post(f"{API}/15/extend", params={"lock-token": token, "additional-ttl": 10})
    assert free.status_code == 403
    assert free.json() == {"resource_id": 15, "message": "Cannot extend lock on unlocked resource"}
    missing = api.post(f"{API}/99/extend", params={"lock-token": token, "additional-ttl": 10})
    assert missing.status_code == 404


def test_health_readiness_and_unknown_paths(api: TestClient) -> None:
    """/health and /readiness as 1.x answers them; an unknown /api/v1 path is FastAPI's 404."""
    assert api.get("/health").json() == {"status": "ok"}
    ready = api.get("/readiness")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    unknown = api.get("/api/v1/nothing-here")
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "Not Found"})


def test_rentabot_max_ttl_caps_the_default_and_the_served_maximum(tmp_path: Path) -> None:
    """With RENTABOT_MAX_TTL=600: max-lock-duration 600, a lock without ttl lasts 600 s,
    and ttl 601 is 400."""
    descriptor = write_descriptor(tmp_path / "r.yml", {"solo": {"tags": "a,b"}})
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        resource_descriptor=descriptor,
        max_ttl=600,
    )
    prepare_database(settings)
    with TestClient(create_app(settings), raise_server_exceptions=False) as api:
        assert api.get(f"{API}/1").json()["resource"]["max-lock-duration"] == 600
        assert api.get(f"{API}/1").json()["resource"]["tags"] == "a,b"
        refused = api.post(f"{API}/1/lock", json={"ttl": 601})
        assert refused.status_code == 400
        assert refused.json()["max_lock_duration"] == 600
        body = _lock(api, 1)
        assert _at(str(body["expires-at"])) - _at(str(body["locked-at"])) == pytest.approx(600)


def test_fastapi_routes_under_api_v1_answer_1x_validation_errors(tmp_path: Path) -> None:
    """A FastAPI route under /api/v1 (as the reservations are) answers FastAPI's own 422
    `{"detail": [{type, loc, msg, input}]}`, not rentabot's v2 error shape."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    prepare_database(settings)
    app = create_app(settings)

    @app.get("/api/v1/probe")
    async def probe(quantity: int) -> dict[str, int]:
        return {"quantity": quantity}

    with TestClient(app, raise_server_exceptions=False) as api:
        answer = api.get("/api/v1/probe", params={"quantity": "many"})
    assert answer.status_code == 422
    (item,) = answer.json()["detail"]
    assert (item["type"], item["loc"], item["input"]) == (
        "int_parsing",
        ["query", "quantity"],
        "many",
    )
