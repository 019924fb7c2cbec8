"""Run every available peer on a tiny clustered data set and print what each gets right.

``python -m benchmarks.peers.smoke`` (from the repository root, in a venv with the ``peers``
extra). For each peer, in turn and alone: start it in a fresh temporary directory, create the
collection with vecstore's default index parameters (m=32, ef_construction=128, cosine), ingest
the data set in batches of 1,000 from 2 threads on the same object, finish indexing, then, for
every knob value, recall@10 against exact numpy ground truth for plain search and for filtered
search at 1 % and 10 % selectivity, with the share of short answers (fewer than min(k,
matching) ids) and of answers breaking the filter. Then fetch-by-id (are the stored vectors the
ones sent?), 2 concurrent searching threads on ``client_for_thread()`` objects, a restart, and
the server's RSS. A peer that is not installed is skipped with its message.

Timings here are rough (2,000 vectors, one run, shared CPUs): the point is that every adapter
works end to end and that the recall numbers are sane, not to rank anyone.
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from benchmarks import datasets
from benchmarks.groundtruth import exact_top_k
from benchmarks.metrics import recall_at_k, rss_mb
from benchmarks.peers import PEERS, Peer, PeerUnavailable
from benchmarks.peers.base import DEFAULT_KNOB, FloatArray

K = 10
M = 32
EF_CONSTRUCTION = 128
BATCH = 1000
FILTERS = (1, 10)  # bucket < 1 → 1 %, bucket < 10 → 10 %


class PeerTimeout(Exception):
    pass


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise PeerTimeout("peer took longer than --peer-timeout")


class Truth:
    """Exact top-k of every query, unfiltered and for each filter, as ids."""

    def __init__(self, data: datasets.Dataset) -> None:
        self.vectors = data.vectors
        self.queries = data.queries
        self.buckets = data.buckets
        base = datasets.unit(data.vectors)
        self.plain = self._ids(exact_top_k(base, data.queries, K))
        self.filtered = {
            b: self._ids(
                exact_top_k(base, data.queries, K, subset=np.flatnonzero(self.buckets < b))
            )
            for b in FILTERS
        }
        self.matching = {b: int((self.buckets < b).sum()) for b in FILTERS}

    @staticmethod
    def _ids(rows: list[Any]) -> list[list[str]]:
        return [[datasets.external_id(int(i)) for i in r] for r in rows]


def search_pass(
    peer: Peer, truth: Truth, bucket_lt: int | None
) -> tuple[float, int, int, float, list[list[str]]]:
    """(recall, short answers, filter violations, p50 ms, results) over all queries."""
    found: list[list[str]] = []
    times: list[float] = []
    for q in truth.queries:
        t0 = time.perf_counter()
        found.append(peer.search(q, K, bucket_lt))
        times.append(time.perf_counter() - t0)
    want = truth.plain if bucket_lt is None else truth.filtered[bucket_lt]
    need = K if bucket_lt is None else min(K, truth.matching[bucket_lt])
    short = sum(1 for f in found if len(f) < need)
    bad = 0
    if bucket_lt is not None:
        bad = sum(
            1 for f in found if any(truth.buckets[datasets.index_of(i)] >= bucket_lt for i in f)
        )
    recall = recall_at_k(
        [[datasets.index_of(i) for i in f] for f in found],
        [[datasets.index_of(i) for i in w] for w in want],
    )
    return recall, short, bad, float(np.median(times) * 1000), found


def ingest(peer: Peer, data: datasets.Dataset, threads: int) -> float:
    ids = [datasets.external_id(i) for i in range(data.n)]
    buckets = [int(b) for b in data.buckets]
    batches = [(s, min(s + BATCH, data.n)) for s in range(0, data.n, BATCH)]

    def send(span: tuple[int, int]) -> None:
        a, b = span
        peer.ingest(ids[a:b], data.vectors[a:b], buckets[a:b])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(send, batches))
    return time.perf_counter() - t0


def concurrent_agreement(peer: Peer, truth: Truth, reference: list[list[str]]) -> str:
    """2 threads, each on its own ``client_for_thread()``, searching halves of the queries."""
    clients = [peer.client_for_thread() for _ in range(2)]
    out: dict[int, list[str]] = {}
    lock = threading.Lock()

    def run(c: int) -> None:
        for qi in range(c, len(truth.queries), 2):
            res = clients[c].search(truth.queries[qi], K)
            with lock:
                out[qi] = res

    workers = [threading.Thread(target=run, args=(c,)) for c in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for c in clients:
        if c is not peer:
            c.stop()
    same = sum(1 for qi, res in out.items() if res == reference[qi])
    return f"{same}/{len(truth.queries)} answers identical to the single-thread ones"


def fetch_check(peer: Peer, vectors: FloatArray, rng: np.random.Generator) -> str:
    rows = rng.choice(vectors.shape[0], size=100, replace=False)
    got = peer.fetch([datasets.external_id(int(r)) for r in rows])
    want = vectors[rows]
    exact = int(np.all(got == want, axis=1).sum())
    diff = float(np.abs(got - want).max())
    cos = float(np.min(np.sum(datasets.unit(got) * datasets.unit(want), axis=1)))
    return f"{exact}/100 bit-identical, max |diff| {diff:.2e}, min cosine {cos:.7f}"


def run_peer(name: str, data: datasets.Dataset, truth: Truth, threads: int) -> None:
    peer = PEERS[name]()
    print(f"\n== {name} ({peer.kind})")
    with tempfile.TemporaryDirectory(prefix=f"vecstore-peer-{name}-") as tmp:
        t0 = time.perf_counter()
        try:
            peer.start(Path(tmp))
        except PeerUnavailable as exc:
            print(f"   skipped: {exc}")
            return
        try:
            start_s = time.perf_counter() - t0
            peer.create(data.dim, M, EF_CONSTRUCTION)
            ingest_s = ingest(peer, data, threads)
            t0 = time.perf_counter()
            peer.finish_indexing()
            index_s = time.perf_counter() - t0
            versions = ", ".join(f"{k} {v}" for k, v in peer.versions().items())
            print(f"   {versions}\n   index: {peer.index_desc}")
            print(
                f"   start {start_s:.1f} s | ingest {data.n} in {ingest_s:.2f} s "
                f"({data.n / ingest_s:,.0f}/s, {threads} threads) | finish_indexing {index_s:.2f} s"
            )
            print(
                f"   {peer.knob_name:>14}  recall@10  1%: recall short bad  "
                "10%: recall short bad  p50 ms (plain/1%/10%)"
            )
            reference: list[list[str]] = []
            for knob in peer.knobs:
                peer.set_knob(knob)
                r, _, _, p50, found = search_pass(peer, truth, None)
                if knob == DEFAULT_KNOB:
                    reference = found
                cells = []
                lat = [f"{p50:.2f}"]
                for b in FILTERS:
                    fr, fs, fb, fp50, _ = search_pass(peer, truth, b)
                    cells.append(f"{fr:.3f} {fs:>5} {fb:>3}")
                    lat.append(f"{fp50:.2f}")
                print(f"   {knob:>14}  {r:9.3f}      {cells[0]}       {cells[1]}  {'/'.join(lat)}")
            peer.set_knob(DEFAULT_KNOB)
            if not reference:
                reference = search_pass(peer, truth, None)[4]
            plan = getattr(peer, "plan", None)
            if callable(plan):
                for flt in (None, *FILTERS):
                    print(f"   plan (bucket < {flt}): {plan(truth.queries[0], K, flt)}")
            print(f"   fetch: {fetch_check(peer, data.vectors, np.random.default_rng(1))}")
            print(f"   2 threads: {concurrent_agreement(peer, truth, reference)}")
            pids = peer.memory_pids()
            if pids:
                print(f"   server RSS {rss_mb(pids):.0f} MB over {len(pids)} process(es)")
            t0 = time.perf_counter()
            peer.restart()
            restart_s = time.perf_counter() - t0
            peer.set_knob(DEFAULT_KNOB)
            r, *_ = search_pass(peer, truth, None)
            print(
                f"   restart {restart_s:.2f} s, then recall@10 {r:.3f} "
                f"at {peer.knob_name}={DEFAULT_KNOB}"
            )
        except PeerTimeout:
            print(f"   FAILED: timed out\n{traceback.format_exc(limit=3)}")
        except Exception:
            print(f"   FAILED:\n{traceback.format_exc()}")
        finally:
            peer.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=2000, help="vectors ingested")
    parser.add_argument("--queries", type=int, default=100, help="query vectors")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated peer names")
    parser.add_argument("--threads", type=int, default=2, help="ingest threads")
    parser.add_argument("--peer-timeout", type=int, default=600, help="seconds per peer")
    args = parser.parse_args(argv)
    names = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [p for p in names if p not in PEERS]
    if unknown:
        parser.error(f"unknown peers: {', '.join(unknown)}; known: {', '.join(PEERS)}")
    with tempfile.TemporaryDirectory(prefix="vecstore-peer-data-") as cache:
        data = datasets.load(args.n, args.queries, cache_dir=Path(cache))
    truth = Truth(data)
    print(
        f"data: {data.n} x {data.dim} clustered unit vectors, {args.queries} queries, k={K}, "
        f"m={M}, ef_construction={EF_CONSTRUCTION}; filters bucket<1 ({truth.matching[1]} rows) "
        f"and bucket<10 ({truth.matching[10]} rows)"
    )
    signal.signal(signal.SIGALRM, _on_alarm)
    for name in names:
        signal.alarm(args.peer_timeout)
        try:
            run_peer(name, data, truth, args.threads)
        finally:
            signal.alarm(0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
