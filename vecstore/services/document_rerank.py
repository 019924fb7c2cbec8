"""Document rerank (``/v1/rerank`` and its dialects): score texts against a query by one of four
methods, long documents in chunks. No collection is involved: the documents come in the request.

- ``fast``: bi-encoder cosine with the embedding model (a long document's best chunk), mapped to
  [0, 1] as (cos + 1) / 2.
- ``standard``: the cross-encoder on every document (its best chunk), sigmoid of the logit.
- ``optimal``: the bi-encoder keeps the best ``stage1_top_k``; the cross-encoder reorders them.
- ``best``: stage one fuses the bi-encoder with BM25 and keeps ``stage1_top_k``; those are scored
  0.6 * cross-encoder + 0.25 * bi-encoder + 0.15 * BM25 (min-max over the request) — without a
  cross-encoder, 0.75 * bi-encoder + 0.25 * BM25.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vecstore.errors import BadRequest, LimitExceeded, ModelNotConfigured, UnknownModel
from vecstore.services.cross_encoder import CrossEncoder
from vecstore.services.embedder import Embedder
from vecstore.services.fusion import minmax
from vecstore.storage.text_index import score_texts

METHODS = ("fast", "standard", "optimal", "best")
TRUNCATE = ("none", "start", "end")
BEST_WEIGHTS = (0.6, 0.25, 0.15)  # cross-encoder, bi-encoder, BM25
BEST_WEIGHTS_NO_CROSS = (0.75, 0.25)  # bi-encoder, BM25


@dataclass(frozen=True, slots=True)
class DocumentRerank:
    query: str
    documents: list[str]
    model: str | None = None
    method: str | None = None
    model_cross: str | None = None
    top_n: int | None = None
    stage1_top_k: int = 100
    max_tokens_per_doc: int | None = None
    max_chunks_per_doc: int = 10
    truncate: str = "end"
    raw_scores: bool = False


@dataclass(frozen=True, slots=True)
class Ranked:
    index: int
    score: float


@dataclass(frozen=True, slots=True)
class DocumentRerankResult:
    ranked: list[Ranked]
    model: str  # the model that produced the scores (the cross-encoder where one ran)
    method: str
    model_cross: str | None
    stage1_top_k: int | None
    tokens: int
    total_ms: float


class DocumentRerankService:
    def __init__(
        self,
        embedder: Embedder,
        cross_encoder: CrossEncoder,
        *,
        max_documents: int,
        max_text_chars: int,
    ) -> None:
        self.embedder = embedder
        self.cross_encoder = cross_encoder
        self.max_documents = max_documents
        self.max_text_chars = max_text_chars

    def rerank(self, request: DocumentRerank) -> DocumentRerankResult:
        started = time.perf_counter()
        self._check(request)
        bi_model, cross_model = self._models(request)
        method = request.method or ("standard" if cross_model is not None else "fast")
        if method not in METHODS:
            raise BadRequest(f"'method' must be one of {', '.join(METHODS)}, got '{method}'")
        if method in ("standard", "optimal") and cross_model is None:
            raise ModelNotConfigured(
                f"method '{method}' needs a cross-encoder ('model_cross'), and none is"
                " configured: register one with kind = \"cross-encoder\", or use 'fast' or 'best'"
            )
        if method in ("fast", "optimal", "best") and bi_model is None:
            raise ModelNotConfigured(
                f"method '{method}' needs an embedding model ('model'), and none is configured"
            )
        docs = request.documents
        tokens = 0
        keep = np.arange(len(docs))
        if method == "standard":
            scores, cross_tokens, model_used = self._cross(request, cross_model, keep)
            tokens += cross_tokens
        else:
            bi, bi_tokens = self._bi(request, bi_model)
            tokens += bi_tokens
            fast = (bi + 1.0) / 2.0  # cosine in [-1, 1] to [0, 1]
            if method == "fast":
                scores = bi if request.raw_scores else fast
                model_used = str(bi_model)
            elif method == "optimal":
                keep = _top(fast, request.stage1_top_k)
                scores, cross_tokens, model_used = self._cross(request, cross_model, keep)
                tokens += cross_tokens
            else:
                lexical = minmax(np.asarray(score_texts(request.query, docs)), constant=0.0)
                stage1 = BEST_WEIGHTS_NO_CROSS[0] * fast + BEST_WEIGHTS_NO_CROSS[1] * lexical
                keep = _top(stage1, request.stage1_top_k)
                if cross_model is None:
                    scores, model_used = stage1[keep], str(bi_model)
                else:
                    relevance, cross_tokens, model_used = self._cross(
                        request, cross_model, keep, raw=False
                    )
                    tokens += cross_tokens
                    w_cross, w_bi, w_lex = BEST_WEIGHTS
                    scores = w_cross * relevance + w_bi * fast[keep] + w_lex * lexical[keep]
        ranked = _ranked(keep, np.asarray(scores, dtype=np.float64), request.top_n)
        return DocumentRerankResult(
            ranked=ranked,
            model=model_used,
            method=method,
            model_cross=cross_model if method != "fast" else None,
            stage1_top_k=request.stage1_top_k if method in ("optimal", "best") else None,
            tokens=tokens,
            total_ms=(time.perf_counter() - started) * 1000,
        )

    # -- pieces ---------------------------------------------------------------------------------
    def _check(self, request: DocumentRerank) -> None:
        if not request.query.strip():
            raise BadRequest("'query' must not be empty")
        if not request.documents:
            raise BadRequest("'documents' is empty; send 1 to 1000 documents")
        if len(request.documents) > self.max_documents:
            raise LimitExceeded(
                f"'documents' holds {len(request.documents)} documents; the limit is"
                f" {self.max_documents} per request"
            )
        for name, text in (("query", request.query), *_named(request.documents)):
            if len(text) > self.max_text_chars:
                raise LimitExceeded(
                    f"'{name}' has {len(text)} characters; the limit is {self.max_text_chars}"
                )
        if request.top_n is not None and request.top_n < 1:
            raise BadRequest("'top_n' must be 1 or more")
        if request.stage1_top_k < 1:
            raise BadRequest("'stage1_top_k' must be 1 or more")
        if request.max_chunks_per_doc < 1:
            raise BadRequest("'max_chunks_per_doc' must be 1 or more")
        if request.max_tokens_per_doc is not None and request.max_tokens_per_doc < 1:
            raise BadRequest("'max_tokens_per_doc' must be 1 or more")
        if request.truncate not in TRUNCATE:
            raise BadRequest(
                f"'truncate' must be one of {', '.join(TRUNCATE)}, got '{request.truncate}'"
            )

    def _models(self, request: DocumentRerank) -> tuple[str | None, str | None]:
        """(embedding model, cross-encoder) for this request. ``model`` may name either kind:
        clients of hosted APIs send their reranker's name, which may alias a local model."""
        bi = self.embedder.describe(None)
        cross: str | None = request.model_cross
        if request.model is not None:
            named = self.embedder.describe(request.model)
            if named is None:
                known = ", ".join(m.id for m in self.embedder.models())
                raise UnknownModel(
                    f"'model' '{request.model}' is not a known model; known: {known or '(none)'}"
                    " (see GET /v1/models)"
                )
            if named.kind == "cross-encoder":
                if cross is None:
                    cross = named.id
            else:
                bi = named
        if cross is not None:
            found = self.embedder.describe(cross)
            if found is None or found.kind != "cross-encoder":
                known = ", ".join(m.id for m in self.embedder.models() if m.kind == "cross-encoder")
                raise UnknownModel(
                    f"'model_cross' '{cross}' is not a known cross-encoder;"
                    f" known: {known or '(none)'}"
                )
            cross = found.id
        else:
            cross = self.cross_encoder.default_cross_encoder
        return (bi.id if bi is not None else None), cross

    def _bi(self, request: DocumentRerank, model: str | None) -> tuple[np.ndarray, int]:
        """Each document's cosine to the query: its best chunk's."""
        query = self.embedder.embed([request.query], model, query=True)
        docs = self.embedder.embed_documents(
            request.documents,
            model,
            max_doc_tokens=request.max_tokens_per_doc,
            max_chunks=request.max_chunks_per_doc,
            keep=request.truncate,
        )
        per_chunk = docs.vectors.astype(np.float64) @ query.vectors[0].astype(np.float64)
        cosine = np.full(len(request.documents), -1.0)
        np.maximum.at(cosine, np.asarray(docs.owner, dtype=np.int64), per_chunk)
        return np.clip(cosine, -1.0, 1.0), query.total_tokens + docs.tokens

    def _cross(
        self,
        request: DocumentRerank,
        model: str | None,
        keep: np.ndarray,
        *,
        raw: bool | None = None,
    ) -> tuple[np.ndarray, int, str]:
        out = self.cross_encoder.score_documents(
            request.query,
            [request.documents[i] for i in keep.tolist()],
            model,
            max_doc_tokens=request.max_tokens_per_doc,
            max_chunks=request.max_chunks_per_doc,
            keep=request.truncate,
        )
        logits = np.asarray(out.logits, dtype=np.float64)
        as_raw = request.raw_scores if raw is None else raw
        scores = logits if as_raw else 1.0 / (1.0 + np.exp(-logits))
        return scores, out.tokens, out.model


def _named(documents: Sequence[str]) -> list[tuple[str, str]]:
    return [(f"documents[{i}]", d) for i, d in enumerate(documents)]


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the best ``k`` scores (ties: the earlier document)."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    return np.sort(order[:k])


def _ranked(positions: np.ndarray, scores: np.ndarray, top_n: int | None) -> list[Ranked]:
    order = np.lexsort((positions, -scores))
    if top_n is not None:
        order = order[:top_n]
    return [
        Ranked(int(positions[j]), float(scores[j]) if math.isfinite(scores[j]) else 0.0)
        for j in order.tolist()
    ]


def document_texts(documents: object, rank_fields: Sequence[str] | None) -> list[str]:
    """The text to score of each document: a string as it is; an object's ``text`` (or, with
    ``rank_fields``, those keys as "key: value" lines). Names the first bad document."""
    if not isinstance(documents, list):
        raise BadRequest("'documents' must be a list of strings or objects with 'text'")
    fields = list(rank_fields) if rank_fields else ["text"]
    out: list[str] = []
    for i, doc in enumerate(documents):
        if isinstance(doc, str):
            out.append(doc)
            continue
        if not isinstance(doc, dict):
            raise BadRequest(f"documents[{i}] must be a string or an object with 'text'")
        missing = [f for f in fields if f not in doc]
        if missing:
            raise BadRequest(
                f"documents[{i}] has no {', '.join(repr(f) for f in missing)}"
                f" (the fields it is ranked on: {', '.join(fields)})"
            )
        values = [doc[f] if isinstance(doc[f], str) else str(doc[f]) for f in fields]
        out.append(
            values[0]
            if fields == ["text"]
            else "\n".join(f"{f}: {v}" for f, v in zip(fields, values, strict=True))
        )
    return out
