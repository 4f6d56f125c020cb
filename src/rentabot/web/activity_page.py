"""The activity view `/activity`: the latest events of the audit trail, newest first, kept
live by page.js from the event stream (it re-fetches this view and swaps the table's body,
so the server stays the one place that decides how an event reads).

Readable by whoever may read the API's `GET /api/v2/events` (`Reader`), through the same
service method.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import APIRouter, Request
from starlette.responses import Response

from rentabot.domain.model import Event
from rentabot.interfaces.auth import Reader
from rentabot.interfaces.runtime import runtime
from rentabot.web.pages import clock, render

router = APIRouter(include_in_schema=False)
#: Events the view shows (the newest ones).
ACTIVITY_LIMIT = 100
#: Longest text of one event's detail (a reason or an owner is hostile, and unbounded).
MAX_DETAIL = 300


@dataclass(frozen=True, slots=True)
class ActivityRow:
    """One event as the activity table shows it."""

    id: int
    at: str
    kind: str
    #: The css class of its kind (`kind-` and the kind, a fixed word of this server's:
    #: prefixed, since a bare `granted` is the page's class of a granted-place alert).
    css: str
    resource_id: int | None
    #: The resource's name (its id when the name is unknown).
    resource: str
    lease_id: int | None
    who: str
    detail: str


def detail_text(detail: Mapping[str, object]) -> str:
    """An event's detail as one line people read (`owner ci-42, expires_at 2026-…`):
    times (`…_at`) as UTC clock times, everything else as text; bounded."""
    parts = []
    for key, value in detail.items():
        if value is None:
            continue
        if key.endswith("_at") and isinstance(value, int | float):
            value = clock(float(value))
        parts.append(f"{key.replace('_', ' ')} {value}")
    text = ", ".join(parts)
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "\u2026"


def activity_row(event: Event, names: Mapping[int, str]) -> ActivityRow:
    """The row of one event (`names`: resources' names by id)."""
    rid = event.resource_id
    return ActivityRow(
        id=event.id,
        at=clock(event.at),
        kind=event.kind.replace("_", " "),
        css="kind-" + event.kind.replace("_", "-"),
        resource_id=rid,
        resource="" if rid is None else names.get(rid, f"#{rid}")[:200],
        lease_id=event.lease_id,
        who=(event.actor or "")[:200],
        detail=detail_text(event.detail),
    )


@router.get("/activity")
async def activity_page(request: Request, caller: Reader) -> Response:
    """The latest `ACTIVITY_LIMIT` events, newest first: time, kind, resource (a link to
    its page), lease, who, detail; live with JavaScript."""
    activity = await runtime(request).admin.activity(limit=ACTIVITY_LIMIT)
    events = activity.events
    return render(
        request,
        "activity.html",
        {
            "caller": caller,
            "events": [activity_row(event, activity.names) for event in events],
            "last": events[0].id if events else 0,
            "limit": ACTIVITY_LIMIT,
        },
    )
