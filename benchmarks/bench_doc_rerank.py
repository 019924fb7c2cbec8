"""Document rerank (``POST /v1/rerank``) against a live server: latency by document count and
method, and retrieval quality on the standard-library docstring set (``docstrings.py``).

Every request body is encoded before the clock starts; every response is checked against the
contract (order, score range, count, indices, ``meta.method``) and violations are counted.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from benchmarks.bench_embed import Scrape
from benchmarks.bench_ingest import wait_for_index
from benchmarks.client import ApiClient, ApiError, data_of, encode
from benchmarks.docstrings import RetrievalSet
from benchmarks.load import LoadResult, Request, run_load, striped
from benchmarks.metrics import recall_at_k
from benchmarks.sentences import TextPool
from benchmarks.server import ServerHandle

RERANK_PATH = "/v1/rerank"  # also the route label in the server's metrics
SEARCH_ROUTE = "/v1/collections/{name}/search"
EMBEDDER = "all-MiniLM-L6-v2"
CROSS_ENCODER = "test-reranker"  # tests/cross_encoder_model.py's default id
DIM = 384
DOC_WORDS = 50
CUTOFF = 10  # MRR@10, recall@10


@dataclass(frozen=True)
class Method:
    """One way of calling ``/v1/rerank``: the server it runs on and the request fields."""

    key: str
    server: str  # "plain" (bundled embedder only) or "cross" (+ the synthetic test cross-encoder)
    fields: dict[str, Any]
    label: str
    synthetic: bool = False  # its quality figures mean nothing (the test cross-encoder)
    # Latency only: every request sends the same documents (with a fresh query), so after the
    # warm-up their embeddings come from the server's document cache.
    repeat_documents: bool = False

    @property
    def method(self) -> str:
        return str(self.fields["method"])


def methods(stage1_top_k: int) -> dict[str, Method]:
    stage1 = {"stage1_top_k": stage1_top_k}
    cross = {"model_cross": CROSS_ENCODER}
    out = [
        Method("fast", "plain", {"method": "fast"}, "fast (bi-encoder cosine)"),
        Method(
            "fast-cached",
            "plain",
            {"method": "fast"},
            "fast, the same documents again (document cache)",
            repeat_documents=True,
        ),
        Method(
            "best",
            "plain",
            {"method": "best", **stage1},
            "best, no cross-encoder configured (bi-encoder + BM25)",
        ),
        Method(
            "standard-test-ce",
            "cross",
            {"method": "standard", **cross},
            "standard, synthetic test cross-encoder",
            synthetic=True,
        ),
        Method(
            "optimal-test-ce",
            "cross",
            {"method": "optimal", **cross, **stage1},
            "optimal, bi-encoder → synthetic test cross-encoder",
            synthetic=True,
        ),
        Method(
            "best-test-ce",
            "cross",
            {"method": "best", **cross, **stage1},
            "best, with the synthetic test cross-encoder",
            synthetic=True,
        ),
    ]
    return {m.key: m for m in out}


def rerank_body(
    query: str, documents: Sequence[str], fields: dict[str, Any], **extra: Any
) -> bytes:
    return encode({"query": query, "documents": list(documents), **fields, **extra})


def route_missing(server: ServerHandle) -> str | None:
    """None when ``POST /v1/rerank`` answers a fast probe; else why rerank is not measured."""
    with ApiClient(server.base_url, server.key) as client:
        try:
            raw = client.post_raw(
                RERANK_PATH, rerank_body("probe", ["a document", "another"], {"method": "fast"})
            )
        except ApiError as exc:
            return f"POST {RERANK_PATH} is not usable: {exc}"
    problems = check_response(raw, documents=2, expected=2, method="fast")
    return f"POST {RERANK_PATH} answers off contract: {problems[0]}" if problems else None


def documents_of_words(pool: TextPool, n: int, words: int = DOC_WORDS) -> list[str]:
    """``n`` distinct documents of exactly ``words`` words: seeded sentences (``sentences.py``)
    joined, the last one cut."""
    out = []
    for _ in range(n):
        parts: list[str] = []
        while len(parts) < words:
            parts += pool.take(1)[0].split()
        out.append(" ".join(parts[:words]))
    return out


def expected_results(documents: int, fields: dict[str, Any], top_n: int | None) -> int:
    n = documents
    if fields.get("method") in ("optimal", "best"):
        n = min(n, int(fields.get("stage1_top_k", 100)))
    return min(n, top_n) if top_n is not None else n


def check_response(raw: bytes, *, documents: int, expected: int, method: str) -> list[str]:
    """What is wrong with one ``/v1/rerank`` answer (empty: nothing)."""
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        return [f"not JSON: {exc}"]
    problems = []
    if not isinstance(doc, dict) or doc.get("object") != "list":
        return [f"not a Cohere v1 rerank answer: {raw[:200]!r}"]
    results = doc.get("results") or []
    if len(results) != expected:
        problems.append(f"{len(results)} results, expected {expected}")
    indices = [r.get("index") for r in results]
    scores = [r.get("relevance_score") for r in results]
    if len(set(indices)) != len(indices) or not all(
        isinstance(i, int) and 0 <= i < documents for i in indices
    ):
        problems.append("indices repeated or out of range")
    if not all(isinstance(s, int | float) and 0.0 <= s <= 1.0 for s in scores):
        problems.append(f"relevance_score outside [0, 1]: {scores[:5]}")
    elif any(a < b for a, b in itertools.pairwise(scores)):
        problems.append("results not sorted by relevance_score descending")
    if any("document" in r for r in results):
        problems.append("'document' present although return_documents is false")
    meta = doc.get("meta") or {}
    if meta.get("method") != method:
        problems.append(f"meta.method {meta.get('method')!r}, asked for {method!r}")
    for key in ("id", "model", "usage"):
        if key not in doc:
            problems.append(f"no '{key}'")
    return problems


@dataclass
class _Checked:
    violations: int = 0
    examples: list[str] = field(default_factory=list)
    tokens: list[float] = field(default_factory=list)
    ranked: dict[int, list[int]] = field(default_factory=dict)  # request index -> doc indices
    spreads: list[float] = field(default_factory=list)  # first minus last relevance_score

    def figures(self) -> dict[str, Any]:
        return {
            "contract_violations": self.violations,
            "violation_examples": self.examples[:3],
            "tokens_per_request_mean": float(np.mean(self.tokens)) if self.tokens else None,
            "score_spread_mean": float(np.mean(self.spreads)) if self.spreads else None,
        }


def _check_all(
    result: LoadResult, sizes: Sequence[int], fields: dict[str, Any], top_n: int | None
) -> _Checked:
    out = _Checked()
    for idx, raw in result.responses:
        n = sizes[idx]
        problems = check_response(
            raw,
            documents=n,
            expected=expected_results(n, fields, top_n),
            method=str(fields["method"]),
        )
        if problems:
            out.violations += 1
            out.examples.append(f"request {idx}: {'; '.join(problems)}")
        try:
            doc = msgspec.json.decode(raw)
            out.ranked[idx] = [int(r["index"]) for r in doc["results"]]
            scores = [float(r["relevance_score"]) for r in doc["results"]]
            if scores:
                out.spreads.append(scores[0] - scores[-1])
            out.tokens.append(float(doc["usage"]["total_tokens"]))
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            pass
    return out


def _model_runs(scrape: Scrape, model: str) -> dict[str, Any]:
    """Runs of one model during a pass (``vecstore_embedding_batch_*`` by model label)."""
    label = f'model="{model}"'
    runs = scrape._delta("vecstore_embedding_batch_texts_count", label)
    texts = scrape._delta("vecstore_embedding_batch_texts_sum", label)
    secs = scrape._delta("vecstore_embedding_batch_duration_seconds_sum", label)
    tokens = scrape._delta("vecstore_embedding_padded_tokens_total", label)
    return {
        "runs": int(runs),
        "texts_per_run_mean": texts / runs if runs else None,
        "run_ms_mean": 1000 * secs / runs if runs else None,
        "busy_s": secs,
        "padded_tokens": int(tokens),
    }


def _server_figures(scrape: Scrape, route: str) -> dict[str, Any]:
    name = "vecstore_document_cache_lookups_total"
    hits = scrape._delta(name, 'result="hit"')
    misses = scrape._delta(name, 'result="miss"')
    return {
        **scrape.figures(route),
        "by_model": {m: _model_runs(scrape, m) for m in (EMBEDDER, CROSS_ENCODER)},
        # Document chunks whose embedding came from the server's cache (fast / best only).
        "document_cache_hit_rate": hits / (hits + misses) if hits + misses else None,
    }


# -- latency --------------------------------------------------------------------------------------
def latency_pass(
    server: ServerHandle,
    method: Method,
    *,
    queries: Sequence[str],
    documents: Sequence[Sequence[str]],
    warmup: int,
    time_budget_s: float,
) -> dict[str, Any]:
    """One request per (query, document list), one client; the first ``warmup`` are not timed."""
    reqs = [
        Request(RERANK_PATH, rerank_body(q, docs, method.fields))
        for q, docs in zip(queries, documents, strict=True)
    ]
    sizes = [len(d) for d in documents]
    if warmup:
        run_load(server, reqs, [list(range(warmup))], time_budget_s=time_budget_s)
    with Scrape(server) as scrape:
        result = run_load(
            server,
            reqs,
            [list(range(warmup, len(reqs)))],
            time_budget_s=time_budget_s,
            keep_responses=True,
        )
    checked = _check_all(result, sizes, method.fields, None)
    return {
        "method": method.key,
        "documents": sizes[0],
        "docs_per_s": result.qps * sizes[0],
        **result.figures(),
        **checked.figures(),
        "server": _server_figures(scrape, RERANK_PATH),
    }


# -- quality --------------------------------------------------------------------------------------
def index_passages(
    server: ServerHandle,
    rs: RetrievalSet,
    *,
    collection: str,
    batch_size: int,
    threads: int,
    time_budget_s: float,
) -> dict[str, Any]:
    """Create ``collection`` and ``bulk_upsert`` every passage as ``text`` (the server embeds it)
    and ``content``; then wait for the ANN index to hold them all."""
    with ApiClient(server.base_url, server.key) as client:
        client.post("/v1/collections", {"name": collection, "dim": DIM})
    items = [
        {"external_id": p.pid, "text": p.text, "content": p.text, "metadata": {"source": p.source}}
        for p in rs.passages
    ]
    path = f"/v1/collections/{collection}/bulk_upsert"
    reqs = [
        Request(path, encode({"items": items[s : s + batch_size]}))
        for s in range(0, len(items), batch_size)
    ]
    result = run_load(
        server, reqs, striped(len(reqs), threads), time_budget_s=time_budget_s, keep_responses=True
    )
    written = sum(
        int(d["inserted"]) + int(d["updated"])
        for d in (data_of(raw) for _, raw in result.responses)
    )
    idx = wait_for_index(
        server, collection=collection, expected=len(items), timeout_s=time_budget_s
    )
    return {
        "passages": len(items),
        "written": written,
        "batch_size": batch_size,
        "threads": threads,
        "wall_s": result.wall_s,
        "passages_per_s": written / result.wall_s if result.wall_s > 0 else 0.0,
        "batch_latency": result.figures()["latency"],
        "index_caught_up": idx["caught_up"],
        "index_seconds_after_ingest": idx["seconds_after_ingest"],
    }


@dataclass(frozen=True)
class Candidates:
    """The dense top ``k`` of every query: passage ids and their stored content, in order."""

    ids: list[list[str]]
    texts: list[list[str]]


def ranking_figures(ranked: Sequence[Sequence[str]], relevant: Sequence[str]) -> dict[str, Any]:
    """MRR@10 and recall@10 (one relevant passage per query), and recall at the full depth."""
    rr = []
    for ids, rel in zip(ranked, relevant, strict=True):
        top = list(ids[:CUTOFF])
        rr.append(1.0 / (top.index(rel) + 1) if rel in top else 0.0)
    truth = [[r] for r in relevant]
    return {
        "queries": len(relevant),
        f"mrr@{CUTOFF}": float(np.mean(rr)) if rr else float("nan"),
        f"recall@{CUTOFF}": recall_at_k([list(ids[:CUTOFF]) for ids in ranked], truth),
        "recall@1": recall_at_k([list(ids[:1]) for ids in ranked], truth),
        # Per query, in query order (for paired comparisons between methods).
        "reciprocal_ranks": [round(x, 4) for x in rr],
    }


def dense_pass(
    server: ServerHandle,
    *,
    collection: str,
    queries: Sequence[str],
    relevant: Sequence[str],
    k: int,
    warmup_texts: Sequence[str],
    time_budget_s: float,
) -> tuple[dict[str, Any], Candidates]:
    """``/search`` with ``{"text": q, "k": k, "include_content": true}``, one client."""
    path = f"/v1/collections/{collection}/search"

    def body(text: str) -> bytes:
        return encode({"text": text, "k": k, "include_content": True})

    warm = [Request(path, body(t)) for t in warmup_texts]
    run_load(server, warm, [list(range(len(warm)))], time_budget_s=time_budget_s)
    reqs = [Request(path, body(q)) for q in queries]
    with Scrape(server) as scrape:
        result = run_load(
            server, reqs, striped(len(reqs), 1), time_budget_s=time_budget_s, keep_responses=True
        )
    ids: list[list[str]] = [[] for _ in queries]
    texts: list[list[str]] = [[] for _ in queries]
    short = 0
    for idx, raw in result.responses:
        hits = data_of(raw)["results"]
        ids[idx] = [h["external_id"] for h in hits]
        texts[idx] = [h.get("content") or "" for h in hits]
        short += len(hits) != k or any(not h.get("content") for h in hits)
    figures = {
        "method": "dense",
        "k": k,
        **ranking_figures(ids, relevant),
        f"recall@{k}": recall_at_k(ids, [[r] for r in relevant]),
        "short_or_contentless_results": short,
        **result.figures(),
        "server": scrape.figures(SEARCH_ROUTE),
    }
    return figures, Candidates(ids, texts)


def rerank_quality_pass(
    server: ServerHandle,
    method: Method,
    *,
    queries: Sequence[str],
    relevant: Sequence[str],
    candidates: Candidates,
    top_n: int,
    time_budget_s: float,
) -> dict[str, Any]:
    """Each query's dense candidates through ``/v1/rerank``, one client; ranked by the answer."""
    reqs = [
        Request(RERANK_PATH, rerank_body(q, docs, method.fields, top_n=top_n))
        for q, docs in zip(queries, candidates.texts, strict=True)
    ]
    warm = min(5, len(reqs))
    run_load(server, reqs, [list(range(warm))], time_budget_s=time_budget_s)
    with Scrape(server) as scrape:
        result = run_load(
            server, reqs, striped(len(reqs), 1), time_budget_s=time_budget_s, keep_responses=True
        )
    sizes = [len(t) for t in candidates.texts]
    checked = _check_all(result, sizes, method.fields, top_n)
    done = sorted(checked.ranked)
    ranked = [[candidates.ids[i][j] for j in checked.ranked[i]] for i in done]
    dense_top = [candidates.ids[i][:CUTOFF] for i in done]
    return {
        "method": method.key,
        "label": method.label,
        "synthetic": method.synthetic,
        "request": method.fields,
        "candidates": max(sizes) if sizes else 0,
        **ranking_figures(ranked, [relevant[i] for i in done]),
        # Overlap of the reranked top 10 with the dense top 10 (fast: ~1.0, same model).
        "top10_overlap_with_dense": recall_at_k(
            [r[:CUTOFF] for r in ranked], [d for d in dense_top]
        ),
        **result.figures(),
        **checked.figures(),
        "server": _server_figures(scrape, RERANK_PATH),
    }


def write_cross_encoder(directory: Path) -> tuple[Path, dict[str, Any]]:
    """The test suite's synthetic cross-encoder (``tests/cross_encoder_model.py``) as an ONNX file
    and a registry TOML naming it; returns (the TOML's path, a description)."""
    from tests import cross_encoder_model as ce

    t0 = time.perf_counter()
    onnx_path = ce.build(directory / "test-cross-encoder.onnx")
    toml = directory / "models.toml"
    toml.write_text(ce.registry_entry(onnx_path))
    return toml, {
        "id": CROSS_ENCODER,
        "built_by": "tests/cross_encoder_model.py",
        "max_tokens": 64,
        "onnx_bytes": onnx_path.stat().st_size,
        "build_s": time.perf_counter() - t0,
        "what": (
            "a synthetic ONNX pair scorer (token-overlap share and the cosine of summed random "
            "token vectors); it has never seen training data, so its ranking quality means nothing"
        ),
    }
