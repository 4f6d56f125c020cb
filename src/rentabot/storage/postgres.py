"""PostgreSQL: several rentabot replicas sharing one database (psycopg 3).

Everything authoritative is a row, as on SQLite; what changes is how the transactions meet:

- **Writers are serialised** by a transaction-level advisory lock taken first in every write
  transaction (`pg_advisory_xact_lock`), the equivalent of SQLite's `BEGIN IMMEDIATE`. Queue
  planning reads the queue and the free resources and then claims; with the lock, no other
  replica's write falls in between, so the fairness rule (the oldest matching waiter first)
  holds across replicas exactly as in one process, event ids commit in order (the event
  stream resumes by id), and transactions never deadlock on each other's rows. Each replica
  still groups its writes (one transaction per group), so the lock is taken once per group.
  Claims stay conditional updates: the lock is not what makes them safe.
- **Grants are announced** with `NOTIFY` in the granting transaction (delivered at commit,
  dropped on rollback); every replica `LISTEN`s on a connection of its own and wakes its
  waiters. Waiters also re-read their ticket every `RECHECK_S` (every 0.25 s while the
  listener is down), so a lost notification delays a grant but never loses it.
- **New events are announced** the same way, by a write transaction that appended any, in
  the COMMIT's own round trip (no extra trip on the lock path): the listener then wakes this
  replica's event feed (`Database._wake_feed`), so an event committed on one replica reaches
  the event streams of every other within a notification's delay, not a poll's. At most one
  per `ANNOUNCE_EVERY_S` per replica: every notification wakes every replica's listener
  thread (and PostgreSQL's backend behind it), and one per group commit cost the lock path
  about a seventh of its throughput; a commit within the interval is announced by the next
  one, or `ANNOUNCE_EVERY_S` later on its own, never not at all (`announcements.py`). The
  feed still re-reads now and then (see `service/feed.py`), for a notification missed while
  the listener was away.
- **Unreachable means 503, fast.** Work runs in worker threads, never on the event loop;
  every wait (connect, a free connection, a statement) is bounded by the `timeout` setting;
  after a connection fails, requests fail at once for `DOWN_BACKOFF_S` instead of each
  waiting for its own connect attempt, and idle connections are dropped, so the service
  recovers by itself when PostgreSQL is back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache, partial
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from rentabot.domain.errors import DatabaseUnavailableError
from rentabot.storage.announcements import EventAnnouncements
from rentabot.storage.database import Database
from rentabot.storage.store import Store

T = TypeVar("T")

log = logging.getLogger("rentabot.postgres")

#: First key of rentabot's advisory lock (the second is the schema's hash): "rbot".
LOCK_CLASS = 0x72626F74
#: How often a waiter re-reads its ticket while notifications arrive (the safety net).
RECHECK_S = 2.0
#: How long requests fail at once after a connection to PostgreSQL failed.
DOWN_BACKOFF_S = 0.5
#: How often the listener tries to reconnect while PostgreSQL is unreachable.
LISTEN_RETRY_S = 1.0
#: The payload of a new-events notification starts so (a grant's is a ticket id); the rest
#: names the sending replica, whose own feed was woken by its commit already.
EVENTS_PAYLOAD = "events "


@lru_cache(maxsize=2048)
def _placeholders(sql: str) -> str:
    """The store writes qmark placeholders (`?`); psycopg wants `%s`."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresStore(Store):
    """The store's SQL on a psycopg cursor, and grant notifications."""

    def __init__(self, cursor: Any, channel: str) -> None:
        super().__init__(cursor)
        self._channel = channel
        self._release_pending = False

    def _run(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cursor.execute(_placeholders(sql), params)

    def _run_many(self, sql: str, rows: Any) -> None:
        self._cursor.executemany(_placeholders(sql), rows)

    # Each statement is a network round trip here (about 0.15 ms on a local socket, more
    # across a network), so the savepoint bookkeeping of a write group rides along with the
    # next statement that must be sent anyway: parameterless statements can share one trip.

    def savepoint(self) -> None:
        """Open a savepoint, first releasing the previous operation's (see below)."""
        if self._release_pending:
            self._cursor.execute("RELEASE op; SAVEPOINT op")
            self._release_pending = False
        else:
            self._cursor.execute("SAVEPOINT op")

    def release_savepoint(self) -> None:
        """Keep what was done since the savepoint. Deferred to the next `savepoint` (or to
        COMMIT, which releases every savepoint), which sends it in the same round trip."""
        self._release_pending = True

    def rollback_to_savepoint(self) -> None:
        """Undo what was done since the savepoint, and close it: one round trip."""
        self._cursor.execute("ROLLBACK TO op; RELEASE op")
        self._release_pending = False
        self._forget_reads()

    def announce_granted(self, ticket_id: int) -> None:
        """NOTIFY every replica, at commit, that this ticket was granted."""
        self._cursor.execute("SELECT pg_notify(%s, %s)", (self._channel, str(ticket_id)))


def _quote(text: str) -> str:
    """`text` as an SQL string literal (standard_conforming_strings, PostgreSQL's default
    since 9.1): for the notification statement, which must carry no parameters to share
    COMMIT's round trip."""
    return "'" + text.replace("'", "''") + "'"


def psycopg_url(url: URL) -> URL:
    """The URL with the psycopg 3 driver (`postgresql://` alone would mean psycopg2)."""
    return url.set(drivername="postgresql+psycopg")


class PostgresDatabase(Database):
    """A PostgreSQL database shared by any number of replicas."""

    backend = "postgresql"
    _operational_errors = (psycopg.OperationalError,)

    def __init__(self, url: URL, *, pool_size: int = 10, timeout: float = 5.0) -> None:
        super().__init__(psycopg_url(url))
        if pool_size < 2:
            raise ValueError("a PostgreSQL pool needs at least 2 connections")
        self._conninfo = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._pool_size = pool_size
        self._timeout = timeout
        self._slots = threading.BoundedSemaphore(pool_size)
        self._idle: list[psycopg.Connection[Any]] = []
        self._idle_lock = threading.Lock()
        self._down_until = 0.0
        self._down_reason = ""
        self._channel: str | None = None
        # Reads and write groups run here, off the event loop; one thread per connection.
        self._executor = ThreadPoolExecutor(pool_size, thread_name_prefix="rentabot-db")
        self._drainer: asyncio.Task[None] | None = None
        self._listener: threading.Thread | None = None
        self._listening = False
        self._stopping = threading.Event()
        #: Whether a write transaction that appended events tells the other replicas' feeds
        #: at commit (tests turn it off to see the feed without it).
        self.announce_events = True
        self._events_payload = EVENTS_PAYLOAD + secrets.token_hex(8)
        self._commit_announcing: str | None = None
        self._announcements = EventAnnouncements(
            self._send_announcement, self._executor, self._stopping
        )
        # Set by the listener thread while a feed wake-up is on its way to the loop: a burst
        # of other replicas' commits costs the loop one callback, not one per commit.
        self._feed_wake_pending = False

    # ------------------------------------------------------------------ connections

    def _open(self) -> psycopg.Connection[Any]:
        """A new connection with rentabot's session settings (autocommit: transactions are
        begun explicitly, as on SQLite)."""
        connection = psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=max(2, math.ceil(self._timeout)),
            application_name="rentabot",
        )
        milliseconds = int(self._timeout * 1000)
        try:
            # A statement (or the wait for the write lock) never hangs a request for longer;
            # a replica stopped inside a transaction cannot hold the write lock for longer.
            connection.execute(
                f"SET statement_timeout = {milliseconds};"
                f" SET idle_in_transaction_session_timeout = {milliseconds}"
            )
            if self._channel is None:
                schema = connection.execute("SELECT current_schema()").fetchone()
                self._channel = f"rentabot_{schema[0] if schema else 'public'}"[:63]
        except BaseException:
            connection.close()
            raise
        return connection

    def _mark_down(self, error: Exception) -> DatabaseUnavailableError:
        """Fail fast for a moment, and drop the idle connections (they share the fate of
        the one that failed)."""
        self._down_until = time.monotonic() + DOWN_BACKOFF_S
        self._down_reason = str(error).strip() or type(error).__name__
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        return DatabaseUnavailableError(f"PostgreSQL: {self._down_reason}")

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        if time.monotonic() < self._down_until:
            raise DatabaseUnavailableError(f"PostgreSQL: {self._down_reason}")
        if not self._slots.acquire(timeout=self._timeout):
            raise DatabaseUnavailableError(
                f"all {self._pool_size} database connections stayed busy for"
                f" {self._timeout:g} s (RENTABOT_DB_POOL_SIZE, RENTABOT_DB_TIMEOUT)"
            )
        try:
            with self._idle_lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                try:
                    connection = self._open()
                except psycopg.Error as error:
                    raise self._mark_down(error) from error
            try:
                yield connection
            except psycopg.Error as error:
                if connection.broken or connection.closed:
                    # The connection is gone (PostgreSQL restarted, the network failed):
                    # so are its idle siblings, most likely.
                    connection.close()
                    raise self._mark_down(error) from error
                # PostgreSQL answered (a statement timed out, say): this request fails,
                # the connection and the database are fine.
                self._give_back(connection)
                raise DatabaseUnavailableError(f"PostgreSQL: {str(error).strip()}") from error
            except BaseException:
                # A refusal raised inside a transaction (rolled back) leaves it reusable.
                self._give_back(connection)
                raise
            self._give_back(connection)
        finally:
            self._slots.release()

    def _give_back(self, connection: psycopg.Connection[Any]) -> None:
        """Keep a connection for the next request, unless its state is not a clean idle
        or the engine is being disposed (a read that ends after dispose would otherwise
        leave a connection idle that nobody closes, and its finaliser warns later, in
        whatever test happens to be running)."""
        if connection.closed or connection.info.transaction_status != TransactionStatus.IDLE:
            connection.close()
            return
        with self._idle_lock:
            # Checked under the lock dispose empties the list with: either dispose sees
            # this connection, or this sees the flag.
            if not self._stopping.is_set():
                self._idle.append(connection)
                return
        connection.close()

    def _store(self, connection: psycopg.Connection[Any]) -> PostgresStore:
        assert self._channel is not None  # set by the first connection
        return PostgresStore(connection.cursor(), self._channel)

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """See `Database.transaction`: the advisory lock serialises writers."""
        with self._connection() as connection:
            try:
                # One round trip: no parameters, so both statements go in one message.
                connection.execute(
                    f"BEGIN; SELECT pg_advisory_xact_lock({LOCK_CLASS}, hashtext(current_schema()))"
                )
                store = self._store(connection)
                yield store
            except BaseException:
                if not connection.closed:
                    connection.execute("ROLLBACK")
                raise
            announce = store.added_events and self.announce_events
            if announce and self._announcements.claim():
                try:
                    connection.execute(self._commit_announcing_events())
                except BaseException:
                    self._announcements.owe()  # what earlier commits owed is owed still
                    raise
            else:
                connection.execute("COMMIT")
                if announce:
                    self._announcements.owe()

    def _send_announcement(self) -> None:
        """The owed new-events notification, on its own (autocommit: sent at once)."""
        with self._connection() as connection:
            assert self._channel is not None
            connection.execute("SELECT pg_notify(%s, %s)", (self._channel, self._events_payload))

    def _commit_announcing_events(self) -> str:
        """COMMIT, preceded in the same message (one round trip, no parameters) by the
        NOTIFY that wakes the other replicas' event feeds; delivered only if it commits."""
        if self._commit_announcing is None:
            assert self._channel is not None  # set by the first connection
            channel, payload = _quote(self._channel), _quote(self._events_payload)
            self._commit_announcing = f"SELECT pg_notify({channel}, {payload}); COMMIT"
        return self._commit_announcing

    @contextmanager
    def reader(self) -> Iterator[Store]:
        """See `Database.reader`: a repeatable-read snapshot, no lock."""
        with self._connection() as connection:
            connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield self._store(connection)
            finally:
                if not connection.closed:
                    connection.execute("ROLLBACK")

    async def read(self, query: Callable[[Store], T], *, large: bool = False) -> T:
        """See `Database.read`; always in a worker thread, so a slow or unreachable database
        never stalls the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(self._read_now, query))

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._drainer = loop.create_task(self._drain(), name="rentabot write groups")

    async def _drain(self) -> None:
        """Run the pending writes in groups, one group at a time, in a worker thread:
        whatever arrives while a group commits joins the next one."""
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch = self._take_batch()
                operations = [operation for operation, _ in batch]
                try:
                    outcomes, added_events = await loop.run_in_executor(
                        self._executor, self._run_batch, operations
                    )
                except RuntimeError as error:  # the executor is shut down: the app stops
                    failure = DatabaseUnavailableError(f"shutting down: {error}")
                    outcomes, added_events = [(None, failure) for _ in batch], False
                self._deliver(batch, outcomes, added_events)
                self._announcements.schedule_owed(loop)
        finally:
            self._flush_scheduled = False

    def _unavailable(self, error: Exception) -> Exception:
        if isinstance(error, psycopg.Error):
            return DatabaseUnavailableError(f"PostgreSQL: {error}")
        return error

    def _make_engine(self) -> Engine:
        return create_engine(
            self.url,
            poolclass=NullPool,
            connect_args={"connect_timeout": max(2, math.ceil(self._timeout))},
        )

    # ------------------------------------------------------------------ wake-ups

    @property
    def recheck_interval(self) -> float:
        """Slow while notifications arrive; the SQLite pace while the listener is down."""
        return RECHECK_S if self._listening else super().recheck_interval

    def listen(self, wake: Callable[[list[int] | None], None]) -> None:
        """Start the listener thread: `wake(ticket ids)` for every grant announced by any
        replica, and `wake(None)` (everyone) after it (re)connects, as grants may have been
        missed while it was away. New events committed by another replica wake the event
        feed (and it is woken after every (re)connect too, for the same reason)."""
        loop = asyncio.get_running_loop()
        self._listener = threading.Thread(
            target=self._listen_forever, args=(loop, wake), name="rentabot-listen", daemon=True
        )
        self._listener.start()

    def _listen_forever(
        self, loop: asyncio.AbstractEventLoop, wake: Callable[[list[int] | None], None]
    ) -> None:
        while not self._stopping.is_set():
            try:
                connection = self._open()
            except psycopg.Error as error:
                log.warning("cannot listen for wake-ups (retrying): %s", error)
                self._stopping.wait(LISTEN_RETRY_S)
                continue
            try:
                with connection:
                    connection.execute(f'LISTEN "{self._channel}"')
                    self._listening = True
                    loop.call_soon_threadsafe(wake, None)
                    self._hear_events(loop)
                    while not self._stopping.is_set():
                        # Each one at once: the wake-up latency is the point.
                        for notification in connection.notifies(timeout=0.5):
                            payload = notification.payload
                            if payload.isdigit():
                                loop.call_soon_threadsafe(wake, [int(payload)])
                            elif payload != self._events_payload and payload.startswith(
                                EVENTS_PAYLOAD
                            ):
                                self._hear_events(loop)
            except psycopg.Error as error:
                if not self._stopping.is_set():
                    log.warning("lost the wake-up listener (reconnecting): %s", error)
            except RuntimeError:
                return  # the event loop closed: the app is shutting down
            finally:
                self._listening = False
            self._stopping.wait(LISTEN_RETRY_S)

    def _hear_events(self, loop: asyncio.AbstractEventLoop) -> None:
        """In the listener thread: wake the feed on the loop, unless a wake-up is already on
        its way (it is cleared on the loop before the feed is woken, so none is lost)."""
        if not self._feed_wake_pending:
            self._feed_wake_pending = True
            loop.call_soon_threadsafe(self._feed_woken)

    def _feed_woken(self) -> None:
        self._feed_wake_pending = False
        self._wake_feed()

    # ------------------------------------------------------------------ lifecycle

    @property
    def listening(self) -> bool:
        """Whether this process hears other replicas' grants and new events right now."""
        return self._listening

    def dispose(self) -> None:
        """Stop the listener, close every connection, the threads and the engine."""
        with self._idle_lock:
            self._stopping.set()
            idle, self._idle = self._idle, []
        if self._listener is not None:
            self._listener.join(timeout=2)
        with self._idle_lock:
            idle, self._idle = idle + self._idle, []
        for connection in idle:
            connection.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        super().dispose()
