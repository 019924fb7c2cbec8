"""One typed settings object, read from ``VECSTORE_*`` environment variables.

Every field is documented in ``docs/settings.md``; a test checks that the two agree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec

ENV_PREFIX = "VECSTORE_"


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    """Server configuration. Field names map to ``VECSTORE_<FIELD_NAME_UPPER>``."""

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")
    # SQLAlchemy URL of the catalog database; empty means SQLite at <data_dir>/vecstore.db.
    database_url: str = ""
    # "FULL" makes an acknowledged write survive power loss; "NORMAL" survives process crashes only.
    sqlite_synchronous: str = "FULL"
    # SQLite page cache per pooled connection, in MiB. Reads that matter are served from memory
    # (vectors, ids, metadata); the cache serves writes' index lookups, so it stays small.
    sqlite_cache_mb: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 8
    # Allocations from this size (KiB) up get their own mappings, returned to the OS when freed
    # (glibc's M_MMAP_THRESHOLD, fixed instead of glibc's self-raising default); 0 (the default)
    # leaves glibc's. Less RSS after bulk loads, slower large reads (vecstore.storage.heap).
    heap_mmap_threshold_kib: Annotated[int, msgspec.Meta(ge=0, le=32768)] = 0
    # At most this many glibc malloc arenas (M_ARENA_MAX); 0 leaves glibc's 8 per core. Worker
    # threads with arenas of their own keep freed request buffers resident in them after a bulk
    # load, where malloc_trim cannot reach (vecstore.storage.heap).
    heap_arena_max: Annotated[int, msgspec.Meta(ge=0, le=1024)] = 1
    # Ask Linux for transparent huge pages under each index's vectors and graph (madvise, and
    # MADV_COLLAPSE in the background indexer): fewer TLB misses per HNSW search
    # (vecstore.storage.huge_pages). A no-op where the platform has no THP.
    index_huge_pages: bool = True
    admin_key: str | None = None
    auth_enabled: bool = True
    metrics_public: bool = False
    # Browser origins allowed to call the API cross-origin (comma-separated, e.g.
    # "https://app.example.com"); empty: CORS is off and no Access-Control-* header is sent.
    cors_allow_origins: str = ""
    log_level: str = "INFO"
    log_json: bool = True

    max_dim: int = 4096
    max_metadata_bytes: int = 65536
    max_bulk_items: int = 1000
    max_candidates: int = 10000
    max_k_offset: int = 10000
    max_k: int = 1000
    max_text_chars: int = 100000
    max_body_bytes: int = 64 * 1024 * 1024
    max_external_id_bytes: int = 512
    max_bulk_queries: int = 100

    # A request still running after this long is answered 503 (timeout) and its work
    # cancelled; 0 turns timeouts off.
    request_timeout_s: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    # Answer POST .../search, .../rerank and .../bulk_upsert without the framework's routing
    # (same answers, less work per request: vecstore.api.hot_paths); false routes them like
    # every request.
    fast_path: bool = True
    # Requests per minute for a key with no limit of its own (the bootstrap admin key is never
    # limited); 0: no default limit.
    default_rate_limit_per_minute: Annotated[int, msgspec.Meta(ge=0)] = 0

    # Where POST /v1/admin/snapshots writes; empty: <data_dir>/snapshots. Another disk is safer.
    snapshot_dir: Path | None = None

    # Background indexer: how often it looks for fresh vectors, and how many it adds per lock hold.
    indexer_interval_s: float = 0.2
    indexer_batch_size: int = 512
    # While writes stream in, up to this many new vectors may wait in the exactly scanned fresh
    # segment; they are indexed once writes pause for indexer_defer_s.
    indexer_fresh_max: int = 50000
    indexer_defer_s: float = 1.0
    # Checkpoint an index file after this many applied changes (and on shutdown).
    checkpoint_every_changes: int = 20000
    # ... or once a collection has had no writes for this long.
    checkpoint_idle_s: float = 5.0
    # Rebuild an index in the background when this fraction of its entries are tombstones.
    compaction_threshold: float = 0.2
    # Filtered search scans exactly when at most this many records match.
    exact_filter_max_matches: int = 20000

    # Models: the built-in registry plus this TOML file's entries (docs/models.md).
    models_file: Path | None = None
    # The model that embeds text when a collection names none; empty turns text input off.
    default_embedding_model: str = "all-MiniLM-L6-v2"
    # The cross-encoder used when a request names none; empty: the registry's first one.
    default_cross_encoder: str = ""
    # Load the default model while the server starts, rather than on the first text request.
    preload_models: bool = True
    # Threads inside one model run, and model runs at once (the embedding executor's size).
    embedding_threads: int = 1
    embedding_workers: int = 2
    # Concurrent embedding requests are gathered into shared model runs (micro-batching).
    embedding_micro_batching: bool = True
    embedding_batch_window_ms: float = 2.0
    embedding_max_batch: int = 16
    embedding_max_batch_tokens: int = 8192
    # Texts waiting for the model at most; beyond it, requests answer 503 with Retry-After.
    embedding_queue_max: int = 20000
    embedding_timeout_s: float = 60.0
    # Query embeddings remembered (LRU); 0 turns the cache off.
    query_cache_entries: int = 4096
    # Embeddings of reranked documents remembered (LRU, ~2 KB each at 384-d); 0: off.
    document_cache_entries: int = 20000
    # Texts per request on the embedding routes (/v1/embeddings, /embed).
    max_embedding_inputs: int = 2048
    # Documents per document-rerank request (/v1/rerank, /v2/rerank, /rerank).
    max_rerank_documents: int = 1000

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'vecstore.db').resolve()}"

    @property
    def cors_origins(self) -> list[str]:
        """``cors_allow_origins`` as a list; empty means CORS is off."""
        return [o.strip() for o in self.cors_allow_origins.split(",") if o.strip()]

    @property
    def resolved_snapshot_dir(self) -> Path:
        return self.snapshot_dir if self.snapshot_dir is not None else self.data_dir / "snapshots"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "indexes"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``VECSTORE_*`` variables; keyword overrides win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in msgspec.structs.fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is not None and raw != "":
                values[field.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            # strict=False converts "8000" -> 8000, "true" -> True, "data" -> Path.
            return msgspec.convert(values, cls, strict=False, dec_hook=_dec_hook)
        except msgspec.ValidationError as exc:
            raise ValueError(f"invalid vecstore setting: {exc}") from exc


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Path and isinstance(obj, str | Path):
        return Path(obj)
    raise NotImplementedError(type_)
