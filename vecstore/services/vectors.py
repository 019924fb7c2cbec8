"""Turning request vectors (or text) into validated float32 arrays."""

from __future__ import annotations

import base64
import binascii
import math
import time
from collections.abc import Sequence

import numpy as np

from vecstore.domain import FloatArray
from vecstore.errors import BadRequest, DimensionMismatch, InvalidVector
from vecstore.services.embedder import Embedder


def as_vector(
    values: Sequence[float], dim: int, *, field: str = "vector", metric: str
) -> FloatArray:
    if len(values) != dim:
        raise DimensionMismatch(
            f"'{field}' has {len(values)} dimensions; this collection expects {dim}"
        )
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, rejected just below
        arr = np.asarray(values, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise InvalidVector(f"'{field}' contains NaN or Infinity (or a value beyond float32)")
    if metric == "cosine" and not np.any(arr):
        raise InvalidVector(f"'{field}' is all zeros, which has no cosine similarity")
    return arr


def decode_base64_vector(value: str, dim: int, *, field: str) -> FloatArray:
    """A vector sent as standard base64 of little-endian float32 (OpenAI's base64 encoding)."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidVector(
            f"'{field}' is a string but not valid base64 of little-endian float32 values"
        ) from exc
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
    mat = np.empty((len(rows), dim), dtype=np.float32)
    listed = [i for i, row in enumerate(rows) if not isinstance(row, str)]
    for i, row in enumerate(rows):
        if isinstance(row, str):
            mat[i] = decode_base64_vector(row, dim, field=f"{field}[{where[i]}].vector")
        elif len(row) != dim:
            raise DimensionMismatch(
                f"{field}[{where[i]}].vector has {len(row)} dimensions;"
                f" this collection expects {dim}"
            )
    if listed:
        with np.errstate(over="ignore"):
            mat[listed] = np.asarray([rows[i] for i in listed], dtype=np.float32)
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


class QueryResolver:
    """Resolves ``vector`` | ``text`` into a query vector, timing the embedding."""

    def __init__(self, embedder: Embedder, max_text_chars: int) -> None:
        self.embedder = embedder
        self.max_text_chars = max_text_chars

    def resolve(
        self,
        vector: Sequence[float] | None,
        text: str | None,
        *,
        dim: int,
        metric: str,
        model: str | None,
        field: str = "vector",
    ) -> tuple[FloatArray, float]:
        """Returns (vector, embedding_ms). ``vector`` wins when both are given."""
        if vector is not None:
            return as_vector(vector, dim, field=field, metric=metric), 0.0
        if text is None:
            raise BadRequest(f"send either '{field}' (a list of {dim} floats) or 'text'")
        if len(text) > self.max_text_chars:
            raise BadRequest(
                f"'text' has {len(text)} characters; the limit is {self.max_text_chars}"
            )
        started = time.perf_counter()
        out = self.embedder.embed([text], model)
        elapsed = (time.perf_counter() - started) * 1000
        vec = np.asarray(out[0], dtype=np.float32)
        if len(vec) != dim:
            raise DimensionMismatch(
                f"the embedding model produces {len(vec)} dimensions; this collection expects {dim}"
            )
        return vec, elapsed


def finite_or_none(value: float | None, field: str) -> float | None:
    if value is not None and not math.isfinite(value):
        raise BadRequest(f"'{field}' must be a finite number")
    return value
