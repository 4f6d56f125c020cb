"""The domain's error tree. Every layer (v1 and v2 API, web page, CLI) maps these, never others.

RentabotError
├── InvalidRequestError        the request itself is malformed (HTTP 400/422)
│   ├── LockTooLongError       an extension past the longest a lock may last (HTTP 400)
│   └── RequestIdConflictError the request id was used for another request (HTTP 409)
├── NotFoundError              nothing matches the selector (HTTP 404)
├── BusyError                  everything that matches is held (HTTP 403 in v1, 409 in v2)
├── NotHolderError             the token given does not hold the resource (HTTP 403)
├── AlreadyReleasedError       the resource is not locked at all (HTTP 403 in v1)
├── UnauthenticatedError       no identity, or one that is not valid, where one is needed (401)
├── ForbiddenError             the identity's role does not allow this (HTTP 403)
│   └── CrossOriginError       an ambient credential (cookie) sent from another origin (403)
├── LimitError                 a limit on waiting requests or subscribers is reached (429)
├── KeyExistsError             an API key of that name exists already (HTTP 409)
├── PayloadTooLargeError       the request body is larger than the server accepts (HTTP 413)
└── DescriptorError            the resource descriptor is invalid (start-up stops)

Not refusals, and so not RentabotErrors: the database being out of reach
(DatabaseUnavailableError, HTTP 503) or at a schema this rentabot does not know
(SchemaTooNewError). The storage raises them; every interface reports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rentabot.domain.model import Resource, Selection, V1Selection


class RentabotError(Exception):
    """Base of every error rentabot raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(RentabotError):
    """The request cannot be understood (missing or malformed parameters)."""

    code = "invalid_request"


class LockTooLongError(InvalidRequestError):
    """An extension would make a lock last longer in all than the maximum allowed."""

    code = "lock_too_long"

    def __init__(self, total: float, maximum: float) -> None:
        super().__init__(
            f"Total lock duration ({total:.0f}s) would exceed maximum allowed ({maximum:.0f}s)"
        )
        self.total = total
        self.maximum = maximum


class RequestIdConflictError(InvalidRequestError):
    """A request id that already names another request (another selection, or, for an
    anonymous caller, another owner): the earlier request's answer is not this one's."""

    code = "request_id_conflict"


class UnauthenticatedError(RentabotError):
    """The call needs an identity the caller did not prove: no key where anonymous callers
    may not do this, or a key that is unknown or revoked."""

    code = "unauthenticated"


class ForbiddenError(RentabotError):
    """The caller is known, and its role does not allow this."""

    code = "forbidden"


class CrossOriginError(ForbiddenError):
    """A state change authorised only by a credential the browser sends by itself (a
    session cookie, a single-sign-on proxy's), from a page of another origin."""

    code = "cross_origin"


class LimitError(RentabotError):
    """A limit is reached (waiting requests, live subscribers); retry later."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class PayloadTooLargeError(RentabotError):
    """The request body is larger than RENTABOT_MAX_BODY_BYTES."""

    code = "too_large"


class KeyExistsError(RentabotError):
    """A key of that name exists and is not revoked (revoke it first to replace it)."""

    code = "key_exists"


class NotFoundError(RentabotError):
    """No resource matches the selector."""

    code = "not_found"

    def __init__(
        self, selector: V1Selection | Selection | None = None, message: str = "Resource not found"
    ) -> None:
        super().__init__(message)
        self.selector = selector


class ReservationNotFoundError(NotFoundError):
    """No reservation with this id is the caller's (upstream 1.x's 404)."""

    code = "reservation_not_found"

    def __init__(self, reservation_id: str) -> None:
        super().__init__(None, f"Reservation {reservation_id} not found")
        self.reservation_id = reservation_id


class ReservationStateError(RentabotError):
    """The reservation is not in a state that allows this (409; `gone`: 410, its claim
    window passed)."""

    code = "reservation_state"

    def __init__(self, reservation_id: str, status: str, message: str, gone: bool = False) -> None:
        super().__init__(message)
        self.reservation_id = reservation_id
        self.status = status
        self.gone = gone


class LeaseNotFoundError(NotFoundError):
    """No lease has this id."""

    code = "lease_not_found"

    def __init__(self, lease_id: int) -> None:
        super().__init__(None, f"No lease {lease_id}")
        self.lease_id = lease_id


class BusyError(RentabotError):
    """Every resource that matches the selector is held by someone else."""

    code = "busy"

    def __init__(self, selector: V1Selection | Selection) -> None:
        super().__init__("Cannot lock the requested resource, resource(s) already locked")
        self.selector = selector


class NotGrantedError(BusyError):
    """A waiting request left the queue without a grant: its wait ran out, its client stopped
    polling, or it was cancelled."""

    code = "not_granted"

    def __init__(
        self, selector: V1Selection | Selection, reason: str, position: int | None = None
    ) -> None:
        RentabotError.__init__(self, f"Not granted: the request {reason.replace('_', ' ')}")
        self.selector = selector
        self.reason = reason
        #: Its last place in the queue, when known.
        self.position = position


class NotHolderError(RentabotError):
    """The token presented does not hold the resource (or the lease)."""

    code = "not_holder"

    def __init__(
        self,
        resource: Resource | None,
        token: str | None,
        message: str = "Cannot unlock resource, the lock token is not valid.",
    ) -> None:
        super().__init__(message)
        self.resource = resource
        self.token = token


class LeaseEndedError(NotHolderError):
    """The lease was released or has expired: its token holds nothing any more."""

    code = "lease_ended"

    def __init__(self, lease_id: int, reason: str) -> None:
        super().__init__(None, None, f"Lease {lease_id} has ended ({reason})")
        self.lease_id = lease_id
        self.reason = reason


class AlreadyReleasedError(RentabotError):
    """The resource is not locked, so there is nothing to release."""

    code = "not_locked"

    def __init__(self, resource_id: int) -> None:
        super().__init__("Resource is already unlocked")
        self.resource_id = resource_id


class DescriptorError(RentabotError):
    """The resource descriptor is invalid; `source:line: reason` tells where and why."""

    code = "invalid_descriptor"

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason

    def __reduce__(self) -> tuple[type[DescriptorError], tuple[str, int | None, str]]:
        # Start-up validates in a child process; the error must cross back intact.
        return (DescriptorError, (self.source, self.line, self.reason))


class DatabaseUnavailableError(Exception):
    """The database cannot be reached, or stayed locked for too long: retry later."""


class SchemaTooNewError(Exception):
    """The database was migrated by a newer rentabot than this one."""
