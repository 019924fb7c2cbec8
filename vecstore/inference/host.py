"""The models one server runs: loaded on first use (the default one at start), each behind its
micro-batcher, with a cache of query embeddings. Implements the services' ``Embedder`` and
``CrossEncoder`` seams."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vecstore.domain import ChunkedEmbeddings, CrossScores, Embeddings, FloatArray, ModelInfo
from vecstore.errors import EmbeddingUnavailable, ModelNotConfigured, ModelUnavailable
from vecstore.inference.batcher import BatchPolicy, DirectRunner, MicroBatcher, RunFn
from vecstore.inference.embedding_cache import CachedEmbedding, EmbeddingCache
from vecstore.inference.onnx_cross_encoder import OnnxCrossEncoder, logits_to_scores
from vecstore.inference.onnx_embedder import OnnxEmbeddingModel, Tokenized
from vecstore.inference.registry import ModelRegistry, ModelSpec

log = logging.getLogger("vecstore.inference")

# (model id, texts in the batch, padded tokens, seconds)
BatchObserver = Callable[[str, int, int, float], None]
# (cache: "query" | "document", model id, hits, misses) of one call
CacheObserver = Callable[[str, str, int, int], None]


@dataclass(frozen=True, slots=True)
class InferenceConfig:
    models_file: Path | None = None
    # Id (or alias) of the model that embeds text when a collection or request names none;
    # empty turns server-side embedding off.
    default_embedding_model: str = "all-MiniLM-L6-v2"
    intra_op_threads: int = 1
    micro_batching: bool = True
    policy: BatchPolicy = field(default_factory=BatchPolicy)
    query_cache_entries: int = 4096
    # Embeddings of reranked documents (keyed by a digest of the text): a document set that is
    # reranked again skips the model. Stored records never enter it.
    document_cache_entries: int = 20000
    # Id (or alias) of the cross-encoder used when a request names none; empty: the first
    # cross-encoder in the registry, if any.
    default_cross_encoder: str = ""


class _Loaded:
    def __init__(
        self,
        model: OnnxEmbeddingModel | OnnxCrossEncoder,
        runner: MicroBatcher | DirectRunner,
    ) -> None:
        self.model = model
        self.runner = runner


class ModelHost:
    def __init__(
        self,
        registry: ModelRegistry,
        config: InferenceConfig,
        *,
        observe_batch: BatchObserver | None = None,
        observe_cache: CacheObserver | None = None,
    ) -> None:
        self.registry = registry
        self.config = config
        self._observe = observe_batch
        self._observe_cache = observe_cache
        self._loaded: dict[str, _Loaded] = {}
        self._broken: dict[str, str] = {}
        self._load_locks: dict[str, threading.Lock] = {
            s.id: threading.Lock() for s in registry.specs()
        }
        self.cache = EmbeddingCache(config.query_cache_entries)
        self.document_cache = EmbeddingCache(config.document_cache_entries, digest_keys=True)
        self._default: ModelSpec | None = None
        if config.default_embedding_model:
            # A default that names no embedding model is a configuration error: fail at start.
            self._default = registry.get(config.default_embedding_model, kind="embedding")
        self._default_cross: ModelSpec | None = None
        if config.default_cross_encoder:
            self._default_cross = registry.get(config.default_cross_encoder, kind="cross-encoder")
        else:
            crosses = [s for s in registry.specs() if s.kind == "cross-encoder"]
            self._default_cross = crosses[0] if crosses else None

    # -- lifecycle ------------------------------------------------------------------------------
    def preload(self) -> None:
        """Load the default embedder now, so the first text request does not wait for it."""
        if self._default is not None:
            try:
                self._runtime(self._default)
            except ModelUnavailable as exc:
                log.error("%s", exc.message)

    def close(self) -> None:
        for loaded in list(self._loaded.values()):
            loaded.runner.close()

    # -- the Embedder seam ----------------------------------------------------------------------
    @property
    def default_model(self) -> str | None:
        return self._default.id if self._default is not None else None

    def models(self) -> list[ModelInfo]:
        return [spec.info() for spec in self.registry.specs()]

    def describe(self, model: str | None) -> ModelInfo | None:
        spec = self._default if model is None else self.registry.find(model)
        return spec.info() if spec is not None else None

    def queue_depths(self) -> dict[str, int]:
        """Texts waiting for a model run, per loaded model (micro-batching only)."""
        return {
            model_id: loaded.runner.queued_texts
            for model_id, loaded in list(self._loaded.items())
            if isinstance(loaded.runner, MicroBatcher)
        }

    def status(self) -> dict[str, str]:
        """Per model: "loaded", "not loaded" or the reason it is unavailable."""
        out = {}
        for spec in self.registry.specs():
            if spec.id in self._loaded:
                out[spec.id] = "loaded"
            else:
                out[spec.id] = self._broken.get(spec.id, "not loaded")
        return out

    def embed(self, texts: Sequence[str], model: str | None, *, query: bool = False) -> Embeddings:
        spec = self._spec_for(model)
        loaded = self._runtime(spec)
        if not query:
            return self._run(spec, loaded, texts, query=False)
        return self._through_cache(spec, loaded, texts, self.cache, query=True)

    def embed_documents(
        self,
        documents: Sequence[str],
        model: str | None,
        *,
        max_doc_tokens: int | None = None,
        max_chunks: int = 10,
        keep: str = "end",
    ) -> ChunkedEmbeddings:
        """Documents to score against a query (not to store): long ones in chunks the model
        takes whole, each chunk through the document cache."""
        spec = self._spec_for(model)
        loaded = self._runtime(spec)
        assert isinstance(loaded.model, OnnxEmbeddingModel)
        chunks = loaded.model.chunk(
            documents, max_doc_tokens=max_doc_tokens, max_chunks=max_chunks, keep=keep
        )
        embedded = self._through_cache(spec, loaded, chunks.texts, self.document_cache, query=False)
        return ChunkedEmbeddings(
            spec.id, embedded.vectors, chunks.owner, embedded.total_tokens, chunks.lost
        )

    def _through_cache(
        self,
        spec: ModelSpec,
        loaded: _Loaded,
        texts: Sequence[str],
        cache: EmbeddingCache,
        *,
        query: bool,
    ) -> Embeddings:
        cached = [cache.get(spec.id, t) for t in texts]
        missing = [i for i, c in enumerate(cached) if c is None]
        if self._observe_cache is not None and cache.max_entries > 0:
            name = "query" if query else "document"
            self._observe_cache(name, spec.id, len(texts) - len(missing), len(missing))
        if missing:  # only the misses reach the model
            fresh = self._run(spec, loaded, [texts[i] for i in missing], query=query)
            for row, i in enumerate(missing):
                entry = CachedEmbedding(
                    fresh.vectors[row].copy(), fresh.token_counts[row], fresh.truncated[row]
                )
                cache.put(spec.id, texts[i], entry)
                cached[i] = entry
        entries = [c for c in cached if c is not None]
        return Embeddings(
            spec.id,
            np.stack([e.vector for e in entries]) if entries else _empty(spec),
            [e.tokens for e in entries],
            [e.truncated for e in entries],
        )

    # -- the CrossEncoder seam ------------------------------------------------------------------
    @property
    def default_cross_encoder(self) -> str | None:
        return self._default_cross.id if self._default_cross is not None else None

    def score(self, query: str, documents: Sequence[str], model: str | None) -> list[float]:
        """Relevance of each document to the query in [0, 1] (sigmoid of the logit)."""
        out = self.score_documents(query, documents, model)
        scores: list[float] = logits_to_scores(np.asarray(out.logits)).tolist()
        return scores

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
        """Each document's best chunk's logit (long documents are cut into chunks that fit
        beside the query; Cohere's documented behaviour)."""
        spec = self._cross_spec_for(model)
        if not documents:
            return CrossScores(spec.id, [], 0, [])
        loaded = self._runtime(spec)
        assert isinstance(loaded.model, OnnxCrossEncoder)
        pairs, owner, lost = loaded.model.tokenize_chunks(
            query, documents, max_doc_tokens=max_doc_tokens, max_chunks=max_chunks, keep=keep
        )
        logits = loaded.runner.embed(pairs, urgent=True)[:, 0].astype(np.float64)
        best = np.full(len(documents), -np.inf)
        np.maximum.at(best, np.asarray(owner), logits)
        return CrossScores(spec.id, best.tolist(), sum(p.length for p in pairs), lost)

    def _cross_spec_for(self, model: str | None) -> ModelSpec:
        if model is None:
            if self._default_cross is None:
                raise ModelNotConfigured(
                    "this needs a cross-encoder model, and the model registry has none: register"
                    ' one with kind = "cross-encoder" (see docs/models.md)'
                )
            return self._default_cross
        return self.registry.get(model, kind="cross-encoder")

    # -- internals ------------------------------------------------------------------------------
    def _spec_for(self, model: str | None) -> ModelSpec:
        if model is None:
            if self._default is None:
                raise EmbeddingUnavailable(
                    "text input needs a server-side embedding model, and none is configured"
                    " (VECSTORE_DEFAULT_EMBEDDING_MODEL is empty); send 'vector' instead"
                )
            return self._default
        return self.registry.get(model, kind="embedding")

    def _run(
        self, spec: ModelSpec, loaded: _Loaded, texts: Sequence[str], *, query: bool
    ) -> Embeddings:
        assert isinstance(loaded.model, OnnxEmbeddingModel)
        tokenized = loaded.model.tokenize(texts, query=query)
        pooled = loaded.runner.embed(tokenized, urgent=query)
        norms = np.linalg.norm(pooled, axis=1).astype(np.float32)
        vectors = pooled / np.maximum(norms, 1e-12)[:, None] if spec.normalize else pooled
        return Embeddings(
            spec.id,
            vectors.astype(np.float32, copy=False),
            [t.length for t in tokenized],
            [t.truncated for t in tokenized],
            norms,
        )

    def _runtime(self, spec: ModelSpec) -> _Loaded:
        loaded = self._loaded.get(spec.id)
        if loaded is not None:
            return loaded
        with self._load_locks[spec.id]:
            loaded = self._loaded.get(spec.id)
            if loaded is not None:
                return loaded
            if spec.id in self._broken:
                raise ModelUnavailable(self._broken[spec.id], retry_after_s=60)
            try:
                loaded = self._load(spec)
            except Exception as exc:  # a broken model answers 503; it never stops the server
                reason = f"model '{spec.id}' is unavailable: {exc}"
                log.error("%s", reason)
                self._broken[spec.id] = reason
                raise ModelUnavailable(reason, retry_after_s=60) from exc
            self._loaded[spec.id] = loaded
            log.info("model %s loaded", spec.id)
            return loaded

    def _load(self, spec: ModelSpec) -> _Loaded:
        threads, size = self.config.intra_op_threads, self.config.policy.max_texts
        model: OnnxEmbeddingModel | OnnxCrossEncoder
        run: RunFn
        if spec.kind == "cross-encoder":
            model = OnnxCrossEncoder(spec, intra_op_threads=threads, max_batch=size)
            run, width = _as_column(model.run), 1
        else:
            model = OnnxEmbeddingModel(spec, intra_op_threads=threads, max_batch=size)
            run, width = model.run, model.dimension
        observe = None
        if self._observe is not None:
            report = self._observe

            def observe(texts: int, tokens: int, seconds: float) -> None:
                report(spec.id, texts, tokens, seconds)

        runner: MicroBatcher | DirectRunner
        if self.config.micro_batching:
            runner = MicroBatcher(
                run, width, self.config.policy, name=spec.id[:12], observe=observe
            )
        else:
            runner = DirectRunner(run, observe=observe)
        return _Loaded(model, runner)


def _as_column(run: Callable[[Sequence[Tokenized]], FloatArray]) -> RunFn:
    """The batcher hands out rows: a cross-encoder's logits become a one-column matrix."""

    def column(items: Sequence[Tokenized]) -> FloatArray:
        out: FloatArray = run(items).reshape(-1, 1)
        return out

    return column


def _empty(spec: ModelSpec) -> np.ndarray:
    return np.zeros((0, spec.dimension or 0), dtype=np.float32)
