"""Score fusion for hybrid retrieval: a weighted sum of min-max normalised scores, or RRF.

Pure functions over numpy arrays, one value per candidate, so they are tested on their own.
"""

from __future__ import annotations

import numpy as np

RRF_K = 60
FUSIONS = ("weighted", "rrf")


def minmax(values: np.ndarray, *, constant: float) -> np.ndarray:
    """Scale to [0, 1] over the candidates. A leg whose scores are all equal carries no order:
    every candidate gets ``constant``."""
    if len(values) == 0:
        return values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high - low <= 0.0:
        return np.full(len(values), constant, dtype=np.float64)
    out: np.ndarray = (values.astype(np.float64) - low) / (high - low)
    return out


def weighted(vector_scores: np.ndarray | None, text_scores: np.ndarray, alpha: float) -> np.ndarray:
    """``alpha`` * normalised vector score + (1 - ``alpha``) * normalised BM25 score.

    BM25 is 0 for a candidate with none of the query's words, so a keyword leg that matched
    nothing normalises to 0 rather than to the all-equal constant."""
    text = minmax(text_scores, constant=1.0 if text_scores.max(initial=0.0) > 0 else 0.0)
    if vector_scores is None:
        return (1 - alpha) * text
    return alpha * minmax(vector_scores, constant=1.0) + (1 - alpha) * text


def rrf(
    vector_ranks: np.ndarray, text_ranks: np.ndarray, alpha: float, k: int = RRF_K
) -> np.ndarray:
    """Reciprocal rank fusion: Σ 1 / (k + rank) over the legs that ranked the candidate (rank
    1-based; 0 = not ranked by that leg). Weighted by ``alpha`` and scaled so that 0.5 gives
    the classic unweighted RRF values."""
    out = np.zeros(len(vector_ranks), dtype=np.float64)
    ranked = vector_ranks > 0
    out[ranked] += 2 * alpha / (k + vector_ranks[ranked])
    ranked = text_ranks > 0
    out[ranked] += 2 * (1 - alpha) / (k + text_ranks[ranked])
    return out
