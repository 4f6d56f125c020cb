"""Waiting in the queue over HTTP: long-polls, wake-ups, and a ticket's keep-alive.

A waiting request holds a ticket row; its client long-polls (`Waiting.wait`), which keeps
the ticket alive and returns as soon as the ticket is decided: woken in this process by the
commit that granted it (`Wakeups`), or by re-reading it every `Database.recheck_interval`
(grants made by other processes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from functools import partial

from rentabot.domain.errors import NotFoundError, NotGrantedError, NotHolderError
from rentabot.domain.identity import Principal, holds
from rentabot.domain.model import Lease, Ticket
from rentabot.service.acquiring import Queued, ticket_outcome
from rentabot.service.granting import LeasePolicy, serve_queue
from rentabot.service.queue import Wakeups
from rentabot.storage.database import Database
from rentabot.storage.store import Store

Clock = Callable[[], float]
#: Answers whether the client is still connected (the HTTP layer's disconnect check).
StillThere = Callable[[], Awaitable[bool]]


def own_ticket(store: Store, ticket_id: int, token: str | None, principal: Principal) -> Ticket:
    """The ticket, if the caller may see it as its own: with its token, or as its
    principal. Raises NotFoundError, NotHolderError."""
    ticket = store.ticket(ticket_id)
    if ticket is None:
        raise NotFoundError(None, f"No ticket {ticket_id}")
    if not holds(token, principal, ticket.token, ticket.principal):
        raise NotHolderError(
            None,
            token,
            f"That token is not ticket {ticket_id}'s"
            if token is not None
            else f"Send ticket {ticket_id}'s token in `Authorization: Bearer <token>`",
        )
    return ticket


class Waiting:
    """Long-polls on tickets, for the lease service."""

    def __init__(
        self, database: Database, policy: LeasePolicy, clock: Clock, wakeups: Wakeups
    ) -> None:
        self._database = database
        self._policy = policy
        self._clock = clock
        self.wakeups = wakeups

    async def wait(
        self,
        ticket_id: int,
        token: str | None,
        principal: Principal,
        wait: float,
        still_there: StillThere | None = None,
    ) -> Lease | Queued:
        """Poll a ticket: the lease once granted, else the ticket after up to `wait` seconds
        (at most `policy.long_poll`). Raises NotGrantedError once it has left the queue
        without one.
        """
        wait = max(0.0, min(wait, self._policy.long_poll))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        event = self.wakeups.watch(ticket_id)
        touch = partial(self._touch, ticket_id, token, principal)
        last_place: int | None = None
        try:
            await self._database.write(partial(touch, self._clock() + wait))
            while True:
                event.clear()
                try:
                    outcome = await self.status(ticket_id, token, principal)
                except NotGrantedError as ended:
                    # Ended by someone else (the sweep, when its wait ran out before this
                    # waiter looked again): still say the place it last had.
                    if ended.position is None and last_place is not None:
                        raise NotGrantedError(ended.selector, ended.reason, last_place) from None
                    raise
                if not isinstance(outcome, Queued):
                    return outcome
                last_place = outcome.position
                # Never wait past the ticket's own deadline.
                left = outcome.ticket.wait_until - self._clock()
                remaining = min(deadline - loop.time(), left)
                if left <= 0:
                    return await self._time_out(outcome, token, principal)
                if remaining <= 0:
                    return outcome
                if still_there is not None and not await still_there():
                    # The client hung up: its keep-alive starts now (a person's page, after
                    # their grace period: they may be reloading or moving between views).
                    grace = self._policy.person_grace if principal.ambient else 0.0
                    await self._database.write(partial(touch, self._clock() + grace))
                    return outcome
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        event.wait(), min(remaining, self._database.recheck_interval)
                    )
        finally:
            self.wakeups.forget(ticket_id, event)

    async def status(
        self, ticket_id: int, token: str | None, principal: Principal
    ) -> Lease | Queued:
        """What the ticket's request has now (see `ticket_outcome`)."""
        return await self._database.read(
            lambda store: ticket_outcome(store, own_ticket(store, ticket_id, token, principal))
        )

    async def _time_out(
        self, queued: Queued, token: str | None, principal: Principal
    ) -> Lease | Queued:
        """End a ticket whose wait ran out (the sweep would, a moment later) and say so with
        NotGrantedError; unless it was granted in the meantime."""
        ticket = queued.ticket
        timed_out, woken = await self._database.write(partial(self._end_waiting, ticket.id))
        self.wakeups.wake(woken)
        if timed_out:
            raise NotGrantedError(ticket.selection, "timed_out", queued.position)
        return await self.status(ticket.id, token, principal)

    def _touch(
        self,
        ticket_id: int,
        token: str | None,
        principal: Principal,
        seen_until: float,
        store: Store,
    ) -> None:
        own_ticket(store, ticket_id, token, principal)
        store.touch_ticket(ticket_id, seen_until)

    def _end_waiting(self, ticket_id: int, store: Store) -> tuple[bool, list[int]]:
        now = self._clock()
        if not store.end_ticket(ticket_id, now, "timed_out"):
            return False, []
        store.add_event(now, "ticket_timed_out", detail={"ticket": ticket_id})
        return True, serve_queue(store, self._policy, now)
