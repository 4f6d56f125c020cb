"""The wait queue, served inside the transaction that frees resources.

Whenever resources may have become grantable (a release, an expiry, a ticket leaving the
queue, a new request), the operation that caused it calls `serve` before it commits: the
oldest matching waiters get the freed resources at once, so no newcomer can take them in
between. The rules of who gets what are `domain.allocation.allocate`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rentabot.domain.allocation import FreeResource, Waiter, allocate, positions, queue_order
from rentabot.domain.model import Ticket
from rentabot.storage.store import Store

#: Waiting tickets considered per allocation, in queue order (the rest wait their turn).
QUEUE_SCAN = 1000
#: The id a request not yet queued takes in an allocation: after every real ticket.
NEWCOMER = 2**62


@dataclass(frozen=True, slots=True)
class Need:
    """What a request needs, resolved: exactly these resources, or `count` carrying `tags`."""

    resource_ids: tuple[int, ...] | None
    tags: tuple[str, ...]
    count: int

    def waiter(self, waiter_id: int, priority: int, arrived_at: float) -> Waiter:
        """This need as a waiter of the allocation rules."""
        return Waiter(
            id=waiter_id,
            priority=priority,
            arrived_at=arrived_at,
            count=self.count,
            resource_ids=frozenset(self.resource_ids) if self.resource_ids is not None else None,
            tags=frozenset(self.tags),
        )


def ticket_need(ticket: Ticket) -> Need:
    """What a queued ticket needs."""
    return Need(ticket.resource_ids, ticket.tags, ticket.count)


def ticket_waiter(ticket: Ticket) -> Waiter:
    """A queued ticket as a waiter."""
    return ticket_need(ticket).waiter(ticket.id, ticket.priority, ticket.created_at)


def places(tickets: Iterable[Ticket]) -> dict[int, int]:
    """Each waiting ticket's 1-based place in the queue, by ticket id."""
    return positions(ticket_waiter(ticket) for ticket in tickets)


def free_pool(store: Store, waiters: Sequence[Waiter]) -> list[FreeResource]:
    """Enough of the grantable resources each waiter matches for `allocate` to decide.

    Earlier waiters take or reserve at most their counts, so a waiter's lowest
    `count + (counts ahead of it)` matches always include what it would be given.
    """
    ids: set[int] = set()
    ahead = 0
    for waiter in queue_order(waiters):
        if waiter.resource_ids is not None:
            ids.update(store.claimable(sorted(waiter.resource_ids)))
        else:
            ids.update(store.claimable_with_tags(sorted(waiter.tags), waiter.count + ahead))
        ahead += waiter.count
    tags = store.tags_of(sorted(ids))
    return [FreeResource(resource_id, tags[resource_id]) for resource_id in sorted(ids)]


def plan(
    store: Store, tickets: Sequence[Ticket], newcomer: Waiter | None = None
) -> dict[int, tuple[int, ...]]:
    """Which waiters (by id; the newcomer's is NEWCOMER) get which resources now."""
    waiters = [ticket_waiter(ticket) for ticket in tickets]
    if newcomer is not None:
        waiters.append(newcomer)
    return {waiter.id: ids for waiter, ids in allocate(waiters, free_pool(store, waiters))}


class Wakeups:
    """Waiters long-polling in this process, woken when their ticket is decided.

    Only a hint: a waiter re-reads its ticket in the database after every wake-up and at
    least every `Database.recheck_interval`, so a grant made by another process is seen even
    when its notification (PostgreSQL) is lost.
    """

    def __init__(self) -> None:
        self._watchers: dict[int, set[asyncio.Event]] = {}

    def watch(self, ticket_id: int) -> asyncio.Event:
        """An event set when the ticket may have changed."""
        event = asyncio.Event()
        self._watchers.setdefault(ticket_id, set()).add(event)
        return event

    def forget(self, ticket_id: int, event: asyncio.Event) -> None:
        """Stop watching."""
        watchers = self._watchers.get(ticket_id)
        if watchers is not None:
            watchers.discard(event)
            if not watchers:
                del self._watchers[ticket_id]

    def wake(self, ticket_ids: Iterable[int] | None) -> None:
        """Wake whoever watches these tickets (None: everyone)."""
        if ticket_ids is None:
            ticket_ids = list(self._watchers)
        for ticket_id in ticket_ids:
            for event in self._watchers.get(ticket_id, ()):
                event.set()
