"""BM25 keyword search over record ``content``: one SQLite FTS5 table per collection.

The table is written inside the same transaction as the record rows, so keyword search sees
exactly the committed records. One table per collection (named by the never-reused numeric
id, never by the user's name) keeps BM25's document statistics per collection. The FTS5 rowid is
the record's internal id; an update gets a new internal id, so its old row is deleted with it.
Other databases than SQLite have no FTS5: there every function here is a no-op and keyword
search answers a clear 400 (``available``).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from vecstore.storage.inserts import insert_rows

# Porter stemming on top of Unicode-aware word splitting, accents folded: "Running" finds "run".
TOKENIZE = "porter unicode61 remove_diacritics 2"
MAX_QUERY_TERMS = 64
_IN_CHUNK = 500
_WORD = re.compile(r"\w+", re.UNICODE)


def available(conn: sa.Connection) -> bool:
    return conn.dialect.name == "sqlite"


def table_name(collection_id: int) -> str:
    return f"records_fts_{int(collection_id)}"


def create(conn: sa.Connection, collection_id: int) -> None:
    if available(conn):
        conn.exec_driver_sql(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {table_name(collection_id)}"
            f" USING fts5(content, tokenize='{TOKENIZE}')"
        )


def drop(conn: sa.Connection, collection_id: int) -> None:
    if available(conn):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table_name(collection_id)}")


def add(conn: sa.Connection, collection_id: int, rows: Iterable[tuple[int, str | None]]) -> None:
    """Index (internal id, content) pairs; empty content is not indexed."""
    if not available(conn):
        return
    values = [(iid, content) for iid, content in rows if content]
    insert_rows(conn, table_name(collection_id), ("rowid", "content"), values)


def remove(conn: sa.Connection, collection_id: int, internal_ids: Sequence[int]) -> None:
    if not available(conn) or not internal_ids:
        return
    name = table_name(collection_id)
    for start in range(0, len(internal_ids), _IN_CHUNK):
        chunk = [int(i) for i in internal_ids[start : start + _IN_CHUNK]]
        marks = ", ".join("?" for _ in chunk)
        conn.exec_driver_sql(f"DELETE FROM {name} WHERE rowid IN ({marks})", tuple(chunk))  # noqa: S608


def match_expression(text: str) -> str | None:
    """The user's text as an FTS5 query: its words, each quoted (so no word is ever read as
    FTS5 syntax), joined by OR, as BM25 ranking expects. None when the text has no words."""
    terms = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))[:MAX_QUERY_TERMS]
    if not terms:
        return None
    return " OR ".join(f'"{t}"' for t in terms)


def search(
    conn: sa.Connection, collection_id: int, expression: str, limit: int
) -> list[tuple[int, float]]:
    """The best ``limit`` (internal id, BM25 score) pairs, best first; higher is better."""
    name = table_name(collection_id)
    rows = conn.exec_driver_sql(
        f"SELECT rowid, -bm25({name}) FROM {name} WHERE {name} MATCH ?"  # noqa: S608
        " ORDER BY rank, rowid LIMIT ?",
        (expression, limit),
    ).all()
    return [(int(r[0]), float(r[1])) for r in rows]


def scores(
    conn: sa.Connection, collection_id: int, expression: str, internal_ids: Sequence[int]
) -> dict[int, float]:
    """BM25 scores of the given records (absent: no query term in their content, score 0)."""
    name = table_name(collection_id)
    out: dict[int, float] = {}
    for start in range(0, len(internal_ids), _IN_CHUNK):
        chunk = [int(i) for i in internal_ids[start : start + _IN_CHUNK]]
        marks = ", ".join("?" for _ in chunk)
        rows = conn.exec_driver_sql(
            f"SELECT rowid, -bm25({name}) FROM {name}"  # noqa: S608
            f" WHERE {name} MATCH ? AND rowid IN ({marks})",
            (expression, *chunk),
        ).all()
        out.update((int(r[0]), float(r[1])) for r in rows)
    return out


def score_texts(query: str, texts: Sequence[str]) -> list[float]:
    """BM25 of ad-hoc texts (a rerank request's documents) against a query, with the same
    tokenizer and formula as the collections' keyword index: an in-memory FTS5 table that
    lives for this call only. 0 for a text with none of the query's words."""
    expression = match_expression(query)
    if expression is None or not texts:
        return [0.0] * len(texts)
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"CREATE VIRTUAL TABLE docs USING fts5(content, tokenize='{TOKENIZE}')")
        conn.executemany("INSERT INTO docs (rowid, content) VALUES (?, ?)", list(enumerate(texts)))
        rows = conn.execute(
            "SELECT rowid, -bm25(docs) FROM docs WHERE docs MATCH ?", (expression,)
        ).fetchall()
    finally:
        conn.close()
    out = [0.0] * len(texts)
    for rowid, score in rows:
        out[int(rowid)] = float(score)
    return out
