"""The comparison's markdown, targets and analysis, read off ``compare-<date>-<dataset>.json``.

Every ratio is between figures measured in the same run on the same machine, which is what makes
them comparable on a shared, noisy machine (absolute figures move from run to run; ratios much
less).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from benchmarks.report import Target, format_targets, targets_table, write_files

RECALL_FLOOR = 0.95
DATABASE_PEERS = ("chroma", "pgvector", "milvus-lite", "lancedb")
NAN = float("nan")


def _ok(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Systems that ran to the end."""
    return {
        name: s
        for name, s in results.get("systems", {}).items()
        if not s.get("skipped") and not s.get("failed") and s.get("sweep")
    }


def best_row(system: dict[str, Any], threads: int, floor: float = RECALL_FLOOR) -> Any:
    """The fastest pass at ``threads`` clients among knob settings whose single-client
    recall@10 reaches ``floor``, with its ``knob`` (None when none does)."""
    chosen = None
    for row in system.get("sweep", []):
        if row["single"]["recall@10"] < floor:
            continue
        if threads == 1:
            p = row["single"]
        else:
            p = next((c for c in row["concurrent"] if c["threads"] == threads), None)
        if (
            p is not None
            and not math.isnan(p["qps"])
            and (chosen is None or p["qps"] > chosen["qps"])
        ):
            chosen = {**p, "knob": row["knob"]}
    return chosen


def best_qps(system: dict[str, Any], threads: int, floor: float = RECALL_FLOOR) -> float:
    """``best_row``'s QPS (NaN when no setting reaches ``floor``)."""
    row = best_row(system, threads, floor)
    return NAN if row is None else float(row["qps"])


def rerank_pass(system: dict[str, Any], candidates: int) -> Any:
    """The rerank pass of ``candidates`` ids (None if it did not run)."""
    return next((r for r in system.get("rerank", []) if r["candidates"] == candidates), None)


def rerank_p50(system: dict[str, Any], candidates: int) -> float:
    r = rerank_pass(system, candidates)
    return float(r["latency"]["p50_ms"]) if r else NAN


def _best(values: dict[str, float], *, lowest: bool) -> tuple[str | None, float]:
    finite = {k: v for k, v in values.items() if not math.isnan(v)}
    if not finite:
        return None, NAN
    name = (min if lowest else max)(finite, key=lambda k: finite[k])
    return name, finite[name]


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else NAN


def server_peers(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in _ok(results).items() if n in DATABASE_PEERS and s["kind"] == "server"}


def database_peers(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in _ok(results).items() if n in DATABASE_PEERS}


def flat_scanning(system: dict[str, Any]) -> bool:
    """Exact recall at every knob setting, the cheapest included: the ANN index cannot be in
    use (an HNSW at ef 16 is never exact on these sets), so the system scans everything and its
    "time until indexed" measures no index build."""
    sweep = system.get("sweep") or []
    return len(sweep) > 1 and all(r["single"]["recall@10"] >= 0.9999 for r in sweep)


def targets(results: dict[str, Any]) -> list[Target]:
    """The issue's targets that this run can judge: one whose comparison system did not run
    (skipped, failed, or not selected) is left out, and ``not_judged`` names it."""
    return [t for t in _all_targets(results) if not math.isnan(t.reached)]


def not_judged(results: dict[str, Any]) -> list[str]:
    return [t.name for t in _all_targets(results) if math.isnan(t.reached)]


def _all_targets(results: dict[str, Any]) -> list[Target]:
    ok = _ok(results)
    v = ok.get("vecstore")
    if v is None:
        return []
    out: list[Target] = []
    peers = database_peers(results)
    servers = server_peers(results)
    faiss = ok.get("faiss")
    # rerank of 1,000 ids
    _, peer_best = _best({n: rerank_p50(s, 1000) for n, s in peers.items()}, lowest=True)
    mine = rerank_p50(v, 1000)
    out.append(
        Target(
            "rerank 1000 ids: vecstore p50 ÷ best peer's",
            _ratio(mine, peer_best),
            0.2,
            "x",
            higher_is_better=False,
        )
    )
    if faiss is not None:
        out.append(
            Target(
                "rerank 1000 ids: vecstore p50 ÷ raw FAISS's",
                _ratio(mine, rerank_p50(faiss, 1000)),
                3.0,
                "x",
                higher_is_better=False,
            )
        )
    # search at recall >= 0.95
    _, best1 = _best({n: best_qps(s, 1) for n, s in servers.items()}, lowest=False)
    out.append(
        Target(
            f"search at recall@10 >= {RECALL_FLOOR}: 1-client QPS ÷ best server peer's",
            _ratio(best_qps(v, 1), best1),
            1.0,
            "x",
            higher_is_better=True,
        )
    )
    if "chroma" in ok:
        out.append(
            Target(
                f"search at recall@10 >= {RECALL_FLOOR}: 1-client QPS ÷ Chroma's",
                _ratio(best_qps(v, 1), best_qps(ok["chroma"], 1)),
                3.0,
                "x",
                higher_is_better=True,
            )
        )
    many = max(results["config"]["threads"])
    _, best8 = _best({n: best_qps(s, many) for n, s in servers.items()}, lowest=False)
    out.append(
        Target(
            f"search at recall@10 >= {RECALL_FLOOR}: {many}-client QPS ÷ best server peer's",
            _ratio(best_qps(v, many), best8),
            1.3,
            "x",
            higher_is_better=True,
        )
    )
    # filtered search
    for name in ("1%", "10%"):
        f = v["filtered"][name]
        out.append(
            Target(f"filtered {name}: recall@10", f["recall@10"], 0.99, "", higher_is_better=True)
        )
        out.append(
            Target(
                f"filtered {name}: answers with fewer than k",
                f["short_answers"],
                0,
                "answers",
                higher_is_better=False,
            )
        )
    # ingest
    out.append(
        Target(
            "ingest: acknowledged vectors/s (bulk_upsert, base64)",
            v["ingest"]["acknowledged_vectors_per_s"],
            20_000,
            "vectors/s",
            higher_is_better=True,
        )
    )
    indexing = {n: s for n, s in peers.items() if not flat_scanning(s)}
    _, fastest = _best({n: s["ingest"]["indexed_s"] for n, s in indexing.items()}, lowest=True)
    out.append(
        Target(
            "ingest: time until indexed ÷ best peer's",
            _ratio(v["ingest"]["indexed_s"], fastest),
            1.0,
            "x",
            higher_is_better=False,
        )
    )
    # memory
    limit = memory_limit(results)
    if limit is not None:
        out.append(
            Target(
                "server RSS after indexing ÷ (1.3 x FAISS formula + fixed overhead)",
                v["memory_indexed"]["last_rss_bytes"] / limit,
                1.0,
                "x",
                higher_is_better=False,
            )
        )
    return out


def memory_limit(results: dict[str, Any]) -> float | None:
    """1.3 x the FAISS formula for the index + vecstore's fixed overhead, measured as the
    server's RSS with the empty collection created (process, libraries, models loaded)."""
    v = _ok(results).get("vecstore")
    if v is None:
        return None
    return 1.3 * float(results["hnsw_flat_bytes"]) + float(v["memory_empty"]["last_rss_bytes"])


def write(results: dict[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path]:
    return write_files(results, targets(results), markdown(results), out_dir, stem)


def targets_text(results: dict[str, Any]) -> str:
    return format_targets(targets(results), 74, 14)


# -- markdown -------------------------------------------------------------------------------------
def _f(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:,.{digits}f}"


def _mb(b: float | None) -> str:
    return "—" if not b else f"{b / 2**20:,.0f}"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    ds = results["dataset"]
    cfg = results["config"]
    ok = _ok(results)
    out = [
        f"# vecstore vs its peers — {results['date']}, {ds['name']}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['ram_gb']} GiB RAM, Python "
        f"{m['python']}. Client and systems share the machine; systems run one after another.",
        "",
        f"Data: {ds['vectors']:,} vectors of {ds['dim']} dimensions, {ds['queries']:,} queries "
        f"(held out), cosine; {ds.get('what', '')}",
        "",
        f"Index everywhere: HNSW M={cfg['m']}, efConstruction={cfg['ef_construction']}; "
        f"k={cfg['k']}; default search knob {cfg['default_knob']}. Ingest: batches of "
        f"{cfg['ingest_batch']:,} from {cfg['ingest_threads']} threads.",
        "",
        "| system | kind | versions | index |",
        "|---|---|---|---|",
    ]
    for name, s in results.get("systems", {}).items():
        if s.get("skipped"):
            out.append(f"| {name} | — | skipped: {s['skipped']} | — |")
            continue
        vers = ", ".join(f"{k} {v}" for k, v in (s.get("versions") or {}).items())
        out.append(f"| {name} | {s['kind']} | {vers} | {s.get('index', '—')} |")
        if s.get("failed"):
            out.append(f"| {name} | | **failed**: {s['failed'].splitlines()[0]} | |")
    many = max(cfg["threads"])
    out += [
        "",
        "## Search (k=10, no filter)",
        "",
        f"Best QPS among knob settings that reach recall@10 ≥ {RECALL_FLOOR}, and the figures at "
        f"the default knob ({cfg['default_knob']}).",
        "",
        f"| system | 1-client QPS @≥{RECALL_FLOOR} | {many}-client QPS @≥{RECALL_FLOOR} "
        "| recall@10 (default) | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in ok.items():
        row = next((r for r in s["sweep"] if r["knob"] == cfg["default_knob"]), s["sweep"][-1])
        lat = row["single"]["latency"]
        out.append(
            f"| {name} | {_f(best_qps(s, 1), 0)} | {_f(best_qps(s, many), 0)} "
            f"| {_f(row['single']['recall@10'], 4)} | {_f(lat['p50_ms'])} | {_f(lat['p99_ms'])} |"
        )
    out += ["", "Sweep (knob: recall@10, 1-client QPS, p50 ms):", ""]
    for name, s in ok.items():
        parts = [
            f"{r['knob']}: {r['single']['recall@10']:.3f}, {r['single']['qps']:,.0f}, "
            f"{r['single']['latency']['p50_ms']:.2f}"
            for r in s["sweep"]
        ]
        out.append(f"- {name} ({s['knob_name']}) — " + "; ".join(parts))
    out += [
        "",
        f"## Filtered search (knob {cfg['default_knob']})",
        "",
        "| system | 1 %: recall@10 | short | p50 ms | 10 %: recall@10 | short | p50 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in ok.items():
        a, b = s["filtered"]["1%"], s["filtered"]["10%"]
        out.append(
            f"| {name} | {_f(a['recall@10'], 4)} | {a['short_answers']} "
            f"| {_f(a['latency']['p50_ms'])} | {_f(b['recall@10'], 4)} | {b['short_answers']} "
            f"| {_f(b['latency']['p50_ms'])} |"
        )
    sizes = cfg["rerank_sizes"]
    out += [
        "",
        "## Rerank of candidate ids (best 10 by exact cosine)",
        "",
        "vecstore: its rerank endpoint; the others: fetch the stored vectors by id, score with "
        "numpy in the client.",
        "",
        "| system | how | " + " | ".join(f"{n} ids p50 ms | p99 ms" for n in sizes) + " |",
        "|---|---|" + "---:|---:|" * len(sizes),
    ]
    for name, s in ok.items():
        cells = []
        for n in sizes:
            r = rerank_pass(s, n)
            cells += [_f(r["latency"]["p50_ms"]), _f(r["latency"]["p99_ms"])] if r else ["—", "—"]
        how = s["rerank"][0]["how"] if s["rerank"] else "—"
        out.append(f"| {name} | {how} | " + " | ".join(cells) + " |")
    out += [
        "",
        "## Ingest, memory, restart",
        "",
        "| system | acknowledged vectors/s | indexed after s | RSS empty MB | RSS indexed MB "
        "| peak RSS MB | peak PSS MB | restart s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in ok.items():
        ing = s["ingest"]
        mem = s.get("memory", {})
        out.append(
            f"| {name}{' (embedded: this process)' if s['kind'] == 'embedded' else ''} "
            f"| {_f(ing['acknowledged_vectors_per_s'], 0)} | {_f(ing['indexed_s'], 1)} "
            f"| {_mb(s['memory_empty']['last_rss_bytes'])} "
            f"| {_mb(s['memory_indexed']['last_rss_bytes'])} | {_mb(mem.get('peak_rss_bytes'))} "
            f"| {_mb(mem.get('peak_pss_bytes'))} | {_f(s.get('restart', {}).get('seconds'))} |"
        )
    out += ["", *rounds_lines(results), "", *round_trip_lines(results)]
    out += [
        "",
        f"FAISS memory formula for this index: {_mb(results['hnsw_flat_bytes'])} MB "
        "(`compare_workloads.hnsw_flat_bytes`). Embedded systems live in the harness process: "
        "their RSS includes the harness and the data set's arrays.",
        "",
        *targets_table(targets(results)),
    ]
    if results.get("analysis"):
        out += ["", "## Analysis", "", *results["analysis"]]
    if results.get("notes"):
        out += ["", "## Notes", "", *[f"- {n}" for n in results["notes"]]]
    if results.get("plot"):
        out += ["", f"![recall vs QPS, latency, ingest]({results['plot']})"]
    return "\n".join(out) + "\n"


def rounds_lines(results: dict[str, Any]) -> list[str]:
    """Each system's figures behind the speed targets, round by round (the tables above show
    the median round)."""
    cfg = results["config"]
    rounds = int(cfg.get("rounds", 1))
    ok = _ok(results)
    if rounds < 2 or not ok:
        return []
    many = max(cfg["threads"])
    largest = max(cfg["rerank_sizes"])

    def by_round(p: Any, digits: int) -> str:
        if p is None or not p.get("rounds"):
            return "—"
        figures = " / ".join(_f(x, digits) for x in p["rounds"])
        return f"{figures} (knob {p['knob']})" if "knob" in p else figures

    out = [
        "## Rounds",
        "",
        f"The sweep and the rerank passes ran {rounds} times: first in each system's own turn, "
        "then with every server system up, visited in turn in alternating order (an embedded "
        "system repeats them in its own turn). Each figure above is its pass's median round; "
        "these are every round's, in order.",
        "",
        f"| system | 1-client QPS @≥{RECALL_FLOOR} | {many}-client QPS @≥{RECALL_FLOOR} "
        f"| rerank {largest:,} ids p50 ms |",
        "|---|---|---|---|",
    ]
    for name, s in ok.items():
        r = rerank_pass(s, largest)
        out.append(
            f"| {name} | {by_round(best_row(s, 1), 0)} | {by_round(best_row(s, many), 0)} "
            f"| {by_round(r, 2)} |"
        )
    failed = [f"{n}: {s['rounds_failed']}" for n, s in ok.items() if s.get("rounds_failed")]
    if failed:
        out += ["", "Rounds cut short: " + "; ".join(failed) + "."]
    return out


def round_trip_lines(results: dict[str, Any]) -> list[str]:
    """The machine's process round trip (``machine.round_trip_us``) at each system's phases:
    a client-server latency is only comparable with another measured at a similar figure."""
    rows = [
        (name, s["round_trips_us"])
        for name, s in results.get("systems", {}).items()
        if s.get("round_trips_us")
    ]
    if not rows:
        return []
    phases = list(dict.fromkeys(p for _, trips in rows for p in trips))
    out = [
        "## Machine state during each system",
        "",
        "A one-byte round trip to a process pinned to the other CPU (p50 / p90 µs, "
        "`machine.round_trip_us`); every HTTP or database request pays two such wake-ups. "
        "It drifts with the shared host's load while CPU counters look idle: compare "
        "client-server latencies measured at similar figures.",
        "",
        "| system | " + " | ".join(phases) + " |",
        "|---|" + "---:|" * len(phases),
    ]
    for name, trips in rows:
        cells = [
            f"{trips[p]['p50']:.0f} / {trips[p]['p90']:.0f}" if p in trips else "—" for p in phases
        ]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def analysis(results: dict[str, Any]) -> list[str]:
    """Sentences read off the figures: each target's margin, and what limits the misses."""
    lines = []
    for t in targets(results):
        verdict = "met" if t.met else "missed"
        lines.append(f"- {t.name}: {t.show(t.reached)} ({verdict}; goal {t.show(t.goal)}).")
    flat = [n for n, s in database_peers(results).items() if flat_scanning(s)]
    if flat:
        lines.append(
            f"- {', '.join(flat)}: recall@10 1.0 at every knob setting, ef 16 included, so its "
            "ANN index was not in use (a flat scan); it is left out of the time-until-indexed "
            "comparison, and its search figures are those of a scan."
        )
    missing = not_judged(results)
    if missing:
        lines.append(
            "- Not judged in this run (a system it compares with did not run): "
            + "; ".join(missing)
            + "."
        )
    failed = [n for n, s in results.get("systems", {}).items() if s.get("failed")]
    if failed:
        lines.append(f"- Failed during the run (figures missing): {', '.join(failed)}.")
    return lines
