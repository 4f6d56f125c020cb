"""Histories of many concurrent clients of a real server, checked for double grants, fence
order, and leases that vanish, with and without a `kill -9` of the server in the middle.

The checker lives in `tests/e2e/history.py`; the first test here proves it can fail. The
clean run also runs, shorter, against a server with keys everywhere
(RENTABOT_ANONYMOUS_ROLE=none), every request carrying a lock key.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from rentabot.domain.identity import Role
from tests.e2e.history import (
    GRACE_S,
    KEEPALIVE_S,
    LONG_POLL_S,
    Grant,
    History,
    Inventory,
    Renewal,
    Worker,
    audit,
    check_history,
    total,
)
from tests.support import Server, create_key, write_descriptor

#: `pool` on five resources, `x` on three, two carry both; one has another tag, one none.
RESOURCES: dict[str, object] = {
    "board-1": {"tags": ["pool"]},
    "board-2": {"tags": ["pool"]},
    "board-3": {"tags": ["pool", "x"]},
    "board-4": {"tags": ["pool", "x"]},
    "board-5": {"tags": ["pool"]},
    "probe-1": {"tags": ["x"]},
    "spare-1": {"tags": ["spare"]},
    "spare-2": {"description": "no tags"},
}
ENV = {
    "RENTABOT_LONG_POLL_SECONDS": f"{LONG_POLL_S:g}",
    "RENTABOT_QUEUE_KEEPALIVE": f"{KEEPALIVE_S:g}",
    # The audit matches the listing's holders with the tokens the clients were given.
    "RENTABOT_EXPOSE_LOCK_TOKENS": "true",
}
CLIENTS = 12
#: Set HISTORY_SEED to replay a run's random choices (thread timing still varies).
SEED = int(os.environ.get("HISTORY_SEED", random.randrange(2**32)))


def start(
    servers: list[Server], tmp_path: Path, env: dict[str, str] | None = None, workers: int = 1
) -> Server:
    """A server on this test's database and descriptor (a restart reuses both), with ENV
    and `env`, and `workers` worker processes."""
    descriptor = write_descriptor(tmp_path / "resources.yml", RESOURCES)
    server = Server(
        tmp_path / "rentabot.db", descriptor, workers=workers, env={**ENV, **(env or {})}
    )
    servers.append(server)
    return server.start()


def make_workers(
    server: Server, history: History, headers: dict[str, str] | None = None
) -> list[Worker]:
    """The clients, each with its own random stream, sending `headers` with every request."""
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        inventory = Inventory.read(client)
    assert len(inventory.ids) == len(RESOURCES)
    return [Worker(i, inventory, history, SEED + i, headers) for i in range(CLIENTS)]


def run_phase(
    pool: ThreadPoolExecutor, workers: list[Worker], server: Server, seconds: float
) -> tuple[threading.Event, list[Future[None]]]:
    """Start every worker against `server` for `seconds`; (their stop event, futures)."""
    stop = threading.Event()
    until = time.monotonic() + seconds
    return stop, [pool.submit(w.run, server.url, until, stop) for w in workers]


def finish(futures: list[Future[None]]) -> None:
    """Wait for every worker; a worker's failure is raised here."""
    for future in futures:
        future.result(timeout=60)


def report(title: str, counts: Counter[str]) -> str:
    """One line per count, for the test's output."""
    lines = [f"{title} (seed {SEED}):"] + [f"  {k}: {n}" for k, n in sorted(counts.items())]
    return "\n".join(lines)


def history_counts(history: History, workers: list[Worker]) -> Counter[str]:
    """What the workers counted, plus what the history shows."""
    counts = total(w.counts for w in workers)
    counts["grants"] = len(history.grants)
    counts["grants of several resources"] = sum(len(g.fences) > 1 for g in history.grants)
    counts["unknown outcomes"] = len(history.unknown)
    counts["grants learned by a retry after the restart"] = sum(g.recovered for g in history.grants)
    return counts


# ---------------------------------------------------------------------------------- the checker


def _grant(key: str, fence: int, start: float, end: float, *, ttl_end: bool = False) -> Grant:
    """A synthetic v2 grant of resource 1, released at `end` (or expiring then)."""
    grant = Grant(
        key=f"v2:{key}",
        api="v2",
        worker=0,
        token=f"token-{key}",
        lease_id=ord(key),
        fences={1: fence},
        sent_at=start - 0.01,
        granted_at=start,
        ttl=None,
    )
    if ttl_end:
        grant.ttl, grant.deadlines = end - start, [end]
    else:
        grant.release, grant.release_sent_at, grant.release_answered_at = "ok", end, end + 0.01
    return grant


@pytest.mark.e2e
def test_the_checker_reports_overlaps_repeated_fences_and_late_answers() -> None:
    """The history checker finds a double grant, a repeated or backward fence, a late renewal."""
    clean = [
        _grant("a", 1, 0.0, 1.0),
        _grant("b", 2, 1.0, 2.0, ttl_end=True),
        _grant("c", 4, 2.5, 3),
    ]
    assert check_history(clean, offset=0.0) == []

    overlap = [_grant("a", 1, 0.0, 1.0), _grant("b", 2, 0.5, 2.0)]
    (problem,) = check_history(overlap, offset=0.0)
    assert "resource 1: v2:b" in problem
    assert "while v2:a" in problem

    # The end of an expiring lease is its deadline, converted with the offset.
    expiring = [_grant("a", 1, 10.0, 11.0, ttl_end=True), _grant("b", 2, 10.9, 12.0)]
    expiring[0].deadlines = [111.0]
    assert any("held it" in p for p in check_history(expiring, offset=100.0))
    assert check_history(expiring, offset=100.25) == []

    repeated = [_grant("a", 3, 0.0, 1.0), _grant("b", 3, 2.0, 3.0)]
    assert check_history(repeated, offset=0.0) == [
        "resource 1: fences 3 (v2:a) and 3 (v2:b): the same fence granted twice"
    ]

    backward = [_grant("a", 5, 0.0, 1.0), _grant("b", 4, 2.0, 3.0)]
    problems = check_history(backward, offset=0.0)
    assert [p.rsplit(": ", 1)[1] for p in problems] == [
        "the larger fence arrived before the smaller was asked",
        "the larger fence was held before the smaller",
    ]

    late = _grant("a", 1, 0.0, 5.0, ttl_end=True)
    late.renewals.append(Renewal(sent_at=5.2, answered_at=5.3, deadline_before=5.0, outcome="ok"))
    assert any("after its deadline" in p for p in check_history([late], offset=0.0))


# ---------------------------------------------------------------------------------- real servers


def check_clean_run(
    history: History,
    workers: list[Worker],
    url: str,
    title: str,
    headers: dict[str, str] | None = None,
) -> Counter[str]:
    """After a run without failures: no request failed, the history and the server's final
    state (read through `url`, sending `headers`) show no problem. Returns the run's counts."""
    assert not history.unknown, f"requests failed: {history.unknown[:5]}"
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        final = audit(client, history, grace=GRACE_S)
    problems = history.problems + check_history(history.grants, history.offset) + final.problems
    counts = history_counts(history, workers) + Counter(
        {f"end: {k}": n for k, n in final.states.items()}
    )
    print(report(title, counts))
    assert not problems, "\n".join(problems[:30]) + "\n" + report(title, counts)
    return counts


def assert_exercised(counts: Counter[str], minimum: dict[str, int]) -> None:
    """Each kind of event happened at least so often (else the run proved little)."""
    short = {k: counts[k] for k, n in minimum.items() if counts[k] < n}
    assert not short, f"too few of {short}\n{report('counts', counts)}"


#: What 15 s of the clean run must at least have done (a shorter run: in proportion).
CLEAN_RUN_MINIMUM = {
    "grants": 60,
    "v2 grants": 50,
    "v1 grants": 8,
    "grants of several resources": 10,
    "tickets": 10,
    "granted after waiting": 10,
    "renewals": 8,
    "late renewals refused": 5,
    "releases": 30,
    "releases refused": 5,
    "v1 unlocks": 4,
    "busy": 5,
    "end: expired": 10,
    "end: released": 30,
}


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("keyed", "processes", "seconds"),
    [(False, 1, 15.0), (True, 2, 8.0)],
    ids=["anonymous-1-worker", "keyed-2-workers"],
)
def test_twelve_clients_never_share_a_resource_and_every_lease_is_accounted_for(
    tmp_path: Path, servers: list[Server], keyed: bool, processes: int, seconds: float
) -> None:
    """15 s of 12 random clients on one worker process; 8 s on two worker processes sharing
    the database, with a lock key on every request (anonymous callers refused): no double
    grant, fences in order, no lease lost or leaked."""
    env = {"RENTABOT_ANONYMOUS_ROLE": "none"} if keyed else None
    server = start(servers, tmp_path, env, processes)
    headers = None
    if keyed:
        assert httpx.get(f"{server.url}/api/v2/resources").status_code == 401
        headers = {"X-API-Key": create_key(server.database_url, "worker", Role.LOCK)}
    history = History()
    workers = make_workers(server, history, headers)
    with ThreadPoolExecutor(CLIENTS) as pool:
        _, futures = run_phase(pool, workers, server, seconds=seconds)
        finish(futures)
    counts = check_clean_run(
        history, workers, server.url, f"history ({'keyed' if keyed else 'anonymous'})", headers
    )
    share = seconds / 15.0
    assert_exercised(counts, {k: max(1, int(n * share)) for k, n in CLEAN_RUN_MINIMUM.items()})


@pytest.mark.e2e
def test_a_kill_9_mid_run_loses_no_acknowledged_lease_and_invents_none(
    tmp_path: Path, servers: list[Server]
) -> None:
    """kill -9 mid-run: acknowledged leases survive with their fences; nothing unexplained held."""
    rng = random.Random(SEED)
    first = start(servers, tmp_path)
    history = History()
    workers = make_workers(first, history)
    # It takes two leases just before the kill (one renewed, one without TTL), so the
    # check after the restart always has leases that must have survived.
    keeper = Worker(CLIENTS, workers[0].inventory, history, SEED - 1)
    by_name = {name: rid for rid, name in workers[0].inventory.names.items()}
    with ThreadPoolExecutor(CLIENTS) as pool:
        stop, futures = run_phase(pool, workers, first, seconds=8.0)
        time.sleep(rng.uniform(2.5, 4.0))
        keeper.keep(first.url, {"ids": [by_name["spare-1"]]}, ttl=60.0)
        keeper.keep(first.url, {"ids": [by_name["spare-2"]]}, ttl=None)
        time.sleep(rng.uniform(0.0, 1.0))
        killed_at = time.time()
        first.kill()  # clients are mid-request: their answers never come
        stop.set()
        finish(futures)
        lost = Counter(u.kind for u in history.unknown)
        acknowledged = len(history.grants)

        second = start(servers, tmp_path)  # the same database file
        history.downtime.append((killed_at, time.time()))
        with httpx.Client(base_url=second.url, timeout=10) as client:
            restart = audit(client, history, grace=None)
        assert not restart.problems, "\n".join(restart.problems[:30])

        _, futures = run_phase(pool, [*workers, keeper], second, seconds=3.0)
        finish(futures)
    assert len(history.unknown) == sum(lost.values()), "requests failed after the restart"
    with httpx.Client(base_url=second.url, timeout=10) as client:
        final = audit(client, history, grace=GRACE_S)
    problems = history.problems + check_history(history.grants, history.offset) + final.problems
    counts = history_counts(history, [*workers, keeper])
    counts.update({f"lost at the kill: {k}": n for k, n in lost.items()})
    counts.update({f"after restart: {k}": n for k, n in restart.states.items()})
    counts.update({f"end: {k}": n for k, n in final.states.items()})
    counts["grants acknowledged before the kill"] = acknowledged
    print(report("history with a kill -9", counts))
    assert not problems, "\n".join(problems[:30]) + "\n" + report("history", counts)
    assert_exercised(
        counts,
        {
            "grants acknowledged before the kill": 15,
            "unknown outcomes": 1,
            "after restart: active": 2,
            "grants": 30,
            "granted after waiting": 3,
            "releases": 10,
        },
    )
