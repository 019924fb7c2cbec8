"""The seam for cross-encoder reranking (query, document) pairs. The document-rerank capability
fills it with ONNX sequence-pair classifiers from the model registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from vecstore.errors import ModelNotConfigured


class CrossEncoder(Protocol):
    def score(self, query: str, documents: Sequence[str], model: str | None) -> list[float]:
        """Relevance of each document to the query in [0, 1], in input order. ``model`` None:
        the default cross-encoder. Unknown model: 400; none configured: 400 naming it."""


class NoCrossEncoder:
    """No cross-encoder runs on this server: asking for one answers a 400 that says so."""

    def score(self, query: str, documents: Sequence[str], model: str | None) -> list[float]:
        wanted = f"'{model}'" if model else "a default cross-encoder"
        raise ModelNotConfigured(
            f"rerank method 'cross' needs {wanted}, and this server runs no cross-encoder"
            " model; use method 'vector' or 'hybrid'"
        )
