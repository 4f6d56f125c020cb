"""What a running app holds: its settings and services, reached from any request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from starlette.requests import Request

from rentabot.service.admin import AdminService
from rentabot.service.leases import LeaseService
from rentabot.service.locks import LockService
from rentabot.settings import Settings
from rentabot.storage.database import Database


@dataclass(frozen=True, slots=True)
class Runtime:
    """The services of one app instance, built in its lifespan."""

    settings: Settings
    database: Database
    locks: LockService
    leases: LeaseService
    admin: AdminService


def runtime(request: Request) -> Runtime:
    """The runtime of the app serving `request`."""
    return cast(Runtime, request.app.state.runtime)
