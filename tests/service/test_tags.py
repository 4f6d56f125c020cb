"""Tags as pools on SQLite and PostgreSQL: each tag's resources by state (one aggregate),
its queue length, and a tag's report with its usage figures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest

from rentabot.domain.errors import NotFoundError
from rentabot.domain.identity import Role
from rentabot.domain.model import Lease, ResourceSpec, Selection
from rentabot.service.admin import AdminService
from rentabot.service.bootstrap import prepare_database
from rentabot.service.inventory import sync_inventory
from rentabot.service.leases import LeaseService, LeaseTerms
from rentabot.service.usage import TagPool, UsageService
from rentabot.settings import Settings
from rentabot.storage.database import Database
from rentabot.storage.opening import open_database
from tests.support import key_principal

pytestmark = pytest.mark.anyio

CI = key_principal("ci")
ADMIN = key_principal("root", Role.ADMIN)
#: Five boards: a..d carry `board` (a and b also `fast`), e carries `scope`; f and g are
#: retired below (f while held, so it still counts; g free, so it no longer does).
LAB = {
    "a": {"tags": ["board", "fast"]},
    "b": {"tags": ["board", "fast"]},
    "c": {"tags": ["board"]},
    "d": {"tags": ["board"]},
    "e": {"tags": ["scope"]},
    "f": {"tags": ["board", "old"]},
    "g": {"tags": ["old"]},
}


@pytest.fixture
def lab(make_settings: Callable[..., Settings]) -> Iterator[Database]:
    """The lab, migrated and synchronised."""
    settings = make_settings(LAB)
    prepare_database(settings)
    database = open_database(settings.database_url)
    yield database
    database.dispose()


async def _lease(leases: LeaseService, resource_id: int) -> Lease:
    lease = await leases.acquire(Selection(resource_ids=(resource_id,)), LeaseTerms(), CI)
    assert isinstance(lease, Lease)
    return lease


async def _wait_for(leases: LeaseService, selection: Selection) -> asyncio.Task[object]:
    """A request that waits, returned once its ticket is in the queue."""
    before = len(await leases.queue())
    task: asyncio.Task[object] = asyncio.create_task(
        leases.acquire(selection, LeaseTerms(wait=20), CI)
    )
    for _ in range(1000):
        if len(await leases.queue()) > before:
            return task
        await asyncio.sleep(0.005)
    raise AssertionError("the request never joined the queue")


def _row(pool: TagPool) -> tuple[object, ...]:
    c = pool.counts
    return (c.tag, c.free, c.held, c.maintenance, c.total, pool.waiting)


async def test_the_overview_counts_each_tags_resources_by_state_and_its_waiters(
    lab: Database,
) -> None:
    """After two locks, a maintenance (one of them held), retiring a held and a free
    resource, and three waiters (by tag, by a named resource, for any): each tag's free /
    held / maintenance / total and queue length."""
    leases = LeaseService(lab, clock=time.time)
    admin = AdminService(lab, leases)
    usage = UsageService(lab, time.time)
    await _lease(leases, 1)  # a: board, fast
    await _lease(leases, 6)  # f: board, old (retired below, still held)
    await admin.set_maintenance(3, True, reason=None, admin=ADMIN)  # c: board
    await admin.set_maintenance(1, True, reason=None, admin=ADMIN)  # a: held, so held
    kept = [ResourceSpec(name, tags_text=" ".join(LAB[name]["tags"])) for name in "abcdef"]
    sync_inventory(lab, kept)  # g retired (free: gone), f retired (held: still shown)
    waiters = [
        await _wait_for(leases, Selection(tags=("fast",), count=2)),
        await _wait_for(leases, Selection(resource_ids=(1,))),
        await _wait_for(leases, Selection(count=4)),
    ]
    try:
        pools = await usage.tags_overview()
        assert [_row(p) for p in pools] == [
            # tag, free, held, maintenance, total, waiting
            ("board", 2, 2, 1, 5, 1),
            ("fast", 1, 1, 0, 2, 2),
            ("old", 0, 1, 0, 1, 0),
            ("scope", 1, 0, 0, 1, 0),
        ]
        report = await usage.tag_report("fast")
        assert _row(report.pool) == ("fast", 1, 1, 0, 2, 2)
        assert [f.days for f in report.figures] == [7, 30]
        assert all(f.resources == 2 and f.leases == 1 for f in report.figures)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def test_a_tag_no_visible_resource_carries_is_not_found(lab: Database) -> None:
    """Unknown, empty, and carried only by a retired free resource: NotFoundError."""
    usage = UsageService(lab, time.time)
    sync_inventory(lab, [ResourceSpec(name, tags_text="board") for name in "abcdef"])
    for tag in ("no-such-tag", "", "old"):
        with pytest.raises(NotFoundError):
            await usage.tag_report(tag)
    assert [p.tag for p in await usage.tags_overview()] == ["board"]


async def test_the_activity_names_the_resources_of_the_latest_events_retired_ones_too(
    lab: Database,
) -> None:
    """Newest first, at most `limit`; every resource an event concerns is named, including
    one retired since (the trail outlives it); events without a resource need no name."""
    leases = LeaseService(lab, clock=time.time)
    admin = AdminService(lab, leases)
    first = await _lease(leases, 7)  # g
    await leases.release(first.id, first.token, CI)
    await _lease(leases, 2)  # b
    sync_inventory(lab, [ResourceSpec(name, tags_text="board") for name in "abcdef"])  # g gone
    activity = await admin.activity(limit=50)
    ids = [e.id for e in activity.events]
    assert ids == sorted(ids, reverse=True)
    named = {e.resource_id for e in activity.events if e.resource_id is not None}
    assert {2, 7} <= named
    assert activity.names == {rid: "abcdefg"[rid - 1] for rid in named}
    assert len((await admin.activity(limit=2)).events) == 2
