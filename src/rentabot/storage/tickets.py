"""The SQL of the wait queue: tickets, and the copy of the waiting ones a transaction keeps.

Every operation that frees or asks for resources reads the queue, so a transaction reads it
once and keeps it (`waiting_tickets`). Nobody else writes while a write transaction runs
(writers are serialised), so only this transaction's own ticket writes, and undoing them,
make the copy stale: every statement that changes `tickets` goes through `_change_tickets`,
which drops the copy, and so does rolling back to a savepoint (`Store`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rentabot.domain.model import Ticket
from rentabot.storage.sql import Statements

_TICKET_COLUMNS = (
    "id, token, request_id, owner, description, priority, count, resource_ids, tags, ttl,"
    " created_at, wait_until, last_seen_at, state, ended_at, lease_id, principal, selection,"
    " claim_window, claimed_at"
)


def _ticket(row: Sequence[Any]) -> Ticket:
    ids = json.loads(row[7]) if row[7] is not None else None
    return Ticket(
        id=row[0],
        token=row[1],
        request_id=row[2],
        owner=row[3],
        description=row[4],
        priority=row[5],
        count=row[6],
        resource_ids=tuple(ids) if ids is not None else None,
        tags=tuple(json.loads(row[8])),
        ttl=row[9],
        created_at=row[10],
        wait_until=row[11],
        last_seen_at=row[12],
        state=row[13],
        ended_at=row[14],
        lease_id=row[15],
        principal=row[16] or None,
        asked=row[17],
        claim_window=row[18],
        claimed_at=row[19],
    )


class TicketRecords(Statements):
    """Tickets: the queue in order, and its changes."""

    def __init__(self, cursor: Any) -> None:
        super().__init__(cursor)
        self._waiting: dict[int, list[Ticket]] = {}

    def _forget_reads(self) -> None:
        """Drop what this transaction remembers of the queue (it changed, or was undone)."""
        self._waiting.clear()

    def _change_tickets(self, sql: str, params: Sequence[Any]) -> Any:
        """Run a statement that changes `tickets`: the only way to, so the kept copy of the
        queue can never outlive a change."""
        self._forget_reads()
        return self._run(sql, params)

    def insert_ticket(self, ticket: Ticket) -> int:
        """Queue a lock request (its `id` is ignored); returns the new ticket's id."""
        row = self._change_tickets(
            "INSERT INTO tickets (token, request_id, owner, description, priority, count,"
            " resource_ids, tags, ttl, created_at, wait_until, last_seen_at, state, principal,"
            " selection, claim_window) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " RETURNING id",
            (
                ticket.token,
                ticket.request_id,
                ticket.owner,
                ticket.description,
                ticket.priority,
                ticket.count,
                json.dumps(list(ticket.resource_ids)) if ticket.resource_ids is not None else None,
                json.dumps(list(ticket.tags)),
                ticket.ttl,
                ticket.created_at,
                ticket.wait_until,
                ticket.last_seen_at,
                ticket.state,
                ticket.principal or "",
                ticket.asked,
                ticket.claim_window,
            ),
        ).fetchone()
        ticket_id: int = row[0]
        return ticket_id

    def waiting_count(self, principal: str | None = None) -> int:
        """How many tickets wait (of one principal, '' for anonymous callers, if given).

        Read in a write transaction, the count holds until it commits: writers are
        serialised, so a limit checked with it cannot be overrun by a concurrent insert."""
        if principal is None:
            row = self._run("SELECT COUNT(*) FROM tickets WHERE state = 'waiting'").fetchone()
        else:
            row = self._run(
                "SELECT COUNT(*) FROM tickets WHERE state = 'waiting' AND principal = ?",
                (principal,),
            ).fetchone()
        return int(row[0])

    def ticket(self, ticket_id: int) -> Ticket | None:
        """The ticket with this id, in any state."""
        found = self._run(
            f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE id = ?", (ticket_id,)
        ).fetchone()
        return _ticket(found) if found else None

    def ticket_by_request_id(self, principal: str, request_id: str) -> Ticket | None:
        """The ticket an earlier request by this principal with this request id opened."""
        found = self._run(
            f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE principal = ? AND request_id = ?",
            (principal, request_id),
        ).fetchone()
        return _ticket(found) if found else None

    def waiting_tickets(self, limit: int) -> list[Ticket]:
        """Waiting tickets in queue order (priority, then arrival, then id)."""
        known = self._waiting.get(limit)
        if known is None:
            rows = self._run(
                f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE state = 'waiting'"
                " ORDER BY priority DESC, created_at, id LIMIT ?",
                (limit,),
            ).fetchall()
            known = self._waiting[limit] = [_ticket(row) for row in rows]
        return list(known)

    def end_ticket(
        self, ticket_id: int, now: float, state: str, lease_id: int | None = None
    ) -> bool:
        """Take a waiting ticket out of the queue. False when it was no longer waiting."""
        cursor = self._change_tickets(
            "UPDATE tickets SET state = ?, ended_at = ?, lease_id = ?"
            " WHERE id = ? AND state = 'waiting'",
            (state, now, lease_id, ticket_id),
        )
        return bool(cursor.rowcount == 1)

    def touch_ticket(self, ticket_id: int, seen_until: float) -> bool:
        """Record that the ticket's client is waiting until `seen_until` (a long-poll's end).
        False when it is no longer waiting."""
        cursor = self._change_tickets(
            "UPDATE tickets SET last_seen_at = ? WHERE id = ? AND state = 'waiting'",
            (seen_until, ticket_id),
        )
        return bool(cursor.rowcount == 1)

    def stale_tickets(self, now: float, keepalive: float) -> list[tuple[int, str]]:
        """Waiting tickets that must leave the queue, with why: `timed_out` (its wait ran
        out) or `abandoned` (not seen for longer than `keepalive`: a long-poll in progress
        counts until its end, see `touch_ticket`)."""
        rows = self._run(
            "SELECT id, CASE WHEN wait_until <= ? THEN 'timed_out' ELSE 'abandoned' END"
            " FROM tickets WHERE state = 'waiting' AND (wait_until <= ? OR last_seen_at < ?)",
            (now, now, now - keepalive),
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def reservations(self, principal: str | None = None) -> list[Ticket]:
        """Upstream 1.x reservations (tickets with a claim window), oldest first; of one
        principal ('' for anonymous callers) if given."""
        sql = f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE claim_window IS NOT NULL"
        params: tuple[Any, ...] = ()
        if principal is not None:
            sql += " AND principal = ?"
            params = (principal,)
        rows = self._run(sql + " ORDER BY created_at, id LIMIT 10000", params).fetchall()
        return [_ticket(row) for row in rows]

    def mark_claimed(self, ticket_id: int, now: float) -> bool:
        """Record a granted reservation's claim. False when it was not granted or was
        already claimed (the row count decides, so two claims cannot both win)."""
        cursor = self._change_tickets(
            "UPDATE tickets SET claimed_at = ? WHERE id = ? AND state = 'granted'"
            " AND claim_window IS NOT NULL AND claimed_at IS NULL",
            (now, ticket_id),
        )
        return bool(cursor.rowcount == 1)
