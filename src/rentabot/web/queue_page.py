"""The queue at the page: `/queue` (every waiting request in serving order), joining it for a
resource or a tag, and leaving it.

Each route declares who may call it and calls one service method; join and cancel are form
POSTs (POST-redirect-GET, same-origin checked by `Locker`). A person who joined is followed
by the page's script (static/page.js), which polls the ticket through the API as the signed-in
person, shows the place moving, and tells them when it is granted; the lease service refuses a
cancel of someone else's ticket.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from starlette.responses import Response

from rentabot.domain.errors import RentabotError
from rentabot.domain.model import Lease
from rentabot.interfaces.auth import Locker, Reader
from rentabot.interfaces.runtime import runtime
from rentabot.service.acquiring import LeaseTerms
from rentabot.web.forms import back_to, bounded_int, form_fields, selection_of, ttl_of
from rentabot.web.pages import render

router = APIRouter(include_in_schema=False)


@router.get("/queue")
async def queue_page(request: Request, caller: Reader) -> Response:
    """Every waiting request in serving order: place, priority, what it asks, who asked,
    since when, and the estimate of when it will be served."""
    entries = await runtime(request).usage.queue_report()
    return render(
        request,
        "queue.html",
        {
            "caller": caller,
            "entries": entries,
            "now": time.time(),
            "notice": (parse_qs(request.url.query).get("done") or [""])[0][:200],
        },
    )


@router.post("/actions/cancel")
async def cancel(request: Request, caller: Locker) -> Response:
    """Leave the queue: the person's own waiting ticket (`ticket_id`); someone else's is
    refused by the lease service."""
    form = await form_fields(request)
    try:
        await runtime(request).leases.cancel(
            bounded_int(form.get("ticket_id"), 0, 0, 2**62), None, caller
        )
    except RentabotError as error:
        return back_to(form, f"Not cancelled: {error.message}")
    return back_to(form, "Cancelled")


#: How long a person may wait in the queue (s), the default, and the longest.
WAIT_DEFAULT = 4 * 3600
WAIT_MAX = 24 * 3600


@router.post("/actions/join")
async def join(request: Request, caller: Locker) -> Response:
    """Ask for a resource (`resource_id`) or `count` by `tag` for `ttl` seconds, waiting up to
    `wait` seconds in the fair queue: the lease at once if it is free and nobody waits first,
    else a ticket owned by the person, whose place the page then follows."""
    form = await form_fields(request)
    terms = LeaseTerms(
        ttl=ttl_of(form),
        wait=float(bounded_int(form.get("wait"), WAIT_DEFAULT, 60, WAIT_MAX)),
        owner=caller.name,
        description="joined the queue at the page",
    )
    try:
        outcome = await runtime(request).leases.request(selection_of(form), terms, caller)
    except RentabotError as error:
        return back_to(form, f"Not queued: {error.message}")
    if isinstance(outcome, Lease):
        names = ", ".join(r.name for r in outcome.resources)
        return back_to(form, f"Reserved {names}: it was free and nobody waited")
    return back_to(form, f"In the queue: place {outcome.position} (ticket {outcome.ticket.id})")
