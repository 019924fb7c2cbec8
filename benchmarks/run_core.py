"""Core benchmark: ingest, indexing, search recall/latency/QPS, filtered search, rerank.

    python -m benchmarks.run_core [--n 100000] [--queries 500] [--out benchmarks/results]

Starts its own server (``benchmarks.server``) on 127.0.0.1 with a throw-away data directory.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from benchmarks import datasets, machine, report
from benchmarks.bench_ingest import ingest, wait_for_index
from benchmarks.bench_rerank import rerank_pass
from benchmarks.bench_search import SearchBench
from benchmarks.client import ApiClient
from benchmarks.server import running_server

COLLECTION = "bench"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run_core", description=__doc__)
    p.add_argument("--n", type=int, default=100_000, help="vectors to ingest")
    p.add_argument("--queries", type=int, default=500, help="distinct query vectors")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="default: benchmarks/results")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--ingest-threads", type=int, default=2)
    p.add_argument("--search-threads", type=_int_list, default=[1, 8])
    p.add_argument("--per-thread", type=int, default=200, help="queries per thread in QPS passes")
    p.add_argument("--rerank-sizes", type=_int_list, default=[100, 1000])
    p.add_argument("--seed", type=int, default=datasets.SEED)
    p.add_argument("--phase-budget", type=float, default=300.0, help="seconds per measured pass")
    p.add_argument("--ingest-budget", type=float, default=1800.0)
    p.add_argument("--index-timeout", type=float, default=1800.0)
    p.add_argument("--startup-timeout", type=float, default=60.0)
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="VECSTORE_X=VALUE",
        help="extra environment for the server (repeatable)",
    )
    p.add_argument("--server-log", type=Path, default=None, help="keep the server's log here")
    args = p.parse_args(argv)
    if args.n < args.k or args.queries < 1:
        p.error("--n must be at least --k and --queries at least 1")
    return args


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _env_pairs(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.startswith("VECSTORE_"):
            raise SystemExit(f"--server-env expects VECSTORE_NAME=VALUE, got {pair!r}")
        out[name] = value
    return out


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    _say(f"data set: {args.n:,} vectors, {args.queries} queries (cache {datasets.CACHE_DIR})")
    ds = datasets.load(args.n, args.queries, seed=args.seed)
    base_unit = datasets.unit(ds.vectors)
    results: dict[str, Any] = {
        "date": date.today().isoformat(),
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "config": {
            "n": ds.n,
            "dim": ds.dim,
            "clusters": datasets.CLUSTERS,
            "noise_scale": datasets.NOISE_SCALE,
            "queries": len(ds.queries),
            "seed": args.seed,
            "k": args.k,
            "server_env": _env_pairs(args.server_env),
        },
    }
    with running_server(
        startup_timeout_s=args.startup_timeout,
        extra_env=_env_pairs(args.server_env),
        log_path=args.server_log,
    ) as server:
        _say(f"server ready at {server.base_url}")
        with ApiClient(server.base_url, server.key) as client:
            created = client.post(
                "/v1/collections", {"name": COLLECTION, "dim": ds.dim, "distance_metric": "cosine"}
            )
            results["index"] = created.get("index")
            results["server_version"] = client.get("/v1/health").get("version")

        _say(f"ingest: {ds.n:,} vectors, {args.ingest_threads} threads")
        results["ingest"] = ingest(
            server,
            ds,
            collection=COLLECTION,
            batch_size=args.batch_size,
            threads=args.ingest_threads,
            time_budget_s=args.ingest_budget,
        )
        _say(f"  {results['ingest']['vectors_per_s']:,.0f} vectors/s; waiting for the index")
        results["indexing"] = wait_for_index(
            server, collection=COLLECTION, expected=ds.n, timeout_s=args.index_timeout
        )
        _say(
            f"  index caught up: {results['indexing']['caught_up']} "
            f"after {results['indexing']['seconds_after_ingest']:.1f} s"
        )

        # The same ingest with base64 float32 vectors, into a scratch collection dropped at once
        # (so its indexing does not run under the search measurements).
        scratch = COLLECTION + "-base64"
        with ApiClient(server.base_url, server.key) as client:
            client.post("/v1/collections", {"name": scratch, "dim": ds.dim})
        _say("ingest again with base64 vectors")
        results["ingest_base64"] = ingest(
            server,
            ds,
            collection=scratch,
            batch_size=args.batch_size,
            threads=args.ingest_threads,
            time_budget_s=args.ingest_budget,
            vector_encoding="base64",
        )
        with ApiClient(server.base_url, server.key) as client:
            client.delete(f"/v1/collections/{scratch}")
        _say(f"  {results['ingest_base64']['vectors_per_s']:,.0f} vectors/s (base64)")

        _say("search: recall, exact, throughput, filtered")
        bench = SearchBench(
            server,
            ds,
            base_unit,
            collection=COLLECTION,
            k=args.k,
            time_budget_s=args.phase_budget,
        )
        results["search"] = bench.run_all(
            thread_counts=args.search_threads, per_thread=args.per_thread
        )

        results["rerank"] = []
        for size in args.rerank_sizes:
            _say(f"rerank: {size} candidates")
            results["rerank"].append(
                rerank_pass(
                    server,
                    ds,
                    base_unit,
                    collection=COLLECTION,
                    candidates=size,
                    time_budget_s=args.phase_budget,
                )
            )
        _say("stopping server")
    results["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    json_path, md_path = report.write(results, args.out, f"core-{results['date']}")
    print()
    print(report.markdown(results))
    print(report.targets_text(results))
    print(f"\nwrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
