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
    InvalidRequestError,
    LeaseEndedError,
    LeaseLostError,
    LeaseNotFoundError,
    NotFoundError,
    NotGrantedError,
    NotHolderError,
    NotLockedError,
    RentabotClientError,
    RequestIdReusedError,
    ServerError,
    ServerUnreachableError,
    UnavailableError,
)
from rentabot.client.held import HeldLease
from rentabot.client.models import HeldResource, Holder, Lease, Resource, Ticket
from rentabot.client.protocol import LockOptions
from rentabot.client.sync import Client

__all__ = [
    "BusyError",
    "Client",
    "DurationError",
    "HeldLease",
    "HeldResource",
    "Holder",
    "InvalidRequestError",
    "Lease",
    "LeaseEndedError",
    "LeaseLostError",
    "LeaseNotFoundError",
    "LockOptions",
    "NotFoundError",
    "NotGrantedError",
    "NotHolderError",
    "NotLockedError",
    "RentabotClientError",
    "RequestIdReusedError",
    "Resource",
    "ServerError",
    "ServerUnreachableError",
    "Ticket",
    "UnavailableError",
    "format_duration",
    "parse_duration",
]
