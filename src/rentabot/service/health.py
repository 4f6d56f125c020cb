"""Is the service healthy: can it reach its database, and how do replicas wake each other."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from rentabot.domain.errors import DatabaseUnavailableError
from rentabot.storage.database import Database


@dataclass(frozen=True, slots=True)
class Health:
    """What a health check reports."""

    #: `sqlite` or `postgresql`.
    backend: str
    #: Whether grants made by other replicas wake this one's waiters at once (`notified`), or
    #: only at the next re-check (`polling`: PostgreSQL's listener down; always on SQLite).
    wakeups: str
    #: Why the database does not answer (for the log only: it may name hosts and users);
    #: None when it answers.
    problem: str | None

    @property
    def ok(self) -> bool:
        """Whether the database answers."""
        return self.problem is None


class HealthService:
    """Checks the database this process uses."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def check(self) -> Health:
        """Ping the database (in a thread: an unreachable one must not stall the loop)."""
        database = self._database
        wakeups = "notified" if database.listening else "polling"
        try:
            await asyncio.to_thread(database.ping)
        except DatabaseUnavailableError as error:
            return Health(database.backend, wakeups, str(error) or type(error).__name__)
        return Health(database.backend, wakeups, None)
