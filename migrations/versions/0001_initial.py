"""initial schema: collections, records, record_vectors, changes, api_keys, key_usage

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("distance_metric", sa.String(16), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("index_params", sa.Text, nullable=False),
        sa.Column("embedding_model", sa.String(200), nullable=True),
        sa.Column("next_internal_id", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "records",
        sa.Column("collection_id", sa.Integer, primary_key=True),
        sa.Column("internal_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("external_id", sa.String(512), nullable=False),
        sa.Column("metadata", sa.Text, nullable=False, server_default="{}"),
        sa.Column("content", sa.Text, nullable=True),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.UniqueConstraint("collection_id", "external_id", name="uq_records_external_id"),
    )
    op.create_table(
        "record_vectors",
        sa.Column("collection_id", sa.Integer, primary_key=True),
        sa.Column("internal_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "changes",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("collection_id", sa.Integer, nullable=False),
        sa.Column("internal_id", sa.BigInteger, nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_changes_collection_seq", "changes", ["collection_id", "seq"])
    op.create_table(
        "api_keys",
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
    op.create_table(
        "key_usage",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("hour", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("route", sa.String(200), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("key_usage")
    op.drop_table("api_keys")
    op.drop_index("ix_changes_collection_seq", table_name="changes")
    op.drop_table("changes")
    op.drop_table("record_vectors")
    op.drop_table("records")
    op.drop_table("collections")
