"""What the client commands (`ls`, `lock`, `unlock`, `renew`, `queue`, `run`) share: the
server options, the selection options, durations, the owner, the queue progress line, and
the exit codes. They reach the server over HTTP only, through `rentabot.client`."""

from __future__ import annotations

import contextlib
import functools
import getpass
import os
import socket
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any, NoReturn, TypeVar

import click

from rentabot.client import (
    BusyError,
    Client,
    DurationError,
    LeaseEndedError,
    LeaseLostError,
    LockOptions,
    NotFoundError,
    RentabotClientError,
    ServerUnreachableError,
    UnavailableError,
    parse_duration,
)

F = TypeVar("F", bound=Callable[..., Any])

#: Exit codes of the client commands (the child's own status comes first in `run`).
EXIT_LEASE_LOST = 120
EXIT_NOT_FOUND = 121
EXIT_NOT_GRANTED = 122
EXIT_UNREACHABLE = 123
EXIT_REFUSED = 124

DEFAULT_URL = "http://127.0.0.1:5000"


class DurationType(click.ParamType[float]):
    """A duration option: `90`, `90s`, `10m`, `2h`, `1h30m` (seconds as a float)."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        """Seconds, or a usage error saying what is accepted."""
        try:
            return parse_duration(value)
        except DurationError as error:
            self.fail(str(error), param, ctx)


DURATION = DurationType()


def client_options(command: F) -> F:
    """`--url`, `--api-key` and `--retry-for`, each also from its environment variable."""
    options = [
        click.option(
            "--url",
            envvar="RENTABOT_URL",
            default=DEFAULT_URL,
            help=f"rentabot server.  [default: {DEFAULT_URL}; RENTABOT_URL]",
        ),
        click.option(
            "--api-key",
            envvar="RENTABOT_API_KEY",
            help="Your API key, sent as the X-API-Key header (prefer the variable: options"
            " show in `ps`).  [RENTABOT_API_KEY]",
        ),
        click.option(
            "--retry-for",
            envvar="RENTABOT_RETRY_FOR",
            type=DURATION,
            default="60s",
            help="How long to retry when the server cannot be reached, with the same request"
            " id (a retry never takes a second lease).  [default: 60s; RENTABOT_RETRY_FOR]",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def lock_request(command: Callable[..., None]) -> Callable[..., None]:
    """What to lock (`--id`, `--name`, `--tag`, each repeatable, `--count`) and how
    (`--wait`, `--priority`, `--owner`, `--description`, `--request-id`), handed to the
    command as one `options: LockOptions` (a usage error when the selection says nothing
    or mixes ways of selecting). The command adds its `ttl` and `on_progress`."""

    @functools.wraps(command)
    def with_options(
        *,
        ids: tuple[int, ...],
        names: tuple[str, ...],
        tags: tuple[str, ...],
        count: int,
        wait: float,
        priority: int,
        owner: str | None,
        description: str | None,
        request_id: str | None,
        **rest: Any,
    ) -> None:
        options = selection(ids, names, tags, count)
        options.update(
            {
                "wait": wait,
                "priority": priority,
                "owner": owner or default_owner(),
                "description": description,
                "request_id": request_id,
            }
        )
        command(options=options, **rest)

    options = [
        click.option("--id", "ids", type=int, multiple=True, help="A resource id (repeatable)."),
        click.option("--name", "names", multiple=True, help="A resource name (repeatable)."),
        click.option(
            "--tag",
            "tags",
            multiple=True,
            help="A tag every resource must carry (repeatable); with --count.",
        ),
        click.option(
            "--count",
            type=click.IntRange(min=1),
            default=1,
            help="How many resources carrying the tags.  [default: 1]",
        ),
        click.option(
            "--wait",
            type=DURATION,
            default="0",
            help="How long to wait in the queue (0: fail at once when held).  [default: 0]",
        ),
        click.option(
            "--priority", type=int, default=0, help="Higher is served first.  [default: 0]"
        ),
        click.option("--owner", help="Who holds it.  [default: the CI job's URL, or user@host]"),
        click.option("--description", help="What it is held for."),
        click.option(
            "--request-id",
            help="Your id for this request (e.g. $CI_JOB_ID): asking again with it gets the"
            " same lease, never a second one.  [default: a new uuid]",
        ),
    ]
    decorated: Callable[..., None] = with_options
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


def selection(
    ids: Sequence[int], names: Sequence[str], tags: Sequence[str], count: int
) -> LockOptions:
    """The lock options of `--id`/`--name`/`--tag`/`--count`; a usage error when mixed."""
    if not (ids or names or tags):
        # The API would lock any resource at all: in a CI line that is a mistake.
        raise click.UsageError("say what to lock: --id, --name or --tag")
    if ids and names:
        raise click.UsageError("give --id or --name, not both")
    if (ids or names) and (tags or count != 1):
        raise click.UsageError("--tag and --count choose among all resources: not with --id/--name")
    return {"ids": list(ids), "names": list(names), "tags": list(tags), "count": count}


def describe_selection(options: LockOptions) -> str:
    """What is asked for, in words, for messages."""
    if options.get("ids"):
        return "ids " + ", ".join(str(i) for i in options.get("ids", ()))
    if options.get("names"):
        return ", ".join(options.get("names", ()))
    what = "tags " + ", ".join(options.get("tags", ()))
    count = options.get("count", 1)
    return f"{count} x {what}" if count != 1 else what


def connect(url: str, api_key: str | None, retry_for: float) -> Client:
    """A client of the server the options name."""
    return Client(url, api_key, retry_for=retry_for)


def default_owner(environ: Mapping[str, str] = os.environ) -> str:
    """Who is asking: the CI job's URL when one is known, else user@host."""
    github = [environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
    for url in (environ.get("CI_JOB_URL"), environ.get("BUILD_URL")):
        if url:
            return url[:500]
    if all(github):
        return f"{github[0]}/{github[1]}/actions/runs/{github[2]}"[:500]
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no user name in a bare container
        user = "unknown"
    return f"{user}@{socket.gethostname()}"[:500]


def exit_code(error: RentabotClientError) -> int:
    """The documented exit code of a client error."""
    if isinstance(error, LeaseLostError | LeaseEndedError):
        return EXIT_LEASE_LOST
    if isinstance(error, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(error, BusyError):
        return EXIT_NOT_GRANTED
    if isinstance(error, ServerUnreachableError | UnavailableError):
        return EXIT_UNREACHABLE
    return EXIT_REFUSED


def fail(message: str, status: int) -> NoReturn:
    """Print `rentabot: error: …` on stderr and exit with `status`."""
    click.echo(f"rentabot: error: {message}", err=True)
    sys.exit(status)


def explain(error: RentabotClientError) -> str:
    """The message for a client error, with a hint where one helps."""
    if isinstance(error, ServerUnreachableError):
        return f"{error.message}; check --url or RENTABOT_URL"
    if isinstance(error, BusyError) and error.code == "busy":
        return f"{error.message} (use --wait to wait in the queue)"
    return error.message


@contextlib.contextmanager
def reporting_errors() -> Iterator[None]:
    """Turn a client error into its message on stderr and its exit code."""
    try:
        yield
    except RentabotClientError as error:
        fail(explain(error), exit_code(error))


class QueueProgress:
    """The progress line while waiting: rewritten in place on a terminal, one line per
    change of position otherwise (CI logs)."""

    def __init__(self, what: str, stream: IO[str] | None = None) -> None:
        self.what = what
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.shown = False

    def __call__(self, position: int) -> None:
        """Show the new position."""
        text = f"rentabot: waiting in the queue for {self.what}: position {position}"
        self.stream.write(f"\r{text}\033[K" if self.tty else f"{text}\n")
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        """End the line on a terminal."""
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()
