"""The wait queue through real HTTP: fair order, no starvation, keep-alive, idempotency.

Each test runs against one server on SQLite, against two replicas on one PostgreSQL
with the clients spread over them (the queue is one, whichever replica a client talks to),
and against a server on SQLite with keys everywhere (RENTABOT_ANONYMOUS_ROLE=none), where
every request carries a lock key (one server for the module: each test frees what it left).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from rentabot.domain.identity import Role
from tests.support import Replicas, Server, create_key, postgres_schema, write_descriptor

pytestmark = pytest.mark.e2e

#: Long-polls answer within 1 s, and waiting clients leave after 1 s of silence.
ENV = {"RENTABOT_QUEUE_KEEPALIVE": "1", "RENTABOT_LONG_POLL_SECONDS": "1"}


@dataclass(frozen=True)
class Deployment:
    """The base URLs of a deployment, and the headers every request carries (the lock key,
    when the server requires keys)."""

    urls: list[str]
    headers: dict[str, str] = field(default_factory=dict)

    def client(self, index: int = 0) -> httpx.Client:
        """A client of `urls[index % len(urls)]`, sending the headers."""
        return httpx.Client(base_url=self.urls[index % len(self.urls)], headers=self.headers)


def _descriptor(directory: Path) -> Path:
    """Three boards tagged `pool`, and a spare."""
    return write_descriptor(
        directory / "resources.yml",
        {
            "board-1": {"tags": ["pool"]},
            "board-2": {"tags": ["pool"]},
            "board-3": {"tags": ["pool"]},
            "spare": {"tags": ["other"]},
        },
    )


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str, str]]:
    """A server that refuses anonymous callers, with a lock key and an admin key."""
    directory = tmp_path_factory.mktemp("queue-keyed")
    env = {**ENV, "RENTABOT_ANONYMOUS_ROLE": "none"}
    with Server(directory / "db.sqlite", _descriptor(directory), env=env) as running:
        waiter = create_key(running.database_url, "waiter", Role.LOCK)
        operator = create_key(running.database_url, "operator", Role.ADMIN)
        yield running, waiter, operator


def _free_everything(url: str, admin: dict[str, str]) -> None:
    """Force-release every held resource, and wait until nobody waits (a shared server is
    as fresh for the next test)."""
    with httpx.Client(base_url=url, headers=admin, timeout=10) as client:
        held = client.get("/api/v2/resources", params={"state": "locked"}).json()["resources"]
        for resource in held:
            freed = client.post(
                f"/api/v2/resources/{resource['id']}/force-release",
                json={"reason": "the next test"},
            )
            assert freed.status_code in (200, 409), freed.text  # 409: its lease just ended
        _wait_for_queue_length(client, 0, at_most=True)


@pytest.fixture(params=["sqlite", "postgresql-replicas=2", "sqlite-keyed"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    """A deployment serving three boards tagged `pool`, and a spare: a fresh server on
    SQLite, two fresh replicas on PostgreSQL, or the module's server with keys everywhere."""
    if request.param == "sqlite-keyed":
        server, waiter, operator = request.getfixturevalue("keyed_server")
        assert httpx.get(f"{server.url}/api/v2/queue").status_code == 401, "anonymous may read"
        yield Deployment([server.url], {"X-API-Key": waiter})
        _free_everything(server.url, {"X-API-Key": operator})
        return
    descriptor = _descriptor(tmp_path)
    if request.param == "sqlite":
        with Server(tmp_path / "db.sqlite", descriptor, env=ENV) as running:
            yield Deployment([running.url])
        return
    with postgres_schema() as url, Replicas(url, descriptor, 2, tmp_path, env=ENV) as replicas:
        yield Deployment(replicas.urls)


def _acquire(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return client.post("/api/v2/leases", json=body, timeout=90)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _release(client: httpx.Client, lease: dict[str, Any]) -> None:
    answer = client.delete(f"/api/v2/leases/{lease['id']}", headers=_auth(lease["token"]))
    assert answer.status_code == 200, answer.text


def _queue(client: httpx.Client) -> list[dict[str, Any]]:
    tickets: list[dict[str, Any]] = client.get("/api/v2/queue").json()["tickets"]
    return tickets


def _wait_for_queue_length(
    client: httpx.Client, length: int, *, at_most: bool = False
) -> list[dict[str, Any]]:
    """Wait until the queue has at least `length` tickets (`at_most`: at most)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        tickets = _queue(client)
        if len(tickets) <= length if at_most else len(tickets) >= length:
            return tickets
        time.sleep(0.02)
    raise AssertionError(f"the queue never reached {length}: {_queue(client)}")


def test_twenty_waiters_on_three_resources_are_served_by_priority_then_arrival(
    deployment: Deployment,
) -> None:
    """20 waiters (some with priority) on 3 held boards get them in exactly the queue order."""
    with deployment.client(0) as client:
        holders = [
            _acquire(client, {"select": {"tags": ["pool"]}}).json()["lease"] for _ in range(3)
        ]
        # Lease ids are given in grant order: the server's own record of who went first.
        granted: list[tuple[int, int]] = []
        lock = threading.Lock()
        priorities = [5 if n in (7, 13) else 0 for n in range(20)]

        def waiter(number: int) -> None:
            with deployment.client(number) as own:
                body = {
                    "select": {"tags": ["pool"]},
                    "wait": 60,
                    "priority": priorities[number],
                    "owner": str(number),
                }
                answer = _acquire(own, body)
                while answer.status_code == 202:
                    ticket = answer.json()
                    answer = own.get(
                        f"/api/v2/tickets/{ticket['ticket']['id']}",
                        headers=_auth(ticket["token"]),
                        params={"wait": 30},
                        timeout=90,
                    )
                assert answer.status_code in (200, 201), answer.text
                lease = answer.json()["lease"]
                with lock:
                    granted.append((number, lease["id"]))
                time.sleep(0.05)
                _release(own, lease)

        threads = []
        for number in range(20):
            thread = threading.Thread(target=waiter, args=(number,))
            thread.start()
            threads.append(thread)
            # One at a time, so arrival order is known.
            _wait_for_queue_length(client, number + 1)
        tickets = _queue(client)
        assert [t["owner"] for t in tickets][:2] == ["7", "13"]
        assert [t["position"] for t in tickets] == list(range(1, 21))
        for lease in holders:
            _release(client, lease)
        for thread in threads:
            thread.join(timeout=60)
        order = [number for number, _ in sorted(granted, key=lambda item: item[1])]
        assert order == [7, 13] + [n for n in range(20) if n not in (7, 13)]


def test_a_request_for_three_is_not_starved_by_single_requests(deployment: Deployment) -> None:
    """With all 3 boards busy and a 3-request first in line, single requests arriving after
    it (through every replica) never get a board before it does."""
    others = [deployment.client(index) for index in range(len(deployment.urls))]
    with deployment.client(0) as client:
        holders = [
            _acquire(client, {"select": {"tags": ["pool"]}}).json()["lease"] for _ in range(3)
        ]
        big = _acquire(client, {"select": {"tags": ["pool"], "count": 3}, "wait": 0.1})
        assert big.status_code in (202, 409), big.text
        big = _acquire(
            client, {"select": {"tags": ["pool"], "count": 3}, "wait": 60, "request_id": "big"}
        )
        assert big.status_code == 202
        ticket = big.json()
        # Free the boards one by one while single requests keep coming: none gets one.
        for number, lease in enumerate(holders):
            _release(client, lease)
            single = _acquire(others[number % len(others)], {"select": {"tags": ["pool"]}})
            assert single.status_code == 409, single.text
        for other in others:
            other.close()
        answer = httpx.get(
            f"{deployment.urls[-1]}/api/v2/tickets/{ticket['ticket']['id']}",
            headers={**deployment.headers, **_auth(ticket["token"])},
            params={"wait": 10},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        lease = answer.json()["lease"]
        assert sorted(r["name"] for r in lease["resources"]) == ["board-1", "board-2", "board-3"]
        assert lease["token"] == ticket["token"]
        # A retry with the same request id gets the same lease, not a second one.
        again = _acquire(
            client, {"select": {"tags": ["pool"], "count": 3}, "wait": 60, "request_id": "big"}
        )
        assert again.status_code == 201
        assert again.json()["lease"]["id"] == lease["id"]


def test_a_waiter_that_stops_polling_leaves_the_queue(deployment: Deployment) -> None:
    """A 202'd ticket not polled again is gone after the keep-alive (1 s here)."""
    with deployment.client(0) as client, deployment.client(-1) as waiter:
        spare = _acquire(client, {"select": {"names": ["spare"]}}).json()["lease"]
        queued = _acquire(waiter, {"select": {"names": ["spare"]}, "wait": 1})
        # The call itself waited 1 s; ask for a long wait but never poll.
        queued = _acquire(waiter, {"select": {"names": ["spare"]}, "wait": 600})
        assert queued.status_code == 202
        ticket = queued.json()
        assert [t["id"] for t in _queue(client)] == [ticket["ticket"]["id"]]
        deadline = time.monotonic() + 10
        while _queue(client) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _queue(client) == []
        gone = client.get(
            f"/api/v2/tickets/{ticket['ticket']['id']}", headers=_auth(ticket["token"])
        )
        assert gone.status_code == 409
        assert gone.json()["error"]["code"] == "not_granted"
        _release(client, spare)
        # The spare is free for anyone now: the abandoned ticket did not get it.
        assert _acquire(client, {"select": {"names": ["spare"]}}).status_code == 201


def test_v1_wait_holds_one_request_until_the_resource_is_free(deployment: Deployment) -> None:
    """`?wait=` on the original lock call answers 200 once the holder unlocks (through
    another replica, when there are several)."""
    urls, headers = deployment.urls, deployment.headers
    v1 = f"{urls[0]}/rentabot/api/v1.0/resources"
    waiting_v1 = f"{urls[-1]}/rentabot/api/v1.0/resources"
    token = httpx.post(f"{v1}/4/lock", headers=headers).json()["lock-token"]
    result: dict[str, Any] = {}

    def wait_for_it() -> None:
        result["answer"] = httpx.post(f"{waiting_v1}/4/lock?wait=30", headers=headers, timeout=60)

    thread = threading.Thread(target=wait_for_it)
    thread.start()
    with deployment.client(0) as client:
        _wait_for_queue_length(client, 1)
    started = time.monotonic()
    unlock = httpx.post(f"{v1}/4/unlock", params={"lock-token": token}, headers=headers)
    assert unlock.status_code == 200
    thread.join(timeout=30)
    assert result["answer"].status_code == 200
    assert time.monotonic() - started < 1.0
    timed_out = httpx.post(f"{v1}/4/lock?wait=0.5", headers=headers, timeout=10)
    assert timed_out.status_code == 403
    assert timed_out.json()["id"] == 4
