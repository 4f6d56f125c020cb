"""A person's place in the queue (LeaseService.request, a page's hang-up, cancel), on SQLite
and PostgreSQL with a hand-moved clock."""

from __future__ import annotations

import pytest

from rentabot.domain.identity import Principal, Role
from rentabot.domain.model import Lease, Selection
from rentabot.service.leases import LeasePolicy, LeaseService, LeaseTerms, Queued
from rentabot.storage.database import Database
from rentabot.storage.store import Store
from tests.support import key_principal

pytestmark = pytest.mark.anyio

HOLDER = key_principal("holder")
#: A person signed in at the page (a session cookie: an ambient credential).
ADA = Principal("ada", Role.LOCK, "session")
#: A machine with an API key.
BOT = key_principal("bot")
KEEPALIVE = 10.0
GRACE = 120.0
BOARD = Selection(resource_ids=(1,))


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def _hung_up() -> bool:
    return False


def _service(database: Database, clock: Clock) -> LeaseService:
    policy = LeasePolicy(keepalive=KEEPALIVE, person_grace=GRACE)
    return LeaseService(database, policy=policy, clock=clock)


async def _state(database: Database, ticket_id: int) -> str:
    ticket = await database.read(lambda store: Store.ticket(store, ticket_id))
    assert ticket is not None
    return ticket.state


async def test_request_answers_at_once_with_the_lease_or_the_ticket(database: Database) -> None:
    """Free: the lease, at once. Held: the ticket at place 1, without waiting in the call."""
    clock = Clock()
    leases = _service(database, clock)
    first = await leases.request(BOARD, LeaseTerms(ttl=60, wait=3600), HOLDER)
    assert isinstance(first, Lease)
    queued = await leases.request(BOARD, LeaseTerms(ttl=60, wait=3600), ADA)
    assert isinstance(queued, Queued)
    assert queued.position == 1
    assert queued.ticket.principal == "ada"
    assert await _state(database, queued.ticket.id) == "waiting"


@pytest.mark.parametrize(
    ("who", "kept_for"), [(ADA, GRACE + KEEPALIVE), (BOT, KEEPALIVE)], ids=["person", "key"]
)
async def test_a_person_s_place_outlives_their_page_by_the_grace_and_a_machine_s_does_not(
    database: Database, who: Principal, kept_for: float
) -> None:
    """Both wait; their poll hangs up (the page closed, the client died). The person's ticket
    is still waiting after the keep-alive and leaves only past grace + keep-alive; the key's
    leaves past the keep-alive alone."""
    clock = Clock()
    leases = _service(database, clock)
    await leases.request(BOARD, LeaseTerms(ttl=3600), HOLDER)
    queued = await leases.request(BOARD, LeaseTerms(ttl=60, wait=3600), who)
    assert isinstance(queued, Queued)
    again = await leases.wait(queued.ticket.id, None, who, 30, still_there=_hung_up)
    assert isinstance(again, Queued)
    clock.now += kept_for - 1
    await leases.sweep()
    assert await _state(database, queued.ticket.id) == "waiting"
    clock.now += 2
    await leases.sweep()
    assert await _state(database, queued.ticket.id) == "abandoned"


async def test_leaving_the_queue_is_audited_with_who_left(database: Database) -> None:
    """A cancel writes `ticket_cancelled` with the person as actor (the page's stream and the
    activity view hear of it)."""
    clock = Clock()
    leases = _service(database, clock)
    await leases.request(BOARD, LeaseTerms(ttl=3600), HOLDER)
    queued = await leases.request(BOARD, LeaseTerms(ttl=60, wait=3600), ADA)
    assert isinstance(queued, Queued)
    await leases.cancel(queued.ticket.id, None, ADA)
    events = await database.read(
        lambda store: store.events(after=0, resource_id=None, lease_id=None, limit=100)
    )
    (cancelled,) = [e for e in events if e.kind == "ticket_cancelled"]
    assert cancelled.actor == "ada"
    assert cancelled.detail == {"ticket": queued.ticket.id}


async def test_joining_the_queue_is_audited_with_who_joined(database: Database) -> None:
    """A request that queues writes `ticket_queued` naming its ticket and the person (an
    open page's Waiting column hears of it); a request granted at once writes none."""
    clock = Clock()
    leases = _service(database, clock)
    await leases.request(BOARD, LeaseTerms(ttl=3600), HOLDER)
    queued = await leases.request(BOARD, LeaseTerms(ttl=60, wait=3600), ADA)
    assert isinstance(queued, Queued)
    events = await database.read(
        lambda store: store.events(after=0, resource_id=None, lease_id=None, limit=100)
    )
    (joined,) = [e for e in events if e.kind == "ticket_queued"]
    assert joined.actor == "ada"
    assert joined.detail == {"ticket": queued.ticket.id}
    assert joined.at == clock.now
