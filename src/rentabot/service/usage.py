"""History and usage figures of resources and tags, and the queue's wait estimates.

Each call is one read transaction (`Database.read`, in a thread: a window can hold many
events) over a bounded read: a time window, or a row limit. The figures and the estimate
are the pure rules of `domain.usage` and `domain.estimate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from rentabot.domain.allocation import FreeResource
from rentabot.domain.errors import InvalidRequestError, NotFoundError
from rentabot.domain.estimate import PoolResource, QueuedRequest, estimate_waits
from rentabot.domain.model import Holder, Resource, Ticket, V1Selection
from rentabot.domain.tags import TagCounts, queue_lengths
from rentabot.domain.usage import (
    DAY_S,
    History,
    LeaseStart,
    UsageFigures,
    build_history,
    median,
    usage_figures,
)
from rentabot.service.queue import QUEUE_SCAN, places, ticket_waiter
from rentabot.storage.database import Database
from rentabot.storage.store import Store

#: The windows the figures may cover, in days.
MIN_DAYS, MAX_DAYS = 1, 90
#: Most history periods one call returns.
MAX_HISTORY = 500
#: Waiting tickets estimated (the queue's head: the rest wait their turn).
ESTIMATE_SCAN = 1000
#: Days of past holds the estimate takes its medians from.
ESTIMATE_DAYS = 7


@dataclass(frozen=True, slots=True)
class ResourceHistory:
    """A resource (as it is now) and its latest holds and maintenance periods."""

    resource: Resource
    history: History


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """A waiting ticket, its 1-based place in serving order, and its expected wait in
    seconds (None: no estimate)."""

    ticket: Ticket
    place: int
    estimate: float | None


@dataclass(frozen=True, slots=True)
class ResourceReport:
    """What a resource's page shows of it: the resource, its latest history, and its
    figures over each window asked for."""

    resource: Resource
    history: History
    figures: tuple[UsageFigures, ...]
    #: The waiting requests that could take this resource, in serving order.
    queue: tuple[QueueEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class TagPool:
    """A tag as a pool: its resources by state, and how many waiting requests ask for it
    (`domain.tags.queue_lengths`, over the queue's first `QUEUE_SCAN` tickets)."""

    counts: TagCounts
    waiting: int

    @property
    def tag(self) -> str:
        """The tag."""
        return self.counts.tag


@dataclass(frozen=True, slots=True)
class TagReport:
    """What a tag's page shows: the pool, and its figures over each window asked for."""

    pool: TagPool
    figures: tuple[UsageFigures, ...]


def _start(holder: Holder | None) -> LeaseStart | None:
    if holder is None:
        return None
    return LeaseStart(
        holder.lease_id, holder.acquired_at, holder.owner, holder.principal, holder.expires_at
    )


def _check_days(days: int) -> None:
    if not MIN_DAYS <= days <= MAX_DAYS:
        raise InvalidRequestError(f"days must be between {MIN_DAYS} and {MAX_DAYS}")


class UsageService:
    """Reads of the audit trail as history and figures."""

    def __init__(self, database: Database, clock: Callable[[], float]) -> None:
        self._database = database
        self._clock = clock

    def now(self) -> float:
        """The service's clock."""
        return self._clock()

    async def resource_history(self, resource_id: int, limit: int = 50) -> ResourceHistory:
        """The resource's latest `limit` holds and maintenance periods (oldest first)."""
        limit = max(1, min(limit, MAX_HISTORY))
        return await self._database.read(
            lambda store: self._history(store, resource_id, limit), large=True
        )

    async def resource_report(
        self, resource_id: int, windows: Sequence[int] = (7, 30), limit: int = 20
    ) -> ResourceReport:
        """The resource, its latest `limit` holds and maintenance periods, and its figures
        over each window (days), read in one transaction. Raises NotFoundError."""
        for days in windows:
            _check_days(days)
        limit = max(1, min(limit, MAX_HISTORY))
        now = self._clock()

        def query(store: Store) -> ResourceReport:
            found = self._history(store, resource_id, limit)
            figures = tuple(_figures(store, [found.resource], days, now) for days in windows)
            return ResourceReport(
                found.resource, found.history, figures, _queue_for(store, found.resource, now)
            )

        return await self._database.read(query, large=True)

    async def resource_usage(self, resource_id: int, days: int) -> UsageFigures:
        """The resource's figures over the last `days` days."""
        _check_days(days)
        now = self._clock()

        def query(store: Store) -> UsageFigures:
            resource = store.resource(resource_id)
            if resource is None:
                raise NotFoundError(V1Selection(resource_id=resource_id))
            return _figures(store, [resource], days, now)

        return await self._database.read(query, large=True)

    async def tag_usage(self, tag: str, days: int) -> UsageFigures:
        """The figures of the resources carrying `tag`, over the last `days` days."""
        _check_days(days)
        now = self._clock()

        def query(store: Store) -> UsageFigures:
            members = store.tag_members(tag).get(tag)
            if not members:
                raise NotFoundError(None, f"No resource carries the tag {tag!r}")
            return _figures(store, members, days, now)

        return await self._database.read(query, large=True)

    async def tags_usage(self, days: int) -> dict[str, UsageFigures]:
        """Every tag's figures over the last `days` days, by tag (in tag order)."""
        _check_days(days)
        now = self._clock()

        def query(store: Store) -> dict[str, UsageFigures]:
            by_tag = store.tag_members()
            resources = {r.id: r for members in by_tag.values() for r in members}
            histories = _histories(store, list(resources.values()), now - days * DAY_S)
            return {
                tag: usage_figures(
                    [histories[r.id][0] for r in members],
                    days=days,
                    until=now,
                    waits=[w for r in members for w in histories[r.id][1]],
                )
                for tag, members in by_tag.items()
            }

        return await self._database.read(query, large=True)

    async def tags_overview(self) -> list[TagPool]:
        """Every tag carried by a visible resource, in tag order: its resources by state
        (one aggregate query) and its queue length, read in one transaction."""
        return await self._database.read(lambda store: _pools(store, None), large=True)

    async def tag_report(self, tag: str, windows: Sequence[int] = (7, 30)) -> TagReport:
        """One tag's pool and its figures over each window (days), read in one
        transaction. Raises NotFoundError when no visible resource carries it."""
        for days in windows:
            _check_days(days)
        now = self._clock()

        def query(store: Store) -> TagReport:
            found = _pools(store, tag)
            members = store.tag_members(tag).get(tag)
            if not found or not members:
                raise NotFoundError(None, f"No resource carries the tag {tag!r}")
            figures = tuple(_figures(store, members, days, now) for days in windows)
            return TagReport(found[0], figures)

        return await self._database.read(query, large=True)

    async def queue_estimates(self) -> dict[int, float | None]:
        """Each waiting ticket's expected wait in seconds from now (None: no estimate); the
        formula is `domain.estimate`'s."""
        now = self._clock()
        return await self._database.read(lambda store: _estimates(store, now), large=True)

    async def queue_report(self) -> list[QueueEntry]:
        """The waiting tickets in serving order, each with its place and its estimate, read
        in one transaction (what the queue page shows)."""
        now = self._clock()

        def query(store: Store) -> list[QueueEntry]:
            tickets = store.waiting_tickets(ESTIMATE_SCAN)
            place = places(tickets)
            waits = _estimates(store, now)
            return [
                QueueEntry(ticket, place[ticket.id], waits.get(ticket.id))
                for ticket in sorted(tickets, key=lambda t: place[t.id])
            ]

        return await self._database.read(query, large=True)

    def _history(self, store: Store, resource_id: int, limit: int) -> ResourceHistory:
        resource = store.resource(resource_id)
        if resource is None:
            raise NotFoundError(V1Selection(resource_id=resource_id))
        # Two events per period: twice the limit (and one more, the end of a period whose
        # start is cut) covers `limit` periods.
        events = store.latest_history_events(resource_id, 2 * limit + 1)
        granted = {e.lease_id for e in events if e.kind == "granted"}
        earlier = store.lease_starts(
            [
                e.lease_id
                for e in events
                if e.lease_id is not None and e.kind != "granted" and e.lease_id not in granted
            ]
        )
        history = build_history(
            events,
            earlier=earlier,
            current=_start(resource.holder),
            in_maintenance=resource.maintenance,
        )
        trimmed = replace(
            history, holds=history.holds[-limit:], maintenance=history.maintenance[-limit:]
        )
        return ResourceHistory(resource, trimmed)


def _histories(
    store: Store, resources: Sequence[Resource], since: float
) -> dict[int, tuple[History, list[float]]]:
    """Each resource's history inside the window, and the waits of its grants there."""
    events = store.window_events([r.id for r in resources], since)
    granted = [e.lease_id for found in events.values() for e in found if e.kind == "granted"]
    waits = store.queue_waits([lease_id for lease_id in granted if lease_id is not None])
    found: dict[int, tuple[History, list[float]]] = {}
    for resource in resources:
        own = events[resource.id]
        history = build_history(
            own, current=_start(resource.holder), in_maintenance=resource.maintenance
        )
        own_waits = [
            waits.get(e.lease_id, 0.0)
            for e in own
            if e.kind == "granted" and e.lease_id is not None
        ]
        found[resource.id] = (history, own_waits)
    return found


def _figures(store: Store, resources: Sequence[Resource], days: int, now: float) -> UsageFigures:
    histories = _histories(store, resources, now - days * DAY_S)
    return usage_figures(
        [history for history, _ in histories.values()],
        days=days,
        until=now,
        waits=[w for _, waits in histories.values() for w in waits],
    )


def _queue_for(store: Store, resource: Resource, now: float) -> tuple[QueueEntry, ...]:
    """The waiting tickets that could be granted `resource`, in serving order, with their
    places in the whole queue and their estimates (computed only when there are some)."""
    tickets = store.waiting_tickets(ESTIMATE_SCAN)
    this = FreeResource(resource.id, frozenset(resource.tags))
    wanting = [t for t in tickets if ticket_waiter(t).matches(this)]
    if not wanting:
        return ()
    place = places(tickets)
    waits = _estimates(store, now)
    return tuple(
        QueueEntry(t, place[t.id], waits.get(t.id))
        for t in sorted(wanting, key=lambda t: place[t.id])
    )


def _pools(store: Store, tag: str | None) -> list[TagPool]:
    """The pools of one tag (or of every tag) with their queue lengths."""
    counts = store.tag_counts(tag)
    if not counts:
        return []
    tickets = store.waiting_tickets(QUEUE_SCAN)
    named = sorted({i for t in tickets for i in t.resource_ids or ()})
    lengths = queue_lengths(tickets, store.tags_of(named))
    return [TagPool(c, lengths.get(c.tag, 0)) for c in counts]


def _request(ticket: Ticket) -> QueuedRequest:
    return QueuedRequest(
        id=ticket.id,
        count=ticket.count,
        resource_ids=frozenset(ticket.resource_ids) if ticket.resource_ids is not None else None,
        tags=frozenset(ticket.tags),
    )


def _estimates(store: Store, now: float) -> dict[int, float | None]:
    tickets = store.waiting_tickets(ESTIMATE_SCAN)
    if not tickets:
        return {}
    candidates: dict[int, Resource] = {}
    wanted_ids = {i for t in tickets if t.resource_ids is not None for i in t.resource_ids}
    if any(t.resource_ids is None and not t.tags for t in tickets):
        candidates.update((r.id, r) for r in store.resources())
    else:
        # A resource carrying every tag asked carries the first one: its members suffice.
        for tag in sorted({t.tags[0] for t in tickets if t.resource_ids is None}):
            for member in store.tag_members(tag).get(tag, []):
                candidates[member.id] = member
        for resource_id in wanted_ids - candidates.keys():
            wanted = store.resource(resource_id)
            if wanted is not None:
                candidates[wanted.id] = wanted
    tags = store.tags_of(list(candidates))
    histories = _histories(store, list(candidates.values()), now - ESTIMATE_DAYS * DAY_S)
    pool = []
    for resource in candidates.values():
        history = histories[resource.id][0]
        holds = [
            h.end - h.start for h in history.holds if h.start is not None and h.end is not None
        ]
        holder = resource.holder
        pool.append(
            PoolResource(
                id=resource.id,
                tags=tags.get(resource.id, frozenset()),
                maintenance=resource.maintenance,
                held_since=holder.acquired_at if holder else None,
                expires_at=holder.expires_at if holder else None,
                median_hold_s=median(holds),
            )
        )
    return estimate_waits([_request(t) for t in tickets], pool, now)
