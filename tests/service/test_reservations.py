"""Upstream 1.x reservations as tickets of the one queue: fulfilled at release, the claim
window, cancel, max_wait_time, fairness with v2 waiters (a hand-moved clock)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rentabot.domain.errors import (
    BusyError,
    NotFoundError,
    ReservationNotFoundError,
    ReservationStateError,
)
from rentabot.domain.model import Lease, Selection
from rentabot.service.bootstrap import prepare_database
from rentabot.service.leases import LeasePolicy, LeaseService, LeaseTerms, Queued
from rentabot.service.reservations import ReservationService
from rentabot.settings import Settings
from rentabot.storage.database import Database
from rentabot.storage.opening import open_database
from tests.support import ANONYMOUS, key_principal

pytestmark = pytest.mark.anyio

ALICE = key_principal("alice")
BOB = key_principal("bob")


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def two_bots(make_settings: Callable[..., Settings]) -> Database:
    """Two resources tagged `bot`, one `other`."""
    settings = make_settings(
        {"a": {"tags": ["bot"]}, "b": {"tags": ["bot"]}, "c": {"tags": ["other"]}}
    )
    prepare_database(settings)
    return open_database(settings.database_url)


def services(database: Database, clock: Clock) -> tuple[LeaseService, ReservationService]:
    """A lease service and a reservation service sharing one queue and clock."""
    leases = LeaseService(database, clock=clock, policy=LeasePolicy(keepalive=10))
    reservations = ReservationService(
        database, leases.wakeups, policy=leases.policy, claim_window=60, clock=clock
    )
    return leases, reservations


async def test_a_reservation_waits_and_is_fulfilled_by_the_release(two_bots: Database) -> None:
    """Pending behind a holder, fulfilled in the release's own transaction, at place 1."""
    clock = Clock()
    leases, reservations = services(two_bots, clock)
    held = await leases.acquire(Selection(tags=("bot",), count=1), LeaseTerms(), ALICE)
    assert isinstance(held, Lease)
    pending = await reservations.reserve(("bot",), 2, 300, 3600, ALICE)
    assert (pending.status, pending.position_in_queue, pending.lock_tokens) == ("pending", 1, None)
    clock.now += 5
    await leases.release(held.id, held.token, ALICE)
    fulfilled = await reservations.get(pending.reservation_id, ALICE)
    assert fulfilled.status == "fulfilled"
    assert fulfilled.resource_ids == (1, 2)
    assert fulfilled.lock_tokens is not None
    assert len(fulfilled.lock_tokens) == 2
    assert fulfilled.claim_expires_at == clock.now + 60
    two_bots.dispose()


async def test_an_unclaimed_reservation_expires_exactly_and_the_next_waiter_is_served(
    two_bots: Database,
) -> None:
    """At grant + 60 s the reservation is expired and a waiting direct lock gets the bots."""
    clock = Clock()
    leases, reservations = services(two_bots, clock)
    first = await reservations.reserve(("bot",), 2, 300, 3600, ALICE)
    assert first.status == "fulfilled"
    clock.now += 59.999
    assert (await reservations.get(first.reservation_id, ALICE)).status == "fulfilled"
    with pytest.raises(BusyError):
        await leases.acquire(Selection(tags=("bot",), count=1), LeaseTerms(), BOB)
    clock.now += 0.001
    assert (await reservations.get(first.reservation_id, ALICE)).status == "expired"
    with pytest.raises(ReservationStateError) as late:
        await reservations.claim(first.reservation_id, ALICE)
    assert late.value.gone
    # The runtime sweeps at the next deadline (exact expiry); here the test runs it.
    assert await leases.sweep() == 1
    taken = await leases.acquire(Selection(tags=("bot",), count=2), LeaseTerms(), BOB)
    assert isinstance(taken, Lease)
    two_bots.dispose()


async def test_claim_runs_the_lease_for_the_ttl_and_cannot_be_repeated(two_bots: Database) -> None:
    """Claimed at +30 s, the lease lasts to +30+300 s; a second claim is a conflict."""
    clock = Clock()
    leases, reservations = services(two_bots, clock)
    made = await reservations.reserve(("bot",), 1, 300, 3600, ALICE)
    clock.now += 30
    claimed = await reservations.claim(made.reservation_id, ALICE)
    assert (claimed.status, claimed.claimed_at) == ("claimed", clock.now)
    clock.now += 299
    with pytest.raises(BusyError):
        await leases.acquire(Selection(resource_ids=claimed.resource_ids or ()), LeaseTerms(), BOB)
    with pytest.raises(ReservationStateError) as again:
        await reservations.claim(made.reservation_id, ALICE)
    assert (again.value.status, again.value.gone) == ("claimed", False)
    two_bots.dispose()


async def test_a_pending_claim_is_a_conflict_and_cancel_serves_the_next(
    two_bots: Database,
) -> None:
    """Claiming a pending one is 409-like; cancelling it lets the one behind be served."""
    clock = Clock()
    leases, reservations = services(two_bots, clock)
    held = await leases.acquire(Selection(tags=("bot",), count=1), LeaseTerms(), ALICE)
    assert isinstance(held, Lease)
    big = await reservations.reserve(("bot",), 2, 300, 3600, ALICE)
    small = await reservations.reserve(("bot",), 1, 300, 3600, BOB)
    # Strictly fair: the later, smaller one does not overtake (1.x would grant it).
    assert (small.status, small.position_in_queue) == ("pending", 2)
    with pytest.raises(ReservationStateError) as early:
        await reservations.claim(big.reservation_id, ALICE)
    assert (early.value.status, early.value.gone) == ("pending", False)
    assert (await reservations.cancel(big.reservation_id, ALICE)).status == "cancelled"
    assert (await reservations.get(small.reservation_id, BOB)).status == "fulfilled"
    with pytest.raises(ReservationStateError):
        await reservations.cancel(small.reservation_id, BOB)
    two_bots.dispose()


async def test_max_wait_time_bounds_the_pending_wait_without_polls(two_bots: Database) -> None:
    """Never polled, a pending one is not abandoned at the keep-alive, but expires at
    max_wait_time, and the sweep then takes it out of the queue."""
    clock = Clock()
    leases, reservations = services(two_bots, clock)
    held = await leases.acquire(Selection(tags=("bot",), count=2), LeaseTerms(), ALICE)
    assert isinstance(held, Lease)
    pending = await reservations.reserve(("bot",), 1, 300, 100, ALICE)
    clock.now += 50
    await leases.sweep()
    assert (await reservations.get(pending.reservation_id, ALICE)).status == "pending"
    clock.now += 50
    assert (await reservations.get(pending.reservation_id, ALICE)).status == "expired"
    await leases.sweep()
    await leases.release(held.id, held.token, ALICE)
    assert (await reservations.get(pending.reservation_id, ALICE)).status == "expired"
    two_bots.dispose()


async def test_a_v2_waiter_and_a_reservation_are_served_in_arrival_order(
    two_bots: Database,
) -> None:
    """v2 waiter first, then a reservation, then a v2 waiter: one release each, in that
    order, and a direct lock never barges ahead of the reservation."""
    clock = Clock()
    leases, reservations = services(two_bots, clock)
    pick = Selection(tags=("bot",), count=2)
    held = await leases.acquire(pick, LeaseTerms(), ALICE)
    assert isinstance(held, Lease)
    first = await leases.acquire(pick, LeaseTerms(wait=0.01), BOB, None)
    assert isinstance(first, Queued)
    clock.now += 1
    middle = await reservations.reserve(("bot",), 2, 300, 3600, ALICE)
    clock.now += 1
    last = await leases.acquire(pick, LeaseTerms(wait=0.01), BOB)
    assert isinstance(last, Queued)
    assert middle.position_in_queue == 2
    await leases.release(held.id, held.token, ALICE)
    granted = await leases.wait(first.ticket.id, first.ticket.token, BOB, 0)
    assert isinstance(granted, Lease)
    assert (await reservations.get(middle.reservation_id, ALICE)).status == "pending"
    await leases.release(granted.id, granted.token, BOB)
    assert (await reservations.get(middle.reservation_id, ALICE)).status == "fulfilled"
    with pytest.raises(BusyError):
        await leases.acquire(Selection(tags=("bot",), count=1), LeaseTerms(), BOB)
    assert isinstance(await leases.wait(last.ticket.id, last.ticket.token, BOB, 0), Queued)
    two_bots.dispose()


async def test_only_the_creator_finds_a_reservation(two_bots: Database) -> None:
    """Another principal (or an anonymous caller) gets not-found; anonymous lists are empty."""
    clock = Clock()
    _, reservations = services(two_bots, clock)
    mine = await reservations.reserve(("bot",), 1, 300, 3600, ALICE)
    for other in (BOB, ANONYMOUS):
        with pytest.raises(ReservationNotFoundError):
            await reservations.get(mine.reservation_id, other)
    assert [r.reservation_id for r in await reservations.list_mine(ALICE)] == [mine.reservation_id]
    assert await reservations.list_mine(BOB) == []
    anon = await reservations.reserve(("bot",), 1, 300, 3600, ANONYMOUS)
    assert (await reservations.get(anon.reservation_id, ANONYMOUS)).status == "fulfilled"
    assert await reservations.list_mine(ANONYMOUS) == []
    with pytest.raises(NotFoundError):
        await reservations.reserve(("bot",), 3, 300, 3600, ALICE)
    two_bots.dispose()


async def test_a_reservation_joining_the_queue_is_audited_with_who_reserved(
    two_bots: Database,
) -> None:
    """Like a v2 request that waits, a reservation writes `ticket_queued` naming its ticket
    and its creator: the page's Waiting counts and the activity view hear of it."""
    clock = Clock()
    leases, reservations = services(two_bots, clock)
    held = await leases.acquire(Selection(tags=("bot",), count=2), LeaseTerms(), ALICE)
    assert isinstance(held, Lease)
    await reservations.reserve(("bot",), 1, 300, 3600, BOB)
    events = await two_bots.read(
        lambda store: store.events(after=0, resource_id=None, lease_id=None, limit=100)
    )
    (queued,) = [e for e in events if e.kind == "ticket_queued"]
    assert queued.actor == "bob"
    (ticket,) = await two_bots.read(lambda store: store.waiting_tickets(10))
    assert queued.detail == {"ticket": ticket.id}
    two_bots.dispose()
