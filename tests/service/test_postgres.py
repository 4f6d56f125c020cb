"""What only PostgreSQL does: the shared write lock, and how its waits fail."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from rentabot.domain.errors import DatabaseUnavailableError
from rentabot.service.bootstrap import prepare_database
from rentabot.settings import Settings
from rentabot.storage.opening import open_database
from rentabot.storage.postgres import DOWN_BACKOFF_S, LOCK_CLASS, PostgresDatabase
from rentabot.storage.store import Store
from tests.support import EXAMPLES

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(postgres_url: str) -> Settings:
    """The example resources in a fresh PostgreSQL schema."""
    configured = Settings(database_url=postgres_url, resource_descriptor=EXAMPLES)
    prepare_database(configured)
    return configured


def _hold_the_write_lock(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """Another replica, stopped inside a write transaction: it holds the write lock."""
    conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
    stuck = psycopg.connect(conninfo)  # not autocommit: the lock lasts until rollback
    stuck.execute(f"SELECT pg_advisory_xact_lock({LOCK_CLASS}, hashtext(current_schema()))")
    return stuck


async def test_a_replica_stuck_in_a_write_makes_writes_fail_after_the_timeout_not_reads(
    settings: Settings,
) -> None:
    """Writes wait for the write lock at most RENTABOT_DB_TIMEOUT, then fail as unavailable;
    reads go on meanwhile, and writes work again as soon as the lock is free."""
    database = open_database(settings.database_url, timeout=1.0)
    stuck = _hold_the_write_lock(settings.database_url)
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError, match="statement timeout"):
            await database.write(lambda store: store.add_event(1.0, "blocked"))
        waited = time.monotonic() - started
        assert 0.9 <= waited < 3.0, waited
        # The database answered: it is not marked down, reads go on at once.
        resources = await database.read(Store.resources)
        assert len(resources) == 5
    finally:
        stuck.rollback()
        stuck.close()
    await database.write(lambda store: store.add_event(1.0, "unblocked"))
    database.dispose()


async def test_writers_of_two_processes_take_turns(settings: Settings) -> None:
    """A write waits while another holds the write lock, and proceeds when it is released."""
    database = open_database(settings.database_url, timeout=5.0)
    stuck = _hold_the_write_lock(settings.database_url)
    release_at = time.monotonic() + 0.5
    try:

        async def release_later() -> None:
            await asyncio.sleep(0.5)
            stuck.rollback()

        releaser = asyncio.create_task(release_later())
        await database.write(lambda store: store.add_event(1.0, "after the other"))
        assert time.monotonic() >= release_at - 0.05
        await releaser
    finally:
        stuck.close()
        database.dispose()


def _backend_pid(store: Store) -> int:
    pid: int = store._run("SELECT pg_backend_pid()").fetchone()[0]
    return pid


async def test_a_connection_lost_in_a_group_fails_the_whole_group_and_is_not_reused(
    settings: Settings,
) -> None:
    """A connection that dies under an operation fails every caller of its group, never half."""
    database = open_database(settings.database_url)
    try:
        first = await database.write(_backend_pid)

        def kill_own_connection(store: Store) -> None:
            store.add_event(1.0, "lost")
            store._run("SELECT pg_terminate_backend(pg_backend_pid())")

        outcomes = await asyncio.gather(
            database.write(lambda store: store.add_event(1.0, "lost too")),
            database.write(kill_own_connection),
            database.write(lambda store: store.add_event(1.0, "lost as well")),
            return_exceptions=True,
        )
        assert all(isinstance(o, DatabaseUnavailableError) for o in outcomes), outcomes
        await asyncio.sleep(DOWN_BACKOFF_S + 0.1)  # requests fail at once for this long
        events = await database.read(
            lambda store: store.events(after=0, resource_id=None, lease_id=None, limit=1000)
        )
        assert [e.kind for e in events if e.kind.startswith("lost")] == []
        assert await database.write(_backend_pid) != first  # a new connection
    finally:
        database.dispose()


async def test_a_statement_that_times_out_fails_only_its_own_caller_as_unavailable(
    settings: Settings,
) -> None:
    """A statement timeout in one operation is a 503 for its caller; its group commits."""
    database = open_database(settings.database_url)
    try:

        def time_out(store: Store) -> None:
            store.add_event(1.0, "timed out")
            store._run("SET LOCAL statement_timeout = 50")  # undone with the savepoint
            store._run("SELECT pg_sleep(2)")

        outcomes = await asyncio.gather(
            database.write(lambda store: store.add_event(1.0, "kept")),
            database.write(time_out),
            database.write(lambda store: store.add_event(1.0, "kept too")),
            return_exceptions=True,
        )
        assert outcomes[0] is None
        assert outcomes[2] is None
        assert isinstance(outcomes[1], DatabaseUnavailableError), repr(outcomes[1])
        assert "statement timeout" in str(outcomes[1])
        events = await database.read(
            lambda store: store.events(after=0, resource_id=None, lease_id=None, limit=1000)
        )
        assert [e.kind for e in events][-2:] == ["kept", "kept too"]
        assert "timed out" not in [e.kind for e in events]
    finally:
        database.dispose()


async def test_a_read_that_ends_after_dispose_closes_its_connection(settings: Settings) -> None:
    """A request still running when the server stops must not leave a connection idle
    that nobody closes: its finaliser would warn later, inside an unrelated test."""
    database = open_database(settings.database_url)
    assert isinstance(database, PostgresDatabase)
    try:
        with database._connection() as connection:  # a read in flight...
            database.dispose()  # ...while the server shuts down
        assert connection.closed
        assert database._idle == []
    finally:
        database.dispose()
