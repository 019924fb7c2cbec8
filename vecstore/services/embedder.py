"""The seam for server-side text embedding. The ONNX implementation lives in ``inference``."""

from __future__ import annotations

from typing import Protocol

from vecstore.domain import FloatArray
from vecstore.errors import EmbeddingUnavailable


class Embedder(Protocol):
    def dimension_of(self, model: str | None) -> int | None:
        """The model's output dimension, or None when the model is unknown."""

    def embed(self, texts: list[str], model: str | None) -> FloatArray:
        """One row per text, in order."""


class NoEmbedder:
    """Used until an embedding model is configured: text input answers a clear 400."""

    def dimension_of(self, model: str | None) -> int | None:
        return None

    def embed(self, texts: list[str], model: str | None) -> FloatArray:
        raise EmbeddingUnavailable(
            "text input needs a server-side embedding model, and none is configured; "
            "send 'vector' instead"
        )
