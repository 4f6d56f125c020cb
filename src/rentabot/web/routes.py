"""The page at `/`: the original's table of resources, readable on a phone; and signing in.

Each route declares who may call it, like the API's (`interfaces/auth.py`), and calls the same
services.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.templating import Jinja2Templates
from starlette.responses import RedirectResponse, Response

from rentabot import __version__
from rentabot.domain.errors import RentabotError
from rentabot.interfaces.auth import (
    PUBLIC,
    SESSION_COOKIE,
    Anyone,
    Reader,
    check_same_origin,
    is_https,
)
from rentabot.interfaces.runtime import runtime

templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
router = APIRouter(include_in_schema=False)


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


templates.env.globals["until"] = until


@router.get("/")
async def index(request: Request, caller: Reader) -> Response:
    """The resource table: name, state, description, endpoint, tags, holder and expiry."""
    app = runtime(request)
    resources = await app.locks.resources()
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "resources": resources,
            "locked_count": sum(1 for r in resources if r.locked),
            "refresh_seconds": app.settings.page_refresh_seconds,
            "version": __version__,
            "caller": caller,
            "now": time.time(),
        },
    )


@router.get("/signin", dependencies=[Depends(PUBLIC)])
async def sign_in_page(request: Request) -> Response:
    """The sign-in form: a person pastes their personal API key."""
    return templates.TemplateResponse(
        request, "signin.html", {"version": __version__, "problem": None}
    )


@router.post("/signin", dependencies=[Depends(PUBLIC)])
async def sign_in(request: Request) -> Response:
    """Sign in with the key posted by the form: a session cookie, then back to the page.

    The form must come from this server's own page: otherwise another site could sign a
    visitor in as someone else (login CSRF)."""
    check_same_origin(request)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    identity = runtime(request).identity
    try:
        signed_in = await identity.sign_in(key)
    except RentabotError as error:
        return templates.TemplateResponse(
            request,
            "signin.html",
            {"version": __version__, "problem": error.message},
            status_code=401,
        )
    answer = RedirectResponse("/", status_code=303)
    answer.set_cookie(
        SESSION_COOKIE,
        signed_in.secret,
        max_age=int(identity.session_ttl),
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    return answer


@router.post("/signout")
async def sign_out(request: Request, caller: Anyone) -> Response:
    """End this browser's session (its cookie is a credential: the same-origin check of
    `Needs` applies), then back to the page."""
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        await runtime(request).identity.sign_out(session)
    answer = RedirectResponse("/", status_code=303)
    answer.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return answer
