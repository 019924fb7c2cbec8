"""Writes that could leave memory disagreeing with the database, and inputs at numeric edges."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from litestar import Litestar
from litestar.testing import TestClient

from tests.oracles import assert_error
from vecstore.domain import IndexParams, RecordWrite
from vecstore.errors import Conflict
from vecstore.storage.engine import EngineConfig, StorageEngine


def error_type(response: Any, status: int) -> str:
    kind: str = assert_error(response, status)["type"]
    return kind


def test_metadata_integers_beyond_2_53_are_refused_and_nothing_is_written(
    client: TestClient[Litestar], make_collection: Any
) -> None:
    # Regression: a 400-digit integer was committed, then broke the in-memory index (500) and
    # the collection's reload after a restart.
    make_collection("m", dim=2)
    for value in (10**400, 2**53 + 1, -(2**53) - 1):
        r = client.post(
            "/v1/collections/m/upsert",
            json={"external_id": "a", "vector": [1, 0], "metadata": {"n": {"deep": [value]}}},
        )
        assert error_type(r, 400) == "invalid_metadata"
    assert client.post("/v1/collections/m/count", json={}).json()["data"]["count"] == 0
    ok = {"external_id": "a", "vector": [1, 0], "metadata": {"n": 2**53}}
    assert client.post("/v1/collections/m/upsert", json=ok).status_code == 200
    count = client.post("/v1/collections/m/count", json={"filters": {"n": 2**53}})
    assert count.json()["data"]["count"] == 1


@pytest.mark.parametrize("operand", [10**400, 2**53 + 1])
def test_filter_numbers_beyond_2_53_are_refused(
    client: TestClient[Litestar], make_collection: Any, operand: int
) -> None:
    make_collection("m", dim=2)
    r = client.post("/v1/collections/m/count", json={"filters": {"n": {"$gt": operand}}})
    assert error_type(r, 400) == "invalid_filter"


def test_exact_l2_search_keeps_rows_whose_distance_overflows(
    client: TestClient[Litestar], make_collection: Any
) -> None:
    # Regression: rows scored -inf were taken for dead rows and dropped from exact results.
    make_collection("far", dim=2, distance_metric="l2")
    for ext, vec in (("a", [3e38, 3e38]), ("b", [-3e38, -3e38]), ("c", [1, 1])):
        client.post("/v1/collections/far/upsert", json={"external_id": ext, "vector": vec})
    r = client.post("/v1/collections/far/search", json={"vector": [0, 0], "k": 3, "exact": True})
    ids = [h["external_id"] for h in r.json()["data"]["results"]]
    assert len(ids) == 3
    assert ids[0] == "c"


def test_a_path_id_that_is_not_utf8_is_a_400(
    client: TestClient[Litestar], make_collection: Any
) -> None:
    make_collection("p", dim=2)
    assert error_type(client.get("/v1/collections/p/vectors/%FF"), 400) == "invalid_external_id"


def test_an_import_line_over_the_limit_is_413(
    client: TestClient[Litestar], make_collection: Any
) -> None:
    make_collection("imp", dim=2)
    body = b'{"external_id": "a", "vector": [1, 0], "content": "' + b"x" * (3 * 2**20) + b'"}\n'
    r = client.post("/v1/collections/imp/import", content=body)
    assert error_type(r, 413) == "payload_too_large"


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    eng = StorageEngine(
        EngineConfig(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", index_dir=tmp_path / "ix")
    )
    eng.open(start_indexer=False)
    yield eng
    eng.close()


def test_an_upsert_validated_against_a_dropped_collection_writes_nothing(engine: Any) -> None:
    # Regression: a drop and re-create between validation and the write committed a vector of
    # the old dimension into the new collection, which then could not load.
    old = engine.create_collection(
        name="a", dim=2, metric="l2", description=None, params=IndexParams(), embedding_model=None
    )
    engine.drop_collection("a")
    engine.create_collection(
        name="a", dim=4, metric="l2", description=None, params=IndexParams(), embedding_model=None
    )
    write = RecordWrite("x", np.ones(2, dtype=np.float32), {})
    with pytest.raises(Conflict):
        engine.upsert("a", [write], collection_id=old.id)
    with pytest.raises(Conflict):
        engine.upsert("a", [write])  # wrong dimension, whatever the caller checked
    assert engine.count("a", None) == 0
    assert engine.fetch("a", ["x"], True) == {}


def test_a_failed_in_memory_update_is_repaired_from_the_database(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.create_collection(
        name="a", dim=2, metric="ip", description=None, params=IndexParams(), embedding_model=None
    )
    engine.upsert("a", [RecordWrite("x", np.array([1, 0], dtype=np.float32), {"v": 1})])
    broken = engine.runtime("a")

    def fail(**_changes: Any) -> None:
        raise RuntimeError("simulated failure after commit")

    monkeypatch.setattr(broken, "apply_write", fail)
    engine.upsert("a", [RecordWrite("y", np.array([0, 1], dtype=np.float32), {"v": 2})])
    repaired = engine.runtime("a")
    assert repaired is not broken
    assert engine.count("a", None) == 2
    hits = repaired.search(np.array([0, 1], dtype=np.float32), 2, exact=True)
    assert [h.external_id for h in hits] == ["y", "x"]
    assert hits[0].metadata == {"v": 2}


def test_an_export_that_fails_midway_is_not_a_complete_200(
    app: Litestar,
    client: TestClient[Litestar],
    make_collection: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Regression: Litestar's sync-iterator wrapper took a ValueError for the end of the stream,
    # so a failing export looked like a complete, shorter one.
    make_collection("e", dim=2)
    client.post("/v1/collections/e/upsert", json={"external_id": "a", "vector": [1, 0]})
    records = app.state.services.records
    real = records.export

    def failing(name: str) -> Any:
        yield from real(name)
        raise ValueError("storage failed mid-export")

    monkeypatch.setattr(records, "export", failing)
    try:
        response = client.get("/v1/collections/e/export")
    except Exception:
        return  # the transport saw the stream abort: what a client must see
    assert response.status_code >= 500 or not response.is_success


def _wal_fsyncs(monkeypatch: pytest.MonkeyPatch, engine: Any) -> list[tuple[str, bool]]:
    """Record every fsync the engine makes: (file, whether the writer lock was held)."""
    import vecstore.storage.engine as engine_module

    calls: list[tuple[str, bool]] = []
    real = os.fsync

    def spy(fd: int) -> None:
        calls.append((os.readlink(f"/proc/self/fd/{fd}"), engine._write_lock.locked()))
        real(fd)

    monkeypatch.setattr(engine_module.os, "fsync", spy)
    return calls


def _synchronous_of_pooled_connections(engine: Any) -> set[int]:
    conns = [engine.db.connect() for _ in range(4)]
    try:
        return {c.exec_driver_sql("PRAGMA synchronous").scalar() for c in conns}
    finally:
        for c in conns:
            c.close()


def test_an_upsert_fsyncs_the_wal_after_leaving_the_writer_lock(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.create_collection(
        name="a", dim=2, metric="ip", description=None, params=IndexParams(), embedding_model=None
    )
    calls = _wal_fsyncs(monkeypatch, engine)
    engine.upsert("a", [RecordWrite("x", np.array([1, 0], dtype=np.float32), {})])
    wal = f"{engine.sqlite_path.resolve()}-wal"
    assert calls == [(wal, False)]
    # Every pooled connection is back to FULL for the writes that still sync in the commit.
    assert _synchronous_of_pooled_connections(engine) == {2}
    engine.delete("a", ["x"])
    assert calls == [(wal, False)]  # deletes sync inside their commit, as before


def test_an_upsert_whose_fsync_fails_is_not_acknowledged(
    client: TestClient[Litestar], make_collection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vecstore.storage.engine as engine_module

    make_collection("a", dim=2)

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(engine_module.os, "fsync", failing)
    for path, body in (
        ("upsert", {"external_id": "x", "vector": [1, 0]}),
        ("bulk_upsert", {"items": [{"external_id": "y", "vector": [0, 1]}]}),
    ):
        r = client.post(f"/v1/collections/a/{path}", json=body)
        assert error_type(r, 500) == "internal_error"
        assert "Input/output" not in r.text


def test_with_synchronous_normal_the_engine_never_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eng = StorageEngine(
        EngineConfig(
            database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
            index_dir=tmp_path / "indexes",
            sqlite_synchronous="NORMAL",
        )
    )
    eng.open(start_indexer=False)
    try:
        eng.create_collection(
            name="a",
            dim=2,
            metric="ip",
            description=None,
            params=IndexParams(),
            embedding_model=None,
        )
        calls = _wal_fsyncs(monkeypatch, eng)
        eng.upsert("a", [RecordWrite("x", np.array([1, 0], dtype=np.float32), {})])
        assert calls == []
        assert _synchronous_of_pooled_connections(eng) == {1}
    finally:
        eng.close()


def _traced_statements(engine: Any) -> list[tuple[str, bool]]:
    """Every statement new pooled connections run: (SQL, whether the writer lock was held)."""
    statements: list[tuple[str, bool]] = []

    @sa.event.listens_for(engine.db, "connect")
    def _trace(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.set_trace_callback(
            lambda sql: statements.append((sql, engine._write_lock.locked()))
        )

    engine.db.dispose()  # the pool's connections are made again, traced
    return statements


def _rows(prefix: str, n: int) -> list[RecordWrite]:
    return [RecordWrite(f"{prefix}{i}", np.array([1, i], dtype=np.float32), {}) for i in range(n)]


def _checkpoints(statements: list[tuple[str, bool]]) -> list[bool]:
    return [held for sql, held in statements if sql == "PRAGMA wal_checkpoint(PASSIVE)"]


def test_upserts_checkpoint_the_wal_after_leaving_the_writer_lock(engine: Any) -> None:
    engine.create_collection(
        name="a", dim=2, metric="l2", description=None, params=IndexParams(), embedding_model=None
    )
    statements = _traced_statements(engine)
    engine.upsert("a", _rows("x", 600))
    assert _checkpoints(statements) == []  # not yet 1,000 rows since the last one
    engine.upsert("a", _rows("y", 600))
    assert _checkpoints(statements) == [False]
    # The commits themselves ran with SQLite's own checkpoint off, set while the lock was held.
    assert [held for sql, held in statements if sql == "PRAGMA wal_autocheckpoint=0"] == [True] * 2
    conns = [engine.db.connect() for _ in range(4)]
    try:
        assert {c.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() for c in conns} == {1000}
    finally:
        for c in conns:
            c.close()
    assert engine.count("a", None) == 1200


def test_past_the_wal_bound_upserts_checkpoint_in_their_commit_again(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vecstore.storage.engine as engine_module

    engine.create_collection(
        name="a", dim=2, metric="l2", description=None, params=IndexParams(), embedding_model=None
    )
    statements = _traced_statements(engine)
    monkeypatch.setattr(engine_module, "_WAL_BOUND_FRAMES", -2)  # every WAL is "too long"
    engine.upsert("a", _rows("x", 1000))  # commits without, then checkpoints: over the bound
    engine.upsert("a", _rows("y", 10))
    skipped = [sql for sql, _ in statements if sql == "PRAGMA wal_autocheckpoint=0"]
    assert len(skipped) == 1  # the second commit left SQLite's checkpoint on
    monkeypatch.setattr(engine_module, "_WAL_BOUND_FRAMES", 16384)
    engine.upsert("a", _rows("z", 1000))  # checkpoints: under the bound again
    engine.upsert("a", _rows("w", 10))
    assert len([sql for sql, _ in statements if sql == "PRAGMA wal_autocheckpoint=0"]) == 2


def test_a_failed_wal_checkpoint_does_not_fail_the_acknowledged_upsert(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    engine.create_collection(
        name="a", dim=2, metric="l2", description=None, params=IndexParams(), embedding_model=None
    )
    real_connect = engine.db.connect

    def connect() -> Any:
        if sys._getframe(1).f_code.co_name == "_checkpoint_wal":
            raise OSError(28, "No space left on device")
        return real_connect()

    monkeypatch.setattr(engine.db, "connect", connect)
    result = engine.upsert("a", _rows("x", 1000))
    assert result.inserted == 1000
    assert engine.count("a", None) == 1000
    assert engine._wal_checkpoint_in_commit  # SQLite checkpoints in commits meanwhile
