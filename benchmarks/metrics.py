"""Figures computed from raw measurements: latency percentiles, recall and process memory."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


def summarize_ms(values_ms: npt.ArrayLike) -> dict[str, float]:
    """p50 / p99 / mean / max of values already in milliseconds."""
    arr = np.asarray(values_ms, dtype=np.float64)
    if arr.size == 0:
        return {"count": 0, "p50_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
    return {
        "count": int(arr.size),
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "mean_ms": float(arr.mean()),
        "max_ms": float(arr.max()),
    }


def rss_mb(pids: Sequence[int]) -> float:
    """Resident memory of these processes now, in MiB (Linux ``/proc``; a gone pid counts 0)."""
    total_kb = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


def latency_ms(latencies_s: npt.NDArray[np.float64]) -> dict[str, float]:
    return summarize_ms(latencies_s * 1000.0)


def recall_at_k(found: Sequence[Sequence[Hashable]], truth: Sequence[Sequence[Hashable]]) -> float:
    """Mean over queries of |found ∩ truth| / |truth|; a query with no true match counts as 1."""
    if len(found) != len(truth):
        raise ValueError(f"{len(found)} result lists for {len(truth)} queries")
    if not truth:
        return float("nan")
    scores = [
        len(set(f) & set(t)) / len(t) if len(t) else 1.0 for f, t in zip(found, truth, strict=True)
    ]
    return float(np.mean(scores))


NOISY_CORES = 0.25  # a round in which other processes used more CPU than this is "noisy"


def median_round(
    rounds: Sequence[dict[str, Any]],
    key: str,
    *,
    noise: Callable[[dict[str, Any]], float | None] | None = None,
) -> dict[str, Any]:
    """Of repeated runs of one pass, the run whose ``key`` is the median (the lower middle one of
    an even count), with every run's ``key`` in ``<key>_by_round``: on a shared machine one
    burst of noise then moves a figure less than it would move one run or a mean. With
    ``noise`` (the CPUs other processes used during a run), runs above ``NOISY_CORES`` are set
    aside as long as at least one quiet run is left."""
    if not rounds:
        raise ValueError("no rounds")
    quiet = [r for r in rounds if noise is None or (noise(r) or 0.0) <= NOISY_CORES]
    pool = quiet or list(rounds)
    ordered = sorted(pool, key=lambda r: float(r[key]))
    middle = ordered[(len(ordered) - 1) // 2]
    return {
        **middle,
        "rounds": len(rounds),
        "noisy_rounds_set_aside": len(rounds) - len(pool),
        f"{key}_by_round": [r[key] for r in rounds],
    }
