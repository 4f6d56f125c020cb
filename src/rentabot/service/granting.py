"""Giving resources to leases, inside the transaction of the operation that does it.

Functions of an open `Store`: they run inside a write operation (see storage/database.py),
and every claim is a conditional update whose row count decides. Serving the queue
(`serve_queue`) is called by every operation that frees resources, before it commits, so the
oldest matching waiters get them in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from rentabot.domain.allocation import TtlError, lease_expiry
from rentabot.domain.errors import BusyError, InvalidRequestError, NotFoundError
from rentabot.domain.model import Holder, Lease, Resource, Selection, Ticket, V1Selection
from rentabot.service.queue import QUEUE_SCAN, plan
from rentabot.storage.leases import NewLease
from rentabot.storage.store import Store


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    """The operator's rules for lease times, waiting, and the size of the queue."""

    default_ttl: float | None = None
    max_ttl: float | None = None
    #: A waiting client that has not polled for this long leaves the queue.
    keepalive: float = 10.0
    #: How much longer a person's place is kept once their page stops following it (they
    #: reload, move to another view, or close the tab by mistake): a session's hang-up.
    person_grace: float = 120.0
    #: Longest single wait in one call: a long-poll answers by then, and the client re-polls.
    long_poll: float = 60.0
    #: Most requests waiting in the queue, in all and per principal (anonymous callers
    #: count as one principal).
    max_waiting: int = 10_000
    max_waiting_per_principal: int = 1_000

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


def with_resources(lease: Lease, resources: Sequence[Resource]) -> Lease:
    """The lease with what it holds."""
    return replace(lease, resources=tuple(resources))


def current(store: Store, lease: Lease) -> Lease:
    """The lease with what it holds now (an ended lease holds nothing)."""
    return with_resources(lease, store.held_by(lease.id) if lease.ended_at is None else ())


def new_lease(lease: NewLease, lease_id: int, resources: Sequence[Resource]) -> Lease:
    """The lease just recorded from `lease`, holding `resources`."""
    return Lease(
        id=lease_id,
        token=lease.token,
        owner=lease.owner,
        description=lease.description,
        acquired_at=lease.acquired_at,
        expires_at=lease.expires_at,
        ttl=lease.ttl,
        ended_at=None,
        end_reason=None,
        resources=tuple(resources),
        principal=lease.principal or None,
    )


def holder_of(lease_id: int, lease: NewLease) -> Holder:
    """The holder a resource claimed for `lease` names."""
    return Holder(
        lease_id, lease.owner, lease.acquired_at, lease.expires_at, lease.principal or None
    )


def claim(store: Store, resource_id: int, holder: Holder, now: float) -> Resource | None:
    """Claim one resource for a lease and record the grant; None when it is not free."""
    resource = store.claim(resource_id, holder, now)
    if resource is not None:
        detail: dict[str, object] = {"fence": resource.fence, "expires_at": holder.expires_at}
        if holder.owner is not None:
            detail["owner"] = holder.owner
        store.add_event(
            now,
            "granted",
            resource_id=resource_id,
            lease_id=holder.lease_id,
            actor=holder.principal,
            detail=detail,
        )
    return resource


def lease_all(
    store: Store, resource_ids: Sequence[int], selector: V1Selection | Selection, lease: NewLease
) -> Lease:
    """Give these resources to a new lease, all of them or none (BusyError, NotFoundError).

    Each claim is a conditional update; a failed one raises, and the caller's savepoint
    undoes the claims made before it.
    """
    lease_id = store.insert_lease(lease)
    holder = holder_of(lease_id, lease)
    claimed: list[Resource] = []
    for resource_id in resource_ids:
        resource = claim(store, resource_id, holder, lease.acquired_at)
        if resource is None:
            if store.resource(resource_id) is None:
                raise NotFoundError(selector)
            raise BusyError(selector)
        claimed.append(resource)
    return new_lease(lease, lease_id, claimed)


def lease_one(store: Store, resource_id: int, lease: NewLease) -> Lease | None:
    """Lease one resource if it is free (one conditional update); None when it is not,
    leaving nothing behind."""
    lease_id = store.insert_lease(lease)
    resource = claim(store, resource_id, holder_of(lease_id, lease), lease.acquired_at)
    if resource is None:
        store.delete_empty_lease(lease_id)
        return None
    return new_lease(lease, lease_id, (resource,))


def grant_ticket(
    store: Store, policy: LeasePolicy, ticket: Ticket, resource_ids: Sequence[int], now: float
) -> int:
    """Give a waiting ticket its resources (a lease with the ticket's token) and take it out
    of the queue; returns the lease id."""
    lease = lease_all(
        store,
        resource_ids,
        ticket.selection,
        NewLease(
            token=ticket.token,
            acquired_at=now,
            owner=ticket.owner,
            description=ticket.description,
            # A reservation's lease lasts its claim window until claimed (see reservations).
            expires_at=(
                now + ticket.claim_window
                if ticket.claim_window is not None
                else policy.queued_expiry(now, ticket.ttl)
            ),
            ttl=policy.lease_ttl(ticket.ttl),
            request_id=ticket.request_id,
            principal=ticket.principal or "",
            asked=ticket.asked,
        ),
    )
    store.end_ticket(ticket.id, now, "granted", lease.id)
    store.announce_granted(ticket.id)
    return lease.id


def grant_chosen(
    store: Store,
    policy: LeasePolicy,
    tickets: Sequence[Ticket],
    chosen: dict[int, tuple[int, ...]],
    now: float,
) -> list[int]:
    """Grant the tickets a plan chose, in queue order; returns their ids (to wake)."""
    granted = [ticket for ticket in tickets if ticket.id in chosen]
    for ticket in granted:
        grant_ticket(store, policy, ticket, chosen[ticket.id], now)
    return sorted(ticket.id for ticket in granted)


def serve_queue(store: Store, policy: LeasePolicy, now: float) -> list[int]:
    """Grant waiting tickets what is free now, in fair order; returns their ids."""
    tickets = store.waiting_tickets(QUEUE_SCAN)
    if not tickets:
        return []
    return grant_chosen(store, policy, tickets, plan(store, tickets), now)


def end_due_leases(store: Store, now: float, limit: int) -> int:
    """End up to `limit` leases past their deadline and free what they held, each with its
    `expired` event; returns how many leases ended. The sweep calls it, and so does a
    request that finds its resources held by such a lease, so that expiry is exact rather
    than up to a sweep late."""
    freed = store.expire_due(now, limit)
    store.add_lease_events(
        (now, "expired", resource_id, lease_id, None) for lease_id, resource_id in freed
    )
    return len({lease_id for lease_id, _ in freed})
