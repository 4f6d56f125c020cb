"""Mutual exclusion through real HTTP, against real `rentabot serve` processes: one server
with 1 and 3 workers on SQLite, and 2 and 3 replicas on one PostgreSQL; and one server on
SQLite with keys everywhere (RENTABOT_ANONYMOUS_ROLE=none), where every request carries a
lock key, in fewer rounds.

Every race starts its threads together on a `threading.Barrier`; each thread keeps its own
keep-alive connection, so the requests really overlap in the server (with 3 workers, in
different processes sharing one SQLite file; with replicas, thread i talks to replica
i mod N, so every round is fought between replicas).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest

from rentabot.domain.identity import Role
from tests.conftest import skip_or_fail
from tests.support import (
    RENTABOT,
    V1,
    Replicas,
    Server,
    create_key,
    postgres_schema,
    write_descriptor,
)

pytestmark = pytest.mark.e2e

BUSY = "Cannot lock the requested resource, resource(s) already locked"
#: Resources of the race descriptor: one contended id, a tagged pool, decoys, a double-unlock id.
TARGET_ID = 1
POOL_TAG = "pool"
POOL_SIZE = 8
DOUBLE_ID = 2
#: How long any thread waits at a barrier (or for an answer) before the test gives up.
WAIT_S = 60.0

Answer = tuple[int, dict[str, Any]]


@dataclass(frozen=True)
class Deployment:
    """The ports of a real deployment, the headers every request carries (the lock key,
    when the server requires keys), and the share of each test's rounds it runs."""

    ports: list[int]
    headers: dict[str, str] = field(default_factory=dict)
    share: float = 1.0

    def rounds(self, full: int) -> int:
        """How many of a test's `full` rounds to run here."""
        return max(1, round(full * self.share))

    def connect(self, index: int = 0) -> Connection:
        """A connection to `ports[index % len(ports)]`."""
        return Connection(self.ports[index % len(self.ports)], self.headers)


class Connection:
    """One keep-alive HTTP/1.1 connection to the server (http.client: cheap per request),
    sending `headers` with every request."""

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        self._http = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
        self._headers = headers or {}

    def request(self, method: str, path: str) -> Answer:
        """Send a request and read the whole JSON answer, keeping the connection open."""
        self._http.request(method, path, headers=self._headers)
        response = self._http.getresponse()
        body = response.read()
        return response.status, json.loads(body)

    def lock(self, resource_id: int) -> Answer:
        """POST …/resources/{id}/lock."""
        return self.request("POST", f"{V1}/resources/{resource_id}/lock")

    def lock_tag(self, tag: str) -> Answer:
        """POST …/resources/lock?tag=…."""
        return self.request("POST", f"{V1}/resources/lock?tag={quote(tag)}")

    def unlock(self, resource_id: int, token: str) -> Answer:
        """POST …/resources/{id}/unlock?lock-token=…."""
        return self.request("POST", f"{V1}/resources/{resource_id}/unlock?lock-token={token}")

    def get(self, resource_id: int) -> Answer:
        """GET …/resources/{id}."""
        return self.request("GET", f"{V1}/resources/{resource_id}")

    def close(self) -> None:
        """Close the socket."""
        self._http.close()


def run_threads(
    deployment: Deployment,
    count: int,
    body: Callable[[int, Connection, threading.Barrier], None],
) -> None:
    """Run `body(index, connection, barrier)` in `count` threads with one shared barrier;
    thread i talks to `deployment.ports[i % len(ports)]`.

    A thread that fails breaks the barrier, so the others stop instead of waiting forever;
    the first failure is raised here.
    """
    barrier = threading.Barrier(count, timeout=WAIT_S)
    failures: list[BaseException] = []

    def main(index: int) -> None:
        connection = deployment.connect(index)
        try:
            body(index, connection, barrier)
        except threading.BrokenBarrierError:
            pass  # another thread failed: its error is the one to report
        except BaseException as error:
            failures.append(error)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=main, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S * 4)
    assert not any(thread.is_alive() for thread in threads), "a racing thread hung"
    if failures:
        raise failures[0]
    assert not barrier.broken, "the barrier broke without a failure (timeout?)"


@pytest.fixture(
    scope="module",
    params=[
        ("sqlite", 1, False),
        ("sqlite", 3, False),
        ("postgresql", 2, False),
        ("postgresql", 3, False),
        ("sqlite", 1, True),
    ],
    ids=[
        "sqlite-workers=1",
        "sqlite-workers=3",
        "postgresql-replicas=2",
        "postgresql-replicas=3",
        "sqlite-workers=1-keyed",
    ],
)
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """A real deployment with the race descriptor: one server with 1 or 3 worker processes
    on SQLite, or 2 or 3 replicas on one PostgreSQL; or (keyed) one server on SQLite that
    refuses anonymous callers, raced with a lock key on every request, a quarter of the
    rounds."""
    if not RENTABOT.exists():
        skip_or_fail(f"the rentabot console script is not installed at {RENTABOT}")
    backend, count, keyed = request.param
    directory = tmp_path_factory.mktemp(f"races-{backend}-{count}")
    resources: dict[str, Any] = {
        "contended": {"description": "one id, many lockers"},
        "double": {"description": "unlocked twice at once"},
    }
    for index in range(1, POOL_SIZE + 1):
        resources[f"pool-{index}"] = {"tags": f"{POOL_TAG} bench{index}"}
        if index % 2 == 0:  # decoys between them: same prefix, other tags, or none at all
            resources[f"decoy-{index}"] = {"tags": f"{POOL_TAG}-x bench{index}"}
            resources[f"bare-{index}"] = {"description": "no tags"}
    descriptor = write_descriptor(directory / "resources.yml", resources)
    if backend == "postgresql":
        with postgres_schema() as url, Replicas(url, descriptor, count, directory) as replicas:
            yield Deployment(replicas.ports)
        return
    env = {"RENTABOT_ANONYMOUS_ROLE": "none"} if keyed else {}
    with Server(directory / "rentabot.db", descriptor, workers=count, env=env) as running:
        # start() returns once one worker answers: wait for all of them, so all of them race.
        deadline = time.monotonic() + WAIT_S
        while running.output().count("Application startup complete") < count:
            assert time.monotonic() < deadline, f"workers did not start:\n{running.output()}"
            time.sleep(0.05)
        if not keyed:
            yield Deployment([running.port])
            return
        anonymous = Connection(running.port)
        try:
            status, body = anonymous.lock(TARGET_ID)
        finally:
            anonymous.close()
        assert (status, body["code"]) == (401, "unauthenticated"), "anonymous callers may lock"
        key = create_key(running.database_url, "racer", Role.LOCK)
        yield Deployment([running.port], {"X-API-Key": key}, share=0.25)


@pytest.fixture
def pool_ids(deployment: Deployment) -> set[int]:
    """The ids of the resources carrying the pool tag."""
    connection = deployment.connect()
    try:
        status, body = connection.request("GET", f"{V1}/resources")
    finally:
        connection.close()
    assert status == 200
    tagged = {r["id"] for r in body["resources"] if POOL_TAG in (r["tags"] or "").split()}
    assert len(tagged) == POOL_SIZE
    return tagged


def test_one_lock_wins_each_round_of_32_concurrent_lockers(deployment: Deployment) -> None:
    """32 threads lock one free id at once, 200 rounds (100 across replicas, whose rounds
    are slower; a quarter with keys): exactly one 200, 31 busy 403s."""
    threads, rounds = 32, deployment.rounds(200 if len(deployment.ports) == 1 else 100)
    answers: list[list[Answer | None]] = [[None] * threads for _ in range(rounds)]
    unlocks: list[list[int]] = [[] for _ in range(rounds)]

    def race(index: int, connection: Connection, barrier: threading.Barrier) -> None:
        for round_ in range(rounds):
            barrier.wait()
            answer = connection.lock(TARGET_ID)
            answers[round_][index] = answer
            barrier.wait()  # every locker has its answer: only now may the winner unlock
            if answer[0] == 200:
                unlocks[round_].append(connection.unlock(TARGET_ID, answer[1]["lock-token"])[0])

    run_threads(deployment, threads, race)

    for round_, round_answers in enumerate(answers):
        statuses = [answer[0] for answer in round_answers if answer is not None]
        assert len(statuses) == threads, f"round {round_}: missing answers"
        assert statuses.count(200) == 1, f"round {round_}: statuses {sorted(statuses)}"
        assert statuses.count(403) == threads - 1, f"round {round_}: statuses {sorted(statuses)}"
        for answer in round_answers:
            assert answer is not None
            status, body = answer
            if status == 200:
                assert body["resource"]["id"] == TARGET_ID, f"round {round_}"
                assert body["resource"]["lock-token"] == body["lock-token"], f"round {round_}"
            else:
                expected = {"message": BUSY, "id": TARGET_ID, "name": None, "tags": None}
                assert body == expected, f"round {round_}"
        assert unlocks[round_] == [200], f"round {round_}: the winner's unlock answered"


def test_lock_by_tag_grants_each_pool_member_to_exactly_one_of_2m_racers(
    deployment: Deployment, pool_ids: set[int]
) -> None:
    """2M threads lock by tag among M tagged resources: M winners on M distinct tagged ids."""
    threads, rounds = 2 * POOL_SIZE, deployment.rounds(20)
    answers: list[list[Answer | None]] = [[None] * threads for _ in range(rounds)]
    unlocks: list[list[int]] = [[] for _ in range(rounds)]

    def race(index: int, connection: Connection, barrier: threading.Barrier) -> None:
        for round_ in range(rounds):
            barrier.wait()
            answer = connection.lock_tag(POOL_TAG)
            answers[round_][index] = answer
            barrier.wait()
            if answer[0] == 200:
                resource = answer[1]["resource"]
                unlocks[round_].append(
                    connection.unlock(resource["id"], answer[1]["lock-token"])[0]
                )

    run_threads(deployment, threads, race)

    for round_, round_answers in enumerate(answers):
        assert all(answer is not None for answer in round_answers), f"round {round_}"
        won = [a[1]["resource"] for a in round_answers if a is not None and a[0] == 200]
        lost = [a for a in round_answers if a is not None and a[0] != 200]
        won_ids = sorted(resource["id"] for resource in won)
        assert won_ids == sorted(pool_ids), f"round {round_}: winners got ids {won_ids}"
        for resource in won:
            assert POOL_TAG in resource["tags"].split(), f"round {round_}: {resource}"
        expected_busy = {"message": BUSY, "id": None, "name": None, "tags": [POOL_TAG]}
        assert [a for a in lost if a != (403, expected_busy)] == [], f"round {round_}"
        assert len(lost) == threads - POOL_SIZE, f"round {round_}"
        assert unlocks[round_] == [200] * POOL_SIZE, f"round {round_}: unlocks {unlocks[round_]}"


def test_concurrent_double_unlock_frees_once_and_never_the_next_holders_lock(
    deployment: Deployment,
) -> None:
    """Two same-token unlocks race a locker: one unlock wins; the locker's new lock stays held."""
    rounds, max_attempts = deployment.rounds(100), 5000
    main = deployment.connect(-1)
    try:
        for round_ in range(rounds):
            status, body = main.lock(DOUBLE_ID)
            assert status == 200, f"round {round_}: first lock answered {status} {body}"
            token: str = body["lock-token"]
            unlock_statuses: list[int] = [0, 0]
            third: list[Answer] = []

            def race(
                index: int,
                connection: Connection,
                barrier: threading.Barrier,
                token: str = token,
                unlock_statuses: list[int] = unlock_statuses,
                third: list[Answer] = third,
            ) -> None:
                barrier.wait()
                if index < 2:
                    unlock_statuses[index] = connection.unlock(DOUBLE_ID, token)[0]
                    return
                for _ in range(max_attempts):
                    answer = connection.lock(DOUBLE_ID)
                    if answer[0] != 403:
                        third.append(answer)
                        return

            run_threads(deployment, 3, race)

            assert sorted(unlock_statuses) == [200, 403], f"round {round_}: {unlock_statuses}"
            assert len(third) == 1, f"round {round_}: the third thread never got the lock"
            status, body = third[0]
            assert status == 200, f"round {round_}: third thread's lock answered {status} {body}"
            held = main.get(DOUBLE_ID)
            assert held[0] == 200
            assert held[1]["resource"]["lock-details"] == "Resource locked", f"round {round_}"
            assert main.unlock(DOUBLE_ID, body["lock-token"])[0] == 200, f"round {round_}"
    finally:
        main.close()
