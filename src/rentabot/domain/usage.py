"""A resource's history and usage figures, built from its audit events (pure, no I/O).

The audit trail records, per resource: `granted` (actor: the principal; detail: `owner`,
`fence`, `expires_at`), `released` (actor), `expired` (no actor), `force_released` (actor:
the admin; detail: `reason`), `maintenance_on` / `maintenance_off` (actor; detail: `reason`).
Renewals carry only the lease id and are not needed here: a hold ends with its end event.

Events are read for a window only; what began before it is told by the caller (the lease
a hold began under, the resource's current state), so a window's figures never need the
events before it. Times are seconds since the epoch; days are UTC days.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from rentabot.domain.model import Event

DAY_S = 86400.0
#: The event kinds a history is built from.
HISTORY_KINDS = (
    "granted",
    "released",
    "expired",
    "force_released",
    "maintenance_on",
    "maintenance_off",
)
_ENDS = ("released", "expired", "force_released")


@dataclass(frozen=True, slots=True)
class LeaseStart:
    """How a hold began, when its grant is not among the events read (it came earlier)."""

    lease_id: int
    at: float
    owner: str | None
    principal: str | None
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class HoldPeriod:
    """One lease's hold of the resource."""

    lease_id: int
    owner: str | None
    principal: str | None
    #: When it was granted; None when not known (before everything read).
    start: float | None
    #: When it ended; None while still held.
    end: float | None
    #: released, expired, force_released, or held (still).
    ended_by: str
    #: Who ended it (the releasing principal or the admin); None for an expiry.
    end_actor: str | None = None
    #: The admin's reason of a force-release.
    reason: str | None = None
    expires_at: float | None = None

    def duration(self, now: float) -> float | None:
        """Seconds held (until `now` while still held); None when the start is unknown."""
        if self.start is None:
            return None
        return max(0.0, (self.end if self.end is not None else now) - self.start)


@dataclass(frozen=True, slots=True)
class MaintenancePeriod:
    """A time the resource was in maintenance."""

    #: None: it began before everything read.
    start: float | None
    #: None: still in maintenance.
    end: float | None
    reason: str | None
    actor: str | None
    end_actor: str | None = None


@dataclass(frozen=True, slots=True)
class History:
    """A resource's holds and maintenance periods, oldest first."""

    holds: tuple[HoldPeriod, ...]
    maintenance: tuple[MaintenancePeriod, ...]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def build_history(
    events: Iterable[Event],
    *,
    earlier: Mapping[int, LeaseStart] | None = None,
    current: LeaseStart | None = None,
    in_maintenance: bool = False,
) -> History:
    """The holds and maintenance periods the events (of one resource, oldest first) tell.

    `earlier` gives the start of leases whose grant is not among the events; `current` is
    the lease holding the resource now (a hold still open even without its grant among the
    events); `in_maintenance`: the resource is in maintenance now (an open period even
    without its `maintenance_on` among the events). Events of other kinds are ignored.
    """
    earlier = earlier or {}
    holds: list[HoldPeriod] = []
    open_holds: dict[int, HoldPeriod] = {}
    periods: list[MaintenancePeriod] = []
    open_period: MaintenancePeriod | None = None
    for event in events:
        if event.kind == "granted" and event.lease_id is not None:
            open_holds[event.lease_id] = HoldPeriod(
                lease_id=event.lease_id,
                owner=_text(event.detail.get("owner")),
                principal=event.actor,
                start=event.at,
                end=None,
                ended_by="held",
                expires_at=_number(event.detail.get("expires_at")),
            )
        elif event.kind in _ENDS and event.lease_id is not None:
            began = open_holds.pop(event.lease_id, None)
            if began is None:
                known = earlier.get(event.lease_id)
                began = HoldPeriod(
                    lease_id=event.lease_id,
                    owner=known.owner if known else None,
                    principal=known.principal if known else None,
                    start=known.at if known else None,
                    end=None,
                    ended_by="held",
                    expires_at=known.expires_at if known else None,
                )
            holds.append(
                HoldPeriod(
                    lease_id=began.lease_id,
                    owner=began.owner,
                    principal=began.principal,
                    start=began.start,
                    end=event.at,
                    ended_by=event.kind,
                    end_actor=event.actor,
                    reason=_text(event.detail.get("reason")),
                    expires_at=began.expires_at,
                )
            )
        elif event.kind == "maintenance_on":
            if open_period is None:
                open_period = MaintenancePeriod(
                    event.at, None, _text(event.detail.get("reason")), event.actor
                )
        elif event.kind == "maintenance_off":
            began_m = open_period or MaintenancePeriod(None, None, None, None)
            periods.append(
                MaintenancePeriod(
                    began_m.start, event.at, began_m.reason, began_m.actor, event.actor
                )
            )
            open_period = None
    ended = {hold.lease_id for hold in holds}
    if current is not None and current.lease_id not in open_holds.keys() | ended:
        open_holds[current.lease_id] = HoldPeriod(
            lease_id=current.lease_id,
            owner=current.owner,
            principal=current.principal,
            start=current.at,
            end=None,
            ended_by="held",
            expires_at=current.expires_at,
        )
    holds.extend(open_holds.values())
    if open_period is None and in_maintenance:
        open_period = MaintenancePeriod(None, None, None, None)
    if open_period is not None:
        periods.append(open_period)
    return History(
        holds=tuple(sorted(holds, key=_hold_order)),
        maintenance=tuple(sorted(periods, key=lambda p: -math.inf if p.start is None else p.start)),
    )


def _hold_order(hold: HoldPeriod) -> tuple[float, int]:
    return (-math.inf if hold.start is None else hold.start, hold.lease_id)


# ------------------------------------------------------------------------------ figures


def merged(
    intervals: Iterable[tuple[float, float]], start: float, end: float
) -> list[tuple[float, float]]:
    """The intervals clipped to [start, end) and merged where they overlap or touch, in
    order: disjoint, so their lengths add up to the time covered."""
    clipped = sorted((max(a, start), min(b, end)) for a, b in intervals if b > start and a < end)
    found: list[tuple[float, float]] = []
    for a, b in clipped:
        if found and a <= found[-1][1]:
            if b > found[-1][1]:
                found[-1] = (found[-1][0], b)
        else:
            found.append((a, b))
    return found


def union_length(intervals: Iterable[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of [start, end) covered by the intervals, overlaps counted once."""
    return sum(b - a for a, b in merged(intervals, start, end))


def _per_day(
    disjoint: Sequence[tuple[float, float]], days: Sequence[tuple[date, float, float]]
) -> list[float]:
    """Seconds covered by the disjoint, ordered intervals inside each day: one pass over both."""
    covered = [0.0] * len(days)
    first = 0
    for a, b in disjoint:
        while first < len(days) and days[first][2] <= a:
            first += 1
        index = first
        while index < len(days) and days[index][1] < b:
            covered[index] += max(0.0, min(b, days[index][2]) - max(a, days[index][1]))
            index += 1
    return covered


def hold_intervals(
    holds: Iterable[HoldPeriod], since: float, now: float
) -> list[tuple[float, float]]:
    """Each hold as (start, end): an unknown start is `since` (it began before the window),
    an open end is `now`."""
    return [
        (hold.start if hold.start is not None else since, hold.end if hold.end is not None else now)
        for hold in holds
    ]


def median(values: Sequence[float]) -> float | None:
    """The median (mean of the middle two for an even count); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile: the smallest value at least `fraction` of the values
    do not exceed (p90 of 10 values is the 9th smallest); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class DayBusy:
    """The busy fraction of one UTC day (of its part inside the window)."""

    day: date
    busy: float


@dataclass(frozen=True, slots=True)
class UsageFigures:
    """Usage over a window of `days` days ending at `until`."""

    days: int
    since: float
    until: float
    #: How many resources the figures cover (1 for a resource, the tag's size for a tag).
    resources: int
    #: Held resource-time / (resources x window), in [0, 1].
    busy: float
    #: Holds granted inside the window.
    leases: int
    #: Of the holds that ended inside the window (and began inside it: a whole hold).
    median_hold_s: float | None
    p90_hold_s: float | None
    #: From a request's arrival to its grant, of the grants inside the window (an immediate
    #: grant waited 0).
    median_wait_s: float | None
    daily: tuple[DayBusy, ...]


def utc_days(since: float, until: float) -> list[tuple[date, float, float]]:
    """The UTC days [since, until) touches, each with its part inside: (day, start, end)."""
    found: list[tuple[date, float, float]] = []
    start = math.floor(since / DAY_S) * DAY_S
    while start < until:
        end = start + DAY_S
        found.append(
            (datetime.fromtimestamp(start, UTC).date(), max(start, since), min(end, until))
        )
        start = end
    return found


def usage_figures(
    histories: Sequence[History],
    *,
    days: int,
    until: float,
    waits: Iterable[float] = (),
) -> UsageFigures:
    """Figures over the `days` days before `until`, over these resources' histories.

    Each resource's held time is the union of its holds (overlaps, which a consistent
    trail never has, counted once) clipped to the window; the busy fraction divides the
    sum by resources x window. `waits` are the waits (seconds) of the grants in the window.
    """
    since = until - days * DAY_S
    window = until - since
    day_parts = utc_days(since, until)
    count = len(histories)
    held, per_day = 0.0, [0.0] * len(day_parts)
    for history in histories:
        disjoint = merged(hold_intervals(history.holds, since, until), since, until)
        held += sum(b - a for a, b in disjoint)
        per_day = [x + y for x, y in zip(per_day, _per_day(disjoint, day_parts), strict=True)]
    granted = [
        hold
        for history in histories
        for hold in history.holds
        if hold.start is not None and hold.start >= since
    ]
    durations = [
        hold.end - hold.start
        for hold in granted
        if hold.end is not None and hold.start is not None and hold.end <= until
    ]
    daily = tuple(
        DayBusy(day, covered / (count * (end - start)) if count and end > start else 0.0)
        for (day, start, end), covered in zip(day_parts, per_day, strict=True)
    )
    return UsageFigures(
        days=days,
        since=since,
        until=until,
        resources=count,
        busy=held / (count * window) if count and window > 0 else 0.0,
        leases=len(granted),
        median_hold_s=median(durations),
        p90_hold_s=percentile(durations, 0.9),
        median_wait_s=median(list(waits)),
        daily=daily,
    )
