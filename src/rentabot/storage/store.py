"""The store: every SQL statement the service runs, on one open transaction's cursor.

One class per record type, each in its own module (resources, leases, tickets, events,
keys), combined here with the transaction's savepoints. Nothing here commits: the service
owns the transaction (see `Database.transaction`).
"""

from __future__ import annotations

from rentabot.storage.events import EventRecords
from rentabot.storage.keys import KeyRecords
from rentabot.storage.leases import LeaseRecords
from rentabot.storage.resources import ResourceRecords, StoredResource
from rentabot.storage.tickets import TicketRecords
from rentabot.storage.usage import UsageRecords

__all__ = ["Store", "StoredResource"]


class Store(ResourceRecords, LeaseRecords, TicketRecords, EventRecords, KeyRecords, UsageRecords):
    """Typed SQL over one transaction."""

    def savepoint(self) -> None:
        """Open a savepoint: what follows can be undone alone."""
        self._cursor.execute("SAVEPOINT op")

    def release_savepoint(self) -> None:
        """Keep what was done since the savepoint."""
        self._cursor.execute("RELEASE op")

    def rollback_to_savepoint(self) -> None:
        """Undo what was done since the savepoint, and close it."""
        self._cursor.execute("ROLLBACK TO op")
        self._cursor.execute("RELEASE op")
        self._forget_reads()

    def announce_granted(self, ticket_id: int) -> None:
        """Tell other processes, once this transaction commits, that the ticket was granted
        (PostgreSQL notifies; SQLite has no way to, and its waiters re-read instead)."""

    def ping(self) -> None:
        """A trivial query, to check the database answers."""
        self._run("SELECT 1").fetchone()
