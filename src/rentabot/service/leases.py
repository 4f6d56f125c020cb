"""Leases and the wait queue: acquire (now, or by waiting your turn), renew, release, expire.

Every change is one operation in the database's group commit (see storage/database.py). The
conditional updates in the store decide every claim and every end of a lease, and every
operation that may free or request resources serves the queue before it commits, so freed
resources go to the oldest matching waiter at once.

A holder acts on its lease with the lease's token, or, sending none, by being the lease's
principal (an API key's or a signed-in person's name); anonymous callers need the token.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar

from rentabot.domain.errors import (
    LeaseEndedError,
    LeaseNotFoundError,
    NotHolderError,
    RentabotError,
)
from rentabot.domain.identity import Principal, holds
from rentabot.domain.model import Lease, Selection, Ticket
from rentabot.service.acquiring import (
    Acquisition,
    LeaseTerms,
    Queued,
    Refused,
    Resolver,
    selection_resolver,
)
from rentabot.service.granting import (
    LeasePolicy,
    current,
    end_due_leases,
    serve_queue,
    with_resources,
)
from rentabot.service.queue import QUEUE_SCAN, Wakeups, places
from rentabot.service.waiting import Clock, StillThere, Waiting, own_ticket
from rentabot.storage.database import Database
from rentabot.storage.leases import HeldBy
from rentabot.storage.store import Store

T = TypeVar("T")

#: Leases the expiry sweep ends per group commit (the sweep repeats while batches are full).
SWEEP_BATCH = 1000

__all__ = ["Clock", "LeasePolicy", "LeaseService", "LeaseTerms", "Queued", "StillThere"]


def new_token() -> str:
    """A fresh secret lock token (the original's format: a random UUID4 string)."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Seen:
    """A lease as one caller sees it: `yours` when the caller holds it (its token, or its
    principal), and only then may its token be shown."""

    lease: Lease
    yours: bool


def _held_by(lease_id: int, token: str | None, principal: Principal, now: float) -> HeldBy:
    """The condition under which this caller may change the lease: its token, or (without
    one) its principal; NotHolderError when the caller offers neither."""
    if token is not None:
        return HeldBy(now, token=token)
    if principal.authenticated:
        return HeldBy(now, principal=principal.subject)
    raise NotHolderError(
        None,
        None,
        f"Send lease {lease_id}'s token in `Authorization: Bearer <token>`, or an API key"
        " of the principal that holds it",
    )


def refusal(
    store: Store, lease_id: int, token: str | None, principal: Principal, now: float
) -> RentabotError:
    """Why a change to the lease matched no row: no such lease, not the caller's, or ended
    (released, expired, force-released)."""
    row = store.lease(lease_id)
    if row is None:
        return LeaseNotFoundError(lease_id)
    if not holds(token, principal, row.token, row.principal):
        return NotHolderError(
            None,
            token,
            f"That token does not hold lease {lease_id}"
            if token is not None
            else f"Lease {lease_id} is not {principal.name}'s",
        )
    if row.end_reason is not None:
        return LeaseEndedError(lease_id, row.end_reason)
    return LeaseEndedError(lease_id, "expired")


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
        self._waiting = Waiting(database, self.policy, clock, self.wakeups)

    def now(self) -> float:
        """The service's clock (injected in tests)."""
        return self._clock()

    # ------------------------------------------------------------------ acquiring

    async def acquire(
        self,
        selection: Selection,
        terms: LeaseTerms,
        principal: Principal,
        still_there: StillThere | None = None,
    ) -> Lease | Queued:
        """Lease what `selection` asks for, all or nothing, waiting up to `terms.wait` seconds
        (at most `policy.long_poll` in this call: then the ticket comes back to poll with).

        Raises NotFoundError (nothing, or not enough, matches), BusyError (held, and no wait
        asked), NotGrantedError (the wait ran out), InvalidRequestError (a refused TTL),
        LimitError (the queue is full), RequestIdConflictError (the request id was used for
        another request). With a `request_id` this principal used before for the same
        request, answers what that call got instead.
        """
        return await self.acquire_resolved(
            selection_resolver(selection), terms, principal, selection.canonical(), still_there
        )

    async def acquire_resolved(
        self,
        resolve: Resolver,
        terms: LeaseTerms,
        principal: Principal,
        asked: str | None = None,
        still_there: StillThere | None = None,
    ) -> Lease | Queued:
        """`acquire` with a resolver of the caller's (the v1 API resolves its own way)."""
        started = time.monotonic()
        outcome = await self._decide(resolve, terms, principal, asked)
        if isinstance(outcome, Queued) and outcome.ticket.state == "waiting":
            remaining = terms.wait - (time.monotonic() - started)
            return await self._waiting.wait(
                outcome.ticket.id, outcome.ticket.token, principal, remaining, still_there
            )
        return outcome

    async def request(
        self, selection: Selection, terms: LeaseTerms, principal: Principal
    ) -> Lease | Queued:
        """`acquire`, answering at once: the lease if it is granted now, else the ticket
        that keeps the place in the queue (for up to `terms.wait` seconds, while polled).

        A person's page joins the queue this way, then follows the ticket with `wait`."""
        return await self._decide(
            selection_resolver(selection), terms, principal, selection.canonical()
        )

    async def _decide(
        self, resolve: Resolver, terms: LeaseTerms, principal: Principal, asked: str | None
    ) -> Lease | Queued:
        acquisition = Acquisition(
            resolve=resolve,
            terms=terms,
            principal=principal,
            asked=asked,
            policy=self.policy,
            now=self._clock(),
            token=self._new_token(),
        )
        outcome, woken = await self._database.write(acquisition.run)
        self.wakeups.wake(woken)
        if isinstance(outcome, Refused):
            raise outcome.error
        return outcome

    async def wait(
        self,
        ticket_id: int,
        token: str | None,
        principal: Principal,
        wait: float,
        still_there: StillThere | None = None,
    ) -> Lease | Queued:
        """Poll a ticket (with its token, or as its principal): the lease once granted, else
        the ticket after up to `wait` seconds. Raises NotGrantedError once it has left the
        queue without one."""
        return await self._waiting.wait(ticket_id, token, principal, wait, still_there)

    async def cancel(self, ticket_id: int, token: str | None, principal: Principal) -> Ticket:
        """Leave the queue. What the ticket reserved goes to the next in line."""
        ticket, woken = await self._database.write(
            partial(self._cancel, ticket_id, token, principal)
        )
        self.wakeups.wake(woken)
        return ticket

    async def queue(self) -> list[tuple[Ticket, int]]:
        """The waiting tickets with their places, in queue order."""
        tickets = await self._database.read(lambda store: store.waiting_tickets(QUEUE_SCAN))
        place = places(tickets)
        return [(ticket, place[ticket.id]) for ticket in tickets]

    # ------------------------------------------------------------------ holding

    async def renew(
        self, lease_id: int, token: str | None, principal: Principal, ttl: float | None = None
    ) -> Lease:
        """Push the lease's deadline to now + ttl (default: the lease's own TTL)."""
        return await self._database.write(partial(self._renew, lease_id, token, principal, ttl))

    async def release(self, lease_id: int, token: str | None, principal: Principal) -> Lease:
        """End the lease and free everything it holds (to the queue first)."""
        lease, woken = await self._database.write(
            partial(self._release, lease_id, token, principal)
        )
        self.wakeups.wake(woken)
        return lease

    async def get(self, lease_id: int, token: str | None, principal: Principal) -> Seen:
        """The lease as this caller may see it (an ended lease holds nothing). Raises
        LeaseNotFoundError; a wrong token is NotHolderError (it is not a public view)."""

        def query(store: Store) -> Seen:
            row = store.lease(lease_id)
            if row is None:
                raise LeaseNotFoundError(lease_id)
            yours = holds(token, principal, row.token, row.principal)
            if token is not None and not yours:
                raise NotHolderError(None, token, f"That token does not hold lease {lease_id}")
            return Seen(current(store, row), yours)

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
            return change(store), serve_queue(store, self.policy, self._clock())

        result, woken = await self._database.write(operation)
        self.wakeups.wake(woken)
        return result

    # ------------------------------------------------------------------ operations

    def _cancel(
        self, ticket_id: int, token: str | None, principal: Principal, store: Store
    ) -> tuple[Ticket, list[int]]:
        ticket = own_ticket(store, ticket_id, token, principal)
        now = self._clock()
        if not store.end_ticket(ticket_id, now, "cancelled"):
            return ticket, []
        store.add_event(now, "ticket_cancelled", actor=principal.name, detail={"ticket": ticket_id})
        ended = replace(ticket, state="cancelled", ended_at=now)
        return ended, serve_queue(store, self.policy, now)

    def _renew(
        self,
        lease_id: int,
        token: str | None,
        principal: Principal,
        ttl: float | None,
        store: Store,
    ) -> Lease:
        now = self._clock()
        held = _held_by(lease_id, token, principal, now)
        row = store.lease(lease_id)
        if row is None:
            raise LeaseNotFoundError(lease_id)
        expires_at = self.policy.expiry(now, ttl if ttl is not None else row.ttl)
        if not store.extend(lease_id, held, expires_at):
            raise refusal(store, lease_id, token, principal, now)
        store.add_event(
            now,
            "renewed",
            lease_id=lease_id,
            actor=principal.name,
            detail={"expires_at": expires_at},
        )
        return with_resources(replace(row, expires_at=expires_at), store.held_by(lease_id))

    def _release(
        self, lease_id: int, token: str | None, principal: Principal, store: Store
    ) -> tuple[Lease, list[int]]:
        now = self._clock()
        freed = store.end_lease(
            lease_id, now, "released", _held_by(lease_id, token, principal, now)
        )
        if freed is None:
            raise refusal(store, lease_id, token, principal, now)
        for resource_id in freed:
            store.add_event(
                now, "released", resource_id=resource_id, lease_id=lease_id, actor=principal.name
            )
        row = store.lease(lease_id)
        assert row is not None  # just ended it
        return with_resources(row, ()), serve_queue(store, self.policy, now)

    def _sweep(self, store: Store) -> tuple[int, list[int]]:
        now = self._clock()
        ended = end_due_leases(store, now, SWEEP_BATCH)
        left = []
        for ticket_id, reason in store.stale_tickets(now, self.policy.keepalive):
            if store.end_ticket(ticket_id, now, reason):
                store.add_event(now, f"ticket_{reason}", detail={"ticket": ticket_id})
                left.append(ticket_id)
        return ended, left + serve_queue(store, self.policy, now)
