"""keyword index: one FTS5 table per collection over records.content, back-filled

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

The tables are named by collection id (``records_fts_<id>``); the application creates one with
each new collection (vecstore.storage.text_index). This revision gives existing collections
theirs. FTS5 is SQLite's: on other databases the revision does nothing.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TOKENIZE = "porter unicode61 remove_diacritics 2"


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    ids = [int(r[0]) for r in conn.execute(sa.text("SELECT id FROM collections"))]
    for cid in ids:
        name = f"records_fts_{cid}"
        conn.exec_driver_sql(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {name} USING fts5(content, tokenize='{TOKENIZE}')"
        )
        conn.exec_driver_sql(
            # name is built from an integer id, never from user input
            f"INSERT INTO {name} (rowid, content) SELECT internal_id, content"  # noqa: S608
            " FROM records WHERE collection_id = ? AND content IS NOT NULL AND content != ''",
            (cid,),
        )


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    for cid in [int(r[0]) for r in conn.execute(sa.text("SELECT id FROM collections"))]:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS records_fts_{cid}")
