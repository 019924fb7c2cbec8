"""Bulk inserts (and their parameter marks) through the DBAPI, below SQLAlchemy Core.

Core's per-row parameter processing cost more than the insert itself on bulk writes, so the
writers call the driver directly. Table and column names passed here are constants of the
schema (or ``text_index.table_name`` of an integer id), never user input.

SQLite gets multi-row ``VALUES`` statements rather than ``executemany``: the driver lets go of
the GIL around every statement step, and getting it back waits for whichever thread holds it
(up to the 5 ms switch interval) — per row with ``executemany``, so under concurrent requests
the writer, holding the writer lock, mostly waited. One step per statement of up to 999
parameters (SQLite's smallest compile-time limit) makes that a few waits per batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

SQLITE_MAX_PARAMETERS = 999


def placeholder(conn: sa.Connection) -> str | None:
    """The driver's positional parameter mark, or None for a style not handled here."""
    style = conn.dialect.paramstyle
    if style == "qmark":
        return "?"
    if style in ("format", "pyformat"):
        return "%s"
    return None


def insert_rows(
    conn: sa.Connection,
    table: sa.Table | str,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) into ``table``. A table given by name
    must be written through a ``qmark`` or ``format`` driver (SQLite, psycopg)."""
    if not rows:
        return
    name = table if isinstance(table, str) else table.name
    names = ", ".join(columns)
    mark = placeholder(conn)
    if mark == "?":
        per_statement = max(1, SQLITE_MAX_PARAMETERS // len(columns))
        one = "(" + ", ".join("?" for _ in columns) + ")"
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            values = ", ".join([one] * len(chunk))
            sql = f"INSERT INTO {name} ({names}) VALUES {values}"  # noqa: S608
            conn.exec_driver_sql(sql, tuple(itertools.chain.from_iterable(chunk)))
    elif mark is not None:
        marks = ", ".join(mark for _ in columns)
        sql = f"INSERT INTO {name} ({names}) VALUES ({marks})"  # noqa: S608
        conn.exec_driver_sql(sql, list(rows))
    elif isinstance(table, sa.Table):
        conn.execute(table.insert(), [dict(zip(columns, r, strict=True)) for r in rows])
    else:
        raise ValueError(f"no bulk insert by table name for paramstyle {conn.dialect.paramstyle!r}")
