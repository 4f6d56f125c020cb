"""What operators do to resources: maintenance, force-release; and reading the audit trail.

Each action is recorded with the admin principal who did it (never a name from a request).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from rentabot.domain.errors import AlreadyReleasedError, NotFoundError
from rentabot.domain.identity import Principal
from rentabot.domain.model import Event, Resource, V1Selection
from rentabot.service.leases import LeaseService
from rentabot.storage.database import Database
from rentabot.storage.store import Store


@dataclass(frozen=True, slots=True)
class Activity:
    """The latest events, and the name of each resource they concern (by id)."""

    events: list[Event]
    names: dict[int, str]


class AdminService:
    """Operator actions, each one audited transaction that also serves the queue."""

    def __init__(self, database: Database, leases: LeaseService) -> None:
        self._database = database
        self._leases = leases

    async def set_maintenance(
        self, resource_id: int, on: bool, *, reason: str | None, admin: Principal
    ) -> Resource:
        """Take a resource out of service (no new grants; a lease on it runs to its end), or
        put it back (the queue is served at once)."""
        await self._leases.serve_queue(
            partial(self._set_maintenance, resource_id, on, reason, admin)
        )
        return await self._resource(resource_id)

    async def force_release(self, resource_id: int, *, reason: str | None, admin: Principal) -> int:
        """End the lease holding the resource (everything it holds is freed and goes to the
        queue); returns the lease's id. Raises AlreadyReleasedError when it is free."""
        return await self._leases.serve_queue(
            partial(self._force_release, resource_id, reason, admin)
        )

    async def events(
        self,
        *,
        after: int = 0,
        resource_id: int | None = None,
        lease_id: int | None = None,
        limit: int = 100,
    ) -> list[Event]:
        """The audit trail after event `after`, oldest first (the API's pages)."""
        return await self._database.read(
            lambda store: store.events(
                after=after, resource_id=resource_id, lease_id=lease_id, limit=limit
            ),
            large=limit > 100,
        )

    async def activity(self, *, limit: int = 100) -> Activity:
        """The latest `limit` events, newest first, with the names of the resources they
        concern (retired ones too: the trail outlives them), in one read."""

        def read(store: Store) -> Activity:
            events = store.events(
                after=0, resource_id=None, lease_id=None, limit=limit, newest_first=True
            )
            named = {e.resource_id for e in events if e.resource_id is not None}
            return Activity(events, store.resource_names(named))

        return await self._database.read(read, large=limit > 100)

    async def last_event_id(self) -> int:
        """The id of the newest event (0: none yet)."""
        return await self._database.read(Store.last_event_id)

    async def _resource(self, resource_id: int) -> Resource:
        resource = await self._database.read(lambda store: store.resource(resource_id))
        if resource is None:
            raise NotFoundError(V1Selection(resource_id=resource_id))
        return resource

    def _set_maintenance(
        self, resource_id: int, on: bool, reason: str | None, admin: Principal, store: Store
    ) -> None:
        now = self._leases.now()
        if not store.set_maintenance(resource_id, on, now):
            raise NotFoundError(V1Selection(resource_id=resource_id))
        store.add_event(
            now,
            "maintenance_on" if on else "maintenance_off",
            resource_id=resource_id,
            actor=admin.name,
            detail={"reason": reason} if reason else None,
        )

    def _force_release(
        self, resource_id: int, reason: str | None, admin: Principal, store: Store
    ) -> int:
        now = self._leases.now()
        ended = store.end_lease_holding(resource_id, now, "force_released")
        if ended is None:
            if store.resource(resource_id) is None:
                raise NotFoundError(V1Selection(resource_id=resource_id))
            raise AlreadyReleasedError(resource_id)
        lease_id, freed = ended
        for freed_id in freed:
            store.add_event(
                now,
                "force_released",
                resource_id=freed_id,
                lease_id=lease_id,
                actor=admin.name,
                detail={"reason": reason} if reason else None,
            )
        return lease_id
