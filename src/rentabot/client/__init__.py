"""rentabot's Python client: lock, run, always release.

    from rentabot.client import Client

    with Client("http://rentabot.lab:5000") as client:
        with client.lease(tags=["nrf52"], ttl=600, wait=1800) as held:
            flash(held.resources[0].endpoint)

It talks HTTP only (the v2 API) and imports nothing of the server. `docs/client.md` has the
whole story, and the error tree is in `rentabot.client.errors`.
"""

from rentabot.client.durations import DurationError, format_duration, parse_duration
from rentabot.client.errors import (
    BusyError,
    ForbiddenError,
    InvalidRequestError,
    LeaseEndedError,
    LeaseLostError,
    LeaseNotFoundError,
    LimitError,
    NotFoundError,
    NotGrantedError,
    NotHolderError,
    NotLockedError,
    RentabotClientError,
    RequestIdConflictError,
    RequestIdReusedError,
    ServerError,
    ServerUnreachableError,
    UnauthenticatedError,
    UnavailableError,
)
from rentabot.client.held import HeldLease
from rentabot.client.models import HeldResource, Holder, Identity, Lease, Resource, Ticket
from rentabot.client.protocol import LockOptions
from rentabot.client.sync import Client

__all__ = [
    "BusyError",
    "Client",
    "DurationError",
    "ForbiddenError",
    "HeldLease",
    "HeldResource",
    "Holder",
    "Identity",
    "InvalidRequestError",
    "Lease",
    "LeaseEndedError",
    "LeaseLostError",
    "LeaseNotFoundError",
    "LimitError",
    "LockOptions",
    "NotFoundError",
    "NotGrantedError",
    "NotHolderError",
    "NotLockedError",
    "RentabotClientError",
    "RequestIdConflictError",
    "RequestIdReusedError",
    "Resource",
    "ServerError",
    "ServerUnreachableError",
    "Ticket",
    "UnauthenticatedError",
    "UnavailableError",
    "format_duration",
    "parse_duration",
]
