"""The queue length of a tag: which waiting requests ask for it (by the tag, or by naming
resources that carry it), each counted once."""

from __future__ import annotations

from dataclasses import replace

from rentabot.domain.model import Ticket
from rentabot.domain.tags import queue_lengths

#: The tags of resources 1 to 4.
TAGS = {
    1: frozenset({"nrf52", "lab"}),
    2: frozenset({"nrf52", "lab"}),
    3: frozenset({"scope"}),
    4: frozenset(),
}


def ticket(
    ticket_id: int,
    *,
    tags: tuple[str, ...] = (),
    ids: tuple[int, ...] | None = None,
    state: str = "waiting",
) -> Ticket:
    """A ticket asking for `tags` (and a count of one) or for resources `ids`."""
    return Ticket(
        id=ticket_id,
        token=f"t{ticket_id}",
        request_id=None,
        owner=None,
        description=None,
        priority=0,
        count=1 if ids is None else len(ids),
        resource_ids=ids,
        tags=tags,
        ttl=None,
        created_at=0.0,
        wait_until=60.0,
        last_seen_at=0.0,
        state=state,
        ended_at=None,
        lease_id=None,
    )


def test_a_request_by_tags_counts_for_every_tag_it_names() -> None:
    """Tags (nrf52, lab) asked together count once for each of the two."""
    assert queue_lengths([ticket(1, tags=("nrf52", "lab"))], TAGS) == {"nrf52": 1, "lab": 1}


def test_a_request_naming_resources_counts_for_their_tags_once_each() -> None:
    """Resources 1 and 2 both carry nrf52 and lab: one request naming both counts once for
    each tag, not twice; naming resource 3 counts for scope."""
    lengths = queue_lengths([ticket(1, ids=(1, 2)), ticket(2, ids=(3,))], TAGS)
    assert lengths == {"nrf52": 1, "lab": 1, "scope": 1}


def test_requests_add_up_per_tag_across_both_ways_of_asking() -> None:
    """One by tag, one by a resource carrying the tag, one for another tag."""
    tickets = [ticket(1, tags=("nrf52",)), ticket(2, ids=(1,)), ticket(3, tags=("scope",))]
    assert queue_lengths(tickets, TAGS) == {"nrf52": 2, "lab": 1, "scope": 1}


def test_requests_for_any_resource_untagged_ones_or_unknown_ids_count_for_no_tag() -> None:
    """No tags and no ids (any resource), a tagless resource, an id whose tags are not known:
    none asks for a tag."""
    tickets = [ticket(1), ticket(2, ids=(4,)), ticket(3, ids=(99,))]
    assert queue_lengths(tickets, TAGS) == {}


def test_tickets_no_longer_waiting_are_not_counted() -> None:
    """Granted, cancelled and timed-out tickets are out of the queue."""
    waiting = ticket(1, tags=("scope",))
    tickets = [waiting] + [
        replace(waiting, id=i, state=s)
        for i, s in enumerate(("granted", "cancelled", "timed_out"), start=2)
    ]
    assert queue_lengths(tickets, TAGS) == {"scope": 1}
