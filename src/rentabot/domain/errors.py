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
    from rentabot.domain.model import Resource, Selector


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

    def __init__(self, selector: Selector, message: str = "Resource not found") -> None:
        super().__init__(message)
        self.selector = selector


class BusyError(RentabotError):
    """Every resource that matches the selector is held by someone else."""

    code = "busy"

    def __init__(self, selector: Selector) -> None:
        super().__init__("Cannot lock the requested resource, resource(s) already locked")
        self.selector = selector


class NotHolderError(RentabotError):
    """The token presented does not hold the resource."""

    code = "not_holder"

    def __init__(self, resource: Resource, token: str | None) -> None:
        super().__init__("Cannot unlock resource, the lock token is not valid.")
        self.resource = resource
        self.token = token


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
