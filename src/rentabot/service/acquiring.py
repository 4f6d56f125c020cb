"""Acquiring: one lock request, decided in one write operation.

The request is resolved (names to ids), replayed if its request id was seen before, planned
together with the waiting tickets (a newcomer never takes what an earlier waiter is entitled
to), then granted, or queued with a ticket, or refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from rentabot.domain.errors import (
    BusyError,
    LimitError,
    NotFoundError,
    NotGrantedError,
    RentabotError,
    RequestIdConflictError,
)
from rentabot.domain.identity import Principal
from rentabot.domain.model import Lease, Selection, Ticket, V1Selection, is_plausible_text
from rentabot.service.granting import (
    LeasePolicy,
    current,
    end_due_leases,
    grant_chosen,
    lease_all,
    lease_one,
    serve_queue,
)
from rentabot.service.queue import NEWCOMER, QUEUE_SCAN, Need, places, plan
from rentabot.storage.leases import NewLease
from rentabot.storage.store import Store

#: Due leases a refused request ends before deciding again (the sweep ends the rest).
DUE_BATCH = 100


@dataclass(frozen=True, slots=True)
class Refused:
    """A request refused by an operation that still changed something (it ended leases past
    their deadline): the operation commits, and the caller raises `error` afterwards."""

    error: RentabotError


@dataclass(frozen=True, slots=True)
class Queued:
    """A request waiting its turn: the ticket (with the token to poll with) and its place."""

    ticket: Ticket
    position: int | None


@dataclass(frozen=True, slots=True)
class LeaseTerms:
    """How a lock request wants its lease: time, waiting, priority, and who it is for."""

    ttl: float | None = None
    wait: float = 0.0
    priority: int = 0
    #: Who holds it, as people read it (a CI job's URL); the principal's name by default.
    owner: str | None = None
    description: str | None = None
    #: The caller's id for this request: a retry with it answers what the first call got.
    request_id: str | None = None


#: Turns a request into its need, and the selector its errors name.
Resolver = Callable[[Store], tuple[Need, V1Selection | Selection]]


def selection_resolver(selection: Selection) -> Resolver:
    """Resolve a v2 selection: names to ids, and check that enough resources exist."""

    def resolve(store: Store) -> tuple[Need, V1Selection | Selection]:
        if selection.names:
            if not all(is_plausible_text(name) for name in selection.names):
                raise NotFoundError(selection, "No resource has that name")
            found = store.resource_ids_by_name(selection.names)
            missing = [name for name in selection.names if name not in found]
            if missing:
                raise NotFoundError(selection, f"No resource named {', '.join(missing)}")
            ids = tuple(sorted(set(found.values())))
            return Need(ids, (), len(ids)), selection
        if selection.resource_ids:
            # Existence is checked only if they cannot be granted (see `acquire`).
            ids = tuple(sorted(set(selection.resource_ids)))
            return Need(ids, (), len(ids)), selection
        if not all(is_plausible_text(tag) for tag in selection.tags):
            raise NotFoundError(selection, "No resource carries those tags")
        # Whether enough exist is checked only if they cannot be granted (see `acquire`).
        return Need(None, tuple(sorted(set(selection.tags))), selection.count), selection

    return resolve


@dataclass(frozen=True, slots=True)
class Acquisition:
    """One lock request, ready to run as a write operation (`run`)."""

    resolve: Resolver
    terms: LeaseTerms
    principal: Principal
    #: What is asked (`Selection.canonical`), for replays; None for v1 locks (no request ids).
    asked: str | None
    policy: LeasePolicy
    now: float
    token: str

    @property
    def kept_asked(self) -> str | None:
        """What is asked, as recorded with the lease or ticket: only with a request id, the
        only thing a replay compares it for."""
        return self.asked if self.terms.request_id is not None else None

    @property
    def owner(self) -> str | None:
        """The lease's owner: as asked, else the principal's name."""
        return self.terms.owner if self.terms.owner is not None else self.principal.name

    def new_lease(self, expires_at: float | None) -> NewLease:
        """The lease this request would record."""
        return NewLease(
            token=self.token,
            acquired_at=self.now,
            owner=self.owner,
            description=self.terms.description,
            expires_at=expires_at,
            ttl=self.policy.lease_ttl(self.terms.ttl),
            request_id=self.terms.request_id,
            principal=self.principal.subject,
            asked=self.kept_asked,
        )

    def run(self, store: Store) -> tuple[Lease | Queued | Refused, list[int]]:
        """Decide the request; returns the outcome and the tickets granted on the way."""
        if self.terms.request_id is not None:
            earlier = self._replay(store, self.terms.request_id)
            if earlier is not None:
                return earlier, []
        return self._decide(store, may_expire=True)

    def _decide(
        self, store: Store, *, may_expire: bool
    ) -> tuple[Lease | Queued | Refused, list[int]]:
        expires_at = self.policy.expiry(self.now, self.terms.ttl)
        need, selector = self.resolve(store)
        tickets = store.waiting_tickets(QUEUE_SCAN)
        if tickets:
            newcomer = need.waiter(NEWCOMER, self.terms.priority, self.now)
            chosen = plan(store, tickets, newcomer)
        elif need.resource_ids is not None and len(need.resource_ids) == 1:
            # The original's lock of one resource, nobody waiting: the claim itself decides.
            lease = lease_one(store, need.resource_ids[0], self.new_lease(expires_at))
            if lease is not None:
                return lease, []
            chosen = {}
        else:
            mine = _free_now(store, need)
            chosen = {NEWCOMER: mine} if mine is not None else {}
        if NEWCOMER not in chosen and may_expire and end_due_leases(store, self.now, DUE_BATCH):
            # Held by a lease whose deadline has passed but that no sweep has ended yet: end
            # it (and any other due) now and decide again, so that expiry is exact.
            try:
                return self._decide(store, may_expire=False)
            except RentabotError as refusal:
                # Refused all the same (a waiter came first): the expiries stand, and what
                # they freed goes to the waiters, as a sweep would have done.
                return Refused(refusal), serve_queue(store, self.policy, self.now)
        if NEWCOMER not in chosen:
            check_exists(store, need, selector)
            if self.terms.wait <= 0:
                raise BusyError(selector)
            self.check_room(store)
        woken = grant_chosen(store, self.policy, tickets, chosen, self.now)
        if NEWCOMER in chosen:
            lease = lease_all(store, chosen[NEWCOMER], selector, self.new_lease(expires_at))
            return lease, woken
        return self._queue(store, need, tickets), woken

    def _queue(self, store: Store, need: Need, ahead: list[Ticket]) -> Queued:
        terms = self.terms
        ticket = Ticket(
            id=0,
            token=self.token,
            request_id=terms.request_id,
            owner=self.owner,
            description=terms.description,
            priority=terms.priority,
            count=need.count,
            resource_ids=need.resource_ids,
            tags=need.tags,
            ttl=terms.ttl,
            created_at=self.now,
            wait_until=self.now + terms.wait,
            last_seen_at=self.now + min(terms.wait, self.policy.long_poll),
            state="waiting",
            ended_at=None,
            lease_id=None,
            principal=self.principal.name,
            asked=self.kept_asked,
        )
        ticket_id = store.insert_ticket(ticket)
        # Audited, and on the event stream: an open page counts its Waiting column again.
        store.add_event(
            self.now, "ticket_queued", actor=self.principal.name, detail={"ticket": ticket_id}
        )
        queued = replace(ticket, id=ticket_id)
        return Queued(queued, places([*ahead, queued])[ticket_id])

    def check_room(self, store: Store) -> None:
        """Refuse to queue past the queue's limits (LimitError, HTTP 429)."""
        policy = self.policy
        if store.waiting_count() >= policy.max_waiting:
            raise LimitError(
                "queue_full",
                f"The queue is full ({policy.max_waiting} waiting requests,"
                " RENTABOT_MAX_WAITING); retry later",
            )
        if store.waiting_count(self.principal.subject) >= policy.max_waiting_per_principal:
            name = self.principal.name
            who = f"{name} already has" if name is not None else "anonymous callers already have"
            raise LimitError(
                "too_many_waiting",
                f"{who} {policy.max_waiting_per_principal} requests waiting"
                " (RENTABOT_MAX_WAITING_PER_PRINCIPAL); cancel some or retry later",
            )

    def _replay(self, store: Store, request_id: str) -> Lease | Queued | None:
        """What an earlier call by this principal with this request id got (None: none).

        A replay must ask for the same thing; an anonymous one also for the same owner, as
        all anonymous callers share one name space of request ids (docs/security.md)."""
        subject = self.principal.subject
        ticket = store.ticket_by_request_id(subject, request_id)
        if ticket is not None:
            self._check_same(request_id, ticket.asked, ticket.owner)
            return ticket_outcome(store, ticket)
        row = store.lease_by_request_id(subject, request_id)
        if row is None:
            return None
        self._check_same(request_id, store.lease_selection(row.id), row.owner)
        return current(store, row)

    def _check_same(self, request_id: str, asked: str | None, owner: str | None) -> None:
        if asked != self.asked:
            raise RequestIdConflictError(
                f"request id {request_id!r} was already used for another selection;"
                " use a new request id for a new request"
            )
        if not self.principal.authenticated and owner != self.owner:
            raise RequestIdConflictError(
                f"request id {request_id!r} was already used by another owner;"
                " use a new request id (or an API key, which gives you request ids of your own)"
            )


def ticket_outcome(store: Store, ticket: Ticket) -> Lease | Queued:
    """What a ticket's request has now: its lease, or its place in the queue; raises
    NotGrantedError once it left the queue without a grant."""
    if ticket.state == "granted" and ticket.lease_id is not None:
        row = store.lease(ticket.lease_id)
        assert row is not None
        return current(store, row)
    if ticket.state == "waiting":
        return Queued(ticket, places(store.waiting_tickets(QUEUE_SCAN)).get(ticket.id))
    raise NotGrantedError(ticket.selection, ticket.state)


def check_exists(store: Store, need: Need, selector: V1Selection | Selection) -> None:
    """What cannot be granted now must at least exist, or it could never be: explicit
    resources, or enough resources with the tags (NotFoundError otherwise).

    Checked only on this path, so a lock that succeeds pays no extra query."""
    v1 = isinstance(selector, V1Selection)
    if need.resource_ids is None:
        existing = store.count_visible_with_tags(need.tags, need.count)
        if existing >= need.count:
            return
        if v1:
            raise NotFoundError(selector, "No resource found matching the tag(s)")
        raise NotFoundError(
            selector,
            f"Only {existing} resource(s) carry the tags {list(need.tags)}, {need.count} asked for",
        )
    for resource_id in need.resource_ids:
        if store.resource(resource_id) is None:
            if v1:
                raise NotFoundError(selector)
            raise NotFoundError(selector, f"No resource with id {resource_id}")


def _free_now(store: Store, need: Need) -> tuple[int, ...] | None:
    """With nobody waiting: the resources to grant now, or None when not all are free."""
    if need.resource_ids is not None:
        free = store.claimable(need.resource_ids)
        return tuple(free) if len(free) == len(need.resource_ids) else None
    candidates = store.claimable_with_tags(need.tags, need.count)
    return tuple(candidates) if len(candidates) == need.count else None
