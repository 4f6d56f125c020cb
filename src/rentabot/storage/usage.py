"""The SQL of history and usage figures: a resource's events in a time window, the leases
and queue waits behind them, and the resources of a tag.

Reads only: every query is bounded by a window (`at >= since`) or a row limit. The events
table's index on (resource_id, id) finds a resource's events; a window read then filters
them by time (an index on (resource_id, at) would bound it further: see docs/performance.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from rentabot.domain.model import Event, Resource
from rentabot.domain.usage import HISTORY_KINDS, LeaseStart
from rentabot.storage.resources import (
    RESOURCE_COLUMNS,
    VISIBLE,
    resource_of,
)
from rentabot.storage.sql import Statements, in_chunks

_KINDS = ", ".join(f"'{kind}'" for kind in HISTORY_KINDS)
_EVENT_COLUMNS = "id, at, kind, resource_id, lease_id, actor, detail"


#: The details of an event that has none (shared: events are read only).
_NO_DETAIL: Mapping[str, object] = MappingProxyType({})
#: Kinds whose detail a history reads (an owner, an expiry, a reason); others skip parsing.
_DETAILED = frozenset({"granted", "force_released", "maintenance_on", "maintenance_off"})


def _event(row: Sequence[Any]) -> Event:
    detail = json.loads(row[6]) if row[6] and row[2] in _DETAILED else _NO_DETAIL
    return Event(row[0], row[1], row[2], row[3], row[4], row[5], detail)


class UsageRecords(Statements):
    """Reads for history and usage: bounded by a time window or a row limit."""

    def window_events(self, resource_ids: Sequence[int], since: float) -> dict[int, list[Event]]:
        """The history events of these resources at or after `since`, oldest first, by
        resource (every id is a key)."""
        found: dict[int, list[Event]] = {resource_id: [] for resource_id in resource_ids}
        for chunk, marks in in_chunks(list(found)):
            rows = self._run(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE resource_id IN ({marks})"
                f" AND at >= ? AND kind IN ({_KINDS}) ORDER BY resource_id, id",
                [*chunk, since],
            ).fetchall()
            for row in rows:
                found[row[3]].append(_event(row))
        return found

    def latest_history_events(self, resource_id: int, limit: int) -> list[Event]:
        """The newest `limit` history events of a resource, oldest first."""
        rows = self._run(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE resource_id = ? AND kind IN ({_KINDS})"
            " ORDER BY id DESC LIMIT ?",
            (resource_id, limit),
        ).fetchall()
        return [_event(row) for row in reversed(rows)]

    def lease_starts(self, lease_ids: Sequence[int]) -> dict[int, LeaseStart]:
        """How these leases began (owner, principal, when), by lease id."""
        found: dict[int, LeaseStart] = {}
        for chunk, marks in in_chunks(sorted(set(lease_ids))):
            rows = self._run(
                "SELECT id, acquired_at, owner, principal, expires_at FROM leases"
                f" WHERE id IN ({marks})",
                chunk,
            ).fetchall()
            for row in rows:
                found[row[0]] = LeaseStart(row[0], row[1], row[2], row[3] or None, row[4])
        return found

    def queue_waits(self, lease_ids: Sequence[int]) -> dict[int, float]:
        """For the leases among these granted to a queued request: how long it waited
        (from queueing to its grant), by lease id. Leases granted at once are absent."""
        found: dict[int, float] = {}
        for chunk, marks in in_chunks(sorted(set(lease_ids))):
            rows = self._run(
                "SELECT lease_id, ended_at - created_at FROM tickets"
                f" WHERE state = 'granted' AND lease_id IN ({marks})",
                chunk,
            ).fetchall()
            found.update((row[0], max(0.0, float(row[1]))) for row in rows)
        return found

    def tag_members(self, tag: str | None = None) -> dict[str, list[Resource]]:
        """The visible resources of one tag (or of every tag), by tag, in id order."""
        where, params = (
            (f"WHERE t.tag = ? AND {VISIBLE}", [tag]) if tag else (f"WHERE {VISIBLE}", [])
        )
        rows = self._run(
            f"SELECT t.tag, {RESOURCE_COLUMNS} FROM resource_tags t"
            " JOIN resources r ON r.id = t.resource_id LEFT JOIN leases l ON l.id = r.lease_id"
            f" {where}"
            " ORDER BY t.tag, r.id",
            params,
        ).fetchall()
        found: dict[str, list[Resource]] = {}
        for row in rows:
            found.setdefault(row[0], []).append(resource_of(row[1:]))
        return found
