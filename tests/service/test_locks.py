"""The lock service on a real SQLite database: claims, releases, errors, fences, events."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from rentabot.domain.errors import AlreadyReleasedError, BusyError, NotFoundError, NotHolderError
from rentabot.domain.model import Resource, V1Lock, V1Selection
from rentabot.service.leases import LeaseService
from rentabot.service.locks import LockService
from rentabot.settings import Settings
from rentabot.storage.database import Database
from rentabot.storage.opening import open_database
from tests.support import ANONYMOUS, key_principal, rows

pytestmark = pytest.mark.anyio


def _holding(resource: Resource) -> int | None:
    """The id of the lease holding the resource (None: free)."""
    return resource.holder.lease_id if resource.holder is not None else None


async def test_lock_then_unlock_by_id(database: Database) -> None:
    """A free resource locks, shows as held with the token, and frees with that token."""
    service = LockService(database, LeaseService(database))
    grant = await service.lock(V1Selection(resource_id=2), ANONYMOUS)
    assert grant.resource.id == 2
    assert grant.resource.holder is not None
    assert grant.resource.holder.lease_id == grant.lease_id
    assert _holding(await service.resource(2)) == grant.lease_id
    await service.unlock(2, grant.token, ANONYMOUS)
    assert (await service.resource(2)).holder is None


async def test_busy_and_not_found(database: Database) -> None:
    """A held resource is busy; unknown ids, names and tags are not found."""
    service = LockService(database, LeaseService(database))
    await service.lock(V1Selection(resource_id=1), ANONYMOUS)
    with pytest.raises(BusyError):
        await service.lock(V1Selection(resource_id=1), ANONYMOUS)
    with pytest.raises(BusyError):
        await service.lock(V1Selection(name="coffee-machine"), ANONYMOUS)
    with pytest.raises(NotFoundError):
        await service.lock(V1Selection(resource_id=99), ANONYMOUS)
    with pytest.raises(NotFoundError):
        await service.lock(V1Selection(name="nope"), ANONYMOUS)
    with pytest.raises(NotFoundError, match="matching the tag"):
        await service.lock(V1Selection(tags=("coffee", "nrf52")), ANONYMOUS)


async def test_lock_by_tags_takes_free_matches_in_id_order(database: Database) -> None:
    """Every tag must match; the lowest free id goes first; then busy."""
    service = LockService(database, LeaseService(database))
    first = await service.lock(V1Selection(tags=("nrf52", "ble")), ANONYMOUS)
    second = await service.lock(V1Selection(tags=("ble",)), ANONYMOUS)
    assert (first.resource.id, second.resource.id) == (4, 5)
    with pytest.raises(BusyError):
        await service.lock(V1Selection(tags=("nrf52",)), ANONYMOUS)


async def test_unlock_errors_change_nothing(database: Database) -> None:
    """Free, wrong token, missing token and unknown id each raise their error; the lock holds."""
    service = LockService(database, LeaseService(database))
    with pytest.raises(AlreadyReleasedError):
        await service.unlock(3, "whatever", ANONYMOUS)
    grant = await service.lock(V1Selection(resource_id=3), ANONYMOUS)
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
    old = await service.lock(V1Selection(resource_id=1), ANONYMOUS)
    await service.unlock(1, old.token, ANONYMOUS)
    new = await service.lock(V1Selection(resource_id=1), ANONYMOUS)
    with pytest.raises(NotHolderError):
        await service.unlock(1, old.token, ANONYMOUS)
    assert _holding(await service.resource(1)) == new.lease_id


async def test_fences_strictly_increase_per_resource(database: Database) -> None:
    """Every grant of a resource carries a larger fence than the one before."""
    service = LockService(database, LeaseService(database))
    fences = []
    for _ in range(5):
        grant = await service.lock(V1Selection(resource_id=2), ANONYMOUS)
        fences.append(grant.fence)
        await service.unlock(2, grant.token, ANONYMOUS)
    other = await service.lock(V1Selection(resource_id=3), ANONYMOUS)
    assert fences == [1, 2, 3, 4, 5]
    assert other.fence == 1


async def test_grants_and_releases_are_audited(database: Database) -> None:
    """Each grant and release appends an event with the lease, the principal as its actor and, for
    grants, the fence and owner."""
    service = LockService(database, LeaseService(database))
    grant = await service.lock(V1Selection(resource_id=2), key_principal("ci-job-7"))
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


async def test_fifty_locks_of_one_resource_in_one_group_commit_have_one_winner(
    database: Database,
) -> None:
    """Fifty locks of the same resource in one group commit (one transaction, one after
    another): exactly one is granted, and the losers leave no lease behind."""
    service = LockService(database, LeaseService(database))
    outcomes = await asyncio.gather(
        *(service.lock(V1Selection(resource_id=1), ANONYMOUS) for _ in range(50)),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(o, BusyError) for o in outcomes if isinstance(o, BaseException))
    assert _holding(await service.resource(1)) == winners[0].lease_id
    leases = rows(database, "SELECT COUNT(*) FROM leases")
    assert leases == [(1,)], "the losers' savepoints must leave no lease behind"


async def test_a_double_unlock_in_one_group_commit_frees_once(database: Database) -> None:
    """Two unlocks with one token and a lock between them, in one group commit: one unlock
    wins, the new lock holds."""
    service = LockService(database, LeaseService(database))
    grant = await service.lock(V1Selection(resource_id=1), ANONYMOUS)
    outcomes = await asyncio.gather(
        service.unlock(1, grant.token, ANONYMOUS),
        service.lock(V1Selection(resource_id=1), ANONYMOUS),
        service.unlock(1, grant.token, ANONYMOUS),
        return_exceptions=True,
    )
    assert outcomes[0] is None
    new = outcomes[1]
    assert not isinstance(new, BaseException)
    assert new is not None
    assert isinstance(outcomes[2], NotHolderError)
    assert _holding(await service.resource(1)) == new.lease_id


T = TypeVar("T")


def _race(
    url: str, count: int, attempt: Callable[[LockService, int], Awaitable[T]]
) -> list[T | BaseException]:
    """Run `attempt(service, i)` in `count` threads at once, each with its own database
    object (its own connections, its own event loop), all released together by a barrier:
    concurrent transactions, as from several server processes."""
    barrier = threading.Barrier(count)
    outcomes: list[T | BaseException] = [RuntimeError("did not run")] * count

    def run(index: int) -> None:
        database = open_database(url)
        service = LockService(database, LeaseService(database))

        async def go() -> T:
            await service.resource(1)  # connected before the start
            barrier.wait(timeout=30)
            return await attempt(service, index)

        try:
            outcomes[index] = asyncio.run(go())
        except BaseException as error:  # the outcome under test, for the caller to judge
            outcomes[index] = error
        finally:
            database.dispose()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a racing thread hung"
    return outcomes


def test_concurrent_locks_from_separate_connections_have_one_winner(
    database: Database, example_settings: Settings
) -> None:
    """Twelve threads, each with its own connections, lock one resource at the same instant:
    exactly one is granted, every other is busy, and one lease exists."""
    outcomes = _race(
        example_settings.database_url,
        12,
        lambda service, _: service.lock(V1Selection(resource_id=1), ANONYMOUS),
    )
    winners = [o for o in outcomes if isinstance(o, V1Lock)]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, BusyError) for o in outcomes if not isinstance(o, V1Lock))
    assert rows(database, "SELECT COUNT(*) FROM leases") == [(1,)]
    assert rows(database, "SELECT lease_id FROM resources WHERE id = 1") == [(winners[0].lease_id,)]


def test_concurrent_unlocks_and_a_lock_from_separate_connections_free_once(
    database: Database, example_settings: Settings
) -> None:
    """Two unlocks with one token and a lock, from three connections at once, ten rounds:
    one unlock frees it, the other is refused, and a lock that got in is never freed by the
    late unlock."""
    service = LockService(database, LeaseService(database))
    for _ in range(10):
        held = asyncio.run(service.lock(V1Selection(resource_id=1), ANONYMOUS))

        async def attempt(racer: LockService, index: int, token: str = held.token) -> V1Lock | None:
            if index == 1:
                return await racer.lock(V1Selection(resource_id=1), ANONYMOUS)
            await racer.unlock(1, token, ANONYMOUS)
            return None

        outcomes = _race(example_settings.database_url, 3, attempt)
        unlocks = [outcomes[0], outcomes[2]]
        assert sum(1 for o in unlocks if o is None) == 1, outcomes
        assert all(
            isinstance(o, NotHolderError | AlreadyReleasedError) for o in unlocks if o is not None
        )
        holder = rows(database, "SELECT lease_id FROM resources WHERE id = 1")[0][0]
        if isinstance(outcomes[1], V1Lock):
            assert holder == outcomes[1].lease_id, "the late unlock freed the new holder"
            asyncio.run(service.unlock(1, outcomes[1].token, ANONYMOUS))
        else:
            assert isinstance(outcomes[1], BusyError), outcomes
            assert holder is None
