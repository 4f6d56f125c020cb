"""The SQL of identities: API keys (stored as hashes only) and sign-in sessions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rentabot.domain.identity import ApiKey, Role
from rentabot.storage.sql import Statements

_KEY_COLUMNS = "id, name, role, created_at, last_used_at, revoked_at"


def _key(row: Sequence[Any]) -> ApiKey:
    return ApiKey(row[0], row[1], Role.parse(row[2]), row[3], row[4], row[5])


class KeyRecords(Statements):
    """API keys and sessions."""

    def insert_key(self, name: str, role: str, secret_hash: str, now: float) -> int | None:
        """Record a new key; None when a key of that name exists and is not revoked (this
        conditional insert decides; the unique index is the backstop)."""
        row = self._run(
            "INSERT INTO api_keys (name, role, secret_hash, created_at)"
            " SELECT ?, ?, ?, ? WHERE NOT EXISTS"
            " (SELECT 1 FROM api_keys WHERE name = ? AND revoked_at IS NULL) RETURNING id",
            (name, role, secret_hash, now, name),
        ).fetchone()
        return int(row[0]) if row else None

    def keys(self, *, revoked: bool = False) -> list[ApiKey]:
        """Every key not revoked (with `revoked`, those too), by name then age."""
        where = "" if revoked else " WHERE revoked_at IS NULL"
        rows = self._run(f"SELECT {_KEY_COLUMNS} FROM api_keys{where} ORDER BY name, id").fetchall()
        return [_key(row) for row in rows]

    def key_by_hash(self, secret_hash: str) -> ApiKey | None:
        """The key with this hash, revoked or not."""
        row = self._run(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE secret_hash = ?", (secret_hash,)
        ).fetchone()
        return _key(row) if row else None

    def revoke_key(self, name: str, now: float) -> bool:
        """Revoke the key of that name; False when there is none not revoked already."""
        cursor = self._run(
            "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
            (now, name),
        )
        return bool(cursor.rowcount == 1)

    def mark_keys_used(self, uses: Sequence[tuple[int, float]]) -> None:
        """Record when keys were last used: (key id, time) pairs; never moves a time back."""
        self._run_many(
            "UPDATE api_keys SET last_used_at = ? WHERE id = ?"
            " AND (last_used_at IS NULL OR last_used_at < ?)",
            ((at, key_id, at) for key_id, at in uses),
        )

    def admin_key_count(self) -> int:
        """How many admin keys are not revoked."""
        row = self._run(
            "SELECT COUNT(*) FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL"
        ).fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ sessions

    def insert_session(self, session_hash: str, key_id: int, now: float, expires_at: float) -> None:
        """Record a sign-in."""
        self._run(
            "INSERT INTO sessions (id, key_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (session_hash, key_id, now, expires_at),
        )

    def session_key(self, session_hash: str, now: float) -> tuple[ApiKey, float] | None:
        """The key a live session was opened with, and the session's expiry; None when the
        session is unknown, ended, expired, or its key is revoked."""
        row = self._run(
            "SELECT k.id, k.name, k.role, k.created_at, k.last_used_at, k.revoked_at,"
            " s.expires_at FROM sessions s JOIN api_keys k ON k.id = s.key_id"
            " WHERE s.id = ? AND s.ended_at IS NULL AND s.expires_at > ?"
            " AND k.revoked_at IS NULL",
            (session_hash, now),
        ).fetchone()
        return (_key(row[:6]), float(row[6])) if row else None

    def end_session(self, session_hash: str, now: float) -> bool:
        """Sign out: end the session; False when it was not live."""
        cursor = self._run(
            "UPDATE sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL",
            (now, session_hash),
        )
        return bool(cursor.rowcount == 1)

    def delete_sessions_ended_before(self, before: float) -> None:
        """Forget sessions that ended or expired before `before` (housekeeping)."""
        self._run(
            "DELETE FROM sessions WHERE expires_at < ? OR (ended_at IS NOT NULL AND ended_at < ?)",
            (before, before),
        )
