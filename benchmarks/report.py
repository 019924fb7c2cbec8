"""Targets, and the JSON + markdown files a run leaves in ``benchmarks/results/``."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Target:
    name: str
    reached: float
    goal: float
    unit: str
    higher_is_better: bool

    @property
    def met(self) -> bool:
        if math.isnan(self.reached):
            return False
        return self.reached >= self.goal if self.higher_is_better else self.reached <= self.goal

    def show(self, value: float) -> str:
        number = f"{value:.4f}" if not self.unit else _num(value)
        return f"{number} {self.unit}".rstrip()

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


def targets(results: dict[str, Any]) -> list[Target]:
    """The product's performance targets, read off a finished run. Reported, never asserted."""
    nan = float("nan")
    rerank = {r["candidates"]: r for r in results["rerank"]}
    big = rerank.get(1000)
    out = [
        Target(
            "rerank 1000 candidates: server search_ms p50",
            big["server_search"]["p50_ms"] if big else nan,
            1.0,
            "ms",
            higher_is_better=False,
        ),
        Target(
            "rerank 1000 candidates: HTTP p50",
            big["http"]["latency"]["p50_ms"] if big else nan,
            5.0,
            "ms",
            higher_is_better=False,
        ),
        Target(
            "default HNSW recall@10",
            results["search"]["default"]["recall_at_k"],
            0.95,
            "",
            higher_is_better=True,
        ),
        Target(
            "bulk_upsert ingest (JSON float vectors)",
            results["ingest"]["vectors_per_s"],
            20_000,
            "vectors/s",
            higher_is_better=True,
        ),
    ]
    if "ingest_base64" in results:
        out.append(
            Target(
                "bulk_upsert ingest (base64 float32 vectors)",
                results["ingest_base64"]["vectors_per_s"],
                20_000,
                "vectors/s",
                higher_is_better=True,
            )
        )
    return out


def write_files(
    results: dict[str, Any], goals: list[Target], text: str, out_dir: Path, stem: str
) -> tuple[Path, Path]:
    """``<stem>.json`` (the results with their targets) and ``<stem>.md`` (``text``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    md_path = out_dir / f"{stem}.md"
    payload = {**results, "targets": [t.as_dict() for t in goals]}
    json_path.write_text(json.dumps(_finite(payload), indent=2, allow_nan=False) + "\n")
    md_path.write_text(text)
    return json_path, md_path


def format_targets(goals: list[Target], name_width: int, value_width: int) -> str:
    lines = ["Targets (reached vs goal):"]
    for t in goals:
        cmp = ">=" if t.higher_is_better else "<="
        verdict = "met" if t.met else "MISSED"
        lines.append(
            f"  {t.name:<{name_width}} {t.show(t.reached):>{value_width}}"
            f"  goal {cmp} {t.show(t.goal):<{value_width}} [{verdict}]"
        )
    return "\n".join(lines)


def targets_table(goals: list[Target]) -> list[str]:
    """The markdown "Targets" section: reached vs goal, a row per target."""
    out = ["## Targets", "", "| target | reached | goal | met |", "|---|---:|---:|:-:|"]
    for t in goals:
        cmp = "≥" if t.higher_is_better else "≤"
        out.append(
            f"| {t.name} | {t.show(t.reached)} | {cmp} {t.show(t.goal)} "
            f"| {'yes' if t.met else '**no**'} |"
        )
    return out


def write(results: dict[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path]:
    return write_files(results, targets(results), markdown(results), out_dir, stem)


def targets_text(results: dict[str, Any]) -> str:
    return format_targets(targets(results), 46, 18)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    cfg = results["config"]
    ing = results["ingest"]
    idx = results["indexing"]
    s = results["search"]
    pkgs = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    out = [
        f"# vecstore core benchmark — {results['date']}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['ram_gb']} GiB RAM, "
        f"Python {m['python']}, {m['platform']}.  ",
        f"Packages: {pkgs}.  ",
        f"Server version: {results.get('server_version')}. Client and server share the machine.",
        "",
        f"Data: {cfg['n']:,} clustered vectors, dim {cfg['dim']}, {cfg['clusters']} clusters, "
        f"cosine, default index `{json.dumps(results.get('index'))}`; {cfg['queries']} queries "
        f"drawn from the same mixture; seed {cfg['seed']}.",
        "",
        *targets_table(targets(results)),
    ]
    out += [
        "",
        "## Ingest and indexing",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| bulk_upsert throughput ({ing['threads']} threads, batches of {ing['batch_size']}) "
        f"| {_num(ing['vectors_per_s'])} vectors/s |",
        f"| ingest wall time | {_num(ing['wall_s'])} s |",
        *(
            [
                "| bulk_upsert throughput, vectors as base64 float32 (scratch collection) "
                f"| {_num(results['ingest_base64']['vectors_per_s'])} vectors/s |"
            ]
            if "ingest_base64" in results
            else []
        ),
        f"| batch latency p50 / p99 | {_pair(ing['batch_latency'])} ms |",
        f"| request bodies (pre-encoded, {_num(ing['client_encode_s'])} s) "
        f"| {ing['body_mb']} MiB |",
        f"| index caught up after ingest | {_num(idx['seconds_after_ingest'])} s"
        f"{'' if idx['caught_up'] else ' (**timed out**)'} |",
        "",
        f"## Search (k={s['k']})",
        "",
        "| query | recall@10 | p50 ms | p99 ms | QPS (1 client) | short results |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = [("HNSW, default params", "default"), ("exact: true", "exact")]
    rows += [
        (f"filter {s[key]['selectivity']:.0%} ({s[key]['matching']:,} match)", key)
        for key in s
        if key.startswith("filter_")
    ]
    for label, key in rows:
        r = s[key]
        out.append(
            f"| {label} | {r['recall_at_k']:.4f} | {_num(r['latency']['p50_ms'])} "
            f"| {_num(r['latency']['p99_ms'])} | {_num(r['qps'])} | {r['short_results']} |"
        )
    out += [
        "",
        "| client threads | queries | QPS | p50 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|",
    ]
    for t in s["throughput"]:
        out.append(
            f"| {t['threads']} | {t['completed']} | {_num(t['qps'])} "
            f"| {_pair(t['latency'], ' | ')} |"
        )
    out += [
        "",
        "## Rerank (`POST /v1/collections/{c}/rerank`, random stored candidates)",
        "",
        "| candidates | HTTP p50 / p99 ms | server search_ms p50 / p99 | server total_ms p50 "
        "| top-10 agreement |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in results["rerank"]:
        out.append(
            f"| {r['candidates']} | {_pair(r['http']['latency'])} | {_pair(r['server_search'])} "
            f"| {_num(r['server_total']['p50_ms'])} | {r['top10_agreement']:.4f} |"
        )
    out += ["", "See `benchmarks/README.md` for what each figure means.", ""]
    return "\n".join(out)


def _finite(value: Any) -> Any:
    """Strict JSON has no NaN: an undefined figure (e.g. p99 of zero calls) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _pair(lat: dict[str, float], sep: str = " / ") -> str:
    return f"{_num(lat['p50_ms'])}{sep}{_num(lat['p99_ms'])}"


def _num(x: float) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}" if abs(x) < 0.1 else f"{x:.2f}"
