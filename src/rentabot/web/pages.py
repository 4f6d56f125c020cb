"""The pages people read: the resource view at `/` (filters, sort, server-side paging).

Each route declares who may call it, like the API's, and calls one service method. Every
page is sent with a Content-Security-Policy that allows this server's own scripts and styles
only, so text that slipped through escaping still could not run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from rentabot import __version__
from rentabot.domain.errors import RentabotError
from rentabot.domain.identity import Principal, Role, csrf_token
from rentabot.interfaces.auth import PUBLIC, SESSION_COOKIE, Reader
from rentabot.interfaces.runtime import runtime
from rentabot.web.usage_view import usage_view
from rentabot.web.views import (
    DURATION_CHOICES,
    PAGE_SIZES,
    SORTS,
    STATES,
    WAIT_CHOICES,
    Filters,
    snippets,
    state_label,
    web_link,
)

templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).with_name("static")
#: The only files served from web/static, with their types (no directory listing, no path).
STATIC_FILES = {
    "page.css": "text/css",
    "page.js": "text/javascript",
    "waiting.js": "text/javascript",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
    " frame-ancestors 'none'"
)


def until(expires_at: float | None, now: float) -> str:
    """When a lease expires, as a person reads it: never, now, or in so long."""
    if expires_at is None:
        return "never"
    left = expires_at - now
    if left <= 0:
        return "now"
    if left < 120:
        return f"in {left:.0f} s"
    if left < 7200:
        return f"in {left / 60:.0f} min"
    return f"in {left / 3600:.1f} h"


def clock(at: float | None) -> str:
    """A moment as a person reads it (UTC, to the second)."""
    if at is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


templates.env.globals.update(
    until=until,
    clock=clock,
    web_link=web_link,
    state_label=state_label,
    durations=DURATION_CHOICES,
    waits=WAIT_CHOICES,
)


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    """A page, with what every page shows (who is signed in, the CSRF token) and the CSP."""
    caller: Principal | None = context.get("caller")
    session = request.cookies.get(SESSION_COOKIE)
    signed_in = caller is not None and caller.via == "session" and session
    context = {
        "version": __version__,
        "may_lock": caller is not None and caller.may(Role.LOCK),
        "is_admin": caller is not None and caller.may(Role.ADMIN),
        # Whose places in the queue the page's script follows (waiting.js).
        "me": caller.subject if caller is not None and caller.authenticated else "",
        "csrf": csrf_token(session) if signed_in and session else "",
        "now": time.time(),
        **context,
    }
    answer = templates.TemplateResponse(request, name, context, status_code=status_code)
    secure(answer)
    return answer


def secure(answer: Response) -> None:
    """The headers every page carries."""
    answer.headers["Content-Security-Policy"] = CSP
    answer.headers["X-Content-Type-Options"] = "nosniff"
    answer.headers["Referrer-Policy"] = "same-origin"


@router.get("/")
async def index(request: Request, caller: Reader) -> Response:
    """The resource view: state, holder, since, expiry, fence, tags, endpoint; filtered by
    tag, state, holder, "mine" and text, sorted and paged in the database."""
    filters = Filters.of(parse_qs(request.url.query))
    holder = caller.subject if filters.mine and caller.authenticated else filters.holder
    resources, total, waiting = await runtime(request).locks.browse(
        filters.tags,
        filters.state,
        holder,
        filters.text,
        filters.sort,
        filters.offset,
        filters.size,
    )
    pages = max(1, -(-total // filters.size))
    return render(
        request,
        "index.html",
        {
            "caller": caller,
            "resources": resources,
            "total": total,
            "waiting": waiting,
            "filters": filters,
            "pages": pages,
            "states": STATES,
            "sorts": SORTS,
            "sizes": PAGE_SIZES,
            "notice": (parse_qs(request.url.query).get("done") or [""])[0][:200],
        },
    )


@router.get("/resources/{resource_id}")
async def resource_page(request: Request, resource_id: int, caller: Reader) -> Response:
    """One resource: description, endpoint, properties, holder and lease, the lines that
    lock it, and (where the usage figures are wired in) its history and usage."""
    try:
        report = await runtime(request).usage.resource_report(resource_id)
    except RentabotError as error:
        return render(request, "missing.html", {"caller": caller, "problem": error.message}, 404)
    resource = report.resource
    usage = usage_view(resource.name, report.figures, report.history, time.time())
    return render(
        request,
        "resource.html",
        {
            "caller": caller,
            "r": resource,
            "usage": usage,
            "filters": Filters(),
            "queue": report.queue,
            "snippets": snippets(str(request.base_url), resource=resource),
            "notice": (parse_qs(request.url.query).get("done") or [""])[0][:200],
        },
    )


@router.get("/static/{name}", dependencies=[Depends(PUBLIC)])
async def static(name: str) -> Response:
    """The page's own scripts and styles (vendored: the page needs nothing from elsewhere)."""
    kind = STATIC_FILES.get(name)
    if kind is None:
        return Response("not found", status_code=404, media_type="text/plain")
    answer = Response((STATIC / name).read_bytes(), media_type=kind)
    answer.headers["Cache-Control"] = "no-cache"
    answer.headers["X-Content-Type-Options"] = "nosniff"
    return answer
