"""Who holds what, on both databases: principals on leases, tickets and events; acting by
identity or by token; request ids per principal; waiting limits; and the conditional updates
whose row count decides every end of a lease."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rentabot.domain.errors import (
    AlreadyReleasedError,
    LeaseEndedError,
    LeaseNotFoundError,
    LimitError,
    NotFoundError,
    NotHolderError,
    RequestIdConflictError,
)
from rentabot.domain.identity import Principal, Role
from rentabot.domain.model import Lease, Selection, V1Selection
from rentabot.service.admin import AdminService
from rentabot.service.leases import LeasePolicy, LeaseService, LeaseTerms, Queued
from rentabot.service.locks import LockService
from rentabot.storage.database import Database
from rentabot.storage.leases import HeldBy
from tests.support import ANONYMOUS, key_principal, rows

pytestmark = pytest.mark.anyio

ALICE = key_principal("alice")
BOB = key_principal("bob")
CAROL = key_principal("carol")
ROOT = key_principal("root", Role.ADMIN)
#: The example resources' ids (examples/resources.yml, in file order).
COFFEE, PRINTER, ANOTHER, NRF1, NRF2 = 1, 2, 3, 4, 5


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def take(leases: LeaseService, principal: Principal, *ids: int, **terms: Any) -> Lease:
    """Lease these resources now (they must be free)."""
    lease = await leases.acquire(Selection(resource_ids=ids), LeaseTerms(**terms), principal)
    assert isinstance(lease, Lease)
    return lease


async def queue(
    leases: LeaseService, principal: Principal, want: Selection, **terms: Any
) -> Queued:
    """Queue a request for `want` (held by someone else), waiting up to 30 s by default."""
    terms.setdefault("wait", 30.0)
    queued = await leases.acquire(want, LeaseTerms(**terms), principal)
    assert isinstance(queued, Queued), queued
    return queued


def snapshot(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of leases, resources, tickets and events: equal snapshots, nothing changed."""
    return {
        table: rows(database, f"SELECT * FROM {table} ORDER BY id")
        for table in ("leases", "resources", "tickets", "events")
    }


def activity(database: Database) -> list[tuple[Any, ...]]:
    """The audit trail after the inventory's own events: (kind, resource, lease, actor)."""
    return rows(
        database,
        "SELECT kind, resource_id, lease_id, actor FROM events"
        " WHERE kind <> 'resource_added' ORDER BY id",
    )


def holders(database: Database) -> dict[int, int | None]:
    """Resource id → the lease holding it (None: free)."""
    return dict(rows(database, "SELECT id, lease_id FROM resources"))


@pytest.fixture
def clock() -> Clock:
    """The lease service's clock."""
    return Clock()


@pytest.fixture
def leases(database: Database, clock: Clock) -> LeaseService:
    """A lease service whose waits return at once (long_poll 0) on the hand-moved clock."""
    return LeaseService(database, policy=LeasePolicy(long_poll=0), clock=clock)


# --- who is recorded ---------------------------------------------------------------------


async def test_a_lease_records_its_principal_and_the_owner_defaults_to_its_name(
    database: Database, leases: LeaseService
) -> None:
    """A key's lease records its name as principal and, unless given, as owner; an anonymous
    lease records no principal ('' in the table) and no owner unless given."""
    mine = await take(leases, ALICE, COFFEE)
    job = await take(leases, ALICE, PRINTER, owner="https://ci.lab/job/7")
    nobody = await take(leases, ANONYMOUS, ANOTHER)
    named = await take(leases, ANONYMOUS, NRF1, owner="bench-3 job")
    assert [(lease.principal, lease.owner) for lease in (mine, job, nobody, named)] == [
        ("alice", "alice"),
        ("alice", "https://ci.lab/job/7"),
        (None, None),
        (None, "bench-3 job"),
    ]
    assert rows(database, "SELECT principal, owner FROM leases ORDER BY id") == [
        ("alice", "alice"),
        ("alice", "https://ci.lab/job/7"),
        ("", None),
        ("", "bench-3 job"),
    ]
    seen = (await leases.get(mine.id, None, ALICE)).lease
    assert (seen.principal, seen.owner) == ("alice", "alice")
    coffee = (await LockService(database, leases).resource(COFFEE)).holder
    assert coffee is not None
    assert (coffee.principal, coffee.owner) == ("alice", "alice")


async def test_a_ticket_records_its_principal_and_its_lease_inherits_it(
    database: Database, leases: LeaseService
) -> None:
    """A queued request records its principal and owner; the lease it is granted has them."""
    holder = await take(leases, ALICE, COFFEE)
    waiting = await queue(leases, BOB, Selection(resource_ids=(COFFEE,)))
    anonymous = await queue(leases, ANONYMOUS, Selection(resource_ids=(COFFEE,)))
    assert (waiting.ticket.principal, waiting.ticket.owner) == ("bob", "bob")
    assert (anonymous.ticket.principal, anonymous.ticket.owner) == (None, None)
    assert rows(database, "SELECT principal, owner FROM tickets ORDER BY id") == [
        ("bob", "bob"),
        ("", None),
    ]
    await leases.release(holder.id, holder.token, ALICE)
    granted = await leases.wait(waiting.ticket.id, None, BOB, 0)
    assert isinstance(granted, Lease)
    assert (granted.principal, granted.owner, granted.token) == ("bob", "bob", waiting.ticket.token)


async def test_events_name_the_principal_that_caused_them_and_nobody_for_expiry(
    database: Database, leases: LeaseService, clock: Clock
) -> None:
    """Grant, renewal and release events carry the acting principal's name; an anonymous
    grant and the expiry sweep carry none."""
    lease = await take(leases, ALICE, COFFEE, PRINTER, ttl=60)
    await leases.renew(lease.id, None, ALICE)
    await leases.release(lease.id, None, ALICE)
    short = await take(leases, ANONYMOUS, NRF1, ttl=10)
    clock.now += 10
    assert await leases.sweep() == 1
    assert activity(database) == [
        ("granted", COFFEE, lease.id, "alice"),
        ("granted", PRINTER, lease.id, "alice"),
        ("renewed", None, lease.id, "alice"),
        ("released", COFFEE, lease.id, "alice"),
        ("released", PRINTER, lease.id, "alice"),
        ("granted", NRF1, short.id, None),
        ("expired", NRF1, short.id, None),
    ]


async def test_whoever_uses_the_token_is_the_actor_recorded(
    database: Database, leases: LeaseService
) -> None:
    """Bob renewing and releasing Alice's lease with its token is recorded as Bob, and the
    lease stays Alice's."""
    lease = await take(leases, ALICE, COFFEE, ttl=60)
    renewed = await leases.renew(lease.id, lease.token, BOB)
    assert renewed.principal == "alice"
    await leases.release(lease.id, lease.token, BOB)
    assert activity(database)[1:] == [
        ("renewed", None, lease.id, "bob"),
        ("released", COFFEE, lease.id, "bob"),
    ]
    assert rows(database, f"SELECT principal, end_reason FROM leases WHERE id = {lease.id}") == [
        ("alice", "released")
    ]


async def test_admin_actions_record_the_admin_s_name(
    database: Database, leases: LeaseService
) -> None:
    """Maintenance on and off and a force-release are recorded with the admin's name and the
    reason; the lease ends as force_released."""
    admin = AdminService(database, leases)
    lease = await take(leases, ALICE, COFFEE, PRINTER)
    assert await admin.force_release(COFFEE, reason="bench on fire", admin=ROOT) == lease.id
    await admin.set_maintenance(ANOTHER, True, reason="firmware", admin=ROOT)
    await admin.set_maintenance(ANOTHER, False, reason=None, admin=ROOT)
    assert activity(database)[2:] == [
        ("force_released", COFFEE, lease.id, "root"),
        ("force_released", PRINTER, lease.id, "root"),
        ("maintenance_on", ANOTHER, None, "root"),
        ("maintenance_off", ANOTHER, None, "root"),
    ]
    details = [event.detail for event in await admin.events() if event.actor == "root"]
    assert details == [{"reason": "bench on fire"}] * 2 + [{"reason": "firmware"}, {}]
    assert (await leases.get(lease.id, None, ALICE)).lease.state == "force_released"


async def test_a_v1_lock_is_the_principal_s_and_its_unlock_names_who(
    database: Database, leases: LeaseService
) -> None:
    """A v1 lock by a key records the key as principal and owner; the unlock's event names
    the caller."""
    locks = LockService(database, leases)
    grant = await locks.lock(V1Selection(name="coffee-machine"), ALICE)
    assert rows(database, "SELECT principal, owner FROM leases") == [("alice", "alice")]
    await locks.unlock(COFFEE, grant.token, BOB)
    assert activity(database) == [
        ("granted", COFFEE, grant.lease_id, "alice"),
        ("released", COFFEE, grant.lease_id, "bob"),
    ]


# --- acting by identity or by token ------------------------------------------------------


async def test_the_owning_key_renews_and_releases_without_the_token(
    database: Database, leases: LeaseService, clock: Clock
) -> None:
    """Sending no token, the lease's own key renews it (by its TTL) and releases it."""
    lease = await take(leases, ALICE, COFFEE, PRINTER, ttl=60)
    clock.now += 30
    renewed = await leases.renew(lease.id, None, ALICE)
    assert renewed.expires_at == clock.now + 60
    assert [resource.id for resource in renewed.resources] == [COFFEE, PRINTER]
    longer = await leases.renew(lease.id, None, ALICE, ttl=600)
    assert longer.expires_at == clock.now + 600
    released = await leases.release(lease.id, None, ALICE)
    assert (released.state, released.resources) == ("released", ())
    assert holders(database)[COFFEE] is None
    assert holders(database)[PRINTER] is None


async def test_another_key_cannot_renew_or_release_and_nothing_changes(
    database: Database, leases: LeaseService, clock: Clock
) -> None:
    """Bob, without the token or with a wrong one, is NotHolderError (not an ended lease) for
    Alice's lease, and no row changes."""
    lease = await take(leases, ALICE, COFFEE, ttl=60)
    clock.now += 1
    before = snapshot(database)
    for token in (None, "wrong", ""):
        with pytest.raises(NotHolderError) as renewing:
            await leases.renew(lease.id, token, BOB)
        assert type(renewing.value) is NotHolderError
        with pytest.raises(NotHolderError) as releasing:
            await leases.release(lease.id, token, BOB)
        assert type(releasing.value) is NotHolderError
    assert snapshot(database) == before
    with pytest.raises(NotHolderError, match=f"Lease {lease.id} is not bob's"):
        await leases.release(lease.id, None, BOB)


async def test_a_wrong_token_is_refused_even_for_the_owning_key(
    database: Database, leases: LeaseService
) -> None:
    """A token, when sent, decides: Alice sending a wrong one for her own lease is refused."""
    lease = await take(leases, ALICE, COFFEE)
    before = snapshot(database)
    with pytest.raises(NotHolderError, match="That token does not hold"):
        await leases.release(lease.id, "wrong", ALICE)
    assert snapshot(database) == before


async def test_anonymous_callers_always_need_the_token(
    database: Database, leases: LeaseService
) -> None:
    """Without a token, an anonymous caller can act on no lease, not even an anonymous one."""
    theirs = await take(leases, ANONYMOUS, COFFEE, ttl=60)
    alices = await take(leases, ALICE, PRINTER, ttl=60)
    before = snapshot(database)
    for lease in (theirs, alices):
        with pytest.raises(NotHolderError, match="token"):
            await leases.renew(lease.id, None, ANONYMOUS)
        with pytest.raises(NotHolderError, match="token"):
            await leases.release(lease.id, None, ANONYMOUS)
    assert snapshot(database) == before
    await leases.release(theirs.id, theirs.token, ANONYMOUS)


async def test_the_token_is_a_capability_for_any_principal(
    database: Database, leases: LeaseService
) -> None:
    """With the token, anyone acts on the lease: another key renews it, an anonymous caller
    releases it."""
    lease = await take(leases, ALICE, COFFEE, ttl=60)
    assert (await leases.renew(lease.id, lease.token, BOB, ttl=120)).expires_at is not None
    released = await leases.release(lease.id, lease.token, ANONYMOUS)
    assert released.state == "released"
    assert holders(database)[COFFEE] is None


async def test_unknown_leases_are_not_found_for_every_caller(leases: LeaseService) -> None:
    """A lease id that does not exist is LeaseNotFoundError, with or without a token."""
    for token, principal in ((None, ALICE), ("x", ANONYMOUS), ("x", BOB)):
        with pytest.raises(LeaseNotFoundError):
            await leases.release(999, token, principal)
        with pytest.raises(LeaseNotFoundError):
            await leases.renew(999, token, principal)
        with pytest.raises(LeaseNotFoundError):
            await leases.get(999, token, principal)


async def test_get_says_whose_the_lease_is(leases: LeaseService) -> None:
    """`yours` is True for the token's bearer and (without a token) the lease's own key; False
    for other keys and anonymous callers without the token; a wrong token is NotHolderError."""
    alices = await take(leases, ALICE, COFFEE)
    anonymous = await take(leases, ANONYMOUS, PRINTER)
    cases = [
        (alices, None, ALICE, True),
        (alices, None, BOB, False),
        (alices, None, ANONYMOUS, False),
        (alices, alices.token, BOB, True),
        (alices, alices.token, ANONYMOUS, True),
        (anonymous, None, ANONYMOUS, False),
        (anonymous, None, ALICE, False),
        (anonymous, anonymous.token, ANONYMOUS, True),
        (anonymous, anonymous.token, ALICE, True),
    ]
    for lease, token, principal, yours in cases:
        seen = await leases.get(lease.id, token, principal)
        assert seen.yours is yours, (lease.id, token, principal)
        assert seen.lease.id == lease.id
    for principal in (ALICE, BOB, ANONYMOUS):
        with pytest.raises(NotHolderError):
            await leases.get(alices.id, "wrong", principal)


# --- tickets -----------------------------------------------------------------------------


async def test_a_ticket_s_key_polls_and_cancels_it_without_the_token(
    database: Database, leases: LeaseService
) -> None:
    """Bob polls and cancels his own ticket by identity; Alice and anonymous callers are
    refused without the token, and the ticket keeps waiting."""
    await take(leases, ALICE, COFFEE)
    waiting = await queue(leases, BOB, Selection(resource_ids=(COFFEE,)))
    ticket_id = waiting.ticket.id
    polled = await leases.wait(ticket_id, None, BOB, 0)
    assert isinstance(polled, Queued)
    assert (polled.ticket.id, polled.position) == (ticket_id, 1)
    before = snapshot(database)
    for principal in (ALICE, ANONYMOUS):
        with pytest.raises(NotHolderError):
            await leases.wait(ticket_id, None, principal, 0)
        with pytest.raises(NotHolderError):
            await leases.cancel(ticket_id, None, principal)
        with pytest.raises(NotHolderError):
            await leases.cancel(ticket_id, "wrong", principal)
    with pytest.raises(NotHolderError):
        await leases.cancel(ticket_id, "wrong", BOB)
    assert snapshot(database) == before
    cancelled = await leases.cancel(ticket_id, None, BOB)
    assert cancelled.state == "cancelled"
    assert rows(database, f"SELECT state FROM tickets WHERE id = {ticket_id}") == [("cancelled",)]


async def test_a_ticket_s_token_works_for_anyone(database: Database, leases: LeaseService) -> None:
    """With a ticket's token, another key polls it and an anonymous caller cancels it."""
    await take(leases, ALICE, COFFEE)
    waiting = await queue(leases, BOB, Selection(resource_ids=(COFFEE,)))
    assert isinstance(await leases.wait(waiting.ticket.id, waiting.ticket.token, ALICE, 0), Queued)
    cancelled = await leases.cancel(waiting.ticket.id, waiting.ticket.token, ANONYMOUS)
    assert cancelled.state == "cancelled"


async def test_an_anonymous_ticket_needs_its_token(leases: LeaseService) -> None:
    """An anonymous ticket cannot be polled or cancelled without its token, by anyone."""
    await take(leases, ALICE, COFFEE)
    waiting = await queue(leases, ANONYMOUS, Selection(resource_ids=(COFFEE,)))
    for principal in (ANONYMOUS, ALICE):
        with pytest.raises(NotHolderError):
            await leases.wait(waiting.ticket.id, None, principal, 0)
        with pytest.raises(NotHolderError):
            await leases.cancel(waiting.ticket.id, None, principal)
    assert isinstance(
        await leases.wait(waiting.ticket.id, waiting.ticket.token, ANONYMOUS, 0), Queued
    )


# --- request ids -------------------------------------------------------------------------


async def test_request_ids_belong_to_their_principal(
    database: Database, leases: LeaseService
) -> None:
    """The same request id from two keys and an anonymous caller is three requests: three
    leases, each its principal's."""
    want = Selection(tags=("ble",))
    first = await leases.acquire(want, LeaseTerms(request_id="job-1"), ALICE)
    second = await leases.acquire(want, LeaseTerms(request_id="job-1"), BOB)
    third = await leases.acquire(
        Selection(resource_ids=(COFFEE,)), LeaseTerms(request_id="job-1"), ANONYMOUS
    )
    assert isinstance(first, Lease)
    assert isinstance(second, Lease)
    assert isinstance(third, Lease)
    assert len({first.id, second.id, third.id}) == 3
    assert {first.resources[0].id, second.resources[0].id} == {NRF1, NRF2}
    assert rows(database, "SELECT principal, request_id FROM leases ORDER BY id") == [
        ("alice", "job-1"),
        ("bob", "job-1"),
        ("", "job-1"),
    ]


async def test_a_replay_of_the_same_selection_gets_the_same_lease(
    database: Database, leases: LeaseService
) -> None:
    """Retrying with the same request id and the same selection (in any order) answers the
    first lease, token included, and grants nothing more."""
    terms = LeaseTerms(request_id="job-2")
    first = await leases.acquire(Selection(resource_ids=(PRINTER, COFFEE)), terms, ALICE)
    assert isinstance(first, Lease)
    before = snapshot(database)
    again = await leases.acquire(Selection(resource_ids=(COFFEE, PRINTER, COFFEE)), terms, ALICE)
    assert isinstance(again, Lease)
    assert (again.id, again.token) == (first.id, first.token)
    assert [resource.id for resource in again.resources] == [COFFEE, PRINTER]
    assert snapshot(database) == before
    await leases.release(first.id, None, ALICE)
    ended = await leases.acquire(Selection(resource_ids=(COFFEE, PRINTER)), terms, ALICE)
    assert isinstance(ended, Lease)
    assert (ended.id, ended.state, ended.resources) == (first.id, "released", ())


async def test_concurrent_retries_with_one_request_id_get_one_lease(
    database: Database, leases: LeaseService
) -> None:
    """Three retries of one request at once (a client that timed out and resent) answer one
    lease; another key's same request id at the same time is a lease of its own."""
    want, terms = Selection(tags=("ble",)), LeaseTerms(request_id="job-4")
    outcomes = await asyncio.gather(
        leases.acquire(want, terms, ALICE),
        leases.acquire(want, terms, ALICE),
        leases.acquire(want, terms, BOB),
        leases.acquire(want, terms, ALICE),
    )
    granted = [outcome for outcome in outcomes if isinstance(outcome, Lease)]
    assert len(granted) == 4
    alices = {(lease.id, lease.token) for lease in granted if lease.principal == "alice"}
    assert len(alices) == 1
    assert granted[2].principal == "bob"
    assert granted[2].id not in {lease_id for lease_id, _ in alices}
    assert rows(
        database, "SELECT principal, COUNT(*) FROM leases GROUP BY principal ORDER BY 1"
    ) == [
        ("alice", 1),
        ("bob", 1),
    ]


async def test_a_request_id_reused_for_another_selection_is_a_conflict(
    database: Database, leases: LeaseService
) -> None:
    """Another selection under a used request id is RequestIdConflictError, and nothing is
    granted for it."""
    terms = LeaseTerms(request_id="job-3")
    await leases.acquire(Selection(tags=("nrf52",)), terms, ALICE)
    before = snapshot(database)
    for other in (
        Selection(resource_ids=(COFFEE,)),
        Selection(names=("coffee-machine",)),
        Selection(tags=("nrf52",), count=2),
        Selection(tags=("nrf52", "ble")),
    ):
        with pytest.raises(RequestIdConflictError, match="another selection"):
            await leases.acquire(other, terms, ALICE)
    assert snapshot(database) == before


async def test_an_anonymous_replay_must_also_have_the_same_owner(
    database: Database, leases: LeaseService
) -> None:
    """Anonymous callers share one space of request ids: a replay with another owner (or
    none) is a conflict; with the same owner it is the same lease."""
    want = Selection(resource_ids=(COFFEE,))
    first = await leases.acquire(want, LeaseTerms(owner="job-9", request_id="r"), ANONYMOUS)
    assert isinstance(first, Lease)
    before = snapshot(database)
    for owner in ("job-10", None, "JOB-9"):
        with pytest.raises(RequestIdConflictError, match="another owner"):
            await leases.acquire(want, LeaseTerms(owner=owner, request_id="r"), ANONYMOUS)
    assert snapshot(database) == before
    again = await leases.acquire(want, LeaseTerms(owner="job-9", request_id="r"), ANONYMOUS)
    assert isinstance(again, Lease)
    assert (again.id, again.token) == (first.id, first.token)
    unnamed = await leases.acquire(
        Selection(resource_ids=(PRINTER,)), LeaseTerms(request_id="s"), ANONYMOUS
    )
    replayed = await leases.acquire(
        Selection(resource_ids=(PRINTER,)), LeaseTerms(request_id="s"), ANONYMOUS
    )
    assert isinstance(unnamed, Lease)
    assert isinstance(replayed, Lease)
    assert replayed.id == unnamed.id


async def test_a_key_s_replay_may_change_the_owner_text(leases: LeaseService) -> None:
    """For a key, the owner is only a label: a replay with another owner is the same lease."""
    want = Selection(resource_ids=(COFFEE,))
    first = await leases.acquire(want, LeaseTerms(owner="a", request_id="r"), ALICE)
    again = await leases.acquire(want, LeaseTerms(owner="b", request_id="r"), ALICE)
    assert isinstance(first, Lease)
    assert isinstance(again, Lease)
    assert (again.id, again.owner) == (first.id, "a")


async def test_a_replay_of_a_queued_request_gets_its_ticket_then_its_lease(
    database: Database, leases: LeaseService
) -> None:
    """A replay of a waiting request answers its ticket (no second ticket); another selection
    is a conflict; another key's same id is a new ticket; once granted, the replay answers
    the lease."""
    holder = await take(leases, ALICE, COFFEE)
    want = Selection(resource_ids=(COFFEE,))
    first = await queue(leases, BOB, want, request_id="q")
    again = await queue(leases, BOB, want, request_id="q")
    assert (again.ticket.id, again.ticket.token, again.position) == (
        first.ticket.id,
        first.ticket.token,
        1,
    )
    assert rows(database, "SELECT COUNT(*) FROM tickets") == [(1,)]
    with pytest.raises(RequestIdConflictError):
        await leases.acquire(
            Selection(resource_ids=(PRINTER,)), LeaseTerms(wait=30, request_id="q"), BOB
        )
    carols = await queue(leases, CAROL, want, request_id="q")
    assert carols.ticket.id != first.ticket.id
    await leases.release(holder.id, None, ALICE)
    granted = await leases.acquire(want, LeaseTerms(wait=30, request_id="q"), BOB)
    assert isinstance(granted, Lease)
    assert (granted.token, granted.principal) == (first.ticket.token, "bob")


async def test_an_anonymous_replay_of_a_queued_request_must_have_the_same_owner(
    database: Database, leases: LeaseService
) -> None:
    """A waiting anonymous request replays only with the same selection and owner."""
    await take(leases, ALICE, COFFEE)
    want = Selection(resource_ids=(COFFEE,))
    first = await queue(leases, ANONYMOUS, want, owner="job-1", request_id="q")
    with pytest.raises(RequestIdConflictError, match="another owner"):
        await leases.acquire(want, LeaseTerms(wait=30, owner="job-2", request_id="q"), ANONYMOUS)
    with pytest.raises(RequestIdConflictError, match="another selection"):
        await leases.acquire(
            Selection(tags=("coffee",)),
            LeaseTerms(wait=30, owner="job-1", request_id="q"),
            ANONYMOUS,
        )
    again = await queue(leases, ANONYMOUS, want, owner="job-1", request_id="q")
    assert again.ticket.id == first.ticket.id
    assert rows(database, "SELECT COUNT(*) FROM tickets") == [(1,)]


# --- waiting limits ----------------------------------------------------------------------


async def test_one_principal_may_not_fill_the_queue(database: Database, clock: Clock) -> None:
    """With max_waiting_per_principal=2, Bob's third waiting request is LimitError
    too_many_waiting and queues nothing, while Carol can still queue; a cancel makes room."""
    leases = LeaseService(
        database, policy=LeasePolicy(long_poll=0, max_waiting_per_principal=2), clock=clock
    )
    await take(leases, ALICE, COFFEE)
    want = Selection(resource_ids=(COFFEE,))
    first = await queue(leases, BOB, want)
    await queue(leases, BOB, want)
    with pytest.raises(LimitError) as refused:
        await queue(leases, BOB, want)
    assert refused.value.code == "too_many_waiting"
    assert "bob already has 2 requests waiting" in refused.value.message
    assert rows(database, "SELECT COUNT(*) FROM tickets WHERE principal = 'bob'") == [(2,)]
    await queue(leases, CAROL, want)
    await leases.cancel(first.ticket.id, None, BOB)
    await queue(leases, BOB, want)


async def test_anonymous_callers_share_one_allowance(database: Database, clock: Clock) -> None:
    """All anonymous callers count as one principal against max_waiting_per_principal."""
    leases = LeaseService(
        database, policy=LeasePolicy(long_poll=0, max_waiting_per_principal=2), clock=clock
    )
    await take(leases, ALICE, COFFEE)
    want = Selection(resource_ids=(COFFEE,))
    await queue(leases, ANONYMOUS, want, owner="job-1")
    await queue(leases, ANONYMOUS, want, owner="job-2")
    with pytest.raises(
        LimitError, match="anonymous callers already have 2 requests waiting"
    ) as refused:
        await queue(leases, ANONYMOUS, want, owner="job-3")
    assert refused.value.code == "too_many_waiting"
    await queue(leases, BOB, want)


async def test_a_full_queue_refuses_everyone(database: Database, clock: Clock) -> None:
    """With max_waiting=3, a fourth waiting request, of anyone, is LimitError queue_full."""
    leases = LeaseService(database, policy=LeasePolicy(long_poll=0, max_waiting=3), clock=clock)
    await take(leases, ALICE, COFFEE)
    want = Selection(resource_ids=(COFFEE,))
    for principal in (BOB, CAROL, ANONYMOUS):
        await queue(leases, principal, want)
    before = snapshot(database)
    for principal in (BOB, ALICE, key_principal("dave"), ANONYMOUS):
        with pytest.raises(LimitError, match="The queue is full") as refused:
            await queue(leases, principal, want)
        assert refused.value.code == "queue_full"
    assert snapshot(database) == before


async def test_a_full_queue_never_refuses_what_can_be_granted_now(
    database: Database, clock: Clock
) -> None:
    """With the queue full (and the caller's allowance used up), a request whose resources
    are free, and wanted by no waiter, is granted at once, asked to wait or not."""
    leases = LeaseService(
        database,
        policy=LeasePolicy(long_poll=0, max_waiting=1, max_waiting_per_principal=1),
        clock=clock,
    )
    await take(leases, ALICE, COFFEE)
    await queue(leases, BOB, Selection(resource_ids=(COFFEE,)))
    now = await leases.acquire(Selection(resource_ids=(PRINTER,)), LeaseTerms(wait=30), BOB)
    assert isinstance(now, Lease)
    tagged = await leases.acquire(Selection(tags=("nrf52",), count=2), LeaseTerms(wait=30), BOB)
    assert isinstance(tagged, Lease)
    at_once = await leases.acquire(Selection(resource_ids=(ANOTHER,)), LeaseTerms(), CAROL)
    assert isinstance(at_once, Lease)


# --- the row count decides ---------------------------------------------------------------


async def test_a_lease_past_its_deadline_cannot_be_released_or_renewed_before_the_sweep(
    database: Database, leases: LeaseService, clock: Clock
) -> None:
    """At its deadline, not yet swept, a lease is LeaseEndedError("expired") for release and
    renewal, by token or identity; nothing is freed or recorded until the sweep expires it."""
    lease = await take(leases, ALICE, COFFEE, PRINTER, ttl=60)
    clock.now += 60
    before = snapshot(database)
    for token in (lease.token, None):
        with pytest.raises(LeaseEndedError) as releasing:
            await leases.release(lease.id, token, ALICE)
        assert releasing.value.reason == "expired"
        with pytest.raises(LeaseEndedError) as renewing:
            await leases.renew(lease.id, token, ALICE, ttl=600)
        assert renewing.value.reason == "expired"
    assert snapshot(database) == before
    assert holders(database)[COFFEE] == lease.id
    assert await leases.sweep() == 1
    assert activity(database)[2:] == [
        ("expired", COFFEE, lease.id, None),
        ("expired", PRINTER, lease.id, None),
    ]
    with pytest.raises(LeaseEndedError, match="has ended \\(expired\\)"):
        await leases.release(lease.id, lease.token, ALICE)


async def test_an_ended_lease_says_how_it_ended(database: Database, leases: LeaseService) -> None:
    """A released or force-released lease is LeaseEndedError with that reason, and a second
    end records nothing."""
    released = await take(leases, ALICE, COFFEE)
    forced = await take(leases, ALICE, PRINTER)
    await leases.release(released.id, None, ALICE)
    await AdminService(database, leases).force_release(PRINTER, reason=None, admin=ROOT)
    before = snapshot(database)
    for lease, reason in ((released, "released"), (forced, "force_released")):
        with pytest.raises(LeaseEndedError) as refused:
            await leases.release(lease.id, lease.token, ALICE)
        assert refused.value.reason == reason
        with pytest.raises(LeaseEndedError):
            await leases.renew(lease.id, None, ALICE)
    assert snapshot(database) == before


async def test_end_lease_with_a_wrong_holder_matches_no_row(
    database: Database, leases: LeaseService, clock: Clock
) -> None:
    """store.end_lease on an active lease with a wrong token, a wrong principal, or the right
    principal and a wrong token returns None and changes no row; the right token ends it."""
    lease = await take(leases, ALICE, COFFEE, PRINTER, ttl=60)
    now = clock.now + 1

    async def end(held: HeldBy) -> list[int] | None:
        return await database.write(lambda store: store.end_lease(lease.id, now, "released", held))

    before = snapshot(database)
    for held in (
        HeldBy(now, token="wrong"),
        HeldBy(now, principal="bob"),
        HeldBy(now, principal=""),
        HeldBy(now, token="wrong", principal="alice"),
        HeldBy(now, token=lease.token, principal="bob"),
        HeldBy(clock.now + 60, token=lease.token),
    ):
        assert await end(held) is None, held
    assert snapshot(database) == before
    assert await end(HeldBy(now, principal="alice")) == [COFFEE, PRINTER]
    assert await end(HeldBy(now, token=lease.token)) is None


async def test_extend_with_a_wrong_holder_matches_no_row(
    database: Database, leases: LeaseService, clock: Clock
) -> None:
    """store.extend with a wrong principal or token, or past the deadline, returns False and
    moves no deadline; the right principal moves it."""
    lease = await take(leases, ALICE, COFFEE, ttl=60)
    now = clock.now + 1

    async def extend(held: HeldBy) -> bool:
        return await database.write(lambda store: store.extend(lease.id, held, now + 600))

    before = snapshot(database)
    for held in (
        HeldBy(now, principal="bob"),
        HeldBy(now, token="wrong"),
        HeldBy(now, token="wrong", principal="alice"),
        HeldBy(clock.now + 60, principal="alice"),
    ):
        assert await extend(held) is False, held
    assert snapshot(database) == before
    assert await extend(HeldBy(now, principal="alice")) is True
    assert rows(database, f"SELECT expires_at FROM leases WHERE id = {lease.id}") == [(now + 600,)]


async def test_force_releasing_a_free_resource_records_nothing(
    database: Database, leases: LeaseService
) -> None:
    """Force-releasing a free resource is AlreadyReleasedError, an unknown one NotFoundError;
    neither writes an event."""
    admin = AdminService(database, leases)
    lease = await take(leases, ALICE, COFFEE)
    await leases.release(lease.id, None, ALICE)
    before = snapshot(database)
    for resource_id in (COFFEE, PRINTER):
        with pytest.raises(AlreadyReleasedError):
            await admin.force_release(resource_id, reason="stuck?", admin=ROOT)
    with pytest.raises(NotFoundError):
        await admin.force_release(99, reason=None, admin=ROOT)
    assert snapshot(database) == before


async def test_two_concurrent_releases_end_the_lease_once(
    database: Database, leases: LeaseService
) -> None:
    """Two releases with the same token at once: exactly one succeeds, the other is
    LeaseEndedError("released"), and each resource's release is recorded once."""
    lease = await take(leases, ALICE, COFFEE, PRINTER)
    outcomes = await asyncio.gather(
        leases.release(lease.id, lease.token, ALICE),
        leases.release(lease.id, lease.token, BOB),
        return_exceptions=True,
    )
    done = [outcome for outcome in outcomes if isinstance(outcome, Lease)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(done) == 1
    assert len(refused) == 1
    assert isinstance(refused[0], LeaseEndedError)
    assert refused[0].reason == "released"
    assert [event[0] for event in activity(database)] == ["granted"] * 2 + ["released"] * 2


async def test_a_release_racing_a_force_release_ends_the_lease_once(
    database: Database, leases: LeaseService
) -> None:
    """A holder's release and an admin's force-release at once: one ends the lease, the other
    is refused, and only the winner's events are recorded."""
    lease = await take(leases, ALICE, COFFEE)
    outcomes = await asyncio.gather(
        leases.release(lease.id, None, ALICE),
        AdminService(database, leases).force_release(COFFEE, reason=None, admin=ROOT),
        return_exceptions=True,
    )
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(failures) == 1
    assert isinstance(failures[0], LeaseEndedError | AlreadyReleasedError)
    ends = [event for event in activity(database) if event[0] != "granted"]
    assert len(ends) == 1
    winner = "released" if ends[0][0] == "released" else "force_released"
    assert ends[0][0] == winner
    assert rows(database, f"SELECT end_reason FROM leases WHERE id = {lease.id}") == [(winner,)]
