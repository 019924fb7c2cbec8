"""Run the soak: start a server, let the clients loose for a while, then compare everything.

Server memory is sampled once a second from /proc. The drift figure compares the median RSS of
the first ``window_s`` after warm-up (the first quarter of the run, while the collections fill up
to the clients' targets) with the median of the last ``window_s`` (both at most a quarter of
the run).
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

from benchmarks.metrics import rss_mb, summarize_ms
from tests.crash.checker import read_collection
from tests.crash.model import CollectionSpec, CollectionState, diff_states
from tests.reporting import markdown_table
from tests.server_process import ServerProcess, new_admin_key
from tests.soak.client import SoakClient

SPECS = [
    CollectionSpec("soak_flat", 32, "l2", "flat"),
    CollectionSpec("soak_hnsw", 32, "cosine", "hnsw"),
]
SOAK_ENV = {"VECSTORE_PRELOAD_MODELS": "false"}


@dataclass
class SoakConfig:
    clients: int = 8
    duration_s: float = 600.0
    seed: int = 1
    target_records: int = 400
    window_s: float = 30.0


@dataclass
class SoakReport:
    config: dict[str, Any]
    operations: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    ops_per_s: float = 0.0
    unexpected_errors: list[str] = field(default_factory=list)
    read_mismatches: list[str] = field(default_factory=list)
    final_state_problems: list[str] = field(default_factory=list)
    final_records: int = 0
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    rss_mib: dict[str, float] = field(default_factory=dict)
    rss_drift_pct: float = 0.0
    rss_samples_mib: list[float] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def failures(self) -> int:
        return (
            len(self.unexpected_errors) + len(self.read_mismatches) + len(self.final_state_problems)
        )


def run_soak(config: SoakConfig, data_dir: Path, log_dir: Path) -> SoakReport:
    key = new_admin_key()
    server = ServerProcess(data_dir, admin_key=key, env=SOAK_ENV, log_dir=log_dir)
    seeds = random.Random(config.seed)
    clients = [
        SoakClient(i, seeds.randrange(2**32), SPECS, target_records=config.target_records)
        for i in range(config.clients)
    ]
    report = SoakReport(config=asdict(config))
    samples: list[tuple[float, float]] = []
    try:
        server.start()
        assert server.proc is not None
        with server.client() as admin:
            for spec in SPECS:
                response = admin.post("/v1/collections", json=spec.create_body())
                assert response.status_code == 201, response.text
        stop = threading.Event()
        threads = [
            threading.Thread(target=c.run, args=(server.base_url, key, stop), daemon=True)
            for c in clients
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while (elapsed := time.monotonic() - started) < config.duration_s:
            samples.append((elapsed, rss_mb([server.proc.pid])))
            time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
            if thread.is_alive():
                raise RuntimeError("a soak client did not stop within 120 s")
        report.duration_s = round(time.monotonic() - started, 1)
        with server.client() as admin:
            for spec in SPECS:
                problems: list[str] = []
                server_coll = read_collection(admin, spec.name, problems)
                report.final_state_problems += problems
                report.final_records += len(server_coll.records)
                for client in clients:
                    mine = {
                        i: r for i, r in server_coll.records.items() if i.startswith(client.prefix)
                    }
                    got = {spec.name: CollectionState(spec, mine)}
                    want = {spec.name: client.model[spec.name]}
                    report.final_state_problems += diff_states(got, want)
                stray = [
                    i
                    for i in server_coll.records
                    if not any(i.startswith(c.prefix) for c in clients)
                ]
                if stray:
                    report.final_state_problems.append(
                        f"{spec.name}: records of no client {stray[:5]}"
                    )
    finally:
        server.stop()
    _summarise(report, clients, samples, config)
    return report


def _summarise(
    report: SoakReport,
    clients: list[SoakClient],
    samples: list[tuple[float, float]],
    config: SoakConfig,
) -> None:
    kinds: Counter[str] = Counter()
    latencies: dict[str, list[float]] = {}
    for client in clients:
        kinds.update(client.ops)
        report.unexpected_errors += [f"client {client.index}: {e}" for e in client.errors]
        report.read_mismatches += [f"client {client.index}: {m}" for m in client.mismatches]
        for kind, values in client.latencies_ms.items():
            latencies.setdefault(kind, []).extend(values)
    report.by_kind = dict(sorted(kinds.items()))
    report.operations = sum(kinds.values())
    report.ops_per_s = round(report.operations / max(report.duration_s, 1e-9), 1)
    summaries = {kind: summarize_ms(v) for kind, v in sorted(latencies.items())}
    report.latency_ms = {
        kind: {"p50": round(v["p50_ms"], 2), "p99": round(v["p99_ms"], 2)}
        for kind, v in summaries.items()
    }
    report.rss_samples_mib = [round(rss, 1) for _, rss in samples]
    warm = config.duration_s / 4
    window = min(config.window_s, config.duration_s / 4)
    first = [rss for t, rss in samples if warm <= t < warm + window]
    last = [rss for t, rss in samples if t >= config.duration_s - window]
    if first and last:
        base, end = statistics.median(first), statistics.median(last)
        report.rss_mib = {
            "after_warm_up": round(base, 1),
            "end": round(end, 1),
            "peak": round(max(rss for _, rss in samples), 1),
        }
        report.rss_drift_pct = round((end - base) / base * 100, 2)


def render_markdown(report: SoakReport) -> str:
    rows = [
        ("clients / duration (s)", f"{report.config['clients']} / {report.duration_s}"),
        ("operations (per s)", f"{report.operations} ({report.ops_per_s})"),
        ("  by kind", ", ".join(f"{k} {v}" for k, v in report.by_kind.items())),
        ("unexpected errors", len(report.unexpected_errors)),
        ("reads that disagreed with the model", len(report.read_mismatches)),
        ("final state differences from the model", len(report.final_state_problems)),
        ("records at the end", report.final_records),
        (
            "server RSS after warm-up / end / peak (MiB)",
            " / ".join(str(report.rss_mib.get(k, "-")) for k in ("after_warm_up", "end", "peak")),
        ),
        ("RSS drift after warm-up", f"{report.rss_drift_pct:+.2f} %"),
    ]
    rows += [
        (f"latency {kind} p50 / p99 (ms)", f"{v['p50']} / {v['p99']}")
        for kind, v in report.latency_ms.items()
    ]
    problems = report.unexpected_errors + report.read_mismatches + report.final_state_problems
    return markdown_table(rows, problems, "Problems")
