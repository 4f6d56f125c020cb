"""`rentabot keys`: API keys, managed on the server's database directly (like `serve`)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rentabot.service.identity import IdentityService

T = TypeVar("T")

DATABASE_OPTION = click.option(
    "--database",
    help="Database URL, as for serve.  [default: sqlite:///./rentabot.db; RENTABOT_DATABASE_URL]",
)


def _with_identities(
    database: str | None, use: Callable[[IdentityService], Coroutine[Any, Any, T]]
) -> T:
    """Run `use` on the identity service of the database (migrated first, so a key can be
    made before the first `serve`); errors (a refusal, the database) become a message and
    exit status 1."""
    from rentabot.cli.server_options import fail_on_database_errors, settings_from_options
    from rentabot.domain.errors import RentabotError
    from rentabot.service.bootstrap import current_database
    from rentabot.service.identity import IdentityService

    settings = settings_from_options(database_url=database)
    with fail_on_database_errors(settings), current_database(settings) as target:
        try:
            return asyncio.run(use(IdentityService(target)))
        except RentabotError as error:
            raise click.ClickException(error.message) from None


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at is not None else "never"


@click.group()
def keys() -> None:
    """Create, list and revoke API keys (run on the server's machine, with its database).

    \b
    Roles: read (listings, the queue, events), lock (and acquire, renew, release
    its own leases), admin (everything: maintenance, force-release, keys).
    Clients send a key as the X-API-Key header (RENTABOT_API_KEY for the rentabot
    commands). Only a SHA-256 hash of each key is stored.
    """


@keys.command("create")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["read", "lock", "admin"]),
    required=True,
    help="What the key may do.",
)
@DATABASE_OPTION
def create_key(name: str, role: str, database: str | None) -> None:
    """Create a key named NAME and print it, alone on the last line of standard output.

    It is shown only this once: store it where the job or person using it keeps secrets.

    \b
        KEY=$(rentabot keys create jenkins-lab-1 --role lock)
    """
    from rentabot.domain.identity import Role

    async def create(identity: IdentityService) -> str:
        _, secret = await identity.create_key(name, Role.parse(role))
        return secret

    secret = _with_identities(database, create)
    click.echo(f"rentabot: created key {name!r} with role {role}; it is shown only now:", err=True)
    click.echo(secret)


@keys.command("list")
@click.option("--revoked", is_flag=True, help="Also list revoked keys.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@DATABASE_OPTION
def list_keys(revoked: bool, as_json: bool, database: str | None) -> None:
    """List keys: name, role, created, last used (never the key)."""
    from rentabot.cli.client_commands import table

    found = _with_identities(database, lambda identity: identity.keys(revoked=revoked))
    if as_json:
        rows = [
            {
                "name": key.name,
                "role": key.role.label,
                "created_at": key.created_at,
                "last_used_at": key.last_used_at,
                "revoked_at": key.revoked_at,
            }
            for key in found
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    if not found:
        click.echo("no keys: create one with `rentabot keys create NAME --role ROLE`")
        return
    header = ["NAME", "ROLE", "CREATED", "LAST USED"] + (["REVOKED"] if revoked else [])
    rows_shown = [
        [key.name, key.role.label, _when(key.created_at), _when(key.last_used_at)]
        + ([_when(key.revoked_at) if key.revoked_at else "-"] if revoked else [])
        for key in found
    ]
    click.echo(table(header, rows_shown))


@keys.command("revoke")
@click.argument("name")
@DATABASE_OPTION
def revoke_key(name: str, database: str | None) -> None:
    """Revoke the key named NAME: every server refuses it within 2 s, and the sessions
    opened with it end."""
    _with_identities(database, lambda identity: identity.revoke_key(name))
    click.echo(f"key {name!r} revoked")
