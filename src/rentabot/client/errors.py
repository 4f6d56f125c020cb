"""The client's error tree. It mirrors the server's (`{"error": {"code", "message"}}` bodies),
so a script can catch the same names the server's domain uses.

RentabotClientError                 base: `message`, and `status`/`code` when the server answered
├── ServerUnreachableError          no answer after retrying (connect errors, timeouts, 502, 504)
├── ServerError                     the server failed, or answered something unexpected
│   └── UnavailableError            503 `unavailable`: the server's database does not answer
├── InvalidRequestError             422 `invalid_request` (e.g. a TTL above the server's maximum)
│   ├── RequestIdReusedError        the request id belongs to a lease that has already ended
│   └── RequestIdConflictError      409 `request_id_conflict`: the id was used for another request
├── NotFoundError                   404 `not_found`: nothing (or not enough) matches
│   └── LeaseNotFoundError          404 `lease_not_found`
├── BusyError                       409 `busy`: held, and no wait was asked
│   └── NotGrantedError             409 `not_granted`: left the queue without a grant
├── NotHolderError                  403 `not_holder`: the token does not hold the lease
│   └── LeaseEndedError             403 `lease_ended`: released, expired or force-released
├── NotLockedError                  409 `not_locked`: an operator action on a free resource
├── UnauthenticatedError            401 `unauthenticated`: a key is needed, or it is not valid
├── ForbiddenError                  403 `forbidden`, `cross_origin`: the role does not allow it
├── LimitError                      429: the queue is full (`queue_full`, `too_many_waiting`)
└── LeaseLostError                  a lease held by `Client.lease`/`keep` ended while held
"""

from __future__ import annotations

from typing import Any


class RentabotClientError(Exception):
    """Base of every error the client raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        #: The HTTP status, when the server answered.
        self.status = status
        #: The server's machine-readable code (`busy`, `not_found`, …), when it gave one.
        self.code = code
        #: The server's whole `error` object, when it gave one.
        self.body = body or {}


class ServerUnreachableError(RentabotClientError):
    """No usable answer from the server within the retry budget: it could not be connected
    to, timed out, or a proxy in front of it answered 502/504."""


class ServerError(RentabotClientError):
    """The server failed (500), or answered something this client does not understand."""


class UnavailableError(ServerError):
    """503: the server is up but its database does not answer (retried first)."""


class InvalidRequestError(RentabotClientError):
    """422: the server refused the request as invalid (the message says which field)."""


class RequestIdReusedError(InvalidRequestError):
    """The request id was used before by a lease that has ended: a retry with it answers
    that ended lease, never a new one. Use a new request id for a new lease."""

    def __init__(self, request_id: str, lease_id: int, state: str) -> None:
        super().__init__(
            f"request id {request_id!r} was already used by lease {lease_id}, which has ended"
            f" ({state}); use a new request id to take a new lease"
        )
        self.request_id = request_id
        self.lease_id = lease_id
        self.state = state


class RequestIdConflictError(InvalidRequestError):
    """409: the request id was already used for another selection (or, without a key, by
    another owner): it answers that request, not this one. Use a new request id."""


class UnauthenticatedError(RentabotClientError):
    """401: the server needs an API key for this (RENTABOT_API_KEY), or the key sent is
    unknown or revoked."""


class ForbiddenError(RentabotClientError):
    """403: the key's role does not allow this (e.g. an admin action with a `lock` key)."""


class LimitError(RentabotClientError):
    """429: too many requests wait in the queue (in all, or yours); retry later."""


class NotFoundError(RentabotClientError):
    """404: no resource (or not enough resources) matches the selection."""


class LeaseNotFoundError(NotFoundError):
    """404: no lease has this id."""


class BusyError(RentabotClientError):
    """409: everything that matches is held, and the request did not ask to wait."""


class NotGrantedError(BusyError):
    """409: a waiting request left the queue without a grant. `reason` says why
    (`timed_out`, `abandoned`, `cancelled`); `position` is its last place when known."""

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        position: int | None = None,
        status: int | None = 409,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, status=status, code="not_granted", body=body)
        self.reason = reason
        self.position = position


class NotHolderError(RentabotClientError):
    """403: the token does not hold this lease."""


class LeaseEndedError(NotHolderError):
    """403: the lease was released, expired or force-released; its token holds nothing."""


class NotLockedError(RentabotClientError):
    """409: the resource is not held (an operator action on a free resource)."""


class LeaseLostError(RentabotClientError):
    """A lease this client was keeping ended while it was held: it expired, an operator
    force-released it, or it could not be renewed before its deadline."""

    def __init__(self, lease_id: int, reason: str) -> None:
        super().__init__(f"lease {lease_id} was lost: {reason}")
        self.lease_id = lease_id
        self.reason = reason


#: The error of each (status, code) the server answers; the status alone when the code is new.
_BY_CODE: dict[str, type[RentabotClientError]] = {
    "invalid_request": InvalidRequestError,
    "not_found": NotFoundError,
    "lease_not_found": LeaseNotFoundError,
    "busy": BusyError,
    "not_holder": NotHolderError,
    "lease_ended": LeaseEndedError,
    "not_locked": NotLockedError,
    "unavailable": UnavailableError,
    "request_id_conflict": RequestIdConflictError,
    "unauthenticated": UnauthenticatedError,
    "forbidden": ForbiddenError,
    "cross_origin": ForbiddenError,
}
_BY_STATUS: dict[int, type[RentabotClientError]] = {
    401: UnauthenticatedError,
    403: NotHolderError,
    404: NotFoundError,
    409: BusyError,
    422: InvalidRequestError,
    429: LimitError,
    503: UnavailableError,
}


def error_from_answer(status: int, body: object, text: str) -> RentabotClientError:
    """The error for an HTTP answer that is not a success, from its JSON body if it has one."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        kind = _BY_STATUS.get(status, ServerError if status >= 500 else RentabotClientError)
        shown = text.strip()[:200] or "no body"
        return kind(f"HTTP {status}: {shown}", status=status)
    code = str(error.get("code", ""))
    message = str(error.get("message", f"HTTP {status}"))
    if code == "not_granted":
        position = error.get("position")
        return NotGrantedError(
            message,
            reason=str(error.get("reason", "")) or None,
            position=position if isinstance(position, int) else None,
            status=status,
            body=error,
        )
    kind = _BY_CODE.get(code) or _BY_STATUS.get(
        status, ServerError if status >= 500 else RentabotClientError
    )
    return kind(message, status=status, code=code or None, body=error)
