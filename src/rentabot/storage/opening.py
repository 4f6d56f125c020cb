"""Opening the database a URL names: an SQLite file, or PostgreSQL for several replicas."""

from __future__ import annotations

from sqlalchemy.engine import make_url

from rentabot.domain.errors import DatabaseUnavailableError
from rentabot.storage.database import Database
from rentabot.storage.sqlite import SqliteDatabase


def open_database(
    url: str,
    *,
    sqlite_synchronous: str = "NORMAL",
    pool_size: int = 10,
    timeout: float = 5.0,
) -> Database:
    """The database at `url`: an SQLite file, or PostgreSQL (`postgresql+psycopg://…`).

    `pool_size` and `timeout` apply to PostgreSQL: the most connections this process opens,
    and the longest it waits to connect, for a free connection, or for one statement.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return SqliteDatabase(parsed, sqlite_synchronous=sqlite_synchronous)
    if backend in ("postgresql", "postgres"):
        from rentabot.storage.postgres import PostgresDatabase

        return PostgresDatabase(parsed, pool_size=pool_size, timeout=timeout)
    raise DatabaseUnavailableError(
        f"unsupported database {backend!r}: rentabot runs on SQLite (sqlite:///path/to/file.db)"
        " or PostgreSQL (postgresql+psycopg://user@host:5432/dbname)"
    )
