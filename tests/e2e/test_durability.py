"""Locks, tokens and ids survive `kill -9` and restarts of a real `rentabot serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import V1, Server, write_descriptor

pytestmark = pytest.mark.e2e

LOCKED = "Resource locked"
RELEASED = "Resource available"
BUSY = "Cannot lock the requested resource, resource(s) already locked"


def start(servers: list[Server], database: Path, descriptor: Path) -> httpx.Client:
    """Start a server on this database and descriptor; a client of it (closed with it)."""
    server = Server(database, descriptor).start()
    servers.append(server)
    return httpx.Client(base_url=f"{server.url}{V1}", timeout=10.0)


def resource(client: httpx.Client, resource_id: int) -> dict[str, Any]:
    """GET …/resources/{id}, which must answer 200."""
    answer = client.get(f"/resources/{resource_id}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()["resource"]
    return found


def listing(client: httpx.Client) -> dict[str, int]:
    """GET …/resources as name → id, in the order served."""
    answer = client.get("/resources")
    assert answer.status_code == 200, answer.text
    return {r["name"]: r["id"] for r in answer.json()["resources"]}


def test_locks_and_tokens_survive_kill_9_and_so_does_the_unlock(
    tmp_path: Path, servers: list[Server]
) -> None:
    """After kill -9 and a restart the locks hold, refuse others, and yield to their tokens."""
    database = tmp_path / "rentabot.db"
    descriptor = write_descriptor(
        tmp_path / "resources.yml",
        {"alpha": {"tags": "lab"}, "beta": {"tags": "lab x"}, "gamma": {"tags": "lab"}},
    )
    with start(servers, database, descriptor) as client:
        by_id = client.post("/resources/1/lock")
        assert by_id.status_code == 200
        by_tag = client.post("/resources/lock", params={"tag": "x"})
        assert by_tag.status_code == 200
        assert by_tag.json()["resource"]["name"] == "beta"
        tokens: dict[int, str] = {
            1: by_id.json()["lock-token"],
            by_tag.json()["resource"]["id"]: by_tag.json()["lock-token"],
        }
    assert sorted(tokens) == [1, 2]
    servers[-1].kill()

    with start(servers, database, descriptor) as client:
        for resource_id in (1, 2):
            shown = resource(client, resource_id)
            assert shown["lock-details"] == LOCKED, shown
            assert shown["lock-token"] is not None
            refused = client.post(f"/resources/{resource_id}/lock")
            assert refused.status_code == 403
            assert refused.json() == {
                "message": BUSY,
                "id": resource_id,
                "name": None,
                "tags": None,
            }
        busy_tag = client.post("/resources/lock", params={"tag": "x"})
        assert busy_tag.status_code == 403
        assert busy_tag.json()["tags"] == ["x"]
        # The holders' tokens, issued before the kill, still release their locks.
        for resource_id, token in tokens.items():
            answer = client.post(f"/resources/{resource_id}/unlock", params={"lock-token": token})
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"message": "Resource unlocked"}
    servers[-1].kill()

    with start(servers, database, descriptor) as client:
        for resource_id in (1, 2):
            shown = resource(client, resource_id)
            assert (shown["lock-details"], shown["lock-token"]) == (RELEASED, None)
        # The old tokens are spent: they release nothing, even after a fresh lock.
        fresh = client.post("/resources/1/lock")
        assert fresh.status_code == 200
        stale = client.post("/resources/1/unlock", params={"lock-token": tokens[1]})
        assert stale.status_code == 403
        assert resource(client, 1)["lock-details"] == LOCKED


def test_ids_are_stable_across_restarts_and_a_removed_resource_waits_for_its_holder(
    tmp_path: Path, servers: list[Server]
) -> None:
    """Reordering keeps ids, new names get the next id, a removed held one lives until unlock."""
    database = tmp_path / "rentabot.db"
    first = {name: {"description": f"the {name}"} for name in ("a", "b", "c", "d")}
    descriptor = write_descriptor(tmp_path / "resources.yml", first)
    with start(servers, database, descriptor) as client:
        assert listing(client) == {"a": 1, "b": 2, "c": 3, "d": 4}
        locked = client.post("/resources/3/lock")
        assert locked.status_code == 200
        token = locked.json()["lock-token"]
    servers[-1].kill()

    # A new resource at the top, the rest reordered, and the held "c" removed.
    second = {name: {"description": f"the {name}"} for name in ("new", "d", "b", "a")}
    write_descriptor(descriptor, second)
    with start(servers, database, descriptor) as client:
        assert listing(client) == {"a": 1, "b": 2, "c": 3, "d": 4, "new": 5}
        assert resource(client, 2)["description"] == "the b"
        removed = resource(client, 3)
        assert (removed["name"], removed["lock-details"]) == ("c", LOCKED)
        assert client.post("/resources/3/lock").status_code == 403
        assert client.post("/resources/5/lock").status_code == 200

        unlocked = client.post("/resources/3/unlock", params={"lock-token": token})
        assert unlocked.status_code == 200, unlocked.text
        gone = client.get("/resources/3")
        assert gone.status_code == 404
        assert gone.json() == {"message": "Resource not found", "resource_id": 3}
        assert listing(client) == {"a": 1, "b": 2, "d": 4, "new": 5}
        assert client.post("/resources/3/lock").status_code == 404
        assert client.post("/resources/lock", params={"name": "c"}).status_code == 404
    servers[-1].kill()

    # Another restart, "c" listed again at the end: every id is still the same.
    write_descriptor(descriptor, {**second, "c": {"description": "the c, back"}})
    with start(servers, database, descriptor) as client:
        assert listing(client) == {"a": 1, "b": 2, "c": 3, "d": 4, "new": 5}
        back = resource(client, 3)
        assert (back["description"], back["lock-details"]) == ("the c, back", RELEASED)
        assert resource(client, 5)["lock-details"] == LOCKED
