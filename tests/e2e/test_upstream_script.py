"""A rent-a-bot 1.x client script (lock with a ttl, extend, unlock) runs unchanged against a
real `rentabot serve`, with a `kill -9` and a restart in the middle: the lease survives
(1.x keeps its locks in memory and would lose it)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.support import Server, write_descriptor

pytestmark = pytest.mark.e2e

#: A 1.x descriptor, as its users write it: one comma-separated tags string.
DESCRIPTOR = {
    "coffee-machine": {"description": "Kitchen coffee machine", "tags": "coffee,kitchen"},
    "3d-printer": {"description": "Basement printer", "tags": "printer,basement"},
}


def _at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_1x_script_keeps_its_lock_across_a_kill_and_restart(
    servers: list[Server], tmp_path: Path
) -> None:
    """lock?tag (ttl 300) → kill -9 → restart → the lock still holds, others get 403,
    extend with the same token works, unlock frees it."""
    database = tmp_path / "db.sqlite"
    descriptor = write_descriptor(tmp_path / "resources.yml", DESCRIPTOR)
    first = Server(database, descriptor).start()
    servers.append(first)
    with httpx.Client(base_url=first.url, timeout=10.0) as api:
        assert api.get("/readiness").json() == {"status": "ready"}
        locked = api.post(
            "/api/v1/resources/lock",
            params=[("tag", "coffee"), ("tag", "kitchen")],
            json={"ttl": 300},
        )
        assert locked.status_code == 200, locked.text
        token = locked.json()["lock-token"]
        resource_id = locked.json()["resource"]["id"]
        assert _at(locked.json()["expires-at"]) - _at(locked.json()["locked-at"]) == pytest.approx(
            300
        )
    first.kill()

    second = Server(database, descriptor).start()
    servers.append(second)
    with httpx.Client(base_url=second.url, timeout=10.0) as api:
        shown = api.get(f"/api/v1/resources/{resource_id}").json()["resource"]
        assert shown["lock-token"] == "hidden"
        assert _at(shown["lock-expires-at"]) == pytest.approx(_at(locked.json()["expires-at"]))
        assert api.post(f"/api/v1/resources/{resource_id}/lock").status_code == 403
        extended = api.post(
            f"/api/v1/resources/{resource_id}/extend",
            params={"lock-token": token, "additional-ttl": 900},
        )
        assert extended.status_code == 200, extended.text
        assert extended.json()["total-lock-duration"] >= 900
        unlocked = api.post(f"/api/v1/resources/{resource_id}/unlock", params={"lock-token": token})
        assert unlocked.json() == {"message": "Resource unlocked"}
        again = api.post(f"/api/v1/resources/{resource_id}/lock", json={"ttl": 60})
        assert again.status_code == 200
