"""The document-rerank figure from a ``rerank-<date>.json``: p50 latency by document count per
method (p99 as a thin line), and MRR@10 / recall@10 per method. Needs only matplotlib, so it also
runs in the peer's virtualenv:

    .venv-bench/bin/python -m benchmarks.plot_rerank benchmarks/results/rerank-DATE.json OUT.png
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.plotting import cli, save


def plot(results: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), dpi=120)
    methods: dict[str, list[dict[str, Any]]] = {}
    for r in results.get("latency", []):
        methods.setdefault(r["method"], []).append(r)
    for i, (method, rows) in enumerate(methods.items()):
        rows = sorted(rows, key=lambda r: r["documents"])
        xs = [r["documents"] for r in rows]
        colour = f"C{i}"
        synthetic = " (synthetic)" if rows[0].get("synthetic") else ""
        left.plot(
            xs,
            [r["latency"]["p50_ms"] for r in rows],
            "o-",
            color=colour,
            label=f"{method}{synthetic} p50",
        )
        left.plot(
            xs,
            [r["latency"]["p99_ms"] for r in rows],
            ":",
            color=colour,
            label=f"{method} p99",
        )
        for r in rows:
            left.annotate(
                f"{r['docs_per_s']:.0f} docs/s",
                (r["documents"], r["latency"]["p50_ms"]),
                textcoords="offset points",
                xytext=(4, -11),
                fontsize=7,
                color=colour,
            )
    sizes = sorted({r["documents"] for r in results.get("latency", [])})
    left.set_xscale("log")
    left.set_xticks(sizes, [str(x) for x in sizes])
    left.minorticks_off()
    left.set_yscale("log")
    left.set_xlabel("documents per request (50 words each)")
    left.set_ylabel("ms per request")
    left.set_title("POST /v1/rerank latency, 1 client", fontsize=9)
    left.grid(alpha=0.3, which="both")
    left.legend(fontsize=7)

    quality = results.get("quality", {})
    bars_of: list[tuple[str, dict[str, Any], bool]] = []
    if quality.get("dense"):
        bars_of.append(("dense only", quality["dense"], False))
    bars_of += [(r["method"], r, bool(r.get("synthetic"))) for r in quality.get("rerank", [])]
    width = 0.38
    for j, (metric, colour) in enumerate((("mrr@10", "#1f77b4"), ("recall@10", "#ff7f0e"))):
        xs = [i + (j - 0.5) * width for i in range(len(bars_of))]
        ys = [r[metric] for _, r, _ in bars_of]
        bars = right.bar(xs, ys, width * 0.95, color=colour, label=metric)
        for bar, (_, _, syn) in zip(bars, bars_of, strict=True):
            if syn:
                bar.set_hatch("//")
                bar.set_alpha(0.5)
        right.bar_label(bars, labels=[f"{y:.3f}" for y in ys], fontsize=7, padding=2)
    right.set_xticks(
        range(len(bars_of)),
        [f"{name}\n(synthetic)" if syn else name for name, _, syn in bars_of],
        fontsize=7,
    )
    right.set_ylim(0, 1.05)
    ds = results.get("dataset", {})
    right.set_title(
        f"stdlib docstrings: {ds.get('queries')} queries, {ds.get('passages')} passages; "
        f"rerank of the dense top {results['config']['candidates']}",
        fontsize=9,
    )
    right.legend(fontsize=7, loc="lower left")
    right.grid(axis="y", alpha=0.3)
    m = results["machine"]
    fig.suptitle(
        f"vecstore document rerank — {results['date']}, {m['nproc']} CPUs ({m['cpu_model']})",
        fontsize=10,
    )
    save(fig, png)


def main(argv: Sequence[str] | None = None) -> int:
    return cli(plot, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
