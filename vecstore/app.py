"""The composition root: ``create_app(settings)`` builds every service and the Litestar app."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import Method

from vecstore import __version__
from vecstore.api.auth import require_role
from vecstore.api.body import VecstoreRequest
from vecstore.api.context import RequestContextMiddleware
from vecstore.api.errors import handle_exception
from vecstore.api.hot_paths import HotPaths
from vecstore.api.metrics import Metrics
from vecstore.api.routes.collections import CollectionController
from vecstore.api.routes.embeddings import list_models, openai_embeddings, tei_embed
from vecstore.api.routes.hybrid import HybridController
from vecstore.api.routes.keys import KeyController
from vecstore.api.routes.ops import docs, health, metrics, ready, v1_health
from vecstore.api.routes.records import RecordController
from vecstore.api.routes.rerank import rerank_tei_or_infinity, rerank_v1, rerank_v2
from vecstore.api.routes.search import SearchController
from vecstore.api.routes.snapshots import SnapshotController
from vecstore.api.search_batches import SearchBatcher
from vecstore.api.state import AppServices
from vecstore.api.timeouts import TimeoutMiddleware
from vecstore.gc_freeze import freeze_startup_objects, unfreeze
from vecstore.inference.batcher import BatchPolicy
from vecstore.inference.host import InferenceConfig, ModelHost
from vecstore.inference.registry import ModelRegistry
from vecstore.services.collections import CollectionService
from vecstore.services.cross_encoder import CrossEncoder, NoCrossEncoder
from vecstore.services.document_rerank import DocumentRerankService
from vecstore.services.embedder import Embedder
from vecstore.services.embeddings import EmbeddingService
from vecstore.services.hybrid import HybridService
from vecstore.services.keys import KeyService
from vecstore.services.limits import Limits
from vecstore.services.records import RecordService
from vecstore.services.search import SearchService
from vecstore.services.snapshots import SnapshotService
from vecstore.services.vectors import QueryResolver
from vecstore.settings import Settings
from vecstore.storage.engine import EngineConfig, StorageEngine
from vecstore.storage.heap import set_arena_max, set_mmap_threshold
from vecstore.storage.keys import KeyStore

log = logging.getLogger("vecstore")


def build_model_host(settings: Settings, metrics: Metrics) -> ModelHost:
    """The registry is read here, so a malformed registry file stops the server at start."""
    registry = ModelRegistry.load(settings.models_file)
    return ModelHost(
        registry,
        InferenceConfig(
            default_embedding_model=settings.default_embedding_model,
            intra_op_threads=settings.embedding_threads,
            micro_batching=settings.embedding_micro_batching,
            policy=BatchPolicy(
                window_s=settings.embedding_batch_window_ms / 1000,
                max_texts=settings.embedding_max_batch,
                max_tokens=settings.embedding_max_batch_tokens,
                workers=settings.embedding_workers,
                max_queued_texts=settings.embedding_queue_max,
                timeout_s=settings.embedding_timeout_s,
            ),
            query_cache_entries=settings.query_cache_entries,
            document_cache_entries=settings.document_cache_entries,
            default_cross_encoder=settings.default_cross_encoder,
        ),
        observe_batch=metrics.observe_embedding_batch,
        observe_cache=metrics.observe_embedding_cache,
    )


def make_data_dir(data_dir: Path) -> None:
    """Create the data directory owner-only (0700): it holds every record, the key hashes and
    perhaps ``admin.key``. An existing directory keeps the permissions its operator gave it."""
    if not data_dir.is_dir():
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        data_dir.mkdir(mode=0o700, exist_ok=True)


# What a browser page on an allowed origin may send and read (keys travel in headers, never
# in cookies, so credentials stay off).
CORS_METHODS: tuple[Method, ...] = ("GET", "POST", "PATCH", "DELETE", "OPTIONS")
CORS_HEADERS = ["x-api-key", "authorization", "content-type", "x-request-id"]
CORS_EXPOSED = ["x-request-id", "retry-after"]


def cors_config(settings: Settings) -> CORSConfig | None:
    """CORS is off (no Access-Control-* header, preflights refused by browsers) unless
    ``cors_allow_origins`` names origins."""
    origins = settings.cors_origins
    if not origins:
        return None
    return CORSConfig(
        allow_origins=origins,
        allow_methods=[*CORS_METHODS],
        allow_headers=CORS_HEADERS,
        expose_headers=CORS_EXPOSED,
        allow_credentials=False,
        max_age=600,
    )


def build_services(
    settings: Settings,
    embedder: Embedder | None = None,
    cross_encoder: CrossEncoder | None = None,
) -> AppServices:
    make_data_dir(settings.data_dir)
    metrics = Metrics()
    models = None
    if embedder is None:
        models = build_model_host(settings, metrics)
        metrics.watch_embedding_queues(models.queue_depths)
        embedder = models
        cross_encoder = cross_encoder or models
    engine = StorageEngine(
        EngineConfig(
            database_url=settings.resolved_database_url,
            index_dir=settings.index_dir,
            sqlite_synchronous=settings.sqlite_synchronous,
            sqlite_cache_mb=settings.sqlite_cache_mb,
            indexer_interval_s=settings.indexer_interval_s,
            indexer_batch_size=settings.indexer_batch_size,
            indexer_fresh_max=settings.indexer_fresh_max,
            indexer_defer_s=settings.indexer_defer_s,
            checkpoint_every_changes=settings.checkpoint_every_changes,
            checkpoint_idle_s=settings.checkpoint_idle_s,
            compaction_threshold=settings.compaction_threshold,
            exact_filter_max_matches=settings.exact_filter_max_matches,
            index_huge_pages=settings.index_huge_pages,
        )
    )
    limits = Limits(
        max_dim=settings.max_dim,
        max_metadata_bytes=settings.max_metadata_bytes,
        max_bulk_items=settings.max_bulk_items,
        max_candidates=settings.max_candidates,
        max_k=settings.max_k,
        max_k_offset=settings.max_k_offset,
        max_text_chars=settings.max_text_chars,
        max_external_id_bytes=settings.max_external_id_bytes,
        max_bulk_queries=settings.max_bulk_queries,
    )
    cross_encoder = cross_encoder or NoCrossEncoder()
    collections = CollectionService(engine, embedder, limits)
    resolver = QueryResolver(embedder, settings.max_text_chars)
    search = SearchService(engine, collections, resolver, limits)
    keys = KeyService(
        KeyStore(engine.db),
        admin_key=settings.admin_key,
        default_rate_limit_per_minute=settings.default_rate_limit_per_minute or None,
        on_rate_limited=lambda key_id: metrics.rate_limited.labels(key_id).inc(),
    )
    return AppServices(
        settings=settings,
        engine=engine,
        collections=collections,
        records=RecordService(engine, collections, resolver, limits),
        search=search,
        hybrid=HybridService(engine, collections, resolver, search, cross_encoder),
        keys=keys,
        snapshots=SnapshotService(engine, keys, settings.resolved_snapshot_dir),
        metrics=metrics,
        embedder=embedder,
        embeddings=EmbeddingService(
            embedder,
            max_inputs=settings.max_embedding_inputs,
            max_text_chars=settings.max_text_chars,
        ),
        document_rerank=DocumentRerankService(
            embedder,
            cross_encoder,
            max_documents=settings.max_rerank_documents,
            max_text_chars=settings.max_text_chars,
        ),
        search_batches=SearchBatcher(search),
        models=models,
    )


def create_app(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    cross_encoder: CrossEncoder | None = None,
) -> Litestar:
    """``embedder`` and ``cross_encoder`` replace the server's own models (tests use fakes)."""
    services = build_services(settings, embedder, cross_encoder)
    opening: list[threading.Thread] = []

    def open_engine() -> None:
        try:
            services.engine.open()
        except Exception:
            log.exception("the storage engine failed to open; the server stays not-ready")
        if services.models is not None and settings.preload_models:
            services.models.preload()  # a broken model is logged; its routes answer 503
        freeze_startup_objects()  # once the heap holds what lives as long as the server

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Before the engine loads anything and before the worker threads first allocate, so
        # loaded records pack densely and threads share few arenas (vecstore.storage.heap).
        set_arena_max(settings.heap_arena_max)
        set_mmap_threshold(settings.heap_mmap_threshold_kib)
        # Open in the background so /health and /ready answer while indexes load.
        thread = threading.Thread(target=open_engine, name="vecstore-open", daemon=True)
        thread.start()
        opening.append(thread)
        services.keys.start()
        services.search_batches.note_idle()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(_shutdown, services, thread)

    app = Litestar(
        route_handlers=[
            CollectionController,
            RecordController,
            SearchController,
            HybridController,
            KeyController,
            SnapshotController,
            openai_embeddings,
            list_models,
            tei_embed,
            rerank_v1,
            rerank_v2,
            rerank_tei_or_infinity,
            health,
            ready,
            v1_health,
            metrics,
            docs,
        ],
        guards=[require_role],
        lifespan=[lifespan],
        exception_handlers={Exception: handle_exception},
        request_max_body_size=settings.max_body_bytes,
        request_class=VecstoreRequest,
        cors_config=cors_config(settings),
        openapi_config=OpenAPIConfig(
            title="vecstore",
            version=__version__,
            path="/schema",
            render_plugins=[SwaggerRenderPlugin(), RedocRenderPlugin()],
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(
                        type="apiKey", name="x-api-key", security_scheme_in="header"
                    ),
                    "bearer": SecurityScheme(type="http", scheme="bearer"),
                }
            ),
        ),
        debug=False,
    )
    app.state.services = services
    # Wrap Litestar's own ASGI handler (not a Litestar middleware, which runs after routing) so
    # that every response, 404s included, gets a request id, a log line and metrics.
    # Inside it, the request timeout: a timed-out request is still logged and counted.
    # Innermost, the lane for search, rerank and bulk_upsert (it hands anything unusual to
    # Litestar).
    app.state.hot_paths = hot_paths = HotPaths(app.asgi_handler, services)
    app.asgi_handler = RequestContextMiddleware(
        TimeoutMiddleware(hot_paths, settings.request_timeout_s, services.metrics),
        services.metrics,
    )
    return app


def _shutdown(services: AppServices, opener: threading.Thread) -> None:
    opener.join(timeout=600)
    services.keys.stop()
    if services.models is not None:
        services.models.close()
    services.engine.close()
    unfreeze()
