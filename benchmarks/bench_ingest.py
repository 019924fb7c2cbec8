"""Bulk ingest over ``bulk_upsert`` and the wait for the background indexer to catch up."""

from __future__ import annotations

import base64
import time
from typing import Any

import numpy as np

from benchmarks import datasets
from benchmarks.client import ApiClient, data_of, encode
from benchmarks.datasets import Dataset
from benchmarks.load import Request, run_load, striped
from benchmarks.metrics import latency_ms
from benchmarks.server import ServerHandle

_POLL_INTERVAL_S = 0.25


def encode_batches(
    ds: Dataset, collection: str, batch_size: int, vector_encoding: str = "floats"
) -> list[Request]:
    """Every ``bulk_upsert`` body, encoded up front so the client does not compete for CPU.

    ``vector_encoding``: "floats" (JSON float lists) or "base64" (little-endian float32).
    """
    path = f"/v1/collections/{collection}/bulk_upsert"
    out: list[Request] = []
    for start in range(0, ds.n, batch_size):
        stop = min(start + batch_size, ds.n)
        rows: list[Any]
        if vector_encoding == "base64":
            wire = np.asarray(datasets.to_wire_rows(ds.vectors[start:stop]), dtype="<f4")
            rows = [base64.b64encode(row.tobytes()).decode() for row in wire]
        else:
            rows = list(datasets.to_wire_rows(ds.vectors[start:stop]))
        items = [
            {
                "external_id": datasets.external_id(i),
                "vector": vec,
                "metadata": datasets.metadata(i),
            }
            for i, vec in zip(range(start, stop), rows, strict=True)
        ]
        out.append(Request(path, encode({"items": items})))
    return out


def ingest(
    server: ServerHandle,
    ds: Dataset,
    *,
    collection: str,
    batch_size: int,
    threads: int,
    time_budget_s: float,
    vector_encoding: str = "floats",
) -> dict[str, Any]:
    t0 = time.perf_counter()
    batches = encode_batches(ds, collection, batch_size, vector_encoding)
    encode_s = time.perf_counter() - t0
    result = run_load(
        server,
        batches,
        striped(len(batches), threads),
        time_budget_s=time_budget_s,
        keep_responses=True,
    )
    written = sum(
        int(data["inserted"]) + int(data["updated"])
        for data in (data_of(raw) for _, raw in result.responses)
    )
    return {
        "vectors": ds.n,
        "vector_encoding": vector_encoding,
        "written": written,
        "batches": len(batches),
        "batch_size": batch_size,
        "threads": threads,
        "body_mb": round(sum(len(b.body) for b in batches) / 2**20, 1),
        "client_encode_s": encode_s,
        "wall_s": result.wall_s,
        "vectors_per_s": written / result.wall_s if result.wall_s > 0 else 0.0,
        "batch_latency": latency_ms(result.latencies_s),
        "retries": result.retries,
        "complete": not result.timed_out and written == ds.n,
    }


def wait_for_index(
    server: ServerHandle, *, collection: str, expected: int, timeout_s: float
) -> dict[str, Any]:
    """Poll ``GET /v1/health`` until the collection's index holds every vector (bounded).

    The benchmark only inserts new ids, so a caught-up index has no tombstones either; a non-zero
    ``deleted_fraction`` here means the server reported a batch whose add was still in progress.
    """
    t0 = time.perf_counter()
    deadline = t0 + timeout_s
    last: dict[str, Any] = {}
    polls = 0
    with ApiClient(server.base_url, server.key) as client:
        while True:
            polls += 1
            health = client.get("/v1/health")
            last = next((c for c in health["collections"] if c["name"] == collection), {})
            done = _caught_up(last, expected)
            if done or time.perf_counter() >= deadline:
                break
            time.sleep(_POLL_INTERVAL_S)
    return {
        "caught_up": done,
        "seconds_after_ingest": time.perf_counter() - t0,
        "polls": polls,
        "timeout_s": timeout_s,
        "last_health": last,
    }


def _caught_up(stats: dict[str, Any], expected: int) -> bool:
    return (
        stats.get("vector_count") == expected
        and stats.get("index_vectors") == expected
        and not stats.get("deleted_fraction")
    )
