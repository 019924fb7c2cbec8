"""Each vector is held once: a Hypothesis state machine drives ``VectorTable`` (tiny blocks, so
rows cross block boundaries) against a numpy oracle through appends, kills, dropping the indexed
prefix and compaction; a collection whose rows live in FAISS alone still answers every read with
the exact vectors; and a checkpoint is written without a copy of the index in memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from vecstore.domain import IndexParams
from vecstore.storage.collection import CollectionRuntime
from vecstore.storage.row_vectors import RowVectors, default_block_rows
from vecstore.storage.vector_index import CheckpointError, VectorIndex
from vecstore.storage.vector_table import VectorTable

DIM = 3


class TableMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.table = VectorTable(DIM, block_rows=4)
        self.next_id = 0
        # The oracle: every row's id, vector and liveness, in row order.
        self.ids: list[int] = []
        self.vectors: list[np.ndarray] = []
        self.alive: list[bool] = []
        self.base = 0

    @rule(n=st.integers(1, 9))
    def append(self, n: int) -> None:
        ids = np.arange(self.next_id, self.next_id + n, dtype=np.int64)
        vectors = np.random.default_rng(self.next_id).normal(size=(n, DIM)).astype(np.float32)
        self.table.append(ids, vectors, [f"e{i}" for i in ids], [b"{}"] * n)
        self.next_id += n
        self.ids += ids.tolist()
        self.vectors += list(vectors)
        self.alive += [True] * n

    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        if not self.ids:
            return
        rows = data.draw(st.lists(st.integers(0, len(self.ids) - 1), max_size=5))
        self.table.kill_rows(np.asarray(rows, dtype=np.int64))
        for row in rows:
            self.alive[row] = False

    @rule(data=st.data())
    def drop_below(self, data: st.DataObject) -> None:
        row = data.draw(st.integers(0, len(self.ids) + 2))
        self.table.drop_vectors_below(row)
        self.base = min(max(self.base, row), len(self.ids))

    @rule()
    def compact(self) -> None:
        keep = [r for r, a in enumerate(self.alive) if a]
        self.base = sum(1 for r in keep if r < self.base)
        self.ids = [self.ids[r] for r in keep]
        self.vectors = [self.vectors[r] for r in keep]
        self.alive = [True] * len(keep)
        self.table.compact()

    @invariant()
    def agrees(self) -> None:
        table = self.table
        assert table.size == len(self.ids)
        assert table.vector_base == self.base
        assert table.ids.tolist() == self.ids
        assert table.alive.tolist() == self.alive
        held = list(range(self.base, len(self.ids)))
        if held:
            want = np.stack([self.vectors[r] for r in held])
            np.testing.assert_array_equal(table.vectors_of(np.asarray(held[::-1]))[::-1], want)
            pieces = list(table.vector_ranges(self.base, len(self.ids), chunk=3))
            assert [start for start, _ in pieces] == sorted({s for s, _ in pieces})
            assert all(len(view) <= 3 for _, view in pieces)
            np.testing.assert_array_equal(np.concatenate([v for _, v in pieces]), want)
        # Blocks wholly below the base are gone: at most one partly used block before it.
        assert table.held_vector_bytes <= (len(held) // 4 + 2) * 4 * DIM * 4
        if self.base:
            with pytest.raises(IndexError):
                table.vectors_of(np.asarray([self.base - 1]))


TableMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestTableMachine = TableMachine.TestCase


def test_block_size_follows_the_dimension() -> None:
    assert default_block_rows(384) == (4 << 20) // (4 * 384)
    assert default_block_rows(2) == 4096  # capped: a tiny collection does not hold 2 MiB
    assert default_block_rows(100_000) == 16
    vectors = RowVectors(2, block_rows=4)
    vectors.append(np.ones((10, 2), dtype=np.float32))
    with pytest.raises(IndexError):
        list(vectors.ranges(0, 11, chunk=8))


def test_no_block_is_kept_once_every_row_is_dropped() -> None:
    vectors = RowVectors(2, block_rows=4)
    vectors.append(np.arange(20, dtype=np.float32).reshape(10, 2))
    vectors.drop_below(9)  # row 9 is still held: its (partly written) block stays
    assert vectors.held_bytes == 4 * 2 * 4
    vectors.drop_below(10)  # everything is indexed: the partly written block goes too
    assert vectors.held_bytes == 0
    vectors.append(np.full((3, 2), 7, dtype=np.float32))  # rows 10-12, in a fresh block
    np.testing.assert_array_equal(vectors.gather(np.array([10, 12])), np.full((2, 2), 7))
    with pytest.raises(IndexError):
        vectors.gather(np.array([9]))


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("index_type", ["flat", "hnsw", "hnsw_sq8"])
def test_indexed_rows_are_read_back_from_the_index_exactly(metric: str, index_type: str) -> None:
    rng = np.random.default_rng(7)
    n, dim = 3000, 8
    raw = rng.normal(size=(n, dim)).astype(np.float32)
    runtime = CollectionRuntime(1, "c", dim, metric, IndexParams(type=index_type, m=8))
    runtime.apply_write(
        killed_ids=np.zeros(0, dtype=np.int64),
        new_ids=np.arange(n, dtype=np.int64),
        new_vectors=raw,
        external_ids=[f"r{i}" for i in range(n)],
        metadata_json=[b"{}"] * n,
        seq=1,
        now=0.0,
    )
    expected = runtime.to_index_space(raw)
    while runtime.index_step(1024, keep_fresh=500):
        pass
    # The table lets go of what the index holds exactly, and only that.
    fresh_start = runtime.table.first_row_after(runtime.index.watermark)
    assert fresh_start == n - 500
    assert runtime.table.vector_base == (fresh_start if index_type != "hnsw_sq8" else 0)
    # Every read path sees the exact vectors: by id, rerank, exact search, the fallback scan.
    for i in (0, fresh_start - 1, fresh_start, n - 1):
        found = runtime.index_vector_of(f"r{i}")
        assert found is not None
        np.testing.assert_array_equal(found[1], expected[i])
    query = rng.normal(size=dim).astype(np.float32)
    q = runtime.to_index_space(query)
    want = runtime.scores(expected, q)
    names = [f"r{i}" for i in range(0, n, 7)]
    hits, missing = runtime.rerank(query, names)
    assert missing == []
    got = {h.external_id: h.score for h in hits}
    np.testing.assert_allclose([got[e] for e in names], want[::7], rtol=1e-5, atol=1e-5)
    top = runtime.search(query, 10, exact=True)
    best = np.sort(want)[::-1][:10]
    np.testing.assert_allclose([h.score for h in top], best, rtol=1e-5, atol=1e-5)
    scan = runtime._scan_rows(0, runtime.table.size, q, 10)
    np.testing.assert_allclose(np.sort(want[scan])[::-1][:10], best, rtol=1e-5, atol=1e-5)

    # Deleted indexed rows drop out of the scan of the index's storage (tombstones applied or not).
    best_rows = np.argsort(-want, kind="stable")[:5]
    runtime.apply_write(
        killed_ids=best_rows.astype(np.int64),
        new_ids=np.zeros(0, dtype=np.int64),
        new_vectors=np.zeros((0, dim), dtype=np.float32),
        external_ids=[],
        metadata_json=[],
        seq=2,
        now=0.0,
    )
    alive = np.ones(n, dtype=bool)
    alive[best_rows] = False
    top = runtime.search(query, 10, exact=True)
    assert not {h.external_id for h in top} & {f"r{i}" for i in best_rows}
    np.testing.assert_allclose(
        [h.score for h in top], np.sort(want[alive])[::-1][:10], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_a_checkpoint_is_streamed_without_a_copy_of_the_index(
    tmp_path: Path, index_type: str
) -> None:
    """Saving used to hold three copies of the serialised index at once (the server's peak RSS);
    it now streams. Python-level copies show in tracemalloc's peak; the round trip must hold."""
    n, dim = 40_000, 64
    vectors = np.random.default_rng(3).normal(size=(n, dim)).astype(np.float32)
    params = IndexParams(type=index_type, m=4, ef_construction=8)
    index = VectorIndex(dim, "ip", params)
    index.add(np.arange(0, 2 * n, 2, dtype=np.int64), vectors)
    path = tmp_path / "c.index"
    tracemalloc.start()
    try:
        index.save(path, collection_id=9, applied_seq=5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < vectors.nbytes / 3, f"saving traced {peak:,} bytes for a {vectors.nbytes:,} index"
    loaded, seq = VectorIndex.load(path, collection_id=9, dim=dim, metric="ip", params=params)
    assert seq == 5
    np.testing.assert_array_equal(loaded.ids, index.ids)
    np.testing.assert_array_equal(loaded.stored_vectors(), vectors)
    # The checksum covers what was streamed: one flipped byte in the body is refused.
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        VectorIndex.load(path, collection_id=9, dim=dim, metric="ip", params=params)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.lists(
            st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=True),
            min_size=5,
            max_size=5,
        ),
        min_size=2,
        max_size=4,
    )
)
def test_one_query_enters_index_space_exactly_as_it_does_in_a_batch(
    rows: list[list[float]],
) -> None:
    """A single row takes a shorter way to unit length (a search request's query); it gives
    every bit the batch way gives, so a query batched with others scores as it does alone."""
    runtime = CollectionRuntime(1, "c", 5, "cosine", IndexParams(type="flat"))
    batch = np.asarray(rows, dtype=np.float32)
    together = runtime.to_index_space(batch)
    for i, row in enumerate(batch):
        alone = runtime.to_index_space(row[None])
        assert alone.shape == (1, 5)
        assert np.array_equal(alone[0], together[i])
        assert np.array_equal(runtime.to_index_space(row), together[i])  # a 1-D vector


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_scores_at_scores_stored_vectors_in_place(metric: str, index_type: str) -> None:
    """``VectorIndex.scores_at`` (rerank's scoring, read where FAISS keeps the vectors) gives
    the scores of the gathered rows, in the order of the positions asked for, repeats and
    all; it refuses a position outside the index and a query of the wrong shape rather than
    let FAISS read past its memory."""
    rng = np.random.default_rng(5)
    n, dim = 300, 24
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    if metric == "cosine":  # the index holds unit rows for cosine (index space)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(dim, metric, IndexParams(type=index_type, m=8, ef_construction=16))
    index.add(np.arange(n, dtype=np.int64) * 3, vectors)
    q = rng.normal(size=dim).astype(np.float32)
    positions = rng.choice(n, size=120, replace=True)
    got = index.scores_at(q, positions)
    gathered = vectors[positions]
    expected = (-np.linalg.norm(gathered - q, axis=1) if metric == "l2" else gathered @ q).astype(
        np.float32
    )
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert index.scores_at(q, np.zeros(0, dtype=np.int64)).shape == (0,)
    for bad in ([n], [-1], [0, n + 7]):
        with pytest.raises(IndexError):
            index.scores_at(q, np.asarray(bad, dtype=np.int64))
    with pytest.raises(ValueError, match="shape"):
        index.scores_at(q[:-1], positions)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_scores_at_runs_on_one_openmp_thread_and_restores_the_count(
    metric: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: FAISS's by-index scoring opened a parallel region for its single query,
    waking the whole OpenMP team on every rerank for nothing. It now runs with this thread's
    OpenMP count at 1, and leaves the count as it found it."""
    from vecstore.storage import vector_index

    faiss = vector_index.faiss
    name = "fvec_L2sqr_by_idx" if metric == "l2" else "fvec_inner_products_by_idx"
    original = getattr(faiss, name)
    seen: list[int] = []

    def recording(*args: object) -> object:
        seen.append(faiss.omp_get_max_threads())
        return original(*args)

    monkeypatch.setattr(faiss, name, recording)
    index = VectorIndex(4, metric, IndexParams(type="flat"))
    index.add(np.arange(3, dtype=np.int64), np.eye(3, 4, dtype=np.float32))
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        index.scores_at(np.ones(4, dtype=np.float32), np.arange(3))
        assert seen == [1]
        assert faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(before)


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_rerank_scores_indexed_candidates_in_place_and_the_rest_gathered(
    metric: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Candidates that all live in the index alone are scored by ``scores_at`` (no gather);
    a set with a fresh row among them is gathered and scored as before. Both give the scores
    of the stored vectors."""
    from tests.test_search_batches import _index_all, _runtime, _stored

    runtime = _runtime(metric, "hnsw", n=600)
    _index_all(runtime, keep_fresh=100)
    fresh_start = runtime.table.first_row_after(runtime.index.watermark)
    assert runtime.table.vector_base == fresh_start == 500
    calls: list[int] = []
    scores_at = runtime.index.scores_at

    def spying(q: np.ndarray, positions: np.ndarray) -> np.ndarray:
        calls.append(len(positions))
        return scores_at(q, positions)

    monkeypatch.setattr(runtime.index, "scores_at", spying)
    query = np.random.default_rng(4).normal(size=runtime.dim).astype(np.float32)
    q = runtime.to_index_space(query)
    expected = runtime.scores(runtime.to_index_space(_stored(600)), q)
    for rows, in_place in (([3, 250, 499, 17], True), ([3, 250, 550], False)):
        hits, missing = runtime.rerank(query, [f"r{i}" for i in rows])
        assert missing == []
        assert calls == ([len(rows)] if in_place else [])
        got = {h.external_id: h.score for h in hits}
        np.testing.assert_allclose(
            [got[f"r{i}"] for i in rows], expected[rows], rtol=1e-5, atol=1e-5
        )
        calls.clear()
