"""The SQL of the audit trail: append-only events, read in id order."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from rentabot.domain.model import Event
from rentabot.storage.sql import Statements


class EventRecords(Statements):
    """Events: append, and read after an id."""

    #: Whether this transaction appended an event: at commit, PostgreSQL then tells the
    #: other replicas' event feeds (storage/postgres.py), once per transaction.
    added_events = False

    def add_event(
        self,
        now: float,
        kind: str,
        *,
        resource_id: int | None = None,
        lease_id: int | None = None,
        actor: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Append an audit event."""
        self.added_events = True
        self._run(
            "INSERT INTO events (at, kind, resource_id, lease_id, actor, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (now, kind, resource_id, lease_id, actor, json.dumps(detail) if detail else None),
        )

    def events(
        self,
        *,
        after: int,
        resource_id: int | None,
        lease_id: int | None,
        limit: int,
        newest_first: bool = False,
    ) -> list[Event]:
        """Events with an id above `after`, optionally of one resource or lease: the first
        `limit` oldest first, or (`newest_first`) the last `limit` newest first."""
        where, params = ["id > ?"], [after]
        if resource_id is not None:
            where.append("resource_id = ?")
            params.append(resource_id)
        if lease_id is not None:
            where.append("lease_id = ?")
            params.append(lease_id)
        rows = self._run(
            "SELECT id, at, kind, resource_id, lease_id, actor, detail FROM events"
            f" WHERE {' AND '.join(where)} ORDER BY id{' DESC' if newest_first else ''} LIMIT ?",
            [*params, limit],
        ).fetchall()
        return [
            Event(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6] or "{}"))
            for row in rows
        ]

    def last_event_id(self) -> int:
        """The id of the newest event (0: none)."""
        row = self._run("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
        return int(row[0])

    def add_events(self, rows: Iterable[tuple[float, str, int | None, str | None]]) -> None:
        """Append many events of the form (at, kind, resource_id, detail JSON)."""
        rows = list(rows)
        if not rows:
            return  # the expiry sweep, mostly: no statement, and no news for the feeds
        self.added_events = True
        self._run_many(
            "INSERT INTO events (at, kind, resource_id, detail) VALUES (?, ?, ?, ?)", rows
        )

    def add_lease_events(self, rows: Iterable[tuple[float, str, int, int, str | None]]) -> None:
        """Append many events of the form (at, kind, resource_id, lease_id, actor)."""
        rows = list(rows)
        if not rows:
            return
        self.added_events = True
        self._run_many(
            "INSERT INTO events (at, kind, resource_id, lease_id, actor) VALUES (?, ?, ?, ?, ?)",
            rows,
        )
