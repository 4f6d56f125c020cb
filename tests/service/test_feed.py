"""The event feed on both databases: one reader, every subscriber served exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from rentabot.domain.model import Event, V1Selection
from rentabot.service import feed as feed_module
from rentabot.service.feed import EventFeed, FeedSubscriber
from rentabot.service.leases import LeaseService
from rentabot.service.locks import LockService
from rentabot.storage.database import Database
from rentabot.storage.store import Store
from tests.support import ANONYMOUS

pytestmark = pytest.mark.anyio

#: Longest a test waits for events it expects (they come within a commit, not a poll).
WAIT_S = 5.0


async def cycles(database: Database, count: int) -> None:
    """`count` lock+unlock cycles of resource 2: two events each."""
    service = LockService(database, LeaseService(database))
    for _ in range(count):
        grant = await service.lock(V1Selection(resource_id=2), ANONYMOUS)
        await service.unlock(2, grant.token, ANONYMOUS)


async def table_ids(database: Database, after: int) -> list[int]:
    """Every event id in the table after `after`, in order."""
    found = await database.read(
        lambda store: store.events(after=after, resource_id=None, lease_id=None, limit=10_000)
    )
    return [event.id for event in found]


async def collect(subscriber: FeedSubscriber, count: int) -> list[int]:
    """The ids of the next `count` events the subscriber gets (fails after WAIT_S)."""
    ids: list[int] = []

    async def read() -> None:
        while len(ids) < count:
            ids.extend(event.id for event in await subscriber.next(WAIT_S))

    await asyncio.wait_for(read(), WAIT_S)
    return ids


@pytest.fixture
async def feed(database: Database) -> AsyncIterator[EventFeed]:
    """A started feed that polls only once a minute: what it reads, commits woke it for."""
    started = EventFeed(database, poll=60.0)
    await started.start()
    yield started
    await started.stop()


@pytest.fixture
def events_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one every time anyone reads the events table."""
    calls: list[int] = []
    original: Callable[..., list[Event]] = Store.events

    def counting(self: Store, **kwargs: Any) -> list[Event]:
        calls.append(1)
        return original(self, **kwargs)

    monkeypatch.setattr(Store, "events", counting)
    return calls


async def test_many_subscribers_get_every_event_once_in_order_from_one_read_per_wakeup(
    database: Database, feed: EventFeed, events_read: list[int]
) -> None:
    """50 live subscribers each get all 30 events exactly once, in id order, and the table is
    read by the feed alone, at most once per commit (not once per subscriber)."""
    start = await database.read(Store.last_event_id)
    subscribers = [await feed.subscribe(None) for _ in range(50)]
    reads_before = len(events_read)
    await cycles(database, 15)
    received = await asyncio.gather(*(collect(s, 30) for s in subscribers))
    expected = await table_ids(database, start)
    assert len(expected) == 30
    assert all(ids == expected for ids in received)
    assert feed.catch_up_reads == 0
    # 30 commits (one per lock, one per unlock); 50 readers each would make 1,500 reads.
    assert len(events_read) - reads_before <= 30 + 2


async def test_a_subscriber_resuming_from_an_old_cursor_gets_no_gap_and_no_duplicate(
    database: Database, feed: EventFeed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscriber from an old cursor reads the table page by page (3 events a page here)
    while new events keep coming, then follows the feed: every event once, in order."""
    monkeypatch.setattr(feed_module, "PAGE", 3)
    start = await database.read(Store.last_event_id)
    await cycles(database, 5)
    late = await feed.subscribe(start)
    assert feed.position == await database.read(Store.last_event_id)
    writing = asyncio.create_task(cycles(database, 5))
    ids = await collect(late, 20)
    await writing
    assert ids == await table_ids(database, start)
    assert feed.catch_up_reads >= 4


async def test_a_slow_subscriber_never_delays_the_others_and_catches_up_from_the_table(
    database: Database,
) -> None:
    """With room for 4 events per subscriber, one that does not read while 20 events
    commit holds at most 4; a reading one gets all 20 meanwhile; the slow one then gets the
    same 20, once each, by its cursor."""
    feed = EventFeed(database, poll=60.0, capacity=4)
    await feed.start()
    try:
        start = await database.read(Store.last_event_id)
        slow, fast = await feed.subscribe(None), await feed.subscribe(None)
        writing = asyncio.create_task(cycles(database, 10))
        fast_ids = await collect(fast, 20)
        await writing
        assert len(slow._queue) <= 4
        assert await collect(slow, 20) == fast_ids == await table_ids(database, start)
        assert feed.catch_up_reads >= 1
    finally:
        await feed.stop()


async def test_a_quiet_subscriber_hears_nothing_until_its_timeout_and_leaves(
    feed: EventFeed,
) -> None:
    """With nothing committed, `next` answers [] after its timeout (the stream's keep-alive);
    a closed subscriber is no longer fed."""
    subscriber = await feed.subscribe(None)
    assert await subscriber.next(0.05) == []
    assert feed.subscriber_count == 1
    subscriber.close()
    assert feed.subscriber_count == 0


async def test_with_nobody_following_the_feed_reads_nothing(
    database: Database, feed: EventFeed, events_read: list[int]
) -> None:
    """Commits with no subscriber cost no read of the events table (the lock path pays
    nothing for a feed nobody follows); the first subscriber then gets what comes next."""
    reads_before = len(events_read)
    await cycles(database, 5)
    await asyncio.sleep(0.2)
    assert len(events_read) == reads_before
    follower = await feed.subscribe(None)
    await cycles(database, 1)
    assert len(await collect(follower, 2)) == 2


async def test_stop_ends_a_feed_whose_task_swallowed_a_cancel(database: Database) -> None:
    """On Python 3.11 a cancel can be lost inside wait_for: stop() cancels until the task is
    done, so an app's shutdown never hangs on the feed."""
    feed = EventFeed(database, poll=60.0)
    swallowed: list[bool] = []

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.append(True)  # lost, as wait_for may lose it
        await asyncio.sleep(3600)

    feed._task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(feed.stop(), 5)
    assert swallowed == [True]
    assert feed._task is None
