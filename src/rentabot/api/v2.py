"""The v2 API: leases with TTLs, renewals, fences and request ids; JSON errors with codes.

Tokens travel in the `Authorization: Bearer` header, never in URLs (they would land in
access logs). Domain errors raised here become `{"error": {...}}` in `api/errors.py`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query
from starlette.concurrency import run_in_threadpool

from rentabot.api.runtime import Runtime, runtime
from rentabot.api.v2_schemas import (
    ErrorEnvelope,
    LeaseEnvelope,
    LeaseOut,
    LeaseRequest,
    RenewRequest,
    ResourceOut,
    ResourcePage,
)
from rentabot.domain.errors import NotHolderError

RuntimeDep = Annotated[Runtime, Depends(runtime)]

ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorEnvelope, "description": "The token does not hold this lease."},
    404: {"model": ErrorEnvelope, "description": "No such lease or resource."},
    422: {"model": ErrorEnvelope, "description": "The request is invalid."},
}

router = APIRouter(prefix="/api/v2", responses={503: {"model": ErrorEnvelope}})


def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str:
    """The lease token from `Authorization: Bearer <token>`."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotHolderError(
            None, None, "Send the lease token in the header `Authorization: Bearer <token>`"
        )
    return token.strip()


TokenDep = Annotated[str, Depends(bearer_token)]


@router.post(
    "/leases",
    status_code=201,
    response_model=LeaseEnvelope,
    responses={
        **ERRORS,
        409: {"model": ErrorEnvelope, "description": "Everything that matches is held."},
    },
    tags=["leases"],
    summary="Acquire a lease on resources, all or nothing",
)
async def acquire(body: LeaseRequest, app: RuntimeDep) -> LeaseEnvelope:
    """Lease the selected resources now. Retrying with the same `request_id` returns the
    same lease. 404 when nothing (or not enough) matches, 409 when it is held."""
    lease = await app.leases.acquire(
        body.select.want(),
        ttl=body.ttl,
        owner=body.owner,
        description=body.description,
        request_id=body.request_id,
    )
    return LeaseEnvelope(lease=LeaseOut.of(lease))


@router.get(
    "/leases/{lease_id}",
    response_model=LeaseEnvelope,
    responses=ERRORS,
    tags=["leases"],
    summary="Show a lease to its holder",
)
async def get_lease(lease_id: int, token: TokenDep, app: RuntimeDep) -> LeaseEnvelope:
    """The lease and what it holds; an ended lease shows how it ended and holds nothing."""
    return LeaseEnvelope(lease=LeaseOut.of(app.leases.get(lease_id, token)))


@router.post(
    "/leases/{lease_id}/renew",
    response_model=LeaseEnvelope,
    responses=ERRORS,
    tags=["leases"],
    summary="Renew a lease before it expires",
)
async def renew(
    lease_id: int, token: TokenDep, app: RuntimeDep, body: RenewRequest | None = None
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
async def release(lease_id: int, token: TokenDep, app: RuntimeDep) -> LeaseEnvelope:
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
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ResourcePage:
    """Resources in id order; `tag` (repeatable) and `state` filter, `offset`/`limit` page."""
    resources, total = await run_in_threadpool(
        app.locks.resources_page, tuple(tag), state, offset, limit
    )
    return ResourcePage(
        resources=[ResourceOut.of(r) for r in resources], total=total, offset=offset, limit=limit
    )
