"""vecstore side by side with the databases users would pick instead, on identical work in one
run: ``python -m benchmarks.compare`` (or ``make bench-compare``).

    python -m benchmarks.compare [--dataset docs-100k|docs-10k|clustered-N|hdf5:PATH]
                                 [--systems vecstore,faiss,chroma,pgvector,milvus-lite,lancedb]
                                 [--queries 1000] [--smoke] [--out DIR]

Each system in turn, in a fresh working directory: start, create a cosine collection with HNSW
M=32 / efConstruction=128 (vecstore's default), ingest, wait until indexed, sweep the
search-time knob (single client, then 8 clients), filtered search at 1 % and 10 %, rerank of 100
and 1,000 candidate ids, a restart; the peer's memory is sampled throughout. A peer that is not
installed or does not start is skipped with its message. Then the sweep and the rerank passes
run ``--rounds`` times in all: the server systems stay up and are visited in turn, in
alternating order; an embedded system repeats them in its own turn. Each pass reports its median
round (``compare_rounds``). Results:
``benchmarks/results/compare-<date>-<dataset>.{json,md}`` and PNG plots.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import compare_rounds, machine, report_compare, suite
from benchmarks import compare_workloads as cw
from benchmarks.groundtruth import exact_top_k
from benchmarks.peers import PEERS, Peer, PeerUnavailable
from benchmarks.peers.base import DEFAULT_KNOB, unit_rows
from benchmarks.peers.vecstore_peer import VecstorePeer
from benchmarks.server import sigterm_unwinds

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("vecstore", "faiss", "chroma", "pgvector", "milvus-lite", "lancedb")
M, EF_CONSTRUCTION = 32, 128
TRUTH_K = 100


def _list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _ints(text: str) -> list[int]:
    return [int(p) for p in _list(text)]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    p.add_argument("--dataset", default="docs-100k")
    p.add_argument("--systems", type=_list, default=list(SYSTEMS))
    p.add_argument("--queries", type=int, default=1000, help="queries per accuracy pass")
    p.add_argument("--knobs", type=_ints, default=None, help="default: each peer's sweep")
    p.add_argument("--threads", type=_ints, default=[1, 8])
    p.add_argument("--per-thread", type=int, default=200)
    p.add_argument("--rerank-sizes", type=_ints, default=[100, 1000])
    p.add_argument("--rerank-queries", type=int, default=200)
    p.add_argument("--phase-budget", type=float, default=240.0, help="seconds per pass, at most")
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="sweep and rerank passes per system; each pass reports its median round",
    )
    p.add_argument("--wait-quiet", type=float, default=60.0, help="before each system (0: no)")
    p.add_argument(
        "--quiet-round-trip-us",
        type=float,
        default=0.0,
        help="also wait until machine.round_trip_us's p50 is below this (0: only record it)",
    )
    p.add_argument("--smoke", action="store_true", help="tiny counts; use --out /tmp/...")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--render", type=Path, default=None, metavar="JSON", help="measure nothing")
    p.add_argument("--plot-python", type=Path, default=None, help="a python with matplotlib")
    args = p.parse_args(argv)
    if args.smoke:
        if args.dataset == "docs-100k":
            args.dataset = "clustered-3000"
        args.queries = min(args.queries, 100)
        args.per_thread = min(args.per_thread, 25)
        args.rerank_queries = min(args.rerank_queries, 30)
        args.knobs = args.knobs or [16, 128]
        args.wait_quiet = 0.0
        args.rounds = min(args.rounds, 2)
    if args.rounds < 1:
        p.error("--rounds must be 1 or more")
    unknown = sorted(set(args.systems) - set(SYSTEMS))
    if unknown:
        p.error(f"unknown systems {unknown}; known: {', '.join(SYSTEMS)}")
    return args


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- data -----------------------------------------------------------------------------------------
def load_work(name: str, queries: int) -> tuple[cw.Work, dict[str, Any]]:
    """The data set by name, as the arrays every system is given, and what it is."""
    if name.startswith("clustered-"):
        return _clustered(int(name.split("-", 1)[1]), queries)
    import benchmarks.vector_sets as vector_sets

    if name.startswith("hdf5:"):
        vs = vector_sets.from_hdf5(Path(name[5:]))
    elif name.startswith("docs-"):
        size = name.split("-", 1)[1].lower()
        n = int(size[:-1]) * 1000 if size.endswith("k") else int(size)
        vs = vector_sets.embedded_corpus(n, queries=max(queries, 1000))
    else:
        raise SystemExit(f"unknown --dataset {name!r}: docs-10k, docs-100k, clustered-N, hdf5:PATH")
    if vs.metric != "cosine":
        raise SystemExit(f"{name}: metric {vs.metric!r}; this comparison runs cosine collections")
    q = slice(0, queries)
    work = cw.Work(
        train=unit_rows(vs.train),
        queries=unit_rows(vs.queries[q]),
        buckets=np.asarray(vs.buckets, dtype=np.int64),
        truth=np.asarray(vs.truth[q], dtype=np.int64),
        filtered_truth={
            "1%": np.asarray(vs.truth_1pct[q], dtype=np.int64),
            "10%": np.asarray(vs.truth_10pct[q], dtype=np.int64),
        },
    )
    return work, {"name": vs.name, "metric": vs.metric, **vs.source}


def _clustered(n: int, queries: int) -> tuple[cw.Work, dict[str, Any]]:
    """The synthetic clustered vectors of ``benchmarks.datasets`` (smoke runs: no embedding)."""
    from benchmarks import datasets

    ds = datasets.load(n, queries)
    train = unit_rows(ds.vectors)
    qs = unit_rows(ds.queries)
    buckets = ds.buckets

    def truth(below: int | None) -> np.ndarray:
        subset = None if below is None else (buckets < below).nonzero()[0]
        rows = exact_top_k(train, qs, TRUTH_K, subset=subset)
        out = np.full((len(rows), TRUTH_K), -1, dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    work = cw.Work(
        train=train,
        queries=qs,
        buckets=buckets,
        truth=truth(None),
        filtered_truth={name: truth(below) for name, below in cw.FILTERS.items()},
    )
    return work, {
        "name": f"clustered-{n}",
        "metric": "cosine",
        "what": "synthetic clustered gaussian vectors (benchmarks/datasets.py), smoke runs only",
    }


# -- one system -----------------------------------------------------------------------------------
def make(name: str) -> Peer:
    return VecstorePeer() if name == "vecstore" else PEERS[name]()


def _sweep(
    name: str, peer: Peer, work: cw.Work, args: argparse.Namespace, label: str, rows: list[Any]
) -> None:
    """The knob sweep, each setting's row appended to ``rows`` as it ends (a failure keeps
    the settings it reached)."""
    for row in cw.sweep(
        peer,
        work,
        knobs=args.knobs or list(peer.knobs),
        threads=args.threads,
        per_thread=args.per_thread,
        budget_s=args.phase_budget,
    ):
        rows.append(row)
        conc = ", ".join(f"{c['threads']} clients {c['qps']:.0f} QPS" for c in row["concurrent"])
        _say(
            f"{name}{label}: {peer.knob_name}={row['knob']}: recall@10 "
            f"{row['single']['recall@10']:.4f}, 1 client {row['single']['qps']:.0f} QPS "
            f"(p50 {row['single']['latency']['p50_ms']:.2f} ms); {conc}"
        )


def _reranks(
    name: str, peer: Peer, work: cw.Work, args: argparse.Namespace, label: str, out: list[Any]
) -> None:
    """The rerank passes, each appended to ``out`` as it ends."""
    for size in args.rerank_sizes:
        r = cw.rerank(
            peer, work, candidates=size, queries=args.rerank_queries, budget_s=args.phase_budget
        )
        out.append(r)
        _say(
            f"{name}{label}: rerank {size} ids ({r['how']}): p50 {r['latency']['p50_ms']:.2f} ms,"
            f" agreement {r['top10_agreement']:.3f}"
        )


def another_round(
    name: str,
    peer: Peer,
    work: cw.Work,
    args: argparse.Namespace,
    number: int,
    rounds: list[dict[str, Any]],
) -> None:
    """Round ``number`` (from 2) of the passes that are repeated, the sweep and the reranks,
    appended to ``rounds`` as it starts (a failure keeps the passes it finished)."""
    label = f" (round {number})"
    this: dict[str, Any] = {"round_trip_us_before": machine.round_trip_us(), "sweep": []}
    rounds.append(this)
    _sweep(name, peer, work, args, label, this["sweep"])
    this["rerank"] = []
    _reranks(name, peer, work, args, label, this["rerank"])


def run_system(
    name: str, work: cw.Work, args: argparse.Namespace, workdir: Path, *, keep_server: bool = False
) -> tuple[dict[str, Any], Peer | None]:
    """The system's own turn, with its first round of the repeated passes. An embedded system
    runs its other rounds here too; a server system with ``keep_server`` is left running (and
    returned) for the rounds that visit every server in turn, and its caller stops it."""
    peer = make(name)
    out: dict[str, Any] = {"system": name, "kind": peer.kind, "round_trips_us": {}, "rounds": []}
    keep_running = False

    def probe(phase: str) -> None:
        # The host's wake-up latency drifts within minutes: record it at each phase.
        out["round_trips_us"][phase] = machine.round_trip_us()

    started = time.perf_counter()
    try:
        peer.start(workdir)
    except PeerUnavailable as exc:
        _say(f"{name}: skipped — {exc}")
        return {**out, "skipped": str(exc)}, None
    try:
        embedded = peer.kind == "embedded"
        me = os.getpid()
        pids: Callable[[], list[int]] = (lambda: [me]) if embedded else peer.memory_pids
        with cw.MemorySampler(pids) as mem:
            peer.create(int(work.train.shape[1]), M, EF_CONSTRUCTION)
            out["start_s"] = time.perf_counter() - started
            out["memory_empty"] = mem.figures()
            out["versions"] = peer.versions()
            out["index"] = peer.index_desc
            out["knob_name"] = peer.knob_name
            probe("before ingest")
            _say(f"{name}: ingesting {work.n:,} vectors")
            out["ingest"] = cw.ingest(peer, work, budget_s=max(args.phase_budget * 10, 1800))
            ing = out["ingest"]
            _say(
                f"{name}: {ing['acknowledged_vectors_per_s']:,.0f} vectors/s acknowledged, "
                f"indexed after {ing['indexed_s']:.1f} s"
            )
            out["settle"] = cw.settle(pids, budget_s=args.phase_budget)
            mem.sample()
            out["memory_indexed"] = mem.figures()
            probe("before sweep")
            first: dict[str, Any] = {"sweep": []}
            out["rounds"].append(first)
            _sweep(name, peer, work, args, "", first["sweep"])
            probe("after sweep")
            out["filtered"] = cw.filtered(peer, work, knob=DEFAULT_KNOB, budget_s=args.phase_budget)
            for f in cw.FILTERS:
                r = out["filtered"][f]
                _say(
                    f"{name}: filter {f}: recall@10 {r['recall@10']:.4f}, short "
                    f"{r['short_answers']}, p50 {r['latency']['p50_ms']:.2f} ms"
                )
            first["rerank"] = []
            _reranks(name, peer, work, args, "", first["rerank"])
            probe("after rerank")
            if embedded or not keep_server:  # its other rounds follow at once
                for number in range(2, args.rounds + 1):
                    another_round(name, peer, work, args, number, out["rounds"])
            out["memory"] = mem.figures()
        out["restart"] = cw.restart(peer, work)
        _say(f"{name}: restart {out['restart']['seconds']:.2f} s")
        keep_running = keep_server and not embedded
    except Exception as exc:  # one peer failing must not lose the others' figures
        _say(f"{name}: FAILED — {exc!r}")
        out["failed"] = f"{exc!r}\n{traceback.format_exc(limit=6)}"
    finally:
        if not keep_running:
            peer.stop()
    out["total_s"] = time.perf_counter() - started  # a kept server's later rounds add theirs
    return out, (peer if keep_running else None)


def _other_rounds(
    kept: dict[str, Peer], results: dict[str, Any], work: cw.Work, args: argparse.Namespace
) -> None:
    """Rounds 2.. of the repeated passes, visiting every running server system in turn; a
    system that fails leaves the rounds (its earlier rounds stand) and is stopped."""
    for number in range(2, args.rounds + 1):
        for name in compare_rounds.visiting_order(list(kept), number):
            system = results["systems"][name]
            started = time.perf_counter()
            try:
                another_round(name, kept[name], work, args, number, system["rounds"])
            except Exception as exc:
                _say(f"{name}: round {number} FAILED — {exc!r}")
                system["rounds_failed"] = f"round {number}: {exc!r}"
                _stop_kept(name, kept)
            system["total_s"] = system.get("total_s", 0.0) + time.perf_counter() - started


def _stop_kept(name: str, kept: dict[str, Peer]) -> None:
    """Stop a kept system, once; a stop that fails is reported and the others still stop."""
    peer = kept.pop(name, None)
    if peer is None:
        return
    try:
        peer.stop()
    except Exception as exc:
        _say(f"{name}: stop FAILED — {exc!r}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    _say(f"data set {args.dataset}")
    work, source = load_work(args.dataset, args.queries)
    counters = machine.cpu_counters()  # after the data set: its one-off embedding is not noise
    results: dict[str, Any] = {
        "suite": "compare",
        "date": date.today().isoformat(),
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "dataset": {
            **source,
            "vectors": work.n,
            "dim": int(work.train.shape[1]),
            "queries": int(work.queries.shape[0]),
        },
        "config": {
            "smoke": args.smoke,
            "systems": args.systems,
            "m": M,
            "ef_construction": EF_CONSTRUCTION,
            "default_knob": DEFAULT_KNOB,
            "knobs": args.knobs,
            "threads": args.threads,
            "per_thread": args.per_thread,
            "rerank_sizes": args.rerank_sizes,
            "rerank_queries": args.rerank_queries,
            "phase_budget_s": args.phase_budget,
            "rounds": args.rounds,
            "ingest_batch": cw.INGEST_BATCH,
            "ingest_threads": cw.INGEST_THREADS,
            "k": cw.K,
        },
        "hnsw_flat_bytes": cw.hnsw_flat_bytes(work.n, int(work.train.shape[1]), M),
        "systems": {},
        "notes": [],
        "quiet_waits": [],
    }
    # A SIGTERM unwinds: each system's own turn stops it unless it is kept; a kept one is
    # stopped by the stack (each stop guarded) before its working directory goes.
    with contextlib.ExitStack() as workdirs:
        kept: dict[str, Peer] = {}
        for name in args.systems:
            if args.wait_quiet > 0:
                seen = machine.wait_for_quiet(
                    args.wait_quiet, max_round_trip_us=args.quiet_round_trip_us or None
                )
                results["quiet_waits"].append({"before": name, **seen})
            tmp = workdirs.enter_context(tempfile.TemporaryDirectory(prefix=f"compare-{name}-"))
            out, alive = run_system(name, work, args, Path(tmp), keep_server=args.rounds > 1)
            results["systems"][name] = out
            if alive is not None:
                kept[name] = alive
                workdirs.callback(_stop_kept, name, kept)
        _other_rounds(kept, results, work, args)
    for system in results["systems"].values():
        compare_rounds.combine(system)
    results["notes"] += suite.closing_notes(
        results, counters, smoke=args.smoke, effect="figures are lower"
    )
    results["analysis"] = report_compare.analysis(results)
    results["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        results = suite.rerendered(args.render, report_compare)
        args.out = args.render.parent
    else:
        with sigterm_unwinds():
            results = run(args)
    stem = f"compare-{results['date']}-{results['dataset']['name']}"

    def draw(json_path: Path, png: Path) -> str | None:
        bench = REPO_ROOT / ".venv-bench" / "bin" / "python"
        return suite.draw("plot_compare", json_path, png, [args.plot_python, bench])

    return suite.publish(
        results,
        out=args.out,
        stem=stem,
        png=args.out / f"{stem}.png",
        report=report_compare,
        draw_png=draw,
    )


if __name__ == "__main__":
    sys.exit(main())
