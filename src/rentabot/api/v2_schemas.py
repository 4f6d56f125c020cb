"""The JSON shapes of the v2 API (what FastAPI validates and documents in OpenAPI)."""

from __future__ import annotations

from typing import Annotated, Literal, cast

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from rentabot.domain.identity import ApiKey, Principal
from rentabot.domain.model import MAX_ID, Event, Lease, Resource, Selection, Ticket, unstorable


def _storable(value: str) -> str:
    # Refused here, with what is wrong, rather than by a database driver with a 500.
    problem = unstorable(value)
    if problem is not None:
        raise ValueError(problem)
    return value


#: Text from a client: only what every database stores (no NUL, no lone surrogate).
Text = Annotated[str, AfterValidator(_storable)]
#: An id the database can hold.
RowId = Annotated[int, Field(ge=1, le=MAX_ID)]
#: Longest texts a client may store.
MAX_OWNER = 500
MAX_DESCRIPTION = 2000
MAX_REASON = 2000


class Strict(BaseModel):
    """Unknown fields are refused (a typo should not silently mean "no TTL")."""

    model_config = ConfigDict(extra="forbid")


class Select(Strict):
    """Which resources: these ids, these names, or `count` resources carrying every tag."""

    ids: list[RowId] = Field(default_factory=list, max_length=1000, examples=[[4, 5]])
    names: list[Text] = Field(default_factory=list, max_length=1000, examples=[["nrf52-board-1"]])
    tags: list[Text] = Field(default_factory=list, max_length=50, examples=[["nrf52"]])
    count: int = Field(default=1, ge=1, le=10_000)

    @model_validator(mode="after")
    def _one_way(self) -> Select:
        if self.ids and self.names:
            raise ValueError("select by ids or by names, not both")
        if (self.ids or self.names) and (self.tags or self.count != 1):
            raise ValueError("tags and count select among all resources; not with ids or names")
        return self

    def selection(self) -> Selection:
        """The domain's view of this selection."""
        return Selection(
            resource_ids=tuple(self.ids),
            names=tuple(self.names),
            tags=tuple(self.tags),
            count=len(self.ids or self.names) or self.count,
        )


class LeaseRequest(Strict):
    """Ask for a lease."""

    select: Select
    ttl: float | None = Field(
        default=None, gt=0, description="Lease time in seconds; renew before it runs out."
    )
    owner: Text | None = Field(
        default=None,
        max_length=MAX_OWNER,
        examples=["ci/job/42"],
        description="Who holds it, for people to read; the key's or user's name by default.",
    )
    description: Text | None = Field(default=None, max_length=MAX_DESCRIPTION)
    request_id: Text | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Your id for this request: retrying with it returns the same lease.",
    )
    wait: float = Field(
        default=0,
        ge=0,
        le=7 * 24 * 3600,
        description=(
            "Seconds you are willing to wait in the queue. This call answers within"
            " RENTABOT_LONG_POLL_SECONDS (60 s by default): 201 with the lease, or 202 with a"
            " ticket to poll (keep polling, or you leave the queue after"
            " RENTABOT_QUEUE_KEEPALIVE seconds)."
        ),
    )
    priority: int = Field(
        default=0, ge=-1000, le=1000, description="Higher is served first; then arrival."
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "select": {"tags": ["nrf52"], "count": 1},
                    "ttl": 600,
                    "owner": "ci/job/42",
                    "description": "firmware tests",
                    "request_id": "job-42-attempt-1",
                    "wait": 1800,
                }
            ]
        },
    )


class RenewRequest(Strict):
    """Extend a lease: its deadline becomes now + ttl (default: the lease's own TTL)."""

    ttl: float | None = Field(default=None, gt=0)


class HolderOut(BaseModel):
    """The lease holding a resource (its owner and deadline; never its token)."""

    lease_id: int
    owner: str | None
    principal: str | None = Field(description="The key or user that took it; null: anonymous.")
    acquired_at: float
    expires_at: float | None = Field(description="Seconds since the epoch; null: no TTL.")


class ResourceOut(BaseModel):
    """A resource."""

    id: int
    name: str
    description: str | None
    endpoint: str | None
    tags: list[str]
    properties: dict[str, str]
    state: Literal["available", "locked", "maintenance"]
    holder: HolderOut | None = Field(description="The lease holding it; null when free.")

    @classmethod
    def of(cls, resource: Resource) -> ResourceOut:
        """The public view of a resource (never its holder's token)."""
        state = cast(Literal["available", "locked", "maintenance"], resource.state)
        return cls(
            id=resource.id,
            name=resource.name,
            description=resource.description,
            endpoint=resource.endpoint,
            tags=list(resource.tags),
            properties=dict(resource.properties),
            state=state,
            holder=(
                HolderOut(
                    lease_id=holder.lease_id,
                    owner=holder.owner,
                    principal=holder.principal,
                    acquired_at=holder.acquired_at,
                    expires_at=holder.expires_at,
                )
                if (holder := resource.holder) is not None
                else None
            ),
        )


class HeldResource(BaseModel):
    """A resource held by a lease, with the fence of this grant."""

    id: int
    name: str
    endpoint: str | None
    properties: dict[str, str]
    fence: int = Field(description="Strictly increases with every grant of this resource.")


class LeaseOut(BaseModel):
    """A lease. Its holder sees its token; everyone else its public view (token null)."""

    id: int
    token: str | None = Field(
        description="Secret, shown to the holder only: send it as `Authorization: Bearer`."
    )
    state: str = Field(examples=["active", "released", "expired"])
    owner: str | None
    principal: str | None = Field(description="The key or user that took it; null: anonymous.")
    description: str | None
    acquired_at: float
    expires_at: float | None
    ttl: float | None
    ended_at: float | None
    resources: list[HeldResource]

    @classmethod
    def of(cls, lease: Lease, *, holder: bool = True) -> LeaseOut:
        """The holder's view of a lease (`holder`), or everyone's (without the token)."""
        return cls(
            id=lease.id,
            token=lease.token if holder else None,
            state=lease.state,
            owner=lease.owner,
            principal=lease.principal,
            description=lease.description,
            acquired_at=lease.acquired_at,
            expires_at=lease.expires_at,
            ttl=lease.ttl,
            ended_at=lease.ended_at,
            resources=[
                HeldResource(
                    id=r.id,
                    name=r.name,
                    endpoint=r.endpoint,
                    properties=dict(r.properties),
                    fence=r.fence,
                )
                for r in lease.resources
            ],
        )


class LeaseEnvelope(BaseModel):
    """`{"lease": …}`."""

    lease: LeaseOut


class TicketOut(BaseModel):
    """A lock request in (or out of) the queue. Never shows its token."""

    id: int
    state: str = Field(examples=["waiting", "granted", "timed_out", "abandoned", "cancelled"])
    position: int | None = Field(description="1 is next; null once out of the queue.")
    priority: int
    owner: str | None
    principal: str | None = Field(description="The key or user that asked; null: anonymous.")
    description: str | None
    count: int
    resource_ids: list[int] | None
    tags: list[str]
    created_at: float
    wait_until: float
    lease_id: int | None

    @classmethod
    def of(cls, ticket: Ticket, position: int | None) -> TicketOut:
        """The public view of a ticket."""
        return cls(
            id=ticket.id,
            state=ticket.state,
            position=position if ticket.state == "waiting" else None,
            priority=ticket.priority,
            owner=ticket.owner,
            principal=ticket.principal,
            description=ticket.description,
            count=ticket.count,
            resource_ids=list(ticket.resource_ids) if ticket.resource_ids is not None else None,
            tags=list(ticket.tags),
            created_at=ticket.created_at,
            wait_until=ticket.wait_until,
            lease_id=ticket.lease_id,
        )


class TicketEnvelope(BaseModel):
    """A request still waiting: poll `GET /api/v2/tickets/{id}` with this token."""

    ticket: TicketOut
    token: str = Field(description="Secret: the lease will carry it too.")


class QueueOut(BaseModel):
    """The waiting tickets, in the order they will be served."""

    tickets: list[TicketOut]


class AuditedRequest(Strict):
    """An operator action: who does it comes from the caller's key or sign-in, never from
    the body (an `actor` field is refused, so a script that sends one learns it is not
    recorded)."""

    reason: Text | None = Field(default=None, max_length=MAX_REASON)

    @model_validator(mode="before")
    @classmethod
    def _no_actor(cls, data: object) -> object:
        if isinstance(data, dict) and "actor" in data:
            raise ValueError(
                "do not send `actor`: the audit trail records who you are from your API key"
                " or sign-in"
            )
        return data


class MaintenanceRequest(AuditedRequest):
    """Take a resource out of service, or put it back."""

    on: bool


class ForceReleaseRequest(AuditedRequest):
    """End whatever lease holds a resource."""


class ResourceEnvelope(BaseModel):
    """`{"resource": …}`."""

    resource: ResourceOut


class ForceReleased(BaseModel):
    """The lease that was ended, and the resource now."""

    lease_id: int
    resource: ResourceOut


class EventOut(BaseModel):
    """One line of the audit trail."""

    id: int
    at: float
    kind: str = Field(examples=["granted", "released", "expired", "force_released"])
    resource_id: int | None
    lease_id: int | None
    actor: str | None
    detail: dict[str, object]

    @classmethod
    def of(cls, event: Event) -> EventOut:
        """The public view of an event."""
        return cls(
            id=event.id,
            at=event.at,
            kind=event.kind,
            resource_id=event.resource_id,
            lease_id=event.lease_id,
            actor=event.actor,
            detail=dict(event.detail),
        )


class EventPage(BaseModel):
    """Events oldest first; ask again with `since` = `last` for the next page."""

    events: list[EventOut]
    last: int


class ResourcePage(BaseModel):
    """A page of resources."""

    resources: list[ResourceOut]
    total: int
    offset: int
    limit: int


class ErrorBody(BaseModel):
    """What went wrong: a stable machine-readable code and a message for people."""

    code: str = Field(examples=["busy", "not_found", "not_holder", "invalid_request"])
    message: str


class ErrorEnvelope(BaseModel):
    """`{"error": {"code", "message"}}`."""

    error: ErrorBody


class KeyRequest(Strict):
    """A new API key."""

    name: Text = Field(min_length=1, max_length=100, examples=["jenkins-lab-1"])
    role: Literal["read", "lock", "admin"] = Field(examples=["lock"])


class KeyOut(BaseModel):
    """An API key (never the key itself)."""

    name: str
    role: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        """The public view of a key."""
        return cls(
            name=key.name,
            role=key.role.label,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            revoked_at=key.revoked_at,
        )


class KeyCreated(BaseModel):
    """A new key: `secret` is shown this once (only its hash is kept)."""

    key: KeyOut
    secret: str = Field(description="Send it as `X-API-Key`. Shown only now.")


class KeyList(BaseModel):
    """API keys by name."""

    keys: list[KeyOut]


class WhoAmI(BaseModel):
    """Who the server takes the caller for."""

    principal: str | None = Field(description="The key's or user's name; null: anonymous.")
    role: str = Field(examples=["read", "lock", "admin", "none"])
    via: str = Field(examples=["key", "session", "proxy", "anonymous"])

    @classmethod
    def of(cls, principal: Principal) -> WhoAmI:
        """The caller."""
        return cls(principal=principal.name, role=principal.role.label, via=principal.via)


class SignInRequest(Strict):
    """Sign in with your personal API key: the answer sets a session cookie."""

    key: Text = Field(min_length=1, max_length=200)


class SignedInOut(BaseModel):
    """A session: who, until when, and the token its pages send with every change."""

    principal: str
    role: str
    expires_at: float
    csrf_token: str = Field(description="Send it as `X-CSRF-Token` with cookie-authorised writes.")
