"""Group commit: writes of one event-loop iteration share a transaction, each in a savepoint."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from rentabot.domain.errors import InvalidRequestError
from rentabot.storage.database import Database
from rentabot.storage.store import Store
from tests.support import execute, rows

pytestmark = pytest.mark.anyio


def _event_kinds(database: Database) -> list[str]:
    return [row[0] for row in rows(database, "SELECT kind FROM events ORDER BY id")]


def _write_event(kind: str) -> Callable[[Store], str]:
    def operation(store: Store) -> str:
        store.add_event(1.0, kind)
        return kind

    return operation


def _write_then_refuse(store: Store) -> None:
    store.add_event(1.0, "refused")
    raise InvalidRequestError("no")


def _write_then_crash(store: Store) -> None:
    store.add_event(1.0, "crashed")
    raise ZeroDivisionError("a bug")


async def _clean(database: Database) -> None:
    # The example database starts with inventory events; start from none.
    execute(database, "DELETE FROM events")


async def test_a_refused_operation_undoes_only_its_own_writes(database: Database) -> None:
    """A domain error rolls back to its savepoint; the rest of the group commits."""
    await _clean(database)
    outcomes = await asyncio.gather(
        database.write(_write_event("a")),
        database.write(_write_then_refuse),
        database.write(_write_event("b")),
        return_exceptions=True,
    )
    assert outcomes[0] == "a"
    assert outcomes[2] == "b"
    assert isinstance(outcomes[1], InvalidRequestError)
    assert _event_kinds(database) == ["a", "b"]


async def test_an_unexpected_error_fails_the_whole_group(database: Database) -> None:
    """A bug in one operation rolls the group back and every caller hears of it."""
    await _clean(database)
    outcomes = await asyncio.gather(
        database.write(_write_event("a")),
        database.write(_write_then_crash),
        return_exceptions=True,
    )
    assert all(isinstance(o, ZeroDivisionError) for o in outcomes)
    assert _event_kinds(database) == []
    # The next group works again.
    assert await database.write(_write_event("c")) == "c"
    assert _event_kinds(database) == ["c"]


async def test_more_writes_than_a_batch_holds_all_commit(database: Database) -> None:
    """Past MAX_BATCH pending writes, the rest go in the next group; none is lost."""
    await _clean(database)
    kinds = [f"k{i}" for i in range(150)]
    results = await asyncio.gather(*(database.write(_write_event(k)) for k in kinds))
    assert list(results) == kinds
    assert _event_kinds(database) == kinds
