"""Start-up: validate the descriptor, migrate the schema, synchronise the inventory."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rentabot.service.inventory import SyncReport, read_descriptor, sync_inventory
from rentabot.settings import Settings
from rentabot.storage import migrate
from rentabot.storage.database import Database

log = logging.getLogger("rentabot")


@dataclass(frozen=True, slots=True)
class StartupReport:
    """What start-up did to the database."""

    schema_before: str | None
    schema_after: str | None
    sync: SyncReport


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
    database = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        before, after = migrate.upgrade(database)
        if before != after:
            log.info("database schema upgraded from %s to %s", before or "empty", after)
        report = sync_inventory(database, specs)
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
    return StartupReport(before, after, report)
