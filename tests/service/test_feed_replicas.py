"""Two replicas on one PostgreSQL: an event committed on one reaches the other's event feed
by NOTIFY, within a notification's delay, not a poll's.

Each replica is a whole app (`create_app`, its lifespan run here: its own database object,
connections, LISTEN thread, expiry sweep and feed) on the same schema. Their feeds re-read
only every 30 s, so what arrives sooner was woken by a signal.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from rentabot import app as app_module
from rentabot.app import create_app
from rentabot.domain.model import V1Selection
from rentabot.interfaces.runtime import Runtime
from rentabot.service.bootstrap import prepare_database
from rentabot.service.feed import EventFeed, FeedSubscriber
from rentabot.settings import Settings
from rentabot.storage.announcements import ANNOUNCE_EVERY_S
from rentabot.storage.postgres import PostgresDatabase
from rentabot.storage.store import Store
from tests.support import ANONYMOUS, POSTGRES_URL, postgres_schema

pytestmark = pytest.mark.anyio

#: The feeds' re-read interval here: far beyond every deadline below.
POLL_S = 30.0
#: How soon another replica's event must reach a subscriber.
DEADLINE_S = 1.0


@pytest.fixture
def database_url() -> Iterator[str]:
    """PostgreSQL only (replicas need it): a fresh schema of this test's own."""
    with postgres_schema() as url:
        yield url


@asynccontextmanager
async def replica(settings: Settings) -> AsyncIterator[Runtime]:
    """One running app on the settings' database, once it hears the other replicas."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        runtime: Runtime = app.state.runtime
        database = runtime.leases._database
        assert isinstance(database, PostgresDatabase)
        for _ in range(100):
            if database.listening:
                break
            await asyncio.sleep(0.05)
        assert database.listening
        # The listener wakes the feed once it is connected: let that pass.
        await asyncio.sleep(0.3)
        yield runtime


@pytest.fixture
def slow_feeds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every app's feed re-reads only every POLL_S seconds."""
    monkeypatch.setattr(app_module, "EventFeed", functools.partial(EventFeed, poll=POLL_S))


async def first_event_after(subscriber: FeedSubscriber, event_id: int, wait: float) -> float:
    """Seconds until the subscriber gets event `event_id` (inf: not within `wait`)."""
    start = time.monotonic()
    while (left := start + wait - time.monotonic()) > 0:
        if any(event.id >= event_id for event in await subscriber.next(left)):
            return time.monotonic() - start
    return float("inf")


async def lock_on(runtime: Runtime) -> int:
    """Lock resource 2 on this replica; the id of the newest event after it."""
    await runtime.locks.lock(V1Selection(resource_id=2), ANONYMOUS)
    return await runtime.leases._database.read(lambda store: store.last_event_id())


async def test_an_event_committed_on_one_replica_reaches_a_subscriber_on_another_within_1s(
    example_settings: Settings, slow_feeds: None
) -> None:
    """A lock on replica A: a subscriber of replica B's feed gets its event within 1 s, though
    B's feed re-reads only every 30 s and B itself commits nothing with events."""
    prepare_database(example_settings)
    async with replica(example_settings) as a, replica(example_settings) as b:
        subscriber = await b.feed.subscribe(None)
        reads_before = b.feed.reads
        event_id = await lock_on(a)
        took = await first_event_after(subscriber, event_id, DEADLINE_S)
        assert took < DEADLINE_S
        # Woken once (the notification), not by B's sweeps committing nothing.
        assert b.feed.reads - reads_before <= 2
        subscriber.close()


async def test_the_last_event_of_a_burst_on_one_replica_reaches_another_within_1s(
    example_settings: Settings, slow_feeds: None
) -> None:
    """Ten commits with events in a row on replica A, faster than A announces (once per
    50 ms): B's subscriber still gets the last one within 1 s (A announces what it owes)."""
    prepare_database(example_settings)
    async with replica(example_settings) as a, replica(example_settings) as b:
        subscriber = await b.feed.subscribe(None)
        for _ in range(5):
            grant = await a.locks.lock(V1Selection(resource_id=2), ANONYMOUS)
            await a.locks.unlock(2, grant.token, ANONYMOUS)
        last = await a.leases._database.read(lambda store: store.last_event_id())
        assert await first_event_after(subscriber, last, DEADLINE_S) < DEADLINE_S
        subscriber.close()


async def test_without_the_notification_another_replicas_event_waits_for_the_poll(
    example_settings: Settings, slow_feeds: None
) -> None:
    """The same, with replica A not announcing its events: B's subscriber gets nothing within
    1 s (B's sweeps commit every 0.25 s, but without events they wake no feed), which is
    what shows the notification, and nothing else, carries the event in time."""
    prepare_database(example_settings)
    async with replica(example_settings) as a, replica(example_settings) as b:
        database_a = a.leases._database
        assert isinstance(database_a, PostgresDatabase)
        database_a.announce_events = False
        subscriber = await b.feed.subscribe(None)
        event_id = await lock_on(a)
        assert await first_event_after(subscriber, event_id, DEADLINE_S + 0.5) == float("inf")
        subscriber.close()


def _listen(database_url: str) -> psycopg.Connection[Any]:
    """A raw connection listening on the schema's channel."""
    schema = database_url.rsplit("%3D", 1)[1]
    conninfo = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://", 1)
    connection = psycopg.connect(conninfo, autocommit=True)
    connection.execute(f'LISTEN "rentabot_{schema}"')
    return connection


def events_heard(listener: psycopg.Connection[Any]) -> int:
    """How many new-events notifications the listener gets within 0.5 s."""
    return sum(1 for n in listener.notifies(timeout=0.5) if n.payload.startswith("events "))


async def test_a_write_group_with_many_events_sends_one_notification_and_one_without_none(
    example_settings: Settings, database_url: str
) -> None:
    """Ten writes of two events each, grouped into one transaction, notify once; a
    transaction that appends no event notifies nothing; twenty groups in a row notify far
    fewer than twenty times, but at least twice (the first, and what the last is owed)."""
    prepare_database(example_settings)
    database = PostgresDatabase(make_url(example_settings.database_url))
    listener = _listen(database_url)
    try:

        def two_events(store: Store) -> None:
            store.add_event(time.time(), "note", actor="test")
            store.add_events([(time.time(), "note", None, None)])

        await asyncio.gather(*(database.write(two_events) for _ in range(10)))
        assert await asyncio.to_thread(events_heard, listener) == 1
        await database.write(Store.last_event_id)
        assert await asyncio.to_thread(events_heard, listener) == 0
        await database.write(two_events)
        assert await asyncio.to_thread(events_heard, listener) == 1
        started = time.monotonic()
        for _ in range(20):
            await database.write(two_events)
        took = time.monotonic() - started
        heard = await asyncio.to_thread(events_heard, listener)
        assert 2 <= heard <= took / ANNOUNCE_EVERY_S + 2
    finally:
        listener.close()
        database.dispose()


async def test_an_owed_announcement_waits_its_turn_after_a_commit_that_just_announced(
    example_settings: Settings, database_url: str
) -> None:
    """The owed timer's worker and an announcing commit never both notify within
    ANNOUNCE_EVERY_S: a worker that finds the slot just taken sends nothing and tries again
    a slot later, when it does announce."""
    prepare_database(example_settings)
    database = PostgresDatabase(make_url(example_settings.database_url))
    listener = _listen(database_url)
    try:
        await database.write(Store.last_event_id)  # opens a connection: the channel is known
        loop = asyncio.get_running_loop()
        announcements = database._announcements
        assert announcements.claim()  # a commit has just announced...
        announcements.owe()  # ...and one within the slot owes its announcement
        await loop.run_in_executor(None, announcements.announce_owed, loop)
        at_once = sum(1 for _ in listener.notifies(timeout=0.01))  # the worker sent nothing
        assert at_once == 0
        assert await asyncio.to_thread(events_heard, listener) == 1  # the retry, a slot later
        assert not announcements.owed
    finally:
        listener.close()
        database.dispose()
