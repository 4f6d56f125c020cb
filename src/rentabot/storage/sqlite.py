"""SQLite: one file in WAL mode, the default database (docs/architecture.md, "SQLite
settings, and why"). Writes are grouped per event-loop iteration and run on the loop: each
is a few short statements on a local file, cheaper than a hop to a worker thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

from rentabot.domain.errors import DatabaseUnavailableError
from rentabot.storage.database import Database
from rentabot.storage.store import Store

#: How long a writer waits for another process's write lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 10.0


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


class SqliteDatabase(Database):
    """One SQLite file in WAL mode; writes are grouped per event-loop iteration."""

    backend = "sqlite"
    _operational_errors = (sqlite3.OperationalError,)

    def __init__(self, url: URL, *, sqlite_synchronous: str = "NORMAL") -> None:
        super().__init__(url)
        if sqlite_synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"unsupported synchronous mode {sqlite_synchronous!r}")
        path = _sqlite_file(url)
        if path is None:
            raise DatabaseUnavailableError("rentabot needs an SQLite file, not a memory database")
        if not path.parent.is_dir():
            raise DatabaseUnavailableError(
                f"the directory of the SQLite database does not exist: {path.parent}"
            )
        self._path = path
        self._synchronous = sqlite_synchronous
        self._idle: list[sqlite3.Connection] = []
        self._idle_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self._path,
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

    def _make_engine(self) -> Engine:
        engine = create_engine(self.url, poolclass=NullPool)
        synchronous = self._synchronous

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
            dbapi_connection.isolation_level = None
            _sqlite_pragmas(dbapi_connection, synchronous)

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            # pysqlite's implicit transactions are off; SQLAlchemy's documented recipe.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """See `Database.transaction`: `BEGIN IMMEDIATE` takes SQLite's write lock up front."""
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
        """See `Database.reader`."""
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

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        # A transaction here costs tens of microseconds: run it on the loop, once the
        # iteration's requests have all asked.
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        batch = self._take_batch()
        if self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._flush_scheduled = False
        self._deliver(batch, *self._run_batch([operation for operation, _ in batch]))

    def _unavailable(self, error: Exception) -> Exception:
        if isinstance(error, sqlite3.Error):
            return DatabaseUnavailableError(str(error))
        return error

    def dispose(self) -> None:
        """Close every idle connection and the engine."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        super().dispose()


def _sqlite_pragmas(connection: Any, synchronous: str) -> None:
    """WAL with the chosen `synchronous`, foreign keys, and a wait for other writers."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    cursor.close()
