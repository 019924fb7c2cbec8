"""The request path's own costs, behind the figures docs/architecture.md and docs/benchmarks.md
cite:

1. a search request answered on the event loop vs through a worker thread (the ASGI app driven
   in process, no network: ``answers_quickly`` forced false for the threaded variant);
2. base64 vector decoding: ``binascii.a2b_base64(strict_mode=True)`` (what vecstore uses) vs
   ``base64.b64decode(validate=True)`` (what it used), per 1,000 vectors, and ``as_matrix``;
3. client CPU per search request against a live server: httpx vs the standard library's
   ``http.client`` (the comparison harness's client);
4. the query vector as a JSON float list vs base64 float32: the server's time per search in
   process (1.), and the client's CPU per request with the body encoded from numpy each time;
5. the hot-read lane (``api/hot_paths.py``) vs the same request routed by Litestar, in process
   (base64 query, on the loop), and a lone search ranked on lists
   (``CollectionRuntime._top_of_lone_hits``) vs the general path;
6. an HNSW index on huge pages (``vecstore.storage.huge_pages``) vs the same index on small
   pages: FAISS's time per single-query search at ef 32, two copies of one index searched in
   alternating rounds; and, on the small-page copy, four tiny numpy calls timed right after
   each search against the same four in a tight loop (what a search's cache sweep costs the
   Python that follows it);
7. looking up the rows of 1,000 external ids, as a rerank of 1,000 candidates does, in a row
   table of ``--index-vectors`` rows: through the table's dict vs through the sorted id
   fingerprints (``vecstore.storage.id_hashes``), the ids decoded from a JSON body for each
   call and the caches swept (a 64 MiB read) before each, as a request finds them; and the
   same for 1,000 ids the table does not hold; and, while the fingerprints are built, the
   longest wait of a thread that wakes every 0.2 ms (how long the build holds the GIL at a
   stretch), hashed in ``BUILD_CHUNK`` chunks as the indexer does vs in one call;
8. scoring 1,000 candidate rows of an index of ``--index-vectors`` rows, as a rerank does: the
   rows gathered into a new array and multiplied (``stored_vectors()[positions] @ q``, what
   rerank did) vs read in place by FAISS (``VectorIndex.scores_at``), caches swept before each.

Variants alternate in rounds and medians are reported, so a drifting host affects both alike.

    python -m benchmarks.run_request_path [--vectors 20000] [--requests 1000] [--rounds 5]
        [--index-vectors 100000] [--tag NAME]   # results as request-path-<date>-NAME.{json,md}
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import http.client
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import numpy as np

from benchmarks import machine
from benchmarks.client import ApiClient
from benchmarks.server import running_server
from vecstore.api.hot_paths import HotPaths

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DIM = 384


def _vectors(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    unit: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return unit


def _b64(rows: np.ndarray) -> list[str]:
    return [base64.b64encode(r.astype("<f4").tobytes()).decode("ascii") for r in rows]


# -- 1. loop vs thread, in process -----------------------------------------------------------------
class _InProcess:
    """The real app (``create_app``), driven through ASGI calls on this thread's event loop."""

    def __init__(self, data_dir: Path) -> None:
        from vecstore.app import create_app
        from vecstore.logs import configure_logging
        from vecstore.settings import Settings

        configure_logging("WARNING", False)
        self.key = "k" * 32
        settings = Settings.from_env(
            {}, data_dir=data_dir, admin_key=self.key, log_level="WARNING", preload_models=False
        )
        self.app: Any = create_app(settings)  # driven with plain dict messages

    async def call(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"x-api-key", self.key.encode()),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        sent = False
        status, chunks = 0, []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)

    async def lifespan(self, event: str) -> None:
        if event == "startup":
            self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

            async def receive() -> dict[str, Any]:
                return await self._queue.get()

            async def send(message: dict[str, Any]) -> None:
                await self._replies.put(message)

            scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
            self._task = asyncio.create_task(self.app(scope, receive, send))
        await self._queue.put({"type": f"lifespan.{event}"})
        await self._replies.get()


async def _loop_vs_thread(n: int, requests: int, rounds: int) -> dict[str, Any]:
    from vecstore.storage import collection

    runtime_class: Any = collection.CollectionRuntime  # its quick-path test is swapped below

    with tempfile.TemporaryDirectory(prefix="vecstore-path-") as tmp:
        app = _InProcess(Path(tmp) / "data")
        await app.lifespan("startup")
        try:
            while (await app.call("GET", "/ready"))[0] != 200:  # collections still loading
                await asyncio.sleep(0.05)
            create = {"name": "path", "dim": DIM, "metric": "cosine"}
            status, _ = await app.call("POST", "/v1/collections", msgspec.json.encode(create))
            assert status == 201, status
            rows = _vectors(n, 1)
            for start in range(0, n, 1000):
                items = [
                    {"external_id": f"v{i}", "vector": v}
                    for i, v in zip(
                        range(start, start + 1000), _b64(rows[start : start + 1000]), strict=False
                    )
                ]
                body = msgspec.json.encode({"items": items})
                status, _ = await app.call("POST", "/v1/collections/path/bulk_upsert", body)
                assert status == 200, status
            from vecstore.api.state import services_of

            runtime = services_of(app.app.state).engine.runtime("path")
            while runtime.index.ntotal < n:
                await asyncio.sleep(0.2)
            queries = _vectors(200, 2)
            bodies = [
                msgspec.json.encode({"vector": q.tolist(), "k": 10, "ef_search": 32})
                for q in queries
            ]
            b64_bodies = [
                msgspec.json.encode({"vector": v, "k": 10, "ef_search": 32}) for v in _b64(queries)
            ]
            quick = runtime_class.answers_quickly
            lone = runtime_class._top_of_lone_hits
            lane: HotPaths = app.app.state.hot_paths

            async def timed(
                on_loop: bool, these: list[bytes], routed: bool = False, general: bool = False
            ) -> float:
                runtime_class.answers_quickly = quick if on_loop else (lambda self, n, ef: False)
                # None: "not the usual case", so the lone search takes the general path
                runtime_class._top_of_lone_hits = (lambda *_: None) if general else lone
                lane.enabled = not routed
                t = time.perf_counter()
                for i in range(requests):
                    status, _ = await app.call(
                        "POST", "/v1/collections/path/search", these[i % len(these)]
                    )
                    assert status == 200, status
                return (time.perf_counter() - t) * 1000 / requests

            loop_ms, thread_ms, b64_ms, routed_ms, general_ms = [], [], [], [], []
            try:
                for _ in range(rounds):
                    loop_ms.append(await timed(True, bodies))
                    thread_ms.append(await timed(False, bodies))
                    b64_ms.append(await timed(True, b64_bodies))
                    routed_ms.append(await timed(True, b64_bodies, routed=True))
                    general_ms.append(await timed(True, b64_bodies, general=True))
            finally:
                runtime_class.answers_quickly = quick
                runtime_class._top_of_lone_hits = lone
                lane.enabled = True
        finally:
            await app.lifespan("shutdown")
    return {
        "vectors": n,
        "requests_per_round": requests,
        "on_loop_ms_per_request": statistics.median(loop_ms),
        "through_thread_ms_per_request": statistics.median(thread_ms),
        "on_loop_base64_query_ms_per_request": statistics.median(b64_ms),
        "routed_base64_query_ms_per_request": statistics.median(routed_ms),
        "general_path_base64_query_ms_per_request": statistics.median(general_ms),
        "rounds": {
            "on_loop": loop_ms,
            "through_thread": thread_ms,
            "on_loop_base64": b64_ms,
            "routed_base64": routed_ms,
            "general_path_base64": general_ms,
        },
    }


# -- 2. base64 decoding ---------------------------------------------------------------------------
def _best_ms(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1000


def _base64_decoding(repeats: int) -> dict[str, Any]:
    from vecstore.services.vectors import as_matrix

    rows = _b64(_vectors(1000, 3))
    return {
        "vectors": len(rows),
        "b64decode_validate_ms": _best_ms(
            lambda: [base64.b64decode(r, validate=True) for r in rows], repeats
        ),
        "a2b_base64_strict_ms": _best_ms(
            lambda: [binascii.a2b_base64(r, strict_mode=True) for r in rows], repeats
        ),
        "as_matrix_ms": _best_ms(
            lambda: as_matrix(rows, DIM, field="items", metric="cosine"), repeats
        ),
    }


# -- 3. client CPU: httpx vs http.client -----------------------------------------------------------
def _client_cpu(requests: int, rounds: int) -> dict[str, Any]:
    with running_server(extra_env={"VECSTORE_PRELOAD_MODELS": "false"}) as (base_url, key):
        headers = {"x-api-key": key, "content-type": "application/json"}
        with ApiClient(base_url, key) as setup:  # raises on an error status
            setup.post("/v1/collections", {"name": "path", "dim": DIM, "metric": "cosine"})
            items = [
                {"external_id": f"v{i}", "vector": v} for i, v in enumerate(_b64(_vectors(2000, 4)))
            ]
            for start in range(0, len(items), 1000):
                setup.post(
                    "/v1/collections/path/bulk_upsert", {"items": items[start : start + 1000]}
                )
        bodies = [msgspec.json.encode({"vector": q.tolist(), "k": 10}) for q in _vectors(100, 5)]
        path = "/v1/collections/path/search"
        url = urlsplit(base_url)

        def with_httpx() -> float:
            with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
                c0 = time.process_time()
                for i in range(requests):
                    client.post(path, content=bodies[i % len(bodies)]).raise_for_status()
                return (time.process_time() - c0) * 1000 / requests

        def with_http_client() -> float:
            conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
            try:
                c0 = time.process_time()
                for i in range(requests):
                    conn.request("POST", path, body=bodies[i % len(bodies)], headers=headers)
                    resp = conn.getresponse()
                    resp.read()
                    assert resp.status == 200, resp.status
                return (time.process_time() - c0) * 1000 / requests
            finally:
                conn.close()

        queries = _vectors(100, 5)

        def encoding_floats(q: np.ndarray) -> bytes:
            return json.dumps({"vector": q.tolist(), "k": 10}).encode()

        def encoding_base64(q: np.ndarray) -> bytes:
            vector = base64.b64encode(q.astype("<f4").tobytes()).decode("ascii")
            return json.dumps({"vector": vector, "k": 10}).encode()

        def encoded_per_request(encode: Callable[[np.ndarray], bytes]) -> float:
            """What a client does per search: encode the numpy query, send, read the answer."""
            conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
            try:
                c0 = time.process_time()
                for i in range(requests):
                    body = encode(queries[i % len(queries)])
                    conn.request("POST", path, body=body, headers=headers)
                    resp = conn.getresponse()
                    json.loads(resp.read())
                    assert resp.status == 200, resp.status
                return (time.process_time() - c0) * 1000 / requests
            finally:
                conn.close()

        runs: dict[str, list[float]] = {
            "httpx": [],
            "http.client": [],
            "floats_encoded": [],
            "base64_encoded": [],
        }
        for _ in range(rounds):
            runs["httpx"].append(with_httpx())
            runs["http.client"].append(with_http_client())
            runs["floats_encoded"].append(encoded_per_request(encoding_floats))
            runs["base64_encoded"].append(encoded_per_request(encoding_base64))
    return {
        "requests_per_round": requests,
        "httpx_client_cpu_ms_per_request": statistics.median(runs["httpx"]),
        "http_client_cpu_ms_per_request": statistics.median(runs["http.client"]),
        "float_query_client_cpu_ms_per_request": statistics.median(runs["floats_encoded"]),
        "base64_query_client_cpu_ms_per_request": statistics.median(runs["base64_encoded"]),
        "rounds": runs,
    }


# -- 6. huge pages, and the cache a search sweeps -------------------------------------------------
def _index_pages(n: int, queries: int, rounds: int) -> dict[str, Any]:
    import importlib

    faiss: Any = importlib.import_module("faiss")  # untyped, as in vector_index
    from vecstore.storage import huge_pages
    from vecstore.storage.vector_index import faiss_memory_regions

    small = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
    small.hnsw.efConstruction = 128
    small.add(_vectors(n, 6))
    huge = faiss.clone_index(small)  # the same graph and vectors, in memory of its own
    advised = huge_pages.advise(faiss_memory_regions(huge))
    for index in (small, huge):
        index.hnsw.efSearch = 32
    qs = _vectors(queries, 7)
    ids = np.arange(1000, dtype=np.int64)
    pos = np.arange(10)[None]

    def tiny() -> None:  # four calls of the kind a search's bookkeeping makes
        found = ids[pos]
        bool((pos < 0).any())
        ids.searchsorted(found)
        np.minimum(found, 5)

    def searches(index: Any, with_tiny: bool) -> tuple[float, float]:
        search_s = tiny_s = 0.0
        for i in range(queries):
            t = time.perf_counter()
            index.search(qs[i : i + 1], 10)
            t2 = time.perf_counter()
            if with_tiny:
                tiny()
            search_s += t2 - t
            tiny_s += time.perf_counter() - t2
        return search_s / queries * 1e6, tiny_s / queries * 1e6

    def tiny_alone() -> float:
        t = time.perf_counter()
        for _ in range(queries):
            tiny()
        return (time.perf_counter() - t) / queries * 1e6

    runs: dict[str, list[float]] = {"small": [], "huge": [], "after": [], "alone": []}
    for _ in range(rounds):
        small_us, after_us = searches(small, True)
        runs["small"].append(small_us)
        runs["after"].append(after_us)
        runs["huge"].append(searches(huge, False)[0])
        runs["alone"].append(tiny_alone())
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return {
        "vectors": n,
        "queries_per_round": queries,
        "transparent_hugepage": thp.read_text().strip() if thp.exists() else "absent",
        "advised_bytes": advised,
        "small_pages_search_us": statistics.median(runs["small"]),
        "huge_pages_search_us": statistics.median(runs["huge"]),
        "tiny_calls_after_search_us": statistics.median(runs["after"]),
        "tiny_calls_in_a_loop_us": statistics.median(runs["alone"]),
        "rounds": runs,
    }


def _build_gil_gaps(table: Any, rounds: int) -> dict[str, float]:
    """The longest wait, in ms, of a thread that wakes every 0.2 ms while the id fingerprints
    are built: in chunks (``BUILD_CHUNK``, as the indexer builds them) and in one call per half.
    Median over ``rounds``."""
    from vecstore.storage import id_hashes

    def longest_gap(chunk: int) -> float:
        saved, id_hashes.BUILD_CHUNK = id_hashes.BUILD_CHUNK, chunk
        gaps: list[float] = []
        done = threading.Event()

        def tick() -> None:
            last = time.perf_counter()
            while not done.is_set():
                time.sleep(0.0002)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticker = threading.Thread(target=tick)
        ticker.start()
        try:
            time.sleep(0.01)
            _, size, external_ids, rows = table.id_hashes_source()
            id_hashes.IdHashes.of(external_ids, rows, size)
            time.sleep(0.01)
        finally:
            done.set()
            ticker.join()
            id_hashes.BUILD_CHUNK = saved
        return max(gaps) * 1e3

    chunked, whole = [], []
    for _ in range(rounds):
        chunked.append(longest_gap(id_hashes.BUILD_CHUNK))
        whole.append(longest_gap(table.size))
    return {"chunked": statistics.median(chunked), "one_call": statistics.median(whole)}


def _id_lookups(n: int, calls: int, rounds: int) -> dict[str, Any]:
    from vecstore.storage import id_hashes
    from vecstore.storage.id_hashes import IdHashes
    from vecstore.storage.vector_table import VectorTable

    table = VectorTable(4)
    batch = 1000
    for start in range(0, n, batch):  # ids allocated among other objects, as a load leaves them
        stop = min(n, start + batch)
        table.append(
            np.arange(start + 1, stop + 1, dtype=np.int64),
            np.zeros((stop - start, 4), dtype=np.float32),
            [f"doc-{i}" for i in range(start, stop)],
            [json.dumps({"i": i, "tag": f"t{i % 97}"}).encode() for i in range(start, stop)],
        )
    t = time.perf_counter()
    _, size, external_ids, rows = table.id_hashes_source()
    snapshot = IdHashes.of(external_ids, rows, size)
    build_ms = (time.perf_counter() - t) * 1e3
    gil_gaps = _build_gil_gaps(table, rounds)
    rng = np.random.default_rng(8)
    bodies = [
        json.dumps([f"doc-{i}" for i in rng.choice(n, size=1000, replace=False)]).encode()
        for _ in range(calls)
    ]
    absent_bodies = [  # ids the table does not hold
        json.dumps([f"gone-{i}" for i in rng.choice(n, size=1000, replace=False)]).encode()
        for _ in range(calls)
    ]
    sweep = np.ones(64 << 17)  # 64 MiB
    decode = msgspec.json.Decoder(list[str]).decode

    def lookups(hashed: bool, asked: list[bytes]) -> float:
        table.id_hashes = snapshot if hashed else None
        spent = 0.0
        for body in asked:
            float(sweep.sum())
            ids = decode(body)
            t = time.perf_counter()
            table.rows_of_external(ids)
            spent += time.perf_counter() - t
        return spent / calls * 1e6

    runs: dict[str, list[float]] = {
        "dict": [],
        "fingerprints": [],
        "absent_dict": [],
        "absent_fingerprints": [],
    }
    for _ in range(rounds):
        runs["dict"].append(lookups(False, bodies))
        runs["fingerprints"].append(lookups(True, bodies))
        runs["absent_dict"].append(lookups(False, absent_bodies))
        runs["absent_fingerprints"].append(lookups(True, absent_bodies))
    table.id_hashes = snapshot
    for body in bodies[:20] + absent_bodies[:20]:  # both ways agree
        ids = decode(body)
        expected = [table.row_by_external.get(i, -1) for i in ids]
        assert table.rows_of_external(ids).tolist() == expected
    return {
        "rows": n,
        "ids_per_call": 1000,
        "calls_per_round": calls,
        "snapshot_build_ms": build_ms,
        "build_longest_gil_gap_ms": gil_gaps,
        "build_chunk": id_hashes.BUILD_CHUNK,
        "snapshot_bytes": snapshot.nbytes,
        "dict_us": statistics.median(runs["dict"]),
        "fingerprints_us": statistics.median(runs["fingerprints"]),
        "absent_dict_us": statistics.median(runs["absent_dict"]),
        "absent_fingerprints_us": statistics.median(runs["absent_fingerprints"]),
        "rounds": runs,
    }


# -- 8. scoring rerank candidates ----------------------------------------------------------------
def _candidate_scoring(n: int, calls: int, rounds: int) -> dict[str, Any]:
    from vecstore.domain import IndexParams
    from vecstore.storage.vector_index import VectorIndex

    # A flat index keeps its vectors in the same layout as HNSW-flat's storage (one float32
    # array by position), without a graph to build.
    index = VectorIndex(DIM, "cosine", IndexParams(type="flat"))
    index.add(np.arange(n, dtype=np.int64), _vectors(n, 9))
    stored = index.stored_vectors()
    rng = np.random.default_rng(10)
    picks = [np.sort(rng.choice(n, size=1000, replace=False)) for _ in range(calls)]
    qs = _vectors(calls, 11)
    sweep = np.ones(64 << 17)  # 64 MiB

    def scoring(in_place: bool) -> float:
        spent = 0.0
        for positions, q in zip(picks, qs, strict=True):
            float(sweep.sum())
            t = time.perf_counter()
            if in_place:
                index.scores_at(q, positions)
            else:
                stored[positions] @ q
            spent += time.perf_counter() - t
        return spent / calls * 1e6

    runs: dict[str, list[float]] = {"gathered": [], "in_place": []}
    for _ in range(rounds):
        runs["gathered"].append(scoring(False))
        runs["in_place"].append(scoring(True))
    for positions, q in zip(picks[:20], qs[:20], strict=True):  # both ways agree
        np.testing.assert_allclose(
            index.scores_at(q, positions), stored[positions] @ q, rtol=1e-5, atol=1e-6
        )
    return {
        "rows": n,
        "candidates_per_call": 1000,
        "calls_per_round": calls,
        "gathered_us": statistics.median(runs["gathered"]),
        "in_place_us": statistics.median(runs["in_place"]),
        "rounds": runs,
    }


def _markdown(r: dict[str, Any]) -> str:
    lt, b, c, ip = r["loop_vs_thread"], r["base64"], r["client_cpu"], r["index_pages"]
    il = r["id_lookups"]
    cs = r["candidate_scoring"]
    return "\n".join(
        [
            f"# Request path — {r['date']}",
            "",
            f"Machine: {r['machine']['nproc']} CPUs ({r['machine']['cpu_model']}). Medians of "
            f"{r['rounds']} alternating rounds. `python -m benchmarks.run_request_path`.",
            "",
            "| measurement | figure |",
            "|---|---:|",
            f"| search request on the event loop ({lt['vectors']:,} vectors, in process) "
            f"| {lt['on_loop_ms_per_request']:.3f} ms |",
            f"| the same through a worker thread | {lt['through_thread_ms_per_request']:.3f} ms |",
            f"| on the event loop, query vector as base64 "
            f"| {lt['on_loop_base64_query_ms_per_request']:.3f} ms |",
            f"| the same routed by Litestar (hot-read lane off) "
            f"| {lt.get('routed_base64_query_ms_per_request', float('nan')):.3f} ms |",
            f"| on the loop, base64, lone search on the general path (lists off) "
            f"| {lt['general_path_base64_query_ms_per_request']:.3f} ms |",
            f"| `b64decode(validate=True)`, {b['vectors']:,} vectors of {DIM} "
            f"| {b['b64decode_validate_ms']:.2f} ms |",
            f"| `a2b_base64(strict_mode=True)`, same | {b['a2b_base64_strict_ms']:.2f} ms |",
            f"| `as_matrix` (decode and validate), same | {b['as_matrix_ms']:.2f} ms |",
            f"| client CPU per search request, httpx | "
            f"{c['httpx_client_cpu_ms_per_request']:.3f} ms |",
            f"| client CPU per search request, `http.client` | "
            f"{c['http_client_cpu_ms_per_request']:.3f} ms |",
            f"| client CPU per search, body encoded from numpy each time: float list "
            f"| {c['float_query_client_cpu_ms_per_request']:.3f} ms |",
            f"| the same, query vector as base64 "
            f"| {c['base64_query_client_cpu_ms_per_request']:.3f} ms |",
            f"| FAISS HNSW search, ef 32, {ip['vectors']:,} vectors, small pages "
            f"| {ip['small_pages_search_us']:.1f} µs |",
            f"| the same index on huge pages ({ip['advised_bytes'] / 2**20:,.0f} MiB advised; "
            f"THP `{ip['transparent_hugepage']}`) | {ip['huge_pages_search_us']:.1f} µs |",
            f"| four tiny numpy calls right after a search | "
            f"{ip['tiny_calls_after_search_us']:.1f} µs |",
            f"| the same four in a tight loop | {ip['tiny_calls_in_a_loop_us']:.1f} µs |",
            f"| rows of 1,000 external ids among {il['rows']:,}, through the dict "
            f"| {il['dict_us']:.0f} µs |",
            f"| the same through the id fingerprints ({il['snapshot_bytes'] / 2**20:.1f} MiB, "
            f"built in {il['snapshot_build_ms']:.0f} ms) | {il['fingerprints_us']:.0f} µs |",
            f"| 1,000 ids the table does not hold, through the dict "
            f"| {il['absent_dict_us']:.0f} µs |",
            f"| the same through the id fingerprints | {il['absent_fingerprints_us']:.0f} µs |",
            f"| longest wait of a 0.2 ms ticker thread while the fingerprints are built, hashed "
            f"in chunks of {il['build_chunk']:,} "
            f"| {il['build_longest_gil_gap_ms']['chunked']:.1f} ms |",
            f"| the same, hashed in one call per half "
            f"| {il['build_longest_gil_gap_ms']['one_call']:.1f} ms |",
            f"| scores of 1,000 candidate rows among {cs['rows']:,}, gathered then multiplied "
            f"| {cs['gathered_us']:.0f} µs |",
            f"| the same read in place by FAISS (`VectorIndex.scores_at`) "
            f"| {cs['in_place_us']:.0f} µs |",
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run_request_path", description=__doc__)
    p.add_argument("--vectors", type=int, default=20000)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--index-vectors", type=int, default=100000, help="for the huge-page part")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--tag", default="", help="results as request-path-<date>-TAG")
    args = p.parse_args(argv)
    results = {
        "suite": "request_path",
        "date": date.today().isoformat(),
        "machine": machine.describe(),
        "rounds": args.rounds,
        "loop_vs_thread": asyncio.run(_loop_vs_thread(args.vectors, args.requests, args.rounds)),
        "base64": _base64_decoding(repeats=10 * args.rounds),
        "client_cpu": _client_cpu(args.requests, args.rounds),
        "index_pages": _index_pages(args.index_vectors, args.requests, args.rounds),
        "id_lookups": _id_lookups(args.index_vectors, args.requests // 5, args.rounds),
        "candidate_scoring": _candidate_scoring(
            args.index_vectors, args.requests // 5, args.rounds
        ),
    }
    stem = f"request-path-{results['date']}{'-' + args.tag if args.tag else ''}"
    write_results(args.out, stem, results, _markdown(results))
    return 0


def write_results(out: Path, stem: str, results: dict[str, Any], text: str) -> None:
    """``<out>/<stem>.json`` and ``.md`` (``text``, also printed)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
