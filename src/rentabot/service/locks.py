"""Locking and unlocking resources: the use cases behind the v1 API and the page."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from functools import partial

from rentabot.domain.allocation import is_expired
from rentabot.domain.errors import AlreadyReleasedError, BusyError, NotFoundError, NotHolderError
from rentabot.domain.model import Grant, Resource, Selector, is_plausible_text
from rentabot.service.leases import Clock, LeasePolicy, grant, new_token
from rentabot.storage.database import Database
from rentabot.storage.store import Store


class LockService:
    """Lock, unlock and look at resources. Every change is one transaction (or savepoint)."""

    def __init__(
        self,
        database: Database,
        *,
        policy: LeasePolicy | None = None,
        clock: Clock = time.time,
        token_factory: Callable[[], str] = new_token,
    ) -> None:
        self._database = database
        self._policy = policy or LeasePolicy()
        self._clock = clock
        self._new_token = token_factory

    def resources(self) -> list[Resource]:
        """Every resource in id order, with its lock state."""
        with self._database.reader() as store:
            return store.resources()

    def resources_page(
        self, tags: tuple[str, ...], state: str | None, offset: int, limit: int
    ) -> tuple[list[Resource], int]:
        """Resources carrying every tag, in `state` (available, locked, maintenance), paged;
        with the number that match."""
        with self._database.reader() as store:
            return store.resources_page(tags, state, offset, limit)

    def resource(self, resource_id: int) -> Resource:
        """One resource. Raises NotFoundError."""
        with self._database.reader() as store:
            resource = store.resource(resource_id)
        if resource is None:
            raise NotFoundError(Selector(resource_id=resource_id))
        return resource

    async def lock(
        self,
        selector: Selector,
        *,
        ttl: float | None = None,
        owner: str | None = None,
        description: str | None = None,
    ) -> Grant:
        """Lock the first free resource the selector matches, without waiting.

        Raises NotFoundError when nothing matches, BusyError when every match is held, and
        InvalidRequestError for a TTL the policy refuses. Answered once committed. Without a
        `ttl`, the policy's default applies (none: held until unlocked, as in the original).
        """
        return await self._database.write(partial(self._lock, selector, ttl, owner, description))

    async def unlock(self, resource_id: int, token: str | None) -> None:
        """Release a resource held with `token`; answered once committed.

        Raises NotFoundError, AlreadyReleasedError (it is free) or NotHolderError (the token
        does not hold it: wrong, missing, or of a lock that has since been released).
        """
        await self._database.write(partial(self._unlock, resource_id, token))

    def _lock(
        self,
        selector: Selector,
        ttl: float | None,
        owner: str | None,
        description: str | None,
        store: Store,
    ) -> Grant:
        now = self._clock()
        expires_at = self._policy.expiry(now, ttl)
        token = self._new_token()
        lease_id, (resource,) = grant(
            store,
            [self._candidate(store, selector)],
            selector,
            now=now,
            token=token,
            expires_at=expires_at,
            ttl=ttl if ttl is not None else self._policy.default_ttl,
            owner=owner,
            description=description,
        )
        return Grant(token, lease_id, resource.fence, resource)

    def _unlock(self, resource_id: int, token: str | None, store: Store) -> None:
        now = self._clock()
        holder = store.holder(resource_id)
        released = (
            holder is not None
            and token is not None
            and hmac.compare_digest(holder[1].encode(), token.encode())
            # A lease past its deadline no longer holds, even before the sweep ends it.
            and not is_expired(holder[2], now)
            and store.release(resource_id, holder[0], now)
        )
        if not released or holder is None:
            resource = store.resource(resource_id)
            if resource is None:
                raise NotFoundError(Selector(resource_id=resource_id))
            if not resource.locked:
                raise AlreadyReleasedError(resource_id)
            raise NotHolderError(resource, token)
        lease_id = holder[0]
        store.end_lease_if_empty(lease_id, now, "released")
        store.add_event(now, "released", resource_id=resource_id, lease_id=lease_id)

    @staticmethod
    def _candidate(store: Store, selector: Selector) -> int:
        """The id to try to claim. Raises NotFoundError / BusyError when there is none."""
        if selector.resource_id is not None:
            return selector.resource_id
        if selector.name is not None:
            found = (
                store.resource_id_by_name(selector.name)
                if is_plausible_text(selector.name)
                else None
            )
            if found is None:
                raise NotFoundError(selector)
            return found
        if selector.tags and all(is_plausible_text(tag) for tag in selector.tags):
            candidates = store.claimable_with_tags(selector.tags)
            if candidates:
                return candidates[0]
            if store.count_visible_with_tags(selector.tags, 1):
                raise BusyError(selector)
        if selector.tags:
            raise NotFoundError(selector, "No resource found matching the tag(s)")
        raise NotFoundError(selector)
