"""The workloads of the side-by-side comparison, each a function of a ``Peer`` and a data set,
so every system gets exactly the same work through the same motions.

Timing is client-side wall time (``time.perf_counter``) around each call; QPS is completed
calls ÷ the pass's wall time. Every pass is bounded by a time budget and says when it stopped
early (``timed_out``): a slow system costs the run minutes, never hours.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks import machine
from benchmarks.metrics import latency_ms
from benchmarks.peers.base import FloatArray, Peer

K = 10
INGEST_BATCH = 1000
INGEST_THREADS = 2
WARMUP_QUERIES = 20
FILTERS = {"1%": 1, "10%": 10}  # bucket < n, with bucket = row % 100
IntArray = npt.NDArray[np.int64]


def external_id(row: int) -> str:
    return f"v{row}"


def row_of(ext: str) -> int:
    return int(ext[1:])


@dataclass(frozen=True)
class Work:
    """What every system is given: the stored rows, the queries and their exact answers."""

    train: FloatArray  # (n, d), unit rows (cosine)
    queries: FloatArray  # (q, d)
    buckets: IntArray  # (n,)
    truth: IntArray  # (q, >= K) exact top rows over everything
    filtered_truth: dict[str, IntArray]  # FILTERS key -> (q, >= K), -1 padded

    @property
    def n(self) -> int:
        return int(self.train.shape[0])


# -- measuring helpers ----------------------------------------------------------------------------
def _timed_calls(
    calls: Sequence[Callable[[], Any]], *, budget_s: float
) -> tuple[list[Any], list[float], float, bool]:
    """Run ``calls`` in order on this thread: (results, latencies s, wall s, stopped early)."""
    out: list[Any] = []
    lat: list[float] = []
    start = time.perf_counter()
    for call in calls:
        t = time.perf_counter()
        out.append(call())
        lat.append(time.perf_counter() - t)
        if t - start > budget_s:
            break
    return out, lat, time.perf_counter() - start, len(out) < len(calls)


def _pass_figures(latencies_s: Sequence[float], wall_s: float, planned: int) -> dict[str, Any]:
    done = len(latencies_s)
    return {
        "completed": done,
        "planned": planned,
        "timed_out": done < planned,
        "wall_s": wall_s,
        "qps": done / wall_s if wall_s > 0 else 0.0,
        "latency": latency_ms(np.asarray(latencies_s, dtype=np.float64)),
    }


def recall(found: Sequence[Sequence[str]], truth: IntArray, k: int = K) -> float:
    """Mean |found ∩ true top-k| / |true top-k| (truth rows padded with -1 have fewer)."""
    scores = []
    for ids, row in zip(found, truth, strict=False):
        want = {int(r) for r in row[:k] if r >= 0}
        got = {row_of(i) for i in ids[:k]}
        scores.append(len(want & got) / len(want) if want else 1.0)
    return float(np.mean(scores)) if scores else float("nan")


# -- ingest ---------------------------------------------------------------------------------------
def ingest(peer: Peer, work: Work, *, budget_s: float) -> dict[str, Any]:
    """Batches of ``INGEST_BATCH`` from ``INGEST_THREADS`` threads (each its own client), then
    ``finish_indexing``. *acknowledged*: vectors ÷ time until the last batch was accepted;
    *indexed*: time from the first batch until every vector is searchable through the index."""
    starts = list(range(0, work.n, INGEST_BATCH))
    lanes = [starts[t::INGEST_THREADS] for t in range(INGEST_THREADS)]
    errors: list[BaseException] = []
    batch_s: list[float] = []
    lock = threading.Lock()
    t0 = time.perf_counter()

    def lane(offsets: list[int]) -> None:
        client = peer.client_for_thread()
        try:
            for s in offsets:
                if time.perf_counter() - t0 > budget_s:
                    raise TimeoutError(f"ingest exceeded its {budget_s:.0f} s budget")
                e = min(s + INGEST_BATCH, work.n)
                t = time.perf_counter()
                client.ingest(
                    [external_id(i) for i in range(s, e)],
                    work.train[s:e],
                    work.buckets[s:e].tolist(),
                )
                with lock:
                    batch_s.append(time.perf_counter() - t)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=lane, args=(o,), daemon=True) for o in lanes]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    acked = time.perf_counter()
    peer.finish_indexing()
    indexed = time.perf_counter()
    return {
        "vectors": work.n,
        "batch_size": INGEST_BATCH,
        "threads": INGEST_THREADS,
        "acknowledged_s": acked - t0,
        "acknowledged_vectors_per_s": work.n / (acked - t0),
        "indexed_s": indexed - t0,
        "index_after_ack_s": indexed - acked,
        "batch_latency": latency_ms(np.asarray(batch_s, dtype=np.float64)),
    }


# -- search ---------------------------------------------------------------------------------------
def search_single(
    peer: Peer, work: Work, *, bucket_lt: int | None, truth: IntArray, budget_s: float
) -> dict[str, Any]:
    """Every query once, one client; recall@10 against ``truth`` and short answers."""
    queries = work.queries
    warm = [queries[i % len(queries)] for i in range(WARMUP_QUERIES)]
    for q in warm:
        peer.search(q, K, bucket_lt)
    calls = [lambda q=q: peer.search(q, K, bucket_lt) for q in queries]
    found, lat, wall, _ = _timed_calls(calls, budget_s=budget_s)
    out = _pass_figures(lat, wall, len(calls))
    out["recall@10"] = recall(found, truth[: len(found)])
    out["short_answers"] = sum(1 for ids in found if len(ids) < K)
    if bucket_lt is not None:
        out["off_filter_hits"] = sum(
            1 for ids in found for i in ids if work.buckets[row_of(i)] >= bucket_lt
        )
    return out


def search_concurrent(
    peer: Peer, work: Work, *, threads: int, per_thread: int, budget_s: float
) -> dict[str, Any]:
    """``threads`` clients, each its own connection, ``per_thread`` queries each (staggered
    through the query set), all starting together."""
    clients = [peer.client_for_thread() for _ in range(threads)]
    nq = len(work.queries)
    step = max(1, nq // threads)
    plans = [[(t * step + j) % nq for j in range(per_thread)] for t in range(threads)]
    latencies: list[list[float]] = [[] for _ in range(threads)]
    found: dict[int, list[str]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)
    deadline = time.perf_counter() + budget_s  # lanes start at the barrier, a moment later

    def lane(t: int) -> None:
        try:
            barrier.wait()
            for qi in plans[t]:
                s = time.perf_counter()
                ids = clients[t].search(work.queries[qi], K)
                latencies[t].append(time.perf_counter() - s)
                found[qi] = ids
                if s > deadline:
                    break
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=lane, args=(t,), daemon=True) for t in range(threads)]
    for th in pool:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in pool:
        th.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    flat = [x for lane_lat in latencies for x in lane_lat]
    out = _pass_figures(flat, wall, threads * per_thread)
    out["threads"] = threads
    rows = sorted(found)
    out["recall@10"] = recall([found[r] for r in rows], work.truth[rows])
    return out


def sweep(
    peer: Peer,
    work: Work,
    *,
    knobs: Sequence[int],
    threads: Sequence[int],
    per_thread: int,
    budget_s: float,
) -> list[dict[str, Any]]:
    """The search-time knob from cheap to costly: single-client accuracy and latency, then the
    concurrent passes, at each setting."""
    out = []
    for knob in knobs:
        peer.set_knob(knob)
        row: dict[str, Any] = {"knob": knob}
        row["single"] = search_single(
            peer, work, bucket_lt=None, truth=work.truth, budget_s=budget_s
        )
        row["concurrent"] = [
            search_concurrent(peer, work, threads=t, per_thread=per_thread, budget_s=budget_s)
            for t in threads
            if t > 1
        ]
        out.append(row)
    return out


def filtered(peer: Peer, work: Work, *, knob: int, budget_s: float) -> dict[str, Any]:
    peer.set_knob(knob)
    out: dict[str, Any] = {"knob": knob}
    for name, below in FILTERS.items():
        res = search_single(
            peer, work, bucket_lt=below, truth=work.filtered_truth[name], budget_s=budget_s
        )
        res["matching"] = int((work.buckets < below).sum())
        out[name] = res
    return out


# -- rerank ---------------------------------------------------------------------------------------
def rerank(
    peer: Peer, work: Work, *, candidates: int, queries: int, budget_s: float, seed: int = 7
) -> dict[str, Any]:
    """The best 10 of ``candidates`` random stored ids by exact cosine. vecstore answers it
    with its rerank endpoint; for every other system the client fetches the stored vectors by
    id and scores them with numpy — what their users do today."""
    rng = np.random.default_rng([seed, candidates])
    size = min(candidates, work.n)
    picks = [rng.choice(work.n, size=size, replace=False) for _ in range(queries)]
    own = getattr(peer, "rerank", None)

    def by_client(q: FloatArray, ids: list[str]) -> list[str]:
        vectors = peer.fetch(ids)
        norms = np.maximum(np.linalg.norm(vectors, axis=1), 1e-12)
        scores = (vectors @ q) / norms
        best = np.argsort(-scores, kind="stable")[:K]
        return [ids[i] for i in best]

    def one(qi: int) -> list[str]:
        ids = [external_id(int(r)) for r in picks[qi]]
        q = work.queries[qi % len(work.queries)]
        if own is not None:
            result: list[str] = own(q, ids, K)
            return result
        return by_client(q, ids)

    for i in range(min(WARMUP_QUERIES, queries)):
        one(i)
    calls = [lambda i=i: one(i) for i in range(queries)]
    found, lat, wall, _ = _timed_calls(calls, budget_s=budget_s)
    agree = []
    for qi, ids in enumerate(found):
        rows = picks[qi]
        q = work.queries[qi % len(work.queries)]
        exact = rows[np.argsort(-(work.train[rows] @ q), kind="stable")[:K]]
        agree.append(len({row_of(i) for i in ids} & {int(r) for r in exact}) / K)
    out = _pass_figures(lat, wall, queries)
    out["candidates"] = size
    out["how"] = "server rerank endpoint" if own is not None else "fetch by id + numpy"
    out["top10_agreement"] = float(np.mean(agree)) if agree else float("nan")
    return out


# -- settling -------------------------------------------------------------------------------------
def settle(
    pids: Callable[[], list[int]],
    *,
    budget_s: float,
    idle_cores: float = 0.05,
    window_s: float = 1.0,
    windows: int = 2,
) -> dict[str, Any]:
    """Wait (at most ``budget_s``) until the system's processes have used under ``idle_cores``
    for ``windows`` windows in a row: background work after indexing (vecstore's index
    checkpoint, a database's compaction or vacuum) finishes before search is measured, for
    every system alike. Returns how long it took and whether it settled."""
    start = time.monotonic()
    calm = 0
    used = float("nan")
    while time.monotonic() - start < budget_s:
        procs = pids()
        before = sum(machine.process_cpu_s(p) for p in procs)
        t = time.monotonic()
        time.sleep(window_s)
        used = (sum(machine.process_cpu_s(p) for p in procs) - before) / (time.monotonic() - t)
        calm = calm + 1 if used < idle_cores else 0
        if calm >= windows:
            break
    return {
        "waited_s": round(time.monotonic() - start, 1),
        "settled": calm >= windows,
        "last_cores": round(used, 3),
    }


# -- restart and memory ----------------------------------------------------------------------------
def restart(peer: Peer, work: Work) -> dict[str, Any]:
    t = time.perf_counter()
    peer.restart()
    seconds = time.perf_counter() - t
    check = [peer.search(q, K) for q in work.queries[:50]]
    return {"seconds": seconds, "recall@10_after": recall(check, work.truth[:50])}


def _memory_of(pid: int) -> tuple[int, int]:
    """(RSS, PSS) bytes of one process; PSS shares pages among the processes using them, so a
    sum over a process tree (PostgreSQL's backends) is not double-counted."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, pss


class MemorySampler:
    """Samples the peer's processes (or, for an embedded peer, this process) every
    ``interval_s`` on a background thread; keeps the peaks and the last sample."""

    def __init__(self, pids: Callable[[], list[int]], interval_s: float = 0.5) -> None:
        self._pids = pids
        self.interval_s = interval_s
        self.peak_rss = self.peak_pss = self.last_rss = self.last_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> tuple[int, int]:
        rss = pss = 0
        for pid in self._pids():
            r, p = _memory_of(pid)
            rss, pss = rss + r, pss + p
        self.last_rss, self.last_pss = rss, pss
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
        return rss, pss

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def figures(self) -> dict[str, int]:
        return {
            "peak_rss_bytes": self.peak_rss,
            "peak_pss_bytes": self.peak_pss,
            "last_rss_bytes": self.last_rss,
            "last_pss_bytes": self.last_pss,
        }


def hnsw_flat_bytes(n: int, dim: int, m: int) -> int:
    """FAISS ``IndexHNSWFlat``'s own memory: the float32 vectors, 2·M int32 neighbour slots per
    vector on level 0 plus M per upper level (a vector reaches level l with probability
    (1/M)^l, so about 1/(M-1) upper levels per vector), and per-vector level and offset words."""
    upper_levels = 1 / (m - 1) if m > 1 else 0.0
    return int(n * (4 * dim + 4 * 2 * m + 4 * m * upper_levels + 4 + 8))
