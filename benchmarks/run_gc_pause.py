"""How long a full garbage collection holds the GIL in a running server, with the start-up heap
frozen (what the server does, ``vecstore/gc_freeze.py``) and with nothing frozen.

The real app (``create_app``) is driven in process through ASGI calls (``run_request_path``'s
driver): start-up, one collection, ``--vectors`` records through ``bulk_upsert`` (base64, 1,000
per call, metadata ``{"bucket": i % 100}``), then ``gc.collect()`` is timed ``--repeats`` times
as the server left the heap (start-up objects frozen, the records' objects not), then again
after ``gc.unfreeze()``. A full collection is a pause for every request in flight.

    python -m benchmarks.run_gc_pause [--vectors 100000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks import machine
from benchmarks.run_request_path import (
    DIM,
    RESULTS_DIR,
    _b64,
    _InProcess,
    _vectors,
    write_results,
)


def _timed_collections(repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        gc.collect()
        out.append((time.perf_counter() - started) * 1000)
    return out


async def _measure(n: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = _InProcess(Path(tmp))
        await server.lifespan("startup")
        deadline = time.monotonic() + 120
        while gc.get_freeze_count() == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the freeze follows the engine's opening
        frozen_at_startup = gc.get_freeze_count()
        body = json.dumps({"name": "g", "dim": DIM, "metric": "cosine"}).encode()
        status, _ = await server.call("POST", "/v1/collections", body)
        assert status == 201, status
        rows = _vectors(n, seed=3)
        for start in range(0, n, 1000):
            chunk = _b64(rows[start : start + 1000])
            items = [
                {"external_id": f"d{start + i}", "vector": v, "metadata": {"bucket": i % 100}}
                for i, v in enumerate(chunk)
            ]
            status, _ = await server.call(
                "POST", "/v1/collections/g/bulk_upsert", json.dumps({"items": items}).encode()
            )
            assert status == 200, status
        tracked = len(gc.get_objects())
        frozen = _timed_collections(repeats)
        gc.unfreeze()
        tracked_unfrozen = len(gc.get_objects())
        unfrozen = _timed_collections(repeats)
        await server.lifespan("shutdown")
    return {
        "vectors": n,
        "repeats": repeats,
        "frozen_objects_at_startup": frozen_at_startup,
        "tracked_objects_frozen": tracked,
        "tracked_objects_unfrozen": tracked_unfrozen,
        "full_collection_ms_frozen": frozen,
        "full_collection_ms_unfrozen": unfrozen,
        "median_ms_frozen": statistics.median(frozen),
        "median_ms_unfrozen": statistics.median(unfrozen),
    }


def _markdown(r: dict[str, Any]) -> str:
    g = r["gc"]
    return "\n".join(
        [
            f"# Full garbage collection in a running server — {r['date']}",
            "",
            f"Machine: {r['machine']['nproc']} CPUs ({r['machine']['cpu_model']}). "
            f"{g['vectors']:,} records ingested in process after start-up; medians of "
            f"{g['repeats']} `gc.collect()` calls, frozen first, then unfrozen. "
            "`python -m benchmarks.run_gc_pause`.",
            "",
            "| heap | objects the collector visits | full collection, median |",
            "|---|---:|---:|",
            f"| start-up objects frozen (the server's default) | {g['tracked_objects_frozen']:,} "
            f"| {g['median_ms_frozen']:.1f} ms |",
            f"| nothing frozen | {g['tracked_objects_unfrozen']:,} "
            f"| {g['median_ms_unfrozen']:.1f} ms |",
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run_gc_pause", description=__doc__)
    p.add_argument("--vectors", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    results = {
        "suite": "gc_pause",
        "date": date.today().isoformat(),
        "machine": machine.describe(),
        "gc": asyncio.run(_measure(args.vectors, args.repeats)),
    }
    write_results(args.out, f"gc-pause-{results['date']}", results, _markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
