"""Upstream rent-a-bot 1.x's reservations under `/api/v1/reservations`
(docs/api-upstream-1x.md, "Reservations"), over service/reservations.py.

FastAPI routes: under /api/v1 their validation errors take 1.x's 422 shape (api/errors.py).
Domain errors take 1.x's bodies here: `{…payload, "message"}` with 1.x's status codes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.responses import Response

from rentabot.api.upstream_shapes import iso_offset, lock_cap
from rentabot.domain.errors import (
    InvalidRequestError,
    LimitError,
    NotFoundError,
    RentabotError,
    ReservationNotFoundError,
    ReservationStateError,
)
from rentabot.interfaces.auth import Locker, Reader
from rentabot.interfaces.responses import json_response
from rentabot.interfaces.runtime import Runtime, runtime
from rentabot.service.reservations import Reservation

router = APIRouter(prefix="/api/v1/reservations", include_in_schema=True)

#: Longest pending wait accepted (a year): 1.x answers 500 from 3e11 s on.
MAX_WAIT_TIME = 366 * 86400
#: Most resources one reservation may ask for.
MAX_QUANTITY = 10_000

Tag = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ReservationRequest(BaseModel):
    """1.x's reservation body; extra fields are ignored, numbers coerced as 1.x does."""

    model_config = ConfigDict(extra="ignore")

    tags: list[Tag] = Field(min_length=1, max_length=50)
    quantity: int = Field(gt=0, le=MAX_QUANTITY)
    max_wait_time: int = Field(default=3600, gt=0, le=MAX_WAIT_TIME)
    ttl: int = Field(default=3600, gt=0)


async def _runtime(request: Request) -> Runtime:
    return runtime(request)


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


def _time(value: float | None) -> str | None:
    return iso_offset(value) if value is not None else None


def _shape(reservation: Reservation) -> dict[str, object]:
    """A reservation with 1.x's field names."""
    return {
        "reservation_id": reservation.reservation_id,
        "status": reservation.status,
        "tags": list(reservation.tags),
        "quantity": reservation.quantity,
        "ttl": int(reservation.ttl) if reservation.ttl is not None else None,
        "position_in_queue": reservation.position_in_queue,
        "created_at": _time(reservation.created_at),
        "expires_at": _time(reservation.expires_at),
        "fulfilled_at": _time(reservation.fulfilled_at),
        "claim_expires_at": _time(reservation.claim_expires_at),
        "claimed_at": _time(reservation.claimed_at),
        "resource_ids": list(reservation.resource_ids) if reservation.resource_ids else None,
        "lock_tokens": list(reservation.lock_tokens) if reservation.lock_tokens else None,
    }


def _refused(error: RentabotError, body: ReservationRequest | None = None) -> Response:
    """1.x's answer to a domain error of a reservation call."""
    if isinstance(error, ReservationNotFoundError):
        return json_response(
            404, {"reservation_id": error.reservation_id, "message": error.message}
        )
    if isinstance(error, ReservationStateError):
        return json_response(
            410 if error.gone else 409,
            {
                "reservation_id": error.reservation_id,
                "status": error.status,
                "message": error.message,
            },
        )
    if isinstance(error, NotFoundError) and body is not None:
        return json_response(404, {"tags": body.tags, "message": error.message})
    if isinstance(error, InvalidRequestError) and body is not None:
        return json_response(
            400,
            {
                "tags": body.tags,
                "quantity": body.quantity,
                "ttl": body.ttl,
                "message": error.message,
            },
        )
    if isinstance(error, LimitError):
        return json_response(429, {"message": error.message})
    raise error


@router.post("", status_code=201)
async def create_reservation(body: ReservationRequest, caller: Locker, app: RuntimeDep) -> Response:
    """Reserve `quantity` resources carrying all `tags` (pending until fulfilled)."""
    cap = lock_cap(app.settings.max_ttl)
    if body.ttl > cap:
        return json_response(
            400,
            {
                "tags": body.tags,
                "quantity": body.quantity,
                "ttl": body.ttl,
                "max_lock_duration": cap,
                "message": f"ttl {body.ttl} is longer than the longest lock ({cap} s)",
            },
        )
    try:
        made = await app.reservations.reserve(
            tuple(body.tags), body.quantity, body.ttl, body.max_wait_time, caller
        )
    except RentabotError as error:
        return _refused(error, body)
    return json_response(201, _shape(made))


@router.get("")
async def list_reservations(caller: Reader, app: RuntimeDep) -> Response:
    """The caller's reservations (an anonymous caller's are found only by id)."""
    found = await app.reservations.list_mine(caller)
    return json_response(200, {"reservations": [_shape(r) for r in found]})


@router.get("/{reservation_id}")
async def get_reservation(reservation_id: str, caller: Reader, app: RuntimeDep) -> Response:
    """One of the caller's reservations."""
    try:
        return json_response(200, _shape(await app.reservations.get(reservation_id, caller)))
    except RentabotError as error:
        return _refused(error)


@router.delete("/{reservation_id}")
async def cancel_reservation(reservation_id: str, caller: Locker, app: RuntimeDep) -> Response:
    """Withdraw a pending reservation (204)."""
    try:
        await app.reservations.cancel(reservation_id, caller)
    except RentabotError as error:
        return _refused(error)
    return Response(status_code=204)


@router.post("/{reservation_id}/claim")
async def claim_reservation(reservation_id: str, caller: Locker, app: RuntimeDep) -> Response:
    """Claim a fulfilled reservation: its locks now last the reservation's ttl."""
    try:
        return json_response(200, _shape(await app.reservations.claim(reservation_id, caller)))
    except RentabotError as error:
        return _refused(error)
