"""Turning request vectors (or text) into validated float32 arrays."""

from __future__ import annotations

import binascii
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pybase64

from vecstore.domain import CollectionShape, FloatArray
from vecstore.errors import (
    BadRequest,
    DimensionMismatch,
    EmbeddingUnavailable,
    InvalidVector,
    LimitExceeded,
    ModelUnavailable,
)
from vecstore.services.embedder import Embedder


def as_vector(
    values: Sequence[float] | str, dim: int, *, field: str = "vector", metric: str
) -> FloatArray:
    """A float list, or a string of base64 little-endian float32 (cheaper on both ends)."""
    if isinstance(values, str):
        arr = decode_base64_vector(values, dim, field=field)
    else:
        if len(values) != dim:
            raise DimensionMismatch(
                f"'{field}' has {len(values)} dimensions; this collection expects {dim}"
            )
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, rejected just below
            arr = np.asarray(values, dtype=np.float32)
    # Two array calls instead of three for the usual vector: in float64 the sum of squares of
    # float32 values neither overflows nor underflows, so it is finite and non-zero exactly
    # when every value is finite and one is not zero. The checks below word the error.
    wide = arr.astype(np.float64)
    squares = float(np.dot(wide, wide))
    if 0.0 < squares < math.inf:
        return arr
    if not np.isfinite(arr).all():
        raise InvalidVector(f"'{field}' contains NaN or Infinity (or a value beyond float32)")
    if metric == "cosine" and not arr.any():
        raise InvalidVector(f"'{field}' is all zeros, which has no cosine similarity")
    return arr


def _base64_bytes(value: str) -> bytes | None:
    """Strict standard base64 (alphabet and padding checked, no whitespace), None if invalid.

    pybase64's SIMD decoder: about five times the standard library's speed per vector."""
    try:
        return pybase64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _joined_base64(rows: Sequence[Sequence[float] | str], row_chars: int) -> bytes | None:
    """Every row's bytes from one decode of the rows joined, or None to go row by row.

    Only when each row is a string of exactly ``row_chars`` characters and a row's bytes are a
    multiple of 3 (so no row carries padding): then the joined text is valid exactly when every
    row is, and the bytes split back at ``row_bytes``. One call instead of one per row (1,000
    rows of 384 values: 0.5 ms instead of 2)."""
    texts: list[str] = []
    for row in rows:
        if not isinstance(row, str) or len(row) != row_chars:
            return None
        texts.append(row)
    raw = _base64_bytes("".join(texts))
    # Padding on the last row still decodes, short: that row then words its own error.
    return raw if raw is not None and len(raw) == len(texts) * row_chars // 4 * 3 else None


def decode_base64_vector(value: str, dim: int, *, field: str) -> FloatArray:
    """A vector sent as standard base64 of little-endian float32 (OpenAI's base64 encoding)."""
    raw = _base64_bytes(value)
    if raw is None:
        raise InvalidVector(
            f"'{field}' is a string but not valid base64 of little-endian float32 values"
        )
    if len(raw) != dim * 4:
        raise DimensionMismatch(
            f"'{field}' decodes to {len(raw)} bytes ({len(raw) / 4:g} float32 values);"
            f" this collection expects {dim} values ({dim * 4} bytes)"
        )
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def as_matrix(
    rows: Sequence[Sequence[float] | str],
    dim: int,
    *,
    field: str,
    metric: str,
    positions: Sequence[int] | None = None,
) -> FloatArray:
    """Validate many vectors at once (float lists or base64 strings); an error names the item
    by its position in the request (``positions[i]``, default ``i``)."""
    where = list(positions) if positions is not None else list(range(len(rows)))
    if not rows:
        return np.zeros((0, dim), dtype=np.float32)
    row_bytes = dim * 4
    joined = _joined_base64(rows, row_bytes // 3 * 4) if row_bytes % 3 == 0 else None
    if joined is not None:
        mat = np.frombuffer(joined, dtype="<f4").astype(np.float32).reshape(len(rows), dim)
        return _checked(mat, field=field, metric=metric, where=where)
    mat = np.empty((len(rows), dim), dtype=np.float32)
    listed = [i for i, row in enumerate(rows) if not isinstance(row, str)]
    for i, row in enumerate(rows):
        if isinstance(row, str):
            raw = _base64_bytes(row)
            if raw is not None and len(raw) == row_bytes:
                mat[i] = np.frombuffer(raw, dtype="<f4")
            else:  # the slow path words the error
                mat[i] = decode_base64_vector(row, dim, field=f"{field}[{where[i]}].vector")
        elif len(row) != dim:
            raise DimensionMismatch(
                f"{field}[{where[i]}].vector has {len(row)} dimensions;"
                f" this collection expects {dim}"
            )
    if listed:
        with np.errstate(over="ignore"):
            mat[listed] = np.asarray([rows[i] for i in listed], dtype=np.float32)
    return _checked(mat, field=field, metric=metric, where=where)


def _checked(mat: FloatArray, *, field: str, metric: str, where: list[int]) -> FloatArray:
    finite = np.isfinite(mat).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise InvalidVector(
            f"{field}[{where[i]}].vector contains NaN or Infinity (or a value beyond float32)"
        )
    if metric == "cosine":
        zero = ~mat.any(axis=1)
        if zero.any():
            i = int(np.flatnonzero(zero)[0])
            raise InvalidVector(
                f"{field}[{where[i]}].vector is all zeros, which has no cosine similarity"
            )
    return mat


@dataclass(frozen=True, slots=True)
class EmbeddedTexts:
    vectors: FloatArray
    embedding_ms: float
    # One sentence per truncated text, naming its field: responses report them as "warnings".
    warnings: list[str]
    tokens: int


class QueryResolver:
    """Resolves ``vector`` | ``text`` into vectors: picks the collection's embedding model,
    checks its dimension, embeds in one batch and reports truncation."""

    def __init__(self, embedder: Embedder, max_text_chars: int) -> None:
        self.embedder = embedder
        self.max_text_chars = max_text_chars

    def model_for(self, shape: CollectionShape) -> str:
        """The model that embeds this collection's text, checked against its dimension."""
        name = shape.embedding_model or self.embedder.default_model
        if name is None:
            raise EmbeddingUnavailable(
                "text input needs a server-side embedding model, and none is configured;"
                " send 'vector' instead"
            )
        info = self.embedder.describe(name)
        if info is None:
            raise ModelUnavailable(
                f"this collection embeds text with model '{name}', which is not in the"
                " server's model registry; send 'vector', or register the model again"
            )
        if info.dimension != shape.dim:
            raise EmbeddingUnavailable(
                f"this collection has dim {shape.dim}, but the embedding model '{info.id}'"
                f" produces {info.dimension} dimensions, so text cannot be embedded for it;"
                f" send 'vector', or use a collection created with dim {info.dimension}"
                " (or an 'embedding_model' of that dimension)"
            )
        return info.id

    def check_text(self, text: str, field: str) -> None:
        if len(text) > self.max_text_chars:
            raise LimitExceeded(
                f"'{field}' has {len(text)} characters; the limit is {self.max_text_chars}"
            )

    def embed_texts(
        self, shape: CollectionShape, texts: Sequence[str], fields: Sequence[str], *, query: bool
    ) -> EmbeddedTexts:
        """Embed many texts in one call; ``fields`` name each text in warnings."""
        model = self.model_for(shape)
        for text, field in zip(texts, fields, strict=True):
            self.check_text(text, field)
        started = time.perf_counter()
        out = self.embedder.embed(list(texts), model, query=query)
        elapsed = (time.perf_counter() - started) * 1000
        if out.vectors.shape[1] != shape.dim:  # the registry's dimension was checked above
            raise DimensionMismatch(
                f"the embedding model produces {out.vectors.shape[1]} dimensions;"
                f" this collection expects {shape.dim}"
            )
        warnings = [
            truncation_warning(field, tokens)
            for field, tokens, cut in zip(fields, out.token_counts, out.truncated, strict=True)
            if cut
        ]
        return EmbeddedTexts(out.vectors, elapsed, warnings, out.total_tokens)

    def resolve(
        self,
        vector: Sequence[float] | str | None,
        text: str | None,
        *,
        shape: CollectionShape,
        field: str = "vector",
    ) -> tuple[FloatArray, float, list[str]]:
        """Returns (vector, embedding_ms, warnings). ``vector`` wins when both are given."""
        if vector is not None:
            return as_vector(vector, shape.dim, field=field, metric=shape.metric), 0.0, []
        if text is None:
            raise BadRequest(f"send either '{field}' (a list of {shape.dim} floats) or 'text'")
        out = self.embed_texts(shape, [text], ["text"], query=True)
        return out.vectors[0], out.embedding_ms, out.warnings


def truncation_warning(field: str, tokens: int) -> str:
    return (
        f"'{field}' was longer than the embedding model's limit and was truncated to its"
        f" first {tokens} tokens"
    )


def finite_or_none(value: float | None, field: str) -> float | None:
    if value is not None and not math.isfinite(value):
        raise BadRequest(f"'{field}' must be a finite number")
    return value
