"""Bring a database's schema to the version this rentabot needs (Alembic, programmatically)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from rentabot.storage.database import Database

_MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaTooNewError(Exception):
    """The database was migrated by a newer rentabot than this one."""


def _config(database: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def head_revision(database: Database) -> str | None:
    """The newest revision this rentabot knows."""
    return ScriptDirectory.from_config(_config(database)).get_current_head()


def current_revision(database: Database) -> str | None:
    """The revision the database is at (None: empty database)."""
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(database: Database) -> tuple[str | None, str | None]:
    """Migrate to the newest revision. Returns (revision before, revision after)."""
    config = _config(database)
    before = current_revision(database)
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    if before is not None and before not in known:
        raise SchemaTooNewError(
            f"the database is at schema revision {before}, which this rentabot does not know;"
            " it was upgraded by a newer rentabot"
        )
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return before, head_revision(database)
