"""The v2 API: leases with TTLs, renewals, fences and request ids; JSON errors with codes.

Tokens travel in the `Authorization: Bearer` header, never in URLs (they would land in
access logs). Domain errors raised here become `{"error": {...}}` in `api/errors.py`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from rentabot.api.runtime import Runtime, runtime
from rentabot.api.v2_schemas import (
    ErrorEnvelope,
    EventOut,
    EventPage,
    ForceReleased,
    ForceReleaseRequest,
    LeaseEnvelope,
    LeaseOut,
    LeaseRequest,
    MaintenanceRequest,
    QueueOut,
    RenewRequest,
    ResourceEnvelope,
    ResourceOut,
    ResourcePage,
    TicketEnvelope,
    TicketOut,
)
from rentabot.domain.errors import NotHolderError
from rentabot.domain.model import MAX_ID, Lease
from rentabot.service.leases import Queued, StillThere
from rentabot.service.leases import Request as LeaseRequestOptions


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
    403: {"model": ErrorEnvelope, "description": "The token does not hold this lease."},
    404: {"model": ErrorEnvelope, "description": "No such lease or resource."},
    422: {"model": ErrorEnvelope, "description": "The request is invalid."},
}

router = APIRouter(prefix="/api/v2", responses={503: {"model": ErrorEnvelope}})


async def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str:
    """The lease token from `Authorization: Bearer <token>` (async: no thread hop)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotHolderError(
            None, None, "Send the lease token in the header `Authorization: Bearer <token>`"
        )
    return token.strip()


TokenDep = Annotated[str, Depends(bearer_token)]


def still_there(request: Request) -> StillThere:
    """Whether the client of `request` is still connected (checked during long-polls)."""

    async def check() -> bool:
        return not await request.is_disconnected()

    return check


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
async def acquire(body: LeaseRequest, app: RuntimeDep, request: Request) -> JSONResponse:
    """Lease the selected resources. With `wait`, wait in the fair queue (priority, then
    arrival): 201 with the lease, or 202 with a ticket to poll after up to 60 s. Retrying
    with the same `request_id` answers what the first call got. 404 when nothing (or not
    enough) matches, 409 when held and not granted in time."""
    outcome = await app.leases.acquire(
        body.select.want(),
        LeaseRequestOptions(
            ttl=body.ttl,
            wait=body.wait,
            priority=body.priority,
            owner=body.owner,
            description=body.description,
            request_id=body.request_id,
        ),
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
    app: RuntimeDep,
    request: Request,
    wait: Annotated[float, Query(ge=0, le=600)] = 30,
) -> JSONResponse:
    """Wait up to `wait` seconds (at most RENTABOT_LONG_POLL_SECONDS) for the grant: 200
    with the lease once granted, 202 with the ticket (and its place) while waiting, 409 once
    it left the queue without a grant."""
    outcome = await app.leases.wait(ticket_id, token, wait, still_there(request))
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
async def cancel_ticket(ticket_id: TicketId, token: TokenDep, app: RuntimeDep) -> TicketEnvelope:
    """Cancel a waiting request; what it had reserved goes to the next in line."""
    ticket = await app.leases.cancel(ticket_id, token)
    return TicketEnvelope(ticket=TicketOut.of(ticket, None), token=ticket.token)


@router.get("/queue", response_model=QueueOut, tags=["queue"], summary="The wait queue")
async def queue(app: RuntimeDep) -> QueueOut:
    """Every waiting request in the order it will be served (no tokens)."""
    waiting = await app.leases.queue()
    return QueueOut(tickets=[TicketOut.of(ticket, place) for ticket, place in waiting])


@router.get(
    "/leases/{lease_id}",
    response_model=LeaseEnvelope,
    responses=ERRORS,
    tags=["leases"],
    summary="Show a lease to its holder",
)
async def get_lease(lease_id: LeaseId, token: TokenDep, app: RuntimeDep) -> LeaseEnvelope:
    """The lease and what it holds; an ended lease shows how it ended and holds nothing."""
    return LeaseEnvelope(lease=LeaseOut.of(await app.leases.get(lease_id, token)))


@router.post(
    "/leases/{lease_id}/renew",
    response_model=LeaseEnvelope,
    responses=ERRORS,
    tags=["leases"],
    summary="Renew a lease before it expires",
)
async def renew(
    lease_id: LeaseId, token: TokenDep, app: RuntimeDep, body: RenewRequest | None = None
) -> LeaseEnvelope:
    """Its deadline becomes now + ttl. An ended or expired lease is refused (403)."""
    lease = await app.leases.renew(lease_id, token, body.ttl if body else None)
    return LeaseEnvelope(lease=LeaseOut.of(lease))


@router.delete(
    "/leases/{lease_id}",
    response_model=LeaseEnvelope,
    responses=ERRORS,
    tags=["leases"],
    summary="Release a lease",
)
async def release(lease_id: LeaseId, token: TokenDep, app: RuntimeDep) -> LeaseEnvelope:
    """Free everything the lease holds. An ended or expired lease is refused (403)."""
    return LeaseEnvelope(lease=LeaseOut.of(await app.leases.release(lease_id, token)))


@router.get(
    "/resources",
    response_model=ResourcePage,
    tags=["resources"],
    summary="List resources, filtered and paged",
)
async def list_resources(
    app: RuntimeDep,
    tag: Annotated[list[str], Query(description="Every tag must match.")] = [],  # noqa: B006
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
    resource_id: ResourceId, body: MaintenanceRequest, app: RuntimeDep
) -> ResourceEnvelope:
    """In maintenance no new lease is granted; a lease already on it runs to its end.
    Back in service, it goes to the queue at once."""
    resource = await app.admin.set_maintenance(
        resource_id, body.on, reason=body.reason, actor=body.actor
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
    resource_id: ResourceId, body: ForceReleaseRequest, app: RuntimeDep
) -> ForceReleased:
    """Ends the whole lease (everything it holds is freed and goes to the queue); its holder's
    token is refused from then on. The reason and actor are recorded in the events."""
    lease_id = await app.admin.force_release(resource_id, reason=body.reason, actor=body.actor)
    return ForceReleased(
        lease_id=lease_id, resource=ResourceOut.of(await app.locks.resource(resource_id))
    )


@router.get("/events", response_model=EventPage, tags=["events"], summary="The audit trail")
async def events(
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


@router.get(
    "/events/stream",
    tags=["events"],
    summary="Live events (server-sent events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def event_stream(
    app: RuntimeDep,
    request: Request,
    since: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    last_event_id: Annotated[int | None, Header(ge=0, le=MAX_ID)] = None,
) -> StreamingResponse:
    """Every new event as it is committed: `id`, `event` (its kind) and `data` (its JSON).
    Reconnecting with `Last-Event-ID` (browsers do) or `?since=` resumes without a gap."""
    cursor = last_event_id if last_event_id is not None else since
    if cursor is None:
        # A new subscriber gets what happens from now on.
        cursor = await app.admin.last_event_id()

    async def stream() -> AsyncIterator[str]:
        position = cursor
        quiet_since = time.monotonic()
        yield "retry: 1000\n\n"
        while not await request.is_disconnected():
            found = await app.admin.events(after=position, limit=500)
            for event in found:
                data = EventOut.of(event).model_dump_json()
                yield f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"
                position = event.id
            if found:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > STREAM_KEEPALIVE_S:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            # Woken by this process's commits; other processes' are seen within 0.5 s.
            await app.database.committed(0.5)

    return StreamingResponse(stream(), media_type="text/event-stream")
