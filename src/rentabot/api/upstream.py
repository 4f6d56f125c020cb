"""Upstream rent-a-bot 1.x's resource API under `/api/v1` (docs/api-upstream-1x.md).

Not the original 0.x contract (`/rentabot/api/v1.0`, api/original.py) nor rentabot's own v2.
Handlers parse, call one service method (service/locks.py), and serialise with
api/upstream_shapes.py. Plain Starlette routes, like the 0.x ones: the lock path is hot.
"""

from __future__ import annotations

import json
import math

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rentabot.api.upstream_shapes import (
    UPSTREAM_DEFAULT_TTL,
    iso_offset,
    lock_cap,
    problem,
    upstream_error,
    upstream_resource,
    validation_error,
)
from rentabot.domain.errors import (
    BusyError,
    LockTooLongError,
    NotFoundError,
    NotHolderError,
    RentabotError,
)
from rentabot.domain.identity import Principal
from rentabot.domain.model import MAX_ID, V1Lock, V1Selection
from rentabot.interfaces.auth import LOCK, READ, guard
from rentabot.interfaces.responses import json_response
from rentabot.interfaces.runtime import Runtime, runtime

PREFIX = "/api/v1"
_INT = TypeAdapter(int)


class InvalidInputError(Exception):
    """A request 1.x would refuse with a 422 (its FastAPI validation), with its details."""

    def __init__(self, *problems: dict[str, object]) -> None:
        super().__init__("invalid request")
        self.problems = problems


def _integer(text: object, loc: tuple[str, ...]) -> int:
    """An integer as FastAPI reads one (`"1.0"`, `" 2"` and `true` pass), else InvalidInputError."""
    try:
        return _INT.validate_python(text)
    except ValidationError as error:
        raise InvalidInputError(
            *(problem(e["type"], loc, e["msg"], e.get("input")) for e in error.errors())
        ) from None


def _path_id(request: Request) -> int:
    return _integer(request.path_params["resource_id"], ("path", "resource_id"))


def _cap(app: Runtime) -> int:
    return lock_cap(app.settings.max_ttl)


async def _ttl(request: Request, cap: int) -> int:
    """The JSON body's `ttl` (1.x's default when there is no body): positive, at most `cap`.

    Raises InvalidInputError for a body that is not a JSON object, a ttl that is not an
    integer or is not positive (1.x grants an already expired lock); TtlTooLongError above
    the cap."""
    raw = await request.body()
    if not raw.strip():
        return min(UPSTREAM_DEFAULT_TTL, cap)
    content_type = request.headers.get("content-type", "application/json")
    text = raw.decode("utf-8", "replace")
    if "json" not in content_type:
        raise InvalidInputError(
            problem(
                "model_attributes_type",
                ("body",),
                "Input should be a valid dictionary or object to extract fields from",
                text,
            )
        )
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as error:  # deep nesting: RecursionError
        raise InvalidInputError(
            problem("json_invalid", ("body", "0"), "JSON decode error", str(error))
        ) from None
    if not isinstance(body, dict):
        raise InvalidInputError(
            problem(
                "model_attributes_type",
                ("body",),
                "Input should be a valid dictionary or object to extract fields from",
                body,
            )
        )
    if "ttl" not in body:
        return min(UPSTREAM_DEFAULT_TTL, cap)
    given = body["ttl"]
    if isinstance(given, float) and not math.isfinite(given):
        raise InvalidInputError(
            problem("finite_number", ("body", "ttl"), "Input should be a finite number", str(given))
        )
    if isinstance(given, bool):  # FastAPI would take true for 1: surely not what was meant
        raise InvalidInputError(
            problem("int_type", ("body", "ttl"), "Input should be a valid integer", given)
        )
    ttl = _integer(given, ("body", "ttl"))
    if ttl <= 0:
        raise InvalidInputError(
            problem("greater_than", ("body", "ttl"), "Input should be greater than 0", given)
        )
    if ttl > cap:
        raise TtlTooLongError(ttl)
    return ttl


class TtlTooLongError(Exception):
    """A ttl above `max-lock-duration`: 1.x's 400."""

    def __init__(self, ttl: int) -> None:
        super().__init__("ttl too long")
        self.ttl = ttl


def _too_long(ttl: int, cap: int, resource_id: int | None) -> Response:
    return json_response(
        400,
        {
            "resource_id": resource_id,
            "ttl": ttl,
            "max_lock_duration": cap,
            "message": f"Requested TTL ({ttl}s) exceeds maximum allowed duration ({cap}s)",
        },
    )


def _locked(grant: V1Lock, cap: int) -> Response:
    holder = grant.resource.holder
    return json_response(
        200,
        {
            "message": "Resource locked",
            "lock-token": grant.token,
            "resource": upstream_resource(grant.resource, cap, grant.token),
            "locked-at": iso_offset(holder.acquired_at) if holder else None,
            "expires-at": iso_offset(holder.expires_at) if holder else None,
        },
    )


async def _refused(
    app: Runtime, error: RentabotError, resource_id: int | None = None, *, extending: bool = False
) -> Response:
    tokens: dict[int, str] = {}
    if isinstance(error, BusyError) and isinstance(error.selector, V1Selection):
        name = error.selector.name
        if name is not None:  # 1.x's busy answer names the resource's id
            resource_id = await app.locks.resource_id_named(name)
    if (
        isinstance(error, NotHolderError)
        and error.resource is not None
        and app.settings.expose_lock_tokens
    ):
        tokens = await app.locks.holder_tokens([error.resource.id])
    if extending:
        return upstream_error(
            error,
            _cap(app),
            resource_id=resource_id,
            tokens=tokens,
            unlocked_message="Cannot extend lock on unlocked resource",
            bad_token_message="Cannot extend lock, the lock token is not valid.",
        )
    return upstream_error(error, _cap(app), resource_id=resource_id, tokens=tokens)


def _refused_caller(error: RentabotError) -> Response:
    return upstream_error(error, 0)


def _known(resource_id: int) -> int:
    """The id, when it can name a resource (else 404: 1.x's ids start at 1)."""
    if not 0 < resource_id <= MAX_ID:
        raise NotFoundError(V1Selection(raw_id=str(resource_id)))
    return resource_id


async def _exposed(app: Runtime, resource_ids: list[int]) -> dict[int, str]:
    if not app.settings.expose_lock_tokens or not resource_ids:
        return {}
    return await app.locks.holder_tokens(resource_ids)


async def list_resources(request: Request, principal: Principal) -> Response:
    """`GET /api/v1/resources`: every resource in id order."""
    app = runtime(request)
    resources = await app.locks.resources()
    tokens = await _exposed(app, [r.id for r in resources if r.locked])
    cap = _cap(app)
    return json_response(
        200, {"resources": [upstream_resource(r, cap, tokens.get(r.id)) for r in resources]}
    )


async def get_resource(request: Request, principal: Principal) -> Response:
    """`GET /api/v1/resources/{id}`: one resource."""
    app = runtime(request)
    resource_id: int | None = None
    try:
        resource_id = _path_id(request)
        resource = await app.locks.resource(_known(resource_id))
    except InvalidInputError as invalid:
        return validation_error(invalid.problems)
    except RentabotError as error:
        return await _refused(app, error, resource_id)
    tokens = await _exposed(app, [resource.id] if resource.locked else [])
    return json_response(
        200, {"resource": upstream_resource(resource, _cap(app), tokens.get(resource.id))}
    )


async def lock_by_id(request: Request, principal: Principal) -> Response:
    """`POST /api/v1/resources/{id}/lock` (body `{"ttl": N}`, optional): lock it if free."""
    app = runtime(request)
    cap = _cap(app)
    resource_id: int | None = None
    try:
        resource_id = _path_id(request)
        ttl = await _ttl(request, cap)
        grant = await app.locks.lock(
            V1Selection(resource_id=_known(resource_id)), principal, ttl=ttl
        )
    except InvalidInputError as invalid:
        return validation_error(invalid.problems)
    except TtlTooLongError as long:
        return _too_long(long.ttl, cap, resource_id)
    except RentabotError as error:
        return await _refused(app, error, resource_id)
    return _locked(grant, cap)


def _criteria(request: Request) -> V1Selection | None:
    """1.x's `?id=` > `?name=` > `?tag=…` (every tag must match); None when none is given.
    As FastAPI reads a repeated single parameter, the last `id` or `name` counts."""
    query = request.query_params
    ids = query.getlist("id")
    if ids:
        resource_id = _integer(ids[-1], ("query", "id"))
        if resource_id == 0:
            return None  # 1.x tests `if id:`: 0 is no id at all
        if not 0 < resource_id <= MAX_ID:
            return V1Selection(raw_id=str(resource_id))
        return V1Selection(resource_id=resource_id)
    names = query.getlist("name")
    if names and names[-1]:
        return V1Selection(name=names[-1])
    tags = [tag for tag in query.getlist("tag") if tag]
    return V1Selection(tags=tuple(tags)) if tags else None


async def lock_by_criteria(request: Request, principal: Principal) -> Response:
    """`POST /api/v1/resources/lock?id=|name=|tag=…` (body `{"ttl": N}`, optional)."""
    app = runtime(request)
    cap = _cap(app)
    resource_id: int | None = None
    try:
        selector = _criteria(request)
        if selector is None:
            return json_response(400, {"message": "Bad Request"})
        resource_id = selector.resource_id
        ttl = await _ttl(request, cap)
        if selector.raw_id is not None:
            raise NotFoundError(selector)
        grant = await app.locks.lock(selector, principal, ttl=ttl)
    except InvalidInputError as invalid:
        return validation_error(invalid.problems)
    except TtlTooLongError as long:
        return _too_long(long.ttl, cap, resource_id)
    except RentabotError as error:
        return await _refused(app, error, resource_id)
    return _locked(grant, cap)


def _required(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if value is None:
        raise InvalidInputError(problem("missing", ("query", name), "Field required", None))
    return value


async def unlock(request: Request, principal: Principal) -> Response:
    """`POST /api/v1/resources/{id}/unlock?lock-token=T`: release it if T holds it."""
    app = runtime(request)
    resource_id: int | None = None
    try:
        resource_id = _path_id(request)
        token = request.query_params.get("lock-token")
        await app.locks.unlock(_known(resource_id), token, principal)
    except InvalidInputError as invalid:
        return validation_error(invalid.problems)
    except RentabotError as error:
        return await _refused(app, error, resource_id)
    return json_response(200, {"message": "Resource unlocked"})


async def extend(request: Request, principal: Principal) -> Response:
    """`POST /api/v1/resources/{id}/extend?lock-token=T&additional-ttl=N`: the lock lasts
    until now + N, or keeps a later deadline (never shortened); N must be positive."""
    app = runtime(request)
    cap = _cap(app)
    resource_id: int | None = None
    try:
        resource_id = _path_id(request)
        token = _required(request, "lock-token")
        raw = _required(request, "additional-ttl")
        additional = _integer(raw, ("query", "additional-ttl"))
        if additional <= 0:
            raise InvalidInputError(
                problem(
                    "greater_than",
                    ("query", "additional-ttl"),
                    "Input should be greater than 0",
                    raw,
                )
            )
        if additional > cap:  # would last longer anyway; and no float overflows
            raise LockTooLongError(additional, cap)
        extended = await app.locks.extend(
            _known(resource_id), token, additional, principal, max_total=cap
        )
    except InvalidInputError as invalid:
        return validation_error(invalid.problems)
    except RentabotError as error:
        if isinstance(error, LockTooLongError):
            return json_response(
                400,
                {
                    "resource_id": resource_id,
                    "total_duration": int(error.total) if math.isfinite(error.total) else None,
                    "max_lock_duration": cap,
                    "message": error.message,
                },
            )
        return await _refused(app, error, resource_id, extending=True)
    # 1.x answers whole seconds.
    total = None if extended.expires_at is None else int(extended.expires_at - extended.acquired_at)
    return json_response(
        200,
        {
            "message": "Lock extended",
            "new-expires-at": iso_offset(extended.expires_at),
            "total-lock-duration": total,
        },
    )


_lock_by_id = guard(LOCK, lock_by_id, _refused_caller)
_unlock = guard(LOCK, unlock, _refused_caller)
_extend = guard(LOCK, extend, _refused_caller)
_lock_by_criteria = guard(LOCK, lock_by_criteria, _refused_caller)
_get_resource = guard(READ, get_resource, _refused_caller)
_list_resources = guard(READ, list_resources, _refused_caller)


def routes() -> list[BaseRoute]:
    """The `/api/v1` resource routes, the busiest first. Ids are any path segment: 1.x
    answers a non-integer with 422, not 404."""
    base = f"{PREFIX}/resources"
    return [
        Route(f"{base}/{{resource_id}}/lock", _lock_by_id, methods=["POST"]),
        Route(f"{base}/{{resource_id}}/unlock", _unlock, methods=["POST"]),
        Route(f"{base}/{{resource_id}}/extend", _extend, methods=["POST"]),
        Route(f"{base}/lock", _lock_by_criteria, methods=["POST"]),
        Route(f"{base}/{{resource_id}}", _get_resource, methods=["GET"]),
        Route(base, _list_resources, methods=["GET"]),
    ]
