"""Wire types of the hosted-API dialects (OpenAI embeddings and models, TEI embed).

These routes keep their dialect's own shapes, not the ``{"status","data"}`` envelope. Inputs
are lenient (explicit nulls, unknown fields ignored); outputs are exact.
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct


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
