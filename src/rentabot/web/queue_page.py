"""The queue view at `/queue`: every waiting request in serving order, and cancelling one's own.

Each route declares who may call it and calls one service method; the cancel is a form POST
(POST-redirect-GET, same-origin checked by `Locker`) that the lease service refuses for a
ticket of someone else's.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from starlette.responses import Response

from rentabot.domain.errors import RentabotError
from rentabot.interfaces.auth import Locker, Reader
from rentabot.interfaces.runtime import runtime
from rentabot.web.actions import _back, _form, _int
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
    form = await _form(request)
    try:
        await runtime(request).leases.cancel(_int(form.get("ticket_id"), 0, 0, 2**62), None, caller)
    except RentabotError as error:
        return _back(form, f"Not cancelled: {error.message}")
    return _back(form, "Cancelled")
