"""Repeated search and rerank passes, and the median round the report takes from them.

The shared host drifts by more than 10 % within minutes, in either direction, while the systems
are measured one after another. A ratio of two systems' figures taken minutes apart carries
both systems' share of that drift. So the comparison repeats the passes that the speed targets
read (the knob sweep and the rerank passes) in rounds: the first in each system's own turn, the
others with every server system up, visiting them in turn, in alternating order
(``compare.run``). Each pass's reported figures are those of its median round, with every
round's figure kept beside them, so the report shows the spread the ratio stands in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Pass = dict[str, Any]


def qps(p: Pass) -> float:
    return float(p["qps"])


def p50_ms(p: Pass) -> float:
    return float(p["latency"]["p50_ms"])


def median_pass(
    passes: Sequence[Pass], figure: Callable[[Pass], float], *, higher_is_better: bool
) -> Pass:
    """The pass whose ``figure`` is the median of the rounds' (of an even count, the worse of
    the two middle ones), with each round's figure, in round order, under ``"rounds"``."""
    if not passes:
        raise ValueError("no passes to take a median of")
    ranked = sorted(passes, key=figure, reverse=higher_is_better)  # best first
    chosen = dict(ranked[len(ranked) // 2])
    chosen["rounds"] = [figure(p) for p in passes]
    return chosen


def median_sweep(rounds: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The sweep rows of the first round, each pass replaced by its median round: the single-
    client pass by QPS, each concurrent pass (matched by thread count) by QPS. A round that
    ended early (a failure) contributes the knobs it reached."""
    if not rounds:
        return []
    out = []
    for row in rounds[0]:
        same = [r for sweep in rounds for r in sweep if r["knob"] == row["knob"]]
        combined: dict[str, Any] = {
            "knob": row["knob"],
            "single": median_pass([r["single"] for r in same], qps, higher_is_better=True),
            "concurrent": [],
        }
        for conc in row["concurrent"]:
            peers = [c for r in same for c in r["concurrent"] if c["threads"] == conc["threads"]]
            combined["concurrent"].append(median_pass(peers, qps, higher_is_better=True))
        out.append(combined)
    return out


def median_rerank(rounds: Sequence[Sequence[Pass]]) -> list[Pass]:
    """The rerank passes of the first round, each replaced by its median round by p50."""
    if not rounds:
        return []
    return [
        median_pass(
            [p for passes in rounds for p in passes if p["candidates"] == first["candidates"]],
            p50_ms,
            higher_is_better=False,
        )
        for first in rounds[0]
    ]


def combine(system: dict[str, Any]) -> None:
    """Set ``system["sweep"]`` and ``system["rerank"]`` from ``system["rounds"]``."""
    rounds = system.get("rounds") or []
    sweeps = [r["sweep"] for r in rounds if r.get("sweep")]
    reranks = [r["rerank"] for r in rounds if r.get("rerank")]
    if sweeps:
        system["sweep"] = median_sweep(sweeps)
    if reranks:
        system["rerank"] = median_rerank(reranks)


def visiting_order(names: Sequence[str], round_index: int) -> list[str]:
    """The systems in list order in odd rounds and reversed in even ones, so that none is
    always measured first or right after the same neighbour."""
    return list(names) if round_index % 2 else list(reversed(names))
