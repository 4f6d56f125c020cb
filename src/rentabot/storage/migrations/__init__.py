"""Alembic migrations of rentabot's schema."""
