"""rentabot's settings: one pydantic-settings class, read from `RENTABOT_*` variables.

Every field here must appear in the README's settings table (a test checks).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from rentabot.domain.identity import ProxyPolicy, Role, parse_networks


class Settings(BaseSettings):
    """Everything an operator can set. Built once, in `rentabot serve` or by a test."""

    model_config = SettingsConfigDict(env_prefix="RENTABOT_", extra="ignore", frozen=True)

    resource_descriptor: Path | None = Field(
        default=None,
        description="YAML file of the resources to serve; unset or empty: no resources.",
    )
    database_url: str = Field(
        default="sqlite:///./rentabot.db",
        description=(
            "SQLAlchemy URL of the database: an SQLite file (the default), or PostgreSQL"
            " (`postgresql+psycopg://user@host:5432/db`) for several replicas."
        ),
    )
    db_pool_size: int = Field(
        default=10,
        ge=2,
        le=500,
        description="PostgreSQL: most connections each server process opens.",
    )
    db_timeout: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description=(
            "PostgreSQL: longest wait (s) to connect, for a free connection, or for one"
            " statement; past it the request answers 503."
        ),
    )
    host: str = Field(default="127.0.0.1", description="Address `rentabot serve` listens on.")
    port: int = Field(default=5000, ge=0, le=65535, description="Port `rentabot serve` uses.")
    workers: int = Field(default=1, ge=1, le=64, description="Server worker processes.")
    expose_lock_tokens: bool = Field(
        default=False,
        description="Show every holder's real lock token in v1 listings, as the original did.",
    )
    default_ttl: float | None = Field(
        default=None,
        gt=0,
        description="Lease time (s) of locks that ask for none; unset: held until released.",
    )
    max_ttl: float | None = Field(
        default=None,
        gt=0,
        description="Longest lease time (s) a lock may ask for; also caps locks that ask for none.",
    )
    reservation_claim_window: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="How long (s) a fulfilled upstream 1.x reservation waits to be claimed.",
    )
    queue_keepalive: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="A waiting client that stops polling leaves the queue after this (s).",
    )
    queue_person_grace: float = Field(
        default=120.0,
        ge=0,
        le=86400,
        description=(
            "How long (s) a person's place in the queue outlives their page (a reload, another"
            " view, a closed tab); machines get only the keep-alive."
        ),
    )
    long_poll_seconds: float = Field(
        default=60.0,
        ge=0.5,
        le=600,
        description="Longest a waiting HTTP request stays open before answering 202 to re-poll.",
    )
    sqlite_synchronous: Literal["NORMAL", "FULL"] = Field(
        default="NORMAL",
        description=(
            "SQLite `synchronous` mode (WAL): NORMAL survives a crash or kill -9 of the server;"
            " FULL also survives power loss, at about 0.25 ms more per commit."
        ),
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level of the server."
    )
    access_log: bool = Field(default=False, description="Log every HTTP request (costly).")
    page_refresh_seconds: int = Field(
        default=10, ge=1, le=3600, description="How often the web page refreshes itself."
    )
    anonymous_role: Literal["none", "read", "lock"] = Field(
        default="lock",
        description=(
            "What callers without a key may do: lock (the original's curl lines work), read,"
            " or none. Never admin."
        ),
    )
    trusted_user_header: str | None = Field(
        default=None,
        description=(
            "Header naming the signed-in user, set by a single-sign-on proxy (e.g."
            " X-Forwarded-User); honoured only from RENTABOT_TRUSTED_PROXIES."
        ),
    )
    trusted_groups_header: str | None = Field(
        default=None,
        description="Header with the user's groups (comma separated), set by the same proxy.",
    )
    trusted_proxies: str = Field(
        default="",
        description="Addresses or CIDRs of the proxies that may set the trusted headers.",
    )
    trusted_user_role: Literal["read", "lock"] = Field(
        default="lock", description="Role of a user the proxy vouches for who is not an admin."
    )
    admin_users: str = Field(
        default="", description="Users (from the trusted header) who are admins, comma separated."
    )
    admin_groups: str = Field(
        default="", description="Groups (from the groups header) whose users are admins."
    )
    session_ttl: float = Field(
        default=8 * 3600.0,
        ge=60,
        le=30 * 24 * 3600.0,
        description="How long a sign-in session lasts (s).",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="Largest request body."
    )
    max_waiting: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Most requests waiting in the queue."
    )
    max_waiting_per_principal: int = Field(
        default=1_000,
        ge=1,
        le=1_000_000,
        description="Most requests one key or user (or all anonymous callers) may have waiting.",
    )
    max_stream_subscribers: int = Field(
        default=100, ge=1, le=100_000, description="Most live event-stream clients per process."
    )

    @field_validator("resource_descriptor", mode="before")
    @classmethod
    def _empty_means_none(cls, value: object) -> object:
        # The original treated an empty variable as "no descriptor"; so do we.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        try:
            parse_networks(_items(value))
        except ValueError as error:
            raise ValueError(f"not an address or CIDR list: {error}") from None
        return value

    @property
    def proxy_policy(self) -> ProxyPolicy:
        """Who the single-sign-on proxy may vouch for, and who of its users are admins."""
        return ProxyPolicy(
            header=self.trusted_user_header or None,
            proxies=parse_networks(_items(self.trusted_proxies)),
            groups_header=self.trusted_groups_header or None,
            admin_users=frozenset(_items(self.admin_users)),
            admin_groups=frozenset(_items(self.admin_groups)),
            user_role=Role.parse(self.trusted_user_role),
        )


def _items(text: str) -> list[str]:
    """The items of a comma-separated setting (spaces around them ignored)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def masked_url(url: str) -> str:
    """`url` as rentabot shows it (output, logs, errors): any password replaced by `***`."""
    try:
        parsed = make_url(url)
    except Exception:  # unparseable: mask everything from `user:` to the last `@`
        return re.sub(r"(://[^/@:]*:).*@", r"\1***@", url)
    if "password" in parsed.query:  # libpq also takes it as a query parameter
        parsed = parsed.update_query_dict({"password": "***"})
    return parsed.render_as_string(hide_password=True)
