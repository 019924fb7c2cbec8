"""Exact cosine top-k computed client-side with numpy: the reference every recall is measured by."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from benchmarks.datasets import FloatArray, unit

IdArray = npt.NDArray[np.int64]
_QUERY_CHUNK = 128


def exact_top_k(
    base_unit: FloatArray, queries: FloatArray, k: int, *, subset: IdArray | None = None
) -> list[IdArray]:
    """Row indices into ``base_unit`` of each query's k most cosine-similar rows, best first.

    ``base_unit`` must already be L2-normalised. ``subset`` restricts the search to those rows
    (a filter's matching set); fewer than k rows gives fewer results.
    """
    rows = base_unit if subset is None else base_unit[subset]
    ids = np.arange(base_unit.shape[0], dtype=np.int64) if subset is None else subset
    kk = min(k, rows.shape[0])
    out: list[IdArray] = []
    if kk == 0:
        return [np.empty(0, dtype=np.int64) for _ in range(queries.shape[0])]
    q_unit = unit(queries)
    for start in range(0, q_unit.shape[0], _QUERY_CHUNK):
        scores = q_unit[start : start + _QUERY_CHUNK] @ rows.T
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        for row, cand in zip(scores, part, strict=True):
            order = cand[np.argsort(-row[cand], kind="stable")]
            out.append(ids[order])
    return out
