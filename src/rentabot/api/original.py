"""The original rent-a-bot 0.x API (`seed-api.md`, docs/api-original-0x.md), served under
both of its prefixes, `/rentabot/api/v1.0` and `/api/v1.0`. Not to be confused with upstream
1.x's `/api/v1` (api/upstream.py) or rentabot's own v2 (api/v2.py).

Handlers parse, call one service method, and serialise. They are plain Starlette routes:
this is the hot path of every existing rent-a-bot user, and FastAPI's parameter machinery
costs more than the rest of a request here (docs/performance.md). The contract is documented
in the README and `seed-api.md`; the OpenAPI document describes v2.
"""

from __future__ import annotations

from starlette.convertors import CONVERTOR_TYPES, IntegerConvertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rentabot.api.errors import V1Criteria, v1_error, v1_resource
from rentabot.domain.errors import (
    InvalidRequestError,
    NotFoundError,
    NotHolderError,
    RentabotError,
)
from rentabot.domain.identity import Principal
from rentabot.domain.model import MAX_ID, V1Lock, V1Selection, v1_criteria_selector
from rentabot.interfaces.auth import LOCK, READ, guard
from rentabot.interfaces.responses import json_response
from rentabot.interfaces.runtime import Runtime, runtime, still_there

PREFIXES = ("/rentabot/api/v1.0", "/api/v1.0")
#: Longest `?wait=` a v1 lock accepts: its one HTTP request stays open that long.
MAX_V1_WAIT_S = 24 * 3600.0
#: What an id of more than 19 significant digits (so beyond MAX_ID) converts to.
BEYOND_MAX_ID = 10**19


class IdConvertor(IntegerConvertor):
    """ASCII digits, like Starlette's `int`, but never failing: int() refuses more than
    4,300 digits, so a longer id (beyond MAX_ID anyway) becomes BEYOND_MAX_ID unparsed."""

    def convert(self, value: str) -> int:
        if len(value) <= 19:
            return int(value)  # every id that can name a resource
        digits = value.lstrip("0")
        return int(digits or "0") if len(digits) <= 19 else BEYOND_MAX_ID


def _path_id(request: Request) -> int:
    # The id convertor matched ASCII digits only, as the original's `<int:…>` route did.
    resource_id: int = request.path_params["resource_id"]
    if not 0 < resource_id <= MAX_ID:
        if resource_id > MAX_ID:  # it cannot name a resource: echoed as sent, like `?id=`
            raw = request.scope["path"].rsplit("/resources/", 1)[1].partition("/")[0]
            raise NotFoundError(V1Selection(raw_id=raw))
        raise NotFoundError(V1Selection(resource_id=resource_id))
    return resource_id


def _ttl(request: Request) -> float | None:
    """`?ttl=SECONDS`: the lease time asked for (the policy checks its range)."""
    if not request.scope["query_string"]:
        return None  # the common case: skip parsing an empty query
    text = request.query_params.get("ttl")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InvalidRequestError(f"ttl must be a number of seconds, got {text!r}") from None


def _wait(request: Request) -> float:
    """`?wait=SECONDS`: how long to wait in the queue (this one request stays open)."""
    if not request.scope["query_string"]:
        return 0.0
    text = request.query_params.get("wait")
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise InvalidRequestError(f"wait must be a number of seconds, got {text!r}") from None
    if not 0 <= value <= MAX_V1_WAIT_S:
        raise InvalidRequestError(f"wait must be between 0 and {MAX_V1_WAIT_S:.0f} seconds")
    return value


def _locked(grant: V1Lock) -> Response:
    # The caller is the holder: its own answer shows the real token.
    body = v1_resource(grant.resource, grant.token)
    return json_response(
        200, {"message": "Resource locked", "lock-token": grant.token, "resource": body}
    )


async def _exposed(app: Runtime, resource_ids: list[int]) -> dict[int, str]:
    """The holders' tokens to show, which is none unless the operator exposes them."""
    if not app.settings.expose_lock_tokens or not resource_ids:
        return {}
    return await app.locks.holder_tokens(resource_ids)


async def _refused(
    app: Runtime, error: RentabotError, criteria: V1Criteria | None = None
) -> Response:
    """The original's answer to a domain error (the resource a wrong unlock names shows its
    holder's token only when the operator exposes tokens)."""
    tokens: dict[int, str] = {}
    if isinstance(error, NotHolderError) and error.resource is not None:
        tokens = await _exposed(app, [error.resource.id])
    return v1_error(error, criteria, tokens)


def _refused_caller(error: RentabotError) -> Response:
    return v1_error(error, None, {})


async def list_resources(request: Request, principal: Principal) -> Response:
    """`GET …/resources`: every resource in id order (the listing may be large: off-loop)."""
    app = runtime(request)
    resources = await app.locks.resources()
    tokens = await _exposed(app, [r.id for r in resources if r.locked])
    return json_response(200, {"resources": [v1_resource(r, tokens.get(r.id)) for r in resources]})


async def get_resource(request: Request, principal: Principal) -> Response:
    """`GET …/resources/{id}`: one resource."""
    app = runtime(request)
    try:
        resource = await app.locks.resource(_path_id(request))
    except RentabotError as error:
        return await _refused(app, error)
    tokens = await _exposed(app, [resource.id] if resource.locked else [])
    return json_response(200, {"resource": v1_resource(resource, tokens.get(resource.id))})


async def lock_by_id(request: Request, principal: Principal) -> Response:
    """`POST …/resources/{id}/lock[?ttl=S][&wait=S]`: lock it if free (or once it is your
    turn, waiting up to `wait` seconds), 403 when held."""
    app = runtime(request)
    try:
        if request.path_params["resource_id"] == 0:
            # The original answers a lock of id 0 with a bare 400.
            raise InvalidRequestError("resource ids start at 1")
        grant = await app.locks.lock(
            V1Selection(resource_id=_path_id(request)),
            principal,
            ttl=_ttl(request),
            wait=_wait(request),
            still_there=still_there(request),
        )
    except RentabotError as error:
        return await _refused(app, error)
    return _locked(grant)


async def lock_by_criteria(request: Request, principal: Principal) -> Response:
    """`POST …/resources/lock?id=|rid=|name=|tag=…`: id, else name, else every tag."""
    app = runtime(request)
    query = request.query_params
    ids = query.getlist("id") or query.getlist("rid")
    names = query.getlist("name")
    criteria = V1Criteria(
        id=ids[0] if ids else None, name=names[0] if names else None, tags=query.getlist("tag")
    )
    try:
        selector = v1_criteria_selector(ids, names, criteria.tags)
        if selector is None:
            raise InvalidRequestError("give one of the parameters id, rid, name or tag")
        grant = await app.locks.lock(
            selector,
            principal,
            ttl=_ttl(request),
            wait=_wait(request),
            still_there=still_there(request),
        )
    except RentabotError as error:
        return await _refused(app, error, criteria)
    return _locked(grant)


async def unlock(request: Request, principal: Principal) -> Response:
    """`POST …/resources/{id}/unlock?lock-token=T`: release it if T is the holder's token."""
    app = runtime(request)
    try:
        await app.locks.unlock(_path_id(request), request.query_params.get("lock-token"), principal)
    except RentabotError as error:
        return await _refused(app, error)
    return json_response(200, {"message": "Resource unlocked"})


# Each route with the role its caller needs: reading needs `read`, locking and unlocking
# `lock` (which anonymous callers have by default, so the original's curl lines work).
_lock_by_id = guard(LOCK, lock_by_id, _refused_caller)
_unlock = guard(LOCK, unlock, _refused_caller)
_lock_by_criteria = guard(LOCK, lock_by_criteria, _refused_caller)
_get_resource = guard(READ, get_resource, _refused_caller)
_list_resources = guard(READ, list_resources, _refused_caller)


def routes() -> list[BaseRoute]:
    """The v1.0 routes under both prefixes, the busiest first.

    Ids are ASCII digits, like the original's `<int:…>` routes: `GET …/resources/lock` is a
    405 (that path locks), and `…/resources/abc` or `…/resources/%201` are unknown paths.
    """
    if "rentabot_id" not in CONVERTOR_TYPES:  # Starlette's registry is process-wide
        register_url_convertor("rentabot_id", IdConvertor())
    table: list[BaseRoute] = []
    for prefix in PREFIXES:
        base = f"{prefix}/resources"
        table += [
            Route(f"{base}/{{resource_id:rentabot_id}}/lock", _lock_by_id, methods=["POST"]),
            Route(f"{base}/{{resource_id:rentabot_id}}/unlock", _unlock, methods=["POST"]),
            Route(f"{base}/lock", _lock_by_criteria, methods=["POST"]),
            Route(f"{base}/{{resource_id:rentabot_id}}", _get_resource, methods=["GET"]),
            Route(base, _list_resources, methods=["GET"]),
        ]
    return table
