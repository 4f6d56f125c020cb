"""Leases: acquire resources (by ids, names, or tags and a count), renew, release, expire.

Every change is one operation in the database's group commit (see storage/database.py); the
conditional updates in the store decide every claim, so no Python check can grant twice.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

from rentabot.domain.allocation import TtlError, is_expired, lease_expiry
from rentabot.domain.errors import (
    BusyError,
    InvalidRequestError,
    LeaseEndedError,
    LeaseNotFoundError,
    NotFoundError,
    NotHolderError,
)
from rentabot.domain.model import Lease, Resource, Selector, Want, is_plausible_text
from rentabot.storage.database import Database
from rentabot.storage.store import LeaseRow, Store

Clock = Callable[[], float]

#: Leases the expiry sweep ends per group commit (more wait for the next tick).
SWEEP_BATCH = 500


def new_token() -> str:
    """A fresh secret lock token (the original's format: a random UUID4 string)."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    """The operator's rules for lease times (RENTABOT_DEFAULT_TTL, RENTABOT_MAX_TTL)."""

    default_ttl: float | None = None
    max_ttl: float | None = None

    def expiry(self, now: float, ttl: float | None) -> float | None:
        """The deadline of a lease granted or renewed now. Raises InvalidRequestError."""
        try:
            return lease_expiry(now, ttl, default_ttl=self.default_ttl, max_ttl=self.max_ttl)
        except TtlError as error:
            raise InvalidRequestError(str(error)) from None


def grant(
    store: Store,
    resource_ids: Sequence[int],
    selector: Selector | Want,
    *,
    now: float,
    token: str,
    expires_at: float | None,
    ttl: float | None,
    owner: str | None,
    description: str | None,
    request_id: str | None = None,
) -> tuple[int, list[Resource]]:
    """Give these resources to a new lease, all of them or none (BusyError / NotFoundError).

    Each claim is a conditional update; a failed one raises, and the caller's savepoint
    undoes the claims made before it.
    """
    lease_id = store.insert_lease(
        token,
        now,
        owner=owner,
        description=description,
        expires_at=expires_at,
        ttl=ttl,
        request_id=request_id,
    )
    claimed: list[Resource] = []
    for resource_id in resource_ids:
        resource = store.claim(resource_id, lease_id, now)
        if resource is None:
            if store.resource(resource_id) is None:
                raise NotFoundError(selector)
            raise BusyError(selector)
        store.add_event(
            now,
            "granted",
            resource_id=resource_id,
            lease_id=lease_id,
            actor=owner,
            detail={"fence": resource.fence, "expires_at": expires_at},
        )
        claimed.append(replace(resource, lock_token=token))
    return lease_id, claimed


def _lease(row: LeaseRow, resources: Sequence[Resource]) -> Lease:
    return Lease(
        id=row.id,
        token=row.token,
        owner=row.owner,
        description=row.description,
        acquired_at=row.acquired_at,
        expires_at=row.expires_at,
        ttl=row.ttl,
        ended_at=row.ended_at,
        end_reason=row.end_reason,
        resources=tuple(resources),
    )


class LeaseService:
    """Acquire, renew, release and expire leases."""

    def __init__(
        self,
        database: Database,
        *,
        policy: LeasePolicy | None = None,
        clock: Clock = time.time,
        token_factory: Callable[[], str] = new_token,
    ) -> None:
        self._database = database
        self.policy = policy or LeasePolicy()
        self._clock = clock
        self._new_token = token_factory

    async def acquire(
        self,
        want: Want,
        *,
        ttl: float | None = None,
        owner: str | None = None,
        description: str | None = None,
        request_id: str | None = None,
    ) -> Lease:
        """Lease what `want` asks for now, all or nothing, without waiting.

        Raises NotFoundError (nothing, or not enough, matches), BusyError (it exists but is
        held), InvalidRequestError (a TTL the policy refuses). With a `request_id` that an
        earlier acquire already used, returns that lease instead of taking a second one.
        """
        return await self._database.write(
            partial(self._acquire, want, ttl, owner, description, request_id)
        )

    async def renew(self, lease_id: int, token: str, ttl: float | None = None) -> Lease:
        """Push the lease's deadline to now + ttl (default: the lease's own TTL)."""
        return await self._database.write(partial(self._renew, lease_id, token, ttl))

    async def release(self, lease_id: int, token: str) -> Lease:
        """End the lease and free everything it holds."""
        return await self._database.write(partial(self._release, lease_id, token))

    def get(self, lease_id: int, token: str) -> Lease:
        """The lease, to its holder (NotHolderError otherwise); an ended lease holds nothing."""
        with self._database.reader() as store:
            row = self._row(store, lease_id, token)
            return _lease(row, store.held_by(lease_id) if row.ended_at is None else ())

    async def expire_due(self) -> int:
        """End every lease whose deadline has passed (one sweep); returns how many ended."""
        return await self._database.write(self._expire_due)

    # ------------------------------------------------------------------ operations

    def _acquire(
        self,
        want: Want,
        ttl: float | None,
        owner: str | None,
        description: str | None,
        request_id: str | None,
        store: Store,
    ) -> Lease:
        if request_id is not None:
            earlier = store.lease_by_request_id(request_id)
            if earlier is not None:
                held = store.held_by(earlier.id) if earlier.ended_at is None else ()
                return _lease(earlier, held)
        now = self._clock()
        expires_at = self.policy.expiry(now, ttl)
        resource_ids = self._choose(store, want)
        token = self._new_token()
        lease_id, resources = grant(
            store,
            resource_ids,
            want,
            now=now,
            token=token,
            expires_at=expires_at,
            ttl=ttl if ttl is not None else self.policy.default_ttl,
            owner=owner,
            description=description,
            request_id=request_id,
        )
        row = LeaseRow(lease_id, token, owner, description, now, expires_at, ttl, None, None)
        return _lease(row, resources)

    @staticmethod
    def _choose(store: Store, want: Want) -> list[int]:
        """The ids to claim. Raises NotFoundError / BusyError when the want cannot be met."""
        if want.names:
            if not all(is_plausible_text(name) for name in want.names):
                raise NotFoundError(want, "No resource has that name")
            found = store.resource_ids_by_name(want.names)
            missing = [name for name in want.names if name not in found]
            if missing:
                raise NotFoundError(want, f"No resource named {', '.join(missing)}")
            return sorted(set(found.values()))
        if want.resource_ids:
            missing_ids = [i for i in want.resource_ids if store.resource(i) is None]
            if missing_ids:
                raise NotFoundError(want, f"No resource with id {missing_ids[0]}")
            return sorted(set(want.resource_ids))
        if not all(is_plausible_text(tag) for tag in want.tags):
            raise NotFoundError(want, "No resource carries those tags")
        chosen = store.claimable_with_tags(want.tags, want.count)
        if len(chosen) == want.count:
            return chosen
        existing = store.count_visible_with_tags(want.tags, want.count)
        if existing < want.count:
            raise NotFoundError(
                want,
                f"Only {existing} resource(s) carry the tags {list(want.tags)},"
                f" {want.count} asked for",
            )
        raise BusyError(want)

    def _row(self, store: Store, lease_id: int, token: str) -> LeaseRow:
        """The lease if `token` is its token; raises LeaseNotFoundError / NotHolderError."""
        row = store.lease(lease_id)
        if row is None:
            raise LeaseNotFoundError(lease_id)
        if not hmac.compare_digest(row.token.encode(), token.encode()):
            raise NotHolderError(None, token, f"That token does not hold lease {lease_id}")
        return row

    def _active_row(self, store: Store, lease_id: int, token: str, now: float) -> LeaseRow:
        row = self._row(store, lease_id, token)
        if row.end_reason is not None:
            raise LeaseEndedError(lease_id, row.end_reason)
        if is_expired(row.expires_at, now):
            raise LeaseEndedError(lease_id, "expired")
        return row

    def _renew(self, lease_id: int, token: str, ttl: float | None, store: Store) -> Lease:
        now = self._clock()
        row = self._active_row(store, lease_id, token, now)
        expires_at = self.policy.expiry(now, ttl if ttl is not None else row.ttl)
        if not store.extend(lease_id, now, expires_at):
            raise LeaseEndedError(lease_id, "expired")
        store.add_event(
            now, "renewed", lease_id=lease_id, actor=row.owner, detail={"expires_at": expires_at}
        )
        return _lease(replace(row, expires_at=expires_at), store.held_by(lease_id))

    def _release(self, lease_id: int, token: str, store: Store) -> Lease:
        now = self._clock()
        row = self._active_row(store, lease_id, token, now)
        freed = store.end_lease(lease_id, now, "released")
        for resource_id in freed:
            store.add_event(now, "released", resource_id=resource_id, lease_id=lease_id)
        return _lease(replace(row, ended_at=now, end_reason="released"), ())

    def _expire_due(self, store: Store) -> int:
        now = self._clock()
        ended = 0
        for lease_id in store.expired_leases(now, SWEEP_BATCH):
            freed = store.end_lease(lease_id, now, "expired")
            ended += 1
            for resource_id in freed:
                store.add_event(now, "expired", resource_id=resource_id, lease_id=lease_id)
        return ended
