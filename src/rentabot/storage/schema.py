"""The database schema. Alembic's migrations create exactly this (a test compares them).

Times are seconds since the epoch (float): one representation on SQLite and PostgreSQL,
compared directly in SQL by the expiry sweep.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: Bigint ids on PostgreSQL, SQLite's rowid alias on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")

leases = Table(
    "leases",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # Compared with the lease found through its resource or its id: no index needed.
    Column("token", String(64), nullable=False),
    Column("owner", Text),
    Column("description", Text),
    Column("acquired_at", Double, nullable=False),
    # None: held until released (the original's behaviour).
    Column("expires_at", Double),
    # The lease time in seconds a renewal extends by when it names none (None: no expiry).
    Column("ttl", Double),
    # None while the lease is active.
    Column("ended_at", Double),
    # released, expired, force_released
    Column("end_reason", String(32)),
    # A client-chosen id making acquire idempotent (retries get the same lease); unique per
    # principal, so nobody can replay someone else's.
    Column("request_id", String(200)),
    # Who asked: a key's or user's name; '' for an anonymous caller.
    Column("principal", Text, nullable=False, server_default=text("''")),
    # What was asked (canonical JSON), when a request id was given: a replay must match it.
    Column("selection", Text),
    # The expiry sweep reads only active leases that can expire, in deadline order.
    Index(
        "ix_leases_expires_at",
        "expires_at",
        sqlite_where=text("ended_at IS NULL AND expires_at IS NOT NULL"),
        postgresql_where=text("ended_at IS NULL AND expires_at IS NOT NULL"),
    ),
    Index(
        "uq_leases_principal_request_id",
        "principal",
        "request_id",
        unique=True,
        sqlite_where=text("request_id IS NOT NULL"),
        postgresql_where=text("request_id IS NOT NULL"),
    ),
    # A principal's own active leases (release by identity, the page's "mine").
    Index(
        "ix_leases_principal",
        "principal",
        sqlite_where=text("ended_at IS NULL"),
        postgresql_where=text("ended_at IS NULL"),
    ),
)

resources = Table(
    "resources",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("description", Text),
    Column("endpoint", Text),
    # The tags as the descriptor wrote them (the original's display string); the
    # resource_tags table is what lookups use.
    Column("tags_text", Text),
    # JSON object of strings handed to the holder.
    Column("properties", Text, nullable=False, server_default=text("'{}'")),
    Column("maintenance", Boolean, nullable=False, server_default=text("false")),
    # Set when the resource left the descriptor; it stays until free, then is hidden.
    Column("retired_at", Double),
    # The active lease holding the resource. Claiming is `UPDATE … WHERE lease_id IS NULL`.
    Column("lease_id", Id, ForeignKey("leases.id")),
    # Last fence issued; every grant increments it, so it strictly increases per resource.
    # While held, it is the holder's fence (each grant's fence is also in its event).
    Column("fence", BigInteger, nullable=False, server_default=text("0")),
    Column("updated_at", Double, nullable=False),
    # Partial: free resources (most of them) cost the index nothing.
    Index(
        "ix_resources_lease_id",
        "lease_id",
        sqlite_where=text("lease_id IS NOT NULL"),
        postgresql_where=text("lease_id IS NOT NULL"),
    ),
)

resource_tags = Table(
    "resource_tags",
    metadata,
    Column("tag", String(200), primary_key=True),
    Column("resource_id", Id, ForeignKey("resources.id"), primary_key=True),
    Index("ix_resource_tags_resource_id", "resource_id"),
    # The primary key is the table: a tag lookup reads one b-tree, and loading 100,000
    # resources writes one less.
    sqlite_with_rowid=False,
)

tickets = Table(
    "tickets",
    metadata,
    # A lock request waiting in the queue (or that did: its state says how it ended).
    Column("id", Id, primary_key=True, autoincrement=True),
    # The secret the client polls with; the lease it is granted gets the same token.
    Column("token", String(64), nullable=False),
    Column("request_id", String(200)),
    Column("owner", Text),
    Column("description", Text),
    Column("priority", Integer, nullable=False, server_default=text("0")),
    Column("count", Integer, nullable=False),
    # JSON list of the explicit resource ids wanted, or NULL to select by tags.
    Column("resource_ids", Text),
    # JSON list of the tags every granted resource must carry.
    Column("tags", Text, nullable=False, server_default=text("'[]'")),
    Column("ttl", Double),
    Column("created_at", Double, nullable=False),
    # The client waits until then at most.
    Column("wait_until", Double, nullable=False),
    # When the client was last known to be waiting (a long-poll in progress counts until
    # its end); past the keep-alive, the ticket leaves the queue.
    Column("last_seen_at", Double, nullable=False),
    # waiting, granted, timed_out, abandoned, cancelled
    Column("state", String(16), nullable=False),
    Column("ended_at", Double),
    Column("lease_id", Id, ForeignKey("leases.id")),
    # Who asked ('' for an anonymous caller), and what (canonical JSON, for replays).
    Column("principal", Text, nullable=False, server_default=text("''")),
    Column("selection", Text),
    # An upstream 1.x reservation's claim window: its lease lasts this long from the grant
    # until claimed (NULL for every other request).
    Column("claim_window", Double),
    # When a reservation was claimed (its lease then runs for the ticket's ttl).
    Column("claimed_at", Double),
    Index(
        "ix_tickets_waiting",
        "priority",
        "created_at",
        sqlite_where=text("state = 'waiting'"),
        postgresql_where=text("state = 'waiting'"),
    ),
    Index(
        "uq_tickets_principal_request_id",
        "principal",
        "request_id",
        unique=True,
        sqlite_where=text("request_id IS NOT NULL"),
        postgresql_where=text("request_id IS NOT NULL"),
    ),
    # Counting a principal's waiting tickets (the per-principal limit).
    Index(
        "ix_tickets_waiting_principal",
        "principal",
        sqlite_where=text("state = 'waiting'"),
        postgresql_where=text("state = 'waiting'"),
    ),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # The principal the key authenticates as; unique among keys not revoked.
    Column("name", String(100), nullable=False),
    # read, lock or admin
    Column("role", String(8), nullable=False),
    # SHA-256 of the key (hex): the key itself is never stored.
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("created_at", Double, nullable=False),
    # Updated at most every few seconds per key, not on every request.
    Column("last_used_at", Double),
    Column("revoked_at", Double),
    Index(
        "uq_api_keys_name",
        "name",
        unique=True,
        sqlite_where=text("revoked_at IS NULL"),
        postgresql_where=text("revoked_at IS NULL"),
    ),
)

sessions = Table(
    "sessions",
    metadata,
    # SHA-256 of the session id the browser holds in its cookie (hex).
    Column("id", String(64), primary_key=True),
    # The key the person signed in with: its name and role are the session's, and revoking
    # it ends the session.
    Column("key_id", Id, ForeignKey("api_keys.id"), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    # Set when the person signs out.
    Column("ended_at", Double),
    Index("ix_sessions_key_id", "key_id"),
)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    # granted, released, expired, force_released, resource_added, resource_updated, …
    Column("kind", String(32), nullable=False),
    Column("resource_id", Id),
    Column("lease_id", Id),
    Column("actor", Text),
    # JSON object with the details of the event.
    Column("detail", Text),
    Index("ix_events_resource_id_id", "resource_id", "id"),
)
