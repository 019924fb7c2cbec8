"""One embedding model on ONNX Runtime: tokenise, run in length-sorted batches, pool, normalise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from vecstore.domain import FloatArray
from vecstore.inference.chunking import Chunks, plain_tokenizer, split_documents
from vecstore.inference.registry import ModelSpec, resolve_files, verify_file


@dataclass(frozen=True, slots=True)
class Tokenized:
    """Token ids of one text (or one query-document pair), already truncated to the budget."""

    ids: list[int]
    truncated: bool
    # Segment ids of a pair (0: query, 1: document); None for a single text.
    type_ids: list[int] | None = None

    @property
    def length(self) -> int:
        return len(self.ids)


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    # On small CPUs one thread per run was fastest: concurrency comes from running several
    # batches at once (the executor), not from splitting one small matrix product.
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def load_tokenizer(spec: ModelSpec, path: str) -> Tokenizer:
    tokenizer = Tokenizer.from_file(path)
    # The file may pad to a fixed length and truncate shorter than the model allows: we pad
    # ourselves, to the longest text of each batch, and truncate at the registry's budget.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=spec.max_tokens)
    return tokenizer


@dataclass(frozen=True, slots=True)
class OpenedGraph:
    session: ort.InferenceSession
    tokenizer_path: str
    token_types: bool  # the graph takes token_type_ids


def open_graph(spec: ModelSpec, intra_op_threads: int) -> OpenedGraph:
    """A registered model's files, verified, and its ONNX session (embedders and
    cross-encoders alike): the graph must take ``input_ids`` and ``attention_mask``."""
    files = resolve_files(spec)
    verify_file(files.onnx, spec.onnx, spec.id)
    verify_file(files.tokenizer, spec.tokenizer, spec.id)
    session = ort.InferenceSession(
        str(files.onnx),
        sess_options=session_options(intra_op_threads),
        providers=["CPUExecutionProvider"],
    )
    names = {i.name for i in session.get_inputs()}
    missing = {"input_ids", "attention_mask"} - names
    if missing:
        raise ValueError(f"model '{spec.id}': the ONNX graph lacks the inputs {sorted(missing)}")
    return OpenedGraph(session, str(files.tokenizer), "token_type_ids" in names)


class OnnxEmbeddingModel:
    """Thread-safe: ``tokenize`` and ``run`` release the GIL and may be called concurrently."""

    def __init__(self, spec: ModelSpec, *, intra_op_threads: int = 1, max_batch: int = 32) -> None:
        graph = open_graph(spec, intra_op_threads)
        self.spec = spec
        self.max_batch = max_batch
        self.tokenizer = load_tokenizer(spec, graph.tokenizer_path)
        self._plain = plain_tokenizer(graph.tokenizer_path)
        prefix = self._plain.encode(spec.document_prefix, add_special_tokens=False)
        # Room for a document's own tokens in one run: the budget less [CLS]/[SEP] and prefix.
        self.document_budget = (
            spec.max_tokens - self.tokenizer.num_special_tokens_to_add(False) - len(prefix.ids)
        )
        self.session = graph.session
        self._wants_token_types = graph.token_types
        self._output = spec.output or self.session.get_outputs()[0].name
        # Straight through the graph: run() would fail on the shape before it could be named.
        probe = self._run_padded([self.tokenize(["probe"])[0].ids])
        if not np.all(np.isfinite(probe)):
            raise ValueError(f"model '{spec.id}' produced NaN or Infinity for a probe text")
        if probe.shape != (1, spec.dimension):
            raise ValueError(
                f"model '{spec.id}' produces vectors of shape {probe.shape[1:]}, but the"
                f" registry says dimension {spec.dimension}"
            )

    @property
    def dimension(self) -> int:
        assert self.spec.dimension is not None
        return self.spec.dimension

    def tokenize(self, texts: Sequence[str], *, query: bool = False) -> list[Tokenized]:
        prefix = self.spec.query_prefix if query else self.spec.document_prefix
        if prefix:
            texts = [prefix + t for t in texts]
        encodings: list[Encoding] = self.tokenizer.encode_batch(list(texts))
        return [Tokenized(e.ids, bool(e.overflowing)) for e in encodings]

    def chunk(
        self,
        documents: Sequence[str],
        *,
        max_doc_tokens: int | None = None,
        max_chunks: int = 10,
        keep: str = "end",
    ) -> Chunks:
        """Long documents as chunks the model takes whole (and of at most ``max_doc_tokens``),
        to be embedded one by one: a document is then as relevant as its best chunk."""
        budget = self.document_budget
        if max_doc_tokens is not None:
            budget = min(budget, max_doc_tokens)
        return split_documents(
            self._plain, documents, budget=budget, max_chunks=max_chunks, keep=keep
        )

    def run(self, items: Sequence[Tokenized]) -> FloatArray:
        """Embed tokenised texts: pooled, not yet normalised; rows in input order."""
        out = np.empty((len(items), self.dimension), dtype=np.float32)
        # Sorting by length puts texts of similar length together, so little is padding.
        order = sorted(range(len(items)), key=lambda i: items[i].length)
        for start in range(0, len(order), self.max_batch):
            chunk = order[start : start + self.max_batch]
            out[chunk] = self._run_padded([items[i].ids for i in chunk])
        return out

    def _run_padded(self, rows: list[list[int]]) -> FloatArray:
        feed = padded_feed(rows, None, self._wants_token_types)
        (hidden,) = self.session.run([self._output], feed)
        hidden = np.asarray(hidden, dtype=np.float32)
        mask = feed["attention_mask"]
        if self.spec.pooling == "cls":
            pooled = hidden[:, 0, :]
        else:
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        result: FloatArray = pooled.astype(np.float32, copy=False)
        return result


def padded_feed(
    rows: list[list[int]], type_rows: list[list[int]] | None, token_types: bool
) -> dict[str, np.ndarray]:
    """The ONNX inputs of a batch, padded to its longest row (pad id 0, mask 0)."""
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    types = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
        if type_rows is not None:
            types[i, : len(row)] = type_rows[i]
    feed = {"input_ids": ids, "attention_mask": mask}
    if token_types:
        feed["token_type_ids"] = types
    return feed
