"""Hybrid search (BM25 + vector, fused) and two-stage query (retrieve, then rerank)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vecstore.domain import CollectionShape, FloatArray, Hit
from vecstore.errors import BadRequest
from vecstore.services import fusion
from vecstore.services.collections import CollectionService
from vecstore.services.cross_encoder import CrossEncoder
from vecstore.services.search import Query, ReadTiming, SearchService
from vecstore.services.vectors import QueryResolver, as_vector
from vecstore.storage.collection import CollectionRuntime
from vecstore.storage.engine import StorageEngine
from vecstore.storage.filters import parse_filter

RERANK_METHODS = ("vector", "hybrid", "cross")
# Candidates each leg of a hybrid search contributes, at least (and twice k + offset).
MIN_LEG_DEPTH = 100


@dataclass(slots=True)
class FusedHit:
    """A hit with the scores that produced it; ``hit.score`` is the final (fused) score."""

    hit: Hit
    vector_score: float | None = None
    text_score: float | None = None
    retrieval_score: float | None = None
    rerank_score: float | None = None


@dataclass(frozen=True, slots=True)
class QueryTiming:
    embedding_ms: float
    search_ms: float
    rerank_ms: float
    total_ms: float


@dataclass(slots=True)
class HybridResult:
    hits: list[FusedHit]
    timing: ReadTiming
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class QueryResult:
    hits: list[FusedHit]
    timing: QueryTiming
    warnings: list[str] = field(default_factory=list)


class HybridService:
    def __init__(
        self,
        engine: StorageEngine,
        collections: CollectionService,
        resolver: QueryResolver,
        search: SearchService,
        cross_encoder: CrossEncoder,
    ) -> None:
        self.engine = engine
        self.collections = collections
        self.resolver = resolver
        self.search = search
        self.cross_encoder = cross_encoder

    # -- hybrid search --------------------------------------------------------------------------
    def hybrid_search(
        self,
        name: str,
        query_text: str,
        *,
        vector: Sequence[float] | str | None = None,
        k: int = 10,
        offset: int = 0,
        alpha: float = 0.5,
        method: str = "weighted",
        filters: dict[str, Any] | None = None,
        include_vectors: bool = False,
        include_content: bool = False,
    ) -> HybridResult:
        started = time.perf_counter()
        info = self.collections.live(name)
        self.search.check_k(k, offset)
        _check_alpha(alpha)
        if method not in fusion.FUSIONS:
            raise BadRequest(f"'fusion' must be 'weighted' or 'rrf', got '{method}'")
        self._check_query_text(query_text, "query_text")
        node = parse_filter(filters)
        query, embedding_ms, warnings = self._hybrid_vector(info, query_text, vector, alpha)

        t0 = time.perf_counter()
        depth = min(max(2 * (k + offset), MIN_LEG_DEPTH), self.search.limits.max_k_offset)
        vector_leg = info.search(query, depth, node=node) if query is not None else []
        text_leg = self.engine.keyword_search(info, query_text, depth, node)
        # Every candidate of either leg gets both scores: exact vector scores from the stored
        # vectors, BM25 from the keyword index (0 when none of the query's words occur).
        by_id = {h.internal_id: h for h in vector_leg}
        text_only = [i for i, _ in text_leg if i not in by_id]
        by_id.update((h.internal_id, h) for h in info.score_ids(query, np.asarray(text_only)))
        ids = list(by_id)
        bm25 = dict(text_leg)
        missing = [i for i in ids if i not in bm25]
        bm25.update(self.engine.keyword_scores(info, query_text, missing))
        text_scores = np.asarray([bm25.get(i, 0.0) for i in ids], dtype=np.float64)
        vector_scores = (
            np.asarray([by_id[i].score for i in ids], dtype=np.float64)
            if query is not None
            else None
        )
        if method == "rrf":
            fused = fusion.rrf(
                _ranks(ids, [h.internal_id for h in vector_leg]),
                _ranks(ids, [i for i, _ in text_leg]),
                alpha,
            )
        else:
            fused = fusion.weighted(vector_scores, text_scores, alpha)
        order = np.lexsort((np.asarray(ids, dtype=np.int64), -fused))[offset : offset + k]
        hits = [
            FusedHit(
                _rescored(by_id[ids[j]], float(fused[j])),
                vector_score=float(vector_scores[j]) if vector_scores is not None else None,
                text_score=float(text_scores[j]),
            )
            for j in order.tolist()
        ]
        search_ms = (time.perf_counter() - t0) * 1000
        self._attach(info, hits, include_vectors, include_content)
        total_ms = (time.perf_counter() - started) * 1000
        return HybridResult(hits, ReadTiming(embedding_ms, search_ms, total_ms), warnings)

    def _hybrid_vector(
        self,
        info: CollectionShape,
        text: str,
        vector: Sequence[float] | str | None,
        alpha: float,
    ) -> tuple[FloatArray | None, float, list[str]]:
        """The vector leg's query: the given vector, else the embedded text; none is needed
        for a pure keyword search (``alpha`` 0)."""
        if vector is not None:
            return as_vector(vector, info.dim, metric=info.metric), 0.0, []
        if alpha == 0:
            return None, 0.0, []
        out = self.resolver.embed_texts(info, [text], ["query_text"], query=True)
        return out.vectors[0], out.embedding_ms, out.warnings

    # -- two-stage query ------------------------------------------------------------------------
    def query(
        self,
        name: str,
        query: Query,
        *,
        k: int = 50,
        top_n: int = 10,
        filters: dict[str, Any] | None = None,
        method: str = "vector",
        model: str | None = None,
        alpha: float = 0.5,
        include_vectors: bool = False,
        include_content: bool = False,
    ) -> QueryResult:
        started = time.perf_counter()
        info = self.collections.live(name)
        self.search.check_k(k)
        self.search.limits.check_range("top_n", top_n, 1, self.search.limits.max_k)
        if method not in RERANK_METHODS:
            raise BadRequest(
                f"'rerank.method' must be one of {', '.join(RERANK_METHODS)}, got '{method}'"
            )
        _check_alpha(alpha, "rerank.alpha")
        if method != "vector":
            if query.text is None:
                raise BadRequest(f"rerank method '{method}' needs the query as 'text'")
            self._check_query_text(query.text, "text")
        node = parse_filter(filters)
        vector, embedding_ms, warnings = self.resolver.resolve(query.vector, query.text, shape=info)

        t0 = time.perf_counter()
        candidates = info.search(vector, k, node=node)
        search_ms = (time.perf_counter() - t0) * 1000

        t1 = time.perf_counter()
        retrieval = {h.internal_id: h.score for h in candidates}
        ids = np.asarray([h.internal_id for h in candidates], dtype=np.int64)
        if method == "vector":  # exact re-score from the stored vectors
            rescored = info.score_ids(vector, ids)
            scores = np.asarray([h.score for h in rescored], dtype=np.float64)
            hits = rescored
        elif method == "hybrid":
            assert query.text is not None
            bm25 = self.engine.keyword_scores(info, query.text, ids.tolist())
            text_scores = np.asarray([bm25.get(i, 0.0) for i in ids.tolist()])
            vector_scores = np.asarray([h.score for h in candidates], dtype=np.float64)
            scores = fusion.weighted(vector_scores, text_scores, alpha)
            hits = candidates
        else:
            assert query.text is not None
            documents = self._contents(info, candidates)
            scores = np.asarray(
                self.cross_encoder.score(query.text, documents, model), dtype=np.float64
            )
            hits = candidates
        # Ties keep the retrieval order.
        order = np.lexsort((np.arange(len(hits)), -scores))[:top_n]
        fused = [
            FusedHit(
                _rescored(hits[j], float(scores[j]), metric_score=method == "vector"),
                retrieval_score=retrieval[hits[j].internal_id],
                rerank_score=float(scores[j]),
            )
            for j in order.tolist()
        ]
        rerank_ms = (time.perf_counter() - t1) * 1000
        self._attach(info, fused, include_vectors, include_content)
        total_ms = (time.perf_counter() - started) * 1000
        return QueryResult(
            fused, QueryTiming(embedding_ms, search_ms, rerank_ms, total_ms), warnings
        )

    # -- helpers --------------------------------------------------------------------------------
    def _check_query_text(self, text: str, field: str) -> None:
        if not text.strip():
            raise BadRequest(f"'{field}' must hold at least one word")
        self.resolver.check_text(text, field)

    def _contents(self, info: CollectionRuntime, hits: list[Hit]) -> list[str]:
        records = self.engine.fetch_by_internal(info, [h.internal_id for h in hits], False)
        out = []
        for hit in hits:
            record = records.get(hit.internal_id)
            out.append((record.content or "") if record is not None else "")
        return out

    def _attach(
        self,
        info: CollectionRuntime,
        hits: list[FusedHit],
        include_vectors: bool,
        include_content: bool,
    ) -> None:
        self.search.to_hits(
            info,
            [h.hit for h in hits],
            include_vectors=include_vectors,
            include_content=include_content,
        )


def _check_alpha(alpha: float, field: str = "alpha") -> None:
    if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise BadRequest(f"'{field}' must be between 0 and 1 (the weight of the vector leg)")


def _ranks(ids: list[int], ranked: list[int]) -> np.ndarray:
    """1-based rank of each id in ``ranked``; 0 where that leg did not return it."""
    position = {iid: r for r, iid in enumerate(ranked, start=1)}
    return np.asarray([position.get(i, 0) for i in ids], dtype=np.int64)


def _rescored(hit: Hit, score: float, *, metric_score: bool = False) -> Hit:
    """The hit with its final score; unless that is still the metric's own score, an l2
    distance no longer describes it."""
    hit.score = score
    if not metric_score:
        hit.distance = None
    return hit
