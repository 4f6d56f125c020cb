"""Alembic's migrations produce exactly the schema the code declares."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from rentabot.storage import migrate
from rentabot.storage.database import Database
from rentabot.storage.schema import metadata


def test_upgrade_from_empty_matches_the_declared_schema(database_url: str) -> None:
    """After `upgrade`, autogenerate finds no difference between database and metadata."""
    database = Database(database_url)
    assert migrate.upgrade(database) == (None, migrate.head_revision(database))
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    database.dispose()
    assert differences == []


def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    """A second upgrade finds the database current and changes nothing."""
    database = Database(database_url)
    head = migrate.upgrade(database)[1]
    assert migrate.upgrade(database) == (head, head)
    database.dispose()
