"""Reservations: upstream 1.x's reservations are tickets with a claim window.

A reservation waits in the same queue as every other request; granted, its lease lasts the
claim window until it is claimed, when it runs for the reservation's ttl.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Give tickets a claim window and a claim time (NULL for ordinary requests)."""
    op.add_column("tickets", sa.Column("claim_window", sa.Double()))
    op.add_column("tickets", sa.Column("claimed_at", sa.Double()))


def downgrade() -> None:
    """Back to tickets without reservations."""
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("claimed_at")
        batch.drop_column("claim_window")
