"""Quick searches that reach the loop together run as one index search (``api/search_batches.py``,
``SearchService.run``, ``CollectionRuntime.search_many``): every answer is the one its query gets
alone, whatever else shares its batch, and a batch that cannot run sends each request its own way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import httpx
import numpy as np
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import ADMIN_KEY, flush_indexes
from vecstore.api import search_batches
from vecstore.api.search_batches import _RECOUNT_EVERY, SearchBatcher, _registered_tasks
from vecstore.api.state import services_of
from vecstore.domain import Hit, IndexParams
from vecstore.services.search import SearchPlan, SearchResult, SearchService
from vecstore.storage.collection import CollectionRuntime
from vecstore.storage.rwlock import WouldBlock

DIM = 8


def _runtime(
    metric: str, index_type: str, n: int = 600, vectors: np.ndarray | None = None
) -> CollectionRuntime:
    """A collection of ``n`` rows r0, r1, …: ``vectors`` (``n`` of them) or ``_stored(n)``."""
    if vectors is not None:
        n = len(vectors)
    runtime = CollectionRuntime(1, "c", DIM, metric, IndexParams(type=index_type, m=8))
    runtime.apply_write(
        killed_ids=np.zeros(0, dtype=np.int64),
        new_ids=np.arange(n, dtype=np.int64),
        new_vectors=_stored(n) if vectors is None else vectors,
        external_ids=[f"r{i}" for i in range(n)],
        metadata_json=[b'{"i": %d}' % i for i in range(n)],
        seq=1,
        now=0.0,
    )
    return runtime


def _stored(n: int) -> np.ndarray:
    return np.random.default_rng(3).normal(size=(n, DIM)).astype(np.float32)


def _index_all(runtime: CollectionRuntime, keep_fresh: int = 0) -> None:
    while runtime.index_step(256, keep_fresh=keep_fresh):
        pass


def _kill(runtime: CollectionRuntime, ids: Sequence[int], seq: int) -> None:
    runtime.apply_write(
        killed_ids=np.asarray(ids, dtype=np.int64),
        new_ids=np.zeros(0, dtype=np.int64),
        new_vectors=np.zeros((0, DIM), dtype=np.float32),
        external_ids=[],
        metadata_json=[],
        seq=seq,
        now=0.0,
    )


def _oracle(runtime: CollectionRuntime, query: np.ndarray, n: int, ef: int | None) -> list[Hit]:
    """The search as it was before batching: the index's neighbours of this query alone, the
    fresh rows scanned, and ``_top`` over both (or the widening search when tombstones crowd
    the answer)."""
    q = runtime.to_index_space(query)
    with runtime.table_lock.read(), runtime.index_lock.read():
        return runtime._index_search(q, n, ef, None)


def _as_tuples(hits: list[Hit]) -> list[tuple[Any, ...]]:
    return [(h.external_id, h.score, h.internal_id, h.metadata, h.distance) for h in hits]


def _prepared(metric: str, index_type: str, state: str) -> tuple[CollectionRuntime, np.ndarray]:
    """A collection in ``state`` and twelve queries."""
    runtime = _runtime(metric, index_type)
    _index_all(runtime, keep_fresh=100 if state == "fresh rows" else 0)
    queries = np.random.default_rng(9).normal(size=(12, DIM)).astype(np.float32)
    if state.startswith("tombstones"):
        # The best rows of the first queries: the index returns them until it applies the
        # kills, so those answers come back short and take the widening search.
        stored = runtime.to_index_space(_stored(600))
        q = runtime.to_index_space(queries[:4])
        best = {int(r) for row in q for r in np.argsort(-runtime.scores(stored, row))[:6]}
        _kill(runtime, sorted(best), seq=2)
        if state == "tombstones applied":
            _index_all(runtime)
    return runtime, queries


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("index_type", ["flat", "hnsw", "hnsw_sq8"])
@pytest.mark.parametrize("state", ["indexed", "fresh rows", "tombstones", "tombstones applied"])
def test_a_batch_answers_each_query_as_it_is_answered_alone(
    metric: str, index_type: str, state: str
) -> None:
    runtime, queries = _prepared(metric, index_type, state)
    for n, ef in ((10, None), (3, 64), (50, 16), (700, None)):
        batch = runtime.search_many(queries, n, ef_search=ef)
        assert len(batch) == len(queries)
        for query, hits in zip(queries, batch, strict=True):
            assert _as_tuples(hits) == _as_tuples(_oracle(runtime, query, n, ef))
            assert _as_tuples(hits) == _as_tuples(runtime.search(query, n, ef_search=ef))


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("index_type", ["flat", "hnsw", "hnsw_sq8"])
@pytest.mark.parametrize("state", ["indexed", "fresh rows", "tombstones", "tombstones applied"])
def test_a_lone_query_is_answered_as_it_is_in_a_batch(
    metric: str, index_type: str, state: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of one takes ``_top_of_lone_hits`` (lists instead of array operations) when
    every hit is a live row, and the general path otherwise: the answer is the same."""
    runtime, queries = _prepared(metric, index_type, state)
    lone: list[bool] = []  # per call of the lone path: did it answer?
    original = CollectionRuntime._top_of_lone_hits

    def spy(self: CollectionRuntime, *args: Any) -> list[Hit] | None:
        out = original(self, *args)
        lone.append(out is not None)
        return out

    monkeypatch.setattr(CollectionRuntime, "_top_of_lone_hits", spy)
    for n, ef in ((10, None), (3, 64), (50, 16), (700, None)):
        for query in queries:
            [hits] = runtime.search_many(query[None], n, ef_search=ef)
            assert _as_tuples(hits) == _as_tuples(_oracle(runtime, query, n, ef))
            in_batch = runtime.search_many(np.stack([query, queries[0]]), n, ef_search=ef)[0]
            assert _as_tuples(hits) == _as_tuples(in_batch)
    exact_vectors = index_type != "hnsw_sq8"  # a quantised index re-scores more than n hits
    if exact_vectors and state in ("indexed", "tombstones applied"):
        assert lone
        assert all(lone)
    if exact_vectors and state == "tombstones":
        assert True in lone
        assert False in lone  # killed hits not yet applied in the index: the general path
    if not exact_vectors or state == "fresh rows":
        assert not lone


def test_live_rows_of_answers_only_when_every_id_is_a_live_row() -> None:
    runtime = _runtime("cosine", "flat", n=20)
    _kill(runtime, [5], seq=2)
    table = runtime.table

    def rows(ids: list[int]) -> list[int] | None:
        return table.live_rows_of(np.asarray(ids, dtype=np.int64), ids)

    assert rows([0, 3, 19]) == [0, 3, 19]
    assert rows([4]) == [4]
    assert rows([3, 5, 6]) is None  # killed
    assert rows([3, 20]) is None  # past the last id
    full = _runtime("cosine", "flat", n=1024).table  # every slot used: nothing past the end
    assert full.size == len(full._ids)
    assert full.live_rows_of(np.asarray([5, 1024], dtype=np.int64), [5, 1024]) is None
    assert full.live_rows_of(np.asarray([1023], dtype=np.int64), [1023]) == [1023]
    assert rows([-1, 3]) is None  # FAISS's padding
    # an id between two rows: compaction has left a gap where 5 was
    with runtime.table_lock.write():
        table.compact()
    assert rows([4, 6]) == [4, 5]
    assert rows([5]) is None


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_tied_scores_rank_in_row_order_alone_and_in_a_batch(metric: str, index_type: str) -> None:
    """Many rows share each vector: the lone path's stable reverse sort breaks ties by row,
    as the batch path's lexsort does."""
    n = 240
    distinct = np.random.default_rng(5).normal(size=(6, DIM)).astype(np.float32)
    runtime = _runtime(metric, index_type, vectors=distinct[np.arange(n) % 6])
    _index_all(runtime)
    for query in np.random.default_rng(6).normal(size=(8, DIM)).astype(np.float32):
        for k in (3, 10, 30):
            [alone] = runtime.search_many(query[None], k, ef_search=256)
            batched = runtime.search_many(np.stack([query, distinct[0]]), k, ef_search=256)[0]
            assert _as_tuples(alone) == _as_tuples(batched)
            for a, b in pairwise(alone):
                assert a.score > b.score or (a.score == b.score and a.internal_id < b.internal_id)


def test_nan_scores_leave_the_lone_path() -> None:
    """Inner products of huge float32 values overflow to inf - inf = NaN. A sort by key would
    leave NaN anywhere (lexsort puts it last), so the lone path declines such hits and the
    general path ranks them (found in review of 963b379). FAISS itself drops NaN distances
    from its answers, so the hits are handed to the lone path directly."""
    n = 12
    stored = np.random.default_rng(8).normal(size=(n, DIM)).astype(np.float32)
    stored[[3, 7], :2] = [3e38, -3e38]
    runtime = _runtime("ip", "flat", vectors=stored)
    _index_all(runtime)
    query = np.ones(DIM, dtype=np.float32)
    query[:2] = 3e38
    with runtime.table_lock.read(), runtime.index_lock.read(), np.errstate(all="ignore"):
        assert runtime._top_of_lone_hits(query, np.arange(n), n) is None
        finite = np.asarray([0, 1, 2, 4, 5, 6, 8, 9, 10, 11])
        assert runtime._top_of_lone_hits(query, finite, 10) is not None


def test_a_batch_of_one_collection_with_nothing_indexed_scans_the_fresh_rows() -> None:
    runtime = _runtime("cosine", "hnsw", n=50)  # nothing moved into the index yet
    queries = np.random.default_rng(1).normal(size=(3, DIM)).astype(np.float32)
    for query, hits in zip(queries, runtime.search_many(queries, 5), strict=True):
        assert _as_tuples(hits) == _as_tuples(runtime.search(query, 5, exact=True))
    assert runtime.search_many(queries, 0) == [[], [], []]


# -- the batcher, with a stand-in SearchService ------------------------------------------------
class _Search:
    """Records what ``run`` is given; ``fail_batches`` makes every call of more than one plan
    raise (as a held lock does), while a plan run alone succeeds."""

    def __init__(self, fail_batches: BaseException | None = None) -> None:
        self.calls: list[tuple[list[int], bool]] = []
        self.fail_batches = fail_batches

    def run(self, plans: Sequence[Any], *, nonblocking: bool = False) -> list[SearchResult]:
        self.calls.append(([p.k for p in plans], nonblocking))
        if self.fail_batches is not None and nonblocking:
            raise self.fail_batches
        return [SearchResult([], timing=None, total_count=p.k) for p in plans]  # type: ignore[arg-type]


class _Plan:
    def __init__(self, k: int) -> None:
        self.k = k


def _batcher(search: _Search, max_batch: int = 32) -> SearchBatcher:
    stand_in: Any = search
    return SearchBatcher(stand_in, max_batch=max_batch)


def _plans(n: int) -> list[SearchPlan]:
    plans: Any = [_Plan(k) for k in range(1, n + 1)]
    return list(plans)


def test_searches_of_one_turn_share_one_run_in_arrival_order() -> None:
    search = _Search()

    async def scenario() -> list[SearchResult]:
        batcher = _batcher(search)
        return await asyncio.gather(*(batcher.run(p) for p in _plans(5)))

    results = asyncio.run(scenario())
    assert search.calls == [([1, 2, 3, 4, 5], True)]
    assert [r.total_count for r in results] == [1, 2, 3, 4, 5]


def test_a_search_with_no_other_request_beside_it_runs_at_once() -> None:
    search = _Search()

    async def scenario() -> tuple[list[tuple[list[int], bool]], list[SearchResult]]:
        batcher = _batcher(search)
        batcher.note_idle()  # the tasks now are not requests
        plans = _plans(4)
        alone = await batcher.run(plans[0])  # awaited here, no other task: runs in the call
        at_once = list(search.calls)
        together = await asyncio.gather(*(batcher.run(p) for p in plans[1:]))
        return at_once, [alone, *together]

    at_once, results = asyncio.run(scenario())
    assert at_once == [([1], True)]
    assert search.calls == [([1], True), ([2, 3, 4], True)]  # three tasks at once: a batch
    assert [r.total_count for r in results] == [1, 2, 3, 4]


async def _finished() -> None:
    return None


def test_a_finished_task_still_registered_does_not_make_a_lone_search_wait() -> None:
    """``_alone`` reads the size of asyncio's task registry first, which also holds finished
    tasks something still references; those are not requests, so it then counts the live
    tasks, and the search runs at once (before the loop's next turn)."""
    search = _Search()

    async def scenario() -> tuple[bool, bool]:
        batcher = _batcher(search)
        batcher.note_idle()
        kept = [asyncio.create_task(_finished()) for _ in range(3)]
        await asyncio.gather(*kept)  # done, but referenced: still in the registry
        registered = _registered_tasks()
        assert registered is not None
        assert registered > len(asyncio.all_tasks())
        turned: list[bool] = []
        asyncio.get_running_loop().call_soon(turned.append, True)
        await batcher.run(_plans(1)[0])
        at_once = not turned
        other = asyncio.create_task(asyncio.sleep(0))  # a request that has not run yet
        crowded = batcher._alone()
        await other
        return at_once, crowded

    assert asyncio.run(scenario()) == (True, False)
    assert search.calls == [([1], True)]


def test_a_stale_fewest_count_is_corrected_by_the_periodic_recount() -> None:
    """A task that existed at ``note_idle`` ends but stays registered: the registry's size
    then says "alone" even with another request pending, until the periodic recount lowers
    the fewest to the live count (found in review of 963b379)."""
    search = _Search()

    async def scenario() -> tuple[bool, bool]:
        batcher = _batcher(search)
        early = asyncio.create_task(_finished())  # alive at note_idle
        batcher.note_idle()
        await early  # done, still referenced: registered, not live
        for _ in range(_RECOUNT_EVERY):
            assert batcher._alone()
        other = asyncio.create_task(asyncio.sleep(0))  # a request that has not run yet
        crowded = batcher._alone()
        await other
        lone_again = batcher._alone()
        del early
        return crowded, lone_again

    assert asyncio.run(scenario()) == (False, True)


def test_the_registry_is_not_read_where_it_does_not_hold_every_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From Python 3.14 native tasks are not in ``asyncio.tasks``' registry: the live count
    is used instead."""
    monkeypatch.setattr(search_batches.sys, "version_info", (3, 14, 0))
    assert _registered_tasks() is None
    search = _Search()

    async def scenario() -> tuple[bool, bool]:
        batcher = _batcher(search)
        batcher.note_idle()
        lone = batcher._alone()
        other = asyncio.create_task(asyncio.sleep(0))
        crowded = batcher._alone()
        await other
        return lone, crowded

    assert asyncio.run(scenario()) == (True, False)


def test_the_task_registry_counts_at_least_every_live_task() -> None:
    async def scenario() -> tuple[int | None, int]:
        blocker = asyncio.Event()
        waiting = [asyncio.create_task(blocker.wait()) for _ in range(5)]
        await asyncio.sleep(0)
        counts = (_registered_tasks(), len(asyncio.all_tasks()))
        blocker.set()
        await asyncio.gather(*waiting)
        return counts

    registered, live = asyncio.run(scenario())
    assert registered is not None  # this Python keeps a registry ``_alone`` can read
    assert live == 6  # the five and the scenario itself
    assert registered >= live


def test_a_turn_takes_at_most_max_batch_and_the_rest_follow() -> None:
    search = _Search()

    async def scenario() -> list[SearchResult]:
        batcher = _batcher(search, max_batch=2)
        return await asyncio.gather(*(batcher.run(p) for p in _plans(5)))

    results = asyncio.run(scenario())
    assert search.calls == [([1, 2], True), ([3, 4], True), ([5], True)]
    assert [r.total_count for r in results] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("failure", [WouldBlock("a writer holds the lock"), RuntimeError("bug")])
def test_a_batch_that_cannot_run_sends_each_search_alone_to_a_thread(
    failure: BaseException,
) -> None:
    search = _Search(fail_batches=failure)

    async def scenario() -> list[SearchResult]:
        batcher = _batcher(search)
        return await asyncio.gather(*(batcher.run(p) for p in _plans(3)))

    results = asyncio.run(scenario())
    assert search.calls[0] == ([1, 2, 3], True)
    assert sorted(search.calls[1:]) == [([1], False), ([2], False), ([3], False)]
    assert [r.total_count for r in results] == [1, 2, 3]


def test_a_search_cancelled_while_waiting_is_left_out_of_its_batch() -> None:
    search = _Search()

    async def scenario() -> list[Any]:
        batcher = _batcher(search)
        tasks = [asyncio.ensure_future(batcher.run(p)) for p in _plans(3)]
        await asyncio.sleep(0)  # each task joins the batch...
        tasks[1].cancel()  # ...and one times out before the loop's next turn
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(scenario())
    assert search.calls == [([1, 3], True)]
    assert isinstance(results[1], asyncio.CancelledError)
    assert [results[0].total_count, results[2].total_count] == [1, 3]


# -- through HTTP ----------------------------------------------------------------------------------
@pytest.fixture
def loaded(
    client: TestClient[Litestar], make_collection: Callable[..., dict[str, Any]]
) -> tuple[TestClient[Litestar], np.ndarray]:
    make_collection("batched", dim=DIM, index={"type": "hnsw", "m": 8, "ef_construction": 32})
    vectors = np.random.default_rng(5).standard_normal((400, DIM)).astype(np.float32)
    items = [
        {"external_id": f"r{i}", "vector": v.tolist(), "metadata": {"i": i}}
        for i, v in enumerate(vectors)
    ]
    resp = client.post("/v1/collections/batched/bulk_upsert", json={"items": items})
    assert resp.status_code == 200, resp.text
    flush_indexes(client.app)
    return client, vectors


def test_concurrent_http_searches_are_batched_and_answered_as_alone(
    loaded: tuple[TestClient[Litestar], np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, vectors = loaded
    search: SearchService = services_of(client.app.state).search
    bodies = [
        {"vector": v.tolist(), "k": 5 + i % 2, "ef_search": 40, "include_timing": True}
        for i, v in enumerate(vectors[:8])
    ]
    alone = [client.post("/v1/collections/batched/search", json=b).json() for b in bodies]
    sizes: list[int] = []
    run = search.run

    def recording_run(plans: Sequence[SearchPlan], *, nonblocking: bool = False) -> Any:
        sizes.append(len(plans))
        return run(plans, nonblocking=nonblocking)

    monkeypatch.setattr(search, "run", recording_run)

    async def together() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://vecstore") as http:
            return await asyncio.gather(
                *(
                    http.post(
                        "/v1/collections/batched/search",
                        json=b,
                        headers={"x-api-key": ADMIN_KEY},
                    )
                    for b in bodies
                )
            )

    assert client.blocking_portal is not None
    answers = client.blocking_portal.call(together)
    assert sizes == [8]  # one run for the eight, two k's and so two index searches inside it
    for got, want in zip(answers, alone, strict=True):
        assert got.status_code == 200, got.text
        data, expected = got.json()["data"], want["data"]
        assert data["results"] == expected["results"]
        assert set(data["timing_ms"]) == {"embedding_ms", "search_ms", "total_ms"}
