"""Who may call each route: one dependency, `Needs(role)`, declared by every route.

A request proves who it is with an API key (`X-API-Key`), a session cookie (a person who
signed in with their key), or a single-sign-on proxy's header (honoured only from the
trusted proxies); otherwise it is anonymous and gets RENTABOT_ANONYMOUS_ROLE. An invalid key
is refused, never taken for anonymous. A cookie or a proxy's header is a credential the
browser sends by itself, so a state change authorised by one must come from this server's
own origin (`Origin`) or carry the session's CSRF token (`X-CSRF-Token`).

FastAPI routes declare `dependencies=[Depends(Needs(Role.X))]` (or take the principal as a
parameter through it); the original's Starlette routes are wrapped by `guard`. A test walks
the app's route table and fails on any route that declares neither.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Protocol, cast
from urllib.parse import urlsplit

from fastapi import Depends
from starlette.requests import Request
from starlette.responses import Response

from rentabot.domain.errors import CrossOriginError, RentabotError
from rentabot.domain.identity import Principal, Role, csrf_token, same_secret
from rentabot.interfaces.runtime import runtime

#: The cookie that carries a signed-in person's session id.
SESSION_COOKIE = "rentabot_session"
#: Methods that change nothing, so an ambient credential may authorise them from anywhere.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PRINCIPAL = "rentabot.principal"


async def identify(request: Request) -> Principal:
    """Who sent the request (worked out once per request). Raises UnauthenticatedError for
    an API key that is unknown or revoked."""
    scope = request.scope
    known = scope.get(_PRINCIPAL)
    if known is not None:
        return cast(Principal, known)
    identity = runtime(request).identity
    # One pass over the raw headers: this runs on every request, the lock path included.
    key: bytes | None = None
    cookie = False
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            key = value
        elif name == b"cookie":
            cookie = True
    principal: Principal | None = None
    if key is not None:
        principal = await identity.authenticate_key(key.decode("latin-1"))
    else:
        if cookie:
            session = request.cookies.get(SESSION_COOKIE)
            if session:
                principal = await identity.session(session)
        proxy = identity.proxy
        if principal is None and proxy.header is not None:
            headers = request.headers
            groups = headers.get(proxy.groups_header) if proxy.groups_header else None
            principal = proxy.principal(_peer(request), headers.get(proxy.header), groups)
    if principal is None:
        principal = identity.anonymous
    scope[_PRINCIPAL] = principal
    return principal


def _own_hosts(request: Request) -> set[str]:
    """The host[:port] this server answers as: the Host header, and what a trusted proxy
    says the browser asked for (X-Forwarded-Host)."""
    hosts = {request.headers.get("host", "").lower()}
    forwarded = request.headers.get("x-forwarded-host")
    if forwarded and _from_trusted_proxy(request):
        hosts.add(forwarded.split(",")[0].strip().lower())
    return hosts - {""}


def _peer(request: Request) -> str | None:
    """The TCP peer's address (serve runs uvicorn without proxy headers: never a header's)."""
    return request.client.host if request.client else None


def _from_trusted_proxy(request: Request) -> bool:
    return runtime(request).identity.proxy.trusts(_peer(request))


def is_https(request: Request) -> bool:
    """Whether the browser reached this server over HTTPS: directly, or through a trusted
    proxy that says so (X-Forwarded-Proto)."""
    if request.url.scheme == "https":
        return True
    forwarded = request.headers.get("x-forwarded-proto", "")
    return forwarded.lower() == "https" and _from_trusted_proxy(request)


def check_same_origin(request: Request, principal: Principal | None = None) -> None:
    """Refuse (CrossOriginError) a write authorised by an ambient credential unless it
    comes from this server's own pages: the session's CSRF token, or an `Origin` whose
    host and port are this server's. Browsers send `Origin` with every POST, PUT and
    DELETE; two ports of one host are different origins (though the same *site*, which is
    why SameSite cookies alone do not stop them)."""
    # The token counts only for the session that authorised the request: a page on a
    # sibling port can plant a cookie of its own choosing, whose token it can compute.
    session = request.cookies.get(SESSION_COOKIE)
    sent_token = request.headers.get("x-csrf-token")
    signed_in = principal is not None and principal.via == "session"
    if signed_in and session and sent_token and same_secret(sent_token, csrf_token(session)):
        return
    origin = request.headers.get("origin")
    if origin and origin != "null":
        netloc = urlsplit(origin).netloc.lower()
        if netloc and netloc in _own_hosts(request):
            return
    raise CrossOriginError(
        "Refused: this change is authorised only by your browser's sign-in, and it does not"
        " come from this server's own page (send an API key, or the X-CSRF-Token header)"
    )


class Needs:
    """The dependency every route declares: the least role its caller needs.

    Returns the caller's principal; raises UnauthenticatedError (401), ForbiddenError (403),
    or CrossOriginError (403) for a cross-origin write authorised only by a cookie.
    """

    def __init__(self, role: Role) -> None:
        self.role = role

    def __repr__(self) -> str:
        return f"Needs({self.role.label})"

    async def __call__(self, request: Request) -> Principal:
        principal = await identify(request)
        principal.require(self.role)
        if principal.ambient and request.method not in SAFE_METHODS:
            check_same_origin(request, principal)
        return principal


#: One instance per role, so routes and the route-table test share them.
PUBLIC = Needs(Role.NONE)
READ = Needs(Role.READ)
LOCK = Needs(Role.LOCK)
ADMIN = Needs(Role.ADMIN)

#: A FastAPI route parameter giving the caller, checked for each role.
Reader = Annotated[Principal, Depends(READ)]
Locker = Annotated[Principal, Depends(LOCK)]
Admin = Annotated[Principal, Depends(ADMIN)]
Anyone = Annotated[Principal, Depends(PUBLIC)]


class Guarded(Protocol):
    """A Starlette endpoint that checks its caller first; `needs` says for what."""

    needs: Needs

    def __call__(self, request: Request) -> Awaitable[Response]: ...


def guard(
    needs: Needs,
    handler: Callable[[Request, Principal], Awaitable[Response]],
    refused: Callable[[RentabotError], Response],
) -> Guarded:
    """A plain Starlette endpoint (the original's routes) that checks its caller with
    `needs`, answers `refused(error)` when it may not call, and else runs the handler with
    the principal."""

    async def endpoint(request: Request) -> Response:
        try:
            principal = await needs(request)
        except RentabotError as error:
            return refused(error)
        return await handler(request, principal)

    endpoint.__doc__ = handler.__doc__
    endpoint.__name__ = handler.__name__
    guarded = cast(Guarded, endpoint)
    guarded.needs = needs
    return guarded
