"""What every part of the store shares: statements on one transaction's DBAPI cursor.

The SQL is written once for both databases, with qmark placeholders (`?`); the PostgreSQL
store rewrites them (storage/postgres.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

V = TypeVar("V")

#: Values bound in one `IN (...)`: under every driver's limit on parameters.
IN_CHUNK = 500


def in_chunks(values: Sequence[V]) -> Iterator[tuple[list[V], str]]:
    """The values in slices small enough for one `IN (...)`, each with its placeholders."""
    for start in range(0, len(values), IN_CHUNK):
        chunk = list(values[start : start + IN_CHUNK])
        yield chunk, ", ".join("?" * len(chunk))


def dump_json(value: Mapping[str, Any] | Sequence[Any]) -> str:
    """Compact, stable JSON for a column."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class Statements:
    """Runs SQL on one open transaction's cursor; never commits (the service owns the
    transaction, see `Database.transaction`)."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def _run(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cursor.execute(sql, params)

    def _run_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._cursor.executemany(sql, rows)
