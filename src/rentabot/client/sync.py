"""The Python client: `Client(url)`, over httpx, and `with client.lease(...)` for jobs."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import TypeVar, Unpack

import httpx

from rentabot.client.held import HeldLease, OnLost
from rentabot.client.models import Identity, Lease, Resource, Ticket
from rentabot.client.protocol import (
    DEFAULT_LEASE_TTL,
    Call,
    Flow,
    LockOptions,
    Outcome,
    Protocol,
    RetryPolicy,
    Step,
    Steps,
    lease_id_and_token,
    renew_interval,
)
from rentabot.client.transport import build_request, headers, reply_of

T = TypeVar("T")

#: Seconds `stop()` waits for a renewal in flight before going on.
STOP_JOIN_S = 15.0


class _KeeperStoppedError(Exception):
    """Raised into a keeper's flow when it is told to stop."""


class Client:
    """A rentabot server, over HTTP.

    Every acquire carries a request id (a new uuid4 unless you give one), and connect
    errors, timeouts and 502/503/504 answers are retried with the same request for up to
    `retry_for` seconds: a retry never takes a second lease. Errors are the tree of
    `rentabot.client.errors`.

    `api_key` (RENTABOT_API_KEY for the `rentabot` commands) is sent as `X-API-Key`.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:5000",
        api_key: str | None = None,
        *,
        retry_for: float = 60.0,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._protocol = Protocol(self.url, RetryPolicy(budget=retry_for))
        self._http = httpx.Client(
            base_url=self.url, headers=headers(api_key), transport=transport, timeout=timeout
        )

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- driving flows --------------------------------------------------------------------

    def _run(self, flow: Flow[T], stop: threading.Event | None = None) -> T:
        steps = Steps(flow)
        while not steps.done:
            try:
                outcome = self._perform(steps.step, stop)
            except BaseException as error:
                steps.fail(error)
                continue
            steps.feed(outcome)
        return steps.result

    def _perform(self, step: Step, stop: threading.Event | None) -> Outcome:
        if isinstance(step, Call):
            try:
                return reply_of(self._http.send(build_request(self._http, step, self.timeout)))
            except httpx.TransportError as error:
                return error
        if stop is None:
            time.sleep(step.seconds)
        elif stop.wait(step.seconds):
            raise _KeeperStoppedError
        return None

    # -- the API --------------------------------------------------------------------------

    def lock(self, **options: Unpack[LockOptions]) -> Lease:
        """Lease resources: by `ids`, by `names`, or `count` of them carrying all `tags`,
        all or nothing; waiting in the queue up to `wait` seconds (reporting the position to
        `on_progress`). Give a `ttl`, and renew before it runs out (or use `lease()`).

        Raises NotFoundError (nothing, or not enough, matches), BusyError (held and no
        `wait`), NotGrantedError (the wait ran out), InvalidRequestError (e.g. a TTL above
        the server's maximum), RequestIdReusedError, ServerUnreachableError.
        """
        return self._run(self._protocol.acquire(options))

    def renew(
        self, lease: Lease | int, token: str | None = None, ttl: float | None = None
    ) -> Lease:
        """Push the lease's deadline to now + `ttl` (its own TTL by default). Raises
        LeaseEndedError once it has ended, NotHolderError for a wrong token."""
        lease_id, token = lease_id_and_token(lease, token)
        return self._run(self._protocol.renew(lease_id, token, ttl))

    def release(self, lease: Lease | int, token: str | None = None) -> Lease:
        """Release the lease and everything it holds; returns it ended. Raises
        LeaseEndedError if it had already ended (a retry of this call does not)."""
        lease_id, token = lease_id_and_token(lease, token)
        return self._run(self._protocol.release(lease_id, token))

    def get(self, lease: Lease | int, token: str | None = None) -> Lease:
        """The lease now (an ended one says how it ended, and holds nothing)."""
        lease_id, token = lease_id_and_token(lease, token)
        return self._run(self._protocol.get(lease_id, token))

    def resources(self, tags: Sequence[str] = (), state: str | None = None) -> list[Resource]:
        """Every resource carrying all `tags` (and in `state`: available, locked,
        maintenance), in id order; a locked one names its `holder` (lease, owner, expiry)."""
        return self._run(self._protocol.resources(tags, state))

    def queue(self) -> list[Ticket]:
        """The waiting requests, in the order they will be served."""
        return self._run(self._protocol.queue())

    def force_release(self, resource_id: int, *, reason: str | None = None) -> int:
        """Operator action (an admin key): end the lease holding the resource (its holder
        loses it); returns the lease id. Raises NotLockedError if the resource is free."""
        return self._run(self._protocol.force_release(resource_id, reason))

    def whoami(self) -> Identity:
        """Who the server takes this client for: its key's name and role."""
        return self._run(self._protocol.whoami())

    # -- keeping a lease ------------------------------------------------------------------

    def keep(
        self, lease: Lease, *, every: float | None = None, on_lost: OnLost | None = None
    ) -> HeldLease:
        """Renew `lease` in a background thread every `every` seconds (a third of its TTL
        by default) until `stop()`. When it is lost, `on_lost` is called (from that thread)
        and the handle's `lost` turns true. Release it yourself after `stop()`."""
        held = HeldLease(lease, on_lost)
        interval = renew_interval(lease, every)
        stop = threading.Event()

        def renew_until_stopped() -> None:
            with contextlib.suppress(_KeeperStoppedError):
                lost = self._run(self._protocol.keep(lease, interval, held._renewed), stop)
                if not stop.is_set():
                    held._mark_lost(lost)

        thread = threading.Thread(target=renew_until_stopped, name=f"rentabot-lease-{lease.id}")
        thread.daemon = True  # never keeps a dying program alive; the lease then expires

        def stopper() -> None:
            stop.set()
            if thread is not threading.current_thread():
                thread.join(STOP_JOIN_S)

        held._stopper = stopper
        thread.start()
        return held

    @contextlib.contextmanager
    def lease(
        self,
        *,
        renew_every: float | None = None,
        on_lost: OnLost | None = None,
        handle_sigterm: bool = True,
        **options: Unpack[LockOptions],
    ) -> Iterator[HeldLease]:
        """Lock, keep renewing in the background, and always release on the way out:

            with client.lease(tags=["nrf52"], ttl=600, wait=1800, owner="ci/42") as held:
                flash(held.resources[0].endpoint)

        `ttl` defaults to 300 s, renewed every third of it. The lease is released when the
        block ends, also on an exception, and on SIGTERM (turned into SystemExit(143) while
        the block runs, when called from the main thread and SIGTERM has no handler yet).
        If the lease is lost while held, `held.lost` turns true, `on_lost` is called, and
        the block's normal end raises LeaseLostError.
        """
        options.setdefault("ttl", DEFAULT_LEASE_TTL)
        with exit_on_signals((signal.SIGTERM,) if handle_sigterm else (), only_unhandled=True):
            lease = self.lock(**options)
            try:
                held = self.keep(lease, every=renew_every, on_lost=on_lost)
            except BaseException:
                self.release(lease)
                raise
            try:
                yield held
            except BaseException:
                held.stop()
                self._run(self._protocol.finish(held, failed=True))
                raise
            held.stop()
            self._run(self._protocol.finish(held, failed=False))


@contextlib.contextmanager
def exit_on_signals(
    signums: Sequence[int] = (signal.SIGTERM,), *, only_unhandled: bool = False
) -> Iterator[None]:
    """While the block runs, these signals raise SystemExit(128 + N), so `finally` blocks
    and the client's clean-up (leaving the queue, releasing) run: the default action of
    SIGTERM ends the process on the spot. Only from the main thread (elsewhere it does
    nothing); with `only_unhandled`, only signals that have no handler yet."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if only_unhandled:
        signums = [s for s in signums if signal.getsignal(s) is signal.SIG_DFL]

    def exit_on(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {signum: signal.signal(signum, exit_on) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
