"""Leases and the wait queue: acquire (now, or by waiting your turn), renew, release, expire.

Every change is one operation in the database's group commit (see storage/database.py). The
conditional updates in the store decide every claim, and every operation that may free or
request resources serves the queue before it commits (service/queue.py), so freed resources
go to the oldest matching waiter at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar

from rentabot.domain.allocation import TtlError, is_expired, lease_expiry, positions
from rentabot.domain.errors import (
    BusyError,
    InvalidRequestError,
    LeaseEndedError,
    LeaseNotFoundError,
    NotFoundError,
    NotGrantedError,
    NotHolderError,
)
from rentabot.domain.model import Lease, Resource, Selector, Ticket, Want, is_plausible_text
from rentabot.service.queue import (
    NEWCOMER,
    QUEUE_SCAN,
    Need,
    Wakeups,
    plan,
    ticket_waiter,
)
from rentabot.storage.database import Database
from rentabot.storage.store import Store

T = TypeVar("T")
Clock = Callable[[], float]
#: Answers whether the client is still connected (the HTTP layer's disconnect check).
StillThere = Callable[[], Awaitable[bool]]

#: Leases the expiry sweep ends per group commit (the sweep repeats while batches are full).
SWEEP_BATCH = 1000


def new_token() -> str:
    """A fresh secret lock token (the original's format: a random UUID4 string)."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    """The operator's rules for lease times and waiting."""

    default_ttl: float | None = None
    max_ttl: float | None = None
    #: A waiting client that has not polled for this long leaves the queue.
    keepalive: float = 10.0
    #: Longest single wait in one call: a long-poll answers by then, and the client re-polls.
    long_poll: float = 60.0

    def expiry(self, now: float, ttl: float | None) -> float | None:
        """The deadline of a lease granted or renewed now. Raises InvalidRequestError."""
        try:
            return lease_expiry(now, ttl, default_ttl=self.default_ttl, max_ttl=self.max_ttl)
        except TtlError as error:
            raise InvalidRequestError(str(error)) from None

    def lease_ttl(self, ttl: float | None) -> float | None:
        """The TTL a lease records (what a renewal without one extends by)."""
        return ttl if ttl is not None else self.default_ttl

    def queued_expiry(self, now: float, ttl: float | None) -> float | None:
        """The deadline of a queued request granted now. Its TTL was checked when it queued;
        if the operator has lowered the maximum since, the default applies instead."""
        try:
            return self.expiry(now, ttl)
        except InvalidRequestError:
            return self.expiry(now, None)


@dataclass(frozen=True, slots=True)
class Queued:
    """A request waiting its turn: the ticket (with the token to poll with) and its place."""

    ticket: Ticket
    position: int | None


@dataclass(frozen=True, slots=True)
class Request:
    """A lock request as the service receives it, its need still to be resolved."""

    ttl: float | None = None
    wait: float = 0.0
    priority: int = 0
    owner: str | None = None
    description: str | None = None
    request_id: str | None = None


Resolver = Callable[[Store], tuple[Need, Selector | Want]]


def grant(
    store: Store,
    resource_ids: Sequence[int],
    selector: Selector | Want,
    *,
    now: float,
    token: str,
    expires_at: float | None,
    ttl: float | None,
    owner: str | None,
    description: str | None,
    request_id: str | None = None,
) -> tuple[int, list[Resource]]:
    """Give these resources to a new lease, all of them or none (BusyError / NotFoundError).

    Each claim is a conditional update; a failed one raises, and the caller's savepoint
    undoes the claims made before it.
    """
    lease_id = store.insert_lease(
        token,
        now,
        owner=owner,
        description=description,
        expires_at=expires_at,
        ttl=ttl,
        request_id=request_id,
    )
    claimed: list[Resource] = []
    for resource_id in resource_ids:
        resource = claim(store, resource_id, lease_id, now, token, owner, expires_at)
        if resource is None:
            if store.resource(resource_id) is None:
                raise NotFoundError(selector)
            raise BusyError(selector)
        claimed.append(resource)
    return lease_id, claimed


def claim(
    store: Store,
    resource_id: int,
    lease_id: int,
    now: float,
    token: str,
    owner: str | None,
    expires_at: float | None,
) -> Resource | None:
    """Claim one resource for a lease and record the grant; None when it is not free."""
    resource = store.claim(resource_id, lease_id, now, token)
    if resource is not None:
        store.add_event(
            now,
            "granted",
            resource_id=resource_id,
            lease_id=lease_id,
            actor=owner,
            detail={"fence": resource.fence, "expires_at": expires_at},
        )
    return resource


def _lease(row: Lease, resources: Sequence[Resource]) -> Lease:
    """The lease with what it holds."""
    return replace(row, resources=tuple(resources))


def want_resolver(want: Want) -> Resolver:
    """Resolve a v2 selection: names to ids, and check that enough resources exist."""

    def resolve(store: Store) -> tuple[Need, Selector | Want]:
        if want.names:
            if not all(is_plausible_text(name) for name in want.names):
                raise NotFoundError(want, "No resource has that name")
            found = store.resource_ids_by_name(want.names)
            missing = [name for name in want.names if name not in found]
            if missing:
                raise NotFoundError(want, f"No resource named {', '.join(missing)}")
            ids = tuple(sorted(set(found.values())))
            return Need(ids, (), len(ids)), want
        if want.resource_ids:
            # Existence is checked only if they cannot be granted (see _acquire).
            ids = tuple(sorted(set(want.resource_ids)))
            return Need(ids, (), len(ids)), want
        if not all(is_plausible_text(tag) for tag in want.tags):
            raise NotFoundError(want, "No resource carries those tags")
        # Whether enough exist is checked only if they cannot be granted (see _acquire).
        return Need(None, tuple(sorted(set(want.tags))), want.count), want

    return resolve


class LeaseService:
    """Acquire, wait for, renew, release and expire leases."""

    def __init__(
        self,
        database: Database,
        *,
        policy: LeasePolicy | None = None,
        clock: Clock = time.time,
        token_factory: Callable[[], str] = new_token,
    ) -> None:
        self._database = database
        self.policy = policy or LeasePolicy()
        self._clock = clock
        self._new_token = token_factory
        self.wakeups = Wakeups()

    # ------------------------------------------------------------------ public use cases

    def now(self) -> float:
        """The service's clock (injected in tests)."""
        return self._clock()

    async def acquire(
        self,
        want: Want,
        request: Request,
        still_there: StillThere | None = None,
    ) -> Lease | Queued:
        """Lease what `want` asks for, all or nothing, waiting up to `request.wait` seconds
        (at most `policy.long_poll` in this call: then the ticket comes back to poll with).

        Raises NotFoundError (nothing, or not enough, matches), BusyError (held, and no wait
        asked), NotGrantedError (the wait ran out), InvalidRequestError (a refused TTL). With
        a `request_id` an earlier call used, answers what that call got instead.
        """
        return await self.acquire_resolved(want_resolver(want), request, still_there)

    async def acquire_resolved(
        self, resolve: Resolver, request: Request, still_there: StillThere | None = None
    ) -> Lease | Queued:
        """`acquire` with a resolver of the caller's (the v1 API resolves its own way)."""
        started = time.monotonic()
        outcome, woken = await self._database.write(partial(self._acquire, resolve, request))
        self.wakeups.wake(woken)
        if isinstance(outcome, Queued) and outcome.ticket.state == "waiting":
            remaining = request.wait - (time.monotonic() - started)
            return await self.wait(outcome.ticket.id, outcome.ticket.token, remaining, still_there)
        return outcome

    async def wait(
        self,
        ticket_id: int,
        token: str,
        wait: float,
        still_there: StillThere | None = None,
    ) -> Lease | Queued:
        """Poll a ticket: the lease once granted, else the ticket after up to `wait` seconds
        (at most `policy.long_poll`). Raises NotGrantedError once it has left the queue
        without one.
        """
        wait = max(0.0, min(wait, self.policy.long_poll))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        event = self.wakeups.watch(ticket_id)
        try:
            await self._database.write(partial(self._touch, ticket_id, token, self._clock() + wait))
            while True:
                event.clear()
                outcome = await self._status(ticket_id, token)
                if not isinstance(outcome, Queued):
                    return outcome
                # Never wait past the ticket's own deadline.
                left = outcome.ticket.wait_until - self._clock()
                remaining = min(deadline - loop.time(), left)
                if left <= 0:
                    return await self._time_out(outcome)
                if remaining <= 0:
                    return outcome
                if still_there is not None and not await still_there():
                    # The client hung up: its keep-alive starts now.
                    await self._database.write(
                        partial(self._touch, ticket_id, token, self._clock())
                    )
                    return outcome
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        event.wait(), min(remaining, self._database.recheck_interval)
                    )
        finally:
            self.wakeups.forget(ticket_id, event)

    async def _time_out(self, queued: Queued) -> Lease | Queued:
        """End a ticket whose wait ran out (the sweep would, a moment later) and say so with
        NotGrantedError; unless it was granted in the meantime."""
        ticket = queued.ticket
        timed_out, woken = await self._database.write(partial(self._end_waiting, ticket.id))
        self.wakeups.wake(woken)
        if timed_out:
            raise NotGrantedError(ticket.want, "timed_out", queued.position)
        return await self._status(ticket.id, ticket.token)

    async def cancel(self, ticket_id: int, token: str) -> Ticket:
        """Leave the queue. What the ticket reserved goes to the next in line."""
        ticket, woken = await self._database.write(partial(self._cancel, ticket_id, token))
        self.wakeups.wake(woken)
        return ticket

    async def queue(self) -> list[tuple[Ticket, int]]:
        """The waiting tickets with their places, in queue order."""
        tickets = await self._database.read(lambda store: store.waiting_tickets(QUEUE_SCAN))
        places = positions(ticket_waiter(ticket) for ticket in tickets)
        return [(ticket, places[ticket.id]) for ticket in tickets]

    async def renew(self, lease_id: int, token: str, ttl: float | None = None) -> Lease:
        """Push the lease's deadline to now + ttl (default: the lease's own TTL)."""
        return await self._database.write(partial(self._renew, lease_id, token, ttl))

    async def release(self, lease_id: int, token: str) -> Lease:
        """End the lease and free everything it holds (to the queue first)."""
        lease, woken = await self._database.write(partial(self._release, lease_id, token))
        self.wakeups.wake(woken)
        return lease

    async def get(self, lease_id: int, token: str) -> Lease:
        """The lease, to its holder (NotHolderError otherwise); an ended lease holds nothing."""

        def query(store: Store) -> Lease:
            row = self._row(store, lease_id, token)
            return _lease(row, store.held_by(lease_id) if row.ended_at is None else ())

        return await self._database.read(query)

    async def sweep(self) -> int:
        """End expired leases and stale tickets, and serve the queue; returns leases ended.

        Repeats while a batch was full, so thousands of leases expiring together all end
        within about a second; each batch is its own group commit, so requests are served
        between them.
        """
        total = 0
        while True:
            ended, woken = await self._database.write(self._sweep)
            self.wakeups.wake(woken)
            total += ended
            if ended < SWEEP_BATCH:
                return total

    async def serve_queue(self, change: Callable[[Store], T]) -> T:
        """Run a change (an unlock, a force-release…) and serve the queue in its transaction;
        returns what the change returned."""

        def operation(store: Store) -> tuple[T, list[int]]:
            return change(store), self.serve(store, self._clock())

        result, woken = await self._database.write(operation)
        self.wakeups.wake(woken)
        return result

    # ------------------------------------------------------------------ operations

    def serve(self, store: Store, now: float) -> list[int]:
        """Grant waiting tickets what is free now, in fair order; returns their ids."""
        tickets = store.waiting_tickets(QUEUE_SCAN)
        if not tickets:
            return []
        chosen = plan(store, tickets)
        for ticket in tickets:
            if ticket.id in chosen:
                self._grant_ticket(store, ticket, chosen[ticket.id], now)
        return sorted(chosen)

    def _grant_ticket(
        self, store: Store, ticket: Ticket, resource_ids: Sequence[int], now: float
    ) -> int:
        lease_id, _ = grant(
            store,
            resource_ids,
            ticket.want,
            now=now,
            token=ticket.token,
            expires_at=self.policy.queued_expiry(now, ticket.ttl),
            ttl=self.policy.lease_ttl(ticket.ttl),
            owner=ticket.owner,
            description=ticket.description,
            request_id=ticket.request_id,
        )
        store.end_ticket(ticket.id, now, "granted", lease_id)
        store.announce_granted(ticket.id)
        return lease_id

    def _acquire(
        self, resolve: Resolver, request: Request, store: Store
    ) -> tuple[Lease | Queued, list[int]]:
        if request.request_id is not None:
            earlier = self._earlier(store, request.request_id)
            if earlier is not None:
                return earlier, []
        now = self._clock()
        expires_at = self.policy.expiry(now, request.ttl)
        need, selector = resolve(store)
        tickets = store.waiting_tickets(QUEUE_SCAN)
        if tickets:
            chosen = plan(store, tickets, need.waiter(NEWCOMER, request.priority, now))
        elif need.resource_ids is not None and len(need.resource_ids) == 1:
            # The original's lock of one resource, nobody waiting: the claim itself decides.
            lease = self._claim_one(store, need.resource_ids[0], request, now, expires_at)
            if lease is not None:
                return lease, []
            chosen = {}
        else:
            mine = self._free_now(store, need)
            chosen = {NEWCOMER: mine} if mine is not None else {}
        woken = [ticket.id for ticket in tickets if ticket.id in chosen]
        for ticket in tickets:
            if ticket.id in chosen:
                self._grant_ticket(store, ticket, chosen[ticket.id], now)
        token = self._new_token()
        if NEWCOMER in chosen:
            lease_id, resources = grant(
                store,
                chosen[NEWCOMER],
                selector,
                now=now,
                token=token,
                expires_at=expires_at,
                ttl=self.policy.lease_ttl(request.ttl),
                owner=request.owner,
                description=request.description,
                request_id=request.request_id,
            )
            return self._new_lease(lease_id, token, request, now, expires_at, resources), woken
        self._check_exists(store, need, selector)
        if request.wait <= 0:
            raise BusyError(selector)
        ticket = Ticket(
            id=0,
            token=token,
            request_id=request.request_id,
            owner=request.owner,
            description=request.description,
            priority=request.priority,
            count=need.count,
            resource_ids=need.resource_ids,
            tags=need.tags,
            ttl=request.ttl,
            created_at=now,
            wait_until=now + request.wait,
            last_seen_at=now + min(request.wait, self.policy.long_poll),
            state="waiting",
            ended_at=None,
            lease_id=None,
        )
        ticket = replace(ticket, id=store.insert_ticket(ticket))
        places = positions([*(ticket_waiter(t) for t in tickets), ticket_waiter(ticket)])
        return Queued(ticket, places[ticket.id]), woken

    def _claim_one(
        self,
        store: Store,
        resource_id: int,
        request: Request,
        now: float,
        expires_at: float | None,
    ) -> Lease | None:
        """Lease one resource if it is free (one conditional update); None when it is not,
        leaving nothing behind."""
        token = self._new_token()
        lease_id = store.insert_lease(
            token,
            now,
            owner=request.owner,
            description=request.description,
            expires_at=expires_at,
            ttl=self.policy.lease_ttl(request.ttl),
            request_id=request.request_id,
        )
        resource = claim(store, resource_id, lease_id, now, token, request.owner, expires_at)
        if resource is None:
            store.delete_empty_lease(lease_id)
            return None
        return self._new_lease(lease_id, token, request, now, expires_at, (resource,))

    def _new_lease(
        self,
        lease_id: int,
        token: str,
        request: Request,
        now: float,
        expires_at: float | None,
        resources: Sequence[Resource],
    ) -> Lease:
        return Lease(
            id=lease_id,
            token=token,
            owner=request.owner,
            description=request.description,
            acquired_at=now,
            expires_at=expires_at,
            ttl=self.policy.lease_ttl(request.ttl),
            ended_at=None,
            end_reason=None,
            resources=tuple(resources),
        )

    @staticmethod
    def _check_exists(store: Store, need: Need, selector: Selector | Want) -> None:
        """What cannot be granted now must at least exist, or it could never be: explicit
        resources, or enough resources with the tags (NotFoundError otherwise).

        Checked only on this path, so a lock that succeeds pays no extra query."""
        v1 = isinstance(selector, Selector)
        if need.resource_ids is None:
            existing = store.count_visible_with_tags(need.tags, need.count)
            if existing >= need.count:
                return
            if v1:
                raise NotFoundError(selector, "No resource found matching the tag(s)")
            raise NotFoundError(
                selector,
                f"Only {existing} resource(s) carry the tags {list(need.tags)},"
                f" {need.count} asked for",
            )
        for resource_id in need.resource_ids:
            if store.resource(resource_id) is None:
                if v1:
                    raise NotFoundError(selector)
                raise NotFoundError(selector, f"No resource with id {resource_id}")

    @staticmethod
    def _free_now(store: Store, need: Need) -> tuple[int, ...] | None:
        """With nobody waiting: the resources to grant now, or None when not all are free."""
        if need.resource_ids is not None:
            free = store.claimable(need.resource_ids)
            return tuple(free) if len(free) == len(need.resource_ids) else None
        candidates = store.claimable_with_tags(need.tags, need.count)
        return tuple(candidates) if len(candidates) == need.count else None

    def _earlier(self, store: Store, request_id: str) -> Lease | Queued | None:
        """What an earlier call with this client request id got (None: there was none)."""
        ticket = store.ticket_by_request_id(request_id)
        if ticket is not None:
            return self._ticket_outcome(store, ticket)
        row = store.lease_by_request_id(request_id)
        if row is None:
            return None
        return _lease(row, store.held_by(row.id) if row.ended_at is None else ())

    def _ticket_outcome(self, store: Store, ticket: Ticket) -> Lease | Queued:
        if ticket.state == "granted" and ticket.lease_id is not None:
            row = store.lease(ticket.lease_id)
            assert row is not None
            return _lease(row, store.held_by(row.id) if row.ended_at is None else ())
        if ticket.state == "waiting":
            tickets = store.waiting_tickets(QUEUE_SCAN)
            places = positions(ticket_waiter(t) for t in tickets)
            return Queued(ticket, places.get(ticket.id))
        raise NotGrantedError(ticket.want, ticket.state)

    def _ticket(self, store: Store, ticket_id: int, token: str) -> Ticket:
        ticket = store.ticket(ticket_id)
        if ticket is None:
            raise NotFoundError(None, f"No ticket {ticket_id}")
        if not hmac.compare_digest(ticket.token.encode(), token.encode()):
            raise NotHolderError(None, token, f"That token is not ticket {ticket_id}'s")
        return ticket

    async def _status(self, ticket_id: int, token: str) -> Lease | Queued:
        return await self._database.read(
            lambda store: self._ticket_outcome(store, self._ticket(store, ticket_id, token))
        )

    def _touch(self, ticket_id: int, token: str, seen_until: float, store: Store) -> None:
        self._ticket(store, ticket_id, token)
        store.touch_ticket(ticket_id, seen_until)

    def _end_waiting(self, ticket_id: int, store: Store) -> tuple[bool, list[int]]:
        now = self._clock()
        if not store.end_ticket(ticket_id, now, "timed_out"):
            return False, []
        store.add_event(now, "ticket_timed_out", detail={"ticket": ticket_id})
        return True, self.serve(store, now)

    def _cancel(self, ticket_id: int, token: str, store: Store) -> tuple[Ticket, list[int]]:
        ticket = self._ticket(store, ticket_id, token)
        now = self._clock()
        if not store.end_ticket(ticket_id, now, "cancelled"):
            return ticket, []
        return replace(ticket, state="cancelled", ended_at=now), self.serve(store, now)

    def _row(self, store: Store, lease_id: int, token: str) -> Lease:
        """The lease if `token` is its token; raises LeaseNotFoundError / NotHolderError."""
        row = store.lease(lease_id)
        if row is None:
            raise LeaseNotFoundError(lease_id)
        if not hmac.compare_digest(row.token.encode(), token.encode()):
            raise NotHolderError(None, token, f"That token does not hold lease {lease_id}")
        return row

    def _active_row(self, store: Store, lease_id: int, token: str, now: float) -> Lease:
        row = self._row(store, lease_id, token)
        if row.end_reason is not None:
            raise LeaseEndedError(lease_id, row.end_reason)
        if is_expired(row.expires_at, now):
            raise LeaseEndedError(lease_id, "expired")
        return row

    def _renew(self, lease_id: int, token: str, ttl: float | None, store: Store) -> Lease:
        now = self._clock()
        row = self._active_row(store, lease_id, token, now)
        expires_at = self.policy.expiry(now, ttl if ttl is not None else row.ttl)
        if not store.extend(lease_id, now, expires_at):
            raise LeaseEndedError(lease_id, "expired")
        store.add_event(
            now, "renewed", lease_id=lease_id, actor=row.owner, detail={"expires_at": expires_at}
        )
        return _lease(replace(row, expires_at=expires_at), store.held_by(lease_id))

    def _release(self, lease_id: int, token: str, store: Store) -> tuple[Lease, list[int]]:
        now = self._clock()
        row = self._active_row(store, lease_id, token, now)
        for resource_id in store.end_lease(lease_id, now, "released"):
            store.add_event(now, "released", resource_id=resource_id, lease_id=lease_id)
        ended = _lease(replace(row, ended_at=now, end_reason="released"), ())
        return ended, self.serve(store, now)

    def _sweep(self, store: Store) -> tuple[int, list[int]]:
        now = self._clock()
        freed = store.expire_due(now, SWEEP_BATCH)
        store.add_lease_events(
            (now, "expired", resource_id, lease_id) for lease_id, resource_id in freed
        )
        ended = len({lease_id for lease_id, _ in freed})
        left = []
        for ticket_id, reason in store.stale_tickets(now, self.policy.keepalive):
            if store.end_ticket(ticket_id, now, reason):
                store.add_event(now, f"ticket_{reason}", detail={"ticket": ticket_id})
                left.append(ticket_id)
        return ended, left + self.serve(store, now)
