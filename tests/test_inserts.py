"""``storage.inserts.insert_rows``: every row arrives, in order, across statement boundaries."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from vecstore.storage.inserts import SQLITE_MAX_PARAMETERS, insert_rows

_md = sa.MetaData()
_wide = sa.Table(
    "wide",
    _md,
    sa.Column("a", sa.Integer),
    sa.Column("b", sa.String),
    sa.Column("c", sa.LargeBinary),
)


@pytest.mark.parametrize(
    "count",
    [0, 1, SQLITE_MAX_PARAMETERS // 3, SQLITE_MAX_PARAMETERS // 3 + 1, 1000, 2 * 333 + 5],
)
def test_every_row_arrives_in_order(count: int) -> None:
    engine = sa.create_engine("sqlite://")
    rows = [(i, f"s{i}", bytes([i % 256]) * 3) for i in range(count)]
    with engine.begin() as conn:
        _md.create_all(conn)
        insert_rows(conn, _wide, ("a", "b", "c"), rows)
        got = conn.exec_driver_sql("SELECT a, b, c FROM wide ORDER BY rowid").fetchall()
    assert [tuple(r) for r in got] == rows


def test_a_table_by_name_and_a_single_column() -> None:
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE named (v INTEGER)")
        insert_rows(conn, "named", ("v",), [(i,) for i in range(SQLITE_MAX_PARAMETERS + 2)])
        got = conn.exec_driver_sql("SELECT v FROM named ORDER BY rowid").fetchall()
    assert [r[0] for r in got] == list(range(SQLITE_MAX_PARAMETERS + 2))


def test_a_failing_row_fails_the_whole_call() -> None:
    engine = sa.create_engine("sqlite://")
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE uniq (v INTEGER UNIQUE)")
        conn.commit()
        with pytest.raises(sa.exc.IntegrityError), conn.begin():
            insert_rows(conn, "uniq", ("v",), [(1,), (2,), (1,)])
        assert conn.exec_driver_sql("SELECT count(*) FROM uniq").scalar() == 0


class _Recording:
    """A connection for a ``format``-paramstyle driver (psycopg) that records what it is sent."""

    class dialect:  # mirrors sa.Connection.dialect
        paramstyle = "format"

    def __init__(self, rows: list[tuple[object, ...]] | None = None) -> None:
        self.sent: list[tuple[str, object]] = []
        self.rows = rows or []

    def exec_driver_sql(self, sql: str, params: object) -> list[tuple[object, ...]]:
        self.sent.append((sql, params))
        return self.rows


def test_a_format_driver_gets_one_executemany_with_percent_marks() -> None:
    conn: Any = _Recording()
    insert_rows(conn, _wide, ("a", "b", "c"), [(1, "x", b"1"), (2, "y", b"2")])
    assert conn.sent == [
        ("INSERT INTO wide (a, b, c) VALUES (%s, %s, %s)", [(1, "x", b"1"), (2, "y", b"2")])
    ]


def test_the_existing_id_lookup_on_a_format_driver() -> None:
    from vecstore.storage.engine import StorageEngine

    conn: Any = _Recording(rows=[("b", 7, '{"k": 1}', None, 2)])
    found = StorageEngine._existing(None, conn, 3, ["a", "b", "a"])  # type: ignore[arg-type]
    assert conn.sent == [
        (
            "SELECT external_id, internal_id, metadata, content, version FROM records"
            " WHERE collection_id = %s AND external_id IN (%s, %s)",
            (3, "a", "b"),
        )
    ]
    assert found == {"b": (7, '{"k": 1}', None, 2)}
