"""The embedding routes' use case: validate inputs the way the OpenAI and TEI clients send them,
embed in one call, and shorten to ``dimensions`` (Matryoshka-style: truncate, renormalise)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vecstore.domain import Embeddings, FloatArray, ModelInfo
from vecstore.errors import BadRequest, LimitExceeded, UnknownModel
from vecstore.services.embedder import Embedder

INTEGER_INPUT_REFUSED = (
    "'input' holds token ids; this server embeds text only. Send strings (with LangChain's"
    " OpenAIEmbeddings, set check_embedding_ctx_length=False)"
)


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    texts: list[str]
    model: str | None = None
    dimensions: int | None = None
    normalize: bool = True
    # False: a text over the model's token budget is an error instead of being truncated.
    truncate: bool = True


@dataclass(frozen=True, slots=True)
class EmbeddingOutput:
    model: str
    vectors: FloatArray
    prompt_tokens: int


def texts_of(value: Any, field: str) -> list[str]:
    """A string or a non-empty list of strings; token ids (ints, lists of ints) are refused."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return list(value)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value) or all(
            isinstance(v, list) for v in value
        ):
            raise BadRequest(INTEGER_INPUT_REFUSED, type_="token_input_unsupported")
    if isinstance(value, list) and not value:
        raise BadRequest(f"'{field}' is an empty list; send at least one string")
    raise BadRequest(f"'{field}' must be a string or a list of strings")


class EmbeddingService:
    def __init__(self, embedder: Embedder, *, max_inputs: int, max_text_chars: int) -> None:
        self.embedder = embedder
        self.max_inputs = max_inputs
        self.max_text_chars = max_text_chars

    def models(self) -> list[ModelInfo]:
        return self.embedder.models()

    def model_info(self, name: str | None) -> ModelInfo:
        info = self.embedder.describe(name)
        if info is None or info.kind != "embedding":
            if name is None:
                raise BadRequest("no default embedding model is configured; name a 'model'")
            known = ", ".join(m.id for m in self.embedder.models() if m.kind == "embedding")
            raise UnknownModel(
                f"'model' '{name}' is not a known embedding model; known: {known or '(none)'}"
            )
        return info

    def embed(self, request: EmbeddingRequest, *, field: str) -> EmbeddingOutput:
        info = self.model_info(request.model)
        self._check(request.texts, field)
        native = info.dimension or 0
        if request.dimensions is not None and not 1 <= request.dimensions <= native:
            raise BadRequest(
                f"'dimensions' must be between 1 and {native} (model '{info.id}' produces"
                f" {native}), got {request.dimensions}"
            )
        out = self.embedder.embed(request.texts, info.id)
        if not request.truncate and any(out.truncated):
            i = out.truncated.index(True)
            raise BadRequest(
                f"{_name(field, i, len(request.texts))} is longer than model '{info.id}'"
                f" accepts ({info.max_tokens} tokens) and truncation is off",
                type_="input_too_long",
            )
        vectors = _shape(out, request.dimensions, request.normalize)
        return EmbeddingOutput(out.model, vectors, out.total_tokens)

    def _check(self, texts: Sequence[str], field: str) -> None:
        if not texts:
            raise BadRequest(f"'{field}' is empty; send at least one string")
        if len(texts) > self.max_inputs:
            raise LimitExceeded(
                f"'{field}' holds {len(texts)} texts; the limit is {self.max_inputs} per request"
            )
        for i, text in enumerate(texts):
            if len(text) > self.max_text_chars:
                raise LimitExceeded(
                    f"{_name(field, i, len(texts))} has {len(text)} characters;"
                    f" the limit is {self.max_text_chars}"
                )


def _name(field: str, i: int, n: int) -> str:
    return f"'{field}'" if n == 1 else f"'{field}[{i}]'"


def _shape(out: Embeddings, dimensions: int | None, normalize: bool) -> FloatArray:
    vectors = out.vectors
    if not normalize and out.norms is not None:
        vectors = vectors * out.norms[:, None]  # back to the raw pooled vectors
    if dimensions is not None and dimensions < vectors.shape[1]:
        vectors = vectors[:, :dimensions]
    if normalize and (dimensions is not None or out.norms is None or not _unit(vectors)):
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
    result: FloatArray = np.ascontiguousarray(vectors, dtype=np.float32)
    return result


def _unit(vectors: FloatArray) -> bool:
    return bool(np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4))
