"""Tags as pools (Jenkins' labels): how many of a tag's resources are in each state, and
how many waiting requests ask for it. Pure: the counts come from storage, the queue from
the caller."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rentabot.domain.model import Ticket


@dataclass(frozen=True, slots=True)
class TagCounts:
    """The visible resources carrying a tag, by state. The states are exclusive: a held
    resource in maintenance counts as held (it is in maintenance once released), as the
    resource view's state filter reads it."""

    tag: str
    free: int
    held: int
    maintenance: int
    total: int


def queue_lengths(
    tickets: Iterable[Ticket], tags_of: Mapping[int, frozenset[str]]
) -> dict[str, int]:
    """How many waiting tickets ask for each tag, by tag (a tag nobody asks for is absent).

    A ticket asks for a tag when its selection names the tag, or when it names resources
    by id and one of them carries the tag (`tags_of`: the tags of those resources; an id
    missing from it carries none). A ticket counts once per tag however many of its
    resources carry it. A request for any resources (no tags, no ids) asks for no tag in
    particular and counts for none. Tickets no longer waiting are not counted.
    """
    lengths: Counter[str] = Counter()
    for ticket in tickets:
        if ticket.state != "waiting":
            continue
        asked = set(ticket.tags)
        for resource_id in ticket.resource_ids or ():
            asked |= tags_of.get(resource_id, frozenset())
        lengths.update(asked)
    return dict(lengths)
