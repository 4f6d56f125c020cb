"""Persistence: SQLAlchemy schema, Alembic migrations, and the SQL the service runs."""
