"""After a restart: read everything back and compare it with the workers' models.

The server's state is read through the public API only — the collection list, each collection's
spec, a full ``scroll`` with vectors, ``count`` and ``search`` — so the check sees exactly what a
client would. For each worker the server must equal the acknowledged state, or, when the worker's
last operation was in doubt, the state with that operation applied in full.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from tests.crash.model import (
    CollectionSpec,
    CollectionState,
    State,
    canonical,
    diff_states,
    vector_bytes,
)
from tests.crash.workload import Worker

SEARCH_K = 10
QUERIES_PER_COLLECTION = 4
HNSW_MIN_RECALL = 0.95
SCORE_TOLERANCE = 1e-4


@dataclass
class CheckResult:
    violations: list[str] = field(default_factory=list)
    in_doubt: Counter[str] = field(default_factory=Counter)  # "applied" / "not applied"
    records: int = 0
    collections: int = 0
    searches: int = 0
    min_hnsw_recall: float = 1.0


def _data(response: httpx.Response) -> Any:
    if response.status_code != 200:
        raise CheckError(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
    return response.json()["data"]


class CheckError(Exception):
    """The server could not be read back (a violation of "every collection opens")."""


def read_collection(client: httpx.Client, name: str, problems: list[str]) -> CollectionState:
    info = _data(client.get(f"/v1/collections/{name}"))
    spec = CollectionSpec(name, info["dim"], info["distance_metric"], info["index"]["type"])
    coll = CollectionState(spec)
    cursor: str | None = None
    pages = 0
    while True:
        body: dict[str, Any] = {"limit": 1000, "include_vectors": True}
        if cursor is not None:
            body["cursor"] = cursor
        page = _data(client.post(f"/v1/collections/{name}/scroll", json=body))
        for record in page["vectors"]:
            external_id = record["external_id"]
            if external_id in coll.records:
                problems.append(f"collection {name}: record {external_id!r} scrolled twice")
            coll.records[external_id] = (
                vector_bytes(record["vector"]),
                canonical([record["metadata"], record["content"]]),
            )
        cursor = page["next_cursor"]
        pages += 1
        if cursor is None:
            break
        if pages > 10_000:
            raise CheckError(f"collection {name}: scroll does not end")
    count = _data(client.post(f"/v1/collections/{name}/count", json={}))["count"]
    if count != len(coll.records):
        problems.append(f"collection {name}: count {count} != scroll {len(coll.records)}")
    if info["vector_count"] != len(coll.records):
        problems.append(
            f"collection {name}: vector_count {info['vector_count']} != scroll {len(coll.records)}"
        )
    return coll


def read_server(client: httpx.Client, problems: list[str]) -> State:
    listed = _data(client.get("/v1/collections"))["collections"]
    return {c["name"]: read_collection(client, c["name"], problems) for c in listed}


def check_search(
    client: httpx.Client, coll: CollectionState, rng: np.random.Generator, result: CheckResult
) -> None:
    """Flat: the exact top-k of the model (ties allowed). HNSW: recall@k ≥ 0.95."""
    name, spec = coll.spec.name, coll.spec
    if not coll.records:
        hits = _data(
            client.post(
                f"/v1/collections/{name}/search", json={"vector": [0.5] * spec.dim, "k": SEARCH_K}
            )
        )["results"]
        if hits:
            result.violations.append(f"collection {name}: search of an empty collection hit {hits}")
        return
    k = min(SEARCH_K, len(coll.records))
    recalls = []
    for _ in range(QUERIES_PER_COLLECTION):
        query = rng.standard_normal(spec.dim).astype(np.float32)
        body = {"vector": query.tolist(), "k": SEARCH_K}
        hits = _data(client.post(f"/v1/collections/{name}/search", json=body))["results"]
        result.searches += 1
        got = [h["external_id"] for h in hits]
        unknown = [i for i in got if i not in coll.records]
        if unknown or len(set(got)) != len(got) or len(got) != k:
            result.violations.append(
                f"collection {name}: search returned {len(got)} hits (want {k}), "
                f"unknown {unknown[:3]}, duplicates {len(got) - len(set(got))}"
            )
            continue
        want, scores = coll.exact_top(query, k)
        if spec.index_type == "flat":
            # Compare scores rank by rank, so records that tie may come in either order.
            want_scores = np.sort(scores)[::-1][:k]
            got_scores = coll.scores_of(query, got)
            if not np.allclose(got_scores, want_scores, rtol=SCORE_TOLERANCE, atol=SCORE_TOLERANCE):
                result.violations.append(
                    f"collection {name}: flat search {got[:5]}… != exact {want[:5]}…"
                )
        else:
            recalls.append(len(set(got) & set(want)) / k)
    if recalls:
        recall = float(np.mean(recalls))
        result.min_hnsw_recall = min(result.min_hnsw_recall, recall)
        if recall < HNSW_MIN_RECALL:
            result.violations.append(f"collection {name}: hnsw recall@{k} {recall:.3f} < 0.95")


def check(client: httpx.Client, workers: list[Worker], rng: np.random.Generator) -> CheckResult:
    """Compare the server with every worker's model, settle in-doubt operations, run searches."""
    result = CheckResult()
    try:
        server = read_server(client, result.violations)
    except CheckError as exc:
        result.violations.append(f"could not read the server back: {exc}")
        return result
    owned: set[str] = set()
    for worker in workers:
        mine = {n: c for n, c in server.items() if n.startswith(worker.prefix + "_")}
        owned.update(mine)
        problems = diff_states(mine, worker.state)
        if problems and worker.pending is not None:
            if not diff_states(mine, worker.pending):
                problems = []
                result.in_doubt["applied"] += 1
            else:
                problems.append(
                    f"(last {worker.pending_kind} was in doubt; neither outcome matches: "
                    f"{diff_states(mine, worker.pending)[:3]})"
                )
        elif worker.pending is not None:
            result.in_doubt["not applied"] += 1
        result.violations.extend(f"{worker.prefix}: {p}" for p in problems)
        # Go on from what the server holds, so one violation is reported once, not every cycle.
        worker.settle(mine)
    for name in sorted(server.keys() - owned):
        result.violations.append(f"collection {name}: phantom (no worker owns it)")
    for coll in server.values():
        try:
            check_search(client, coll, rng, result)
        except CheckError as exc:
            result.violations.append(f"collection {coll.spec.name}: search failed: {exc}")
    result.collections = len(server)
    result.records = sum(len(c.records) for c in server.values())
    return result
