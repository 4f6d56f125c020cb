"""Bring a database's schema to the version this rentabot needs (Alembic, programmatically)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import OperationalError

from rentabot.domain.errors import DatabaseUnavailableError, SchemaTooNewError
from rentabot.storage.database import Database

_MIGRATIONS = Path(__file__).with_name("migrations")
#: First key of the advisory lock that serialises migrations on PostgreSQL ("rbmg").
MIGRATION_LOCK = 0x72626D67


def _config(database: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def head_revision(database: Database) -> str | None:
    """The newest revision this rentabot knows."""
    return ScriptDirectory.from_config(_config(database)).get_current_head()


@contextmanager
def _reachable(database: Database) -> Iterator[None]:
    """SQLAlchemy's connection errors as DatabaseUnavailableError, like the service's."""
    try:
        yield
    except OperationalError as error:
        raise DatabaseUnavailableError(str(error.orig).strip()) from error


def current_revision(database: Database) -> str | None:
    """The revision the database is at (None: empty database)."""
    with _reachable(database), database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(database: Database) -> tuple[str | None, str | None]:
    """Migrate to the newest revision. Returns (revision before, revision after).

    Safe when several replicas start at once: on PostgreSQL they migrate one at a time (an
    advisory lock held until the migration commits) and the later ones find nothing to do;
    on SQLite the migration's `BEGIN IMMEDIATE` does the same.
    """
    config = _config(database)
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    with _reachable(database), database.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(
                "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))",
                (MIGRATION_LOCK,),
            )
        before = MigrationContext.configure(connection).get_current_revision()
        if before is not None and before not in known:
            raise SchemaTooNewError(
                f"the database is at schema revision {before}, which this rentabot does not"
                " know; it was upgraded by a newer rentabot"
            )
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return before, head_revision(database)
