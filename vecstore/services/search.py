"""Search, bulk search, recommend, similarity and per-collection rerank."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from vecstore.domain import CollectionShape, FloatArray, Hit
from vecstore.errors import BadRequest, RecordNotFound
from vecstore.services.collections import CollectionService
from vecstore.services.limits import Limits
from vecstore.services.vectors import QueryResolver, finite_or_none
from vecstore.storage.collection import QUICK_MAX_CANDIDATES, CollectionRuntime
from vecstore.storage.engine import StorageEngine
from vecstore.storage.filters import Node, parse_filter
from vecstore.storage.rwlock import WouldBlock

_decode = msgspec.json.Decoder().decode


@dataclass(frozen=True, slots=True)
class ReadTiming:
    embedding_ms: float
    search_ms: float
    total_ms: float


@dataclass(frozen=True, slots=True)
class Query:
    vector: Sequence[float] | str | None = None
    text: str | None = None


@dataclass(slots=True)
class SearchPlan:
    """A checked search with its query vector resolved: what ``SearchService.run`` needs."""

    runtime: CollectionRuntime
    vector: FloatArray
    k: int
    offset: int
    node: Node | None
    exact: bool
    ef_search: int | None
    score_threshold: float | None
    include_vectors: bool
    include_content: bool
    include_count: bool
    embedding_ms: float
    warnings: list[str]
    started: float


@dataclass(slots=True)
class SearchResult:
    hits: list[Hit]
    timing: ReadTiming
    total_count: int | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RerankResult:
    hits: list[Hit]
    not_found: list[str]
    timing: ReadTiming
    warnings: list[str] = field(default_factory=list)


class SearchService:
    def __init__(
        self,
        engine: StorageEngine,
        collections: CollectionService,
        resolver: QueryResolver,
        limits: Limits,
    ) -> None:
        self.engine = engine
        self.collections = collections
        self.resolver = resolver
        self.limits = limits

    def _resolve(self, info: CollectionShape, query: Query) -> tuple[np.ndarray, float, list[str]]:
        return self.resolver.resolve(query.vector, query.text, shape=info)

    def check_k(self, k: int, offset: int = 0) -> None:
        self.limits.check_range("k", k, 1, self.limits.max_k)
        if offset < 0:
            raise BadRequest("'offset' must be 0 or more")
        if k + offset > self.limits.max_k_offset:
            raise BadRequest(
                f"'k' + 'offset' is {k + offset}; the limit is {self.limits.max_k_offset}",
                type_="limit_exceeded",
            )

    def to_hits(
        self,
        runtime: CollectionRuntime,
        hits: list[Hit],
        *,
        include_vectors: bool = False,
        include_content: bool = False,
    ) -> list[Hit]:
        """Attach stored content and raw vectors to hits, when asked for."""
        if hits and (include_vectors or include_content):
            # The same runtime the hits came from: a collection re-created under the same name
            # meanwhile has other records behind the same internal ids.
            records = self.engine.fetch_by_internal(
                runtime, [h.internal_id for h in hits], include_vectors
            )
            for hit in hits:
                record = records.get(hit.internal_id)
                if record is None:  # replaced between search and fetch: report what was scored
                    continue
                if include_content:
                    hit.content = record.content
                if include_vectors:
                    hit.vector = record.vector
        return hits

    def plan(
        self,
        name: str,
        query: Query,
        *,
        k: int = 10,
        offset: int = 0,
        filters: dict[str, Any] | None = None,
        score_threshold: float | None = None,
        exact: bool = False,
        ef_search: int | None = None,
        include_vectors: bool = False,
        include_content: bool = False,
        include_count: bool = False,
        nonblocking: bool = False,
    ) -> SearchPlan:
        """A checked search with its query vector, ready for ``run``. ``nonblocking``: raise
        ``WouldBlock`` before embedding anything unless ``run`` will be quick (an unfiltered
        approximate search by vector that reads nothing from the database); the API then plans
        and runs it in a worker thread."""
        started = time.perf_counter()
        info = self.collections.live(name)
        self.check_k(k, offset)
        if ef_search is not None:
            self.limits.check_range("ef_search", ef_search, 1, 10000)
        finite_or_none(score_threshold, "score_threshold")
        node = parse_filter(filters)
        if nonblocking and (
            query.vector is None
            or node is not None
            or exact
            or include_vectors
            or include_content
            or not info.answers_quickly(k + offset, ef_search)
        ):
            raise WouldBlock("not a quick search")
        vector, embedding_ms, warnings = self._resolve(info, query)
        return SearchPlan(
            info,
            vector,
            k,
            offset,
            node,
            exact,
            ef_search,
            score_threshold,
            include_vectors,
            include_content,
            include_count,
            embedding_ms,
            warnings,
            started,
        )

    def run(self, plans: Sequence[SearchPlan], *, nonblocking: bool = False) -> list[SearchResult]:
        """The results of ``plans``, in order. Unfiltered approximate searches of one collection
        with the same ``k + offset`` and ``ef_search`` share one index search
        (``CollectionRuntime.search_many``); each result is the one its plan gives alone.
        ``nonblocking``: raise ``WouldBlock`` rather than wait for a writer's lock."""
        results: list[SearchResult | None] = [None] * len(plans)
        batches: dict[tuple[int, int, int | None], list[int]] = {}
        for i, plan in enumerate(plans):
            if plan.node is None and not plan.exact:
                key = (id(plan.runtime), plan.k + plan.offset, plan.ef_search)
                batches.setdefault(key, []).append(i)
                continue
            t0 = time.perf_counter()
            hits = plan.runtime.search(
                plan.vector,
                plan.k + plan.offset,
                node=plan.node,
                exact=plan.exact,
                ef_search=plan.ef_search,
                blocking=not nonblocking,
            )
            results[i] = self._finish(plan, hits, (time.perf_counter() - t0) * 1000)
        for members in batches.values():
            first = plans[members[0]]
            t0 = time.perf_counter()
            queries = (
                first.vector.reshape(1, -1)
                if len(members) == 1
                else np.stack([plans[i].vector for i in members])
            )
            found = first.runtime.search_many(
                queries,
                first.k + first.offset,
                ef_search=first.ef_search,
                blocking=not nonblocking,
            )
            search_ms = (time.perf_counter() - t0) * 1000
            for i, hits in zip(members, found, strict=True):
                results[i] = self._finish(plans[i], hits, search_ms)
        return [r for r in results if r is not None]

    def _finish(self, plan: SearchPlan, found: list[Hit], search_ms: float) -> SearchResult:
        hits = found[plan.offset :]
        if plan.score_threshold is not None:
            threshold = plan.score_threshold
            hits = [h for h in hits if h.score >= threshold]
        total = plan.runtime.count(plan.node) if plan.include_count else None
        hits = self.to_hits(
            plan.runtime,
            hits,
            include_vectors=plan.include_vectors,
            include_content=plan.include_content,
        )
        total_ms = (time.perf_counter() - plan.started) * 1000
        timing = ReadTiming(plan.embedding_ms, search_ms, total_ms)
        return SearchResult(hits, timing, total, plan.warnings)

    def bulk_search(
        self, name: str, queries: Sequence[tuple[Query, int, dict[str, Any] | None]]
    ) -> tuple[list[list[Hit]], ReadTiming, list[str]]:
        started = time.perf_counter()
        info = self.collections.live(name)
        self.limits.check_count("queries", len(queries), self.limits.max_bulk_queries)
        search_ms = 0.0
        prepared: list[tuple[np.ndarray | None, int, Any]] = []
        texts: list[tuple[int, str]] = []
        for i, (query, k, filters) in enumerate(queries):
            try:
                self.check_k(k)
                node = parse_filter(filters)
                vector = None
                if query.vector is not None or query.text is None:
                    vector, _, _ = self._resolve(info, query)
                else:
                    texts.append((i, query.text))
            except BadRequest as exc:
                raise type(exc)(f"queries[{i}]: {exc.message}", type_=exc.error_type) from exc
            prepared.append((vector, k, node))
        embedding_ms, warnings = 0.0, []
        if texts:  # every text query of the request in one embedding call
            out = self.resolver.embed_texts(
                info, [t for _, t in texts], [f"queries[{i}].text" for i, _ in texts], query=True
            )
            embedding_ms, warnings = out.embedding_ms, out.warnings
            for row, (i, _) in enumerate(texts):
                prepared[i] = (out.vectors[row], prepared[i][1], prepared[i][2])
        results: list[list[Hit]] = []
        for vector, k, node in prepared:
            assert vector is not None
            t0 = time.perf_counter()
            rows = info.search(vector, k, node=node)
            search_ms += (time.perf_counter() - t0) * 1000
            results.append(self.to_hits(info, rows))
        total_ms = (time.perf_counter() - started) * 1000
        return results, ReadTiming(embedding_ms, search_ms, total_ms), warnings

    def recommend(
        self,
        name: str,
        external_id: str,
        *,
        k: int,
        filters: dict[str, Any] | None,
        exclude_self: bool,
    ) -> SearchResult:
        started = time.perf_counter()
        info = self.collections.live(name)
        self.check_k(k)
        node = parse_filter(filters)
        found = info.index_vector_of(external_id)
        if found is None:
            raise RecordNotFound(f"no record '{external_id}' in collection '{name}'")
        internal_id, vector = found
        t0 = time.perf_counter()
        rows = info.search(vector, k + (1 if exclude_self else 0), node=node)
        if exclude_self:
            rows = [r for r in rows if r.internal_id != internal_id][:k]
        search_ms = (time.perf_counter() - t0) * 1000
        hits = self.to_hits(info, rows)
        return SearchResult(
            hits, ReadTiming(0.0, search_ms, (time.perf_counter() - started) * 1000)
        )

    def similarity(self, name: str, id1: str, id2: str) -> float:
        runtime = self.collections.live(name)
        first = runtime.index_vector_of(id1)
        second = runtime.index_vector_of(id2)
        for ext, found in ((id1, first), (id2, second)):
            if found is None:
                raise RecordNotFound(f"no record '{ext}' in collection '{name}'")
        assert first is not None
        assert second is not None
        return float(runtime.scores(first[1].reshape(1, -1), second[1])[0])

    def rerank(
        self,
        name: str,
        query: Query,
        candidates: Sequence[str],
        *,
        top_k: int | None = None,
        score_threshold: float | None = None,
        include_vectors: bool = False,
        nonblocking: bool = False,
    ) -> RerankResult:
        """``nonblocking``: as for ``search``; a rerank by vector of up to
        ``QUICK_MAX_CANDIDATES`` (dictionary lookups and one small matrix product) is quick
        unless it reads vectors back from the database."""
        started = time.perf_counter()
        info = self.collections.live(name)
        self.limits.check_count("candidates", len(candidates), self.limits.max_candidates)
        if top_k is not None and top_k < 1:
            raise BadRequest("'top_k' must be 1 or more")
        finite_or_none(score_threshold, "score_threshold")
        if nonblocking and (
            query.vector is None or include_vectors or len(candidates) > QUICK_MAX_CANDIDATES
        ):
            raise WouldBlock("not a quick rerank")
        vector, embedding_ms, warnings = self._resolve(info, query)
        t0 = time.perf_counter()
        unique = list(dict.fromkeys(candidates))  # duplicates collapse, first position wins
        rows, not_found = info.rerank(
            vector,
            unique,
            top_k=top_k,
            score_threshold=score_threshold,
            blocking=not nonblocking,
        )
        search_ms = (time.perf_counter() - t0) * 1000
        hits = self.to_hits(info, rows, include_vectors=include_vectors)
        total_ms = (time.perf_counter() - started) * 1000
        return RerankResult(
            hits, not_found, ReadTiming(embedding_ms, search_ms, total_ms), warnings
        )
