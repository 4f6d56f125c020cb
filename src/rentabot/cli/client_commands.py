"""`rentabot ls`, `lock`, `unlock`, `renew`, `queue`, `whoami`: the v2 API from a shell."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Sequence

import click

from rentabot.cli.client_options import (
    DURATION,
    F,
    QueueProgress,
    client_options,
    connect,
    describe_selection,
    lock_request,
    reporting_errors,
)
from rentabot.cli.environment import lease_environment, shell_exports
from rentabot.client import Lease, LockOptions, format_duration
from rentabot.client.sync import exit_on_signals

#: Signals that end a waiting `lock` (exit status 128 + N) after it left the queue.
INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

#: The exit codes every client command documents (shown by `--help`).
EXIT_CODES = """\b
Exit codes: 0 done; 2 usage error; 120 the lease has ended; 121 no such
resource or lease; 122 busy, or timed out waiting in the queue; 123 server
unreachable; 124 refused by the server for another reason."""


def _expires(expires_at: float | None, now: float) -> str:
    if expires_at is None:
        return "never"
    left = expires_at - now
    return f"in {format_duration(left)}" if left > 0 else "now"


def table(header: Sequence[str], rows: list[list[str]]) -> str:
    """Rows under a header, in columns."""
    widths = [max(len(row[i]) for row in [list(header), *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [list(header), *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


@click.command("ls")
@click.option("--tag", "tags", multiple=True, help="Only resources carrying this tag (repeatable).")
@click.option(
    "--state",
    type=click.Choice(["available", "locked", "maintenance"]),
    help="Only resources in this state.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@client_options
def ls(
    tags: tuple[str, ...],
    state: str | None,
    as_json: bool,
    url: str,
    api_key: str | None,
    retry_for: float,
) -> None:
    """List resources: state, holder (the lease's owner) and expiry."""
    with reporting_errors(), connect(url, api_key, retry_for) as client:
        resources = client.resources(tags, state)
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in resources], indent=2))
        return
    now = time.time()
    rows = []
    for resource in resources:
        holder = resource.holder
        rows.append(
            [
                str(resource.id),
                resource.name,
                resource.state,
                (holder.owner or f"lease {holder.lease_id}") if holder else "-",
                _expires(holder.expires_at, now) if holder else "-",
                " ".join(resource.tags),
            ]
        )
    click.echo(table(["ID", "NAME", "STATE", "HOLDER", "EXPIRES", "TAGS"], rows))


@click.command(epilog=EXIT_CODES)
@lock_request
@click.option(
    "--ttl",
    type=DURATION,
    help="Lease time (90s, 10m, 2h); renew before it runs out.  [default: the server's]",
)
@click.option("--json", "as_json", is_flag=True, help="Print the lease as JSON.")
@click.option(
    "--shell",
    is_flag=True,
    help="Print `export` lines (RENTABOT_TOKEN, RENTABOT_LEASE_ID, …) for eval.",
)
@client_options
def lock(
    options: LockOptions,
    ttl: float | None,
    as_json: bool,
    shell: bool,
    url: str,
    api_key: str | None,
    retry_for: float,
) -> None:
    """Lock resources and print the lease: its id, token and resources.

    Release it with `rentabot unlock`, and with --ttl renew it with `rentabot renew`
    before it runs out. For a command to run while holding a lease, `rentabot run` does all
    of it.

    \b
        eval "$(rentabot lock --tag nrf52 --ttl 10m --shell)"
        ... use $RENTABOT_RESOURCE ...
        rentabot unlock
    """
    if as_json and shell:
        raise click.UsageError("give --json or --shell, not both")
    progress = QueueProgress(describe_selection(options))
    options.update({"ttl": ttl, "on_progress": progress})
    # Interrupted while waiting, the client leaves the queue before the process exits.
    with (
        exit_on_signals(INTERRUPTS),
        reporting_errors(),
        connect(url, api_key, retry_for) as client,
    ):
        try:
            lease = client.lock(**options)
        finally:
            progress.done()
    if as_json:
        click.echo(lease.model_dump_json(indent=2))
    elif shell:
        click.echo(shell_exports(lease_environment(lease, url)), nl=False)
    else:
        click.echo(_describe_lease(lease))


def _describe_lease(lease: Lease) -> str:
    expiry = _expires(lease.expires_at, time.time())
    lines = [f"lease {lease.id} (expires {expiry})", f"token {lease.token}"]
    for resource in lease.resources:
        where = f", endpoint {resource.endpoint}" if resource.endpoint else ""
        lines.append(f"resource {resource.name} (id {resource.id}, fence {resource.fence}{where})")
    return "\n".join(lines)


def lease_arguments(command: F) -> F:
    """LEASE_ID (or RENTABOT_LEASE_ID) and --token (or RENTABOT_TOKEN)."""
    command = click.argument("lease_id", type=click.IntRange(min=1), envvar="RENTABOT_LEASE_ID")(
        command
    )
    return click.option(
        "--token",
        envvar="RENTABOT_TOKEN",
        required=True,
        help="The lease's token (prefer the variable: options show in `ps`).  [RENTABOT_TOKEN]",
    )(command)


@click.command(epilog=EXIT_CODES)
@lease_arguments
@client_options
def unlock(lease_id: int, token: str, url: str, api_key: str | None, retry_for: float) -> None:
    """Release a lease and everything it holds.

    LEASE_ID and the token default to RENTABOT_LEASE_ID and RENTABOT_TOKEN, which
    `rentabot lock --shell` exports.
    """
    with reporting_errors(), connect(url, api_key, retry_for) as client:
        lease = client.release(lease_id, token)
    click.echo(f"lease {lease.id} {lease.state}")


@click.command(epilog=EXIT_CODES)
@lease_arguments
@click.option("--ttl", type=DURATION, help="New lease time from now.  [default: the lease's]")
@click.option("--json", "as_json", is_flag=True, help="Print the lease as JSON.")
@client_options
def renew(
    lease_id: int,
    token: str,
    ttl: float | None,
    as_json: bool,
    url: str,
    api_key: str | None,
    retry_for: float,
) -> None:
    """Renew a lease: it then expires TTL from now.

    LEASE_ID and the token default to RENTABOT_LEASE_ID and RENTABOT_TOKEN, which
    `rentabot lock --shell` exports.
    """
    with reporting_errors(), connect(url, api_key, retry_for) as client:
        lease = client.renew(lease_id, token, ttl)
    if as_json:
        click.echo(lease.model_dump_json(indent=2))
    else:
        click.echo(f"lease {lease.id} renewed, expires {_expires(lease.expires_at, time.time())}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@client_options
def queue(as_json: bool, url: str, api_key: str | None, retry_for: float) -> None:
    """Show the wait queue, in the order it will be served."""
    with reporting_errors(), connect(url, api_key, retry_for) as client:
        tickets = client.queue()
    if as_json:
        click.echo(json.dumps([t.model_dump(mode="json") for t in tickets], indent=2))
        return
    if not tickets:
        click.echo("nobody is waiting")
        return
    now = time.time()
    rows = [
        [
            str(ticket.position or "-"),
            str(ticket.id),
            str(ticket.priority),
            ticket.owner or "-",
            _wanted(ticket.count, ticket.tags, ticket.resource_ids),
            format_duration(now - ticket.created_at),
            _expires(ticket.wait_until, now),
        ]
        for ticket in tickets
    ]
    header = ["POSITION", "TICKET", "PRIORITY", "OWNER", "WANTS", "WAITED", "GIVES UP"]
    click.echo(table(header, rows))


def _wanted(count: int, tags: Sequence[str], ids: Sequence[int] | None) -> str:
    if ids:
        return "ids " + ",".join(str(i) for i in ids)
    what = "tags " + ",".join(tags) if tags else "any"
    return f"{count} x {what}"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@client_options
def whoami(as_json: bool, url: str, api_key: str | None, retry_for: float) -> None:
    """Print who the server takes you for: your key's name and role."""
    with reporting_errors(), connect(url, api_key, retry_for) as client:
        identity = client.whoami()
    if as_json:
        click.echo(identity.model_dump_json(indent=2))
    elif identity.principal is None:
        click.echo(f"anonymous (role {identity.role}): set RENTABOT_API_KEY to use a key")
    else:
        click.echo(f"{identity.principal} (role {identity.role}, by {identity.via})")


#: Registered on the `rentabot` group by `cli/main.py`.
COMMANDS = [ls, lock, unlock, renew, queue, whoami]
