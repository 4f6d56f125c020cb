"""Alembic's migrations produce exactly the schema the code declares."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from rentabot.storage import migrate
from rentabot.storage.opening import open_database
from rentabot.storage.schema import metadata


def test_upgrade_from_empty_matches_the_declared_schema(database_url: str) -> None:
    """After `upgrade`, autogenerate finds no difference between database and metadata."""
    database = open_database(database_url)
    assert migrate.upgrade(database) == (None, migrate.head_revision(database))
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    database.dispose()
    assert differences == []


def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    """A second upgrade finds the database current and changes nothing."""
    database = open_database(database_url)
    head = migrate.upgrade(database)[1]
    assert migrate.upgrade(database) == (head, head)
    database.dispose()


#: Id columns are BIGINT on PostgreSQL and INTEGER on SQLite, where INTEGER holds 64 bits and
#: makes the primary key the rowid (the `Id` type of migration 0001): the same range on both.
def _id_type(column: str, generic: str, dialect: str) -> str:
    is_id = column == "id" or column.endswith("_id")
    return "Integer" if dialect == "postgresql" and is_id and generic == "BigInteger" else generic


def _schema(url: str) -> dict[str, object]:
    """Tables with their columns (name, generic type, nullable), keys and indexes."""
    database = open_database(url)
    try:
        with database.engine.connect() as connection:
            inspector = inspect(connection)
            schema: dict[str, object] = {}
            for table in sorted(inspector.get_table_names()):
                schema[table] = {
                    "columns": [
                        (
                            c["name"],
                            _id_type(
                                c["name"],
                                type(c["type"].as_generic()).__name__,
                                connection.dialect.name,
                            ),
                            c["nullable"],
                        )
                        for c in inspector.get_columns(table)
                    ],
                    "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
                    "foreign keys": sorted(
                        (f["name"], tuple(f["constrained_columns"]), f["referred_table"])
                        for f in inspector.get_foreign_keys(table)
                    ),
                    "indexes": sorted(
                        (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                        for i in inspector.get_indexes(table)
                        # PostgreSQL lists a unique constraint's index too: it is under "unique".
                        if not i.get("duplicates_constraint")
                    ),
                    "unique": sorted(
                        (u["name"], tuple(u["column_names"]))
                        for u in inspector.get_unique_constraints(table)
                    ),
                }
            return schema
    finally:
        database.dispose()


def test_sqlite_and_postgresql_get_the_same_schema(tmp_path: Path, postgres_url: str) -> None:
    """The same migrations give both databases the same tables, columns, keys and indexes."""
    sqlite_url = f"sqlite:///{tmp_path / 'compare.db'}"
    for url in (sqlite_url, postgres_url):
        database = open_database(url)
        migrate.upgrade(database)
        database.dispose()
    on_sqlite, on_postgresql = _schema(sqlite_url), _schema(postgres_url)
    assert set(on_sqlite) == {"alembic_version", *metadata.tables}
    assert on_postgresql == on_sqlite
