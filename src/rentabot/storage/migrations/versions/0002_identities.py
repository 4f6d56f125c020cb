"""Identities: API keys, sessions, and the principal of every lease and ticket.

Request ids become unique per principal (they were global, so anyone could replay anyone's);
leases and tickets record what was asked, so a replay with another selection is refused.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Add keys and sessions; give leases and tickets their principal and selection."""
    for table in ("leases", "tickets"):
        op.add_column(
            table, sa.Column("principal", sa.Text(), nullable=False, server_default=sa.text("''"))
        )
        op.add_column(table, sa.Column("selection", sa.Text()))
        op.drop_index(f"uq_{table}_request_id", table_name=table)
        op.create_index(
            f"uq_{table}_principal_request_id",
            table,
            ["principal", "request_id"],
            unique=True,
            sqlite_where=sa.text("request_id IS NOT NULL"),
            postgresql_where=sa.text("request_id IS NOT NULL"),
        )
    op.create_index(
        "ix_leases_principal",
        "leases",
        ["principal"],
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    )
    op.create_index(
        "ix_tickets_waiting_principal",
        "tickets",
        ["principal"],
        sqlite_where=sa.text("state = 'waiting'"),
        postgresql_where=sa.text("state = 'waiting'"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("last_used_at", sa.Double()),
        sa.Column("revoked_at", sa.Double()),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("secret_hash", name="uq_api_keys_secret_hash"),
    )
    op.create_index(
        "uq_api_keys_name",
        "api_keys",
        ["name"],
        unique=True,
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("key_id", Id, nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("ended_at", sa.Double()),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], name="fk_sessions_key_id_api_keys"),
    )
    op.create_index("ix_sessions_key_id", "sessions", ["key_id"])


def downgrade() -> None:
    """Back to global request ids, without keys or sessions."""
    op.drop_table("sessions")
    op.drop_table("api_keys")
    op.drop_index("ix_tickets_waiting_principal", table_name="tickets")
    op.drop_index("ix_leases_principal", table_name="leases")
    for table in ("leases", "tickets"):
        op.drop_index(f"uq_{table}_principal_request_id", table_name=table)
        op.create_index(
            f"uq_{table}_request_id",
            table,
            ["request_id"],
            unique=True,
            sqlite_where=sa.text("request_id IS NOT NULL"),
            postgresql_where=sa.text("request_id IS NOT NULL"),
        )
        with op.batch_alter_table(table) as batch:
            batch.drop_column("selection")
            batch.drop_column("principal")
