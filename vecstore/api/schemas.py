"""Wire types (msgspec Structs), kept apart from the domain types they are mapped to."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from msgspec import UNSET, Struct, UnsetType

T = TypeVar("T")
Json = dict[str, Any]


class Success(Struct, Generic[T], kw_only=True):
    status: Literal["success"] = "success"
    data: T


class ErrorBody(Struct):
    code: int
    type: str
    message: str
    request_id: str | UnsetType = UNSET


class ErrorEnvelope(Struct, kw_only=True):
    status: Literal["error"] = "error"
    error: ErrorBody


# -- timing ------------------------------------------------------------------------------------
class ReadTiming(Struct):
    embedding_ms: float
    search_ms: float
    total_ms: float


class WriteTiming(Struct):
    embedding_ms: float
    storage_ms: float
    total_ms: float


# -- collections -------------------------------------------------------------------------------
class IndexConfigIn(Struct, kw_only=True):
    type: str = "hnsw"
    m: int | None = None
    ef_construction: int | None = None
    ef_search: int | None = None
    rescore_factor: int | None = None
    nlist: int | None = None
    nprobe: int | None = None
    pq_m: int | None = None


class CreateCollectionIn(Struct, kw_only=True):
    name: str
    dim: int
    distance_metric: str = "cosine"
    description: str | None = None
    index: IndexConfigIn | None = None
    embedding_model: str | None = None


class PatchIndexIn(Struct, kw_only=True):
    ef_search: int | None = None
    nprobe: int | None = None


class PatchCollectionIn(Struct, kw_only=True):
    description: str | UnsetType | None = UNSET
    index: PatchIndexIn | None = None


class CollectionOut(Struct):
    name: str
    dim: int
    distance_metric: str
    description: str | None
    index: Json
    embedding_model: str | None
    vector_count: int
    created_at: str
    updated_at: str


class CollectionList(Struct):
    collections: list[CollectionOut]


class Deleted(Struct):
    name: str
    status: str = "deleted"


# -- records -----------------------------------------------------------------------------------
class UpsertIn(Struct, kw_only=True):
    external_id: str
    # A float list, or (faster to send and parse) standard base64 of little-endian float32.
    vector: list[float] | str | None = None
    text: str | None = None
    metadata: Json | UnsetType | None = UNSET
    content: str | UnsetType | None = UNSET
    include_timing: bool = False


class UpsertOut(Struct):
    external_id: str
    status: str
    timing_ms: WriteTiming | UnsetType = UNSET
    # Sentences about what the server did that the caller may not expect (truncated text).
    warnings: list[str] | UnsetType = UNSET


class BulkUpsertIn(Struct, kw_only=True):
    items: list[UpsertIn]
    include_timing: bool = False


class UpsertStatus(Struct):
    external_id: str
    status: str


class BulkUpsertOut(Struct):
    results: list[UpsertStatus]
    inserted: int
    updated: int
    timing_ms: WriteTiming | UnsetType = UNSET
    # Sentences about what the server did that the caller may not expect (truncated text).
    warnings: list[str] | UnsetType = UNSET


class RecordOut(Struct):
    external_id: str
    metadata: Json
    content: str | None
    vector: list[float] | UnsetType = UNSET


class FetchIn(Struct, kw_only=True):
    ids: list[str]
    include_vectors: bool = True


class FetchOut(Struct):
    vectors: list[RecordOut]
    not_found: list[str]


class RecordDeleted(Struct):
    external_id: str
    status: str = "deleted"


class DeleteBatchIn(Struct, kw_only=True):
    external_ids: list[str]


class DeleteBatchOut(Struct):
    deleted: list[str]
    not_found: list[str]
    deleted_count: int


class DeleteByFilterIn(Struct, kw_only=True):
    filters: Json


class DeletedCount(Struct):
    deleted_count: int


class ScrollIn(Struct, kw_only=True):
    cursor: str | None = None
    limit: int = 100
    filters: Json | None = None
    include_vectors: bool = False


class ScrollOut(Struct):
    vectors: list[RecordOut]
    next_cursor: str | None


class CountIn(Struct, kw_only=True):
    filters: Json | None = None


class CountOut(Struct):
    count: int


class ImportOut(Struct):
    inserted: int
    updated: int


# -- search ------------------------------------------------------------------------------------
class HitOut(Struct):
    external_id: str
    score: float
    metadata: Json
    content: str | UnsetType | None = UNSET
    vector: list[float] | UnsetType = UNSET
    distance: float | UnsetType = UNSET


class SearchIn(Struct, kw_only=True):
    vector: list[float] | None = None
    text: str | None = None
    k: int = 10
    offset: int = 0
    filters: Json | None = None
    score_threshold: float | None = None
    include_vectors: bool = False
    include_content: bool = False
    exact: bool = False
    ef_search: int | None = None
    nprobe: int | None = None
    include_timing: bool = False
    include_count: bool = False


class SearchOut(Struct):
    results: list[HitOut]
    k: int
    offset: int
    total_count: int | UnsetType = UNSET
    timing_ms: ReadTiming | UnsetType = UNSET
    # Sentences about what the server did that the caller may not expect (truncated text).
    warnings: list[str] | UnsetType = UNSET


class BulkSearchQuery(Struct, kw_only=True):
    vector: list[float] | None = None
    text: str | None = None
    k: int = 10
    filters: Json | None = None


class BulkSearchIn(Struct, kw_only=True):
    queries: list[BulkSearchQuery]
    include_timing: bool = False


class BulkSearchOut(Struct):
    results: list[list[HitOut]]
    timing_ms: ReadTiming | UnsetType = UNSET
    # Sentences about what the server did that the caller may not expect (truncated text).
    warnings: list[str] | UnsetType = UNSET


class RecommendIn(Struct, kw_only=True):
    k: int | None = None
    filters: Json | None = None
    exclude_self: bool = True
    include_timing: bool = False


class ResultsOut(Struct):
    results: list[HitOut]
    timing_ms: ReadTiming | UnsetType = UNSET


class SimilarityIn(Struct, kw_only=True):
    id1: str | None = None
    id2: str | None = None


class SimilarityOut(Struct):
    score: float
    id1: str
    id2: str


class RerankIn(Struct, kw_only=True):
    candidates: list[str]
    vector: list[float] | None = None
    text: str | None = None
    top_k: int | None = None
    score_threshold: float | None = None
    include_vectors: bool = False
    include_timing: bool = False


class RerankOut(Struct):
    results: list[HitOut]  # content is never set on rerank results
    not_found: list[str]
    timing_ms: ReadTiming | UnsetType = UNSET
    # Sentences about what the server did that the caller may not expect (truncated text).
    warnings: list[str] | UnsetType = UNSET


class HybridSearchIn(Struct, kw_only=True):
    query_text: str
    vector: list[float] | None = None
    k: int = 10
    offset: int = 0
    alpha: float = 0.5
    fusion: str = "weighted"
    filters: Json | None = None
    include_vectors: bool = False
    include_content: bool = False
    include_timing: bool = False


class FusedHitOut(HitOut):
    vector_score: float | UnsetType = UNSET
    text_score: float | UnsetType = UNSET
    retrieval_score: float | UnsetType = UNSET
    rerank_score: float | UnsetType = UNSET


class HybridSearchOut(Struct):
    results: list[FusedHitOut]
    k: int
    offset: int
    timing_ms: ReadTiming | UnsetType = UNSET
    warnings: list[str] | UnsetType = UNSET


class RerankStageIn(Struct, kw_only=True):
    method: str = "vector"
    model: str | None = None
    # Weight of the vector score in the 'hybrid' method (the rest is BM25).
    alpha: float = 0.5


class QueryIn(Struct, kw_only=True):
    vector: list[float] | None = None
    text: str | None = None
    k: int = 50
    top_n: int = 10
    filters: Json | None = None
    rerank: RerankStageIn | None = None
    include_vectors: bool = False
    include_content: bool = False
    include_timing: bool = False


class QueryTiming(Struct):
    embedding_ms: float
    search_ms: float
    rerank_ms: float
    total_ms: float


class QueryOut(Struct):
    results: list[FusedHitOut]
    timing_ms: QueryTiming | UnsetType = UNSET
    warnings: list[str] | UnsetType = UNSET


# -- keys --------------------------------------------------------------------------------------
class CreateKeyIn(Struct, kw_only=True):
    name: str
    role: str
    collections: list[str] | None = None
    expires_in_days: int | None = None
    rate_limit_per_minute: int | None = None


class PatchKeyIn(Struct, kw_only=True):
    name: str | UnsetType = UNSET
    role: str | UnsetType = UNSET
    is_active: bool | UnsetType = UNSET
    collections: list[str] | UnsetType | None = UNSET
    rate_limit_per_minute: int | UnsetType | None = UNSET


class KeyOut(Struct):
    id: str
    name: str
    role: str
    collections: list[str] | None
    is_active: bool
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    prefix: str
    rate_limit_per_minute: int | None
    key: str | UnsetType = UNSET


class KeyList(Struct):
    keys: list[KeyOut]


class KeyDeleted(Struct):
    id: str
    deleted: bool = True


class KeyUsageOut(Struct):
    total_requests: int
    last_24h: int
    last_7d: int
    by_route: dict[str, int]
    last_request_at: str | None


# -- operations --------------------------------------------------------------------------------
class HealthCollection(Struct):
    name: str
    dim: int
    distance_metric: str
    vector_count: int
    index_type: str
    index_vectors: int
    deleted_fraction: float


class HealthModel(Struct):
    id: str
    # "loaded", "not loaded" (loads on first use), or why it is unavailable
    status: str


class HealthOut(Struct):
    status: str
    version: str
    uptime_seconds: float
    collections: list[HealthCollection]
    total_vectors: int
    models: list[HealthModel]


# -- snapshots ---------------------------------------------------------------------------------
class SnapshotCollectionOut(Struct):
    name: str
    dim: int
    vector_count: int


class SnapshotOut(Struct):
    id: str
    created_at: str
    size_bytes: int
    files: int
    vecstore_version: str
    schema_revision: str | None
    collections: list[SnapshotCollectionOut]


class SnapshotList(Struct):
    snapshots: list[SnapshotOut]


class SnapshotDeleted(Struct):
    id: str
    deleted: bool = True


class SnapshotVerified(Struct):
    id: str
    verified: bool
    files: int
    size_bytes: int


class RestoreOut(Struct):
    restored: SnapshotOut
    # The directory (inside the data directory) that holds the data the restore replaced.
    previous_data: str
