"""Upstream 1.x's reservations, as tickets of the one fair queue.

A reservation is a ticket with a claim window: it waits (up to `max_wait_time`) among every
other waiter, in arrival order, and is granted by whichever operation frees what it needs
(`granting.serve_queue`), never by a sweep. Its lease lasts the claim window from the grant;
claiming it moves the lease's deadline to now + the reservation's ttl. Its id (`res_` and 32
hex digits) is kept as the ticket's request id, so it is looked up per principal: another
principal's reservation is not found. Anonymous callers are one principal; to them the
unguessable id is what proves a reservation theirs, so the listing never shows them one.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from rentabot.domain.errors import (
    NotFoundError,
    ReservationNotFoundError,
    ReservationStateError,
)
from rentabot.domain.identity import Principal
from rentabot.domain.model import Lease, Selection, Ticket, is_plausible_text
from rentabot.service.acquiring import Acquisition, LeaseTerms, check_exists
from rentabot.service.granting import LeasePolicy, serve_queue
from rentabot.service.queue import QUEUE_SCAN, Need, Wakeups, places
from rentabot.storage.database import Database
from rentabot.storage.leases import HeldBy
from rentabot.storage.store import Store

#: Upstream 1.x's reservation id: `res_` and 32 hex digits.
ID_PREFIX = "res_"


@dataclass(frozen=True, slots=True)
class Reservation:
    """A reservation as upstream 1.x shows it; `resource_ids` and `lock_tokens` are set once
    it is fulfilled (the caller is its creator: nobody else finds it)."""

    reservation_id: str
    status: str
    tags: tuple[str, ...]
    quantity: int
    ttl: float | None
    position_in_queue: int | None
    created_at: float
    expires_at: float
    fulfilled_at: float | None
    claim_expires_at: float | None
    claimed_at: float | None
    resource_ids: tuple[int, ...] | None
    lock_tokens: tuple[str, ...] | None


def new_reservation_id() -> str:
    """A fresh, unguessable reservation id."""
    return ID_PREFIX + secrets.token_hex(16)


def _view(store: Store, ticket: Ticket, now: float, place: int | None) -> Reservation:
    """The reservation a ticket is, at `now` (expiry is exact: no sweep needs to run)."""
    assert ticket.request_id is not None
    assert ticket.claim_window is not None
    lease: Lease | None = None
    held: tuple[int, ...] | None = None
    if ticket.state == "granted" and ticket.lease_id is not None:
        lease = store.lease(ticket.lease_id)
    if ticket.state == "waiting":
        status = "pending" if ticket.wait_until > now else "expired"
    elif ticket.state == "cancelled":
        status = "cancelled"
    elif lease is None:
        status = "expired"
    elif ticket.claimed_at is not None:
        status = "claimed"
    elif lease.ended_at is None and lease.expires_at is not None and lease.expires_at > now:
        status = "fulfilled"
    else:
        status = "expired"
    if lease is not None and status in ("fulfilled", "claimed"):
        held = tuple(sorted(resource.id for resource in store.held_by(lease.id)))
    return Reservation(
        reservation_id=ticket.request_id,
        status=status,
        tags=ticket.tags,
        quantity=ticket.count,
        ttl=ticket.ttl,
        position_in_queue=place if status == "pending" else None,
        created_at=ticket.created_at,
        expires_at=ticket.wait_until,
        fulfilled_at=ticket.ended_at if lease is not None else None,
        claim_expires_at=(
            ticket.ended_at + ticket.claim_window
            if lease is not None and ticket.ended_at is not None
            else None
        ),
        claimed_at=ticket.claimed_at,
        resource_ids=held,
        lock_tokens=tuple(ticket.token for _ in held) if held else None,
    )


class ReservationService:
    """Reserve, look up, cancel and claim upstream 1.x reservations."""

    def __init__(
        self,
        database: Database,
        wakeups: Wakeups,
        *,
        policy: LeasePolicy,
        claim_window: float = 60.0,
        clock: Callable[[], float] = time.time,
        token_factory: Callable[[], str] = lambda: secrets.token_urlsafe(24),
        id_factory: Callable[[], str] = new_reservation_id,
    ) -> None:
        self._database = database
        self._wakeups = wakeups
        self._policy = policy
        self._claim_window = claim_window
        self._clock = clock
        self._new_token = token_factory
        self._new_id = id_factory

    async def reserve(
        self,
        tags: tuple[str, ...],
        quantity: int,
        ttl: float,
        max_wait_time: float,
        principal: Principal,
    ) -> Reservation:
        """Queue a reservation of `quantity` resources carrying all `tags`; granted at once
        if nobody ahead needs what is free. Raises NotFoundError (too few resources carry
        the tags), InvalidRequestError (a refused ttl), LimitError (the queue is full)."""
        result, woken = await self._database.write(
            partial(
                self._reserve, tuple(sorted(set(tags))), quantity, ttl, max_wait_time, principal
            )
        )
        self._wakeups.wake(woken)
        return result

    async def get(self, reservation_id: str, principal: Principal) -> Reservation:
        """The caller's reservation. Raises ReservationNotFoundError."""
        return await self._database.read(partial(self._get, reservation_id, principal))

    async def list_mine(self, principal: Principal) -> list[Reservation]:
        """The caller's reservations, oldest first (none for anonymous callers, see above)."""
        if not principal.authenticated:
            return []

        def query(store: Store) -> list[Reservation]:
            now = self._clock()
            place = places(store.waiting_tickets(QUEUE_SCAN))
            return [
                _view(store, ticket, now, place.get(ticket.id))
                for ticket in store.reservations(principal.subject)
            ]

        return await self._database.read(query)

    async def cancel(self, reservation_id: str, principal: Principal) -> Reservation:
        """Withdraw a pending reservation (its place goes to the next in line). Raises
        ReservationNotFoundError, ReservationStateError (no longer pending)."""
        result, woken = await self._database.write(partial(self._cancel, reservation_id, principal))
        self._wakeups.wake(woken)
        return result

    async def claim(self, reservation_id: str, principal: Principal) -> Reservation:
        """Claim a fulfilled reservation: its lease now runs for the reservation's ttl.
        Raises ReservationNotFoundError, ReservationStateError (pending, claimed: 409;
        the claim window passed: 410)."""
        return await self._database.write(partial(self._claim, reservation_id, principal))

    # ------------------------------------------------------------------ operations

    def _ticket(self, store: Store, reservation_id: str, principal: Principal) -> Ticket:
        if (
            not reservation_id.startswith(ID_PREFIX)
            or len(reservation_id) > 100
            or not is_plausible_text(reservation_id)
        ):
            raise ReservationNotFoundError(reservation_id[:100])
        ticket = store.ticket_by_request_id(principal.subject, reservation_id)
        if ticket is None or ticket.claim_window is None:
            raise ReservationNotFoundError(reservation_id)
        return ticket

    def _current(self, store: Store, ticket: Ticket) -> Reservation:
        place = places(store.waiting_tickets(QUEUE_SCAN)) if ticket.state == "waiting" else {}
        return _view(store, ticket, self._clock(), place.get(ticket.id))

    def _get(self, reservation_id: str, principal: Principal, store: Store) -> Reservation:
        return self._current(store, self._ticket(store, reservation_id, principal))

    def _reserve(
        self,
        tags: tuple[str, ...],
        quantity: int,
        ttl: float,
        max_wait_time: float,
        principal: Principal,
        store: Store,
    ) -> tuple[Reservation, list[int]]:
        now = self._clock()
        self._policy.expiry(now, ttl)  # refuses a ttl the operator does not allow
        selection = Selection(tags=tags, count=quantity)
        if not all(is_plausible_text(tag) for tag in tags):
            raise NotFoundError(selection, "No resource carries those tags")
        check_exists(store, Need(None, tags, quantity), selection)
        Acquisition(
            resolve=lambda _: (Need(None, tags, quantity), selection),
            terms=LeaseTerms(),
            principal=principal,
            asked=None,
            policy=self._policy,
            now=now,
            token="",
        ).check_room(store)
        reservation_id = self._new_id()
        ticket_id = store.insert_ticket(
            Ticket(
                id=0,
                token=self._new_token(),
                request_id=reservation_id,
                owner=principal.name,
                description=f"upstream 1.x reservation {reservation_id}",
                priority=0,
                count=quantity,
                resource_ids=None,
                tags=tags,
                ttl=ttl,
                created_at=now,
                wait_until=now + max_wait_time,
                # A 1.x client need not poll a pending reservation: it is never abandoned,
                # only timed out at `max_wait_time`.
                last_seen_at=now + max_wait_time,
                state="waiting",
                ended_at=None,
                lease_id=None,
                principal=principal.name,
                claim_window=self._claim_window,
            )
        )
        store.add_event(now, "ticket_queued", actor=principal.name, detail={"ticket": ticket_id})
        # Served like any ticket: it gets resources only if nobody ahead needs them.
        woken = serve_queue(store, self._policy, now)
        ticket = store.ticket(ticket_id)
        assert ticket is not None
        return self._current(store, ticket), woken

    def _cancel(
        self, reservation_id: str, principal: Principal, store: Store
    ) -> tuple[Reservation, list[int]]:
        ticket = self._ticket(store, reservation_id, principal)
        now = self._clock()
        if ticket.wait_until <= now or not store.end_ticket(ticket.id, now, "cancelled"):
            status = self._current(store, ticket).status
            raise ReservationStateError(
                reservation_id, status, f"Reservation {reservation_id} is {status}, not pending"
            )
        woken = serve_queue(store, self._policy, now)
        ended = store.ticket(ticket.id)
        assert ended is not None
        return self._current(store, ended), woken

    def _claim(self, reservation_id: str, principal: Principal, store: Store) -> Reservation:
        ticket = self._ticket(store, reservation_id, principal)
        now = self._clock()
        status = self._current(store, ticket).status
        if status != "fulfilled":
            raise ReservationStateError(
                reservation_id,
                status,
                f"Reservation {reservation_id} is {status}, not fulfilled",
                gone=status == "expired" and ticket.state == "granted",
            )
        assert ticket.lease_id is not None
        expires_at = self._policy.expiry(now, ticket.ttl)
        if not store.extend(ticket.lease_id, HeldBy(now, token=ticket.token), expires_at):
            raise ReservationStateError(
                reservation_id, "expired", "The claim window has passed", gone=True
            )
        if not store.mark_claimed(ticket.id, now):
            raise ReservationStateError(
                reservation_id, "claimed", f"Reservation {reservation_id} is already claimed"
            )
        store.add_event(
            now,
            "renewed",
            lease_id=ticket.lease_id,
            actor=principal.name,
            detail={"expires_at": expires_at, "claimed": reservation_id},
        )
        claimed = store.ticket(ticket.id)
        assert claimed is not None
        return self._current(store, claimed)
