"""Concurrent writers, readers and the background indexer against one StorageEngine.

HTTP goes through a single-threaded test client, so these tests drive the engine directly from
threads (the engine is the thread-safe layer). Every vector is a pure function of (collection,
id, version) and the version is in the metadata, so a reader can check any row it is shown for
internal consistency while writers race it; each writer owns its ids, so it can predict every
status exactly, and the union of the writers' last operations is the final oracle.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from vecstore.domain import Hit, IndexParams, RecordWrite
from vecstore.storage.engine import EngineConfig, StorageEngine
from vecstore.storage.filters import parse_filter
from vecstore.storage.vector_index import VectorIndex

DIM = 6
WRITERS = 3
READERS = 2
IDS_PER_WRITER = 30
OPS_PER_WRITER = 120
MIN_READER_ITERATIONS = 30
MAX_READER_ITERATIONS = 5000
JOIN_TIMEOUT_S = 120.0
TOL = 1e-5

COLLECTIONS: dict[str, tuple[str, IndexParams]] = {
    "hnsw_cos": ("cosine", IndexParams(type="hnsw", m=4, ef_construction=16, ef_search=8)),
    "hnsw_ip": ("ip", IndexParams(type="hnsw", m=8, ef_construction=32, ef_search=16)),
    "flat_l2": ("l2", IndexParams(type="flat")),
}

_decode = msgspec.json.Decoder().decode

Key = tuple[str, str]  # (collection, external id)


def vector_for(collection: str, ext: str, version: int) -> np.ndarray:
    seed = zlib.crc32(f"{collection}/{ext}/{version}".encode())
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


def exact_score(metric: str, vector: np.ndarray, query: np.ndarray) -> float:
    v, q = vector.astype(np.float64), query.astype(np.float64)
    if metric == "cosine":
        v = v / max(float(np.linalg.norm(v)), 1e-30)
        q = q / max(float(np.linalg.norm(q)), 1e-30)
    if metric == "l2":
        return -float(np.linalg.norm(v - q))
    return float(v @ q)


def close(a: float, b: float) -> bool:
    return abs(a - b) <= TOL * (1.0 + abs(b))


def make_config(tmp_path: Path, **overrides: Any) -> EngineConfig:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'catalog.db'}",
        "index_dir": tmp_path / "indexes",
        "sqlite_synchronous": "NORMAL",
    }
    values.update(overrides)
    return EngineConfig(**values)


def open_engine(config: EngineConfig, *, start_indexer: bool) -> StorageEngine:
    engine = StorageEngine(config)
    engine.open(start_indexer=start_indexer)
    return engine


class Shared:
    """What the threads share: the ids anyone has tried to write, and the failures."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempted: set[Key] = set()
        self.errors: list[str] = []
        self.writers_done = threading.Event()

    def attempt(self, keys: list[Key]) -> None:
        with self.lock:
            self.attempted.update(keys)

    def was_attempted(self, key: Key) -> bool:
        with self.lock:
            return key in self.attempted

    def guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # every failure is reported by the main thread
                with self.lock:
                    self.errors.append(f"{threading.current_thread().name}: {exc!r}")
                raise

        return run


class Writer:
    """Upserts and deletes on its own ids only, so it can predict every answer exactly."""

    def __init__(self, engine: StorageEngine, shared: Shared, number: int) -> None:
        self.engine = engine
        self.shared = shared
        self.number = number
        self.rng = np.random.default_rng(1000 + number)
        self.versions: dict[Key, int] = {}
        self.live: dict[Key, tuple[int, int]] = {}  # -> (version, g)

    def ext(self, i: int) -> str:
        return f"w{self.number}-{i:02d}"

    def run(self) -> None:
        for _ in range(OPS_PER_WRITER):
            collection = str(self.rng.choice(list(COLLECTIONS)))
            roll = self.rng.random()
            if roll < 0.65:
                self.upsert(collection)
            elif roll < 0.9:
                self.delete(collection)
            else:
                self.delete_by_filter(collection)

    def upsert(self, collection: str) -> None:
        writes: list[RecordWrite] = []
        expected: list[str] = []
        final: dict[Key, tuple[int, int]] = {}
        for i in self.rng.integers(0, IDS_PER_WRITER, size=int(self.rng.integers(1, 9))):
            key = (collection, self.ext(int(i)))
            version = self.versions[key] = self.versions.get(key, 0) + 1
            g = int(self.rng.integers(0, 4))
            meta = {"w": self.number, "v": version, "g": g}
            writes.append(RecordWrite(key[1], vector_for(collection, key[1], version), meta))
            expected.append("updated" if key in self.live or key in final else "inserted")
            final[key] = (version, g)
        self.shared.attempt(list(final))
        result = self.engine.upsert(collection, writes)
        assert result.statuses == expected
        self.live.update(final)

    def delete(self, collection: str) -> None:
        n = int(self.rng.integers(1, 5))
        exts = [self.ext(int(i)) for i in self.rng.integers(0, IDS_PER_WRITER, size=n)]
        deleted, not_found = self.engine.delete(collection, exts)
        unique = list(dict.fromkeys(exts))
        assert deleted == [e for e in unique if (collection, e) in self.live]
        assert not_found == [e for e in unique if (collection, e) not in self.live]
        for e in deleted:
            del self.live[(collection, e)]

    def delete_by_filter(self, collection: str) -> None:
        g = int(self.rng.integers(0, 4))
        node = parse_filter({"w": self.number, "g": g})
        assert node is not None
        doomed = [k for k, (_, kg) in self.live.items() if k[0] == collection and kg == g]
        assert self.engine.delete_by_filter(collection, node) == len(doomed)
        for k in doomed:
            del self.live[k]


class Reader:
    """Searches, filtered searches, reranks, fetches and scrolls while the writers run."""

    def __init__(self, engine: StorageEngine, shared: Shared, number: int) -> None:
        self.engine = engine
        self.shared = shared
        self.rng = np.random.default_rng(2000 + number)
        self.operations = 0

    def check_row(self, collection: str, row: Hit, query: np.ndarray) -> dict[str, Any]:
        assert self.shared.was_attempted((collection, row.external_id)), row.external_id
        meta: dict[str, Any] = row.metadata
        assert row.external_id.startswith(f"w{meta['w']}-")
        vector = vector_for(collection, row.external_id, meta["v"])
        metric = COLLECTIONS[collection][0]
        assert close(row.score, exact_score(metric, vector, query)), (row, meta)
        return meta

    def check_rows(self, collection: str, rows: list[Hit], query: np.ndarray) -> None:
        ids = [r.external_id for r in rows]
        assert len(set(ids)) == len(ids), ids
        for a, b in itertools.pairwise(rows):
            assert a.score >= b.score
        for row in rows:
            self.check_row(collection, row, query)

    def random_exts(self) -> list[str]:
        n = int(self.rng.integers(1, 8))
        return [
            f"w{self.rng.integers(0, WRITERS)}-{self.rng.integers(0, IDS_PER_WRITER):02d}"
            for _ in range(n)
        ]

    def run(self) -> None:
        while self.operations < MAX_READER_ITERATIONS and (
            self.operations < MIN_READER_ITERATIONS or not self.shared.writers_done.is_set()
        ):
            self.operations += 1
            collection = str(self.rng.choice(list(COLLECTIONS)))
            query = self.rng.standard_normal(DIM).astype(np.float32)
            k = int(self.rng.integers(1, 25))
            kind = self.operations % 6
            if kind in (0, 1):
                rows = self.engine.search(collection, query, k, exact=kind == 0)
                assert len(rows) <= k
                self.check_rows(collection, rows, query)
            elif kind == 2:
                g = int(self.rng.integers(0, 4))
                node = parse_filter({"g": g})
                rows = self.engine.search(collection, query, k, node=node)
                assert len(rows) <= k
                self.check_rows(collection, rows, query)
                assert all(r.metadata["g"] == g for r in rows)
            elif kind == 3:
                exts = self.random_exts()
                rows, missing = self.engine.runtime(collection).rerank(query, exts)
                assert sorted([r.external_id for r in rows] + missing) == sorted(exts)
                for a, b in itertools.pairwise(rows):
                    assert a.score >= b.score
                for row in rows:
                    self.check_row(collection, row, query)
            elif kind == 4:
                for ext, record in self.engine.fetch(collection, self.random_exts(), True).items():
                    assert self.shared.was_attempted((collection, ext))
                    assert record.vector is not None
                    expected = vector_for(collection, ext, record.metadata["v"])
                    assert record.vector.tobytes() == expected.tobytes()
            else:
                self.scroll(collection)

    def scroll(self, collection: str) -> None:
        after: str | None = None
        seen: list[str] = []
        while True:
            page, after = self.engine.scroll(
                collection, after=after, limit=16, node=None, include_vectors=False
            )
            seen.extend(r.external_id for r in page)
            if after is None:
                break
        assert seen == sorted(set(seen))
        assert all(self.shared.was_attempted((collection, e)) for e in seen)


def check_final_state(engine: StorageEngine, oracle: dict[Key, tuple[int, int]]) -> None:
    rng = np.random.default_rng(7)
    for collection, (metric, _) in COLLECTIONS.items():
        live = {ext: v for (c, ext), (v, _) in oracle.items() if c == collection}
        assert engine.count(collection, None) == len(live)
        fetched = engine.fetch(collection, sorted(live), True)
        assert set(fetched) == set(live)
        for ext, version in live.items():
            record = fetched[ext]
            assert record.vector is not None
            assert record.vector.tobytes() == vector_for(collection, ext, version).tobytes()
            assert record.metadata["v"] == version
        for _ in range(5):
            query = rng.standard_normal(DIM).astype(np.float32)
            scores = {
                ext: exact_score(metric, vector_for(collection, ext, v), query)
                for ext, v in live.items()
            }
            ranked = sorted(scores, key=lambda e: -scores[e])
            for k in (1, 10, len(live) + 2):
                rows = engine.search(collection, query, k, exact=True)
                # Random Gaussian vectors: ties are vanishingly unlikely, so ids must match.
                assert [r.external_id for r in rows] == ranked[:k]
                assert all(close(r.score, scores[r.external_id]) for r in rows)
                rows = engine.search(collection, query, k)
                assert len(rows) == min(k, len(live))
                assert all(close(r.score, scores[r.external_id]) for r in rows)


def run_threads(targets: dict[str, Callable[[], None]]) -> None:
    threads = [threading.Thread(target=fn, name=name, daemon=True) for name, fn in targets.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)
    assert not [t.name for t in threads if t.is_alive()], "threads did not finish"


def test_writers_readers_and_indexer_race_without_errors_and_converge(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The background indexer logs its failures rather than raising them: watch the log too.
    caplog.set_level(logging.WARNING, logger="vecstore.storage")
    config = make_config(
        tmp_path,
        indexer_interval_s=0.001,
        indexer_batch_size=4,  # many small steps interleave with the writers
        checkpoint_idle_s=0.0,  # checkpoint (and trim the log) on nearly every round
        compaction_threshold=0.2,
        exact_filter_max_matches=4,  # filtered searches also go through the index
    )
    engine = open_engine(config, start_indexer=True)
    for name, (metric, params) in COLLECTIONS.items():
        engine.create_collection(
            name=name, dim=DIM, metric=metric, description=None, params=params, embedding_model=None
        )
    shared = Shared()
    writers = [Writer(engine, shared, w) for w in range(WRITERS)]
    readers = [Reader(engine, shared, r) for r in range(READERS)]

    writer_threads = {f"writer-{w.number}": shared.guard(w.run) for w in writers}
    reader_threads = {f"reader-{i}": shared.guard(r.run) for i, r in enumerate(readers)}

    def writers_then_signal() -> None:
        try:
            run_threads(writer_threads)
        finally:
            shared.writers_done.set()

    run_threads({"writers": writers_then_signal, **reader_threads})
    assert shared.errors == []
    assert all(r.operations > 0 for r in readers)

    oracle: dict[Key, tuple[int, int]] = {}
    for writer in writers:
        oracle.update(writer.live)
    assert oracle, "the writers left nothing behind"
    check_final_state(engine, oracle)

    # The background indexer catches up on its own: nothing stays fresh for long.
    deadline = time.monotonic() + 30
    runtimes = [engine.runtime(name) for name in COLLECTIONS]
    while any(rt.fresh_count() for rt in runtimes) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [rt.fresh_count() for rt in runtimes] == [0, 0, 0]
    check_final_state(engine, oracle)

    engine.close()
    engine = open_engine(config, start_indexer=False)
    try:
        check_final_state(engine, oracle)
        for name in COLLECTIONS:
            engine.maintain(engine.runtime(name), force_checkpoint=True)
        check_final_state(engine, oracle)
    finally:
        engine.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_drop_collection_during_a_checkpoint_does_not_deadlock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The indexer holds the collection's indexer mutex while a checkpoint takes the write lock;
    a drop must not hold the write lock while it waits for that mutex."""
    engine = open_engine(make_config(tmp_path), start_indexer=False)
    engine.create_collection(
        name="doomed",
        dim=DIM,
        metric="l2",
        description=None,
        params=IndexParams(type="flat"),
        embedding_model=None,
    )
    engine.upsert("doomed", [RecordWrite("a", vector_for("doomed", "a", 1), {})])
    cid = engine.get_collection("doomed").id
    runtime = engine.runtime("doomed")
    saving, release = threading.Event(), threading.Event()
    real_save = VectorIndex.save

    def paused_save(self: VectorIndex, path: Path, *, collection_id: int, applied_seq: int) -> None:
        saving.set()
        assert release.wait(30)
        real_save(self, path, collection_id=collection_id, applied_seq=applied_seq)

    monkeypatch.setattr(VectorIndex, "save", paused_save)
    errors: list[BaseException] = []

    def record(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)

        return run

    maintainer = threading.Thread(
        target=record(lambda: engine.maintain(runtime, force_checkpoint=True)), daemon=True
    )
    maintainer.start()
    assert saving.wait(30)
    dropper = threading.Thread(target=record(lambda: engine.drop_collection("doomed")), daemon=True)
    dropper.start()
    deadline = time.monotonic() + 30
    while "doomed" in engine.collection_names() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert engine.collection_names() == []  # the drop committed; it now waits for the indexer
    release.set()
    maintainer.join(20)
    dropper.join(20)
    assert not maintainer.is_alive(), "drop and checkpoint deadlocked"
    assert not dropper.is_alive(), "drop and checkpoint deadlocked"
    assert errors == []
    assert not (tmp_path / "indexes" / f"collection-{cid}.faiss").exists()
    # The engine still takes writes afterwards (the write lock was released).
    engine.create_collection(
        name="doomed",
        dim=DIM,
        metric="l2",
        description=None,
        params=IndexParams(type="flat"),
        embedding_model=None,
    )
    engine.upsert("doomed", [RecordWrite("b", vector_for("doomed", "b", 1), {})])
    assert engine.count("doomed", None) == 1
    engine.close()


def test_collections_created_and_dropped_while_the_indexer_checkpoints(tmp_path: Path) -> None:
    """Create/fill/drop cycles race the indexer's checkpoints; a steady collection beside them
    keeps its data, and no index file of a dropped collection survives."""
    config = make_config(tmp_path, indexer_interval_s=0.001, checkpoint_idle_s=0.0)
    engine = open_engine(config, start_indexer=True)
    params = IndexParams(type="hnsw", m=4, ef_construction=16, ef_search=8)
    for name in ("steady", "scratch"):
        engine.create_collection(
            name=name, dim=DIM, metric="ip", description=None, params=params, embedding_model=None
        )
    shared = Shared()
    expected: dict[str, int] = {}

    def churn() -> None:
        for cycle in range(25):
            writes = [
                RecordWrite(f"s{i}", vector_for("scratch", f"s{i}", cycle), {}) for i in range(20)
            ]
            engine.upsert("scratch", writes)
            engine.drop_collection("scratch")
            engine.create_collection(
                name="scratch",
                dim=DIM,
                metric="ip",
                description=None,
                params=params,
                embedding_model=None,
            )

    def steady() -> None:
        for i in range(150):
            ext = f"k{i % 40}"
            expected[ext] = i
            engine.upsert("steady", [RecordWrite(ext, vector_for("steady", ext, i), {"v": i})])

    run_threads({"churn": shared.guard(churn), "steady": shared.guard(steady)})
    assert shared.errors == []
    engine.close()

    engine = open_engine(config, start_indexer=False)
    try:
        assert engine.collection_names() == ["scratch", "steady"]
        assert engine.count("scratch", None) == 0
        fetched = engine.fetch("steady", sorted(expected), True)
        assert {e: r.metadata["v"] for e, r in fetched.items()} == expected
        live_ids = {engine.get_collection(n).id for n in ("scratch", "steady")}
        files = {p.name for p in config.index_dir.iterdir()}
        assert files <= {f"collection-{cid}.faiss" for cid in live_ids}, files
    finally:
        engine.close()
