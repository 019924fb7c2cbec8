"""The comparison's figure from a ``compare-<date>-<dataset>.json``: recall@10 against QPS per
system (1 client solid, the most clients dashed), search latency percentiles at the default
knob, and ingest time (acknowledged / indexed). Needs only matplotlib:

    .venv-bench/bin/python -m benchmarks.plot_compare RESULTS.json OUT.png
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

    systems = {
        n: s
        for n, s in results["systems"].items()
        if s.get("sweep") and not s.get("skipped") and not s.get("failed")
    }
    many = max(results["config"]["threads"])
    default = results["config"]["default_knob"]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, s) in enumerate(systems.items()):
        c = colours[i % len(colours)]
        rec = [r["single"]["recall@10"] for r in s["sweep"]]
        ax1.plot([r["single"]["qps"] for r in s["sweep"]], rec, "o-", color=c, label=name)
        conc = [
            next((x["qps"] for x in r["concurrent"] if x["threads"] == many), None)
            for r in s["sweep"]
        ]
        pts = [(q, r) for q, r in zip(conc, rec, strict=True) if q is not None]
        if pts:
            ax1.plot(*zip(*pts, strict=True), "s--", color=c, alpha=0.6)
    ax1.set_xscale("log")
    ax1.set_xlabel(f"QPS (log; solid: 1 client, dashed: {many} clients)")
    ax1.set_ylabel("recall@10")
    ax1.set_title("recall vs throughput, knob sweep")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    names = list(systems)
    p50, p99 = [], []
    for s in systems.values():
        row = next((r for r in s["sweep"] if r["knob"] == default), s["sweep"][-1])
        p50.append(row["single"]["latency"]["p50_ms"])
        p99.append(row["single"]["latency"]["p99_ms"])
    x = range(len(names))
    ax2.bar([i - 0.2 for i in x], p50, 0.4, label="p50")
    ax2.bar([i + 0.2 for i in x], p99, 0.4, label="p99")
    ax2.set_xticks(list(x), names, rotation=20)
    ax2.set_yscale("log")
    ax2.set_ylabel("ms (log)")
    ax2.set_title(f"1-client search latency, knob {default}")
    ax2.legend(fontsize=8)
    ack = [s["ingest"]["acknowledged_s"] for s in systems.values()]
    idx = [s["ingest"]["indexed_s"] for s in systems.values()]
    ax3.bar([i - 0.2 for i in x], ack, 0.4, label="acknowledged")
    ax3.bar([i + 0.2 for i in x], idx, 0.4, label="indexed")
    ax3.set_xticks(list(x), names, rotation=20)
    ax3.set_ylabel("seconds")
    ax3.set_title(f"ingest of {results['dataset']['vectors']:,} vectors")
    ax3.legend(fontsize=8)
    m = results["machine"]
    fig.suptitle(
        f"vecstore vs peers — {results['dataset']['name']}, {results['date']}, "
        f"{m['nproc']} CPUs ({m['cpu_model']})",
        fontsize=10,
    )
    save(fig, png)


def main(argv: Sequence[str] | None = None) -> int:
    return cli(plot, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
