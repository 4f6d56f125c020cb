"""Upstream rent-a-bot 1.x's reservations (`upstream-v1-api.md`, "Reservations") through
HTTP on SQLite and PostgreSQL, and rentabot's deliberate differences (strict fairness,
creator-only access, no 5xx)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rentabot.app import create_app
from rentabot.service.bootstrap import prepare_database
from rentabot.settings import Settings
from tests.support import postgres_schema, write_descriptor

API = "/api/v1/reservations"
RESOURCES: dict[str, object] = {
    "pair-1": {"tags": "pair,lab"},
    "pair-2": {"tags": "pair,lab"},
    "solo-1": {"tags": "solo"},
    "fair-1": {"tags": "fair"},
    "fair-2": {"tags": "fair"},
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
    """One app per database on a small 1.x-style inventory."""
    directory: Path = tmp_path_factory.mktemp(f"reservations-{request.param}")
    descriptor = write_descriptor(directory / "resources.yml", RESOURCES)
    with _database(request.param, directory) as url:
        settings = Settings(database_url=url, resource_descriptor=descriptor)
        prepare_database(settings)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield client


def _reserve(api: TestClient, **body: object) -> dict[str, object]:
    answer = api.post(API, json=body)
    assert answer.status_code == 201, answer.text
    made: dict[str, object] = answer.json()
    return made


def test_reserve_get_claim_unlock_with_1x_fields(api: TestClient) -> None:
    """201 with 1.x's fields; fulfilled (free now), claim 200 `claimed`, then the tokens
    unlock each resource through 1.x's unlock."""
    made = _reserve(api, tags=["pair"], quantity=2, ttl=600)
    assert set(made) == {
        "reservation_id", "status", "tags", "quantity", "ttl", "position_in_queue",
        "created_at", "expires_at", "fulfilled_at", "claim_expires_at", "claimed_at",
        "resource_ids", "lock_tokens",
    }  # fmt: skip
    rid = str(made["reservation_id"])
    assert rid.startswith("res_")
    assert len(rid) == 36
    got = api.get(f"{API}/{rid}").json()
    assert got["status"] == "fulfilled"
    assert got["resource_ids"] == [1, 2]
    claimed = api.post(f"{API}/{rid}/claim")
    assert claimed.status_code == 200
    assert claimed.json()["status"] == "claimed"
    assert api.post(f"{API}/{rid}/claim").status_code == 409
    assert api.delete(f"{API}/{rid}").status_code == 409
    for resource_id, token in zip(got["resource_ids"], got["lock_tokens"], strict=True):
        unlocked = api.post(f"/api/v1/resources/{resource_id}/unlock?lock-token={token}")
        assert unlocked.status_code == 200, unlocked.text


def test_pending_reservation_has_a_place_and_delete_answers_204(api: TestClient) -> None:
    """Behind a direct lock: pending at place 1, claim 409, DELETE 204, then 409 again."""
    lock = api.post("/api/v1/resources/3/lock").json()
    made = _reserve(api, tags=["solo"], quantity=1)
    assert (made["status"], made["position_in_queue"]) == ("pending", 1)
    rid = made["reservation_id"]
    assert api.post(f"{API}/{rid}/claim").status_code == 409
    assert api.delete(f"{API}/{rid}").status_code == 204
    assert api.get(f"{API}/{rid}").json()["status"] == "cancelled"
    assert api.delete(f"{API}/{rid}").status_code == 409
    api.post(f"/api/v1/resources/3/unlock?lock-token={lock['lock-token']}")


def test_release_fulfils_in_order_and_direct_locks_do_not_barge(api: TestClient) -> None:
    """A big reservation waits; a later small one and a direct lock do not overtake it;
    the release fulfils it at once (no sweep)."""
    held = api.post("/api/v1/resources/4/lock").json()
    big = _reserve(api, tags=["fair"], quantity=2)
    small = _reserve(api, tags=["fair"], quantity=1)
    assert (big["status"], small["status"], small["position_in_queue"]) == (
        "pending",
        "pending",
        2,
    )
    assert api.post("/api/v1/resources/5/lock").status_code == 403
    api.post(f"/api/v1/resources/4/unlock?lock-token={held['lock-token']}")
    assert api.get(f"{API}/{big['reservation_id']}").json()["status"] == "fulfilled"
    assert api.get(f"{API}/{small['reservation_id']}").json()["position_in_queue"] == 1
    api.delete(f"{API}/{small['reservation_id']}")


def test_unknown_reservations_and_tags_are_404s(api: TestClient) -> None:
    """Unknown id: 404 {reservation_id}; tags no resource has: 404 {tags}."""
    missing = api.get(f"{API}/res_{'0' * 32}")
    assert missing.status_code == 404
    assert missing.json()["reservation_id"] == f"res_{'0' * 32}"
    nothing = api.post(API, json={"tags": ["no-such"], "quantity": 1})
    assert (nothing.status_code, nothing.json()["tags"]) == (404, ["no-such"])
    assert api.post(API, json={"tags": ["pair"], "quantity": 3}).status_code == 404


def test_anonymous_listing_shows_no_ids(api: TestClient) -> None:
    """Anonymous callers are one principal: the listing would hand out every id (the proof
    of ownership), so it is empty for them."""
    _reserve(api, tags=["lab"], quantity=1)
    assert api.get(API).json() == {"reservations": []}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"tags": [], "quantity": 1},
        {"tags": ["pair"], "quantity": 0},
        {"tags": ["pair"], "quantity": 1, "ttl": 0},
        {"tags": ["pair"], "quantity": 1, "ttl": -(10**11)},
        {"tags": ["pair"], "quantity": 1, "max_wait_time": 3 * 10**11},
        {"tags": ["pair"], "quantity": 10**30},
        {"tags": ["pair"], "quantity": 1, "ttl": 10**30},
        {"tags": ["x" * 10_000], "quantity": 1},
        {"tags": ["\x00"], "quantity": 1},
        {"tags": "pair", "quantity": 1},
        [1, 2],
        "text",
    ],
    ids=lambda body: str(body)[:30],
)
def test_bad_bodies_are_4xx_json(api: TestClient, body: object) -> None:
    """Malformed reservations, 1.x's 500s included, answer 4xx JSON."""
    answer = api.post(API, json=body)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()


@pytest.mark.parametrize("rid", ["x", "res_" + "0" * 1000, "res_%00", "res_\u00e9"])
def test_bad_ids_are_404(api: TestClient, rid: str) -> None:
    """Odd ids on every id route: 404 JSON, never a 5xx."""
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/claim")):
        answer = api.request(method, f"{API}/{rid}{path}")
        assert answer.status_code == 404, answer.text
