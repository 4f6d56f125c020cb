"""One database: the SQLAlchemy engine (migrations) and the transactions the service runs.

The lock path runs a handful of short statements per request. On SQLite the cost of a
transaction is its system calls (file locks, WAL writes), not its statements, so writes made
on the event loop are grouped: every write requested in the same loop iteration runs in one
transaction, each in its own savepoint, and each caller is answered only after the commit
(see docs/architecture.md, "Group commit"). The DBAPI connection is used directly: SQLAlchemy's
statement layer costs more per statement than these statements do.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

from rentabot.domain.errors import RentabotError
from rentabot.storage.store import Store

T = TypeVar("T")

#: How long a writer waits for another process's write lock before giving up (SQLite).
SQLITE_BUSY_TIMEOUT_S = 10.0
#: Most writes grouped into one transaction (bounds the latency a batch adds).
MAX_BATCH = 64


class DatabaseUnavailableError(Exception):
    """The database cannot be reached, or stayed locked for too long."""


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


class Database:
    """The database behind one rentabot process."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL") -> None:
        self.url = make_url(url)
        if self.url.get_backend_name() != "sqlite":
            raise DatabaseUnavailableError(
                f"unsupported database {self.url.get_backend_name()!r}: this version of"
                " rentabot runs on SQLite (sqlite:///path/to/file.db)"
            )
        if sqlite_synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"unsupported synchronous mode {sqlite_synchronous!r}")
        self._path = _sqlite_file(self.url)
        if self._path is None:
            raise DatabaseUnavailableError("rentabot needs an SQLite file, not a memory database")
        if not self._path.parent.is_dir():
            raise DatabaseUnavailableError(
                f"the directory of the SQLite database does not exist: {self._path.parent}"
            )
        self._synchronous = sqlite_synchronous
        self._idle: list[sqlite3.Connection] = []
        self._idle_lock = threading.Lock()
        self._pending: list[tuple[Callable[[Store], Any], asyncio.Future[Any]]] = []
        self._flush_scheduled = False
        self._engine: Engine | None = None
        # Set after every group commit: the event stream waits on it (in this process).
        self._committed: asyncio.Event | None = None

    # ------------------------------------------------------------------ connections

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self._path,  # type: ignore[arg-type]  # checked in __init__
                timeout=SQLITE_BUSY_TIMEOUT_S,
                isolation_level=None,  # transactions are ours to begin (BEGIN IMMEDIATE)
                check_same_thread=False,
                cached_statements=256,
            )
            _sqlite_pragmas(connection, self._synchronous)
        except sqlite3.Error as error:
            raise DatabaseUnavailableError(f"cannot open {self._path}: {error}") from error
        return connection

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._idle_lock:
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            connection = self._connect()
        try:
            yield connection
        except BaseException:
            connection.close()  # its state is unknown: never reuse it
            raise
        with self._idle_lock:
            self._idle.append(connection)

    @property
    def engine(self) -> Engine:
        """A SQLAlchemy engine on the same database, for migrations and schema checks."""
        if self._engine is None:
            self._engine = create_engine(self.url, poolclass=NullPool)
            synchronous = self._synchronous

            @event.listens_for(self._engine, "connect")
            def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
                dbapi_connection.isolation_level = None
                _sqlite_pragmas(dbapi_connection, synchronous)

            @event.listens_for(self._engine, "begin")
            def _on_begin(connection: Any) -> None:
                # pysqlite's implicit transactions are off; SQLAlchemy's documented recipe.
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        return self._engine

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """One write transaction, committed when the block ends, rolled back on an exception.

        `BEGIN IMMEDIATE` takes SQLite's write lock up front, so a read-then-claim inside it
        is never interleaved with another writer's (the claim itself is still conditional).
        """
        try:
            with self._connection() as connection:
                cursor = connection.cursor()
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield Store(cursor)
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
                cursor.execute("COMMIT")
        except sqlite3.OperationalError as error:
            raise DatabaseUnavailableError(str(error)) from error

    @contextmanager
    def reader(self) -> Iterator[Store]:
        """Read-only access to a consistent snapshot; takes no write lock."""
        try:
            with self._connection() as connection:
                cursor = connection.cursor()
                cursor.execute("BEGIN")
                try:
                    yield Store(cursor)
                finally:
                    cursor.execute("ROLLBACK")
        except sqlite3.OperationalError as error:
            raise DatabaseUnavailableError(str(error)) from error

    async def write(self, operation: Callable[[Store], T]) -> T:
        """Run `operation` in this loop iteration's group transaction; return once committed.

        The operation runs in its own savepoint: a RentabotError it raises undoes its writes
        only, and is raised here. Any other error rolls the whole group back and is raised
        to every caller in it. Every write of the group is acknowledged after one commit.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((operation, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        if self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._flush_scheduled = False
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            with self.transaction() as store:
                for operation, future in batch:
                    store.savepoint()
                    try:
                        result = operation(store)
                    except RentabotError as error:
                        # A refusal (busy, not found, …): undo this operation's writes only.
                        store.rollback_to_savepoint()
                        outcomes.append((future, None, error))
                    else:
                        store.release_savepoint()
                        outcomes.append((future, result, None))
        except Exception as error:
            # Anything else (the database, a bug) fails the whole group, never half of it.
            if isinstance(error, sqlite3.Error):
                error = DatabaseUnavailableError(str(error))
            outcomes = [(future, None, error) for _, future in batch]
        if self._committed is not None:
            self._committed.set()
        for future, result, failure in outcomes:
            if future.cancelled():
                continue
            if failure is not None:
                future.set_exception(failure)
            else:
                future.set_result(result)

    async def committed(self, timeout: float) -> None:
        """Return after the next group commit of this process, or after `timeout` seconds
        (writes made by other processes are only seen by looking again)."""
        if self._committed is None:
            self._committed = asyncio.Event()
        self._committed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._committed.wait(), timeout)

    def ping(self) -> None:
        """Run a trivial query. Raises DatabaseUnavailableError when that fails."""
        with self.reader() as store:
            store.ping()

    def dispose(self) -> None:
        """Close every idle connection and the engine."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        if self._engine is not None:
            self._engine.dispose()


def _sqlite_pragmas(connection: Any, synchronous: str) -> None:
    """WAL with the chosen `synchronous`, foreign keys, and a wait for other writers."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    cursor.close()
