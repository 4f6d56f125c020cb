"""Several replicas on one PostgreSQL: the guarantees of one server, across processes.

Real `rentabot serve` processes on different ports share one PostgreSQL schema; clients are
spread across them. (The mutual-exclusion races run against replicas too: test_races.py.)
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from rentabot.storage.opening import open_database
from tests.conftest import skip_or_fail
from tests.e2e.history import GRACE_S, History, Worker, audit, check_history
from tests.e2e.test_history import (
    CLIENTS,
    ENV,
    RESOURCES,
    assert_exercised,
    check_clean_run,
    finish,
    history_counts,
    make_workers,
    report,
)
from tests.support import RENTABOT, Replicas, postgres_schema, rows, write_descriptor

pytestmark = pytest.mark.e2e


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for the replicas of this test."""
    if not RENTABOT.exists():
        skip_or_fail(f"the rentabot console script is not installed at {RENTABOT}")
    with postgres_schema() as url:
        yield url


def replicas(database_url: str, tmp_path: Path, count: int) -> Replicas:
    """`count` replicas of the history descriptor on the test's schema (not started)."""
    descriptor = write_descriptor(tmp_path / "resources.yml", RESOURCES)
    return Replicas(database_url, descriptor, count, tmp_path, env=ENV)


def run_spread(
    pool: ThreadPoolExecutor,
    workers: list[Worker],
    urls: list[str],
    seconds: float,
) -> tuple[threading.Event, list[list[Future[None]]]]:
    """Start worker i against urls[i % len(urls)] for `seconds`; (stop event, futures by
    replica)."""
    stop = threading.Event()
    until = time.monotonic() + seconds
    by_replica: list[list[Future[None]]] = [[] for _ in urls]
    for index, worker in enumerate(workers):
        replica = index % len(urls)
        by_replica[replica].append(pool.submit(worker.run, urls[replica], until, stop))
    return stop, by_replica


def ended_twice(database_url: str) -> list[tuple[object, ...]]:
    """Resources whose lease ended (released, expired, force-released) more than once in the
    audit trail: an expiry swept by two replicas, or swept and released, would show here."""
    database = open_database(database_url)
    try:
        return rows(
            database,
            "SELECT lease_id, resource_id, COUNT(*) FROM events"
            " WHERE kind IN ('released', 'expired', 'force_released') AND lease_id IS NOT NULL"
            " GROUP BY lease_id, resource_id HAVING COUNT(*) > 1",
        )
    finally:
        database.dispose()


def test_twelve_clients_on_three_replicas_never_share_a_resource(
    database_url: str, tmp_path: Path
) -> None:
    """15 s of 12 random clients on 3 replicas (ids, names, tags, counts, waits, TTLs,
    renewals, v1 calls): no double grant, fences in order, no lease lost, no double expiry."""
    with replicas(database_url, tmp_path, 3) as running:
        history = History()
        workers = make_workers(running.servers[0], history)
        with ThreadPoolExecutor(CLIENTS) as pool:
            _, futures = run_spread(pool, workers, running.urls, seconds=15.0)
            finish([f for replica in futures for f in replica])
        counts = check_clean_run(history, workers, running.urls[1], "history on 3 replicas")
    assert ended_twice(database_url) == []
    assert_exercised(
        counts,
        {
            "grants": 60,
            "grants of several resources": 10,
            "granted after waiting": 10,
            "renewals": 8,
            "releases": 30,
            "v1 unlocks": 4,
            "end: expired": 10,
        },
    )


def test_kill_9_of_one_replica_loses_no_lease_and_the_others_go_on(
    database_url: str, tmp_path: Path
) -> None:
    """kill -9 of one of three replicas mid-run: the clients of the other two never notice;
    the killed one's clients retry elsewhere (same request ids, tickets polled again) and
    nothing is lost, duplicated, or held without an explanation."""
    with replicas(database_url, tmp_path, 3) as running:
        history = History()
        workers = make_workers(running.servers[0], history)
        victim = running.servers[0]
        survivors = running.urls[1:]
        with ThreadPoolExecutor(CLIENTS) as pool:
            _, futures = run_spread(pool, workers, running.urls, seconds=9.0)
            time.sleep(4.0)
            victim.kill()
            finish([f for replica in futures for f in replica])
            lost = Counter(u.kind for u in history.unknown)
            # Only the victim's clients lost answers: the other replicas kept serving.
            assert len(history.unknown) <= len(futures[0]), history.unknown
            # The victim's clients (every third) finish their interrupted work elsewhere.
            _, futures = run_spread(pool, workers, survivors, seconds=3.0)
            finish([f for replica in futures for f in replica])
        assert len(history.unknown) == sum(lost.values()), "requests failed on the survivors"
        with httpx.Client(base_url=survivors[0], timeout=10) as client:
            final = audit(client, history, grace=GRACE_S)
    problems = history.problems + check_history(history.grants, history.offset) + final.problems
    counts = history_counts(history, workers)
    counts.update({f"lost at the kill: {k}": n for k, n in lost.items()})
    counts.update({f"end: {k}": n for k, n in final.states.items()})
    print(report("history with one replica killed", counts))
    assert not problems, "\n".join(problems[:30]) + "\n" + report("history", counts)
    assert ended_twice(database_url) == []
    assert_exercised(counts, {"grants": 30, "granted after waiting": 3, "releases": 10})


def test_a_release_on_one_replica_wakes_a_waiter_on_another_at_once(
    database_url: str, tmp_path: Path
) -> None:
    """A client waits on replica B while another holds the board through replica A; A's
    release reaches B's waiter through NOTIFY: median well under the 2 s re-check."""
    delays: list[float] = []
    with replicas(database_url, tmp_path, 2) as running:
        a, b = (httpx.Client(base_url=url, timeout=30) for url in running.urls)
        with a, b:
            for _ in range(15):
                held = a.post("/api/v2/leases", json={"select": {"names": ["board-1"]}})
                assert held.status_code == 201, held.text
                lease = held.json()["lease"]
                answer: dict[str, object] = {}

                def wait(answer: dict[str, object] = answer) -> None:
                    body = {"select": {"names": ["board-1"]}, "wait": 20}
                    response = b.post("/api/v2/leases", json=body)
                    answer["at"] = time.monotonic()
                    answer["response"] = response

                waiter = threading.Thread(target=wait)
                waiter.start()
                while not a.get("/api/v2/queue").json()["tickets"]:
                    time.sleep(0.01)
                released = a.delete(
                    f"/api/v2/leases/{lease['id']}",
                    headers={"Authorization": f"Bearer {lease['token']}"},
                )
                released_at = time.monotonic()
                assert released.status_code == 200, released.text
                waiter.join(30)
                response = answer["response"]
                assert isinstance(response, httpx.Response)
                assert response.status_code == 201, response.text
                granted = response.json()["lease"]
                delays.append(float(answer["at"]) - released_at)  # type: ignore[arg-type]
                b.delete(
                    f"/api/v2/leases/{granted['id']}",
                    headers={"Authorization": f"Bearer {granted['token']}"},
                )
            health = b.get("/healthz").json()
    assert health["wakeups"] == "notified", health
    median = statistics.median(delays)
    print(f"cross-replica wake-up: median {median * 1000:.1f} ms, max {max(delays) * 1000:.1f}")
    # Measured in bench/ at a few ms; loosely here (shared CI machine), yet far below the
    # 2 s re-check that would answer if the notification were lost.
    assert median < 0.3, delays


def _cluster() -> tuple[str, str]:
    """The local PostgreSQL cluster's (version, name), for pg_ctlcluster."""
    listed = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False
    )
    for line in listed.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "5432":
            return fields[0], fields[1]
    skip_or_fail("no local PostgreSQL cluster on port 5432 to stop and start (pg_lsclusters)")
    raise AssertionError("unreachable")


def _pg_ctl(action: str, cluster: tuple[str, str]) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action],
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_postgresql_down_answers_503_fast_and_the_service_recovers_by_itself(
    database_url: str, tmp_path: Path
) -> None:
    """PostgreSQL stopped under a running replica: requests answer 503 with a JSON body
    within the timeout (no hang), /healthz says the database is unavailable; once it is back
    the same process serves again (no restart), and a lease taken before is still there."""
    cluster = _cluster()
    with replicas(database_url, tmp_path, 1) as running:
        client = httpx.Client(base_url=running.urls[0], timeout=30)
        with client:
            before = client.post("/api/v2/leases", json={"select": {"names": ["board-2"]}})
            assert before.status_code == 201, before.text
            lease = before.json()["lease"]
            try:
                _pg_ctl("stop", cluster)
                answers = []
                for path in ("/api/v2/resources", "/api/v2/queue"):
                    started = time.monotonic()
                    answers.append((client.get(path), time.monotonic() - started))
                started = time.monotonic()
                lock = client.post("/api/v2/leases", json={"select": {"names": ["board-3"]}})
                answers.append((lock, time.monotonic() - started))
                v1 = client.post("/rentabot/api/v1.0/resources/4/lock")
                health = client.get("/healthz")
            finally:
                _pg_ctl("start", cluster)
            for response, took in answers:
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "unavailable"
                assert took < 7.0, f"{response.request.url} took {took:.1f} s"
            assert v1.status_code == 503
            assert "message" in v1.json()
            assert health.status_code == 503
            assert health.json()["status"] == "unavailable"

            deadline = time.monotonic() + 30
            while client.get("/healthz").status_code != 200:
                assert time.monotonic() < deadline, "the service did not recover"
                time.sleep(0.2)
            again = client.post("/api/v2/leases", json={"select": {"names": ["board-3"]}})
            assert again.status_code == 201, again.text
            kept = client.get(
                f"/api/v2/leases/{lease['id']}",
                headers={"Authorization": f"Bearer {lease['token']}"},
            )
            assert kept.status_code == 200
            assert kept.json()["lease"]["state"] == "active"
            deadline = time.monotonic() + 30
            while client.get("/healthz").json()["wakeups"] != "notified":
                assert time.monotonic() < deadline, "the wake-up listener did not come back"
                time.sleep(0.2)
        assert "Traceback" not in running.output()
