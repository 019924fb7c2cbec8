"""Per-collection ``rerank``: client-side HTTP latency and the server's own timing breakdown."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks import datasets
from benchmarks.client import data_of, encode
from benchmarks.datasets import Dataset
from benchmarks.groundtruth import IdArray
from benchmarks.load import Request, run_load, striped
from benchmarks.metrics import recall_at_k, summarize_ms
from benchmarks.server import ServerHandle

WARMUP_CALLS = 20
_SEED = 7


def rerank_pass(
    server: ServerHandle,
    ds: Dataset,
    base_unit: datasets.FloatArray,
    *,
    collection: str,
    candidates: int,
    time_budget_s: float,
) -> dict[str, Any]:
    """One rerank call per query on one thread, each over ``candidates`` random stored ids.

    ``top10_agreement`` checks correctness: the server's top 10 against numpy's exact ranking of
    the same candidates (1.0 = identical sets).
    """
    rng = np.random.default_rng([_SEED, candidates])
    size = min(candidates, ds.n)
    path = f"/v1/collections/{collection}/rerank"
    picks: list[IdArray] = [
        rng.choice(ds.n, size=size, replace=False) for _ in range(len(ds.queries))
    ]
    reqs = [
        Request(
            path,
            encode(
                {
                    "vector": datasets.to_wire(q),
                    "candidates": [datasets.external_id(int(i)) for i in pick],
                    "include_timing": True,
                }
            ),
        )
        for q, pick in zip(ds.queries, picks, strict=True)
    ]
    warm = min(WARMUP_CALLS, len(reqs))
    run_load(server, reqs, [list(range(warm))], time_budget_s=time_budget_s)
    result = run_load(
        server, reqs, striped(len(reqs), 1), time_budget_s=time_budget_s, keep_responses=True
    )

    search_ms: list[float] = []
    total_ms: list[float] = []
    found: list[list[int]] = []
    truth: list[list[int]] = []
    bad_counts = 0
    q_unit = datasets.unit(ds.queries)
    for idx, raw in result.responses:
        data = data_of(raw)
        timing = data["timing_ms"]
        search_ms.append(float(timing["search_ms"]))
        total_ms.append(float(timing["total_ms"]))
        ids = [datasets.index_of(hit["external_id"]) for hit in data["results"]]
        if len(ids) != size or data.get("not_found"):
            bad_counts += 1
        found.append(ids[:10])
        truth.append(_exact_order(base_unit, q_unit[idx], picks[idx])[:10])
    return {
        "candidates": size,
        "http": result.figures(),
        "server_search": summarize_ms(search_ms),
        "server_total": summarize_ms(total_ms),
        "top10_agreement": recall_at_k(found, truth),
        "wrong_result_count": bad_counts,
    }


def _exact_order(
    base_unit: datasets.FloatArray, query_unit: datasets.FloatArray, idx: IdArray
) -> list[int]:
    scores = base_unit[idx] @ query_unit
    return [int(i) for i in idx[np.argsort(-scores, kind="stable")]]
