"""Wire types of the hosted-API dialects (OpenAI embeddings and models, TEI embed).

These routes keep their dialect's own shapes, not the ``{"status","data"}`` envelope. Inputs
are lenient (explicit nulls, unknown fields ignored); outputs are exact.
"""

from __future__ import annotations

from typing import Any

from msgspec import UNSET, Struct, UnsetType


# -- OpenAI ------------------------------------------------------------------------------------
class OpenAIEmbeddingsIn(Struct, kw_only=True):
    # A string or a list of strings; validated by the service, which also refuses token ids.
    input: Any = None
    model: str | None = None
    encoding_format: str | None = None
    dimensions: int | None = None
    user: str | None = None


class OpenAIEmbedding(Struct, kw_only=True):
    object: str = "embedding"
    embedding: list[float] | str
    index: int


class OpenAIUsage(Struct):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingsOut(Struct, kw_only=True):
    object: str = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class OpenAIErrorDetail(Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(Struct):
    error: OpenAIErrorDetail


class ModelOut(Struct, kw_only=True):
    id: str
    object: str = "model"
    owned_by: str = "vecstore"
    kind: str
    dimension: int | None
    max_tokens: int


class ModelList(Struct, kw_only=True):
    object: str = "list"
    data: list[ModelOut]


# -- Hugging Face text-embeddings-inference ------------------------------------------------------
class TEIEmbedIn(Struct, kw_only=True):
    inputs: Any = None
    truncate: bool | None = None
    truncation_direction: str | None = None
    normalize: bool | None = None
    dimensions: int | None = None
    prompt_name: str | None = None


class TEIError(Struct):
    error: str
    error_type: str


# -- document rerank: Cohere v1 + Jina + the seed documents, Cohere v2, TEI, infinity -----------
class RerankDocsIn(Struct, kw_only=True):
    query: str | None = None
    # strings or objects with "text": validated by the service (it names the bad one)
    documents: Any = None
    model: str | None = None
    top_n: int | None = None
    return_documents: bool | None = None
    rank_fields: list[str] | None = None
    max_chunks_per_doc: int | None = None
    max_tokens_per_doc: int | None = None
    truncate: str | None = None
    method: str | None = None
    model_cross: str | None = None
    stage1_top_k: int | None = None
    batch_size: int | None = None
    raw_scores: bool | None = None
    metadata: Any = None
    user: str | None = None
    priority: Any = None
    extra_body: dict[str, Any] | None = None


class ApiVersion(Struct):
    version: str


class BilledUnits(Struct):
    search_units: int


class RerankMeta(Struct, kw_only=True):
    api_version: ApiVersion
    billed_units: BilledUnits
    method: str | UnsetType = UNSET
    deployed_model_id: str | UnsetType = UNSET
    model_cross: str | UnsetType = UNSET
    stage1_top_k: int | UnsetType = UNSET


class RerankResultOut(Struct, kw_only=True):
    index: int
    relevance_score: float
    document: dict[str, Any] | UnsetType = UNSET


class RerankUsage(Struct):
    prompt_tokens: int
    total_tokens: int


class RerankDocsOut(Struct, kw_only=True):
    id: str
    model: str
    object: str = "list"
    results: list[RerankResultOut]
    meta: RerankMeta
    usage: RerankUsage


class RerankV2Result(Struct, kw_only=True):
    index: int
    relevance_score: float


class RerankV2Out(Struct, kw_only=True):
    id: str
    results: list[RerankV2Result]
    meta: RerankMeta


class CohereError(Struct):
    message: str
    detail: str


class TEIRerankIn(Struct, kw_only=True):
    query: str | None = None
    texts: Any = None
    truncate: bool | None = None
    truncation_direction: str | None = None
    raw_scores: bool | None = None
    return_text: bool | None = None


class TEIRank(Struct, kw_only=True):
    index: int
    score: float
    text: str | UnsetType = UNSET


class InfinityRerankIn(Struct, kw_only=True):
    query: str | None = None
    documents: Any = None
    model: str | None = None
    top_n: int | None = None
    return_documents: bool | None = None
    raw_scores: bool | None = None


class InfinityResult(Struct, kw_only=True):
    relevance_score: float
    index: int
    document: str | UnsetType = UNSET


class InfinityRerankOut(Struct, kw_only=True):
    object: str = "rerank"
    results: list[InfinityResult]
    model: str
    usage: RerankUsage
    id: str
    created: int
