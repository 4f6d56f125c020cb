"""The v2 API: leases with TTLs, renewals, fences and request ids; JSON errors with codes.

Tokens travel in the `Authorization: Bearer` header, never in URLs (they would land in
access logs). A holder may also act on its lease without the token, by its identity (an API
key in `X-API-Key`, or a session). Every route declares the role it needs (`interfaces/auth.py`).
Domain errors raised here become `{"error": {...}}` in `api/errors.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from rentabot.api.v2_schemas import (
    ErrorEnvelope,
    EventOut,
    EventPage,
    ForceReleased,
    ForceReleaseRequest,
    KeyCreated,
    KeyList,
    KeyOut,
    KeyRequest,
    LeaseEnvelope,
    LeaseOut,
    LeaseRequest,
    MaintenanceRequest,
    QueueOut,
    RenewRequest,
    ResourceEnvelope,
    ResourceOut,
    ResourcePage,
    SignedInOut,
    SignInRequest,
    Text,
    TicketEnvelope,
    TicketOut,
    WhoAmI,
)
from rentabot.domain.errors import LimitError, NotHolderError
from rentabot.domain.identity import Role
from rentabot.domain.model import MAX_ID, Event, Lease
from rentabot.interfaces.auth import (
    SESSION_COOKIE,
    Admin,
    Anyone,
    Locker,
    Reader,
    is_https,
)
from rentabot.interfaces.runtime import Runtime, runtime, still_there
from rentabot.service.leases import LeaseTerms, Queued


async def runtime_dependency(request: Request) -> Runtime:
    """The app's runtime. Async: FastAPI runs a plain `def` dependency in a worker thread,
    a hop that cost more than the rest of a renewal."""
    return runtime(request)


RuntimeDep = Annotated[Runtime, Depends(runtime_dependency)]
#: Ids in paths and queries: anything the database cannot hold is refused with 422.
LeaseId = Annotated[int, Path(ge=1, le=MAX_ID)]
TicketId = Annotated[int, Path(ge=1, le=MAX_ID)]
ResourceId = Annotated[int, Path(ge=1, le=MAX_ID)]

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorEnvelope, "description": "An API key is needed, or it is not valid."},
    403: {"model": ErrorEnvelope, "description": "Not yours, or your role does not allow it."},
    404: {"model": ErrorEnvelope, "description": "No such lease or resource."},
    422: {"model": ErrorEnvelope, "description": "The request is invalid."},
}

router = APIRouter(
    prefix="/api/v2",
    responses={
        401: {"model": ErrorEnvelope, "description": "An API key is needed, or is not valid."},
        503: {"model": ErrorEnvelope},
    },
)


async def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str | None:
    """The lease or ticket token from `Authorization: Bearer <token>`; None without one (the
    caller then acts by its identity). Async: no thread hop."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotHolderError(
            None, None, "Send the lease token in the header `Authorization: Bearer <token>`"
        )
    return token.strip()


TokenDep = Annotated[str | None, Depends(bearer_token)]


def _answer(outcome: Lease | Queued) -> JSONResponse:
    if isinstance(outcome, Queued):
        body: BaseModel = TicketEnvelope(
            ticket=TicketOut.of(outcome.ticket, outcome.position), token=outcome.ticket.token
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=202)
    return JSONResponse(LeaseEnvelope(lease=LeaseOut.of(outcome)).model_dump(mode="json"), 201)


@router.post(
    "/leases",
    status_code=201,
    response_model=LeaseEnvelope,
    responses={
        **ERRORS,
        202: {"model": TicketEnvelope, "description": "Waiting in the queue: poll the ticket."},
        409: {"model": ErrorEnvelope, "description": "Held, and not granted in time."},
    },
    tags=["leases"],
    summary="Acquire a lease on resources, all or nothing, waiting in the queue if asked",
)
async def acquire(
    body: LeaseRequest, caller: Locker, app: RuntimeDep, request: Request
) -> JSONResponse:
    """Lease the selected resources. With `wait`, wait in the fair queue (priority, then
    arrival): 201 with the lease, or 202 with a ticket to poll after up to 60 s. Retrying
    with the same `request_id` (yours: each key has its own) answers what the first call
    got; 409 `request_id_conflict` if it asked for something else. 404 when nothing (or not
    enough) matches, 409 when held and not granted in time, 429 when the queue is full."""
    outcome = await app.leases.acquire(
        body.select.selection(),
        LeaseTerms(
            ttl=body.ttl,
            wait=body.wait,
            priority=body.priority,
            owner=body.owner,
            description=body.description,
            request_id=body.request_id,
        ),
        caller,
        still_there(request),
    )
    return _answer(outcome)


@router.get(
    "/tickets/{ticket_id}",
    response_model=LeaseEnvelope,
    responses={
        **ERRORS,
        202: {"model": TicketEnvelope, "description": "Still waiting: poll again."},
        409: {"model": ErrorEnvelope, "description": "Left the queue without a grant."},
    },
    tags=["queue"],
    summary="Poll a waiting request (long-poll)",
)
async def poll_ticket(
    ticket_id: TicketId,
    token: TokenDep,
    caller: Locker,
    app: RuntimeDep,
    request: Request,
    wait: Annotated[float, Query(ge=0, le=600)] = 30,
) -> JSONResponse:
    """Wait up to `wait` seconds (at most RENTABOT_LONG_POLL_SECONDS) for the grant: 200
    with the lease once granted, 202 with the ticket (and its place) while waiting, 409 once
    it left the queue without a grant. With the ticket's token, or as its principal."""
    outcome = await app.leases.wait(ticket_id, token, caller, wait, still_there(request))
    answer = _answer(outcome)
    if not isinstance(outcome, Queued):
        answer.status_code = 200
    return answer


@router.delete(
    "/tickets/{ticket_id}",
    response_model=TicketEnvelope,
    responses=ERRORS,
    tags=["queue"],
    summary="Leave the queue",
)
async def cancel_ticket(
    ticket_id: TicketId, token: TokenDep, caller: Locker, app: RuntimeDep
) -> TicketEnvelope:
    """Cancel a waiting request (with its token, or as its principal); what it had
    reserved goes to the next in line."""
    ticket = await app.leases.cancel(ticket_id, token, caller)
    return TicketEnvelope(ticket=TicketOut.of(ticket, None), token=ticket.token)


@router.get("/queue", response_model=QueueOut, tags=["queue"], summary="The wait queue")
async def queue(caller: Reader, app: RuntimeDep) -> QueueOut:
    """Every waiting request in the order it will be served (no tokens)."""
    waiting = await app.leases.queue()
    return QueueOut(tickets=[TicketOut.of(ticket, place) for ticket, place in waiting])


@router.get(
    "/leases/{lease_id}",
    response_model=LeaseEnvelope,
    responses=ERRORS,
    tags=["leases"],
    summary="Show a lease (its token to its holder only)",
)
async def get_lease(
    lease_id: LeaseId, token: TokenDep, caller: Reader, app: RuntimeDep
) -> LeaseEnvelope:
    """The lease and what it holds; an ended lease shows how it ended and holds nothing.
    Its holder (the token, or its principal) sees its token; anyone else gets `null`."""
    seen = await app.leases.get(lease_id, token, caller)
    return LeaseEnvelope(lease=LeaseOut.of(seen.lease, holder=seen.yours))


@router.post(
    "/leases/{lease_id}/renew",
    response_model=LeaseEnvelope,
    responses=ERRORS,
    tags=["leases"],
    summary="Renew a lease before it expires",
)
async def renew(
    lease_id: LeaseId,
    token: TokenDep,
    caller: Locker,
    app: RuntimeDep,
    body: RenewRequest | None = None,
) -> LeaseEnvelope:
    """Its deadline becomes now + ttl. With the token, or as the lease's principal. An
    ended or expired lease is refused (403)."""
    lease = await app.leases.renew(lease_id, token, caller, body.ttl if body else None)
    return LeaseEnvelope(lease=LeaseOut.of(lease))


@router.delete(
    "/leases/{lease_id}",
    response_model=LeaseEnvelope,
    responses=ERRORS,
    tags=["leases"],
    summary="Release a lease",
)
async def release(
    lease_id: LeaseId, token: TokenDep, caller: Locker, app: RuntimeDep
) -> LeaseEnvelope:
    """Free everything the lease holds. With the token, or as the lease's principal. An
    ended or expired lease is refused (403)."""
    return LeaseEnvelope(lease=LeaseOut.of(await app.leases.release(lease_id, token, caller)))


@router.get(
    "/resources",
    response_model=ResourcePage,
    tags=["resources"],
    summary="List resources, filtered and paged",
)
async def list_resources(
    caller: Reader,
    app: RuntimeDep,
    tag: Annotated[list[Text], Query(description="Every tag must match.")] = [],  # noqa: B006
    state: Literal["available", "locked", "maintenance"] | None = None,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ResourcePage:
    """Resources in id order; `tag` (repeatable) and `state` filter, `offset`/`limit` page."""
    resources, total = await app.locks.resources_page(tuple(tag), state, offset, limit)
    return ResourcePage(
        resources=[ResourceOut.of(r) for r in resources], total=total, offset=offset, limit=limit
    )


@router.post(
    "/resources/{resource_id}/maintenance",
    response_model=ResourceEnvelope,
    responses=ERRORS,
    tags=["admin"],
    summary="Take a resource out of service, or put it back",
)
async def maintenance(
    resource_id: ResourceId, body: MaintenanceRequest, caller: Admin, app: RuntimeDep
) -> ResourceEnvelope:
    """In maintenance no new lease is granted; a lease already on it runs to its end.
    Back in service, it goes to the queue at once. Recorded with the admin's name."""
    resource = await app.admin.set_maintenance(
        resource_id, body.on, reason=body.reason, admin=caller
    )
    return ResourceEnvelope(resource=ResourceOut.of(resource))


@router.post(
    "/resources/{resource_id}/force-release",
    response_model=ForceReleased,
    responses={**ERRORS, 409: {"model": ErrorEnvelope, "description": "It is not held."}},
    tags=["admin"],
    summary="End the lease holding a resource (audited)",
)
async def force_release(
    resource_id: ResourceId, body: ForceReleaseRequest, caller: Admin, app: RuntimeDep
) -> ForceReleased:
    """Ends the whole lease (everything it holds is freed and goes to the queue); its holder's
    token is refused from then on. The reason and the admin's name are recorded."""
    lease_id = await app.admin.force_release(resource_id, reason=body.reason, admin=caller)
    return ForceReleased(
        lease_id=lease_id, resource=ResourceOut.of(await app.locks.resource(resource_id))
    )


@router.get("/events", response_model=EventPage, tags=["events"], summary="The audit trail")
async def events(
    caller: Reader,
    app: RuntimeDep,
    since: Annotated[
        int, Query(ge=0, le=MAX_ID, description="Only events after this event id.")
    ] = 0,
    resource_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    lease_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    """Grants, releases, renewals, expiries, force-releases, maintenance and inventory
    changes, oldest first; page with `since`."""
    found = await app.admin.events(
        after=since, resource_id=resource_id, lease_id=lease_id, limit=limit
    )
    return EventPage(events=[EventOut.of(e) for e in found], last=found[-1].id if found else since)


#: Seconds between comments on an idle stream, so proxies keep it open.
STREAM_KEEPALIVE_S = 15.0


class Subscription(StreamingResponse):
    """An event stream that gives its subscriber's place back however it ends: a client
    gone before the first event (the generator never ran, so its own `finally` would not),
    a cancelled task, or the end of the stream."""

    def __init__(self, content: AsyncIterator[str], leave: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream")
        self._leave = leave

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._leave()


@router.get(
    "/events/stream",
    tags=["events"],
    summary="Live events (server-sent events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def event_stream(
    caller: Reader,
    app: RuntimeDep,
    since: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    last_event_id: Annotated[int | None, Header(ge=0, le=MAX_ID)] = None,
) -> StreamingResponse:
    """Every new event as it is committed: `id`, `event` (its kind) and `data` (its JSON).
    Reconnecting with `Last-Event-ID` (browsers do) or `?since=` resumes without a gap.
    429 `too_many_subscribers` past RENTABOT_MAX_STREAM_SUBSCRIBERS in this process."""
    subscribers = app.subscribers
    if not subscribers.join():
        raise LimitError(
            "too_many_subscribers",
            f"{subscribers.limit} clients already follow the event stream here"
            " (RENTABOT_MAX_STREAM_SUBSCRIBERS); poll GET /api/v2/events instead",
        )
    try:
        # A new subscriber (no cursor) gets what happens from now on.
        follower = await app.feed.subscribe(last_event_id if last_event_id is not None else since)
    except BaseException:
        subscribers.leave()
        raise

    def leave() -> None:
        follower.close()
        subscribers.leave()

    rendered = app.feed.rendered

    async def stream() -> AsyncIterator[str]:
        yield "retry: 1000\n\n"
        while True:
            found = await follower.next(STREAM_KEEPALIVE_S)
            if not found:
                yield ": keep-alive\n\n"
                continue
            # One write per wake-up, however many events it brought; each event rendered
            # once for every subscriber of the process.
            yield "".join(_sse(event, rendered) for event in found)

    return Subscription(stream(), leave)


def _sse(event: Event, rendered: dict[int, str]) -> str:
    """The server-sent-event text of one event, from the feed's cache when there."""
    text = rendered.get(event.id)
    if text is None:
        data = EventOut.of(event).model_dump_json()
        text = rendered[event.id] = f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"
    return text


# ---------------------------------------------------------------------- identities


@router.get(
    "/whoami",
    response_model=WhoAmI,
    tags=["identity"],
    summary="Who the server takes you for",
)
async def whoami(caller: Anyone) -> WhoAmI:
    """Your principal (key name or user; null when anonymous), role, and how you proved it."""
    return WhoAmI.of(caller)


@router.post(
    "/session",
    response_model=SignedInOut,
    responses=ERRORS,
    tags=["identity"],
    summary="Sign in with your personal key (sets a session cookie)",
)
async def sign_in(
    body: SignInRequest, caller: Anyone, app: RuntimeDep, request: Request
) -> JSONResponse:
    """Open a session for the holder of the key: the answer sets the `HttpOnly`,
    `SameSite=Strict` cookie `rentabot_session` (`Secure` over HTTPS). Writes authorised by
    the cookie alone must come from this server's pages, or send `X-CSRF-Token`."""
    signed_in = await app.identity.sign_in(body.key)
    answer = JSONResponse(
        SignedInOut(
            principal=signed_in.principal.subject,
            role=signed_in.principal.role.label,
            expires_at=signed_in.expires_at,
            csrf_token=signed_in.csrf_token,
        ).model_dump(mode="json")
    )
    answer.set_cookie(
        SESSION_COOKIE,
        signed_in.secret,
        max_age=int(app.identity.session_ttl),
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    return answer


@router.delete(
    "/session",
    status_code=204,
    tags=["identity"],
    summary="Sign out (ends the session everywhere)",
)
async def sign_out(caller: Anyone, app: RuntimeDep, request: Request) -> Response:
    """End this browser's session and clear its cookie."""
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        await app.identity.sign_out(session)
    answer = Response(status_code=204)
    answer.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return answer


@router.get("/keys", response_model=KeyList, tags=["identity"], summary="List API keys")
async def list_keys(
    caller: Admin, app: RuntimeDep, revoked: bool = Query(default=False)
) -> KeyList:
    """Every key (name, role, created, last used; never the key), revoked ones with
    `revoked=true`."""
    return KeyList(keys=[KeyOut.of(key) for key in await app.identity.keys(revoked=revoked)])


@router.post(
    "/keys",
    status_code=201,
    response_model=KeyCreated,
    responses={**ERRORS, 409: {"model": ErrorEnvelope, "description": "The name is taken."}},
    tags=["identity"],
    summary="Create an API key (shown once)",
)
async def create_key(body: KeyRequest, caller: Admin, app: RuntimeDep) -> KeyCreated:
    """A new key with a role: `read`, `lock` or `admin`. The secret is in this answer only."""
    key, secret = await app.identity.create_key(body.name, Role.parse(body.role))
    return KeyCreated(key=KeyOut.of(key), secret=secret)


@router.delete(
    "/keys/{name}",
    status_code=204,
    responses=ERRORS,
    tags=["identity"],
    summary="Revoke an API key",
)
async def revoke_key(
    name: Annotated[Text, Path(max_length=100)], caller: Admin, app: RuntimeDep
) -> Response:
    """Refused everywhere within 2 s; the sessions opened with it end too."""
    await app.identity.revoke_key(name)
    return Response(status_code=204)
