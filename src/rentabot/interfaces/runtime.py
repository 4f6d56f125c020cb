"""What a running app holds: its settings and services, reached from any request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from starlette.requests import Request

from rentabot.service.admin import AdminService
from rentabot.service.feed import EventFeed
from rentabot.service.health import HealthService
from rentabot.service.identity import IdentityService
from rentabot.service.leases import LeaseService, StillThere
from rentabot.service.locks import LockService
from rentabot.service.reservations import ReservationService
from rentabot.service.usage import UsageService
from rentabot.settings import Settings


class Subscribers:
    """Live event-stream clients of this process, up to a limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def join(self) -> bool:
        """Take a place; False when all are taken."""
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def leave(self) -> None:
        """Give a place back."""
        self.count -= 1


@dataclass(frozen=True, slots=True)
class Runtime:
    """The services of one app instance, built in its lifespan."""

    settings: Settings
    health: HealthService
    locks: LockService
    leases: LeaseService
    admin: AdminService
    identity: IdentityService
    subscribers: Subscribers
    usage: UsageService
    reservations: ReservationService
    feed: EventFeed


def runtime(request: Request) -> Runtime:
    """The runtime of the app serving `request`."""
    return cast(Runtime, request.app.state.runtime)


def still_there(request: Request) -> StillThere:
    """Whether the client of `request` is still connected (services check it while a
    request waits in the queue)."""

    async def check() -> bool:
        return not await request.is_disconnected()

    return check
