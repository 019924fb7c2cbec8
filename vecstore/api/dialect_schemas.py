"""Wire types of the hosted-API dialects (OpenAI embeddings and models, TEI embed).

These routes keep their dialect's own shapes, not the ``{"status","data"}`` envelope. Inputs
are lenient (explicit nulls, unknown fields ignored); outputs are exact.
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import UNSET, Struct, UnsetType

from vecstore.api.schemas import documented, documented_body

# Inputs are checked by the services, which answer 400 in the dialect's error shape: the rules
# below only document them (see ``documented``). The texts to embed: a string or a non-empty list
# of strings (token ids are refused).
_STR = {"type": "string"}
# A query of more than whitespace.
_QUERY = {"type": "string", "pattern": "\\S"}
_TEXTS = {"type": "array", "items": _STR, "minItems": 1}
_TEXT_OR_TEXTS = documented(any_of=[_STR, _TEXTS])
# Documents to rank: strings, or objects with 'text' (with 'rank_fields', those keys instead).
_DOCUMENT = {"anyOf": [_STR, {"type": "object", "required": ["text"]}]}
_DOCUMENTS = {"type": "array", "items": _DOCUMENT, "minItems": 1}
_RIGHT = documented(enum=["right", "Right", None], description="texts are cut at the end")


# -- OpenAI ------------------------------------------------------------------------------------
class OpenAIEmbeddingsIn(Struct, kw_only=True):
    # A string or a list of strings; validated by the service, which also refuses token ids.
    input: Annotated[Any, _TEXT_OR_TEXTS] = None
    model: str | None = None
    encoding_format: Annotated[str, documented(enum=["float", "base64", None])] | None = None
    dimensions: Annotated[int, documented(minimum=1)] | None = None
    user: str | None = None


OPENAI_EMBEDDINGS_BODY = documented_body(all_of=[{"required": ["input"]}])


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
    inputs: Annotated[Any, _TEXT_OR_TEXTS] = None
    truncate: bool | None = None
    truncation_direction: Annotated[str, _RIGHT] | None = None
    normalize: bool | None = None
    dimensions: Annotated[int, documented(minimum=1)] | None = None
    prompt_name: str | None = None


TEI_EMBED_BODY = documented_body(all_of=[{"required": ["inputs"]}])


class TEIError(Struct):
    error: str
    error_type: str


# -- document rerank: Cohere v1 + Jina + the seed documents, Cohere v2, TEI, infinity -----------
class RerankDocsIn(Struct, kw_only=True):
    query: Annotated[str, documented(pattern=_QUERY["pattern"])] | None = None
    # strings or objects with "text": validated by the service (it names the bad one)
    documents: Annotated[Any, documented(any_of=[_DOCUMENTS, {"type": "null"}])] = None
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


def _given(field: str, schema: dict[str, Any]) -> dict[str, Any]:
    """``field`` at the top level, or in ``extra_body`` (which fills the fields the body left
    out, as OpenAI-style SDKs send extensions)."""
    return {
        "anyOf": [
            {"properties": {field: schema}, "required": [field]},
            {
                "properties": {
                    "extra_body": {
                        "type": "object",
                        "properties": {field: schema},
                        "required": [field],
                    }
                },
                "required": ["extra_body"],
            },
        ]
    }


RERANK_DOCS_BODY = documented_body(
    all_of=[_given("query", _QUERY), _given("documents", _DOCUMENTS)]
)


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


_TEI_RERANK = {
    "title": "TEI",
    "properties": {
        "query": _QUERY,
        "texts": _TEXTS,
        "truncation_direction": {"enum": ["right", "Right", None]},
    },
    "required": ["query", "texts"],
}
_INFINITY_RERANK = {
    "title": "infinity",
    "properties": {"query": _QUERY, "documents": _DOCUMENTS},
    "required": ["query", "documents"],
    "not": {"required": ["texts"]},
}
# POST /rerank is TEI when the body has 'texts', infinity when it has 'documents' (and no 'texts').
TEI_OR_INFINITY_RERANK_BODY = documented_body(
    any_of=[_TEI_RERANK, _INFINITY_RERANK],
    description="TEI: 'query' and 'texts'; infinity: 'query' and 'documents'",
)


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
