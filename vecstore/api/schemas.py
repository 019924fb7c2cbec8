"""Wire types (msgspec Structs), kept apart from the domain types they are mapped to."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from litestar.enums import RequestEncodingType
from litestar.params import Body
from msgspec import UNSET, Meta, Struct, UnsetType

from vecstore.domain import INDEX_TYPES, METRICS
from vecstore.services.collections import INDEX_PARAM_RANGES, NAME_RE
from vecstore.services.keys import MAX_SCOPES, ROLES

T = TypeVar("T")
Json = dict[str, Any]


def documented(**schema: Any) -> Meta:
    """Declares in the OpenAPI schema a rule the service checks itself (Litestar copies
    ``extra_json_schema["extra"]`` into the field's schema; keys are its ``Schema`` attribute
    names). The decoder does not enforce it, so a breach keeps the service's own 400 and error
    type (``invalid_name``, ``bad_request``) instead of the decoder's 422."""
    return Meta(extra_json_schema={"extra": schema})


def documented_body(**schema: Any) -> Any:
    """The same for a whole JSON body (``Annotated[Struct, documented_body(...)]``): object-level
    rules such as "one of these fields is required", added to the body's schema (use
    ``all_of``/``any_of``, never ``required``: that would replace the Struct's own list)."""
    return Body(media_type=RequestEncodingType.JSON, schema_extra=schema)


_NULL = {"type": "null"}
# k, limit: at least 1 (and at most max_k, a server setting)
_AT_LEAST_1 = documented(minimum=1)
# IVF parameters: accepted by the wire type for forward compatibility, but this version builds no
# IVF index, so the service refuses any value but null.
_IVF_ONLY = documented(
    enum=[None], description="IVF indexes only, which this version does not build: send null"
)


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
def _hnsw(key: str) -> Meta:
    low, high = INDEX_PARAM_RANGES[key]
    return documented(minimum=low, maximum=high)


class IndexConfigIn(Struct, kw_only=True):
    type: Annotated[str, documented(enum=list(INDEX_TYPES))] = "hnsw"
    m: Annotated[int, _hnsw("m")] | None = None
    ef_construction: Annotated[int, _hnsw("ef_construction")] | None = None
    ef_search: Annotated[int, _hnsw("ef_search")] | None = None
    rescore_factor: Annotated[int, _hnsw("rescore_factor")] | None = None
    nlist: Annotated[int, _IVF_ONLY] | None = None
    nprobe: Annotated[int, _IVF_ONLY] | None = None
    pq_m: Annotated[int, _IVF_ONLY] | None = None


# Which parameters each index type takes (the service refuses the others): 'flat' none,
# 'rescore_factor' only 'hnsw_sq8'; a missing type is 'hnsw'.
_HNSW_PARAMS = ("m", "ef_construction", "ef_search")
_INDEX_BY_TYPE = documented(
    any_of=[
        _NULL,
        {"properties": {"type": {"const": "hnsw"}, "rescore_factor": _NULL}},
        {"properties": {"type": {"const": "hnsw_sq8"}}, "required": ["type"]},
        {
            "properties": {"type": {"const": "flat"}}
            | {k: _NULL for k in (*_HNSW_PARAMS, "rescore_factor")},
            "required": ["type"],
        },
    ]
)


class CreateCollectionIn(Struct, kw_only=True):
    name: Annotated[str, documented(pattern=NAME_RE.pattern)]
    # at most max_dim (a server setting)
    dim: Annotated[int, documented(minimum=1)]
    distance_metric: Annotated[str, documented(enum=list(METRICS))] = "cosine"
    description: str | None = None
    index: Annotated[IndexConfigIn, _INDEX_BY_TYPE] | None = None
    embedding_model: str | None = None


class PatchIndexIn(Struct, kw_only=True):
    ef_search: Annotated[int, _hnsw("ef_search")] | None = None
    nprobe: Annotated[int, _IVF_ONLY] | None = None


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
    # 1 to max_external_id_bytes bytes of UTF-8
    external_id: Annotated[str, documented(min_length=1)]
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
    items: Annotated[list[UpsertIn], documented(min_items=1)]
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
    # Never empty: dropping every record is a collection delete.
    filters: Annotated[Json, documented(min_properties=1)]


class DeletedCount(Struct):
    deleted_count: int


class ScrollIn(Struct, kw_only=True):
    cursor: str | None = None
    limit: Annotated[int, _AT_LEAST_1] = 100
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
    vector: list[float] | str | None = None
    text: str | None = None
    k: Annotated[int, _AT_LEAST_1] = 10
    offset: Annotated[int, documented(minimum=0)] = 0
    filters: Json | None = None
    score_threshold: float | None = None
    include_vectors: bool = False
    include_content: bool = False
    exact: bool = False
    ef_search: int | None = None
    nprobe: Annotated[int, _IVF_ONLY] | None = None
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
    vector: list[float] | str | None = None
    text: str | None = None
    k: Annotated[int, _AT_LEAST_1] = 10
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
    k: Annotated[int, _AT_LEAST_1] | None = None
    filters: Json | None = None
    exclude_self: bool = True
    include_timing: bool = False


class ResultsOut(Struct):
    results: list[HitOut]
    timing_ms: ReadTiming | UnsetType = UNSET


class SimilarityIn(Struct, kw_only=True):
    # Each id falls back to the query string's (kept for older clients) when left out here.
    id1: Annotated[str, documented(min_length=1)] | None = None
    id2: Annotated[str, documented(min_length=1)] | None = None


# The schema documents the body form: both ids in an object (the query-string form is
# deprecated, and OpenAPI cannot say "in the body or else in the query").
SIMILARITY_BODY = documented_body(
    type="object",
    all_of=[
        {
            "properties": {"id1": {"type": "string"}, "id2": {"type": "string"}},
            "required": ["id1", "id2"],
        }
    ],
    description="'id1' and 'id2' in the body; the deprecated query parameters fill in either",
)


class SimilarityOut(Struct):
    score: float
    id1: str
    id2: str


class RerankIn(Struct, kw_only=True):
    candidates: list[str]
    vector: list[float] | str | None = None
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
    vector: list[float] | str | None = None
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
    vector: list[float] | str | None = None
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
# KeyService checks these: names and scope patterns of 1 to 200 characters.
_KEY_NAME = documented(min_length=1, max_length=200)
_KEY_ROLE = documented(enum=list(ROLES))
_KEY_SCOPES = documented(
    max_items=MAX_SCOPES, items={"type": "string", "minLength": 1, "maxLength": 200}
)
_RATE_LIMIT = documented(minimum=1, description="requests per minute; null: no limit")


class CreateKeyIn(Struct, kw_only=True):
    name: Annotated[str, _KEY_NAME]
    role: Annotated[str, _KEY_ROLE]
    collections: Annotated[list[str], _KEY_SCOPES] | None = None
    expires_in_days: Annotated[int, documented(minimum=1, maximum=36500)] | None = None
    rate_limit_per_minute: Annotated[int, _RATE_LIMIT] | None = None


class PatchKeyIn(Struct, kw_only=True):
    name: Annotated[str, _KEY_NAME] | UnsetType = UNSET
    role: Annotated[str, _KEY_ROLE] | UnsetType = UNSET
    is_active: bool | UnsetType = UNSET
    collections: Annotated[list[str], _KEY_SCOPES] | UnsetType | None = UNSET
    rate_limit_per_minute: Annotated[int, _RATE_LIMIT] | UnsetType | None = UNSET


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
