"""The bar chart of text-search QPS (1 and 8 clients, micro-batching on and off) from an
``embed-<date>.json``. Needs only matplotlib, so it also runs in the peer's virtualenv:

    .venv-bench/bin/python -m benchmarks.plot_embed benchmarks/results/embed-DATE.json OUT.png
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

    series = []
    for key, label, colour in (
        ("batching_on", "micro-batching on (default)", "#1f77b4"),
        ("batching_off", "micro-batching off", "#ff7f0e"),
    ):
        search = results.get(key, {}).get("search")
        if search:
            series.append((label, colour, {p["threads"]: p["qps"] for p in search["qps"]}))
    cached = results.get("batching_on", {}).get("search", {}).get("qps_cached", [])
    if cached:
        series.append(
            ("query cache hits (no model run)", "#bbbbbb", {p["threads"]: p["qps"] for p in cached})
        )
    clients = sorted({t for _, _, qps in series for t in qps})
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    width = 0.8 / max(len(series), 1)
    for i, (label, colour, qps) in enumerate(series):
        xs = [c_i + (i - (len(series) - 1) / 2) * width for c_i in range(len(clients))]
        ys = [qps.get(c, 0.0) for c in clients]
        bars = ax.bar(xs, ys, width * 0.95, label=label, color=colour)
        ax.bar_label(bars, labels=[f"{y:.0f}" for y in ys], fontsize=8, padding=2)
    ax.set_xticks(range(len(clients)), [f"{c} client{'s' if c > 1 else ''}" for c in clients])
    ax.set_ylabel("queries / s")
    m = results["machine"]
    records = results.get("batching_on", results.get("batching_off", {}))
    n = records.get("search", {}).get("collection", {}).get("records")
    ax.set_title(
        f"vecstore text search (embed + k=10 search), {n:,} records\n"
        f"{results['date']}, {m['nproc']} CPUs ({m['cpu_model']})",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="upper left")
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    save(fig, png)


def main(argv: Sequence[str] | None = None) -> int:
    return cli(plot, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
