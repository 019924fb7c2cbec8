"""Quick reads on the event loop (``api/offload.py``): a bounded search or rerank by vector runs
on the loop, anything else (or anything a writer holds a lock against) in a worker thread, with
the same answers either way, and a held lock never stalls the loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import flush_indexes
from vecstore.api.state import services_of
from vecstore.services.search import Query, SearchService
from vecstore.storage import collection as collection_module
from vecstore.storage.collection import CollectionRuntime
from vecstore.storage.rwlock import RWLock, WouldBlock

DIM = 8
ROWS = 300
WAIT_S = 10.0


def _vectors() -> np.ndarray:
    return np.random.default_rng(5).standard_normal((ROWS, DIM)).astype(np.float32)


@pytest.fixture
def loaded(
    client: TestClient[Litestar], make_collection: Callable[..., dict[str, Any]]
) -> tuple[TestClient[Litestar], np.ndarray]:
    make_collection("quick", dim=DIM, index={"type": "hnsw", "m": 8, "ef_construction": 32})
    vectors = _vectors()
    items = [
        {"external_id": f"r{i}", "vector": v.tolist(), "metadata": {"i": i}}
        for i, v in enumerate(vectors)
    ]
    resp = client.post("/v1/collections/quick/bulk_upsert", json={"items": items})
    assert resp.status_code == 200, resp.text
    # Index everything now: a background indexer step still running would hold the write
    # lock, and a quick read then rightly declines (CI saw this race once).
    flush_indexes(client.app)
    return client, vectors


def _services(client: TestClient[Litestar]) -> Any:
    return services_of(client.app.state)


def _runtime(client: TestClient[Litestar]) -> CollectionRuntime:
    runtime: CollectionRuntime = _services(client).engine.runtime("quick")
    return runtime


def _exact_top(vectors: np.ndarray, query: np.ndarray, k: int) -> list[str]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = unit @ (query / np.linalg.norm(query))
    return [f"r{i}" for i in np.argsort(-scores, kind="stable")[:k]]


def _reader_holding(lock: RWLock) -> tuple[threading.Thread, threading.Event]:
    """A thread that holds a read lock until the returned event is set."""
    reader_in, release = threading.Event(), threading.Event()

    def hold_read() -> None:
        with lock.read():
            reader_in.set()
            release.wait(WAIT_S)

    holder = threading.Thread(target=hold_read)
    holder.start()
    assert reader_in.wait(WAIT_S)
    return holder, release


def _until_a_writer_waits(lock: RWLock) -> None:
    deadline = time.monotonic() + WAIT_S
    while lock._writers_waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.005)


def test_read_lock_without_blocking_declines_while_a_writer_holds_or_waits() -> None:
    lock = RWLock()
    with lock.read(blocking=False):
        pass
    with lock.write(), pytest.raises(WouldBlock), lock.read(blocking=False):
        pass
    # A waiting writer also turns quick readers away (writer preference).
    holder, release = _reader_holding(lock)

    def write_once() -> None:
        with lock.write():
            pass

    writer = threading.Thread(target=write_once)
    writer.start()
    _until_a_writer_waits(lock)
    with pytest.raises(WouldBlock), lock.read(blocking=False):
        pass
    release.set()
    holder.join(WAIT_S)
    writer.join(WAIT_S)
    with lock.read(blocking=False):  # free again once the writer is done
        pass


def test_readers_queued_behind_a_writer_whose_wait_is_interrupted_get_the_lock() -> None:
    """The last reader out wakes only waiting writers; a writer that stops waiting (its wait
    raised) must wake the readers it held back itself (found in review of 963b379)."""

    class Interrupted(Exception):
        pass

    lock = RWLock()
    real_wait = lock._cond.wait

    def wait(timeout: float | None = None) -> bool:
        if threading.current_thread().name == "writer":
            real_wait(0.2)  # really waits, then is interrupted
            raise Interrupted
        return real_wait(timeout)

    lock._cond.wait = wait  # type: ignore[method-assign]
    holder, first_go = _reader_holding(lock)
    outcome: list[str] = []

    def writer() -> None:
        try:
            with lock.write():
                outcome.append("wrote")
        except Interrupted:
            outcome.append("interrupted")

    writing = threading.Thread(target=writer, name="writer")
    writing.start()
    _until_a_writer_waits(lock)
    second_in = threading.Event()

    def second_reader() -> None:
        with lock.read():  # queued: a writer waits
            second_in.set()

    queued = threading.Thread(target=second_reader, daemon=True)
    queued.start()
    writing.join(WAIT_S)
    assert outcome == ["interrupted"]
    first_go.set()
    holder.join(WAIT_S)
    assert second_in.wait(WAIT_S)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"filters": {"i": {"$lt": 5}}}, "a filter"),
        ({"exact": True}, "an exact scan"),
        ({"include_vectors": True}, "a database read"),
        ({"include_content": True}, "a database read"),
        ({"k": collection_module.QUICK_MAX_RESULTS + 1}, "many results"),
        ({"ef_search": collection_module.QUICK_MAX_EF + 1}, "a wide beam"),
    ],
)
def test_searches_that_are_not_quick_decline_before_any_work(
    loaded: tuple[TestClient[Litestar], np.ndarray], body: dict[str, Any], why: str
) -> None:
    client, vectors = loaded
    search: SearchService = _services(client).search
    kwargs = {"k": body.pop("k", 10), **body}
    with pytest.raises(WouldBlock):
        search.plan("quick", Query(vectors[0].tolist()), nonblocking=True, **kwargs)
    # ... and answer normally in a thread (here: directly, blocking allowed).
    result = search.run([search.plan("quick", Query(vectors[0].tolist()), **kwargs)])[0]
    assert result.hits, why


def test_a_large_fresh_segment_is_not_quick(
    loaded: tuple[TestClient[Litestar], np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = loaded
    runtime = _runtime(client)
    assert runtime.answers_quickly(10, None)
    # Unindexed rows are scanned exactly on every search: past the bound that is not quick.
    monkeypatch.setattr(collection_module, "QUICK_FRESH_ROWS", -1)
    assert not runtime.answers_quickly(10, None)


def test_quick_and_threaded_answers_are_identical(
    loaded: tuple[TestClient[Litestar], np.ndarray],
) -> None:
    client, vectors = loaded
    search: SearchService = _services(client).search
    for q in vectors[:20]:
        plan = search.plan("quick", Query(q.tolist()), k=7, nonblocking=True)
        quick = search.run([plan], nonblocking=True)[0]
        threaded = search.run([search.plan("quick", Query(q.tolist()), k=7)])[0]
        assert [(h.external_id, h.score) for h in quick.hits] == [
            (h.external_id, h.score) for h in threaded.hits
        ]
        ids = [f"r{i}" for i in range(0, ROWS, 3)]
        quick_rr = search.rerank("quick", Query(q.tolist()), ids, top_k=5, nonblocking=True)
        threaded_rr = search.rerank("quick", Query(q.tolist()), ids, top_k=5)
        assert [h.external_id for h in quick_rr.hits] == [h.external_id for h in threaded_rr.hits]


def test_a_held_lock_sends_the_search_to_a_thread_and_never_stalls_the_loop(
    loaded: tuple[TestClient[Litestar], np.ndarray],
) -> None:
    client, vectors = loaded
    runtime = _runtime(client)
    query = vectors[11]
    body = {"vector": query.tolist(), "k": 5}
    rerank_body = {"vector": query.tolist(), "candidates": [f"r{i}" for i in range(ROWS)]}
    with ThreadPoolExecutor(max_workers=3) as pool:
        with runtime.index_lock.write(), runtime.table_lock.write():
            search = pool.submit(client.post, "/v1/collections/quick/search", json=body)
            rerank = pool.submit(client.post, "/v1/collections/quick/rerank", json=rerank_body)
            time.sleep(0.2)  # let both reach the server
            # Had either waited for the lock on the event loop, this would time out.
            health = pool.submit(client.get, "/health").result(timeout=WAIT_S)
            assert health.status_code == 200
            assert not search.done()
            assert not rerank.done()
        found = search.result(timeout=WAIT_S)
        reranked = rerank.result(timeout=WAIT_S)
    assert found.status_code == 200, found.text
    got = [h["external_id"] for h in found.json()["data"]["results"]]
    exact = _exact_top(vectors, query, 5)
    assert len(set(got) & set(exact)) >= 4  # HNSW over 300 rows: near-exact
    assert reranked.status_code == 200, reranked.text
    assert reranked.json()["data"]["results"][0]["external_id"] == "r11"


def test_errors_from_the_quick_path_are_the_usual_errors(
    loaded: tuple[TestClient[Litestar], np.ndarray],
) -> None:
    client, _ = loaded
    wrong = client.post("/v1/collections/quick/search", json={"vector": [1.0, 2.0], "k": 3})
    assert wrong.status_code == 400
    assert wrong.json()["error"]["type"] == "dimension_mismatch"
    missing = client.post("/v1/collections/nope/search", json={"vector": [1.0] * DIM})
    assert missing.status_code == 404
    bad_k = client.post("/v1/collections/quick/search", json={"vector": [1.0] * DIM, "k": 0})
    assert bad_k.status_code == 400
