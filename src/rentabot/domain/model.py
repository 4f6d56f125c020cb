"""The types rentabot reasons about: resources, selectors and grants."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

#: The original's `lock-details` texts, kept word for word for rent-a-bot clients.
NEVER_LOCKED = "Resource is available"
LOCKED = "Resource locked"
RELEASED = "Resource available"

#: Largest id a resource can have (SQLite and PostgreSQL BIGINT): anything above is unknown.
MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    """One resource as the descriptor declares it."""

    name: str
    description: str | None = None
    endpoint: str | None = None
    #: The tags as the original's display string (space separated), or None when absent.
    tags_text: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)
    #: Line of the entry in the descriptor, for messages.
    line: int | None = None

    @property
    def tags(self) -> tuple[str, ...]:
        """The distinct tags, in the order written."""
        return split_tags(self.tags_text)


def split_tags(tags_text: str | None) -> tuple[str, ...]:
    """Split the original's space-separated tag string into distinct tags, order kept."""
    if not tags_text:
        return ()
    return tuple(dict.fromkeys(tags_text.split()))


@dataclass(frozen=True, slots=True)
class Holder:
    """The lease holding a resource, as everyone may see it (never its token)."""

    lease_id: int
    owner: str | None
    acquired_at: float
    #: Seconds since the epoch; None: held until released.
    expires_at: float | None
    #: Who took it: a key's or a user's name; None for an anonymous caller.
    principal: str | None = None


@dataclass(frozen=True, slots=True)
class Resource:
    """A resource as clients see it, with its current holder (never the holder's token:
    only the grant and unlock paths see a token)."""

    id: int
    name: str
    description: str | None
    endpoint: str | None
    tags_text: str | None
    properties: Mapping[str, str]
    maintenance: bool
    #: Last fence issued (0: never locked). Increases with every grant.
    fence: int
    #: The lease holding it; None when free.
    holder: Holder | None = None
    #: Gone from the descriptor but still held: shown until its lease ends, never granted.
    retired: bool = False

    @property
    def tags(self) -> tuple[str, ...]:
        """The distinct tags, in the order written."""
        return split_tags(self.tags_text)

    @property
    def locked(self) -> bool:
        """Whether a lease holds the resource now."""
        return self.holder is not None

    @property
    def state(self) -> str:
        """`locked` (held, whether or not in maintenance), `maintenance` or `available`."""
        if self.holder is not None:
            return "locked"
        return "maintenance" if self.maintenance else "available"

    @property
    def lock_details(self) -> str:
        """The original's status text: never locked, locked, or available again."""
        if self.holder is not None:
            return LOCKED
        return RELEASED if self.fence > 0 else NEVER_LOCKED


@dataclass(frozen=True, slots=True)
class V1Selection:
    """What a lock request of the original API asks for: one resource, by id, by name, or
    carrying every one of some tags.

    `raw_id` keeps the id as the client wrote it (`?id=007`), for answers that echo it.
    """

    resource_id: int | None = None
    name: str | None = None
    tags: tuple[str, ...] = ()
    raw_id: str | None = None

    def __post_init__(self) -> None:
        chosen = sum((self.resource_id is not None, self.name is not None, bool(self.tags)))
        if chosen != 1 and not (chosen == 0 and self.raw_id is not None):
            raise ValueError("a selector names exactly one of: id, name, tags")


@dataclass(frozen=True, slots=True)
class Selection:
    """What a v2 lock request asks for (its `select`): these ids, these names, or `count`
    resources that carry every one of `tags` (no tags: any resources). Granted all together
    or not at all."""

    resource_ids: tuple[int, ...] = ()
    names: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    count: int = 1

    def __post_init__(self) -> None:
        if self.resource_ids and self.names:
            raise ValueError("ask for resources by ids or by names, not both")
        if self.count < 1:
            raise ValueError("count must be at least 1")

    def canonical(self) -> str:
        """What is asked, in one canonical text: two requests ask for the same thing exactly
        when their selections are equal (order and repetitions do not matter)."""
        if self.resource_ids:
            return json.dumps({"ids": sorted(set(self.resource_ids))})
        if self.names:
            return json.dumps({"names": sorted(set(self.names))})
        return json.dumps({"tags": sorted(set(self.tags)), "count": self.count})


@dataclass(frozen=True, slots=True)
class Lease:
    """A granted lock on one or more resources.

    `resources` are those it holds now, each with the fence this lease was granted; an ended
    lease holds none.
    """

    id: int
    token: str
    owner: str | None
    description: str | None
    acquired_at: float
    expires_at: float | None
    ttl: float | None
    ended_at: float | None
    end_reason: str | None
    resources: tuple[Resource, ...]
    #: Who took it: a key's or a user's name; None for an anonymous caller.
    principal: str | None = None

    @property
    def state(self) -> str:
        """`active`, or how it ended: `released`, `expired`, `force_released`."""
        return self.end_reason or "active"


@dataclass(frozen=True, slots=True)
class Ticket:
    """A lock request in the wait queue, or one that was: `state` says which.

    States: `waiting`, then `granted` (see `lease_id`), `timed_out` (its wait ran out),
    `abandoned` (its client stopped polling), or `cancelled`.
    """

    id: int
    token: str
    request_id: str | None
    owner: str | None
    description: str | None
    priority: int
    count: int
    resource_ids: tuple[int, ...] | None
    tags: tuple[str, ...]
    ttl: float | None
    created_at: float
    wait_until: float
    last_seen_at: float
    state: str
    ended_at: float | None
    lease_id: int | None
    #: Who asked: a key's or a user's name; None for an anonymous caller.
    principal: str | None = None
    #: What was asked (`Selection.canonical`), when it came with a request id.
    asked: str | None = None
    #: An upstream 1.x reservation's claim window (seconds its lease lasts from the grant
    #: until claimed); None for every other request.
    claim_window: float | None = None
    #: When the reservation was claimed.
    claimed_at: float | None = None

    @property
    def selection(self) -> Selection:
        """What it asks for."""
        if self.resource_ids is not None:
            return Selection(resource_ids=self.resource_ids, count=len(self.resource_ids))
        return Selection(tags=self.tags, count=self.count)


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the audit trail: what happened, to what, by whom."""

    id: int
    at: float
    kind: str
    resource_id: int | None
    lease_id: int | None
    actor: str | None
    detail: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class V1Lock:
    """A lock of the original API, just granted: one resource held by a lease, with the
    lease's secret token and the grant's fence."""

    token: str
    lease_id: int
    fence: int
    resource: Resource


@dataclass(frozen=True, slots=True)
class Extended:
    """A lock just extended (upstream 1.x's extend): when it was acquired, when it now
    expires (None: never)."""

    resource_id: int
    acquired_at: float
    expires_at: float | None


def parse_resource_id(text: str) -> int | None:
    """The id a client wrote in `?id=`, or None when it cannot name any resource.

    Lenient like the original's query handling: surrounding spaces and a sign are accepted
    (`abc`, `1.5`, `1e99`, `0` and negative numbers name nothing).
    """
    body = text.strip()
    digits = body[1:] if body[:1] in ("+", "-") else body
    if not digits or not (digits.isascii() and digits.isdigit()) or len(digits) > 19:
        return None
    value = int(body)
    return value if 0 < value <= MAX_ID else None


def v1_criteria_selector(ids: list[str], names: list[str], tags: list[str]) -> V1Selection | None:
    """The original's `POST …/resources/lock` rule: a non-empty id wins over a name over tags.

    Returns None when none of them is usable (the original's 400 Bad Request).
    """
    raw_id = next(iter(ids), "")
    if raw_id:
        return V1Selection(resource_id=parse_resource_id(raw_id), raw_id=raw_id)
    name = next(iter(names), "")
    if name:
        return V1Selection(name=name)
    if tags:
        return V1Selection(tags=tuple(tags))
    return None


def is_plausible_text(value: str, max_length: int = 200) -> bool:
    """Whether `value` could be a stored name, tag or token: short, without control characters.

    Values that fail this can match nothing, so they are answered without a database query
    (and never reach a driver that rejects NUL bytes).
    """
    return 0 < len(value) <= max_length and value.isprintable()


def unstorable(value: str) -> str | None:
    """Why `value` cannot be stored as text by every database (None: it can).

    PostgreSQL refuses NUL characters, and a lone surrogate (from a JSON escape such as
    "\\ud800") is not UTF-8 at all: both are refused where they arrive, never left to a
    database driver.
    """
    if "\x00" in value:
        return "must not contain a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (no lone surrogate characters)"
    return None
