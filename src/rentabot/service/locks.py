"""The original rent-a-bot use cases: lock one resource by id, name or tags; unlock it.

They are leases like any other (service/leases.py), resolved the original's way and
answering the original's errors; unlocking serves the wait queue in the same transaction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import suppress
from functools import partial
from typing import NamedTuple

from rentabot.domain.allocation import FreeResource, waiting_for
from rentabot.domain.errors import (
    AlreadyReleasedError,
    BusyError,
    LockTooLongError,
    NotFoundError,
    NotGrantedError,
    NotHolderError,
    RentabotError,
)
from rentabot.domain.identity import Principal
from rentabot.domain.model import (
    Extended,
    Lease,
    Resource,
    Selection,
    V1Lock,
    V1Selection,
    is_plausible_text,
)
from rentabot.service.leases import LeaseService, LeaseTerms, Queued, StillThere
from rentabot.service.queue import QUEUE_SCAN, Need, ticket_waiter
from rentabot.storage.database import Database
from rentabot.storage.leases import HeldBy
from rentabot.storage.store import Store


class Browsed(NamedTuple):
    """A page of the people's resource view: its resources, how many match in all, and how
    many waiting requests could take each resource on the page (by id)."""

    resources: list[Resource]
    total: int
    waiting: Mapping[int, int]


class LockService:
    """Lock, unlock and look at resources, as the v1 API and the page need."""

    def __init__(self, database: Database, leases: LeaseService) -> None:
        self._database = database
        self._leases = leases

    async def resources(self) -> list[Resource]:
        """Every resource in id order, with its lock state."""
        return await self._database.read(Store.resources, large=True)

    async def resources_page(
        self, tags: tuple[str, ...], state: str | None, offset: int, limit: int
    ) -> tuple[list[Resource], int]:
        """Resources carrying every tag, in `state` (available, locked, maintenance), paged;
        with the number that match."""
        return await self._database.read(
            lambda store: store.resources_page(tags, state, offset, limit), large=True
        )

    async def browse(
        self,
        tags: tuple[str, ...] = (),
        state: str | None = None,
        holder: str | None = None,
        text: str | None = None,
        sort: str = "id",
        offset: int = 0,
        limit: int = 50,
    ) -> Browsed:
        """The page's view of resources: `resources_page`, also by holder (owner or
        principal) and free text, sorted (`id`, `name`, `expires`, `since`); with the number
        that match and, per resource, how many waiting requests could take it."""

        def query(store: Store) -> Browsed:
            resources, total = store.browse(tags, state, holder, text, sort, offset, limit)
            waiters = [ticket_waiter(t) for t in store.waiting_tickets(QUEUE_SCAN)]
            free = (FreeResource(r.id, frozenset(r.tags)) for r in resources)
            return Browsed(resources, total, waiting_for(waiters, free) if waiters else {})

        return await self._database.read(query)

    async def resource(self, resource_id: int) -> Resource:
        """One resource. Raises NotFoundError."""
        resource = await self._database.read(lambda store: store.resource(resource_id))
        if resource is None:
            raise NotFoundError(V1Selection(resource_id=resource_id))
        return resource

    async def resource_id_named(self, name: str) -> int | None:
        """The id of the visible resource with this name (None: none)."""
        if not is_plausible_text(name):
            return None
        return await self._database.read(lambda store: store.resource_id_by_name(name))

    async def holder_tokens(self, resource_ids: list[int]) -> dict[int, str]:
        """The holders' tokens of these resources, for RENTABOT_EXPOSE_LOCK_TOKENS only:
        nothing else shows a token to anyone but its holder."""
        return await self._database.read(lambda store: store.holder_tokens(resource_ids))

    async def lock(
        self,
        selector: V1Selection,
        principal: Principal,
        *,
        ttl: float | None = None,
        wait: float = 0.0,
        still_there: StillThere | None = None,
    ) -> V1Lock:
        """Lock the first free resource the selector matches (lowest id first).

        Without `wait`, a held resource answers BusyError at once; with it, the request
        waits its turn in the queue for up to `wait` seconds (BusyError when it runs out).
        Raises NotFoundError when nothing matches, InvalidRequestError for a refused TTL.
        Without a `ttl`, the policy's default applies (none: held until unlocked). The lease
        is the principal's, and its owner the principal's name.
        """
        try:
            outcome = await self._leases.acquire_resolved(
                partial(self._need, selector),
                LeaseTerms(ttl=ttl, wait=wait),
                principal,
                still_there=still_there,
            )
            # One call waits up to the long-poll bound; the original's one request waits it all.
            while isinstance(outcome, Queued):
                remaining = outcome.ticket.wait_until - self._leases.now()
                if remaining <= 0 or (still_there is not None and not await still_there()):
                    break
                outcome = await self._leases.wait(
                    outcome.ticket.id, outcome.ticket.token, principal, remaining, still_there
                )
        except NotGrantedError:
            raise BusyError(selector) from None
        if isinstance(outcome, Queued):
            with suppress(RentabotError):
                await self._leases.cancel(outcome.ticket.id, outcome.ticket.token, principal)
            raise BusyError(selector)
        return _v1_lock(outcome)

    async def unlock(self, resource_id: int, token: str | None, principal: Principal) -> None:
        """Release a resource held with `token`; answered once committed.

        Raises NotFoundError, AlreadyReleasedError (it is free) or NotHolderError (the token
        does not hold it: wrong, missing, expired, or of a lock released since).
        """
        await self._leases.serve_queue(partial(self._unlock, resource_id, token, principal))

    async def extend(
        self,
        resource_id: int,
        token: str,
        additional: float,
        principal: Principal,
        *,
        max_total: float | None = None,
    ) -> Extended:
        """Upstream 1.x's extend: the lock held with `token` lasts until now + `additional`,
        or keeps its later deadline (an extension never shortens a lock).

        Raises InvalidRequestError when `additional` is not a positive number of seconds the
        policy allows, LockTooLongError when the lock would then last more than `max_total`
        seconds since it was acquired; NotFoundError, AlreadyReleasedError or NotHolderError
        as `unlock`.
        """
        return await self._database.write(
            partial(self._extend, resource_id, token, additional, principal, max_total)
        )

    def _extend(
        self,
        resource_id: int,
        token: str,
        additional: float,
        principal: Principal,
        max_total: float | None,
        store: Store,
    ) -> Extended:
        now = self._leases.now()
        asked = self._leases.policy.expiry(now, additional)
        lease_id = (
            store.lease_holding(resource_id, token, now) if is_plausible_text(token) else None
        )
        row = store.lease(lease_id) if lease_id is not None else None
        if row is None:
            raise self._not_holding(store, resource_id, token)
        expires_at = None if row.expires_at is None or asked is None else max(row.expires_at, asked)
        if max_total is not None:
            total = (expires_at if expires_at is not None else math.inf) - row.acquired_at
            if total > max_total:
                raise LockTooLongError(total, max_total)
        if not store.extend(row.id, HeldBy(now, token=token), expires_at):
            raise self._not_holding(store, resource_id, token)
        store.add_event(
            now,
            "renewed",
            resource_id=resource_id,
            lease_id=row.id,
            actor=principal.name,
            detail={"expires_at": expires_at},
        )
        return Extended(resource_id, row.acquired_at, expires_at)

    @staticmethod
    def _not_holding(store: Store, resource_id: int, token: str | None) -> RentabotError:
        """Why a token does not hold a resource: no such resource, free, or not its token."""
        resource = store.resource(resource_id)
        if resource is None:
            return NotFoundError(V1Selection(resource_id=resource_id))
        if not resource.locked:
            return AlreadyReleasedError(resource_id)
        return NotHolderError(resource, token)

    @staticmethod
    def _need(selector: V1Selection, store: Store) -> tuple[Need, V1Selection | Selection]:
        """The original's resolution: an id, a name, or tags (every one must match)."""
        if selector.resource_id is not None:
            # Existence is checked only if it cannot be granted (LeaseService._acquire).
            return Need((selector.resource_id,), (), 1), selector
        if selector.name is not None:
            found = (
                store.resource_id_by_name(selector.name)
                if is_plausible_text(selector.name)
                else None
            )
            if found is None:
                raise NotFoundError(selector)
            return Need((found,), (), 1), selector
        if selector.tags:
            if all(is_plausible_text(tag) for tag in selector.tags):
                # Whether any exists is checked only if none can be granted.
                return Need(None, tuple(sorted(set(selector.tags))), 1), selector
            raise NotFoundError(selector, "No resource found matching the tag(s)")
        raise NotFoundError(selector)

    def _unlock(
        self, resource_id: int, token: str | None, principal: Principal, store: Store
    ) -> None:
        now = self._leases.now()
        # Both conditional: the token must hold an unexpired lease on the resource, and that
        # lease must still hold it when it is freed. The second row count decides.
        lease_id = (
            store.lease_holding(resource_id, token, now)
            if token is not None and is_plausible_text(token)
            else None
        )
        if lease_id is None or not store.release(resource_id, lease_id, now):
            raise self._not_holding(store, resource_id, token)
        store.end_lease_if_empty(lease_id, now, "released")
        store.add_event(
            now, "released", resource_id=resource_id, lease_id=lease_id, actor=principal.name
        )


def _v1_lock(lease: Lease) -> V1Lock:
    (resource,) = lease.resources
    return V1Lock(lease.token, lease.id, resource.fence, resource)
