"""Start-up: validate the descriptor, migrate the schema, synchronise the inventory."""

from __future__ import annotations

import gc
import logging
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from rentabot.service.inventory import SyncReport, read_descriptor, sync_inventory
from rentabot.settings import Settings
from rentabot.storage import migrate
from rentabot.storage.database import Database
from rentabot.storage.opening import open_database

log = logging.getLogger("rentabot")


@dataclass(frozen=True, slots=True)
class StartupReport:
    """What start-up did to the database."""

    schema_before: str | None
    schema_after: str | None
    sync: SyncReport
    #: How many admin keys exist (none: the operator is told how to make the first).
    admin_keys: int


def open_database_for(settings: Settings) -> Database:
    """The database the settings name, with their options."""
    return open_database(
        settings.database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        pool_size=settings.db_pool_size,
        timeout=settings.db_timeout,
    )


def upgrade_schema(settings: Settings) -> tuple[str | None, str | None]:
    """Create or upgrade the schema of the settings' database (`rentabot db upgrade`):
    the revisions before and after."""
    database = open_database_for(settings)
    try:
        return migrate.upgrade(database)
    finally:
        database.dispose()


@contextmanager
def current_database(settings: Settings) -> Iterator[Database]:
    """The settings' database with its schema current (migrated first: an operator may make
    a key before the first `serve`), closed after the block."""
    database = open_database_for(settings)
    try:
        migrate.upgrade(database)
        yield database
    finally:
        database.dispose()


def prepare_database(settings: Settings) -> StartupReport:
    """Bring the database in line with this rentabot and its descriptor.

    The descriptor is read and validated before anything is written, so an invalid one
    (DescriptorError) leaves the database exactly as it was.
    """
    path = settings.resource_descriptor
    specs = read_descriptor(path) if path is not None else []
    if path is None:
        log.warning(
            "no resource descriptor set (RENTABOT_RESOURCE_DESCRIPTOR or --descriptor):"
            " serving no resources"
        )
    database = open_database_for(settings)
    try:
        before, after = migrate.upgrade(database)
        if before != after:
            log.info("database schema upgraded from %s to %s", before or "empty", after)
        report = sync_inventory(database, specs)
        with database.reader() as store:
            admin_keys = store.admin_key_count()
    finally:
        database.dispose()
    log.info(
        "inventory: %d resources (%d added, %d updated, %d retired, %d retired but still held)",
        report.total,
        report.added,
        report.updated,
        report.retired,
        report.retired_but_held,
    )
    return StartupReport(before, after, report, admin_keys)


def _prepare_in_child(settings: Settings, log_level: int) -> StartupReport:
    # This process lives only for start-up, so the cyclic garbage collector can stay off: a
    # large descriptor becomes millions of small objects that form no cycles, and the
    # collector would rescan them again and again (100,000 entries: 18 s instead of 3 s).
    gc.disable()
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(max(logging.WARNING, log_level))
    return prepare_database(settings)


def prepare_database_in_child(settings: Settings) -> StartupReport:
    """`prepare_database` in a short-lived child process, raising its errors here.

    Parsing a descriptor of 100,000 resources builds a YAML tree of millions of objects; doing
    it in a child keeps that memory out of the long-running server process.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_prepare_in_child, settings, logging.getLogger().level).result()
