"""Group commit: writes of one event-loop iteration share a transaction, each in a savepoint."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from rentabot.domain.errors import DatabaseUnavailableError, InvalidRequestError
from rentabot.domain.model import ResourceSpec
from rentabot.storage.database import MAX_BATCH, Database
from rentabot.storage.store import Store
from tests.support import execute, rows

pytestmark = pytest.mark.anyio


def _event_kinds(database: Database) -> list[str]:
    return [row[0] for row in rows(database, "SELECT kind FROM events ORDER BY id")]


def _actors(database: Database) -> list[str | None]:
    return [row[0] for row in rows(database, "SELECT actor FROM events ORDER BY id")]


def _write_event(kind: str, actor: str | None = None) -> Callable[[Store], str]:
    def operation(store: Store) -> str:
        store.add_event(1.0, kind, actor=actor)
        return kind

    return operation


def _write_then(last: Callable[[Store], object]) -> Callable[[Store], object]:
    """An operation that writes an event ("undone"), then does `last`."""

    def operation(store: Store) -> object:
        store.add_event(1.0, "undone")
        return last(store)

    return operation


async def _in_one_group(database: Database, bad: Callable[[Store], object]) -> list[object]:
    """Run a good write, `bad`, and another good write in one group; their outcomes."""
    outcomes = await asyncio.gather(
        database.write(_write_event("a")),
        database.write(bad),
        database.write(_write_event("b")),
        return_exceptions=True,
    )
    return list(outcomes)


def _count_transactions(database: Database, monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """Record every write transaction `database` begins (one entry each)."""
    begun: list[None] = []
    transaction = database.transaction

    @contextmanager
    def counted() -> Iterator[Store]:
        begun.append(None)
        with transaction() as store:
            yield store

    monkeypatch.setattr(database, "transaction", counted)
    return begun


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


async def test_a_crashing_operation_fails_only_its_own_caller(database: Database) -> None:
    """A bug in one operation undoes its writes and fails its caller; the others commit."""
    await _clean(database)
    outcomes = await _in_one_group(database, _write_then_crash)
    assert outcomes[0] == "a"
    assert isinstance(outcomes[1], ZeroDivisionError)
    assert outcomes[2] == "b"
    assert _event_kinds(database) == ["a", "b"]
    # The next group works too.
    assert await database.write(_write_event("c")) == "c"
    assert _event_kinds(database) == ["a", "b", "c"]


async def test_a_lone_surrogate_fails_only_its_own_caller(database: Database) -> None:
    """A string the driver cannot encode fails its own write, not the group, as itself."""
    await _clean(database)
    outcomes = await _in_one_group(database, _write_then(_write_event("bad", actor="\ud800")))
    assert outcomes[0] == "a"
    assert isinstance(outcomes[1], UnicodeEncodeError), repr(outcomes[1])
    assert outcomes[2] == "b"
    assert _event_kinds(database) == ["a", "b"]
    assert await database.write(_write_event("c")) == "c"
    assert _event_kinds(database) == ["a", "b", "c"]


async def test_a_nul_byte_fails_only_its_own_caller_where_it_cannot_be_stored(
    database: Database,
) -> None:
    """SQLite stores a NUL; on PostgreSQL it fails its own write as a data error, alone."""
    await _clean(database)
    outcomes = await _in_one_group(database, _write_then(_write_event("nul", actor="a\x00b")))
    assert outcomes[0] == "a"
    assert outcomes[2] == "b"
    if database.backend == "sqlite":
        assert outcomes[1] == "nul"
        assert _event_kinds(database) == ["a", "undone", "nul", "b"]
        assert _actors(database)[2] == "a\x00b"
    else:
        import psycopg

        assert isinstance(outcomes[1], psycopg.DataError), repr(outcomes[1])
        assert _event_kinds(database) == ["a", "b"]
    assert await database.write(_write_event("c")) == "c"
    assert _event_kinds(database)[-1] == "c"


async def test_a_constraint_violation_fails_only_its_own_caller(database: Database) -> None:
    """A statement the database refuses (on PostgreSQL: an aborted transaction) fails alone."""
    await _clean(database)
    duplicate = _write_then(
        lambda store: store.insert_resources([ResourceSpec("coffee-machine")], 1)
    )
    outcomes = await _in_one_group(database, duplicate)
    assert outcomes[0] == "a"
    assert outcomes[2] == "b"
    if database.backend == "sqlite":
        assert isinstance(outcomes[1], sqlite3.IntegrityError), repr(outcomes[1])
    else:
        import psycopg

        assert isinstance(outcomes[1], psycopg.IntegrityError), repr(outcomes[1])
    assert _event_kinds(database) == ["a", "b"]
    assert await database.write(_write_event("c")) == "c"
    assert _event_kinds(database) == ["a", "b", "c"]


def _close_own_savepoint_then_crash(store: Store) -> None:
    store.rollback_to_savepoint()  # closes the savepoint the group opened for it
    raise ZeroDivisionError("a bug")


async def test_a_savepoint_that_cannot_be_rolled_back_to_fails_the_whole_group(
    database: Database,
) -> None:
    """When undoing one operation fails, nothing of its group commits and every caller fails."""
    await _clean(database)
    outcomes = await _in_one_group(database, _write_then(_close_own_savepoint_then_crash))
    assert all(isinstance(o, DatabaseUnavailableError) for o in outcomes), outcomes
    assert _event_kinds(database) == []
    assert await database.write(_write_event("c")) == "c"
    assert _event_kinds(database) == ["c"]


def _defer_a_violation_to_commit(database: Database) -> Callable[[Store], object]:
    """An operation whose writes succeed and make the COMMIT fail, for real."""
    if database.backend == "postgresql":
        execute(
            database,
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql"
            " AS 'BEGIN RAISE EXCEPTION ''refused at commit''; END'",
        )
        execute(
            database,
            "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON events"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
            " WHEN (NEW.kind = 'refused at commit') EXECUTE FUNCTION refuse()",
        )
        return _write_event("refused at commit")

    def operation(store: Store) -> None:
        # SQLite has no deferred triggers: defer the foreign keys, then break one.
        store._cursor.execute("PRAGMA defer_foreign_keys = ON")
        store._cursor.execute(
            "UPDATE resources SET lease_id = 999999 WHERE name = 'coffee-machine'"
        )

    return operation


async def test_a_failed_commit_fails_the_whole_group(database: Database) -> None:
    """A COMMIT the database refuses fails every caller of the group; the next group works."""
    await _clean(database)
    outcomes = await _in_one_group(database, _defer_a_violation_to_commit(database))
    assert all(isinstance(o, DatabaseUnavailableError) for o in outcomes), outcomes
    assert _event_kinds(database) == []
    assert await database.write(_write_event("c")) == "c"
    assert _event_kinds(database) == ["c"]


async def test_the_writes_of_one_loop_iteration_share_one_transaction(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes requested in the same event-loop iteration run in one transaction."""
    await _clean(database)
    begun = _count_transactions(database, monkeypatch)
    kinds = [f"k{i}" for i in range(10)]
    assert await asyncio.gather(*(database.write(_write_event(k)) for k in kinds)) == kinds
    assert len(begun) == 1
    assert _event_kinds(database) == kinds


async def test_more_writes_than_a_batch_holds_all_commit(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_BATCH pending writes, the rest go in the next groups; none is lost."""
    await _clean(database)
    begun = _count_transactions(database, monkeypatch)
    kinds = [f"k{i}" for i in range(150)]
    results = await asyncio.gather(*(database.write(_write_event(k)) for k in kinds))
    assert list(results) == kinds
    assert _event_kinds(database) == kinds
    # Exact on PostgreSQL too: all 150 are pending before the first group begins, and
    # nothing else writes while they run.
    assert len(begun) == math.ceil(len(kinds) / MAX_BATCH) == 3
