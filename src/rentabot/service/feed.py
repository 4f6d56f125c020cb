"""The event feed: one reader of the audit trail per process, fanned out to every subscriber.

Without it, every group commit woke every event-stream client and each read the events
table itself: 200 open streams made 200 reads per commit, on the event loop. Here one task
reads what is new once per wake-up and hands the same events to every subscriber's bounded
queue. It wakes on `Database.commit_signal`: this process's commits, and on PostgreSQL
another replica's commit of events (announced by NOTIFY, heard by the listener thread). It
also re-reads every `poll` seconds (every `LISTENING_POLL_S` at least while notifications
are heard), for what no signal announces: another process on the same SQLite file, or a
replica's commit while this one's listener was away.

A subscriber that starts behind the feed (a `Last-Event-ID` older than what the feed has
read), or that falls more than `capacity` events behind, reads the table by its own cursor
until it has caught up, then takes its queue again, skipping what it already has: no gap, no
duplicate, and no subscriber ever makes the feed (or another subscriber) wait. Event ids
commit in order (one writer at a time on both databases), which is what makes "everything
after my cursor" the same as "everything I have not seen".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from rentabot.domain.errors import DatabaseUnavailableError
from rentabot.domain.model import Event
from rentabot.storage.database import Database
from rentabot.storage.store import Store

log = logging.getLogger("rentabot.feed")

#: Events read from the table at once (by the feed, or by a subscriber catching up).
PAGE = 500
#: Least time between two reads of the feed: commits within it are handed out together, so
#: under load every subscriber wakes (and writes to its socket) a few times a second, not
#: once per group commit.
COALESCE_S = 0.05
#: Most rendered events kept (see EventFeed.rendered).
RENDERED_MAX = 4096
#: Events a subscriber may have waiting before it is sent back to the table.
CAPACITY = 2000
#: Least time between two re-reads with no signal while other replicas' commits are heard
#: (`Database.listening`): then the re-read is only a safety net, as a waiter's recheck is.
LISTENING_POLL_S = 2.0


class FeedSubscriber:
    """One subscriber's view of the feed: `next()` gives its next events, in id order."""

    def __init__(self, feed: EventFeed, cursor: int, *, behind: bool) -> None:
        self._feed = feed
        #: The id of the last event given to this subscriber.
        self.cursor = cursor
        self._queue: deque[Event] = deque()
        self._behind = behind
        self._ready = asyncio.Event()
        if behind:
            self._ready.set()

    def _offer(self, events: list[Event]) -> None:
        """Called by the feed, on the loop; never waits. Past capacity, the queue is dropped
        and the subscriber reads the table instead (memory stays bounded)."""
        if len(self._queue) + len(events) > self._feed.capacity:
            self._queue.clear()
            self._behind = True
        else:
            self._queue.extend(events)
        self._ready.set()

    async def next(self, timeout: float) -> list[Event]:
        """The events after `cursor` (possibly several), or [] after `timeout` seconds of
        nothing new."""
        while True:
            if self._behind:
                # Cleared first: an overflow while the table is read sets it again.
                self._behind = False
                found = await self._feed.read_after(self.cursor)
                if len(found) == PAGE:
                    self._behind = True
                if found:
                    return self._take(found)
            queued = self._drain()
            if queued:
                return queued
            if not self._behind:
                self._ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), timeout)
                if not self._ready.is_set():
                    return []

    def _drain(self) -> list[Event]:
        events = list(self._queue)
        self._queue.clear()
        return self._take(events)

    def _take(self, events: list[Event]) -> list[Event]:
        fresh = [event for event in events if event.id > self.cursor]
        if fresh:
            self.cursor = fresh[-1].id
        return fresh

    def close(self) -> None:
        """Leave the feed (idempotent)."""
        self._feed._subscribers.discard(self)


class EventFeed:
    """Reads new events once per wake-up and gives them to every subscriber."""

    def __init__(self, database: Database, *, poll: float = 0.5, capacity: int = CAPACITY) -> None:
        self._database = database
        self._poll = poll
        self.capacity = capacity
        self._subscribers: set[FeedSubscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: The id of the newest event the feed has handed out.
        self.position = 0
        #: How many times the feed has read the events table (tests count them).
        self.reads = 0
        #: The wire text of recent events by id, filled by whoever serialises them (the
        #: stream route), so that 200 subscribers render an event once, not 200 times.
        #: Bounded: cleared past RENDERED_MAX entries.
        self.rendered: dict[int, str] = {}
        #: How many times subscribers behind the feed have read it themselves.
        self.catch_up_reads = 0

    @property
    def subscriber_count(self) -> int:
        """How many subscribers follow the feed now."""
        return len(self._subscribers)

    async def start(self) -> None:
        """Start reading from the newest event on (call in the app's lifespan)."""
        self.position = await self._database.read(Store.last_event_id)
        self._task = asyncio.create_task(self._run(), name="event feed")

    async def stop(self) -> None:
        """Stop reading; subscribers get nothing more."""
        if self._task is not None:
            self._stopping = True
            # Python 3.11's wait_for can swallow a cancel that lands as the wait it guards
            # completes: cancel again until the task is done (the flag ends its loop too).
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=1.0)
            self._task = None

    async def subscribe(self, after: int | None) -> FeedSubscriber:
        """A subscriber that gets every event after `after` (None: from now on)."""
        newest = await self._database.read(Store.last_event_id)
        if not self._subscribers:
            # Nobody was following, so the feed has not read since: it goes on from here
            # (a subscriber with an older cursor catches up from the table).
            self.position = max(self.position, newest)
        if after is None:
            after = newest
        subscriber = FeedSubscriber(self, after, behind=after < self.position)
        self._subscribers.add(subscriber)
        return subscriber

    async def read_after(self, cursor: int) -> list[Event]:
        """A page of events after `cursor`, from the table (a subscriber catching up)."""
        self.catch_up_reads += 1
        return await self._read(cursor)

    async def _read(self, cursor: int) -> list[Event]:
        return await self._database.read(
            lambda store: store.events(after=cursor, resource_id=None, lease_id=None, limit=PAGE),
            large=True,
        )

    async def _run(self) -> None:
        signal = self._database.commit_signal()
        unavailable = False
        while not self._stopping:
            # Cleared before reading: a commit during the read wakes the next round at once.
            signal.clear()
            try:
                if self._subscribers:
                    # With nobody following, reading would only tax the lock path.
                    await self._fetch()
            except DatabaseUnavailableError as error:
                if not unavailable:
                    log.warning("event feed paused: database unavailable: %s", error)
                unavailable = True
            except Exception:
                log.exception("event feed read failed; retrying")
            else:
                unavailable = False
            await asyncio.sleep(COALESCE_S)
            poll = self._poll
            if self._database.listening:
                poll = max(poll, LISTENING_POLL_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), poll)

    async def _fetch(self) -> None:
        while True:
            self.reads += 1
            found = await self._read(self.position)
            if not found:
                return
            self.position = found[-1].id
            if len(self.rendered) > RENDERED_MAX:
                self.rendered.clear()
            for subscriber in list(self._subscribers):
                subscriber._offer(found)
            if len(found) < PAGE:
                return
