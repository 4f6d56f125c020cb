"""The database: the SQLAlchemy engine (migrations) and the transactions the service runs.

`storage/opening.open_database(url)` gives a `SqliteDatabase` (one file, the default,
`storage/sqlite.py`) or a `PostgresDatabase` (several replicas sharing one server,
`storage/postgres.py`), both a `Database` as defined here. Both serve the service the
same way: `write(operation)` runs an operation in a group transaction, `read(query)` on a
consistent snapshot, both with a `Store` of typed SQL.

The lock path runs a handful of short statements per request; a transaction costs more than
its statements (file locks and WAL writes on SQLite, a round trip and a WAL flush on
PostgreSQL), so writes made on the event loop are grouped: every write requested while the
previous group runs (on SQLite: in the same loop iteration) joins one transaction, each in its
own savepoint, and each caller is answered only after the commit (see docs/architecture.md,
"Group commit"). The DBAPI connection is used directly: SQLAlchemy's statement layer costs
more per statement than these statements do.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, ClassVar, TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from rentabot.storage.store import Store

T = TypeVar("T")

#: Most writes grouped into one transaction (bounds the latency a batch adds).
MAX_BATCH = 64


#: A write's outcome: its result, or the error to raise to its caller.
Outcome = tuple[Any, BaseException | None]
Operation = Callable[[Store], Any]


class Database(ABC):
    """The database behind one rentabot process: transactions, group commit, wake-ups."""

    #: Which kind of database this is, as the health endpoint reports it.
    backend: ClassVar[str]

    #: The driver's errors that, raised by one operation, mean the database could not do the
    #: work (a statement timeout, a deadlock, I/O) rather than that the operation is wrong.
    _operational_errors: ClassVar[tuple[type[Exception], ...]]

    def __init__(self, url: URL) -> None:
        self.url = url
        self._pending: list[tuple[Operation, asyncio.Future[Any]]] = []
        self._flush_scheduled = False
        self._engine: Engine | None = None
        # Set after every group commit that appended events: the event feed waits on it.
        self._committed: asyncio.Event | None = None

    # ------------------------------------------------------------------ per backend

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Store]:
        """One write transaction, committed when the block ends, rolled back on an exception.

        Write transactions are serialised (SQLite's write lock; a transaction-level advisory
        lock on PostgreSQL), so a read-then-claim inside one is never interleaved with another
        writer's; the claim itself is still a conditional update.
        """

    @abstractmethod
    def reader(self) -> AbstractContextManager[Store]:
        """Read-only access to a consistent snapshot; takes no write lock."""

    @abstractmethod
    def _make_engine(self) -> Engine:
        """A SQLAlchemy engine on the same database, for migrations and schema checks."""

    @abstractmethod
    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Arrange for the pending writes to run (and for the next ones after them)."""

    @abstractmethod
    def _unavailable(self, error: Exception) -> Exception:
        """The error to report for `error` raised by the database: DatabaseUnavailableError
        for the driver's errors, `error` itself otherwise."""

    @property
    def recheck_interval(self) -> float:
        """How often a waiting request re-reads its ticket when no wake-up came: the safety
        net that bounds the delay of a grant made by another process."""
        return 0.25

    def listen(self, wake: Callable[[list[int] | None], None]) -> None:  # noqa: B027
        """Call `wake(ticket ids)` on the running loop whenever another process grants
        tickets (`None`: any may have been). Without notifications (SQLite), waiters rely on
        `recheck_interval`."""

    @property
    def listening(self) -> bool:
        """Whether grants and new events made by other processes wake this one's waiters and
        event feed (then the feed re-reads less often)."""
        return False

    # ------------------------------------------------------------------ shared

    @property
    def engine(self) -> Engine:
        """A SQLAlchemy engine on the same database, for migrations and schema checks."""
        if self._engine is None:
            self._engine = self._make_engine()
        return self._engine

    def _read_now(self, query: Callable[[Store], T]) -> T:
        with self.reader() as store:
            return query(store)

    async def read(self, query: Callable[[Store], T], *, large: bool = False) -> T:
        """Run `query` on a consistent snapshot and return what it returns. Short reads run
        on the loop (a thread hop costs more than they do); `large` ones in a thread."""
        if large:
            return await asyncio.to_thread(self._read_now, query)
        return self._read_now(query)

    async def write(self, operation: Callable[[Store], T]) -> T:
        """Run `operation` in a group transaction; return once committed.

        The operation runs in its own savepoint: whatever it raises undoes its writes only,
        and is raised here (see `_failure`); the rest of the group commits. Only a failure of
        the transaction itself (BEGIN, COMMIT, the rollback to a savepoint, the connection)
        fails every caller in the group. Every write of the group is acknowledged after one
        commit.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((operation, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._schedule_flush(loop)
        return await future

    def _take_batch(self) -> list[tuple[Operation, asyncio.Future[Any]]]:
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        return batch

    def _run_batch(self, operations: list[Operation]) -> tuple[list[Outcome], bool]:
        """Run operations in one transaction, each in a savepoint; their outcomes in order,
        and whether the committed transaction appended events (the feed has news).

        An operation that raises is rolled back to its savepoint and fails alone: on
        PostgreSQL, `ROLLBACK TO` also recovers a transaction aborted by a failed statement.
        Only an error of the transaction itself fails the whole group, every caller and
        nothing committed: BEGIN or COMMIT, or a savepoint that cannot be opened or rolled
        back to (the connection is gone, or SQLite rolled the whole transaction back).

        Touches no future: on PostgreSQL this runs in a worker thread.
        """
        outcomes: list[Outcome] = []
        try:
            with self.transaction() as store:
                for operation in operations:
                    store.savepoint()
                    try:
                        result = operation(store)
                    except Exception as error:
                        # A refusal (busy, not found, …), input the database rejects, a bug:
                        # undo this operation's writes only. Should that fail too, the
                        # transaction is unusable and the error fails the group, below.
                        store.rollback_to_savepoint()
                        outcomes.append((None, self._failure(error)))
                    else:
                        store.release_savepoint()
                        outcomes.append((result, None))
                added_events = store.added_events
        except Exception as error:
            # The transaction failed (BEGIN, COMMIT, a savepoint, the connection): nothing of
            # the group is committed, and every caller in it hears of it.
            failure = self._unavailable(error)
            return [(None, failure) for _ in operations], False
        return outcomes, added_events

    def _failure(self, error: Exception) -> Exception:
        """What the caller of one failed operation gets (its savepoint rolled back).

        DatabaseUnavailableError (503: try again) when the database could not do the work:
        the driver's operational errors (a statement timeout, a deadlock, disk I/O; sqlite3
        files malformed SQL there too, the class its transactions already report as
        unavailable). Anything else is raised as it is, a RentabotError (a refusal) or not:
        a data error caused by the operation's own input (a string the driver cannot encode,
        a NUL byte PostgreSQL refuses, a constraint violation) or a bug is no sign that the
        database is unavailable, retrying would fail the same way, and the original error is
        what the log needs (the HTTP layer logs it and answers 500).
        """
        if isinstance(error, self._operational_errors):
            return self._unavailable(error)
        return error

    def _deliver(
        self,
        batch: list[tuple[Operation, asyncio.Future[Any]]],
        outcomes: list[Outcome],
        added_events: bool,
    ) -> None:
        # Only a commit with events wakes the feed: the expiry sweep commits four times a
        # second on every replica, mostly nothing, and the feed would re-read each time.
        if added_events and self._committed is not None:
            self._committed.set()
        for (_, future), (result, failure) in zip(batch, outcomes, strict=True):
            if future.cancelled():
                continue
            if failure is not None:
                future.set_exception(failure)
            else:
                future.set_result(result)

    def commit_signal(self) -> asyncio.Event:
        """An event set after every group commit of this process that appended events (call
        on the loop), and on
        PostgreSQL when another replica commits events (`_wake_feed`). Its one reader, the
        event feed (`service/feed.py`), clears it before it reads, so a commit made while it
        reads is never missed; without notifications (SQLite, a PostgreSQL listener that is
        down) other processes' writes are only seen by looking."""
        if self._committed is None:
            self._committed = asyncio.Event()
        return self._committed

    def _wake_feed(self) -> None:
        """On the loop: another process committed events; wake the feed as a commit does."""
        if self._committed is not None:
            self._committed.set()

    def ping(self) -> None:
        """Run a trivial query. Raises DatabaseUnavailableError when that fails."""
        with self.reader() as store:
            store.ping()

    def dispose(self) -> None:
        """Close every connection and the engine."""
        if self._engine is not None:
            self._engine.dispose()
