"""The lock service on a real SQLite database: claims, releases, errors, fences, events."""

from __future__ import annotations

import asyncio
import json

import pytest

from rentabot.domain.errors import AlreadyReleasedError, BusyError, NotFoundError, NotHolderError
from rentabot.domain.model import Resource, Selector
from rentabot.service.leases import LeaseService
from rentabot.service.locks import LockService
from rentabot.storage.database import Database
from tests.support import ANONYMOUS, key_principal, rows

pytestmark = pytest.mark.anyio


def _holding(resource: Resource) -> int | None:
    """The id of the lease holding the resource (None: free)."""
    return resource.holder.lease_id if resource.holder is not None else None


async def test_lock_then_unlock_by_id(database: Database) -> None:
    """A free resource locks, shows as held with the token, and frees with that token."""
    service = LockService(database, LeaseService(database))
    grant = await service.lock(Selector(resource_id=2), ANONYMOUS)
    assert grant.resource.id == 2
    assert grant.resource.holder is not None
    assert grant.resource.holder.lease_id == grant.lease_id
    assert _holding(await service.resource(2)) == grant.lease_id
    await service.unlock(2, grant.token, ANONYMOUS)
    assert (await service.resource(2)).holder is None


async def test_busy_and_not_found(database: Database) -> None:
    """A held resource is busy; unknown ids, names and tags are not found."""
    service = LockService(database, LeaseService(database))
    await service.lock(Selector(resource_id=1), ANONYMOUS)
    with pytest.raises(BusyError):
        await service.lock(Selector(resource_id=1), ANONYMOUS)
    with pytest.raises(BusyError):
        await service.lock(Selector(name="coffee-machine"), ANONYMOUS)
    with pytest.raises(NotFoundError):
        await service.lock(Selector(resource_id=99), ANONYMOUS)
    with pytest.raises(NotFoundError):
        await service.lock(Selector(name="nope"), ANONYMOUS)
    with pytest.raises(NotFoundError, match="matching the tag"):
        await service.lock(Selector(tags=("coffee", "nrf52")), ANONYMOUS)


async def test_lock_by_tags_takes_free_matches_in_id_order(database: Database) -> None:
    """Every tag must match; the lowest free id goes first; then busy."""
    service = LockService(database, LeaseService(database))
    first = await service.lock(Selector(tags=("nrf52", "ble")), ANONYMOUS)
    second = await service.lock(Selector(tags=("ble",)), ANONYMOUS)
    assert (first.resource.id, second.resource.id) == (4, 5)
    with pytest.raises(BusyError):
        await service.lock(Selector(tags=("nrf52",)), ANONYMOUS)


async def test_unlock_errors_change_nothing(database: Database) -> None:
    """Free, wrong token, missing token and unknown id each raise their error; the lock holds."""
    service = LockService(database, LeaseService(database))
    with pytest.raises(AlreadyReleasedError):
        await service.unlock(3, "whatever", ANONYMOUS)
    grant = await service.lock(Selector(resource_id=3), ANONYMOUS)
    for token in ("wrong", None, "", "\x00", "x" * 10_000):
        with pytest.raises(NotHolderError):
            await service.unlock(3, token, ANONYMOUS)
    with pytest.raises(NotFoundError):
        await service.unlock(42, grant.token, ANONYMOUS)
    assert _holding(await service.resource(3)) == grant.lease_id
    await service.unlock(3, grant.token, ANONYMOUS)


async def test_a_released_token_cannot_free_the_next_holder(database: Database) -> None:
    """After unlock and a new lock, the old token is refused: it never frees the new lease."""
    service = LockService(database, LeaseService(database))
    old = await service.lock(Selector(resource_id=1), ANONYMOUS)
    await service.unlock(1, old.token, ANONYMOUS)
    new = await service.lock(Selector(resource_id=1), ANONYMOUS)
    with pytest.raises(NotHolderError):
        await service.unlock(1, old.token, ANONYMOUS)
    assert _holding(await service.resource(1)) == new.lease_id


async def test_fences_strictly_increase_per_resource(database: Database) -> None:
    """Every grant of a resource carries a larger fence than the one before."""
    service = LockService(database, LeaseService(database))
    fences = []
    for _ in range(5):
        grant = await service.lock(Selector(resource_id=2), ANONYMOUS)
        fences.append(grant.fence)
        await service.unlock(2, grant.token, ANONYMOUS)
    other = await service.lock(Selector(resource_id=3), ANONYMOUS)
    assert fences == [1, 2, 3, 4, 5]
    assert other.fence == 1


async def test_grants_and_releases_are_audited(database: Database) -> None:
    """Each grant and release appends an event with the lease, the principal as its actor and, for
    grants, the fence and owner."""
    service = LockService(database, LeaseService(database))
    grant = await service.lock(Selector(resource_id=2), key_principal("ci-job-7"))
    await service.unlock(2, grant.token, ANONYMOUS)
    events = rows(
        database,
        "SELECT kind, resource_id, lease_id, actor, detail FROM events"
        " WHERE kind IN ('granted', 'released') ORDER BY id",
    )
    assert [(e[0], e[1], e[2]) for e in events] == [
        ("granted", 2, grant.lease_id),
        ("released", 2, grant.lease_id),
    ]
    assert events[0][3] == "ci-job-7"
    assert json.loads(str(events[0][4])) == {"fence": 1, "expires_at": None, "owner": "ci-job-7"}
    ended = rows(database, f"SELECT end_reason FROM leases WHERE id = {grant.lease_id}")
    assert ended == [("released",)]


async def test_concurrent_locks_of_one_resource_have_one_winner(database: Database) -> None:
    """Fifty locks of the same resource in one group commit: exactly one is granted."""
    service = LockService(database, LeaseService(database))
    outcomes = await asyncio.gather(
        *(service.lock(Selector(resource_id=1), ANONYMOUS) for _ in range(50)),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(o, BusyError) for o in outcomes if isinstance(o, BaseException))
    assert _holding(await service.resource(1)) == winners[0].lease_id
    leases = rows(database, "SELECT COUNT(*) FROM leases")
    assert leases == [(1,)], "the losers' savepoints must leave no lease behind"


async def test_concurrent_double_unlock_frees_once(database: Database) -> None:
    """Two unlocks with one token and a lock between them: one unlock wins, the new lock holds."""
    service = LockService(database, LeaseService(database))
    grant = await service.lock(Selector(resource_id=1), ANONYMOUS)
    outcomes = await asyncio.gather(
        service.unlock(1, grant.token, ANONYMOUS),
        service.lock(Selector(resource_id=1), ANONYMOUS),
        service.unlock(1, grant.token, ANONYMOUS),
        return_exceptions=True,
    )
    assert outcomes[0] is None
    new = outcomes[1]
    assert not isinstance(new, BaseException)
    assert new is not None
    assert isinstance(outcomes[2], NotHolderError)
    assert _holding(await service.resource(1)) == new.lease_id
