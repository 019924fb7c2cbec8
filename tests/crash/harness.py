"""Kill/restart cycles: workers write, the server is SIGKILLed at a random moment, then checked.

One cycle: the workers run against the server; every ``interval`` (uniform in 1 to 5 s by default)
the harness kills the server with probability ``p_kill``. With probability ``p_kill_in_start``
the next start is killed too, at a random moment of its start-up (migrations, checkpoint loading,
change-log replay). Then the server is started, and ``checker.check`` compares it with the models.

The server runs with a small checkpoint interval, a low compaction threshold and a small fresh
segment, so checkpoint writes, background indexing and index compaction run all the time and a
kill can land in any of them (compactions are counted; what each kill interrupted is not).
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.crash.checker import check
from tests.crash.workload import Worker, WorkloadShape
from tests.oracles import metric_value
from tests.reporting import markdown_table
from tests.server_process import ServerProcess, new_admin_key

# Make the background work that a crash can interrupt happen all the time.
CRASH_ENV = {
    "VECSTORE_PRELOAD_MODELS": "false",
    "VECSTORE_INDEXER_INTERVAL_S": "0.05",
    "VECSTORE_INDEXER_DEFER_S": "0.2",
    "VECSTORE_INDEXER_FRESH_MAX": "300",
    "VECSTORE_INDEXER_BATCH_SIZE": "128",
    "VECSTORE_CHECKPOINT_EVERY_CHANGES": "300",
    "VECSTORE_CHECKPOINT_IDLE_S": "0.5",
    "VECSTORE_COMPACTION_THRESHOLD": "0.1",
}


@dataclass
class CrashConfig:
    cycles: int = 10
    seed: int = 1
    workers: int = 2
    p_kill: float = 0.3
    interval_s: tuple[float, float] = (1.0, 5.0)
    p_kill_in_start: float = 0.1
    shape: WorkloadShape = field(default_factory=WorkloadShape)


@dataclass
class CrashReport:
    config: dict[str, Any]
    cycles: int = 0
    kills: int = 0
    kills_in_start: int = 0
    violations: list[str] = field(default_factory=list)
    acknowledged: dict[str, int] = field(default_factory=dict)
    in_doubt: dict[str, int] = field(default_factory=dict)
    index_compactions: int = 0  # background rebuilds because of tombstones
    index_recoveries: int = 0  # indexes rebuilt at start-up (no usable checkpoint)
    searches_checked: int = 0
    min_hnsw_recall: float = 1.0
    final_collections: int = 0
    final_records: int = 0
    max_records_checked: int = 0
    restart_s: dict[str, float] = field(default_factory=dict)
    client_timeouts: int = 0
    server_error_lines: int = 0
    server_error_examples: list[str] = field(default_factory=list)
    duration_s: float = 0.0


def _rebuilds(server: ServerProcess) -> int:
    """``vecstore_index_rebuilds_total`` of the running process (0 if it cannot be read)."""
    try:
        with server.client(timeout_s=5.0) as client:
            return int(metric_value(client, "vecstore_index_rebuilds_total"))
    except httpx.HTTPError:
        return 0


def _observe(server: ServerProcess, report: CrashReport, *, read_metrics: bool) -> None:
    """Before a kill: count the process's index rebuilds and any error lines it logged."""
    lines = server.stderr().splitlines()
    recoveries = sum(": rebuilding index (" in line for line in lines)
    report.index_recoveries += recoveries
    if read_metrics:
        report.index_compactions += max(0, _rebuilds(server) - recoveries)
    errors = [line for line in lines if " ERROR " in line or "Traceback" in line]
    report.server_error_lines += len(errors)
    for line in errors:
        if len(report.server_error_examples) < 10 and line not in report.server_error_examples:
            report.server_error_examples.append(line[:300])


def run_crasher(config: CrashConfig, data_dir: Path, log_dir: Path) -> CrashReport:
    """Run ``config.cycles`` kill/restart cycles; the server is always stopped at the end."""
    rng = random.Random(config.seed)
    search_rng = np.random.default_rng(config.seed)
    key = new_admin_key()
    server = ServerProcess(data_dir, admin_key=key, env=CRASH_ENV, log_dir=log_dir)
    workers = [
        Worker(i, seed=config.seed * 1000 + i, shape=config.shape) for i in range(config.workers)
    ]
    report = CrashReport(config=asdict(config))
    restarts: list[float] = []
    started = time.monotonic()
    try:
        server.start()
        for _ in range(config.cycles):
            stop = threading.Event()
            threads = [
                threading.Thread(target=w.run, args=(server.base_url, key, stop), daemon=True)
                for w in workers
            ]
            for thread in threads:
                thread.start()
            while True:
                time.sleep(rng.uniform(*config.interval_s))
                if rng.random() < config.p_kill:
                    break
            _observe(server, report, read_metrics=True)
            server.kill()
            report.kills += 1
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
                if thread.is_alive():
                    raise RuntimeError("a workload thread did not stop within 60 s")
            if rng.random() < config.p_kill_in_start:
                server.launch()
                time.sleep(rng.uniform(0.05, 1.5))
                _observe(server, report, read_metrics=False)
                server.kill()
                report.kills_in_start += 1
            begin = time.monotonic()
            server.start()
            restarts.append(time.monotonic() - begin)
            with server.client() as client:
                result = check(client, workers, search_rng)
            report.cycles += 1
            report.violations.extend(f"cycle {report.cycles}: {v}" for v in result.violations)
            report.searches_checked += result.searches
            report.min_hnsw_recall = min(report.min_hnsw_recall, result.min_hnsw_recall)
            report.max_records_checked = max(report.max_records_checked, result.records)
            report.final_collections, report.final_records = result.collections, result.records
            for outcome, n in result.in_doubt.items():
                report.in_doubt[outcome] = report.in_doubt.get(outcome, 0) + n
        _observe(server, report, read_metrics=True)
    finally:
        server.stop()
    acknowledged: Counter[str] = Counter()
    for worker in workers:
        acknowledged.update(worker.acknowledged)
        report.violations.extend(f"{worker.prefix}: {p}" for p in worker.problems)
        report.client_timeouts += worker.timeouts
    report.acknowledged = dict(sorted(acknowledged.items()))
    if restarts:
        report.restart_s = {
            "median": round(statistics.median(restarts), 3),
            "max": round(max(restarts), 3),
        }
    report.duration_s = round(time.monotonic() - started, 1)
    return report


def render_markdown(report: CrashReport) -> str:
    """The report as the table docs/reliability.md shows."""
    rows = [
        ("kill/restart cycles", report.cycles),
        (
            "SIGKILLs (of which during start-up)",
            f"{report.kills + report.kills_in_start} ({report.kills_in_start})",
        ),
        ("violations", len(report.violations)),
        ("acknowledged operations", sum(report.acknowledged.values())),
        ("  by kind", ", ".join(f"{k} {v}" for k, v in report.acknowledged.items())),
        (
            "in-doubt operations: applied / not applied",
            f"{report.in_doubt.get('applied', 0)} / {report.in_doubt.get('not applied', 0)}",
        ),
        (
            "index compactions (tombstones) / rebuilds at start-up",
            f"{report.index_compactions} / {report.index_recoveries}",
        ),
        ("searches checked (exact or recall)", report.searches_checked),
        ("lowest HNSW recall@10 of a collection", f"{report.min_hnsw_recall:.3f}"),
        ("most records checked after one restart", report.max_records_checked),
        (
            "restart to ready: median / max (s)",
            f"{report.restart_s.get('median', 0)} / {report.restart_s.get('max', 0)}",
        ),
        ("client timeouts (30 s)", report.client_timeouts),
        ("ERROR/Traceback lines in server logs", report.server_error_lines),
        ("duration (s)", report.duration_s),
    ]
    return markdown_table(rows, report.violations, "Violations")
