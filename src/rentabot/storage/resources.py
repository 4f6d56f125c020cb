"""The SQL of resources: reading them, claiming them, maintenance, and the inventory sync."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rentabot.domain.model import Holder, Resource, ResourceSpec
from rentabot.domain.tags import TagCounts
from rentabot.storage.sql import Statements, dump_json, in_chunks

#: A resource with its holder (never the holder's token): see `resource_of`.
RESOURCE_COLUMNS = (
    "r.id, r.name, r.description, r.endpoint, r.tags_text, r.properties, r.maintenance,"
    " r.fence, l.id, l.owner, l.acquired_at, l.expires_at, l.principal,"
    " r.retired_at IS NOT NULL"
)
#: Resources and their holders, for `RESOURCE_COLUMNS`.
RESOURCES_WITH_HOLDERS = "resources r LEFT JOIN leases l ON l.id = r.lease_id"
VISIBLE = "(r.retired_at IS NULL OR r.lease_id IS NOT NULL)"
CLAIMABLE = "r.lease_id IS NULL AND r.retired_at IS NULL AND NOT r.maintenance"
_STATES = {
    "available": "r.lease_id IS NULL AND NOT r.maintenance",
    "locked": "r.lease_id IS NOT NULL",
    "maintenance": "r.lease_id IS NULL AND r.maintenance",
}
#: A tag's resources in each state: the state filter's own conditions, so a tag's counts
#: and the filtered resource view they link to always agree.
_TAG_COUNTS = (
    "SELECT t.tag, "
    + ", ".join(
        f"SUM(CASE WHEN {_STATES[state]} THEN 1 ELSE 0 END)"
        for state in ("available", "locked", "maintenance")
    )
    + ", COUNT(*) FROM resource_tags t JOIN resources r ON r.id = t.resource_id"
)

#: The orders a person may sort by, each ending with the id so that pages are stable.
SORTS = {
    "id": "r.id",
    "name": "r.name, r.id",
    "expires": "l.expires_at IS NULL, l.expires_at, r.id",
    "since": "l.acquired_at IS NULL, l.acquired_at, r.id",
}


def _properties(text: str | None) -> Mapping[str, str]:
    if not text or text == "{}":
        return {}
    loaded: dict[str, str] = json.loads(text)
    return loaded


def resource_of(row: Sequence[Any], holder: Holder | None = None) -> Resource:
    """A resource from `RESOURCE_COLUMNS`, or from its first eight and the `holder` given."""
    if holder is None and len(row) > 8 and row[8]:
        holder = Holder(row[8], row[9], row[10], row[11], row[12] or None)
    return Resource(
        id=row[0],
        name=row[1],
        description=row[2],
        endpoint=row[3],
        tags_text=row[4],
        properties=_properties(row[5]),
        maintenance=bool(row[6]),
        fence=row[7],
        holder=holder,
        retired=len(row) > 13 and bool(row[13]),
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


class ResourceRecords(Statements):
    """Resources: lookups, listings, claims, maintenance, the inventory."""

    def resource(self, resource_id: int) -> Resource | None:
        """The resource with this id, if it exists and is not retired (or still held)."""
        row = self._run(
            f"SELECT {RESOURCE_COLUMNS} FROM {RESOURCES_WITH_HOLDERS} WHERE r.id = ? AND {VISIBLE}",
            (resource_id,),
        ).fetchone()
        return resource_of(row) if row else None

    def resource_names(self, resource_ids: Collection[int]) -> dict[int, str]:
        """The names of these resources (at most a page of them), retired ones included:
        the audit trail names resources that are gone."""
        if not resource_ids:
            return {}
        ids = sorted(resource_ids)
        marks = ", ".join("?" for _ in ids)
        rows = self._run(f"SELECT id, name FROM resources WHERE id IN ({marks})", ids)
        return {row[0]: row[1] for row in rows.fetchall()}

    def resource_id_by_name(self, name: str) -> int | None:
        """The id of the visible resource with this name."""
        row = self._run(
            f"SELECT r.id FROM resources r WHERE r.name = ? AND {VISIBLE}", (name,)
        ).fetchone()
        return row[0] if row else None

    def resources(self) -> list[Resource]:
        """Every visible resource, in id order."""
        rows = self._run(
            f"SELECT {RESOURCE_COLUMNS} FROM {RESOURCES_WITH_HOLDERS} WHERE {VISIBLE} ORDER BY r.id"
        ).fetchall()
        return [resource_of(row) for row in rows]

    def resources_page(
        self, tags: Sequence[str], state: str | None, offset: int, limit: int
    ) -> tuple[list[Resource], int]:
        """Visible resources carrying every tag, in a state, paged; and how many match."""
        where = [VISIBLE]
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
            f"SELECT {RESOURCE_COLUMNS} FROM {RESOURCES_WITH_HOLDERS}"
            f" WHERE {condition} ORDER BY r.id LIMIT ? OFFSET ?",
            [*params, limit, offset],
        ).fetchall()
        return [resource_of(row) for row in rows], int(total[0])

    def browse(
        self,
        tags: Sequence[str],
        state: str | None,
        holder: str | None,
        text: str | None,
        sort: str,
        offset: int,
        limit: int,
    ) -> tuple[list[Resource], int]:
        """`resources_page` for people: also by holder (owner or principal, exactly) and by
        free text (in name, description or endpoint), sorted by `sort` (a key of `SORTS`).
        Every filter, the order and the page are SQL, so 100,000 resources cost one page."""
        where = [VISIBLE]
        params: list[Any] = []
        for tag in tags:
            # An IN over the (tag, resource_id) key reads only that tag's rows; an EXISTS
            # per resource would visit every resource.
            where.append("r.id IN (SELECT o.resource_id FROM resource_tags o WHERE o.tag = ?)")
            params.append(tag)
        if state is not None:
            where.append(_STATES[state])
        if holder is not None:
            where.append(
                "EXISTS (SELECT 1 FROM leases h WHERE h.id = r.lease_id"
                " AND (h.owner = ? OR h.principal = ?))"
            )
            params += [holder, holder]
        if text:
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append(
                "(LOWER(r.name) LIKE ? ESCAPE '\\' OR LOWER(COALESCE(r.description, ''))"
                " LIKE ? ESCAPE '\\' OR LOWER(COALESCE(r.endpoint, '')) LIKE ? ESCAPE '\\')"
            )
            params += [pattern.lower()] * 3
        condition = " AND ".join(where)
        total = self._run(f"SELECT COUNT(*) FROM resources r WHERE {condition}", params).fetchone()
        rows = self._run(
            f"SELECT {RESOURCE_COLUMNS} FROM {RESOURCES_WITH_HOLDERS}"
            f" WHERE {condition} ORDER BY {SORTS[sort]} LIMIT ? OFFSET ?",
            [*params, limit, offset],
        ).fetchall()
        return [resource_of(row) for row in rows], int(total[0])

    def tag_counts(self, tag: str | None = None) -> list[TagCounts]:
        """Free, held, in-maintenance and total visible resources of one tag (or of every
        tag), in tag order. One aggregate over the (tag, resource_id) key joined to
        resources: 100,000 resources are one scan in the database, and one row per tag
        comes back, never one per resource."""
        where, params = (f"t.tag = ? AND {VISIBLE}", [tag]) if tag is not None else (VISIBLE, [])
        rows = self._run(
            f"{_TAG_COUNTS} WHERE {where} GROUP BY t.tag ORDER BY t.tag", params
        ).fetchall()
        return [TagCounts(row[0], *(int(value) for value in row[1:5])) for row in rows]

    def held_by(self, lease_id: int) -> list[Resource]:
        """The resources a lease holds now, in id order, each with its fence."""
        rows = self._run(
            f"SELECT {RESOURCE_COLUMNS} FROM resources r JOIN leases l ON l.id = r.lease_id"
            " WHERE r.lease_id = ? ORDER BY r.id",
            (lease_id,),
        ).fetchall()
        return [resource_of(row) for row in rows]

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
                f"SELECT r.id FROM resources r WHERE {CLAIMABLE} ORDER BY r.id LIMIT ?", (count,)
            ).fetchall()
        else:
            clause, params = self._tag_match(tags)
            rows = self._run(
                f"SELECT t.resource_id {clause} AND {CLAIMABLE} ORDER BY t.resource_id LIMIT ?",
                [*params, count],
            ).fetchall()
        return [row[0] for row in rows]

    def count_visible_with_tags(self, tags: Sequence[str], limit: int) -> int:
        """How many visible resources carry every tag (none: any), counting up to `limit`."""
        if not tags:
            sql, params = f"SELECT 1 FROM resources r WHERE {VISIBLE} LIMIT ?", [limit]
        else:
            clause, tag_params = self._tag_match(tags)
            sql, params = f"SELECT 1 {clause} AND {VISIBLE} LIMIT ?", [*tag_params, limit]
        return len(self._run(sql, params).fetchall())

    def resource_ids_by_name(self, names: Sequence[str]) -> dict[str, int]:
        """Ids of the visible resources with these names (absent names are left out)."""
        found: dict[str, int] = {}
        for chunk, marks in in_chunks(names):
            for row in self._run(
                f"SELECT r.name, r.id FROM resources r WHERE r.name IN ({marks}) AND {VISIBLE}",
                chunk,
            ).fetchall():
                found[row[0]] = row[1]
        return found

    def claimable(self, resource_ids: Sequence[int]) -> list[int]:
        """Those of these resources that can be granted now."""
        ids = list(resource_ids)
        free: list[int] = []
        for chunk, marks in in_chunks(ids):
            free += [
                row[0]
                for row in self._run(
                    f"SELECT r.id FROM resources r WHERE r.id IN ({marks}) AND {CLAIMABLE}",
                    chunk,
                ).fetchall()
            ]
        return sorted(free)

    def tags_of(self, resource_ids: Sequence[int]) -> dict[int, frozenset[str]]:
        """The tags of these resources (every id is a key, tagless ones included)."""
        tags: dict[int, set[str]] = {resource_id: set() for resource_id in resource_ids}
        ids = list(tags)
        for chunk, marks in in_chunks(ids):
            for row in self._run(
                f"SELECT resource_id, tag FROM resource_tags WHERE resource_id IN ({marks})",
                chunk,
            ).fetchall():
                tags[row[0]].add(row[1])
        return {resource_id: frozenset(found) for resource_id, found in tags.items()}

    def claim(self, resource_id: int, lease: Holder, now: float) -> Resource | None:
        """Give a free resource to a lease. None when it is not free: this conditional update
        decides. The resource comes back held by `lease`, with its new fence."""
        row = self._run(
            "UPDATE resources SET lease_id = ?, fence = fence + 1, updated_at = ?"
            " WHERE id = ? AND lease_id IS NULL AND retired_at IS NULL AND NOT maintenance"
            " RETURNING id, name, description, endpoint, tags_text, properties, maintenance,"
            " fence",
            (lease.lease_id, now, resource_id),
        ).fetchone()
        return resource_of(row, lease) if row else None

    def set_maintenance(self, resource_id: int, on: bool, now: float) -> bool:
        """Turn maintenance on or off for a visible resource. False when it does not exist:
        this conditional update decides."""
        cursor = self._run(
            f"UPDATE resources SET maintenance = ?, updated_at = ? WHERE id = ?"
            f" AND id IN (SELECT r.id FROM resources r WHERE r.id = ? AND {VISIBLE})",
            (on, now, resource_id, resource_id),
        )
        return bool(cursor.rowcount == 1)

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
                (s.name, s.description, s.endpoint, s.tags_text, dump_json(s.properties), now)
                for s in specs
            ),
        )
        names = [s.name for s in specs]
        ids: dict[str, int] = {}
        for chunk, marks in in_chunks(names):
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
                (s.description, s.endpoint, s.tags_text, dump_json(s.properties), now, rid)
                for rid, s in rows
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
        for chunk, marks in in_chunks(resource_ids):
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
