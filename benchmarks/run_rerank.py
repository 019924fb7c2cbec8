"""Document-rerank benchmark: ``POST /v1/rerank`` latency by document count and method, and
retrieval quality (MRR@10, recall@10) of dense search alone vs dense + rerank on a labelled set
built from the Python standard library's docstrings (``benchmarks/docstrings.py``).

    python -m benchmarks.run_rerank [--out DIR] [--smoke]

Two servers (``benchmarks.server``) run side by side: *plain*, with only the bundled embedding
model, and *cross*, which also has the test suite's synthetic cross-encoder
(``tests/cross_encoder_model.py``, registered through ``VECSTORE_MODELS_FILE``). The passages are
indexed on the plain server; each query's dense top ``--candidates`` are then reranked by every
method, on the server that has its models.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from benchmarks import bench_doc_rerank as bdr
from benchmarks import docstrings, machine, report_rerank, suite
from benchmarks.bench_embed import http_floor, pass_noise
from benchmarks.client import ApiClient
from benchmarks.metrics import median_round
from benchmarks.run_core import _env_pairs, _int_list
from benchmarks.sentences import TextPool
from benchmarks.server import ServerHandle, running_server
from vecstore.settings import Settings

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PLOT_PYTHON = REPO_ROOT / ".venv-bench" / "bin" / "python"
COLLECTION = "stdlib-docs"
_SETTINGS = (
    "embedding_threads",
    "embedding_workers",
    "embedding_micro_batching",
    "embedding_max_batch",
    "query_cache_entries",
)


def _key_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    keys = ", ".join(bdr.methods(20))
    p = argparse.ArgumentParser(prog="python -m benchmarks.run_rerank", description=__doc__)
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="default: benchmarks/results")
    p.add_argument("--smoke", action="store_true", help="small counts, ~1 min; use --out /tmp/…")
    p.add_argument("--queries", type=int, default=500, help="labelled queries (quality)")
    p.add_argument("--passages", type=int, default=None, help="cut the corpus (default: all)")
    p.add_argument("--candidates", type=int, default=50, help="dense top k that is reranked")
    p.add_argument("--top-n", type=int, default=10, help="top_n of the quality rerank calls")
    p.add_argument("--stage1-top-k", type=int, default=20, help="for optimal and best")
    p.add_argument(
        "--quality-methods",
        type=_key_list,
        default=["fast", "best", "standard-test-ce", "optimal-test-ce"],
        help=f"of: {keys}",
    )
    p.add_argument(
        "--latency-methods",
        type=_key_list,
        default=["fast", "fast-cached", "standard-test-ce"],
        help=f"of: {keys}",
    )
    p.add_argument("--latency-sizes", type=_int_list, default=[10, 100, 1000])
    p.add_argument(
        "--latency-calls", type=_int_list, default=[100, 30, 10], help="timed calls per size"
    )
    p.add_argument("--rounds", type=int, default=3, help="latency: runs of each pass (median)")
    p.add_argument("--phase-budget", type=float, default=600.0, help="seconds per latency pass")
    p.add_argument("--quality-budget", type=float, default=3600.0, help="seconds per quality pass")
    p.add_argument("--startup-timeout", type=float, default=90.0)
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="VECSTORE_X=VALUE",
        help="extra environment for both servers (repeatable)",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="before each pass, wait up to this long for other processes to leave the CPUs "
        "(0: never wait)",
    )
    p.add_argument("--render", type=Path, default=None, metavar="JSON", help="measure nothing")
    p.add_argument("--plot-python", type=Path, default=None, help="a python with matplotlib")
    p.add_argument("--server-log-dir", type=Path, default=None, help="keep the servers' logs")
    args = p.parse_args(argv)
    if args.smoke:
        args.queries = min(args.queries, 12)
        args.passages = min(args.passages or 150, 150)
        args.candidates = min(args.candidates, 10)
        keep = [i for i, size in enumerate(args.latency_sizes) if size <= 100] or [0]
        args.latency_sizes = [args.latency_sizes[i] for i in keep]
        args.latency_calls = [min(args.latency_calls[i], 3) for i in keep]
        args.rounds = 1
        args.wait_quiet = 0.0
    if len(args.latency_calls) != len(args.latency_sizes):
        p.error("--latency-calls needs one count per --latency-sizes entry")
    known = bdr.methods(args.stage1_top_k)
    unknown = sorted(set(args.quality_methods + args.latency_methods) - set(known))
    if unknown:
        p.error(f"unknown methods {unknown}; known: {keys}")
    return args


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Quiet:
    """Bounded waits for a quiet machine before each pass; every wait is kept for the report."""

    def __init__(self, max_wait_s: float) -> None:
        self.max_wait_s = max_wait_s
        self.waits: list[dict[str, Any]] = []

    def __call__(self, before: str) -> None:
        if self.max_wait_s <= 0:
            return
        seen = machine.wait_for_quiet(self.max_wait_s)
        self.waits.append({"before": before, **seen})
        if seen["waited_s"] > 3 or not seen["quiet"]:
            _say(
                f"waited {seen['waited_s']:.0f} s for a quiet machine before {before}"
                f" (other processes: {seen['other_cores']:.2f} CPUs)"
            )


def latency_phase(
    args: argparse.Namespace, servers: dict[str, ServerHandle], quiet: Quiet
) -> list[dict[str, Any]]:
    """Per document count: every method, ``--rounds`` times, methods taking turns (alternating
    order); a fresh query for every request, and fresh documents too, except for a method that
    repeats them (``fast-cached``: one document list for all its requests, warm-up included)."""
    known = bdr.methods(args.stage1_top_k)
    chosen = [known[k] for k in args.latency_methods]
    queries, sentences = TextPool("query", seed=4), TextPool("sentence", seed=4)
    out = []
    for size, calls in zip(args.latency_sizes, args.latency_calls, strict=True):
        warmup = 1 if args.smoke or size >= 1000 else 3
        runs: dict[str, list[dict[str, Any]]] = {m.key: [] for m in chosen}
        for r in range(args.rounds):
            quiet(f"latency, {size} documents, round {r + 1}")
            for m in chosen if r % 2 == 0 else chosen[::-1]:
                n = warmup + calls
                res = bdr.latency_pass(
                    servers[m.server],
                    m,
                    queries=queries.take(n),
                    documents=(
                        [bdr.documents_of_words(sentences, size)] * n
                        if m.repeat_documents
                        else [bdr.documents_of_words(sentences, size) for _ in range(n)]
                    ),
                    warmup=warmup,
                    time_budget_s=args.phase_budget,
                )
                runs[m.key].append(res)
                lat = res["latency"]
                _say(
                    f"latency {m.key}, {size} docs: p50 {lat['p50_ms']:.1f} ms, p99 "
                    f"{lat['p99_ms']:.1f} ms, {res['docs_per_s']:.0f} docs/s"
                    + (f", {res['contract_violations']} BAD" if res["contract_violations"] else "")
                )
        for m in chosen:
            out.append({**median_round(runs[m.key], "docs_per_s", noise=pass_noise)})
            out[-1]["label"] = m.label
            out[-1]["synthetic"] = m.synthetic
            out[-1]["request"] = m.fields
    return out


def quality_phase(
    args: argparse.Namespace,
    servers: dict[str, ServerHandle],
    rs: docstrings.RetrievalSet,
    quiet: Quiet,
    rerank_ok: bool,
) -> dict[str, Any]:
    plain = servers["plain"]
    _say(f"indexing {len(rs.passages):,} passages (the server embeds them)")
    indexed = bdr.index_passages(
        plain,
        rs,
        collection=COLLECTION,
        batch_size=100,
        threads=2,
        time_budget_s=args.quality_budget,
    )
    _say(f"  {indexed['passages_per_s']:.0f} passages/s, caught up: {indexed['index_caught_up']}")
    queries = [q.text for q in rs.queries]
    relevant = [q.relevant for q in rs.queries]
    quiet("dense retrieval")
    dense, candidates = bdr.dense_pass(
        plain,
        collection=COLLECTION,
        queries=queries,
        relevant=relevant,
        k=args.candidates,
        warmup_texts=TextPool("query", seed=5).take(20),
        time_budget_s=args.quality_budget,
    )
    _say(
        f"dense: MRR@10 {dense['mrr@10']:.4f}, recall@10 {dense['recall@10']:.4f}, "
        f"recall@{args.candidates} {dense[f'recall@{args.candidates}']:.4f}, "
        f"p50 {dense['latency']['p50_ms']:.1f} ms"
    )
    out: dict[str, Any] = {"index": indexed, "dense": dense, "rerank": []}
    if not rerank_ok:
        return out
    known = bdr.methods(args.stage1_top_k)
    for key in args.quality_methods:
        m = known[key]
        quiet(f"quality, {key}")
        res = bdr.rerank_quality_pass(
            servers[m.server],
            m,
            queries=queries,
            relevant=relevant,
            candidates=candidates,
            top_n=args.top_n,
            time_budget_s=args.quality_budget,
        )
        out["rerank"].append(res)
        _say(
            f"{key}: MRR@10 {res['mrr@10']:.4f}, recall@10 {res['recall@10']:.4f}, "
            f"p50 {res['latency']['p50_ms']:.1f} ms/query"
            + (f", {res['contract_violations']} BAD" if res["contract_violations"] else "")
        )
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    server_env = _env_pairs(args.server_env)
    settings = Settings.from_env({**os.environ, **server_env})
    _say("data set: standard-library docstrings")
    rs = docstrings.build(args.queries)
    if args.passages is not None:
        rs = docstrings.shrink(rs, args.passages)
    results: dict[str, Any] = {
        "suite": "rerank",
        "date": date.today().isoformat(),
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "config": {
            "smoke": args.smoke,
            "embedding_model": bdr.EMBEDDER,
            "candidates": args.candidates,
            "top_n": args.top_n,
            "stage1_top_k": args.stage1_top_k,
            "latency_methods": args.latency_methods,
            "latency_sizes": args.latency_sizes,
            "latency_calls": args.latency_calls,
            "latency_doc_words": bdr.DOC_WORDS,
            "rounds": args.rounds,
            "quality_methods": args.quality_methods,
            "phase_budget_s": args.phase_budget,
            "quality_budget_s": args.quality_budget,
            "server_env": server_env,
            "server_settings": {k: getattr(settings, k) for k in _SETTINGS},
        },
        "dataset": rs.stats,
        "examples": [
            {"query": q.text, "passage": next(p.text for p in rs.passages if p.pid == q.relevant)}
            for q in rs.queries[:: max(len(rs.queries) // 3, 1)][:3]
        ],
    }
    notes: list[str] = []
    quiet = Quiet(args.wait_quiet)
    counters = machine.cpu_counters()
    with (
        tempfile.TemporaryDirectory(prefix="vecstore-rerank-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        models_file, results["cross_encoder"] = bdr.write_cross_encoder(Path(tmp))
        envs = {
            "plain": server_env,
            "cross": {**server_env, "VECSTORE_MODELS_FILE": str(models_file)},
        }
        servers: dict[str, ServerHandle] = {}
        for label, env in envs.items():
            log = args.server_log_dir / f"server-{label}.log" if args.server_log_dir else None
            if log is not None:
                log.parent.mkdir(parents=True, exist_ok=True)
            servers[label] = stack.enter_context(
                running_server(startup_timeout_s=args.startup_timeout, extra_env=env, log_path=log)
            )
            _say(f"[{label}] server ready at {servers[label].base_url}")
        with ApiClient(servers["plain"].base_url, servers["plain"].key) as client:
            results["server_version"] = client.get("/v1/health").get("version")
        results["http_floor"] = http_floor(servers["plain"], 100 if args.smoke else 300)
        missing = bdr.route_missing(servers["plain"])
        if missing:
            notes.append(f"{missing}; no rerank figures, only dense retrieval.")
            _say(missing)
            results["latency"] = []
        else:
            results["latency"] = latency_phase(args, servers, quiet)
        results["quality"] = quality_phase(args, servers, rs, quiet, rerank_ok=missing is None)
    results["quiet_waits"] = quiet.waits
    results["notes"] = notes + suite.closing_notes(
        results, counters, smoke=args.smoke, effect="latencies are higher"
    )
    results["analysis"] = report_rerank.analysis(results)
    results["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        results = suite.rerendered(args.render, report_rerank)
        args.out = args.render.parent
    else:
        results = run(args)
    stem = f"rerank-{results['date']}"
    png = args.out / f"{stem}.png" if results.get("latency") else None
    if png is None:
        results["notes"].append("No plot: no latency figures.")

    def draw(json_path: Path, png: Path) -> str | None:
        return suite.draw("plot_rerank", json_path, png, [args.plot_python, DEFAULT_PLOT_PYTHON])

    return suite.publish(
        results, out=args.out, stem=stem, png=png, report=report_rerank, draw_png=draw
    )


if __name__ == "__main__":
    sys.exit(main())
