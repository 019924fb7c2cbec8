"""The background indexer's policy: defer HNSW work while writes stream in, catch up after."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vecstore.domain import IndexParams, RecordWrite
from vecstore.storage import engine as engine_module
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
    engine.create_collection(
        name="a", dim=4, metric="l2", description=None, params=IndexParams(), embedding_model=None
    )
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 4)).astype(np.float32)
    engine.upsert("a", [RecordWrite(f"r{i}", vectors[i], {}) for i in range(300)])
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


def test_a_direct_maintain_call_indexes_everything(engine: StorageEngine) -> None:
    engine.create_collection(
        name="a", dim=4, metric="ip", description=None, params=IndexParams(), embedding_model=None
    )
    vectors = np.random.default_rng(1).standard_normal((250, 4)).astype(np.float32)
    engine.upsert("a", [RecordWrite(f"r{i}", vectors[i], {}) for i in range(250)])
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
