"""The seam for server-side text embedding. The ONNX implementation is ``inference.host``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from vecstore.domain import ChunkedEmbeddings, Embeddings, ModelInfo
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

    def embed_documents(
        self,
        documents: Sequence[str],
        model: str | None,
        *,
        max_doc_tokens: int | None = None,
        max_chunks: int = 10,
        keep: str = "end",
    ) -> ChunkedEmbeddings:
        """Documents to score against a query, not to store: a long one becomes several chunks
        (rows), each of at most ``max_doc_tokens`` and what the model takes whole; ``keep`` as
        for the cross-encoder ("end", "start", or "none": a 400 for too many chunks). Cached."""


class NoEmbedder:
    """No embedding models at all: text input answers a clear 400."""

    default_model: str | None = None

    def models(self) -> list[ModelInfo]:
        return []

    def describe(self, model: str | None) -> ModelInfo | None:
        return None

    def embed(self, texts: Sequence[str], model: str | None, *, query: bool = False) -> Embeddings:
        raise self._missing()

    def embed_documents(
        self,
        documents: Sequence[str],
        model: str | None,
        *,
        max_doc_tokens: int | None = None,
        max_chunks: int = 10,
        keep: str = "end",
    ) -> ChunkedEmbeddings:
        raise self._missing()

    @staticmethod
    def _missing() -> EmbeddingUnavailable:
        return EmbeddingUnavailable(
            "text input needs a server-side embedding model, and none is configured;"
            " send 'vector' instead"
        )
