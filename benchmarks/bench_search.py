"""``search``: recall@10 against exact ground truth, latency, and QPS at several client threads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks import datasets
from benchmarks.client import data_of, encode
from benchmarks.datasets import Dataset
from benchmarks.groundtruth import IdArray, exact_top_k
from benchmarks.load import LoadResult, Request, cycled, run_load, striped
from benchmarks.metrics import recall_at_k
from benchmarks.server import ServerHandle

WARMUP_QUERIES = 20
# The two filter selectivities: the filter, and the bound b such that it matches bucket < b.
FILTERS: dict[str, tuple[dict[str, Any], int]] = {
    "filter_1pct": ({"bucket": 0}, 1),
    "filter_10pct": ({"bucket": {"$lt": 10}}, 10),
}


class SearchBench:
    """One collection, one query set; each method runs one measured pass."""

    def __init__(
        self,
        server: ServerHandle,
        ds: Dataset,
        base_unit: datasets.FloatArray,
        *,
        collection: str,
        k: int,
        time_budget_s: float,
    ) -> None:
        self.server = server
        self.ds = ds
        self.base_unit = base_unit
        self.path = f"/v1/collections/{collection}/search"
        self.k = k
        self.time_budget_s = time_budget_s

    def requests(self, extra: dict[str, Any]) -> list[Request]:
        return [
            Request(self.path, encode({"vector": datasets.to_wire(q), "k": self.k, **extra}))
            for q in self.ds.queries
        ]

    def accuracy_pass(self, extra: dict[str, Any], truth: Sequence[IdArray]) -> dict[str, Any]:
        """Every query once on one thread: recall@k, latency and single-client QPS."""
        reqs = self.requests(extra)
        self._warm_up(reqs)
        result = run_load(
            self.server,
            reqs,
            striped(len(reqs), 1),
            time_budget_s=self.time_budget_s,
            keep_responses=True,
        )
        found = _result_ids(result)
        done = [idx for idx, _ in result.responses]
        expected_len = [len(truth[i]) for i in done]
        return {
            "body": extra,
            "recall_at_k": recall_at_k([found[i] for i in done], [truth[i].tolist() for i in done]),
            "short_results": sum(
                len(found[i]) != n for i, n in zip(done, expected_len, strict=True)
            ),
            **result.figures(),
        }

    def throughput_pass(self, threads: int, per_thread: int) -> dict[str, Any]:
        """``per_thread`` unfiltered queries on each of ``threads`` threads: QPS and latency."""
        reqs = self.requests({})
        self._warm_up(reqs)
        result = run_load(
            self.server,
            reqs,
            cycled(len(reqs), threads, per_thread),
            time_budget_s=self.time_budget_s,
        )
        return {"threads": threads, "per_thread": per_thread, **result.figures()}

    def run_all(self, *, thread_counts: Sequence[int], per_thread: int) -> dict[str, Any]:
        truth = exact_top_k(self.base_unit, self.ds.queries, self.k)
        out: dict[str, Any] = {
            "k": self.k,
            "queries": len(self.ds.queries),
            "default": self.accuracy_pass({}, truth),
            "exact": self.accuracy_pass({"exact": True}, truth),
            "throughput": [self.throughput_pass(t, per_thread) for t in thread_counts],
        }
        buckets = self.ds.buckets
        for name, (flt, below) in FILTERS.items():
            subset = (buckets < below).nonzero()[0]
            f_truth = exact_top_k(self.base_unit, self.ds.queries, self.k, subset=subset)
            out[name] = {
                "matching": int(subset.size),
                "selectivity": subset.size / self.ds.n,
                **self.accuracy_pass({"filters": flt}, f_truth),
            }
        return out

    def _warm_up(self, reqs: Sequence[Request]) -> None:
        n = min(WARMUP_QUERIES, len(reqs))
        run_load(self.server, reqs, [list(range(n))], time_budget_s=self.time_budget_s)


def _result_ids(result: LoadResult) -> dict[int, list[int]]:
    return {
        idx: [datasets.index_of(hit["external_id"]) for hit in data_of(raw)["results"]]
        for idx, raw in result.responses
    }
