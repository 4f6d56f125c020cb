"""The lease service with a hand-moved clock: expiry sweeps and waits that run out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from rentabot.domain.errors import BusyError, NotGrantedError
from rentabot.domain.model import Lease, Selection
from rentabot.service.bootstrap import prepare_database
from rentabot.service.leases import SWEEP_BATCH, LeasePolicy, LeaseService, LeaseTerms, Queued
from rentabot.settings import Settings
from rentabot.storage.database import Database
from rentabot.storage.opening import open_database
from tests.support import ANONYMOUS, rows

pytestmark = pytest.mark.anyio


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_thousands_of_leases_expiring_together_end_in_one_sweep(
    make_settings: Callable[..., Settings],
) -> None:
    """2.5 batches' worth of leases due at once: one sweep call ends them all, none early."""
    count = SWEEP_BATCH * 5 // 2
    settings = make_settings({f"r{i}": {"tags": ["t"]} for i in range(count)})
    prepare_database(settings)
    database = open_database(settings.database_url)
    clock = Clock()
    leases = LeaseService(database, clock=clock)
    granted = await asyncio.gather(
        *(
            leases.acquire(Selection(resource_ids=(i + 1,)), LeaseTerms(ttl=60), ANONYMOUS)
            for i in range(count)
        )
    )
    assert all(isinstance(lease, Lease) for lease in granted)
    clock.now += 59.999
    assert await leases.sweep() == 0
    clock.now += 0.001
    assert await leases.sweep() == count
    assert rows(database, "SELECT COUNT(*) FROM resources WHERE lease_id IS NOT NULL") == [(0,)]
    assert rows(database, "SELECT COUNT(*) FROM events WHERE kind = 'expired'") == [(count,)]
    # A second sweep finds nothing left: no double expiry.
    assert await leases.sweep() == 0
    database.dispose()


async def test_a_wait_that_runs_out_is_refused_not_left_waiting(database: Database) -> None:
    """Asked to wait 0.3 s under a 30 s long-poll: NotGrantedError after 0.3 s, not a ticket."""
    leases = LeaseService(database, policy=LeasePolicy(long_poll=30))
    holder = await leases.acquire(Selection(resource_ids=(1,)), LeaseTerms(), ANONYMOUS)
    assert isinstance(holder, Lease)
    started = asyncio.get_running_loop().time()
    with pytest.raises(NotGrantedError, match="timed out") as refused:
        await leases.acquire(Selection(resource_ids=(1,)), LeaseTerms(wait=0.3), ANONYMOUS)
    assert (refused.value.reason, refused.value.position) == ("timed_out", 1)
    waited = asyncio.get_running_loop().time() - started
    # It waited its 0.3 s (an instant refusal is wrong too), and not the long-poll's 30 s.
    assert 0.3 <= waited < 2
    assert await leases.queue() == []


async def test_a_wait_the_sweep_ends_first_still_says_its_last_place(
    database: Database,
) -> None:
    """The sweep may end a ticket whose wait ran out before its own waiter looks again (a
    busy server): the waiter's refusal still carries the place it last had."""
    clock = Clock()
    leases = LeaseService(database, clock=clock, policy=LeasePolicy(long_poll=30))
    holder = await leases.acquire(Selection(resource_ids=(1,)), LeaseTerms(), ANONYMOUS)
    assert isinstance(holder, Lease)
    waiting = asyncio.create_task(
        leases.acquire(Selection(resource_ids=(1,)), LeaseTerms(wait=2), ANONYMOUS)
    )
    for _ in range(1000):
        if await leases.queue():
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)  # the waiter has read its place and sleeps
    clock.now += 2.5  # its wait ran out...
    await leases.sweep()  # ...and the sweep ends the ticket before the waiter looks again
    with pytest.raises(NotGrantedError) as refused:
        await waiting
    assert (refused.value.reason, refused.value.position) == ("timed_out", 1)


async def test_a_release_hands_the_resource_to_the_waiter_at_once(database: Database) -> None:
    """The waiter's call returns its lease as soon as the holder releases."""
    leases = LeaseService(database)
    holder = await leases.acquire(Selection(resource_ids=(2,)), LeaseTerms(), ANONYMOUS)
    assert isinstance(holder, Lease)
    waiting = asyncio.create_task(
        leases.acquire(Selection(resource_ids=(2,)), LeaseTerms(wait=10), ANONYMOUS)
    )
    for _ in range(100):
        if await leases.queue():
            break
        await asyncio.sleep(0.01)
    assert [ticket.state for ticket, _ in (await leases.queue())] == ["waiting"]
    await leases.release(holder.id, holder.token, ANONYMOUS)
    granted = await asyncio.wait_for(waiting, 2)
    assert not isinstance(granted, Queued)
    assert granted.resources[0].id == 2
    assert granted.resources[0].fence == holder.resources[0].fence + 1


async def test_a_lease_past_its_deadline_never_blocks_the_next_request(database: Database) -> None:
    """No sweep runs here: a lock asked for the instant after a lease's deadline is granted,
    and the old lease ends as expired (with its event), so expiry is exact, not a sweep late."""
    clock = Clock()
    leases = LeaseService(database, clock=clock)
    first = await leases.acquire(Selection(resource_ids=(1,)), LeaseTerms(ttl=30), ANONYMOUS)
    assert isinstance(first, Lease)
    clock.now += 29.999
    with pytest.raises(BusyError):
        await leases.acquire(Selection(resource_ids=(1,)), LeaseTerms(ttl=30), ANONYMOUS)
    clock.now += 0.001
    second = await leases.acquire(Selection(resource_ids=(1,)), LeaseTerms(ttl=30), ANONYMOUS)
    assert isinstance(second, Lease)
    assert rows(database, f"SELECT end_reason FROM leases WHERE id = {first.id}") == [("expired",)]
    expired = f"SELECT COUNT(*) FROM events WHERE kind = 'expired' AND lease_id = {first.id}"
    assert rows(database, expired) == [(1,)]


async def test_a_waiter_gets_a_resource_freed_by_expiry_before_a_newcomer(
    database: Database,
) -> None:
    """The resource's lease is past its deadline and a request waits for it: a newcomer's
    request ends the lease, and the resource goes to the waiter (first come, first served)."""
    clock = Clock()
    leases = LeaseService(database, clock=clock, policy=LeasePolicy(long_poll=0.01))
    holder = await leases.acquire(Selection(resource_ids=(2,)), LeaseTerms(ttl=30), ANONYMOUS)
    assert isinstance(holder, Lease)
    waiter = await leases.acquire(
        Selection(resource_ids=(2,)), LeaseTerms(ttl=30, wait=600), ANONYMOUS
    )
    assert isinstance(waiter, Queued)
    clock.now += 30
    with pytest.raises(BusyError):
        await leases.acquire(Selection(resource_ids=(2,)), LeaseTerms(ttl=30), ANONYMOUS)
    granted = rows(database, f"SELECT state FROM tickets WHERE id = {waiter.ticket.id}")
    assert granted == [("granted",)]
