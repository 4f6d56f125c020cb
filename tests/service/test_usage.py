"""History, usage figures and queue estimates of real leases, on SQLite and PostgreSQL,
with a hand-moved clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest

from rentabot.domain.errors import InvalidRequestError, NotFoundError
from rentabot.domain.identity import Role
from rentabot.domain.model import Lease, Selection
from rentabot.domain.usage import DAY_S
from rentabot.service.admin import AdminService
from rentabot.service.bootstrap import prepare_database
from rentabot.service.leases import LeaseService, LeaseTerms, Queued
from rentabot.service.usage import UsageService
from rentabot.settings import Settings
from rentabot.storage.database import Database
from rentabot.storage.opening import open_database
from tests.support import key_principal

pytestmark = pytest.mark.anyio

#: A UTC midnight, plus a little: every hold below falls on that one day.
T0 = 1_768_003_200.0 + 3600
CI = key_principal("ci")
ADMIN = key_principal("root", Role.ADMIN)


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lab(make_settings: Callable[..., Settings]) -> Iterator[Database]:
    """Two boards tagged `board` and a scope, migrated and synchronised."""
    settings = make_settings(
        {"a": {"tags": ["board"]}, "b": {"tags": ["board"]}, "scope": {"tags": ["scope"]}}
    )
    prepare_database(settings)
    database = open_database(settings.database_url)
    yield database
    database.dispose()


async def _lease(
    leases: LeaseService, resource_id: int, owner: str, ttl: float | None = None
) -> Lease:
    lease = await leases.acquire(
        Selection(resource_ids=(resource_id,)), LeaseTerms(ttl=ttl, owner=owner), CI
    )
    assert isinstance(lease, Lease)
    return lease


async def _queued(
    leases: LeaseService, resource_id: int, owner: str
) -> asyncio.Task[Lease | Queued]:
    """A waiter for the resource, returned once its ticket is in the queue."""
    before = len(await leases.queue())
    task = asyncio.create_task(
        leases.acquire(Selection(resource_ids=(resource_id,)), LeaseTerms(wait=20, owner=owner), CI)
    )
    for _ in range(1000):
        if len(await leases.queue()) > before:
            return task
        await asyncio.sleep(0.005)
    raise AssertionError("the waiter never joined the queue")


async def test_history_figures_and_estimates_follow_real_leases(lab: Database) -> None:
    """Released, expired and force-released holds, a queued grant's wait, maintenance with
    its reason, a tag's busy fraction, and the estimate of a waiter behind a holder."""
    clock = Clock()
    leases = LeaseService(lab, clock=clock)
    admin = AdminService(lab, leases)
    usage = UsageService(lab, clock)

    first = await _lease(leases, 1, "job-1")
    clock.now += 600
    await leases.release(first.id, first.token, CI)
    await _lease(leases, 1, "job-2", ttl=60)
    clock.now += 60
    assert await leases.sweep() == 1
    await _lease(leases, 1, "job-3")
    waiter = await _queued(leases, 1, "job-4")
    clock.now += 120
    await admin.force_release(1, reason="stuck <job>", admin=ADMIN)
    granted = await waiter
    assert isinstance(granted, Lease)
    await admin.set_maintenance(2, True, reason="fan broken", admin=ADMIN)
    clock.now += 30
    await admin.set_maintenance(2, False, reason=None, admin=ADMIN)

    history = (await usage.resource_history(1, limit=10)).history
    got = [(h.owner, h.start, h.end, h.ended_by, h.end_actor, h.reason) for h in history.holds]
    assert got == [
        ("job-1", T0, T0 + 600, "released", "ci", None),
        ("job-2", T0 + 600, T0 + 660, "expired", None, None),
        ("job-3", T0 + 660, T0 + 780, "force_released", "root", "stuck <job>"),
        ("job-4", T0 + 780, None, "held", None, None),
    ]
    assert (await usage.resource_history(1, limit=2)).history.holds == history.holds[-2:]
    (period,) = (await usage.resource_history(2, limit=10)).history.maintenance
    assert (period.start, period.end, period.reason, period.actor) == (
        T0 + 780,
        T0 + 810,
        "fan broken",
        "root",
    )

    figures = await usage.resource_usage(1, 7)
    assert figures.leases == 4
    assert figures.busy == pytest.approx(810 / (7 * DAY_S))
    assert figures.median_hold_s == 120
    assert figures.p90_hold_s == 600
    # Three grants at once, one after 120 s in the queue.
    assert figures.median_wait_s == 0
    assert len(figures.daily) == 8
    assert figures.daily[-1].busy == pytest.approx(810 / (clock.now - (T0 - 3600)))

    tag = await usage.tag_usage("board", 30)
    assert (tag.resources, tag.leases) == (2, 4)
    assert tag.busy == pytest.approx(810 / (2 * 30 * DAY_S))
    every = await usage.tags_usage(7)
    assert sorted(every) == ["board", "scope"]
    assert every["scope"].busy == 0

    # job-4 has held for 30 s of a 120 s median: the next waiter is expected in 90 s.
    later = await _queued(leases, 1, "job-5")
    ((ticket, _),) = await leases.queue()
    assert await usage.queue_estimates() == {ticket.id: pytest.approx(90)}
    await leases.release(granted.id, granted.token, CI)
    assert isinstance(await later, Lease)
    assert await usage.queue_estimates() == {}


async def test_unknown_resources_and_tags_and_windows_out_of_bounds_are_refused(
    lab: Database,
) -> None:
    """NotFoundError for a resource or tag that does not exist; days outside 1..90 refused."""
    usage = UsageService(lab, Clock())
    with pytest.raises(NotFoundError):
        await usage.resource_usage(99, 7)
    with pytest.raises(NotFoundError):
        await usage.resource_history(99, 10)
    with pytest.raises(NotFoundError):
        await usage.tag_usage("no-such-tag", 7)
    for days in (0, 91):
        with pytest.raises(InvalidRequestError):
            await usage.resource_usage(1, days)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_resource_with_100000_events_in_a_month_answers_within_seconds(
    lab: Database,
) -> None:
    """50,000 holds (100,000 events) on one board in 30 days: its 30-day figures and its
    history come back quickly, and count every hold."""
    clock = Clock()
    clock.now = T0 + 30 * DAY_S
    step = 30 * DAY_S / 50_000
    rows = [
        (T0 + i * step + offset, kind, 1, 1_000 + i, "ci")
        for i in range(50_000)
        for offset, kind in ((0.0, "granted"), (step / 2, "released"))
    ]
    await lab.write(lambda store: store.add_lease_events(rows))
    usage = UsageService(lab, clock)
    started = time.perf_counter()
    figures = await usage.resource_usage(1, 30)
    took = time.perf_counter() - started
    assert figures.leases == 50_000
    assert figures.busy == pytest.approx(0.5, abs=1e-3)
    assert took < 5, f"30-day figures of 100,000 events took {took:.2f} s"
    started = time.perf_counter()
    history = await usage.resource_history(1, 50)
    assert len(history.history.holds) == 50
    assert time.perf_counter() - started < 1
