"""`rentabot run`: lock, run a command with the lease in its environment, always release."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import click

from rentabot.cli.client_options import (
    DURATION,
    EXIT_LEASE_LOST,
    QueueProgress,
    client_options,
    connect,
    describe_selection,
    exit_code,
    explain,
    fail,
    lock_request,
    reporting_errors,
)
from rentabot.cli.environment import child_environment
from rentabot.client import (
    Client,
    HeldLease,
    Lease,
    LeaseLostError,
    LockOptions,
    RentabotClientError,
    format_duration,
)

#: The signals `run` passes on to its command.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

RUN_EXIT_CODES = """\b
Exit codes:
  the command's own status when it ran (128+N when killed by signal N)
  2    usage error
  120  the lease was lost (expired, or revoked by an operator): the command
       was stopped (SIGTERM, then SIGKILL after --kill-after)
  121  no such resource (or not enough of them)
  122  timed out waiting in the queue (or busy, without --wait)
  123  the server cannot be reached (after --retry-for)
  124  the server refused the request for another reason (e.g. a TTL above
       its maximum)
  126  the command cannot be executed; 127 the command is not found"""


class _InterruptedError(BaseException):
    """A signal arrived before the command started: stop waiting, leave nothing behind.
    A BaseException, like KeyboardInterrupt, so nothing on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@click.command(
    context_settings={"allow_interspersed_args": False},
    epilog=RUN_EXIT_CODES,
)
@lock_request
@click.option(
    "--ttl",
    type=DURATION,
    default="5m",
    help="Lease time, renewed every third of it: a job killed with SIGKILL frees the"
    " resource within this.  [default: 5m]",
)
@click.option(
    "--kill-after",
    type=DURATION,
    default="10s",
    help="When the lease is lost, how long after SIGTERM the command gets SIGKILL.  [default: 10s]",
)
@client_options
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(
    options: LockOptions,
    ttl: float,
    kill_after: float,
    url: str,
    api_key: str | None,
    retry_for: float,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND while holding a lease; always release it.

    \b
        rentabot run --tag nrf52 --ttl 10m --wait 30m -- ./test.sh args

    Locks what --id, --name or --tag/--count select (waiting in the queue up to --wait,
    showing the position), then runs COMMAND with the lease in its environment:
    RENTABOT_TOKEN, RENTABOT_LEASE_ID, RENTABOT_URL, RENTABOT_COUNT, and for the first
    resource RENTABOT_RESOURCE (its name), RENTABOT_FENCE, RENTABOT_ENDPOINT and
    RENTABOT_PROPERTY_<KEY>; for every resource N the same with _N (RENTABOT_RESOURCE_0,
    RENTABOT_PROPERTY_0_<KEY>, ...).

    The lease is renewed in the background every third of --ttl. SIGINT, SIGTERM and
    SIGHUP are passed on to COMMAND. If the lease is lost, COMMAND is stopped. When
    COMMAND ends, the lease is released, and rentabot exits with COMMAND's status.
    """
    if ttl <= 0:
        raise click.BadParameter("must be more than 0", param_hint="--ttl")
    progress = QueueProgress(describe_selection(options))
    options.update({"ttl": ttl, "on_progress": progress})
    # The command's name, not its arguments: they may hold secrets, and anyone can read a
    # lease's description in the queue and the audit trail.
    options["description"] = options.get("description") or f"rentabot run {Path(command[0]).name}"
    with connect(url, api_key, retry_for) as client:
        job = _Job(client, list(command), kill_after, url)
        job.catch_signals()
        try:
            with reporting_errors():
                try:
                    lease = client.lock(**options)
                finally:
                    progress.done()
        except _InterruptedError as interrupted:
            job.finished = True
            sys.exit(128 + interrupted.signum)
        sys.exit(job.hold(lease, ttl))


class _Job:
    """The command, and the lease it runs under."""

    def __init__(self, client: Client, command: list[str], kill_after: float, url: str) -> None:
        self.client = client
        self.command = command
        self.kill_after = kill_after
        self.url = url
        self.child: subprocess.Popen[bytes] | None = None
        #: Set while the command is being started: a signal then waits for it to exist.
        self.starting = False
        self.pending: int | None = None
        #: Set once the command has ended: signals are then ignored while releasing.
        self.finished = False
        self.lost: LeaseLostError | None = None
        self.lost_reported = False

    def catch_signals(self) -> None:
        """From now on SIGINT/SIGTERM/SIGHUP stop the wait, or go to the command."""
        for signum in FORWARDED:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.finished:
            return  # releasing: let it finish, it is quick
        if self.starting:
            self.pending = signum
            return
        if self.child is None:
            raise _InterruptedError(signum)
        if signum == signal.SIGINT and _terminal_sent_it():
            return  # Ctrl-C in a terminal reached the command already
        _signal(self.child.pid, signum)

    def hold(self, lease: Lease, ttl: float) -> int:
        """Run the command under the lease, then release it; the exit status."""
        names = ", ".join(f"{r.name} (fence {r.fence})" for r in lease.resources)
        click.echo(
            f"rentabot: lease {lease.id} holds {names} for {format_duration(ttl)},"
            f" renewed every {format_duration(ttl / 3)}",
            err=True,
        )
        held = self.client.keep(lease, every=ttl / 3, on_lost=self._on_lost)
        try:
            status = self._run(lease)
        except _InterruptedError as interrupted:  # a signal before the command started
            status = 128 + interrupted.signum
        finally:
            self.finished = True
            held.stop()
        return self._release(held, status)

    def _on_lost(self, error: LeaseLostError) -> None:
        self.lost = error

    def _run(self, lease: Lease) -> int:
        if self.lost is not None:
            return EXIT_LEASE_LOST
        environment = child_environment(os.environ, lease, self.url)
        self.starting = True
        try:
            self.child = subprocess.Popen(self.command, env=environment)
        except OSError as error:
            click.echo(f"rentabot: error: cannot run {self.command[0]}: {error.strerror}", err=True)
            return 127 if isinstance(error, FileNotFoundError) else 126
        finally:
            self.starting = False
        if self.pending is not None:
            _signal(self.child.pid, self.pending)
        return self._wait(self.child)

    def _wait(self, child: subprocess.Popen[bytes]) -> int:
        """Wait for the command; stop it, and everything it started, if the lease is lost."""
        stopping: Processes = {}  # the processes sent SIGTERM
        stopped_at = 0.0
        while True:
            try:
                status = child.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
            else:
                if stopping:
                    # Whatever survived its parent is an orphan now, still on the resource.
                    stopping.pop(child.pid, None)
                    _signal_all(stopping, signal.SIGKILL)
                return status if status >= 0 else 128 - status
            if self.lost is not None and not stopping:
                click.echo(f"rentabot: error: {self.lost.message}; stopping the command", err=True)
                self.lost_reported = True
                stopping = {child.pid: None, **_descendants(child.pid)}
                _signal_all(stopping, signal.SIGTERM)
                stopped_at = time.monotonic()
            elif stopping and time.monotonic() - stopped_at > self.kill_after:
                # Those started meanwhile too; those whose parent died are remembered.
                stopping.update(_descendants(child.pid))
                _signal_all(stopping, signal.SIGKILL)
                stopped_at = float("inf")  # once

    def _release(self, held: HeldLease, status: int) -> int:
        if self.lost is not None:
            if not self.lost_reported:
                click.echo(f"rentabot: error: {self.lost.message}", err=True)
            return EXIT_LEASE_LOST
        try:
            self.client.release(held.lease)
        except RentabotClientError as error:
            code = exit_code(error)
            if code == EXIT_LEASE_LOST:
                # It ended while the command ran, before a renewal noticed.
                fail(f"lease {held.id} had ended before its release: {error.message}", code)
            click.echo(
                f"rentabot: warning: could not release lease {held.id} ({explain(error)}):"
                " it expires by itself",
                err=True,
            )
        else:
            click.echo(f"rentabot: released lease {held.id}", err=True)
        return status


def _terminal_sent_it() -> bool:
    """Whether we are in the terminal's foreground group: then the terminal sent Ctrl-C to
    the command too, and passing it on would deliver it twice."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError):
        return False


def _signal(pid: int, signum: int) -> None:
    """Pass a signal on to the command (not reaped yet, so its pid is still its own)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


#: Processes by pid, with their start time (None: our own child, whose pid cannot be reused
#: before we reap it).
Processes = dict[int, str | None]


def _signal_all(processes: Processes, signum: int) -> None:
    """Signal each process that is still the one found: a pid whose start time changed
    belongs to another process now, and is left alone."""
    for pid, started in processes.items():
        if started is not None and _stat(pid)[1] != started:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _stat(pid: int) -> tuple[int | None, str | None]:
    """A process's parent pid and start time, from /proc (None, None: gone, or no /proc)."""
    try:
        # The fields after the command name (in parentheses, and it may contain any)
        # are: state, parent pid, ..., start time (the 20th).
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[1]), fields[19]
    except (OSError, IndexError, ValueError):
        return None, None


def _descendants(pid: int) -> Processes:
    """The processes below `pid` with their start times, from /proc (none without /proc)."""
    children: dict[int, list[tuple[int, str | None]]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        parent, started = _stat(int(entry.name))
        if parent is not None:
            children.setdefault(parent, []).append((int(entry.name), started))
    found: Processes = {}
    todo = [pid]
    while todo:
        for child, started in children.get(todo.pop(), []):
            found[child] = started
            todo.append(child)
    return found
