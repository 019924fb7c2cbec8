"""SQLAlchemy Core tables. SQLite (or PostgreSQL) is the source of truth, vectors included.

Alembic migrations in ``migrations/`` create these; this module is their single description.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

collections = sa.Table(
    "collections",
    metadata,
    # AUTOINCREMENT: an id is never reused, so a dropped collection's index file can never be
    # mistaken for a new collection's.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("distance_metric", sa.String(16), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("index_params", sa.Text, nullable=False),
    sa.Column("embedding_model", sa.String(200), nullable=True),
    # Internal ids (FAISS ids) are allocated from this counter and never reused: a tombstoned id
    # that is still inside an index file must never come back to life with another vector.
    sa.Column("next_internal_id", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
    sqlite_autoincrement=True,
)

records = sa.Table(
    "records",
    metadata,
    sa.Column("collection_id", sa.Integer, primary_key=True),
    sa.Column("internal_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("external_id", sa.String(512), nullable=False),
    sa.Column("metadata", sa.Text, nullable=False, server_default="{}"),
    sa.Column("content", sa.Text, nullable=True),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.UniqueConstraint("collection_id", "external_id", name="uq_records_external_id"),
)

# Vectors live beside their records, not in them: a filter or a scroll then reads only the small
# metadata rows instead of paging every vector blob through the cache.
record_vectors = sa.Table(
    "record_vectors",
    metadata,
    sa.Column("collection_id", sa.Integer, primary_key=True),
    sa.Column("internal_id", sa.BigInteger, primary_key=True, autoincrement=False),
    # raw little-endian float32, exactly as written
    sa.Column("vector", sa.LargeBinary, nullable=False),
)

changes = sa.Table(
    "changes",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("collection_id", sa.Integer, nullable=False),
    sa.Column("internal_id", sa.BigInteger, nullable=False),
    # "upsert" (internal_id became live) or "delete" (internal_id became a tombstone)
    sa.Column("op", sa.String(8), nullable=False),
    sa.Index("ix_changes_collection_seq", "collection_id", "seq"),
    sqlite_autoincrement=True,
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("collections", sa.Text, nullable=True),
    sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("expires_at", sa.String(40), nullable=True),
    sa.Column("last_used_at", sa.String(40), nullable=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("rate_limit_per_minute", sa.Integer, nullable=True),
)

key_usage = sa.Table(
    "key_usage",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("hour", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("route", sa.String(200), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)
