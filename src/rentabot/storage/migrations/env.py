"""Alembic environment: migrates the connection `rentabot.storage.migrate` hands over."""

from __future__ import annotations

from alembic import context

from rentabot.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `rentabot db upgrade` runs migrations
    raise RuntimeError("run migrations with `rentabot db upgrade`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
