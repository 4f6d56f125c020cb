"""The SQL the service runs, on one open transaction's DBAPI cursor.

Nothing here commits: the service owns the transaction (see `Database.transaction`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rentabot.domain.model import Resource, ResourceSpec

_RESOURCE_COLUMNS = (
    "r.id, r.name, r.description, r.endpoint, r.tags_text, r.properties, r.maintenance,"
    " l.token, r.fence"
)
_VISIBLE = "(r.retired_at IS NULL OR r.lease_id IS NOT NULL)"
_CLAIMABLE = "r.lease_id IS NULL AND r.retired_at IS NULL AND NOT r.maintenance"


def _properties(text: str | None) -> Mapping[str, str]:
    if not text or text == "{}":
        return {}
    loaded: dict[str, str] = json.loads(text)
    return loaded


def _resource(row: Sequence[Any]) -> Resource:
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

    def first_claimable_with_tags(self, tags: Sequence[str]) -> int | None:
        """The lowest id among free resources carrying every tag."""
        clause, params = self._tag_match(tags)
        row = self._run(
            f"SELECT t.resource_id {clause} AND {_CLAIMABLE} ORDER BY t.resource_id LIMIT 1",
            params,
        ).fetchone()
        return row[0] if row else None

    def any_visible_with_tags(self, tags: Sequence[str]) -> bool:
        """Whether any visible resource carries every tag."""
        clause, params = self._tag_match(tags)
        row = self._run(f"SELECT 1 {clause} AND {_VISIBLE} LIMIT 1", params).fetchone()
        return row is not None

    # ------------------------------------------------------------------ leases

    def insert_lease(
        self,
        token: str,
        now: float,
        *,
        owner: str | None = None,
        description: str | None = None,
        expires_at: float | None = None,
    ) -> int:
        """Record a new active lease; returns its id."""
        row = self._run(
            "INSERT INTO leases (token, owner, description, acquired_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?) RETURNING id",
            (token, owner, description, now, expires_at),
        ).fetchone()
        lease_id: int = row[0]
        return lease_id

    def claim(self, resource_id: int, lease_id: int, now: float) -> Resource | None:
        """Give a free resource to a lease. None when it is not free: this update decides."""
        row = self._run(
            "UPDATE resources SET lease_id = ?, fence = fence + 1, updated_at = ?"
            " WHERE id = ? AND lease_id IS NULL AND retired_at IS NULL AND NOT maintenance"
            " RETURNING id, name, description, endpoint, tags_text, properties, maintenance,"
            " NULL, fence",
            (lease_id, now, resource_id),
        ).fetchone()
        return _resource(row) if row else None

    def holder(self, resource_id: int) -> tuple[int, str] | None:
        """(lease id, token) of the lease holding the resource, or None when it is free."""
        row = self._run(
            "SELECT l.id, l.token FROM resources r JOIN leases l ON l.id = r.lease_id"
            " WHERE r.id = ?",
            (resource_id,),
        ).fetchone()
        return (row[0], row[1]) if row else None

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

    def add_events(self, rows: Iterable[tuple[float, str, int | None, str | None]]) -> None:
        """Append many events of the form (at, kind, resource_id, detail JSON)."""
        self._run_many(
            "INSERT INTO events (at, kind, resource_id, detail) VALUES (?, ?, ?, ?)", rows
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
        # Chunked to stay under every driver's limit on bound parameters.
        for start in range(0, len(names), 500):
            chunk = names[start : start + 500]
            marks = ", ".join("?" * len(chunk))
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
        for start in range(0, len(resource_ids), 500):
            chunk = list(resource_ids[start : start + 500])
            marks = ", ".join("?" * len(chunk))
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
