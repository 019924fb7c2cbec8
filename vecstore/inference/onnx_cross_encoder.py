"""One cross-encoder on ONNX Runtime: any sequence-pair classifier (``input_ids``,
``attention_mask``, optional ``token_type_ids`` → logits) scores (query, document) pairs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vecstore.domain import FloatArray
from vecstore.inference.chunking import plain_tokenizer, split_documents
from vecstore.inference.onnx_embedder import Tokenized, load_tokenizer, open_graph, padded_feed
from vecstore.inference.registry import ModelSpec

# A query may use at most this share of the pair's token budget; the document gets the rest.
QUERY_SHARE = 0.5


def logits_to_scores(logits: np.ndarray) -> FloatArray:
    """Relevance in [0, 1]: the sigmoid of a single logit, or of (positive - negative) for a
    two-class head (the same as softmax's probability of the positive class)."""
    raw = logits_of(logits)
    out: FloatArray = (1.0 / (1.0 + np.exp(-raw.astype(np.float64)))).astype(np.float32)
    return out


def logits_of(output: np.ndarray) -> FloatArray:
    out = np.asarray(output, dtype=np.float32)
    if out.ndim == 2 and out.shape[1] == 2:
        out = out[:, 1] - out[:, 0]
    elif out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    elif out.ndim != 1:
        raise ValueError(
            f"a cross-encoder must output (batch,), (batch, 1) or (batch, 2), got {out.shape}"
        )
    return out


class OnnxCrossEncoder:
    """Thread-safe like the embedder: tokenising and ``run`` release the GIL."""

    def __init__(self, spec: ModelSpec, *, intra_op_threads: int = 1, max_batch: int = 16) -> None:
        graph = open_graph(spec, intra_op_threads)
        self.spec = spec
        self.max_batch = max_batch
        self.tokenizer = load_tokenizer(spec, graph.tokenizer_path)
        # Pairs are cut in the document only: the query is the point of the comparison.
        self.tokenizer.enable_truncation(max_length=spec.max_tokens, strategy="only_second")
        self._plain = plain_tokenizer(graph.tokenizer_path)  # counts and cuts whole texts
        self._specials = self.tokenizer.num_special_tokens_to_add(True)
        self.session = graph.session
        self._wants_token_types = graph.token_types
        self._output = spec.output or self.session.get_outputs()[0].name
        probe = self.run(self.tokenize("probe", ["probe"]))
        if probe.shape != (1,) or not np.all(np.isfinite(probe)):
            raise ValueError(f"model '{spec.id}' gave {probe!r} for a probe pair, not one logit")

    def tokenize(self, query: str, documents: Sequence[str]) -> list[Tokenized]:
        query = self._fit_query(query)
        encodings = self.tokenizer.encode_batch([(query, d) for d in documents])
        return [Tokenized(e.ids, bool(e.overflowing), e.type_ids) for e in encodings]

    def _fit_query(self, query: str) -> str:
        """A query longer than its share of the budget is cut (at a token boundary), so that
        every pair keeps the query and room for the document."""
        budget = max(1, int(self.spec.max_tokens * QUERY_SHARE))
        encoding = self._plain.encode(query, add_special_tokens=False)
        if len(encoding.ids) <= budget:
            return query
        end = encoding.offsets[budget - 1][1]
        return query[:end]

    def tokenize_chunks(
        self,
        query: str,
        documents: Sequence[str],
        *,
        max_doc_tokens: int | None = None,
        max_chunks: int = 10,
        keep: str = "end",
    ) -> tuple[list[Tokenized], list[int], list[bool]]:
        """Pairs of the query with every chunk of every document: (pairs, the document of each
        pair, whether each document lost text). A chunk holds as many document tokens as fit
        beside the query (and at most ``max_doc_tokens``). A document of more than
        ``max_chunks`` chunks keeps its first ones (``keep="end"``: its end is cut) or its last
        ones (``"start"``); ``"none"`` refuses such a document."""
        query = self._fit_query(query)
        query_tokens = len(self._plain.encode(query, add_special_tokens=False).ids)
        budget = self.spec.max_tokens - query_tokens - self._specials
        if max_doc_tokens is not None:
            budget = min(budget, max_doc_tokens)
        chunks = split_documents(
            self._plain, documents, budget=budget, max_chunks=max_chunks, keep=keep
        )
        texts, owner, lost = chunks.texts, chunks.owner, chunks.lost
        encodings = self.tokenizer.encode_batch([(query, t) for t in texts])
        pairs = [Tokenized(e.ids, bool(e.overflowing), e.type_ids) for e in encodings]
        return pairs, owner, lost

    def run(self, items: Sequence[Tokenized]) -> FloatArray:
        """Logits, one per pair, in input order (length-sorted batches inside)."""
        out = np.empty(len(items), dtype=np.float32)
        order = sorted(range(len(items)), key=lambda i: items[i].length)
        for start in range(0, len(order), self.max_batch):
            chunk = order[start : start + self.max_batch]
            feed = padded_feed(
                [items[i].ids for i in chunk],
                [items[i].type_ids or [] for i in chunk],
                self._wants_token_types,
            )
            (logits,) = self.session.run([self._output], feed)
            out[chunk] = logits_of(logits)
        return out
