"""A rent-a-bot 1.x reservation script (reserve 2 by tags, poll, claim, release) runs
unchanged against a real `rentabot serve`, with a `kill -9` and a restart while the
reservation is pending: it survives, keeps its place, and the release fulfils it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support import Server, write_descriptor

pytestmark = pytest.mark.e2e

DESCRIPTOR = {
    "bench-1": {"description": "Bench one", "tags": "bench,usb"},
    "bench-2": {"description": "Bench two", "tags": "bench,usb"},
}


def test_a_pending_reservation_survives_a_kill_and_is_fulfilled_after_restart(
    servers: list[Server], tmp_path: Path
) -> None:
    """lock bench-1 → reserve 2 of bench,usb (pending) → kill -9 → restart → still pending at
    place 1 → unlock bench-1 → the poll sees it fulfilled → claim → unlock both."""
    database = tmp_path / "db.sqlite"
    descriptor = write_descriptor(tmp_path / "resources.yml", DESCRIPTOR)
    first = Server(database, descriptor).start()
    servers.append(first)
    with httpx.Client(base_url=first.url, timeout=10.0) as api:
        held = api.post("/api/v1/resources/1/lock", json={"ttl": 300})
        assert held.status_code == 200, held.text
        made = api.post(
            "/api/v1/reservations",
            json={"tags": ["bench", "usb"], "quantity": 2, "ttl": 120, "max_wait_time": 600},
        )
        assert made.status_code == 201, made.text
        rid = made.json()["reservation_id"]
        assert made.json()["status"] == "pending"
    first.kill()

    second = Server(database, descriptor).start()
    servers.append(second)
    with httpx.Client(base_url=second.url, timeout=10.0) as api:
        pending = api.get(f"/api/v1/reservations/{rid}").json()
        assert (pending["status"], pending["position_in_queue"]) == ("pending", 1)
        token = held.json()["lock-token"]
        assert api.post("/api/v1/resources/1/unlock", params={"lock-token": token}).is_success
        # 1.x scripts poll; rentabot fulfils in the release itself, so the first poll sees it.
        polled = api.get(f"/api/v1/reservations/{rid}").json()
        assert polled["status"] == "fulfilled"
        assert polled["resource_ids"] == [1, 2]
        claimed = api.post(f"/api/v1/reservations/{rid}/claim")
        assert claimed.status_code == 200, claimed.text
        assert claimed.json()["status"] == "claimed"
        for resource_id, lock_token in zip(
            polled["resource_ids"], polled["lock_tokens"], strict=True
        ):
            unlocked = api.post(
                f"/api/v1/resources/{resource_id}/unlock", params={"lock-token": lock_token}
            )
            assert unlocked.json() == {"message": "Resource unlocked"}
        assert api.post("/api/v1/resources/2/lock").status_code == 200
