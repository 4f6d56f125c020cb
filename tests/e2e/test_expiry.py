"""Lease expiry in real time through a real server: within TTL + 1 s, and never before."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import EXAMPLES, Server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server for the module."""
    with Server(tmp_path_factory.mktemp("expiry") / "db.sqlite", EXAMPLES) as running:
        yield running


def _acquire(client: httpx.Client, resource_id: int, ttl: float) -> dict[str, object]:
    answer = client.post("/api/v2/leases", json={"select": {"ids": [resource_id]}, "ttl": ttl})
    assert answer.status_code == 201, answer.text
    lease: dict[str, object] = answer.json()["lease"]
    return lease


def test_an_unrenewed_lease_expires_within_ttl_plus_one_second_and_never_before(
    server: Server,
) -> None:
    """Polled every 20 ms: active until its deadline, expired no later than 1 s after it."""
    with httpx.Client(base_url=server.url, timeout=5) as client:
        lease = _acquire(client, 1, 1.5)
        deadline = float(lease["expires_at"])  # type: ignore[arg-type]
        headers = {"Authorization": f"Bearer {lease['token']}"}
        first_expired = None
        while time.time() < deadline + 2.5:
            asked = time.time()
            state = client.get(f"/api/v2/leases/{lease['id']}", headers=headers).json()
            if state["lease"]["state"] == "expired":
                assert asked >= deadline - 0.01, "expired before its deadline"
                first_expired = asked
                break
            time.sleep(0.02)
        assert first_expired is not None, "still active 2.5 s after its deadline"
        assert first_expired <= deadline + 1.0
        # Freed: someone else gets it, with a larger fence.
        again = _acquire(client, 1, 10)
        assert again["resources"][0]["fence"] > lease["resources"][0]["fence"]  # type: ignore[index]


def test_a_renewed_lease_outlives_its_ttl(server: Server) -> None:
    """Renewed every 0.3 s, a 1 s lease is still held after 3 s; then it releases."""
    with httpx.Client(base_url=server.url, timeout=5) as client:
        lease = _acquire(client, 2, 1.0)
        path = f"/api/v2/leases/{lease['id']}"
        headers = {"Authorization": f"Bearer {lease['token']}"}
        started = time.time()
        while time.time() - started < 3.0:
            renewed = client.post(f"{path}/renew", headers=headers)
            assert renewed.status_code == 200, renewed.text
            time.sleep(0.3)
        assert client.get(path, headers=headers).json()["lease"]["state"] == "active"
        assert client.post("/api/v2/leases", json={"select": {"ids": [2]}}).status_code == 409
        assert client.delete(path, headers=headers).json()["lease"]["state"] == "released"


def test_an_expired_token_can_neither_renew_nor_release(server: Server) -> None:
    """After expiry the holder's token is refused (403 lease_ended) and changes nothing."""
    with httpx.Client(base_url=server.url, timeout=5) as client:
        lease = _acquire(client, 3, 0.3)
        path = f"/api/v2/leases/{lease['id']}"
        headers = {"Authorization": f"Bearer {lease['token']}"}
        time.sleep(1.5)
        for answer in (
            client.post(f"{path}/renew", headers=headers),
            client.delete(path, headers=headers),
        ):
            assert answer.status_code == 403
            assert answer.json()["error"]["code"] == "lease_ended"
        v1 = client.get("/api/v1.0/resources/3").json()["resource"]
        assert v1["lock-token"] is None


def test_v1_ttl_lock_survives_a_restart_and_then_expires(tmp_path: Path) -> None:
    """A v1 lock with ?ttl= is held across kill -9, and the restarted server still expires it
    on time: not before its deadline, and within a second after it."""
    database = tmp_path / "db.sqlite"
    ttl = 10.0  # well over what a restart takes on a loaded 2-core machine (about 4 s)
    with Server(database, EXAMPLES) as first:
        locked_at = time.monotonic()
        locked = httpx.post(f"{first.url}/rentabot/api/v1.0/resources/4/lock?ttl={ttl:g}")
        assert locked.status_code == 200
        first.kill()
    with Server(database, EXAMPLES) as second:
        url = f"{second.url}/rentabot/api/v1.0/resources/4"
        assert time.monotonic() - locked_at < ttl - 1, "the restart took too long to tell"
        assert httpx.get(url).json()["resource"]["lock-details"] == "Resource locked"
        while httpx.get(url).json()["resource"]["lock-token"] is not None:
            assert time.monotonic() - locked_at < ttl + 1.0, "not expired a second after"
            time.sleep(0.1)
        assert time.monotonic() - locked_at >= ttl - 0.05, "expired before its deadline"
        assert httpx.get(url).json()["resource"]["lock-details"] == "Resource available"
