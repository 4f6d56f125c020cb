"""What the commands that work on the server's side (`serve`, `db upgrade`, `keys`) share:
their settings from the environment and the options, logging, and database errors."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from rentabot.cli.client_options import fail

if TYPE_CHECKING:
    from rentabot.settings import Settings

# The server's modules (settings, storage, alembic) are imported inside these functions:
# the client commands, run in CI jobs, start in a third of the time without them.


def settings_from_options(**overrides: object) -> Settings:
    """The settings of the environment, with the options given on the command line; invalid
    ones end the command with status 2."""
    from pydantic import ValidationError

    from rentabot.settings import Settings

    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]  # values are checked by pydantic
    except ValidationError as error:
        problems = "; ".join(
            f"RENTABOT_{'_'.join(str(p) for p in item['loc']).upper()}: {item['msg']}"
            for item in error.errors()
        )
        fail(f"invalid settings: {problems}", 2)


def configure_logging(level: str) -> None:
    """Log to stderr at `level`, with times."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Alembic narrates every migration step at INFO; rentabot logs the outcome itself.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))


@contextlib.contextmanager
def fail_on_database_errors(settings: Settings) -> Iterator[None]:
    """An unreachable or too-new database becomes a message and exit status 1."""
    from rentabot.domain.errors import DatabaseUnavailableError, SchemaTooNewError
    from rentabot.settings import masked_url

    try:
        yield
    except (DatabaseUnavailableError, SchemaTooNewError) as error:
        fail(f"database {masked_url(settings.database_url)}: {error}", 1)
