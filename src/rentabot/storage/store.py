"""The SQL the service runs, on one open transaction's DBAPI cursor.

Nothing here commits: the service owns the transaction (see `Database.transaction`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from rentabot.domain.model import Event, Holder, Lease, Resource, ResourceSpec, Ticket

V = TypeVar("V")

_RESOURCE_COLUMNS = (
    "r.id, r.name, r.description, r.endpoint, r.tags_text, r.properties, r.maintenance,"
    " l.token, r.fence, l.id, l.owner, l.acquired_at, l.expires_at"
)
_VISIBLE = "(r.retired_at IS NULL OR r.lease_id IS NOT NULL)"
_CLAIMABLE = "r.lease_id IS NULL AND r.retired_at IS NULL AND NOT r.maintenance"
_STATES = {
    "available": "r.lease_id IS NULL AND NOT r.maintenance",
    "locked": "r.lease_id IS NOT NULL",
    "maintenance": "r.lease_id IS NULL AND r.maintenance",
}


#: Values bound in one `IN (...)`: under every driver's limit on parameters.
_IN_CHUNK = 500


def _in_chunks(values: Sequence[V]) -> Iterator[tuple[list[V], str]]:
    """The values in slices small enough for one `IN (...)`, each with its placeholders."""
    for start in range(0, len(values), _IN_CHUNK):
        chunk = list(values[start : start + _IN_CHUNK])
        yield chunk, ", ".join("?" * len(chunk))


def _properties(text: str | None) -> Mapping[str, str]:
    if not text or text == "{}":
        return {}
    loaded: dict[str, str] = json.loads(text)
    return loaded


def _resource(row: Sequence[Any]) -> Resource:
    """A resource from `_RESOURCE_COLUMNS` (or its first nine, without the holder)."""
    holder = Holder(row[9], row[10], row[11], row[12]) if len(row) > 9 and row[9] else None
    return Resource(
        id=row[0],
        name=row[1],
        description=row[2],
        endpoint=row[3],
        tags_text=row[4],
        properties=_properties(row[5]),
        maintenance=bool(row[6]),
        lock_token=row[7],
        fence=row[8],
        holder=holder,
    )


_LEASE_COLUMNS = "id, token, owner, description, acquired_at, expires_at, ttl, ended_at, end_reason"


def _lease(row: Sequence[Any]) -> Lease:
    return Lease(
        id=row[0],
        token=row[1],
        owner=row[2],
        description=row[3],
        acquired_at=row[4],
        expires_at=row[5],
        ttl=row[6],
        ended_at=row[7],
        end_reason=row[8],
        resources=(),
    )


_TICKET_COLUMNS = (
    "id, token, request_id, owner, description, priority, count, resource_ids, tags, ttl,"
    " created_at, wait_until, last_seen_at, state, ended_at, lease_id"
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
    )


@dataclass(frozen=True, slots=True)
class StoredResource:
    """A resource row as the inventory sync compares it with the descriptor."""

    id: int
    name: str
    description: str | None
    endpoint: str | None
    tags_text: str | None
    properties: str
    retired: bool


class Store:
    """Typed SQL over one transaction."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        # The waiting tickets, read once per transaction: every operation that frees or asks
        # for resources reads the queue, and nobody else writes while a write transaction
        # runs (writers are serialised), so only this store's own ticket writes (and undoing
        # them) make the copy stale.
        self._waiting: dict[int, list[Ticket]] = {}

    def _forget_reads(self) -> None:
        """Drop what this transaction remembers of what it read (its writes changed it)."""
        self._waiting.clear()

    def _run(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cursor.execute(sql, params)

    def _run_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._cursor.executemany(sql, rows)

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

    # ------------------------------------------------------------------ reading resources

    def resource(self, resource_id: int) -> Resource | None:
        """The resource with this id, if it exists and is not retired (or still held)."""
        row = self._run(
            f"SELECT {_RESOURCE_COLUMNS} FROM resources r LEFT JOIN leases l ON l.id = r.lease_id"
            f" WHERE r.id = ? AND {_VISIBLE}",
            (resource_id,),
        ).fetchone()
        return _resource(row) if row else None

    def resource_id_by_name(self, name: str) -> int | None:
        """The id of the visible resource with this name."""
        row = self._run(
            f"SELECT r.id FROM resources r WHERE r.name = ? AND {_VISIBLE}", (name,)
        ).fetchone()
        return row[0] if row else None

    def resources(self) -> list[Resource]:
        """Every visible resource, in id order."""
        rows = self._run(
            f"SELECT {_RESOURCE_COLUMNS} FROM resources r LEFT JOIN leases l ON l.id = r.lease_id"
            f" WHERE {_VISIBLE} ORDER BY r.id"
        ).fetchall()
        return [_resource(row) for row in rows]

    def resources_page(
        self, tags: Sequence[str], state: str | None, offset: int, limit: int
    ) -> tuple[list[Resource], int]:
        """Visible resources carrying every tag, in a state, paged; and how many match."""
        where = [_VISIBLE]
        params: list[Any] = []
        for tag in tags:
            where.append(
                "EXISTS (SELECT 1 FROM resource_tags o WHERE o.resource_id = r.id AND o.tag = ?)"
            )
            params.append(tag)
        if state is not None:
            where.append(_STATES[state])
        condition = " AND ".join(where)
        total = self._run(f"SELECT COUNT(*) FROM resources r WHERE {condition}", params).fetchone()
        rows = self._run(
            f"SELECT {_RESOURCE_COLUMNS} FROM resources r LEFT JOIN leases l ON l.id = r.lease_id"
            f" WHERE {condition} ORDER BY r.id LIMIT ? OFFSET ?",
            [*params, limit, offset],
        ).fetchall()
        return [_resource(row) for row in rows], int(total[0])

    def _tag_match(self, tags: Sequence[str]) -> tuple[str, list[Any]]:
        """FROM/WHERE clause matching resources that carry every tag (an index lookup each)."""
        first, *others = tags
        clause = "FROM resource_tags t JOIN resources r ON r.id = t.resource_id WHERE t.tag = ?"
        for _ in others:
            clause += (
                " AND EXISTS (SELECT 1 FROM resource_tags o"
                " WHERE o.resource_id = t.resource_id AND o.tag = ?)"
            )
        return clause, [first, *others]

    def claimable_with_tags(self, tags: Sequence[str], count: int = 1) -> list[int]:
        """The lowest `count` ids among free resources carrying every tag (none: any)."""
        if not tags:
            rows = self._run(
                f"SELECT r.id FROM resources r WHERE {_CLAIMABLE} ORDER BY r.id LIMIT ?", (count,)
            ).fetchall()
        else:
            clause, params = self._tag_match(tags)
            rows = self._run(
                f"SELECT t.resource_id {clause} AND {_CLAIMABLE} ORDER BY t.resource_id LIMIT ?",
                [*params, count],
            ).fetchall()
        return [row[0] for row in rows]

    def count_visible_with_tags(self, tags: Sequence[str], limit: int) -> int:
        """How many visible resources carry every tag (none: any), counting up to `limit`."""
        if not tags:
            sql, params = f"SELECT 1 FROM resources r WHERE {_VISIBLE} LIMIT ?", [limit]
        else:
            clause, tag_params = self._tag_match(tags)
            sql, params = f"SELECT 1 {clause} AND {_VISIBLE} LIMIT ?", [*tag_params, limit]
        return len(self._run(sql, params).fetchall())

    def resource_ids_by_name(self, names: Sequence[str]) -> dict[str, int]:
        """Ids of the visible resources with these names (absent names are left out)."""
        found: dict[str, int] = {}
        for chunk, marks in _in_chunks(names):
            for row in self._run(
                f"SELECT r.name, r.id FROM resources r WHERE r.name IN ({marks}) AND {_VISIBLE}",
                chunk,
            ).fetchall():
                found[row[0]] = row[1]
        return found

    # ------------------------------------------------------------------ leases

    def insert_lease(
        self,
        token: str,
        now: float,
        *,
        owner: str | None = None,
        description: str | None = None,
        expires_at: float | None = None,
        ttl: float | None = None,
        request_id: str | None = None,
    ) -> int:
        """Record a new active lease; returns its id."""
        row = self._run(
            "INSERT INTO leases (token, owner, description, acquired_at, expires_at, ttl,"
            " request_id) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (token, owner, description, now, expires_at, ttl, request_id),
        ).fetchone()
        lease_id: int = row[0]
        return lease_id

    def delete_empty_lease(self, lease_id: int) -> None:
        """Remove a lease that was never granted anything (a claim that lost)."""
        self._run(
            "DELETE FROM leases WHERE id = ? AND NOT EXISTS"
            " (SELECT 1 FROM resources WHERE lease_id = ?)",
            (lease_id, lease_id),
        )

    def lease(self, lease_id: int) -> Lease | None:
        """The lease with this id, active or ended (its `resources` left empty)."""
        row = self._run(f"SELECT {_LEASE_COLUMNS} FROM leases WHERE id = ?", (lease_id,)).fetchone()
        return _lease(row) if row else None

    def lease_by_request_id(self, request_id: str) -> Lease | None:
        """The lease an earlier acquire with this client request id produced (no resources)."""
        row = self._run(
            f"SELECT {_LEASE_COLUMNS} FROM leases WHERE request_id = ?", (request_id,)
        ).fetchone()
        return _lease(row) if row else None

    def held_by(self, lease_id: int) -> list[Resource]:
        """The resources a lease holds now, in id order, each with its fence."""
        rows = self._run(
            f"SELECT {_RESOURCE_COLUMNS} FROM resources r JOIN leases l ON l.id = r.lease_id"
            " WHERE r.lease_id = ? ORDER BY r.id",
            (lease_id,),
        ).fetchall()
        return [_resource(row) for row in rows]

    def extend(self, lease_id: int, now: float, expires_at: float | None) -> bool:
        """Move an active, unexpired lease's deadline. False when it has ended or expired."""
        cursor = self._run(
            "UPDATE leases SET expires_at = ? WHERE id = ? AND ended_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > ?)",
            (expires_at, lease_id, now),
        )
        return bool(cursor.rowcount == 1)

    def end_lease(self, lease_id: int, now: float, reason: str) -> list[int]:
        """End an active lease and free what it holds; returns the freed resource ids.

        Conditional on the lease being active, so two concurrent ends (a release racing the
        expiry sweep) end it once: the second frees nothing and records nothing.
        """
        cursor = self._run(
            "UPDATE leases SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL",
            (now, reason, lease_id),
        )
        if cursor.rowcount != 1:
            return []
        rows = self._run(
            "UPDATE resources SET lease_id = NULL, updated_at = ? WHERE lease_id = ? RETURNING id",
            (now, lease_id),
        ).fetchall()
        return sorted(row[0] for row in rows)

    def expire_due(self, now: float, limit: int) -> list[tuple[int, int]]:
        """End up to `limit` active leases whose deadline has passed, and free what they hold.

        Returns (lease id, resource id) for every resource freed. Set-based (three statements
        per batch, not per lease), and conditional on the lease being active, so sweeps
        racing each other or a release end a lease once.
        """
        ended = [
            row[0]
            for row in self._run(
                "UPDATE leases SET ended_at = ?, end_reason = 'expired' WHERE id IN"
                " (SELECT id FROM leases WHERE ended_at IS NULL AND expires_at IS NOT NULL"
                " AND expires_at <= ? ORDER BY expires_at LIMIT ?) RETURNING id",
                (now, now, limit),
            ).fetchall()
        ]
        freed: list[tuple[int, int]] = []
        for chunk, marks in _in_chunks(ended):
            held = self._run(
                f"SELECT lease_id, id FROM resources WHERE lease_id IN ({marks})", chunk
            ).fetchall()
            self._run(
                f"UPDATE resources SET lease_id = NULL, updated_at = ? WHERE lease_id IN ({marks})",
                [now, *chunk],
            )
            freed += [(row[0], row[1]) for row in held]
        return sorted(freed)

    def claim(self, resource_id: int, lease_id: int, now: float, token: str) -> Resource | None:
        """Give a free resource to a lease (whose token is `token`). None when it is not
        free: this conditional update decides."""
        row = self._run(
            "UPDATE resources SET lease_id = ?, fence = fence + 1, updated_at = ?"
            " WHERE id = ? AND lease_id IS NULL AND retired_at IS NULL AND NOT maintenance"
            " RETURNING id, name, description, endpoint, tags_text, properties, maintenance,"
            " ?, fence",
            (lease_id, now, resource_id, token),
        ).fetchone()
        return _resource(row) if row else None

    def holder(self, resource_id: int) -> tuple[int, str, float | None] | None:
        """(lease id, token, deadline) of the lease holding the resource; None when free."""
        row = self._run(
            "SELECT l.id, l.token, l.expires_at FROM resources r JOIN leases l"
            " ON l.id = r.lease_id WHERE r.id = ?",
            (resource_id,),
        ).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def release(self, resource_id: int, lease_id: int, now: float) -> bool:
        """Free a resource if `lease_id` holds it. This conditional update decides: a lease
        that no longer holds the resource matches nothing, so a late or repeated release can
        never free a later holder's lock."""
        cursor = self._run(
            "UPDATE resources SET lease_id = NULL, updated_at = ? WHERE id = ? AND lease_id = ?",
            (now, resource_id, lease_id),
        )
        return bool(cursor.rowcount == 1)

    def end_lease_if_empty(self, lease_id: int, now: float, reason: str) -> bool:
        """Mark the lease ended once it holds no resource. Returns whether it ended."""
        cursor = self._run(
            "UPDATE leases SET ended_at = ?, end_reason = ?"
            " WHERE id = ? AND ended_at IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM resources WHERE lease_id = ?)",
            (now, reason, lease_id, lease_id),
        )
        return bool(cursor.rowcount == 1)

    # ------------------------------------------------------------------ the wait queue

    def insert_ticket(self, ticket: Ticket) -> int:
        """Queue a lock request (its `id` is ignored); returns the new ticket's id."""
        self._forget_reads()
        row = self._run(
            "INSERT INTO tickets (token, request_id, owner, description, priority, count,"
            " resource_ids, tags, ttl, created_at, wait_until, last_seen_at, state)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
            ),
        ).fetchone()
        ticket_id: int = row[0]
        return ticket_id

    def ticket(self, ticket_id: int) -> Ticket | None:
        """The ticket with this id, in any state."""
        row = self._run(f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE id = ?", (ticket_id,))
        found = row.fetchone()
        return _ticket(found) if found else None

    def ticket_by_request_id(self, request_id: str) -> Ticket | None:
        """The ticket an earlier request with this client request id opened."""
        found = self._run(
            f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE request_id = ?", (request_id,)
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
        self._forget_reads()
        cursor = self._run(
            "UPDATE tickets SET state = ?, ended_at = ?, lease_id = ?"
            " WHERE id = ? AND state = 'waiting'",
            (state, now, lease_id, ticket_id),
        )
        return bool(cursor.rowcount == 1)

    def touch_ticket(self, ticket_id: int, seen_until: float) -> None:
        """Record that the ticket's client is waiting until `seen_until` (a long-poll's end)."""
        self._forget_reads()
        self._run(
            "UPDATE tickets SET last_seen_at = ? WHERE id = ? AND state = 'waiting'",
            (seen_until, ticket_id),
        )

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

    def tags_of(self, resource_ids: Sequence[int]) -> dict[int, frozenset[str]]:
        """The tags of these resources (every id is a key, tagless ones included)."""
        tags: dict[int, set[str]] = {resource_id: set() for resource_id in resource_ids}
        ids = list(tags)
        for chunk, marks in _in_chunks(ids):
            for row in self._run(
                f"SELECT resource_id, tag FROM resource_tags WHERE resource_id IN ({marks})",
                chunk,
            ).fetchall():
                tags[row[0]].add(row[1])
        return {resource_id: frozenset(found) for resource_id, found in tags.items()}

    def claimable(self, resource_ids: Sequence[int]) -> list[int]:
        """Those of these resources that can be granted now."""
        ids = list(resource_ids)
        free: list[int] = []
        for chunk, marks in _in_chunks(ids):
            free += [
                row[0]
                for row in self._run(
                    f"SELECT r.id FROM resources r WHERE r.id IN ({marks}) AND {_CLAIMABLE}",
                    chunk,
                ).fetchall()
            ]
        return sorted(free)

    # ------------------------------------------------------------------ events

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
        self._run(
            "INSERT INTO events (at, kind, resource_id, lease_id, actor, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (now, kind, resource_id, lease_id, actor, json.dumps(detail) if detail else None),
        )

    def events(
        self, *, after: int, resource_id: int | None, lease_id: int | None, limit: int
    ) -> list[Event]:
        """Events with an id above `after`, oldest first, optionally of one resource or lease."""
        where, params = ["id > ?"], [after]
        if resource_id is not None:
            where.append("resource_id = ?")
            params.append(resource_id)
        if lease_id is not None:
            where.append("lease_id = ?")
            params.append(lease_id)
        rows = self._run(
            "SELECT id, at, kind, resource_id, lease_id, actor, detail FROM events"
            f" WHERE {' AND '.join(where)} ORDER BY id LIMIT ?",
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

    def set_maintenance(self, resource_id: int, on: bool, now: float) -> bool:
        """Turn maintenance on or off for a visible resource. False when it does not exist."""
        cursor = self._run(
            f"UPDATE resources SET maintenance = ?, updated_at = ? WHERE id = ?"
            f" AND id IN (SELECT r.id FROM resources r WHERE r.id = ? AND {_VISIBLE})",
            (on, now, resource_id, resource_id),
        )
        return bool(cursor.rowcount == 1)

    def add_events(self, rows: Iterable[tuple[float, str, int | None, str | None]]) -> None:
        """Append many events of the form (at, kind, resource_id, detail JSON)."""
        self._run_many(
            "INSERT INTO events (at, kind, resource_id, detail) VALUES (?, ?, ?, ?)", rows
        )

    def add_lease_events(self, rows: Iterable[tuple[float, str, int, int]]) -> None:
        """Append many events of the form (at, kind, resource_id, lease_id)."""
        self._run_many(
            "INSERT INTO events (at, kind, resource_id, lease_id) VALUES (?, ?, ?, ?)", rows
        )

    # ------------------------------------------------------------------ inventory

    def stored_resources(self) -> list[StoredResource]:
        """Every resource row, retired ones included, for the descriptor sync."""
        rows = self._run(
            "SELECT id, name, description, endpoint, tags_text, properties, retired_at"
            " FROM resources ORDER BY id"
        ).fetchall()
        return [
            StoredResource(row[0], row[1], row[2], row[3], row[4], row[5], row[6] is not None)
            for row in rows
        ]

    def insert_resources(self, specs: Sequence[ResourceSpec], now: float) -> dict[str, int]:
        """Add new resources in the order given; returns their ids by name."""
        self._run_many(
            "INSERT INTO resources (name, description, endpoint, tags_text, properties,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                (s.name, s.description, s.endpoint, s.tags_text, _dump(s.properties), now)
                for s in specs
            ),
        )
        names = [s.name for s in specs]
        ids: dict[str, int] = {}
        for chunk, marks in _in_chunks(names):
            for row in self._run(
                f"SELECT id, name FROM resources WHERE name IN ({marks})", chunk
            ).fetchall():
                ids[row[1]] = row[0]
        return ids

    def update_resources(self, rows: Sequence[tuple[int, ResourceSpec]], now: float) -> None:
        """Overwrite the descriptor fields of existing resources and un-retire them."""
        self._run_many(
            "UPDATE resources SET description = ?, endpoint = ?, tags_text = ?, properties = ?,"
            " retired_at = NULL, updated_at = ? WHERE id = ?",
            (
                (s.description, s.endpoint, s.tags_text, _dump(s.properties), now, resource_id)
                for resource_id, s in rows
            ),
        )

    def retire_resources(self, resource_ids: Sequence[int], now: float) -> None:
        """Mark resources as gone from the descriptor; held ones stay until released."""
        self._run_many(
            "UPDATE resources SET retired_at = ?, updated_at = ? WHERE id = ?",
            ((now, now, resource_id) for resource_id in resource_ids),
        )

    def held_among(self, resource_ids: Sequence[int]) -> int:
        """How many of these resources a lease holds now."""
        held = 0
        for chunk, marks in _in_chunks(resource_ids):
            row = self._run(
                f"SELECT COUNT(*) FROM resources WHERE lease_id IS NOT NULL AND id IN ({marks})",
                chunk,
            ).fetchone()
            held += int(row[0])
        return held

    def replace_tags(self, tags_by_id: Mapping[int, Sequence[str]], *, new: bool = False) -> None:
        """Set the tags of these resources to exactly the ones given (`new`: they have none)."""
        if not new:
            self._run_many(
                "DELETE FROM resource_tags WHERE resource_id = ?", ((i,) for i in tags_by_id)
            )
        self._run_many(
            "INSERT INTO resource_tags (tag, resource_id) VALUES (?, ?)",
            ((tag, resource_id) for resource_id, tags in tags_by_id.items() for tag in tags),
        )


def _dump(properties: Mapping[str, str]) -> str:
    return json.dumps(dict(properties), sort_keys=True, separators=(",", ":"))
