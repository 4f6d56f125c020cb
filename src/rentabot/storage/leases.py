"""The SQL of leases: recording them, and ending, renewing or releasing them conditionally.

Every change is one conditional `UPDATE` whose row count decides: whatever the service read
before, a lease that has ended, expired, or is not the caller's matches no row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rentabot.domain.model import Lease
from rentabot.storage.sql import Statements, in_chunks

_LEASE_COLUMNS = (
    "id, token, owner, description, acquired_at, expires_at, ttl, ended_at, end_reason,"
    " principal, selection"
)


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
        principal=row[9] or None,
    )


@dataclass(frozen=True, slots=True)
class NewLease:
    """A lease about to be recorded."""

    token: str
    acquired_at: float
    owner: str | None = None
    description: str | None = None
    expires_at: float | None = None
    ttl: float | None = None
    request_id: str | None = None
    #: '' for an anonymous caller.
    principal: str = ""
    #: What was asked (`Selection.canonical`), kept when a request id is given.
    asked: str | None = None


@dataclass(frozen=True, slots=True)
class HeldBy:
    """Which callers may act on a lease: its token's bearer, or its principal (when given);
    and only while it is active and unexpired at `now`."""

    now: float
    token: str | None = None
    principal: str | None = None

    def condition(self) -> tuple[str, list[Any]]:
        """The SQL condition (on `leases`) and its parameters."""
        sql = " AND ended_at IS NULL AND (expires_at IS NULL OR expires_at > ?)"
        params: list[Any] = [self.now]
        if self.token is not None:
            sql += " AND token = ?"
            params.append(self.token)
        if self.principal is not None:
            sql += " AND principal = ?"
            params.append(self.principal)
        return sql, params


class LeaseRecords(Statements):
    """Leases: insert, read, and the conditional updates that end or extend them."""

    def insert_lease(self, lease: NewLease) -> int:
        """Record a new active lease; returns its id."""
        row = self._run(
            "INSERT INTO leases (token, owner, description, acquired_at, expires_at, ttl,"
            " request_id, principal, selection) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                lease.token,
                lease.owner,
                lease.description,
                lease.acquired_at,
                lease.expires_at,
                lease.ttl,
                lease.request_id,
                lease.principal,
                lease.asked,
            ),
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

    def lease_by_request_id(self, principal: str, request_id: str) -> Lease | None:
        """The lease an earlier acquire by this principal with this request id produced."""
        row = self._run(
            f"SELECT {_LEASE_COLUMNS} FROM leases WHERE principal = ? AND request_id = ?",
            (principal, request_id),
        ).fetchone()
        return _lease(row) if row else None

    def lease_selection(self, lease_id: int) -> str | None:
        """What the lease's request asked for (kept when it came with a request id)."""
        row = self._run("SELECT selection FROM leases WHERE id = ?", (lease_id,)).fetchone()
        return row[0] if row else None

    def extend(self, lease_id: int, held: HeldBy, expires_at: float | None) -> bool:
        """Move the deadline of a lease `held` allows. False (nothing changed) when it has
        ended, expired, or is not the caller's: this conditional update decides."""
        condition, params = held.condition()
        cursor = self._run(
            f"UPDATE leases SET expires_at = ? WHERE id = ?{condition}",
            [expires_at, lease_id, *params],
        )
        return bool(cursor.rowcount == 1)

    def end_lease(
        self, lease_id: int, now: float, reason: str, held: HeldBy | None = None
    ) -> list[int] | None:
        """End an active lease and free what it holds; returns the freed resource ids, or
        None when no lease was ended (it had ended already, or `held` does not allow it).

        Conditional, so two concurrent ends (a release racing the expiry sweep) end it once:
        the second frees nothing and records nothing.
        """
        condition, params = held.condition() if held is not None else ("", [])
        cursor = self._run(
            "UPDATE leases SET ended_at = ?, end_reason = ?"
            f" WHERE id = ? AND ended_at IS NULL{condition}",
            [now, reason, lease_id, *params],
        )
        if cursor.rowcount != 1:
            return None
        rows = self._run(
            "UPDATE resources SET lease_id = NULL, updated_at = ? WHERE lease_id = ? RETURNING id",
            (now, lease_id),
        ).fetchall()
        return sorted(row[0] for row in rows)

    def end_lease_holding(
        self, resource_id: int, now: float, reason: str
    ) -> tuple[int, list[int]] | None:
        """End whatever lease holds the resource and free all it holds: (its id, the freed
        resource ids), or None when the resource is not held."""
        row = self._run(
            "UPDATE leases SET ended_at = ?, end_reason = ?"
            " WHERE id = (SELECT lease_id FROM resources WHERE id = ?) AND ended_at IS NULL"
            " RETURNING id",
            (now, reason, resource_id),
        ).fetchone()
        if row is None:
            return None
        lease_id: int = row[0]
        freed = self._run(
            "UPDATE resources SET lease_id = NULL, updated_at = ? WHERE lease_id = ? RETURNING id",
            (now, lease_id),
        ).fetchall()
        return lease_id, sorted(r[0] for r in freed)

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
        for chunk, marks in in_chunks(ended):
            held = self._run(
                f"SELECT lease_id, id FROM resources WHERE lease_id IN ({marks})", chunk
            ).fetchall()
            self._run(
                f"UPDATE resources SET lease_id = NULL, updated_at = ? WHERE lease_id IN ({marks})",
                [now, *chunk],
            )
            freed += [(row[0], row[1]) for row in held]
        return sorted(freed)

    def lease_holding(self, resource_id: int, token: str, now: float) -> int | None:
        """The id of the active, unexpired lease holding the resource if `token` is its
        token; None otherwise (wrong token, free, expired)."""
        row = self._run(
            "SELECT l.id FROM resources r JOIN leases l ON l.id = r.lease_id"
            " WHERE r.id = ? AND l.token = ? AND (l.expires_at IS NULL OR l.expires_at > ?)",
            (resource_id, token, now),
        ).fetchone()
        return row[0] if row else None

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

    def holder_tokens(self, resource_ids: Sequence[int]) -> dict[int, str]:
        """The holders' tokens of these resources (free ones are left out). Only for the
        operator's RENTABOT_EXPOSE_LOCK_TOKENS: nothing else shows a token to a non-holder."""
        tokens: dict[int, str] = {}
        for chunk, marks in in_chunks(list(resource_ids)):
            for row in self._run(
                "SELECT r.id, l.token FROM resources r JOIN leases l ON l.id = r.lease_id"
                f" WHERE r.id IN ({marks})",
                chunk,
            ).fetchall():
                tokens[row[0]] = row[1]
        return tokens
