"""The v2 API's history, usage figures and queue estimates (read only: role Reader).

Figures cover the last 7 or 30 days (any whole number of days from 1 to 90); times are
seconds since the epoch, durations seconds, fractions in [0, 1]. Errors are shaped in
`api/errors.py` (an unknown resource or tag: 404; a window out of bounds: 422).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from rentabot.api.v2 import ERRORS, ResourceId, RuntimeDep
from rentabot.api.v2_schemas import ErrorEnvelope, Text
from rentabot.domain.usage import HoldPeriod, MaintenancePeriod, UsageFigures
from rentabot.interfaces.auth import Reader
from rentabot.service.usage import MAX_DAYS, MAX_HISTORY, MIN_DAYS

router = APIRouter(
    prefix="/api/v2",
    responses={
        401: {"model": ErrorEnvelope, "description": "An API key is needed, or is not valid."},
        503: {"model": ErrorEnvelope},
    },
)

Days = Annotated[
    int, Query(ge=MIN_DAYS, le=MAX_DAYS, description="The window, in days (7 and 30 are shown).")
]


class HoldOut(BaseModel):
    """One lease's hold of a resource."""

    lease_id: int
    owner: str | None
    principal: str | None
    #: None: began before the trail read.
    start: float | None
    #: None: still held.
    end: float | None
    duration_s: float | None
    #: released, expired, force_released, held
    ended_by: str
    end_actor: str | None
    reason: str | None

    @classmethod
    def of(cls, hold: HoldPeriod, now: float) -> HoldOut:
        """The public view of a hold (no token)."""
        return cls(
            lease_id=hold.lease_id,
            owner=hold.owner,
            principal=hold.principal,
            start=hold.start,
            end=hold.end,
            duration_s=hold.duration(now),
            ended_by=hold.ended_by,
            end_actor=hold.end_actor,
            reason=hold.reason,
        )


class MaintenanceOut(BaseModel):
    """A maintenance period."""

    start: float | None
    end: float | None
    reason: str | None
    actor: str | None
    end_actor: str | None

    @classmethod
    def of(cls, period: MaintenancePeriod) -> MaintenanceOut:
        """The public view of a maintenance period."""
        return cls(
            start=period.start,
            end=period.end,
            reason=period.reason,
            actor=period.actor,
            end_actor=period.end_actor,
        )


class HistoryOut(BaseModel):
    """A resource's latest holds and maintenance periods, oldest first."""

    resource_id: int
    holds: list[HoldOut]
    maintenance: list[MaintenanceOut]


class DayOut(BaseModel):
    """The busy fraction of one UTC day."""

    day: date
    busy: float


class UsageOut(BaseModel):
    """Usage over a window."""

    days: int
    since: float
    until: float
    resources: int
    busy: float
    leases: int
    median_hold_s: float | None
    p90_hold_s: float | None
    median_wait_s: float | None
    daily: list[DayOut]

    @classmethod
    def of(cls, figures: UsageFigures) -> UsageOut:
        """The public view of the figures."""
        return cls(
            days=figures.days,
            since=figures.since,
            until=figures.until,
            resources=figures.resources,
            busy=figures.busy,
            leases=figures.leases,
            median_hold_s=figures.median_hold_s,
            p90_hold_s=figures.p90_hold_s,
            median_wait_s=figures.median_wait_s,
            daily=[DayOut(day=d.day, busy=d.busy) for d in figures.daily],
        )


class ResourceUsageOut(UsageOut):
    """A resource's usage."""

    resource_id: int


class TagUsageOut(UsageOut):
    """A tag's usage, over its resources."""

    tag: str


class TagsUsageOut(BaseModel):
    """Every tag's usage."""

    tags: list[TagUsageOut]


class EstimateOut(BaseModel):
    """When a waiting ticket is expected to be served."""

    ticket_id: int
    #: Seconds from now; None when it cannot be told.
    wait_s: float | None


class EstimatesOut(BaseModel):
    """Every waiting ticket's estimate, in serving order, and how they are reckoned."""

    estimates: list[EstimateOut]
    method: str


ESTIMATE_METHOD = (
    "Each resource is expected free after its median hold (last 7 days) minus its current"
    " hold's age (at most until its lease expires); the queue is played forward in serving"
    " order, each request taking its earliest-free eligible resources for their median hold."
)


@router.get(
    "/resources/{resource_id}/history",
    response_model=HistoryOut,
    responses=ERRORS,
    tags=["usage"],
    summary="A resource's holds and maintenance periods",
)
async def resource_history(
    caller: Reader,
    app: RuntimeDep,
    resource_id: ResourceId,
    limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = 50,
) -> HistoryOut:
    """Who held it, when, how long, how it ended; maintenance with its reasons."""
    found = await app.usage.resource_history(resource_id, limit)
    now = app.usage.now()
    return HistoryOut(
        resource_id=resource_id,
        holds=[HoldOut.of(hold, now) for hold in found.history.holds],
        maintenance=[MaintenanceOut.of(p) for p in found.history.maintenance],
    )


@router.get(
    "/resources/{resource_id}/usage",
    response_model=ResourceUsageOut,
    responses=ERRORS,
    tags=["usage"],
    summary="A resource's usage figures",
)
async def resource_usage(
    caller: Reader, app: RuntimeDep, resource_id: ResourceId, days: Days = 7
) -> ResourceUsageOut:
    """Busy fraction, leases, median and p90 hold, median wait, busy fraction per day."""
    figures = await app.usage.resource_usage(resource_id, days)
    return ResourceUsageOut(resource_id=resource_id, **UsageOut.of(figures).model_dump())


@router.get(
    "/tags/{tag}/usage",
    response_model=TagUsageOut,
    responses=ERRORS,
    tags=["usage"],
    summary="A tag's usage figures, over its resources",
)
async def tag_usage(
    caller: Reader,
    app: RuntimeDep,
    tag: Annotated[Text, Path(min_length=1, max_length=200)],
    days: Days = 7,
) -> TagUsageOut:
    """The figures of every resource carrying the tag, together: busy is held
    resource-time over resources x window."""
    figures = await app.usage.tag_usage(tag, days)
    return TagUsageOut(tag=tag, **UsageOut.of(figures).model_dump())


@router.get("/tags/usage", response_model=TagsUsageOut, tags=["usage"], summary="Every tag's usage")
async def tags_usage(caller: Reader, app: RuntimeDep, days: Days = 7) -> TagsUsageOut:
    """Every tag's figures, in tag order."""
    found = await app.usage.tags_usage(days)
    return TagsUsageOut(
        tags=[TagUsageOut(tag=tag, **UsageOut.of(f).model_dump()) for tag, f in found.items()]
    )


@router.get(
    "/queue/estimates",
    response_model=EstimatesOut,
    tags=["queue"],
    summary="When each waiting request is expected to be served",
)
async def queue_estimates(caller: Reader, app: RuntimeDep) -> EstimatesOut:
    """Seconds from now per waiting ticket, in serving order (null: cannot be told)."""
    found = await app.usage.queue_estimates()
    return EstimatesOut(
        estimates=[EstimateOut(ticket_id=t, wait_s=s) for t, s in found.items()],
        method=ESTIMATE_METHOD,
    )
