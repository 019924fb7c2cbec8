"""Embedding benchmark: /v1/embeddings latency and throughput, text search QPS with micro-batching
on and off, and the sentence-transformers reference peer (speed and vector agreement).

    python -m benchmarks.run_embed [--peer-python .venv-bench/bin/python] [--out DIR] [--smoke]

The peer runs first, alone, in its own interpreter (``--peer-python``; skipped when not given);
then the server's model code is timed in process; then two servers (``benchmarks.server``) run
side by side, the default one and one with VECSTORE_EMBEDDING_MICRO_BATCHING=false, their passes
taking turns. Every pass runs ``--rounds`` times; each figure is the median round.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import bench_embed, machine, report_embed, suite
from benchmarks.client import ApiClient
from benchmarks.metrics import median_round
from benchmarks.run_core import _env_pairs, _int_list
from benchmarks.sentences import AGREEMENT_TEXTS, TextPool
from benchmarks.server import ServerHandle, running_server
from vecstore.settings import Settings

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent
BATCHING_OFF = {"VECSTORE_EMBEDDING_MICRO_BATCHING": "false"}
# Settings worth recording with the figures (all read the way the server reads them).
_SETTINGS = (
    "embedding_threads",
    "embedding_workers",
    "embedding_micro_batching",
    "embedding_batch_window_ms",
    "embedding_max_batch",
    "query_cache_entries",
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run_embed", description=__doc__)
    p.add_argument(
        "--peer-python",
        type=Path,
        default=None,
        help="python of the venv with torch + sentence-transformers (e.g. .venv-bench/bin/python)",
    )
    p.add_argument("--plot-python", type=Path, default=None, help="default: --peer-python")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="default: benchmarks/results")
    p.add_argument("--smoke", action="store_true", help="small counts, ~30 s; use --out /tmp/…")
    p.add_argument("--queries", type=int, default=500, help="single-query requests per pass")
    p.add_argument("--batch-sizes", type=_int_list, default=[1, 8, 32])
    p.add_argument("--batch-texts", type=int, default=640, help="texts per batch-size pass")
    p.add_argument("--search-records", type=int, default=5000)
    p.add_argument("--search-requests", type=int, default=800, help="queries per QPS pass")
    p.add_argument("--search-threads", type=_int_list, default=[1, 8])
    p.add_argument("--rounds", type=int, default=3, help="runs of each pass; the median counts")
    p.add_argument("--peer-threads", default="1,2", help="torch.set_num_threads values to try")
    p.add_argument("--phase-budget", type=float, default=180.0, help="seconds per measured pass")
    p.add_argument("--peer-timeout", type=float, default=1800.0)
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
        default=120.0,
        metavar="SECONDS",
        help="before each phase and round, wait up to this long for other processes to leave "
        "the CPUs (0: never wait)",
    )
    p.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="JSON",
        help="measure nothing: rewrite the markdown (and the PNG) of an earlier run's JSON",
    )
    p.add_argument("--server-log-dir", type=Path, default=None, help="keep the servers' logs")
    args = p.parse_args(argv)
    if args.smoke:
        args.queries = min(args.queries, 40)
        args.batch_texts = min(args.batch_texts, 64)
        args.search_records = min(args.search_records, 500)
        args.search_requests = min(args.search_requests, 64)
        args.rounds = 1
        args.wait_quiet = 0.0
    return args


QUIET_WAITS: list[dict[str, Any]] = []


def quiet(args: argparse.Namespace, before: str) -> None:
    """Wait (bounded) for the shared machine to be quiet; every wait is kept for the report."""
    if args.wait_quiet <= 0:
        return
    seen = machine.wait_for_quiet(args.wait_quiet)
    QUIET_WAITS.append({"before": before, **seen})
    if seen["waited_s"] > 3 or not seen["quiet"]:
        _say(
            f"waited {seen['waited_s']:.0f} s for a quiet machine before {before}"
            f" (other processes: {seen['other_cores']:.2f} CPUs)"
        )


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- the peer -------------------------------------------------------------------------------------
def run_peer(args: argparse.Namespace) -> dict[str, Any]:
    """The peer's JSON, or ``{"skipped": reason}``; a failing peer never fails the run."""
    if args.peer_python is None:
        return {"skipped": "no --peer-python given (see benchmarks/README.md to install it)"}
    python = args.peer_python
    if not python.exists():
        return {"skipped": f"--peer-python {python} does not exist"}
    with tempfile.TemporaryDirectory(prefix="vecstore-peer-") as tmp:
        out = Path(tmp) / "peer.json"
        cmd = [str(python), "-m", "benchmarks.peer_sentence_transformers", "--out", str(out)]
        cmd += ["--threads", args.peer_threads]
        cmd += ["--queries", str(args.queries), "--batch-texts", str(args.batch_texts)]
        cmd += ["--rounds", str(args.rounds), "--wait-quiet", str(args.wait_quiet)]
        cmd += ["--batch-sizes", ",".join(str(b) for b in args.batch_sizes if b > 1)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        try:
            proc = subprocess.run(
                cmd, cwd=REPO_ROOT, env=env, timeout=args.peer_timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return {"skipped": f"the peer did not finish within {args.peer_timeout:.0f} s"}
        if proc.returncode != 0 or not out.exists():
            return {
                "skipped": f"the peer exited with code {proc.returncode} (is sentence-transformers"
                f" installed for {python}?)"
            }
        result: dict[str, Any] = json.loads(out.read_text())
        result["command"] = " ".join(cmd[:3])
        return result


# -- the servers ---------------------------------------------------------------------------------
def embedding_passes(
    args: argparse.Namespace,
    servers: dict[str, ServerHandle],
    out: dict[str, dict[str, Any]],
    *,
    queries: TextPool,
    sentences: TextPool,
    reference: np.ndarray | None,
) -> None:
    """``/v1/embeddings``: agreement, then single-query rounds (the two servers and the two
    encodings taking turns), then batch rounds on the default server (a single client's batch
    requests leave the batcher nothing to merge, so the batching-off server skips them)."""
    on, budget = servers["batching_on"], args.phase_budget
    if reference is not None:
        out["batching_on"]["agreement"] = bench_embed.agreement(
            on, list(AGREEMENT_TEXTS), reference
        )
        _say(f"agreement: min cosine {out['batching_on']['agreement']['cosine_min']:.5f}")
    keys = [("batching_on", "float"), ("batching_off", "float"), ("batching_on", "base64")]
    singles: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in range(args.rounds):
        quiet(args, f"single-query round {r + 1}")
        for label, encoding in keys if r % 2 == 0 else keys[::-1]:
            res = bench_embed.single_query_pass(
                servers[label],
                queries.take(args.queries + bench_embed.WARMUP),
                time_budget_s=budget,
                encoding=encoding,
            )
            singles.setdefault((label, encoding), []).append(res)
            lat = res["latency"]
            _say(
                f"[{label}] single query ({encoding}): p50 {lat['p50_ms']:.2f} ms, "
                f"p99 {lat['p99_ms']:.2f} ms, {res['qps']:.0f} req/s"
            )
    for (label, encoding), runs in singles.items():
        out[label].setdefault("single_query", {})[encoding] = median_round(
            runs, "qps", noise=bench_embed.pass_noise
        )
    batches: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in range(args.rounds):
        quiet(args, f"batch round {r + 1}")
        for size in args.batch_sizes:
            for clients in [1, 2] if size == max(args.batch_sizes) else [1]:
                b = bench_embed.batch_pass(
                    on,
                    sentences.take(args.batch_texts + size * clients),
                    batch_size=size,
                    clients=clients,
                    time_budget_s=budget,
                )
                batches.setdefault((size, clients), []).append(b)
                _say(
                    f"[batching_on] batch {size} x {clients} client(s): {b['texts_per_s']:.0f} t/s"
                )
    out["batching_on"]["batches"] = [
        median_round(v, "texts_per_s", noise=bench_embed.pass_noise) for v in batches.values()
    ]


def server_phases(
    args: argparse.Namespace,
    server_env: dict[str, str],
    *,
    queries: TextPool,
    sentences: TextPool,
    reference: np.ndarray | None,
    notes: list[str],
) -> dict[str, dict[str, Any]]:
    """Both servers run at once (an idle one costs next to nothing), so their passes can take
    turns; the default one and one with VECSTORE_EMBEDDING_MICRO_BATCHING=false."""
    envs = {"batching_on": server_env, "batching_off": {**server_env, **BATCHING_OFF}}
    out: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        servers: dict[str, ServerHandle] = {}
        for label, env in envs.items():
            log = args.server_log_dir / f"server-{label}.log" if args.server_log_dir else None
            if log is not None:
                log.parent.mkdir(parents=True, exist_ok=True)
            servers[label] = stack.enter_context(
                running_server(startup_timeout_s=args.startup_timeout, extra_env=env, log_path=log)
            )
            _say(f"[{label}] server ready at {servers[label].base_url}")
            with ApiClient(servers[label].base_url, servers[label].key) as client:
                version = client.get("/v1/health").get("version")
            out[label] = {
                "server_env": env,
                "server_version": version,
                "http_floor": bench_embed.http_floor(servers[label], 100 if args.smoke else 300),
            }
        missing = bench_embed.embeddings_route_missing(servers["batching_on"])
        if missing:
            notes.append(f"{missing}; the /v1/embeddings figures are not measured.")
            _say(missing)
        else:
            embedding_passes(
                args, servers, out, queries=queries, sentences=sentences, reference=reference
            )
        _say(f"text search: {args.search_records:,} records on each server")
        search = bench_embed.search_suite(
            servers,
            queries,
            records=args.search_records,
            requests=args.search_requests,
            thread_counts=args.search_threads,
            rounds=args.rounds,
            time_budget_s=args.phase_budget,
            before_round=lambda r: quiet(args, f"search round {r + 1}"),
        )
        for label, res in search.items():
            out[label]["search"] = res
            for p in res["qps"]:
                _say(f"[{label}] search, {p['threads']} client(s): {p['qps']:.0f} QPS (median)")
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    server_env = _env_pairs(args.server_env)
    settings = Settings.from_env({**os.environ, **server_env})
    queries, sentences = TextPool("query"), TextPool("sentence")
    sample_q, sample_s = TextPool("query").take(1000), TextPool("sentence").take(1000)
    results: dict[str, Any] = {
        "suite": "embed",
        "date": date.today().isoformat(),
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "config": {
            "model": bench_embed.MODEL,
            "smoke": args.smoke,
            "rounds": args.rounds,
            "queries": args.queries,
            "query_words_mean": statistics.mean(len(t.split()) for t in sample_q),
            "batch_sizes": args.batch_sizes,
            "batch_texts": args.batch_texts,
            "sentence_words_mean": statistics.mean(len(t.split()) for t in sample_s),
            "search_records": args.search_records,
            "search_requests": args.search_requests,
            "search_threads": args.search_threads,
            "server_env": server_env,
            "server_settings": {k: getattr(settings, k) for k in _SETTINGS},
        },
    }
    notes: list[str] = []
    counters = machine.cpu_counters()
    quiet(args, "the peer")
    _say("reference peer (sentence-transformers), alone on the machine")
    peer = run_peer(args)
    reference = None
    if "reference" in peer:
        reference = np.asarray(peer["reference"]["vectors"], dtype=np.float32)
        peer["reference"] = {k: v for k, v in peer["reference"].items() if k != "vectors"}
    else:
        notes.append(f"Reference peer not run: {peer['skipped']}. No peer or agreement figures.")
    results["peer"] = peer

    quiet(args, "the in-process profile")
    _say("in process: the server's model code, piece by piece")
    results["components"] = bench_embed.component_profile(
        sample_q[: args.queries + bench_embed.WARMUP], sample_s[:320], settings.embedding_threads
    )

    results.update(
        server_phases(
            args,
            server_env,
            queries=queries,
            sentences=sentences,
            reference=reference,
            notes=notes,
        )
    )
    results["server_version"] = results["batching_on"].get("server_version")
    results["quiet_waits"] = QUIET_WAITS
    results["notes"] = notes + suite.closing_notes(
        results, counters, smoke=args.smoke, effect="figures are lower"
    )
    results["analysis"] = report_embed.analysis(results)
    results["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        results = suite.rerendered(args.render, report_embed)
        args.out = args.render.parent
    else:
        results = run(args)
    stem = f"embed-{results['date']}"

    def draw(json_path: Path, png: Path) -> str | None:
        # the peer's virtualenv has matplotlib (sentence-transformers' plots need it too)
        return suite.draw("plot_embed", json_path, png, [args.plot_python, args.peer_python])

    return suite.publish(
        results,
        out=args.out,
        stem=stem,
        png=args.out / f"{stem}-search-qps.png",
        report=report_embed,
        draw_png=draw,
    )


if __name__ == "__main__":
    sys.exit(main())
