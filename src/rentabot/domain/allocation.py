"""Fair waiting and lease expiry: who is granted which free resources, and until when.

Pure rules without I/O or clock reads: the service loads the queue and the free resources in one
transaction, calls `allocate` and grants what it returns; times are seconds since the epoch.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Waiter:
    """A lock request waiting in the queue.

    It needs exactly its explicit `resource_ids` when given (`count` is then their number);
    otherwise `count` resources that each carry every one of its `tags` (no tags: any resource).
    """

    #: The request's row id: unique, and the last tie-breaker of the queue order.
    id: int
    #: Higher is served first.
    priority: int
    arrived_at: float
    count: int
    resource_ids: frozenset[int] | None = None
    tags: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("a waiter needs at least one resource")
        if self.resource_ids is not None and (self.tags or self.count != len(self.resource_ids)):
            raise ValueError("a waiter for explicit resources needs exactly them, without tags")
        if not math.isfinite(self.arrived_at):
            # NaN does not compare, so the queue order would follow the input order.
            raise ValueError("arrived_at must be a finite time")

    def matches(self, resource: FreeResource) -> bool:
        """Whether `resource` may be part of what this waiter is granted."""
        if self.resource_ids is not None:
            return resource.id in self.resource_ids
        return self.tags <= resource.tags


@dataclass(frozen=True, slots=True)
class FreeResource:
    """A resource that can be granted now."""

    id: int
    tags: frozenset[str]


def waiting_for(waiters: Iterable[Waiter], resources: Iterable[FreeResource]) -> dict[int, int]:
    """How many waiters could be granted each resource (by id) once it is free: those that
    name it, and those whose tags it carries (what the page shows as "waiting")."""
    waiting = list(waiters)
    return {r.id: sum(1 for w in waiting if w.matches(r)) for r in resources}


def queue_order(waiters: Iterable[Waiter]) -> list[Waiter]:
    """The waiters in the order they are served: priority (highest first), then arrival, then id.

    Raises ValueError when two waiters share an id: the order could then depend on the input.
    """
    ordered = sorted(waiters, key=lambda w: (-w.priority, w.arrived_at, w.id))
    seen: set[int] = set()
    for waiter in ordered:
        if waiter.id in seen:
            raise ValueError(f"waiter {waiter.id} is listed twice")
        seen.add(waiter.id)
    return ordered


def positions(waiters: Iterable[Waiter]) -> dict[int, int]:
    """Each waiter's 1-based place in the queue, by waiter id."""
    return {waiter.id: place for place, waiter in enumerate(queue_order(waiters), start=1)}


class _Pool:
    """The free resources not yet granted or reserved in this call, indexed by tag."""

    def __init__(self, free: Iterable[FreeResource]) -> None:
        self.available: dict[int, frozenset[str]] = {}
        # An index, because the inventory may hold tens of thousands of resources.
        self.by_tag: defaultdict[str, set[int]] = defaultdict(set)
        for resource in free:
            if resource.id in self.available:
                raise ValueError(f"free resource {resource.id} is listed twice")
            self.available[resource.id] = resource.tags
            for tag in resource.tags:
                self.by_tag[tag].add(resource.id)

    def matching(self, waiter: Waiter) -> set[int]:
        if waiter.resource_ids is not None:
            return set(waiter.resource_ids & self.available.keys())
        if not waiter.tags:
            return set(self.available)
        return set.intersection(*(self.by_tag.get(tag, set()) for tag in waiter.tags))

    def remove(self, ids: Iterable[int]) -> None:
        for resource_id in ids:
            for tag in self.available.pop(resource_id):
                self.by_tag[tag].discard(resource_id)


def allocate(
    waiters: Iterable[Waiter], free: Iterable[FreeResource]
) -> list[tuple[Waiter, tuple[int, ...]]]:
    """Which waiters are granted which free resources now, in queue order (ids ascending).

    1. Waiters are walked in `queue_order`. A waiter matches a free resource if its
       `resource_ids` contains it or, without `resource_ids`, the resource carries all its tags.
    2. A waiter is granted only if it can be fully served from the resources still available:
       all of its explicit `resource_ids`, or `count` matching ones (lowest ids first).
       All or nothing.
    3. A waiter that cannot be fully served reserves the available resources it matches: no
       later waiter may take them in this call. A request for N is thus not starved by a stream
       of later requests for one; waiters whose needs are disjoint from it are still served.
    4. The result does not depend on the order of the inputs, never grants a resource twice,
       and every granted resource matches its waiter.

    Raises ValueError when a waiter id or a free resource id is listed twice.
    """
    pool = _Pool(free)
    granted: list[tuple[Waiter, tuple[int, ...]]] = []
    for waiter in queue_order(waiters):
        if not pool.available:
            break  # nothing left to grant or reserve
        matching = pool.matching(waiter)
        if len(matching) >= waiter.count:
            chosen = tuple(heapq.nsmallest(waiter.count, matching))
            granted.append((waiter, chosen))
            pool.remove(chosen)
        else:
            pool.remove(matching)
    return granted


class TtlError(ValueError):
    """A lease time the service refuses; the message is meant for a person."""


def _seconds(value: float) -> str:
    return f"{int(value)} s" if float(value).is_integer() else f"{value} s"


def lease_expiry(
    now: float, ttl: float | None, *, default_ttl: float | None, max_ttl: float | None
) -> float | None:
    """When a lease granted (or renewed) at `now` expires: None for never.

    `ttl` None falls back to `default_ttl`, then to `max_ttl` (the cap applies to leases
    without a TTL too), then to never. A default above the cap is cut to the cap: the client
    asked for nothing, so there is nothing to refuse.

    Raises TtlError when `ttl` is not a positive finite number or exceeds `max_ttl` (refused,
    not silently shortened), and ValueError when `default_ttl` or `max_ttl` is not.
    """
    for name, setting in (("default_ttl", default_ttl), ("max_ttl", max_ttl)):
        if setting is not None and not (math.isfinite(setting) and setting > 0):
            raise ValueError(f"{name} must be a positive number of seconds, not {setting}")
    if ttl is None:
        # The default when set, else the cap; a default above the cap is cut to the cap.
        fallback = min((t for t in (default_ttl, max_ttl) if t is not None), default=None)
        return None if fallback is None else now + fallback
    if not math.isfinite(ttl):
        raise TtlError("ttl must be a finite number of seconds")
    if ttl <= 0:
        raise TtlError("ttl must be positive")
    if max_ttl is not None and ttl > max_ttl:
        raise TtlError(f"ttl {_seconds(ttl)} exceeds the maximum of {_seconds(max_ttl)}")
    return now + ttl


def is_expired(expires_at: float | None, now: float) -> bool:
    """Whether a lease is expired: at or after its deadline, never before (None: never)."""
    return expires_at is not None and expires_at <= now
