"""The first schema: resources, tags, leases, tickets (the wait queue), events.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create every table of the first version."""
    op.create_table(
        "leases",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("owner", sa.Text()),
        sa.Column("description", sa.Text()),
        sa.Column("acquired_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double()),
        sa.Column("ttl", sa.Double()),
        sa.Column("ended_at", sa.Double()),
        sa.Column("end_reason", sa.String(32)),
        sa.Column("request_id", sa.String(200)),
        sa.PrimaryKeyConstraint("id", name="pk_leases"),
    )
    op.create_index(
        "ix_leases_expires_at",
        "leases",
        ["expires_at"],
        sqlite_where=sa.text("ended_at IS NULL AND expires_at IS NOT NULL"),
        postgresql_where=sa.text("ended_at IS NULL AND expires_at IS NOT NULL"),
    )
    op.create_index(
        "uq_leases_request_id",
        "leases",
        ["request_id"],
        unique=True,
        sqlite_where=sa.text("request_id IS NOT NULL"),
        postgresql_where=sa.text("request_id IS NOT NULL"),
    )
    op.create_table(
        "resources",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("endpoint", sa.Text()),
        sa.Column("tags_text", sa.Text()),
        sa.Column("properties", sa.Text(), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("maintenance", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("retired_at", sa.Double()),
        sa.Column("lease_id", Id),
        sa.Column("fence", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_resources"),
        sa.UniqueConstraint("name", name="uq_resources_name"),
        sa.ForeignKeyConstraint(["lease_id"], ["leases.id"], name="fk_resources_lease_id_leases"),
    )
    op.create_index(
        "ix_resources_lease_id",
        "resources",
        ["lease_id"],
        sqlite_where=sa.text("lease_id IS NOT NULL"),
        postgresql_where=sa.text("lease_id IS NOT NULL"),
    )
    op.create_table(
        "resource_tags",
        sa.Column("tag", sa.String(200), nullable=False),
        sa.Column("resource_id", Id, nullable=False),
        sa.PrimaryKeyConstraint("tag", "resource_id", name="pk_resource_tags"),
        sa.ForeignKeyConstraint(
            ["resource_id"], ["resources.id"], name="fk_resource_tags_resource_id_resources"
        ),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_resource_tags_resource_id", "resource_tags", ["resource_id"])
    op.create_table(
        "tickets",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(200)),
        sa.Column("owner", sa.Text()),
        sa.Column("description", sa.Text()),
        sa.Column("priority", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("resource_ids", sa.Text()),
        sa.Column("tags", sa.Text(), nullable=False, server_default=sa.text("'[]'")),
        sa.Column("ttl", sa.Double()),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("wait_until", sa.Double(), nullable=False),
        sa.Column("last_seen_at", sa.Double(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("ended_at", sa.Double()),
        sa.Column("lease_id", Id),
        sa.PrimaryKeyConstraint("id", name="pk_tickets"),
        sa.ForeignKeyConstraint(["lease_id"], ["leases.id"], name="fk_tickets_lease_id_leases"),
    )
    op.create_index(
        "ix_tickets_waiting",
        "tickets",
        ["priority", "created_at"],
        sqlite_where=sa.text("state = 'waiting'"),
        postgresql_where=sa.text("state = 'waiting'"),
    )
    op.create_index(
        "uq_tickets_request_id",
        "tickets",
        ["request_id"],
        unique=True,
        sqlite_where=sa.text("request_id IS NOT NULL"),
        postgresql_where=sa.text("request_id IS NOT NULL"),
    )
    op.create_table(
        "events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("resource_id", Id),
        sa.Column("lease_id", Id),
        sa.Column("actor", sa.Text()),
        sa.Column("detail", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_resource_id_id", "events", ["resource_id", "id"])


def downgrade() -> None:
    """Drop everything (there is nothing before the first version)."""
    for table in ("events", "tickets", "resource_tags", "resources", "leases"):
        op.drop_table(table)
