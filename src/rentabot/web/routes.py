"""Signing in and out of the page (the views are in `pages`, the actions in `actions`).

Each route declares who may call it, like the API's (`interfaces/auth.py`), and calls the same
services.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from rentabot.domain.errors import RentabotError
from rentabot.interfaces.auth import (
    PUBLIC,
    SESSION_COOKIE,
    Anyone,
    check_same_origin,
    is_https,
)
from rentabot.interfaces.runtime import runtime
from rentabot.web.forms import local_path
from rentabot.web.pages import render

router = APIRouter(include_in_schema=False)


@router.get("/signin", dependencies=[Depends(PUBLIC)])
async def sign_in_page(request: Request) -> Response:
    """The sign-in form: a person pastes their personal API key, then goes back to `next`
    (the page that asked them to sign in; a path of this site only)."""
    back = local_path(request.query_params.get("next"))
    return render(request, "signin.html", {"problem": None, "next": back})


@router.post("/signin", dependencies=[Depends(PUBLIC)])
async def sign_in(request: Request) -> Response:
    """Sign in with the key posted by the form: a session cookie, then back to the page.

    The form must come from this server's own page: otherwise another site could sign a
    visitor in as someone else (login CSRF)."""
    check_same_origin(request)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    back = local_path((form.get("next") or ["/"])[0])
    identity = runtime(request).identity
    try:
        signed_in = await identity.sign_in(key)
    except RentabotError as error:
        return render(
            request, "signin.html", {"problem": error.message, "next": back}, status_code=401
        )
    answer = RedirectResponse(back, status_code=303)
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
