"""History, usage figures and queue estimates through the v2 API (one app per module,
with a hand-moved clock)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rentabot.app import create_app
from rentabot.domain.identity import Role
from rentabot.service.bootstrap import prepare_database
from rentabot.settings import Settings
from tests.support import EXAMPLES, create_key

T0 = 1_768_003_200.0 + 3600


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Clock, str]]:
    """An app on the example resources whose coffee machine (1) was held for 10 minutes,
    released, then force-released after 5 more with a hostile reason; and an admin key."""
    directory: Path = tmp_path_factory.mktemp("usage-api")
    settings = Settings(
        database_url=f"sqlite:///{directory / 'db.sqlite'}", resource_descriptor=EXAMPLES
    )
    prepare_database(settings)
    clock = Clock()
    with TestClient(create_app(settings, clock=clock)) as client:
        admin = create_key(settings.database_url, "ops", Role.ADMIN)
        lease = client.post(
            "/api/v2/leases", json={"select": {"ids": [1]}, "owner": "https://ci/job/1"}
        ).json()["lease"]
        clock.now += 600
        released = client.delete(
            f"/api/v2/leases/{lease['id']}", headers={"Authorization": f"Bearer {lease['token']}"}
        )
        assert released.status_code == 200
        assert client.post("/api/v2/leases", json={"select": {"ids": [1]}}).status_code == 201
        clock.now += 300
        forced = client.post(
            "/api/v2/resources/1/force-release",
            json={"reason": "<script>x</script>"},
            headers={"X-API-Key": admin},
        )
        assert forced.status_code == 200
        yield client, clock, admin


def test_history_lists_each_hold_with_how_it_ended(lab: tuple[TestClient, Clock, str]) -> None:
    """Two holds, oldest first: released by its holder, force-released by the admin."""
    client, _, _ = lab
    answer = client.get("/api/v2/resources/1/history", params={"limit": 10})
    assert answer.status_code == 200
    holds = answer.json()["holds"]
    assert [(h["owner"], h["duration_s"], h["ended_by"], h["end_actor"]) for h in holds] == [
        ("https://ci/job/1", 600, "released", None),
        (None, 300, "force_released", "ops"),
    ]
    assert holds[1]["reason"] == "<script>x</script>"
    assert answer.json()["maintenance"] == []


def test_usage_of_a_resource_and_of_its_tag(lab: tuple[TestClient, Clock, str]) -> None:
    """900 s held of 7 days; the `coffee` tag has one resource, so the same busy fraction."""
    client, _, _ = lab
    mine = client.get("/api/v2/resources/1/usage", params={"days": 7}).json()
    assert (mine["resource_id"], mine["leases"], mine["median_hold_s"]) == (1, 2, 450)
    assert mine["busy"] == pytest.approx(900 / (7 * 86400))
    assert mine["daily"][-1]["day"] == "2026-01-10"
    tag = client.get("/api/v2/tags/coffee/usage", params={"days": 30}).json()
    assert (tag["tag"], tag["resources"], tag["leases"]) == ("coffee", 1, 2)
    every = client.get("/api/v2/tags/usage").json()["tags"]
    assert "coffee" in [t["tag"] for t in every]


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/api/v2/resources/999/usage", 404),
        ("/api/v2/resources/999/history", 404),
        ("/api/v2/tags/no-such-tag/usage", 404),
        ("/api/v2/resources/1/usage?days=0", 422),
        ("/api/v2/resources/1/usage?days=91", 422),
        ("/api/v2/resources/1/usage?days=week", 422),
        ("/api/v2/resources/1/history?limit=0", 422),
        ("/api/v2/resources/0/history", 422),
    ],
)
def test_unknown_things_and_bad_windows_get_json_errors(
    lab: tuple[TestClient, Clock, str], url: str, status: int
) -> None:
    """404 for what does not exist, 422 for a window or limit out of bounds: JSON either way."""
    client, _, _ = lab
    answer = client.get(url)
    assert answer.status_code == status
    assert "error" in answer.json()


def test_estimates_name_each_waiting_ticket(lab: tuple[TestClient, Clock, str]) -> None:
    """Empty queue: no estimates, and the method is stated."""
    client, _, _ = lab
    answer = client.get("/api/v2/queue/estimates").json()
    assert answer["estimates"] == []
    assert "median hold" in answer["method"]
