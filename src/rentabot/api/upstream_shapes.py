"""Upstream rent-a-bot 1.x's answer shapes (`/api/v1`): its resource object, its error
bodies, its validation errors. Shared by api/upstream.py and api/upstream_reservations.py.

1.x shows every holder's token to everyone, in listings and in 403 bodies; here a
non-holder sees `"hidden"` (the holders' real tokens only with RENTABOT_EXPOSE_LOCK_TOKENS).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from starlette.responses import Response

from rentabot.api.errors import HIDDEN_TOKEN, v1_error
from rentabot.domain.errors import (
    AlreadyReleasedError,
    BusyError,
    ForbiddenError,
    InvalidRequestError,
    LimitError,
    NotFoundError,
    NotHolderError,
    RentabotError,
    UnauthenticatedError,
)
from rentabot.domain.model import Resource, V1Selection
from rentabot.interfaces.responses import json_response

#: 1.x's `max-lock-duration`: the longest a lock may last in all, lock and extensions (s).
UPSTREAM_MAX_LOCK_DURATION = 86400
#: 1.x's lease time of a lock that asks for none (s).
UPSTREAM_DEFAULT_TTL = 3600


def iso_z(at: float | None) -> str | None:
    """1.x's resource timestamps: ISO 8601 in UTC with a `Z` (None stays None)."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).replace(tzinfo=None).isoformat() + "Z"


def iso_offset(at: float | None) -> str | None:
    """1.x's timestamps of lock and extend answers: ISO 8601 with `+00:00`."""
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


def lock_cap(max_ttl: float | None) -> int:
    """The `max-lock-duration` served: 1.x's, or RENTABOT_MAX_TTL when that is lower."""
    if max_ttl is None or max_ttl >= UPSTREAM_MAX_LOCK_DURATION:
        return UPSTREAM_MAX_LOCK_DURATION
    return int(max_ttl)


def upstream_resource(resource: Resource, cap: int, token: str | None = None) -> dict[str, object]:
    """1.x's resource object. A held one shows `token` (its holder's own answer, or the
    operator exposes tokens), else `"hidden"`; a free one `""`, as 1.x."""
    holder = resource.holder
    shown = (token or HIDDEN_TOKEN) if holder is not None else ""
    return {
        "id": resource.id,
        "name": resource.name,
        "description": resource.description,
        "lock-token": shown,
        "lock-details": resource.lock_details,
        "endpoint": resource.endpoint,
        "tags": ",".join(resource.tags),
        "lock-acquired-at": iso_z(holder.acquired_at) if holder is not None else None,
        "lock-expires-at": iso_z(holder.expires_at) if holder is not None else None,
        "max-lock-duration": cap,
    }


def validation_error(problems: Sequence[Mapping[str, object]]) -> Response:
    """1.x's (FastAPI's) 422: `{"detail": [{type, loc, msg, input}]}`."""
    return json_response(422, {"detail": [dict(problem) for problem in problems]})


def problem(kind: str, loc: Sequence[str | int], msg: str, given: object) -> dict[str, object]:
    """One item of a 422's `detail`."""
    return {"type": kind, "loc": list(loc), "msg": msg, "input": given}


def upstream_error(
    error: RentabotError,
    cap: int,
    *,
    resource_id: int | None = None,
    tokens: Mapping[int, str] | None = None,
    unlocked_message: str = "Resource is already unlocked",
    bad_token_message: str = "Cannot unlock resource, the lock token is not valid.",
) -> Response:
    """1.x's answer to a domain error: `{…payload, "message"}`, busy and token errors 403.
    `resource_id` is the path's id (or, for a lock by name, the named resource's), when the
    call has one; the messages of a free resource and a wrong token differ by call."""
    if isinstance(error, UnauthenticatedError | ForbiddenError | LimitError):
        return v1_error(error, None, {})  # no such answers in 1.x: rentabot's own
    if isinstance(error, NotFoundError):
        selector = error.selector
        if isinstance(selector, V1Selection):
            if selector.tags:
                return json_response(404, {"tags": list(selector.tags), "message": error.message})
            if selector.name is not None:
                return json_response(
                    404, {"resource_name": selector.name, "message": error.message}
                )
            shown = selector.resource_id if selector.resource_id is not None else resource_id
            return json_response(404, {"resource_id": shown, "message": error.message})
        return json_response(404, {"resource_id": resource_id, "message": error.message})
    if isinstance(error, BusyError):
        selector = error.selector
        if isinstance(selector, V1Selection) and selector.tags:
            return json_response(
                403,
                {
                    "tags": list(selector.tags),
                    "message": "No available resource found matching the tag(s)",
                },
            )
        shown_id = selector.resource_id if isinstance(selector, V1Selection) else None
        return json_response(
            403,
            {
                "resource_id": shown_id if shown_id is not None else resource_id,
                "message": "Cannot lock the requested resource, resource is already locked",
            },
        )
    if isinstance(error, AlreadyReleasedError):
        return json_response(403, {"resource_id": error.resource_id, "message": unlocked_message})
    if isinstance(error, NotHolderError) and error.resource is not None:
        shown_token = (tokens or {}).get(error.resource.id)
        return json_response(
            403,
            {
                "resource": upstream_resource(error.resource, cap, shown_token),
                "invalid-lock-token": error.token,
                "message": bad_token_message,
            },
        )
    if isinstance(error, InvalidRequestError):
        return json_response(400, {"resource_id": resource_id, "message": error.message})
    return json_response(400, {"message": error.message})
