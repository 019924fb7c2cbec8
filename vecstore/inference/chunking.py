"""Cutting long documents into chunks of at most a token budget, at token boundaries. The
bi-encoder and the cross-encoder share it, so ``max_tokens_per_doc``, ``max_chunks_per_doc`` and
``truncate`` mean the same thing whichever model scores a document."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenizers import Tokenizer

from vecstore.errors import BadRequest

KEEP = ("none", "start", "end")


@dataclass(frozen=True, slots=True)
class Chunks:
    texts: list[str]  # every kept chunk of every document, documents in order
    owner: list[int]  # the document of each chunk
    lost: list[bool]  # per document: text was dropped (more chunks than allowed)


def split_documents(
    plain: Tokenizer,
    documents: Sequence[str],
    *,
    budget: int,
    max_chunks: int,
    keep: str,
) -> Chunks:
    """Each document as consecutive spans of at most ``budget`` tokens (``plain`` must neither
    truncate nor add special tokens). A document of more than ``max_chunks`` chunks keeps its
    first ones (``keep="end"``: its end is cut) or its last ones (``"start"``); ``"none"``
    refuses it with a 400 that names the document."""
    budget = max(budget, 1)
    texts: list[str] = []
    owner: list[int] = []
    lost: list[bool] = []
    for i, encoding in enumerate(plain.encode_batch(list(documents), add_special_tokens=False)):
        document = documents[i]
        offsets = encoding.offsets
        spans = [
            (offsets[s][0], offsets[min(s + budget, len(offsets)) - 1][1])
            for s in range(0, len(offsets), budget)
        ] or [(0, len(document))]
        cut = len(spans) > max_chunks
        if cut and keep == "none":
            raise BadRequest(
                f"documents[{i}] needs {len(spans)} chunks of {budget} tokens and"
                f" 'max_chunks_per_doc' is {max_chunks}; with 'truncate' 'none' no text"
                " may be dropped: raise 'max_chunks_per_doc' or set 'truncate'",
                type_="document_too_long",
            )
        if cut:
            spans = spans[-max_chunks:] if keep == "start" else spans[:max_chunks]
        if len(spans) == 1 and not cut:
            texts.append(document)  # the common case, byte for byte (and one cache key)
        else:
            texts.extend(document[a:b] for a, b in spans)
        owner.extend([i] * len(spans))
        lost.append(cut)
    return Chunks(texts, owner, lost)


def plain_tokenizer(path: str) -> Tokenizer:
    """A tokenizer for counting and cutting whole texts: no truncation, no padding."""
    tokenizer = Tokenizer.from_file(path)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer
