"""What the server answers, as typed values. Unknown fields are ignored, so a newer server
does not break an older client."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Answer(BaseModel):
    # Schemas are built on first use: a command pays only for the answers it reads.
    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)


class HeldResource(_Answer):
    """A resource a lease holds, with the fence of this grant."""

    id: int
    name: str
    endpoint: str | None = None
    properties: dict[str, str] = {}
    #: Strictly increases with every grant of this resource: a resource-side service can
    #: refuse a holder presenting an older one.
    fence: int


class Lease(_Answer):
    """A lease as its holder sees it. `token` is secret: it is what renews and releases."""

    id: int
    token: str
    #: `active`, or how it ended: `released`, `expired`, `force_released`.
    state: str
    owner: str | None = None
    #: The key or user that took it; None: anonymous.
    principal: str | None = None
    description: str | None = None
    acquired_at: float
    #: Seconds since the epoch (the server's clock); None: held until released.
    expires_at: float | None = None
    ttl: float | None = None
    ended_at: float | None = None
    resources: tuple[HeldResource, ...] = ()

    @property
    def active(self) -> bool:
        """Whether the lease still holds its resources."""
        return self.state == "active"


class Resource(_Answer):
    """A resource in the inventory."""

    id: int
    name: str
    description: str | None = None
    endpoint: str | None = None
    tags: tuple[str, ...] = ()
    properties: dict[str, str] = {}
    #: `available`, `locked` or `maintenance`.
    state: str
    #: The lease holding it; None when free.
    holder: Holder | None = None


class Ticket(_Answer):
    """A request in (or out of) the wait queue. `position` 1 is next."""

    id: int
    state: str
    position: int | None = None
    priority: int = 0
    owner: str | None = None
    description: str | None = None
    count: int = 1
    resource_ids: tuple[int, ...] | None = None
    tags: tuple[str, ...] = ()
    created_at: float
    wait_until: float
    lease_id: int | None = None


class Holder(_Answer):
    """The lease holding a resource (never its token)."""

    lease_id: int
    owner: str | None = None
    #: The key or user that took it; None: anonymous.
    principal: str | None = None
    acquired_at: float | None = None
    #: Seconds since the epoch (the server's clock); None: held until released.
    expires_at: float | None = None


class Identity(_Answer):
    """Who the server takes a client for."""

    #: The key's or user's name; None: anonymous.
    principal: str | None = None
    #: `none`, `read`, `lock` or `admin`.
    role: str
    #: `key`, `session`, `proxy` or `anonymous`.
    via: str
