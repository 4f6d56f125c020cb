"""When a waiting request will be served: an estimate from past hold times (pure).

The formula (also in docs/api-v2.md, "Queue estimates"). Each resource a waiter could get
gets a time it is expected free, from now:

- free and not in maintenance: 0;
- held: the median hold time of the resource (over the last 30 days) minus how long the
  current hold has lasted, at least 0, and at most until the lease expires when it can;
  with no past hold to go by, until the lease expires; a lease that never expires and has
  no history gives no estimate;
- in maintenance: never (no estimate from it).

The queue is then played forward in serving order: each waiter takes the `count`
earliest-free resources it may have; it is served when the last of them is free, and
holds each for that resource's median hold, after which the next waiter may have it.
A waiter's estimate is its serving time (seconds from now), or None when it cannot be told
(too few resources with a known time). In steady state this is about the median remaining
hold of the current holders plus k x median hold / pool size for the k-th waiter of a
pool, which is what a person would reckon. It ignores priorities arriving later, renewals
and requests served out of order when the allocation lets a later one through.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PoolResource:
    """A resource as the estimate sees it."""

    id: int
    tags: frozenset[str]
    maintenance: bool = False
    #: When the current hold began; None when free.
    held_since: float | None = None
    #: When the current lease expires; None when it does not (or when free).
    expires_at: float | None = None
    #: Its median hold time over the recent past; None when it has none.
    median_hold_s: float | None = None


@dataclass(frozen=True, slots=True)
class QueuedRequest:
    """A waiting request, in serving order: exactly these resources, or `count` with tags."""

    id: int
    count: int
    resource_ids: frozenset[int] | None
    tags: frozenset[str]


def _free_in(resource: PoolResource, now: float) -> float | None:
    """Seconds until the resource is expected free; None: cannot be told."""
    if resource.maintenance:
        return None
    if resource.held_since is None:
        return 0.0
    until_expiry = max(0.0, resource.expires_at - now) if resource.expires_at is not None else None
    if resource.median_hold_s is None:
        return until_expiry
    remaining = max(0.0, resource.median_hold_s - (now - resource.held_since))
    return min(remaining, until_expiry) if until_expiry is not None else remaining


def _may_have(request: QueuedRequest, resource: PoolResource) -> bool:
    if request.resource_ids is not None:
        return resource.id in request.resource_ids
    return request.tags <= resource.tags


def estimate_waits(
    queue: Sequence[QueuedRequest], resources: Sequence[PoolResource], now: float
) -> dict[int, float | None]:
    """Each queued request's expected wait from `now`, in seconds (None: no estimate).

    `queue` is in serving order; `resources` are those the requests may be given."""
    free_at: dict[int, float | None] = {r.id: _free_in(r, now) for r in resources}
    by_id = {r.id: r for r in resources}
    estimates: dict[int, float | None] = {}
    for request in queue:
        known = [
            (at, r.id)
            for r in resources
            if _may_have(request, r) and (at := free_at[r.id]) is not None
        ]
        if request.count < 1 or len(known) < request.count:
            estimates[request.id] = None
            continue
        taken = heapq.nsmallest(request.count, known)
        served = max(at for at, _ in taken)
        estimates[request.id] = served
        for _, resource_id in taken:
            hold = by_id[resource_id].median_hold_s
            # Held for its median after this grant; with no history, nobody can tell when
            # it is free again.
            free_at[resource_id] = served + hold if hold is not None else None
    return estimates
