"""The domain's error tree. Every layer (v1 and v2 API, web page, CLI) maps these, never others.

RentabotError
├── InvalidRequestError        the request itself is malformed (HTTP 400/422)
├── NotFoundError              nothing matches the selector (HTTP 404)
├── BusyError                  everything that matches is held (HTTP 403 in v1, 409 in v2)
├── NotHolderError             the token given does not hold the resource (HTTP 403)
├── AlreadyReleasedError       the resource is not locked at all (HTTP 403 in v1)
└── DescriptorError            the resource descriptor is invalid (start-up stops)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rentabot.domain.model import Resource, Selector, Want


class RentabotError(Exception):
    """Base of every error rentabot raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(RentabotError):
    """The request cannot be understood (missing or malformed parameters)."""

    code = "invalid_request"


class NotFoundError(RentabotError):
    """No resource matches the selector."""

    code = "not_found"

    def __init__(
        self, selector: Selector | Want | None = None, message: str = "Resource not found"
    ) -> None:
        super().__init__(message)
        self.selector = selector


class LeaseNotFoundError(NotFoundError):
    """No lease has this id."""

    code = "lease_not_found"

    def __init__(self, lease_id: int) -> None:
        super().__init__(None, f"No lease {lease_id}")
        self.lease_id = lease_id


class BusyError(RentabotError):
    """Every resource that matches the selector is held by someone else."""

    code = "busy"

    def __init__(self, selector: Selector | Want) -> None:
        super().__init__("Cannot lock the requested resource, resource(s) already locked")
        self.selector = selector


class NotGrantedError(BusyError):
    """A waiting request left the queue without a grant: its wait ran out, its client stopped
    polling, or it was cancelled."""

    code = "not_granted"

    def __init__(self, selector: Selector | Want, reason: str, position: int | None = None) -> None:
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
