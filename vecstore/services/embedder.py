"""The seam for server-side text embedding. The ONNX implementation is ``inference.host``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from vecstore.domain import Embeddings, ModelInfo
from vecstore.errors import EmbeddingUnavailable


class Embedder(Protocol):
    @property
    def default_model(self) -> str | None:
        """Id of the model used when neither the collection nor the request names one."""

    def models(self) -> list[ModelInfo]:
        """Every registered model (embedders and cross-encoders)."""

    def describe(self, model: str | None) -> ModelInfo | None:
        """The named model (id or alias; None: the default), or None when there is none."""

    def embed(self, texts: Sequence[str], model: str | None, *, query: bool = False) -> Embeddings:
        """One row per text, in order. ``query`` marks search queries: they are cached and
        go ahead of bulk document embedding. Unknown model: 400; broken model: 503."""


class NoEmbedder:
    """No embedding models at all: text input answers a clear 400."""

    default_model: str | None = None

    def models(self) -> list[ModelInfo]:
        return []

    def describe(self, model: str | None) -> ModelInfo | None:
        return None

    def embed(self, texts: Sequence[str], model: str | None, *, query: bool = False) -> Embeddings:
        raise EmbeddingUnavailable(
            "text input needs a server-side embedding model, and none is configured;"
            " send 'vector' instead"
        )
