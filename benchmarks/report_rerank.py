"""Targets, markdown and analysis of the document-rerank suite (``run_rerank``)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from benchmarks.report import Target, _num, format_targets, targets_table, write_files
from benchmarks.report_embed import _load_text, _settings

NAN = float("nan")


def _quality(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    q = results.get("quality", {})
    return {r["method"]: r for r in q.get("rerank", [])}


def _violations(results: dict[str, Any]) -> int:
    passes = results.get("latency", []) + results.get("quality", {}).get("rerank", [])
    return sum(int(p.get("contract_violations", 0)) for p in passes)


def targets(results: dict[str, Any]) -> list[Target]:
    """This suite's own checks (the issue sets no speed target for ``/v1/rerank``): what the
    contract and the methods' definitions imply. Reported, never asserted."""
    dense = results.get("quality", {}).get("dense")
    by = _quality(results)
    out: list[Target] = []
    fast, best = by.get("fast"), by.get("best")
    if dense and fast and dense["mrr@10"] > 0:
        out.append(
            Target(
                "fast rerank of the dense candidates: MRR@10 ÷ dense-only MRR@10 (same model)",
                fast["mrr@10"] / dense["mrr@10"],
                0.99,
                "x",
                higher_is_better=True,
            )
        )
    if fast and best and fast["mrr@10"] > 0:
        out.append(
            Target(
                "best (no cross-encoder) MRR@10 ÷ fast MRR@10",
                best["mrr@10"] / fast["mrr@10"],
                1.0,
                "x",
                higher_is_better=True,
            )
        )
    if results.get("latency") or by:
        out.append(
            Target(
                "/v1/rerank answers off contract (order, [0, 1], count, indices, meta)",
                float(_violations(results)),
                0.0,
                "responses",
                higher_is_better=False,
            )
        )
    return out


def write(results: dict[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path]:
    return write_files(results, targets(results), markdown(results), out_dir, stem)


def targets_text(results: dict[str, Any]) -> str:
    return format_targets(targets(results), 78, 12)


def _opt(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else _num(x)


def _f4(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _runs(server: dict[str, Any], model: str) -> str:
    m = server.get("by_model", {}).get(model) or {}
    if not m.get("runs"):
        return "—"
    return f"{m['runs']} x {_opt(m['texts_per_run_mean'])} ({_opt(m['run_ms_mean'])} ms)"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    cfg = results["config"]
    ce = results.get("cross_encoder", {})
    pkgs = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    out = [
        f"# vecstore document-rerank benchmark — {results['date']}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['ram_gb']} GiB RAM, "
        f"Python {m['python']}, {m['platform']}.  ",
        f"Packages: {pkgs}.  ",
        f"Server version: {results.get('server_version')}; embedding model "
        f"`{cfg['embedding_model']}` (int8 ONNX), settings {_settings(cfg)}; cross-encoder "
        f"`{ce.get('id')}` = the **synthetic** test model ({ce.get('built_by')}, max_tokens "
        f"{ce.get('max_tokens')}). Client and both servers share the machine."
        + _load_text(results),
        "",
        *targets_table(targets(results)),
    ]
    if results.get("notes"):
        out += ["", *[f"- {n}" for n in results["notes"]]]
    out += _latency_section(results)
    out += _quality_section(results)
    if results.get("analysis"):
        out += ["", "## Analysis", "", *results["analysis"]]
    out += ["", "See `benchmarks/README.md` (Document rerank) for what each figure means.", ""]
    return "\n".join(out)


def _latency_section(results: dict[str, Any]) -> list[str]:
    lat = results.get("latency") or []
    if not lat:
        return []
    cfg = results["config"]
    floor = results.get("http_floor", {})
    out = [
        "",
        f"## 1. Latency (`POST /v1/rerank`, documents of {cfg['latency_doc_words']} words, "
        "1 client)",
        "",
        "Each request: a fresh short query and fresh documents (seeded English sentences from "
        "`sentences.py`, cut to exactly 50 words; `fast-cached` sends one document list "
        "again and again, so the server's document cache holds them after the warm-up), no "
        "`top_n` (every document comes back), "
        f"after warm-up calls; {cfg['rounds']} round(s) per pass, methods taking turns, median "
        "round by documents/s. *in app*: mean time inside the server's ASGI app; *CPU*: the "
        "server process's CPU time per request; *model runs*: runs x texts per run (mean run "
        f"time). `GET /health` round trip (HTTP floor): p50 {_opt(floor.get('p50_ms'))} ms.",
        "",
        "| method | docs | calls | p50 ms | p99 ms | docs/s | tokens/request | in app ms "
        "| CPU ms | embedder runs | cross-encoder runs | bad |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for r in lat:
        s = r["server"]
        out.append(
            f"| {r['method']}{' *(synthetic)*' if r.get('synthetic') else ''} | {r['documents']} "
            f"| {r['completed']} | {_opt(r['latency']['p50_ms'])} | {_opt(r['latency']['p99_ms'])} "
            f"| {_opt(r['docs_per_s'])} | {_opt(r.get('tokens_per_request_mean'))} "
            f"| {_opt(s.get('request_ms_mean'))} | {_opt(s.get('server_cpu_ms_per_request'))} "
            f"| {_runs(s, 'all-MiniLM-L6-v2')} | {_runs(s, 'test-reranker')} "
            f"| {_pct(s.get('document_cache_hit_rate'))} | {r['contract_violations']} |"
        )
    if results.get("plot"):
        out += ["", f"![p50 latency by document count, and quality]({results['plot']})"]
    return out


def _quality_section(results: dict[str, Any]) -> list[str]:
    q = results.get("quality")
    if not q:
        return []
    ds = results["dataset"]
    cfg = results["config"]
    dense = q["dense"]
    k = dense["k"]
    idx = q["index"]
    out = [
        "",
        "## 2. Quality: dense retrieval alone vs dense + `/v1/rerank`",
        "",
        f"Data: {ds['source']}: {ds['docstrings']:,} docstrings → {ds['passages']:,} passages "
        f"(mean {_num(ds['passage_words_mean'])} words, median {_num(ds['passage_words_median'])}, "
        f"cut at {ds['max_words']}), {ds['queries']:,} queries (of {ds['eligible_queries']:,} "
        f"eligible, mean {_num(ds['query_words_mean'])} words), one relevant passage each; "
        f"corpus sha256 `{ds['corpus_sha256'][:16]}…`. A query is an object's dotted name and "
        "its docstring's first sentence; its passage is the rest of that docstring.",
        "",
        f"Indexed with `bulk_upsert` (`text` + `content`, the server embeds): "
        f'{_num(idx["passages_per_s"])} passages/s. Dense: `search` `{{"text": q, "k": {k}, '
        '"include_content": true}`; each rerank call gets those '
        f"{cfg['candidates']} passages as `documents`, `top_n` {cfg['top_n']}"
        f", `stage1_top_k` {cfg['stage1_top_k']} for optimal/best. Latency is per query, "
        "1 client (for reranked rows: the rerank call only, the search not included).",
        "",
        "| method | MRR@10 | recall@10 | recall@1 | top-10 overlap with dense | p50 ms | p99 ms "
        "| bad |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| dense only (`search`, k={k}) | {_f4(dense['mrr@10'])} | {_f4(dense['recall@10'])} "
        f"| {_f4(dense['recall@1'])} | 1 | {_opt(dense['latency']['p50_ms'])} "
        f"| {_opt(dense['latency']['p99_ms'])} | — |",
    ]
    for r in q.get("rerank", []):
        label = f"{r['method']}: {r['label']}"
        if r.get("synthetic"):
            label = f"*{label} — synthetic, quality meaningless*"
        out.append(
            f"| {label} | {_f4(r['mrr@10'])} | {_f4(r['recall@10'])} | {_f4(r['recall@1'])} "
            f"| {_f4(r['top10_overlap_with_dense'])} | {_opt(r['latency']['p50_ms'])} "
            f"| {_opt(r['latency']['p99_ms'])} | {r['contract_violations']} |"
        )
    out += [
        "",
        f"recall@{k} of dense retrieval (the ceiling for every reranker of its top {k}): "
        f"{_f4(dense.get(f'recall@{k}'))}.",
    ]
    ex = results.get("examples") or []
    if ex:
        out += ["", "Examples (query → its relevant passage, first 160 characters):", ""]
        out += [f"- `{e['query']}` → “{e['passage'][:160]}…”" for e in ex]
    return out


def _pct(rate: float | None) -> str:
    return "—" if rate is None else f"{100 * rate:.0f} %"


def _cache_clause(r: dict[str, Any]) -> str:
    rate = r.get("server", {}).get("document_cache_hit_rate")
    if rate is None:
        return ""
    return f" ({_opt(100 * rate)} % of the document chunks came from the server's document cache)"


def _lat(results: dict[str, Any], method: str, docs: int) -> dict[str, Any] | None:
    return next(
        (r for r in results.get("latency", []) if r["method"] == method and r["documents"] == docs),
        None,
    )


def _sizes(results: dict[str, Any]) -> list[int]:
    return sorted({r["documents"] for r in results.get("latency", [])})


def padding(r: dict[str, Any] | None) -> float | None:
    """Token positions the embedder ran ÷ tokens the answers report (None: not measurable)."""
    if not r or not r.get("tokens_per_request_mean"):
        return None
    if r["server"].get("document_cache_hit_rate"):
        return None  # cached documents count in the answers' tokens but never ran
    runs = r["server"].get("by_model", {}).get("all-MiniLM-L6-v2") or {}
    real = r["tokens_per_request_mean"] * r["completed"]
    return runs["padded_tokens"] / real if runs.get("padded_tokens") and real else None


def paired_difference(base: dict[str, Any], other: dict[str, Any]) -> dict[str, Any] | None:
    """Per-query reciprocal ranks of ``other`` minus ``base`` (same queries, same order)."""
    a, b = base.get("reciprocal_ranks") or [], other.get("reciprocal_ranks") or []
    if not a or len(a) != len(b):
        return None
    diff = [y - x for x, y in zip(a, b, strict=True)]
    sd = statistics.stdev(diff) if len(diff) > 1 else 0.0
    return {
        "queries": len(diff),
        "better": sum(d > 0 for d in diff),
        "worse": sum(d < 0 for d in diff),
        "equal": sum(d == 0 for d in diff),
        "mean": statistics.mean(diff),
        "ci95": 1.96 * sd / math.sqrt(len(diff)),
    }


def analysis(results: dict[str, Any]) -> list[str]:
    """Sentences read off the figures."""
    lines: list[str] = []
    q = results.get("quality", {})
    dense = q.get("dense")
    by = _quality(results)
    if dense:
        k = dense["k"]
        lines.append(
            f"- Dense retrieval alone: MRR@10 {_f4(dense['mrr@10'])}, recall@10 "
            f"{_f4(dense['recall@10'])}; the relevant passage is in the top {k} for "
            f"{_f4(dense.get(f'recall@{k}'))} of the queries, which bounds what any reranker of "
            f"those {k} can reach at recall@10."
        )
    fast = by.get("fast")
    if dense and fast:
        lines.append(
            f"- `fast` reorders the candidates by the same model's cosine, so it should nearly "
            f"repeat the dense order: top-10 overlap {_f4(fast['top10_overlap_with_dense'])}, "
            f"MRR@10 {_f4(fast['mrr@10'])} vs {_f4(dense['mrr@10'])}. Differences come from the "
            "ANN's approximate order, from ties, and from passages longer than the model's 256 "
            "tokens: the index holds the embedding of their first 256, while `fast` scores "
            f"every chunk and keeps the best. It costs {_opt(fast['latency']['p50_ms'])} ms "
            f"(p50) per query for {results['config']['candidates']} passages"
            + _cache_clause(fast)
            + "."
        )
    best = by.get("best")
    if dense and best:
        d_mrr = best["mrr@10"] - dense["mrr@10"]
        d_rec = best["recall@10"] - dense["recall@10"]
        lines.append(
            f"- `best` without a cross-encoder (0.75 x bi-encoder + 0.25 x BM25 over the "
            f"request's documents): MRR@10 {_f4(best['mrr@10'])} ({d_mrr:+.4f} vs dense), "
            f"recall@10 {_f4(best['recall@10'])} ({d_rec:+.4f}), at "
            f"{_opt(best['latency']['p50_ms'])} ms p50 per query{_cache_clause(best)}. Its "
            "bi-encoder leg is `fast`"
            "'s score, which repeats the dense order, so the change is the BM25 leg's doing."
        )
    for key in ("fast", "best"):
        r = by.get(key)
        if dense and r:
            paired = paired_difference(dense, r)
            if paired:
                lines.append(
                    f"- `{key}` vs dense, query by query: better on {paired['better']}, worse on "
                    f"{paired['worse']}, equal on {paired['equal']} of {paired['queries']}; MRR@10 "
                    f"difference {paired['mean']:+.4f} ± {paired['ci95']:.4f} (95 % interval of "
                    "the paired mean)."
                )
    if fast and best and fast.get("score_spread_mean") is not None:
        lines.append(
            f"- The weights of `best`'s fusion are not what they look like: `fast`'s score is "
            f"(cosine + 1) / 2, not rescaled per request, and from its 1st to its 10th result it "
            f"falls by only {_opt(fast['score_spread_mean'])} on average here, so 0.75 x that "
            f"moves a document by about {_opt(0.75 * fast['score_spread_mean'])}, while the BM25 "
            "leg is min-max scaled to span 0 to 1 over the request's documents and 0.25 x it "
            "moves one by up to 0.25. `best`'s top 10 shares "
            f"{_f4(best['top10_overlap_with_dense'])} of the dense top 10."
        )
    mixed = padding(fast) if fast else None
    uniform = padding(_lat(results, "fast", max(_sizes(results), default=0)))
    if mixed or uniform:
        parts = []
        if mixed:
            parts.append(f"{_opt(mixed)}x for the quality set's mixed-length passages")
        if uniform:
            parts.append(f"{_opt(uniform)}x for the latency pass's uniform 50-word documents")
        lines.append(
            "- Padding (token positions the embedding model ran ÷ the tokens the answers "
            "report: the server's `vecstore_embedding_padded_tokens` against "
            "`usage.total_tokens`, in passes without document-cache hits): "
            + " and ".join(parts)
            + ". A run is padded to its longest text; the micro-batcher cuts a request into "
            "runs of texts of similar length, so what remains is the spread within a run."
        )
    synth = [by[k] for k in ("standard-test-ce", "optimal-test-ce", "best-test-ce") if k in by]
    if synth:
        timings = ", ".join(
            f"`{r['request']['method']}` {_opt(r['latency']['p50_ms'])} ms" for r in synth
        )
        lines.append(
            f"- With the synthetic test cross-encoder (its scores are token overlap plus random "
            f"vectors, not relevance — the quality rows show the pipeline runs, nothing about a "
            f"real reranker's quality) the per-query p50 is: {timings}."
        )
    sizes = _sizes(results)
    for docs in sizes:
        f, s = _lat(results, "fast", docs), _lat(results, "standard-test-ce", docs)
        if f is None:
            continue
        emb = f["server"].get("by_model", {}).get("all-MiniLM-L6-v2") or {}
        share = (
            emb.get("busy_s", 0.0) / f["wall_s"] if f.get("wall_s") and emb.get("busy_s") else None
        )
        text = (
            f"- {docs} documents: `fast` p50 {_opt(f['latency']['p50_ms'])} ms, "
            f"{_opt(f['docs_per_s'])} docs/s"
        )
        if share is not None:
            text += (
                f" (model busy time ÷ wall time {_opt(share)}: the runs of one request occupy "
                "that many of the embedding workers on average)"
            )
        if s is not None and f["latency"]["p50_ms"] > 0:
            text += (
                f"; `standard` with the synthetic cross-encoder p50 "
                f"{_opt(s['latency']['p50_ms'])} ms, {_opt(s['docs_per_s'])} docs/s — "
                f"{_opt(s['latency']['p50_ms'] / f['latency']['p50_ms'])}x the fast time"
            )
        lines.append(text + ".")
    for docs in sizes:
        cold, warm = _lat(results, "fast", docs), _lat(results, "fast-cached", docs)
        if cold is None or warm is None or not warm["latency"]["p50_ms"]:
            continue
        lines.append(
            f"- {docs} documents sent again (`fast-cached`, a fresh query each time): p50 "
            f"{_opt(warm['latency']['p50_ms'])} ms, {_opt(warm['docs_per_s'])} docs/s — "
            f"{_opt(cold['latency']['p50_ms'] / warm['latency']['p50_ms'])}x faster than fresh "
            f"documents{_cache_clause(warm)}."
        )
    if sizes and _lat(results, "standard-test-ce", sizes[-1]):
        lines.append(
            "- The synthetic cross-encoder's graph is far cheaper per pair than a real one (no "
            "transformer layers), so its `standard` rows measure the cross-encoder *pipeline* — "
            "pair tokenising, chunking to its 64-token budget, the batcher, sigmoid, sorting — "
            "not a real model's cost; a real cross-encoder runs transformer layers over every "
            "query-document pair, so expect its time per document to be of the order of the "
            "embedder's, not of these rows."
        )
    bad = _violations(results)
    if bad:
        examples = [
            e
            for p in results.get("latency", []) + q.get("rerank", [])
            for e in p.get("violation_examples", [])
        ]
        lines.append(
            f"- {bad} responses were off the contract, e.g. {'; '.join(examples[:2]) or '—'}."
        )
    return lines
