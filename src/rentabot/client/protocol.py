"""The client's logic, without I/O: which requests to send, how to read the answers, and the
flows of several calls (retrying, waiting in the queue, keeping a lease) as generators.

A flow yields a `Call` (send this) or a `Pause` (sleep this long) and is sent back the
`Reply`, the transport exception, or None. The sync client (`sync.py`) and the async one
(`aio.py`) only drive flows, so the two cannot disagree about what a retry or a wait means.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypedDict, TypeVar

from pydantic import BaseModel, ValidationError

from rentabot.client.errors import (
    InvalidRequestError,
    LeaseEndedError,
    LeaseLostError,
    NotGrantedError,
    RentabotClientError,
    RequestIdReusedError,
    ServerError,
    ServerUnreachableError,
    UnavailableError,
    error_from_answer,
)
from rentabot.client.held import HeldLease
from rentabot.client.models import Identity, Lease, Resource, Ticket

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request to make."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    params: tuple[tuple[str, str], ...] = ()
    #: The lease or ticket token, sent as `Authorization: Bearer`.
    token: str | None = None
    #: Seconds the server may hold this request before answering (a long-poll): the
    #: driver waits that much longer for the answer than its usual timeout.
    hold: float = 0.0


@dataclass(frozen=True, slots=True)
class Pause:
    """Sleep this long (a driver that is being stopped raises instead)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: its status, its JSON body (None if it had none), its text."""

    status: int
    body: object
    text: str


Step = Call | Pause
#: What a driver sends back into a flow: the Reply to a Call, the transport error it
#: raised (an exception object, not raised), or None after a Pause.
Outcome = Reply | Exception | None
Flow = Generator[Step, Outcome, T]

#: Answers worth retrying: a proxy that lost the server, or a server whose database is down.
RETRIED_STATUSES = frozenset({502, 503, 504})
#: Longest a server holds a waiting request (RENTABOT_LONG_POLL_SECONDS is at most 600).
MAX_LONG_POLL_S = 600.0
#: Seconds a ticket poll asks the server to hold it (a poll in progress counts as polling,
#: so the server's keep-alive does not matter); short enough to notice a dead link.
TICKET_POLL_S = 30.0
#: How long past its deadline a ticket may still be answered "waiting" before the client
#: gives up on its own (the server normally answers 409 right at the deadline).
DEADLINE_GRACE_S = 10.0
#: Pause between renewal attempts while the server cannot be reached.
RENEW_RETRY_S = 1.0
#: Seconds between checks of a lease that has no TTL (nothing to renew, but it can be revoked).
CHECK_EVERY_S = 30.0
#: Lease time of `lease()` when none is given: a job that dies frees its resources within
#: 5 minutes.
DEFAULT_LEASE_TTL = 300.0
#: A kept lease is renewed every TTL times this.
RENEW_FRACTION = 1 / 3
#: Events are read from the newest backwards in windows this large, then 8 times larger.


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures are retried: with doubling pauses, within a total budget."""

    #: Total seconds one call may spend retrying (0: never retry).
    budget: float = 60.0
    first_pause: float = 0.2
    max_pause: float = 5.0


class LockOptions(TypedDict, total=False):
    """What to lock, and how. Select by `ids`, by `names`, or by `tags` with a `count`."""

    ids: Sequence[int]
    names: Sequence[str]
    tags: Sequence[str]
    count: int
    #: Lease time in seconds (None: the server's default). Renew before it runs out.
    ttl: float | None
    #: Seconds to wait in the queue (0: fail at once with BusyError if held).
    wait: float
    priority: int
    owner: str | None
    description: str | None
    #: Your id for this request (a uuid4 by default): a retry with it gets the same lease.
    request_id: str | None
    #: Called with the queue position whenever it changes while waiting.
    on_progress: Callable[[int], None] | None


def renew_interval(lease: Lease, every: float | None = None) -> float:
    """Seconds between renewals of a kept lease: `every`, else a third of its TTL."""
    if every:
        return every
    return lease.ttl * RENEW_FRACTION if lease.ttl else CHECK_EVERY_S


def lease_id_and_token(lease: Lease | int, token: str | None) -> tuple[int, str]:
    """The id and token of a Lease, or of an id given with its token."""
    if isinstance(lease, Lease):
        return lease.id, token or lease.token
    if token is None:
        raise TypeError("a lease id needs its token")
    return lease, token


def describe(outcome: Outcome) -> str:
    """What went wrong with one attempt, in words."""
    if isinstance(outcome, Reply):
        return f"HTTP {outcome.status}"
    if isinstance(outcome, Exception):
        text = str(outcome).strip()
        return f"{type(outcome).__name__}: {text}" if text else type(outcome).__name__
    return "no answer"


def expect(reply: Reply, *statuses: int) -> dict[str, Any]:
    """The JSON object of a reply with one of `statuses`; the mapped error otherwise."""
    if reply.status not in statuses:
        raise error_from_answer(reply.status, reply.body, reply.text)
    if not isinstance(reply.body, dict):
        raise ServerError(f"unexpected answer (HTTP {reply.status}): {reply.text[:200]!r}")
    return reply.body


def parse(model: type[M], value: object) -> M:
    """`value` (from an answer) as a `model`; a ServerError if it is something else."""
    try:
        return model.model_validate(value)
    except ValidationError as error:
        raise ServerError(f"unexpected answer from the server: {error}") from None


def _needs_cleanup(error: BaseException) -> bool:
    """Whether an acquire that failed with `error` may have left something on the server
    that it should undo: not when the server itself refused (nothing was left), and not
    when the server could not be reached (undoing would fail too; what it may have
    granted is for a retry with the same request id to find, or it expires)."""
    if isinstance(error, ServerUnreachableError | UnavailableError):
        return False
    return not (
        isinstance(error, RentabotClientError)
        and error.status is not None
        and not isinstance(error, ServerError)
    )


class Protocol:
    """The flows of the v2 API for one server; `url` and `retry` only shape error messages
    and retries."""

    def __init__(self, url: str, retry: RetryPolicy) -> None:
        self.url = url
        self.retry = retry

    # -- one call, retried --------------------------------------------------------------

    def exchange(self, call: Call, budget: float | None = None) -> Flow[tuple[Reply, int]]:
        """Send `call`, retrying connect errors, timeouts and 502/503/504 with doubling
        pauses for up to `budget` seconds from the first failure. Returns the reply and how
        many attempts it took.

        Every attempt sends the very same request (an acquire keeps its request id), so a
        retry after an answer lost on the way back gets what the first attempt got.
        """
        budget = self.retry.budget if budget is None else budget
        # The budget runs from the first failure: a long-poll that fails after holding
        # for a minute is retried like any other call.
        failing_since: float | None = None
        pause = self.retry.first_pause
        attempts = 0
        while True:
            attempts += 1
            outcome = yield call
            if isinstance(outcome, Reply) and outcome.status not in RETRIED_STATUSES:
                return outcome, attempts
            now = time.monotonic()
            failing_since = now if failing_since is None else failing_since
            if now + pause > failing_since + budget:
                raise self._gave_up(outcome, attempts, now - failing_since)
            yield Pause(pause)
            pause = min(pause * 2, self.retry.max_pause)

    def _gave_up(self, outcome: Outcome, attempts: int, spent: float) -> RentabotClientError:
        if isinstance(outcome, Reply) and outcome.status == 503:
            return error_from_answer(outcome.status, outcome.body, outcome.text)
        tries = f"{attempts} attempt{'s' if attempts > 1 else ''} in {spent:.1f} s"
        return ServerUnreachableError(
            f"cannot reach the rentabot server at {self.url} ({describe(outcome)}; {tries})"
        )

    def call(self, call: Call, *statuses: int, budget: float | None = None) -> Flow[dict[str, Any]]:
        """One call, retried; its JSON body if its status is one of `statuses`."""
        reply, _ = yield from self.exchange(call, budget)
        return expect(reply, *statuses)

    # -- acquiring ------------------------------------------------------------------------

    @staticmethod
    def acquire_body(options: LockOptions) -> dict[str, Any]:
        """The JSON of `POST /api/v2/leases` (with a fresh request id unless one is given)."""
        ids, names, tags = options.get("ids", ()), options.get("names", ()), options.get("tags", ())
        count = options.get("count", 1)
        if ids and names:
            raise InvalidRequestError("select by ids or by names, not both")
        if (ids or names) and (tags or count != 1):
            raise InvalidRequestError(
                "tags and a count select among all resources, not ids or names"
            )
        select: dict[str, Any] = (
            {"ids": list(ids)} if ids else {"names": list(names)} if names else {"tags": list(tags)}
        )
        if not (ids or names):
            select["count"] = count
        body: dict[str, Any] = {
            "select": select,
            "wait": options.get("wait", 0),
            "priority": options.get("priority", 0),
            "request_id": options.get("request_id") or str(uuid.uuid4()),
        }
        for key in ("ttl", "owner", "description"):
            value = options.get(key)
            if value is not None:
                body[key] = value
        return body

    def acquire(self, options: LockOptions) -> Flow[Lease]:
        """Lease what `options` selects, waiting in the queue up to `wait` seconds (polling
        the ticket, reporting its position). Interrupted on the way (or failing
        unexpectedly), it leaves nothing behind: it leaves the queue, and releases what was
        granted meanwhile. Given up because the server cannot be reached, it may have been
        granted all the same: a retry with the same request id gets that lease."""
        body = self.acquire_body(options)
        wait = float(body["wait"])
        deadline = time.monotonic() + wait
        on_progress = options.get("on_progress")
        ticket: tuple[int, str] | None = None
        try:
            request = Call("POST", "/api/v2/leases", json=body, hold=min(wait, MAX_LONG_POLL_S))
            reply, _ = yield from self.exchange(request)
            position: int | None = None
            while reply.status == 202:
                queued = expect(reply, 202)
                waiting = parse(Ticket, queued.get("ticket"))
                ticket = (waiting.id, str(queued.get("token", "")))
                if waiting.position is not None and waiting.position != position:
                    position = waiting.position
                    if on_progress is not None:
                        on_progress(position)
                left = deadline - time.monotonic()
                if left < -DEADLINE_GRACE_S:
                    # The server should have said so at the deadline; stop waiting anyway.
                    raise NotGrantedError(
                        "Not granted: the request timed out",
                        reason="timed_out",
                        position=position,
                        status=None,
                    )
                # One second past our own deadline lets the server time the ticket out and
                # answer 409 with its last position.
                hold = min(TICKET_POLL_S, max(left, 0) + 1)
                poll = Call(
                    "GET",
                    f"/api/v2/tickets/{ticket[0]}",
                    params=(("wait", f"{hold:.3f}"),),
                    token=ticket[1],
                    hold=hold,
                )
                reply, _ = yield from self.exchange(poll)
            lease = parse(Lease, expect(reply, 200, 201).get("lease"))
        except GeneratorExit:
            raise
        except BaseException as error:
            if _needs_cleanup(error):
                yield from self._abandon(body, ticket)
            raise
        if not lease.active:
            # The request id was used before, by a lease that has ended since.
            raise RequestIdReusedError(str(body["request_id"]), lease.id, lease.state)
        return lease

    def _abandon(self, body: dict[str, Any], ticket: tuple[int, str] | None) -> Flow[None]:
        """Best effort, one attempt each: leave the queue, and release whatever the request
        was granted in the meantime (its answer may never have reached us)."""
        if ticket is None:
            # Ask again with the same request id, without waiting: the server answers what
            # the first attempt got (a lease, a ticket), or nothing was left behind.
            reply = yield Call("POST", "/api/v2/leases", json={**body, "wait": 0})
            if not isinstance(reply, Reply) or reply.status not in (200, 201, 202):
                return
            if reply.status == 202:
                queued = expect(reply, 202)
                ticket = (parse(Ticket, queued.get("ticket")).id, str(queued.get("token", "")))
            else:
                lease = parse(Lease, expect(reply, 200, 201).get("lease"))
                if lease.active:
                    yield self._release_call(lease.id, lease.token)
                return
        cancelled = yield Call("DELETE", f"/api/v2/tickets/{ticket[0]}", token=ticket[1])
        if isinstance(cancelled, Reply) and cancelled.status == 200:
            left = parse(Ticket, expect(cancelled, 200).get("ticket"))
            if left.state == "granted" and left.lease_id is not None:
                yield self._release_call(left.lease_id, ticket[1])

    # -- holding ----------------------------------------------------------------------------

    @staticmethod
    def _release_call(lease_id: int, token: str) -> Call:
        return Call("DELETE", f"/api/v2/leases/{lease_id}", token=token)

    def get(self, lease_id: int, token: str, budget: float | None = None) -> Flow[Lease]:
        """The lease (an ended one says how it ended, and holds nothing)."""
        call = Call("GET", f"/api/v2/leases/{lease_id}", token=token)
        return parse(Lease, (yield from self.call(call, 200, budget=budget)).get("lease"))

    def renew(
        self, lease_id: int, token: str, ttl: float | None = None, budget: float | None = None
    ) -> Flow[Lease]:
        """Push the deadline to now + ttl (the lease's own TTL by default)."""
        call = Call(
            "POST",
            f"/api/v2/leases/{lease_id}/renew",
            json={"ttl": ttl} if ttl is not None else None,
            token=token,
        )
        return parse(Lease, (yield from self.call(call, 200, budget=budget)).get("lease"))

    def release(self, lease_id: int, token: str) -> Flow[Lease]:
        """Release the lease. A retried release answered `lease_ended` may mean that an
        earlier attempt released it and its answer was lost: if the lease now says
        `released`, that is success. If it says `expired` or `force_released`, no attempt of
        ours released it: LeaseEndedError, as for a first attempt that finds it ended."""
        reply, attempts = yield from self.exchange(self._release_call(lease_id, token))
        if reply.status == 403 and attempts > 1:
            ended = error_from_answer(reply.status, reply.body, reply.text)
            if ended.code == "lease_ended":
                lease = yield from self.get(lease_id, token)
                if lease.state == "released":
                    return lease
                raise LeaseEndedError(
                    f"Lease {lease_id} has ended ({lease.state}) before it was released",
                    status=403,
                    code="lease_ended",
                )
        return parse(Lease, expect(reply, 200).get("lease"))

    def keep(
        self,
        lease: Lease,
        every: float,
        renewed: Callable[[Lease], None],
    ) -> Flow[LeaseLostError]:
        """Renew `lease` every `every` seconds, forever; returns why it was lost.

        Transient failures (unreachable, 5xx) are retried until the lease's deadline, as
        the client measures it: the local time a successful renewal was sent, plus the TTL.
        A lease without a TTL has nothing to renew; it is looked at every `every` seconds,
        so a force-release is still noticed.
        """
        ttl = lease.ttl
        deadline = time.monotonic() + ttl if ttl is not None else None
        pause = every
        while True:
            yield Pause(pause)
            sent = time.monotonic()
            budget = self.retry.budget if deadline is None else max(0.0, deadline - sent)
            try:
                if ttl is None:
                    current = yield from self.get(lease.id, lease.token, budget)
                else:
                    current = yield from self.renew(lease.id, lease.token, budget=budget)
            except (ServerUnreachableError, ServerError) as error:
                if deadline is not None and time.monotonic() >= deadline:
                    return LeaseLostError(
                        lease.id, f"it could not be renewed before it expired ({error.message})"
                    )
                pause = min(every, RENEW_RETRY_S)
                continue
            except RentabotClientError as error:
                return LeaseLostError(lease.id, error.message)
            if not current.active:
                return LeaseLostError(lease.id, f"it has ended ({current.state})")
            if current.ttl is not None:
                deadline = sent + current.ttl
            renewed(current)
            pause = every

    def finish(self, held: HeldLease, failed: bool) -> Flow[None]:
        """Release a kept lease when its block ends (its renewals already stopped).

        After a failed block, a failure to release is ignored: the block's own error
        matters more (the lease then expires). After a normal end, a lost lease raises
        LeaseLostError, also when it is found ended only now."""
        if failed:
            with contextlib.suppress(RentabotClientError):
                yield from self.release(held.id, held.token)
            return
        held.check()
        try:
            yield from self.release(held.id, held.token)
        except LeaseEndedError as error:
            raise LeaseLostError(held.id, error.message) from error

    # -- reading ----------------------------------------------------------------------------

    def resources(self, tags: Sequence[str] = (), state: str | None = None) -> Flow[list[Resource]]:
        """Every resource carrying all `tags` (in `state`, if given), in id order."""
        found: list[Resource] = []
        while True:
            params = [("tag", tag) for tag in tags] + [("offset", str(len(found)))]
            params += [("limit", "1000")] + ([("state", state)] if state else [])
            call = Call("GET", "/api/v2/resources", params=tuple(params))
            page = yield from self.call(call, 200)
            batch = [parse(Resource, item) for item in page.get("resources", [])]
            found += batch
            if not batch or len(found) >= int(page.get("total", 0)):
                return found

    def queue(self) -> Flow[list[Ticket]]:
        """The waiting requests in the order they will be served."""
        body = yield from self.call(Call("GET", "/api/v2/queue"), 200)
        return [parse(Ticket, item) for item in body.get("tickets", [])]

    def force_release(self, resource_id: int, reason: str | None) -> Flow[int]:
        """Operator action (an admin key): end the lease holding a resource; returns that
        lease's id. The audit trail names the key."""
        call = Call(
            "POST",
            f"/api/v2/resources/{resource_id}/force-release",
            json={"reason": reason} if reason is not None else {},
        )
        return int((yield from self.call(call, 200))["lease_id"])

    def whoami(self) -> Flow[Identity]:
        """Who the server takes this client for (its key's name and role)."""
        return parse(Identity, (yield from self.call(Call("GET", "/api/v2/whoami"), 200)))


class Steps(Generic[T]):
    """Walks a flow for a driver: `step` is what to do next; `feed` it the outcome, or
    `fail` it with an exception raised while doing it (Ctrl-C, SIGTERM as SystemExit), so
    the flow can clean up (leave the queue) before the exception propagates."""

    def __init__(self, flow: Flow[T]) -> None:
        self._flow = flow
        self.done = False
        self.result: T
        self.step: Step = Pause(0)
        self._advance(lambda: next(flow))

    def feed(self, outcome: Outcome) -> None:
        """Send the outcome of `step` into the flow."""
        self._advance(lambda: self._flow.send(outcome))

    def fail(self, error: BaseException) -> None:
        """Throw an exception raised while doing `step` into the flow."""
        self._advance(lambda: self._flow.throw(error))

    def _advance(self, move: Callable[[], Step]) -> None:
        try:
            self.step = move()
        except StopIteration as finished:
            self.done, self.result = True, finished.value
