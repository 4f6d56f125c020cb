"""rentabot's settings: one pydantic-settings class, read from `RENTABOT_*` variables.

Every field here must appear in the README's settings table (a test checks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    queue_keepalive: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="A waiting client that stops polling leaves the queue after this (s).",
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

    @field_validator("resource_descriptor", mode="before")
    @classmethod
    def _empty_means_none(cls, value: object) -> object:
        # The original treated an empty variable as "no descriptor"; so do we.
        if isinstance(value, str) and not value.strip():
            return None
        return value
