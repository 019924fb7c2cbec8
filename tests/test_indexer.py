"""The background indexer's policy: defer HNSW work while writes stream in, catch up after."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vecstore.domain import IndexParams, RecordWrite
from vecstore.storage import engine as engine_module
from vecstore.storage import id_hashes
from vecstore.storage.engine import EngineConfig, StorageEngine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[StorageEngine]:
    eng = StorageEngine(
        EngineConfig(
            database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
            index_dir=tmp_path / "ix",
            indexer_fresh_max=100,
            indexer_defer_s=60.0,
        )
    )
    eng.open(start_indexer=False)
    yield eng
    eng.close()


def test_fresh_vectors_wait_while_writes_stream_and_are_indexed_once_they_pause(
    engine: StorageEngine,
) -> None:
    vectors = _collection(engine, "l2", 300, seed=0)
    _write(engine, vectors, range(300))
    runtime = engine.runtime("a")

    engine.maintain(runtime, defer=True)  # a write just happened: keep the newest 100 fresh
    assert runtime.fresh_count() == 100
    assert runtime.index.ntotal == 200
    # Search is unaffected by the split: the fresh segment is scanned exactly.
    hits = runtime.search(vectors[299], 1)
    assert hits[0].external_id == "r299"

    runtime.last_change_monotonic = time.monotonic() - 61  # writes paused past indexer_defer_s
    engine.maintain(runtime, defer=True)
    assert runtime.fresh_count() == 0
    assert runtime.index.ntotal == 300


def _collection(engine: StorageEngine, metric: str, n: int, seed: int) -> np.ndarray:
    """Collection "a" and ``n`` random 4-d vectors for it (not yet written)."""
    engine.create_collection(
        name="a", dim=4, metric=metric, description=None, params=IndexParams(), embedding_model=None
    )
    return np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)


def _write(engine: StorageEngine, vectors: np.ndarray, rows: range) -> None:
    engine.upsert("a", [RecordWrite(f"r{i}", vectors[i], {}) for i in rows])


def test_id_fingerprints_are_built_once_writes_pause_and_again_when_outgrown(
    engine: StorageEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(id_hashes, "MIN_ROWS", 200)
    trims: list[str] = []
    monkeypatch.setattr(engine_module, "release_free_memory", lambda: trims.append("trim"))
    vectors = _collection(engine, "ip", 400, seed=2)
    _write(engine, vectors, range(150))
    runtime = engine.runtime("a")
    engine.maintain(runtime)
    assert runtime.table.id_hashes is None  # too few rows to pay
    _write(engine, vectors, range(150, 300))
    engine.maintain(runtime, defer=True)  # writes streaming: not built meanwhile
    assert runtime.table.id_hashes is None
    runtime.last_change_monotonic = time.monotonic() - 61
    engine.maintain(runtime, defer=True)  # paused: built
    built = runtime.table.id_hashes
    assert built is not None
    assert built.covers == 300
    _write(engine, vectors, range(300, 330))
    engine.maintain(runtime)
    assert runtime.table.id_hashes is built  # 30 new rows of 300: within 1/8, kept
    _write(engine, vectors, range(330, 400))
    engine.maintain(runtime)
    rebuilt = runtime.table.id_hashes
    assert rebuilt is not built
    assert rebuilt is not None
    assert rebuilt.covers == 400
    engine.maintain(runtime, force_checkpoint=True)
    trims.clear()
    runtime.table.id_hashes = None  # as a compaction leaves it
    engine.maintain(runtime)  # nothing to index or checkpoint: the build alone
    assert runtime.table.id_hashes is not None
    assert trims == ["trim"]  # and its temporaries handed back


def test_a_direct_maintain_call_indexes_everything(engine: StorageEngine) -> None:
    vectors = _collection(engine, "ip", 250, seed=1)
    _write(engine, vectors, range(250))
    runtime = engine.runtime("a")
    engine.maintain(runtime)
    assert runtime.fresh_count() == 0
    assert runtime.index.ntotal == 250


def test_the_indexer_hands_freed_memory_back_once_it_has_caught_up(
    engine: StorageEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(engine_module, "release_free_memory", lambda: calls.append("trim"))
    engine.create_collection(
        name="a", dim=4, metric="l2", description=None, params=IndexParams(), embedding_model=None
    )
    runtime = engine.runtime("a")
    engine.maintain(runtime)
    assert calls == []  # nothing indexed: nothing to give back
    vectors = np.random.default_rng(0).standard_normal((300, 4)).astype(np.float32)
    engine.upsert("a", [RecordWrite(f"r{i}", vectors[i], {}) for i in range(300)])
    engine.maintain(runtime, defer=True)  # writes still streaming: the newest 100 stay fresh
    assert runtime.index.ntotal == 200
    assert calls == []
    engine.maintain(runtime)  # caught up
    assert runtime.index.ntotal == 300
    assert calls == ["trim"]
    engine.maintain(runtime, force_checkpoint=True)  # the checkpoint's buffers go back too
    assert calls == ["trim", "trim"]
