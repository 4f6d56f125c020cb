"""`rentabot`: serve the API, and manage the database."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rentabot import __version__
from rentabot.cli.client_commands import COMMANDS as CLIENT_COMMANDS
from rentabot.cli.client_options import fail
from rentabot.cli.keys import keys
from rentabot.cli.run import run
from rentabot.cli.server_options import (
    configure_logging,
    fail_on_database_errors,
    settings_from_options,
)

if TYPE_CHECKING:
    from rentabot.settings import Settings

# The server's modules (settings, storage, alembic) are imported by the commands that use
# them: the client commands, run in CI jobs, start in a third of the time without them.

log = logging.getLogger("rentabot")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rentabot")
def main() -> None:
    """rentabot: lock shared automation resources (boards, benches, phones, licences).

    Every option also has a RENTABOT_* environment variable (see the README).
    """


# The client commands talk to a server over HTTP only (`rentabot.client`); docs/cli.md.
for _command in [*CLIENT_COMMANDS, run, keys]:
    main.add_command(_command)


@main.command()
@click.option("--host", help="Address to listen on.  [default: 127.0.0.1; RENTABOT_HOST]")
@click.option("--port", type=int, help="Port to listen on.  [default: 5000; RENTABOT_PORT]")
@click.option(
    "--descriptor",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML file of resources.  [RENTABOT_RESOURCE_DESCRIPTOR]",
)
@click.option(
    "--database",
    help="Database URL.  [default: sqlite:///./rentabot.db; RENTABOT_DATABASE_URL]",
)
@click.option("--workers", type=int, help="Worker processes.  [default: 1; RENTABOT_WORKERS]")
def serve(
    host: str | None,
    port: int | None,
    descriptor: Path | None,
    database: str | None,
    workers: int | None,
) -> None:
    """Serve the API and the web page.

    Validates the descriptor (stopping with file, line and reason when it is wrong, the
    database untouched), upgrades the database schema, synchronises the resources, then
    serves. Ctrl-C stops it.
    """
    import uvicorn

    from rentabot.app import create_app
    from rentabot.domain.errors import DescriptorError
    from rentabot.service.bootstrap import prepare_database_in_child
    from rentabot.settings import masked_url

    settings = settings_from_options(
        host=host,
        port=port,
        resource_descriptor=descriptor,
        database_url=database,
        workers=workers,
    )
    configure_logging(settings.log_level)
    if settings.expose_lock_tokens:
        log.warning(
            "RENTABOT_EXPOSE_LOCK_TOKENS is on: every client can read every holder's lock token"
            " and unlock anything"
        )
    with fail_on_database_errors(settings):
        try:
            report = prepare_database_in_child(settings)
        except DescriptorError as error:
            fail(f"invalid resource descriptor: {error}", 1)
    url = f"http://{settings.host}:{settings.port}"
    click.echo(
        f"rentabot {__version__} serving {report.sync.total} resources on {url}"
        f" (database {masked_url(settings.database_url)}, {settings.workers} worker(s))",
        err=True,
    )
    if not report.admin_keys:
        log.warning(
            "no admin key exists yet: create one, in another terminal, with\n"
            "    %s\n"
            "and send it as the X-API-Key header (RENTABOT_API_KEY for the rentabot"
            " commands). Callers without a key have the %s role.",
            admin_key_command(settings),
            settings.anonymous_role,
        )
    config = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": settings.access_log,
        "timeout_graceful_shutdown": 5,
        # The client address must be the TCP peer's: it decides whether a single-sign-on
        # proxy's user header is trusted, and uvicorn would otherwise take X-Forwarded-For
        # from any local process (its default trusts 127.0.0.1).
        "proxy_headers": False,
    }
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **config)  # type: ignore[arg-type]
    else:
        # Worker processes build their own app from the environment: hand them the settings.
        for name, value in settings.model_dump(exclude_none=True).items():
            os.environ[f"RENTABOT_{name.upper()}"] = str(value)
        uvicorn.run(
            "rentabot.app:create_app_from_environment",
            factory=True,
            workers=settings.workers,
            **config,  # type: ignore[arg-type]
        )


@main.group()
def db() -> None:
    """Manage the database."""


@db.command()
@click.option("--database", help="Database URL.  [RENTABOT_DATABASE_URL]")
def upgrade(database: str | None) -> None:
    """Create or upgrade the database schema to this version's (serve does it too)."""
    from rentabot.service.bootstrap import upgrade_schema

    settings = settings_from_options(database_url=database)
    configure_logging(settings.log_level)
    with fail_on_database_errors(settings):
        before, after = upgrade_schema(settings)
    if before == after:
        click.echo(f"database already at schema {after}")
    else:
        click.echo(f"database upgraded from {before or 'empty'} to schema {after}")


def admin_key_command(settings: Settings) -> str:
    """The command that creates the first admin key on this server's database (the
    database named in full, so it works from any directory)."""
    import shlex

    from sqlalchemy.engine import make_url

    program = sys.argv[0] if Path(sys.argv[0]).name == "rentabot" else "rentabot"
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        url = url.set(database=str(Path(url.database).resolve()))
    command = f"{shlex.quote(program)} keys create admin --role admin"
    command += f" --database {shlex.quote(url.render_as_string(hide_password=True))}"
    if url.password is not None:
        command += "  # with the database password in place of ***"
    return command
