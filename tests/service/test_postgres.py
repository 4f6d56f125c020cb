"""What only PostgreSQL does: the shared write lock, and how its waits fail."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from rentabot.service.bootstrap import prepare_database
from rentabot.settings import Settings
from rentabot.storage.database import DatabaseUnavailableError, open_database
from rentabot.storage.postgres import LOCK_CLASS
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
