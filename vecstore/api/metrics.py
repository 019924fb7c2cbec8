"""Prometheus metrics through prometheus-client, with one registry per app (no global state)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from vecstore.domain import CollectionStats


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.requests = Counter(
            "vecstore_http_requests",
            "HTTP requests by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vecstore_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )

        self.embedding_batch_size = Histogram(
            "vecstore_embedding_batch_texts",
            "Texts per embedding model run (micro-batches across requests).",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.embedding_batch_seconds = Histogram(
            "vecstore_embedding_batch_duration_seconds",
            "Time of one embedding model run.",
            ["model"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.embedding_tokens = Counter(
            "vecstore_embedding_padded_tokens",
            "Token positions run through embedding models, padding included.",
            ["model"],
            registry=self.registry,
        )

        self.query_cache = Counter(
            "vecstore_query_cache_lookups",
            "Query-embedding cache lookups by result (hit: the model did not run).",
            ["model", "result"],
            registry=self.registry,
        )
        self.document_cache = Counter(
            "vecstore_document_cache_lookups",
            "Reranked-document embedding cache lookups by result (hit: the model did not run).",
            ["model", "result"],
            registry=self.registry,
        )

        # Back-pressure: every request the server turned away, and why.
        self.request_timeouts = Counter(
            "vecstore_request_timeouts",
            "Requests answered with a timeout (request_timeout_s) and cancelled.",
            ["route"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "vecstore_rejected_requests",
            "Requests refused under load: rate_limited (429), overloaded, timeout,"
            " not_ready, model_unavailable (503).",
            ["route", "reason"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "vecstore_rate_limited_requests",
            "Requests refused by a key's rate limit, per key id.",
            ["key_id"],
            registry=self.registry,
        )
        self._queue_depths: Callable[[], dict[str, int]] = dict
        self.registry.register(_QueueCollector(lambda: self._queue_depths()))

    def observe_rejection(self, route: str, reason: str) -> None:
        """Every refusal passes here, whichever layer refused it, so the series agree."""
        self.rejections.labels(route, reason).inc()
        if reason == "timeout":
            self.request_timeouts.labels(route).inc()

    def watch_embedding_queues(self, depths: Callable[[], dict[str, int]]) -> None:
        """``depths()`` gives texts waiting per model; read at every scrape."""
        self._queue_depths = depths

    def observe_embedding_cache(self, cache: str, model: str, hits: int, misses: int) -> None:
        counter = self.query_cache if cache == "query" else self.document_cache
        if hits:
            counter.labels(model, "hit").inc(hits)
        if misses:
            counter.labels(model, "miss").inc(misses)

    def observe_embedding_batch(self, model: str, texts: int, tokens: int, seconds: float) -> None:
        self.embedding_batch_size.labels(model).observe(texts)
        self.embedding_batch_seconds.labels(model).observe(seconds)
        self.embedding_tokens.labels(model).inc(tokens)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        # The labelled children, looked up once per (method, route, status): prometheus's
        # labels() takes a lock and builds a key on every call, on every request.
        children = self._request_children.get((method, route, status))
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            if len(self._request_children) < 10_000:  # routes are templates: few in practice
                self._request_children[(method, route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(
        self,
        collections: list[CollectionStats],
        index_rebuilds: int,
    ) -> bytes:
        """Global series plus per-collection series for the collections the caller may see."""
        scoped = CollectorRegistry(auto_describe=False)
        scoped.register(_EngineCollector(lambda: collections, index_rebuilds))
        return generate_latest(self.registry) + generate_latest(scoped)


class _EngineCollector(Collector):
    def __init__(self, stats: Callable[[], list[CollectionStats]], index_rebuilds: int) -> None:
        self._stats = stats
        self._rebuilds = index_rebuilds

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        vectors = GaugeMetricFamily(
            "vecstore_collection_vectors", "Live vectors per collection.", labels=["collection"]
        )
        indexed = GaugeMetricFamily(
            "vecstore_collection_index_vectors",
            "Entries in the collection's FAISS index (tombstones included).",
            labels=["collection"],
        )
        deleted = GaugeMetricFamily(
            "vecstore_collection_deleted_fraction",
            "Fraction of index entries that are tombstones.",
            labels=["collection"],
        )
        for s in self._stats():
            vectors.add_metric([s.name], s.vector_count)
            indexed.add_metric([s.name], s.index_vectors)
            deleted.add_metric([s.name], s.deleted_fraction)
        rebuilds = CounterMetricFamily(
            "vecstore_index_rebuilds", "Index rebuilds (compactions and recoveries)."
        )
        rebuilds.add_metric([], self._rebuilds)
        yield from (vectors, indexed, deleted, rebuilds)


class _QueueCollector(Collector):
    def __init__(self, depths: Callable[[], dict[str, int]]) -> None:
        self._depths = depths

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queued = GaugeMetricFamily(
            "vecstore_embedding_queue_texts",
            "Texts waiting for an embedding model run (bounded by embedding_queue_max).",
            labels=["model"],
        )
        for model, n in sorted(self._depths().items()):
            queued.add_metric([model], n)
        yield queued
