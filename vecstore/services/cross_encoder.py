"""The seam for cross-encoder reranking (query, document) pairs. The document-rerank capability
fills it with ONNX sequence-pair classifiers from the model registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from vecstore.domain import CrossScores
from vecstore.errors import ModelNotConfigured


class CrossEncoder(Protocol):
    @property
    def default_cross_encoder(self) -> str | None:
        """Id of the cross-encoder used when a request names none (None: there is none)."""

    def score(self, query: str, documents: Sequence[str], model: str | None) -> list[float]:
        """Relevance of each document to the query in [0, 1], in input order. ``model`` None:
        the default cross-encoder. Unknown model: 400; none configured: 400 naming it."""

    def score_documents(
        self,
        query: str,
        documents: Sequence[str],
        model: str | None,
        *,
        max_doc_tokens: int | None = None,
        max_chunks: int = 10,
        keep: str = "end",
    ) -> CrossScores:
        """Each document's best chunk's logit; ``keep`` is "end" (cut the end of a document
        of too many chunks), "start", or "none" (refuse it with a 400)."""


class NoCrossEncoder:
    """No cross-encoder runs on this server: asking for one answers a 400 that says so."""

    default_cross_encoder: str | None = None

    def score(self, query: str, documents: Sequence[str], model: str | None) -> list[float]:
        raise self._missing(model)

    def score_documents(
        self,
        query: str,
        documents: Sequence[str],
        model: str | None,
        *,
        max_doc_tokens: int | None = None,
        max_chunks: int = 10,
        keep: str = "end",
    ) -> CrossScores:
        raise self._missing(model)

    @staticmethod
    def _missing(model: str | None) -> ModelNotConfigured:
        wanted = f"'{model}'" if model else "a cross-encoder"
        return ModelNotConfigured(
            f"this needs {wanted}, and this server runs no cross-encoder model"
        )
