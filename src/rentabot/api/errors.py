"""Every error rentabot answers over HTTP is shaped here, and only here.

v1.0 answers keep the original's exact bodies (`seed-api.md`); anything else under an API
prefix gets JSON too, never an HTML page or a stack trace.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, Response

from rentabot.domain.errors import (
    AlreadyReleasedError,
    BusyError,
    DatabaseUnavailableError,
    ForbiddenError,
    InvalidRequestError,
    KeyExistsError,
    LimitError,
    NotFoundError,
    NotGrantedError,
    NotHolderError,
    PayloadTooLargeError,
    RentabotError,
    RequestIdConflictError,
    UnauthenticatedError,
)
from rentabot.domain.model import Resource, V1Selection
from rentabot.interfaces.responses import json_response

log = logging.getLogger("rentabot")

API_PREFIXES = ("/api/", "/rentabot/api/")
#: Other paths whose errors are JSON: what machines read.
JSON_PATHS = ("/healthz", "/health", "/readiness", "/openapi.json")
#: Upstream rent-a-bot 1.x's prefix: its HTTP errors are FastAPI's `{"detail": …}`.
UPSTREAM_PREFIX = "/api/v1/"

#: Shown in `lock-token` instead of a holder's secret, unless RENTABOT_EXPOSE_LOCK_TOKENS is on.
HIDDEN_TOKEN = "hidden"


@dataclass(frozen=True, slots=True)
class V1Criteria:
    """What a v1 `POST …/resources/lock` request sent, echoed in its error bodies."""

    id: str | None
    name: str | None
    tags: list[str]


def v1_resource(resource: Resource, token: str | None = None) -> dict[str, object]:
    """The original's resource object. A held one shows `token` (given to its holder, or
    to everyone when the operator exposes tokens), else "hidden"; a free one null."""
    shown = (token or HIDDEN_TOKEN) if resource.locked else None
    return {
        "id": resource.id,
        "name": resource.name,
        "description": resource.description,
        "endpoint": resource.endpoint,
        "tags": resource.tags_text,
        "lock-token": shown,
        "lock-details": resource.lock_details,
    }


def v1_error(
    error: RentabotError, criteria: V1Criteria | None, tokens: Mapping[int, str]
) -> Response:
    """The original's answer to a domain error. `criteria` is set for lock-by-criteria
    calls; `tokens` are the holders' tokens the operator exposes (usually none)."""
    if isinstance(error, UnauthenticatedError | ForbiddenError | LimitError):
        # No such answers in the original: its shape, with rentabot's status and code.
        status = _status(error)
        return json_response(
            status, {"message": error.message, "code": error.code}, _auth_headers(status)
        )
    if isinstance(error, NotFoundError):
        selector = error.selector
        if not isinstance(selector, V1Selection):
            return json_response(404, {"message": error.message})
        if selector.tags:
            return json_response(404, {"message": error.message, "tags": list(selector.tags)})
        if selector.name is not None:
            return json_response(404, {"message": error.message, "resource_name": selector.name})
        shown: object = selector.raw_id if selector.raw_id is not None else selector.resource_id
        return json_response(404, {"message": error.message, "resource_id": shown})
    if isinstance(error, BusyError):
        if criteria is not None:
            body: dict[str, object] = {
                "id": criteria.id,
                "name": criteria.name,
                "tags": criteria.tags,
            }
        else:
            resource_id = (
                error.selector.resource_id if isinstance(error.selector, V1Selection) else None
            )
            body = {"id": resource_id, "name": None, "tags": None}
        return json_response(403, {"message": error.message, **body})
    if isinstance(error, AlreadyReleasedError):
        return json_response(403, {"message": error.message, "resource_id": error.resource_id})
    if isinstance(error, NotHolderError) and error.resource is not None:
        resource = v1_resource(error.resource, tokens.get(error.resource.id))
        return json_response(
            403,
            {"message": error.message, "invalid-lock-token": error.token, "resource": resource},
        )
    if isinstance(error, InvalidRequestError):
        return json_response(400, {"message": "Bad Request", "detail": error.message})
    return json_response(400, {"message": error.message})


#: The HTTP status of each domain error: the first class listed that the error is wins, so
#: a subclass comes before its base.
V2_STATUS: dict[type[RentabotError], int] = {
    RequestIdConflictError: 409,
    InvalidRequestError: 422,
    NotFoundError: 404,
    BusyError: 409,
    NotHolderError: 403,
    AlreadyReleasedError: 409,
    UnauthenticatedError: 401,
    ForbiddenError: 403,
    LimitError: 429,
    KeyExistsError: 409,
    PayloadTooLargeError: 413,
}


def _status(error: RentabotError) -> int:
    return next((code for kind, code in V2_STATUS.items() if isinstance(error, kind)), 400)


def _auth_headers(status: int) -> dict[str, str] | None:
    # RFC 9110 wants a challenge with a 401: say which header carries the key.
    return {"WWW-Authenticate": 'APIKey header="X-API-Key"'} if status == 401 else None


def v2_error(error: RentabotError) -> Response:
    """`{"error": {"code", "message"}}` with the status of the error's kind."""
    status = _status(error)
    body: dict[str, object] = {"code": error.code, "message": error.message}
    if isinstance(error, NotGrantedError):
        body["reason"] = error.reason
        if error.position is not None:
            body["position"] = error.position
    return json_response(status, {"error": body}, _auth_headers(status))


def _page_error(status: int, message: str, *, sign_in_to: str | None = None) -> HTMLResponse:
    """An error page for people (escaped: messages may echo what a client sent). With
    `sign_in_to` (the page they asked for), it offers to sign in and come back there."""
    heading, detail = message, ""
    if sign_in_to is not None:
        heading = "Sign in to see this" if status == 401 else "Sign in as someone who may do this"
        target = "/signin?" + urlencode({"next": sign_in_to})
        detail = f'<p>{html.escape(message)}</p><p><a href="{html.escape(target)}">Sign in</a></p>'
    return HTMLResponse(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>rentabot: {status}</title><link rel="stylesheet" href="/static/page.css">'
        f'</head><body><header><h1>rentabot</h1><a href="/">Resources</a></header>'
        f'<main><h2 class="problem" role="alert">{html.escape(heading)}</h2>{detail}</main>'
        "</body></html>",
        status_code=status,
    )


async def _domain_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RentabotError)
    if _is_api(request) or request.url.path.startswith(JSON_PATHS):
        return v2_error(error)
    status = _status(error)
    asked = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if status in (401, 403) and request.method == "GET":
        return _page_error(status, error.message, sign_in_to=asked)
    return _page_error(status, error.message, sign_in_to="/" if status in (401, 403) else None)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIXES)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    headers = dict(error.headers or {})
    if request.url.path.startswith("/api/v2/"):
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            error.status_code, "http_error"
        )
        return json_response(
            error.status_code, {"error": {"code": code, "message": str(error.detail)}}, headers
        )
    if request.url.path.startswith(UPSTREAM_PREFIX):
        return json_response(error.status_code, {"detail": error.detail}, headers)
    if _is_api(request) or request.url.path.startswith(JSON_PATHS):
        return json_response(error.status_code, {"message": error.detail}, headers)
    page = _page_error(error.status_code, str(error.detail))
    page.headers.update(headers)
    return page


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    if request.url.path.startswith(UPSTREAM_PREFIX):
        # 1.x's own (FastAPI's) 422, for its FastAPI routes (api/upstream_reservations.py).
        return json_response(422, {"detail": jsonable_encoder(error.errors())})
    problems = [
        {"location": [str(part) for part in item.get("loc", ())], "problem": item.get("msg", "")}
        for item in error.errors()
    ]
    summary = "; ".join(f"{'.'.join(p['location'])}: {p['problem']}" for p in problems)
    return json_response(
        422,
        {
            "error": {"code": "invalid_request", "message": summary, "problems": problems},
        },
    )


async def _database_unavailable(request: Request, error: Exception) -> Response:
    # The driver's text (hosts, database and user names) goes to the log, not to clients.
    log.error("database unavailable: %s", error)
    body: dict[str, object] = (
        {"error": {"code": "unavailable", "message": "Database unavailable; retry later"}}
        if request.url.path.startswith("/api/v2/")
        else {"message": "Database unavailable"}
    )
    return json_response(503, body, {"Retry-After": "1"})


async def _unexpected(request: Request, error: Exception) -> Response:
    # The details go to the log, never to the client.
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return json_response(500, {"message": "Internal Server Error"})


def install_error_handlers(app: FastAPI) -> None:
    """Route every error to one JSON shape (HTML only for the page's own 404s)."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DatabaseUnavailableError, _database_unavailable)
    app.add_exception_handler(RentabotError, _domain_error)
    app.add_exception_handler(Exception, _unexpected)
