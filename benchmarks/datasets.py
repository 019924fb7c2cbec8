"""Deterministic, clustered synthetic vectors (and their metadata), cached as ``.npy``.

Purely random gaussian vectors have no neighbourhood structure, which makes approximate search
unrealistically hard; real embeddings cluster. Here every point is a cluster centre plus isotropic
noise, L2-normalised, and queries are fresh draws from the same mixture (never stored points).

Vectors are rounded to ``DECIMALS`` places before they are cached, so the JSON sent to the server
is short and the float32 the server stores is bit-identical to the float32 used for ground truth.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

DIM = 384
CLUSTERS = 1000
BUCKETS = 100
# Norm of a point's noise relative to its (unit) cluster centre. Calibrated so clusters overlap:
# with FAISS HNSW (M=32, efConstruction=128) on 100k points, recall@10 is ~0.88 at efSearch=16,
# ~0.98 at 32 and ~0.995 at 128. (At NOISE_SCALE 1.5 every efSearch gives ~1.0; at 2.5, < 0.8.)
NOISE_SCALE = 2.0
DECIMALS = 6
SEED = 20240611
CACHE_DIR = Path(__file__).resolve().parent / ".cache"
# Vectors are generated in fixed-size chunks, each from its own seed, so the first n vectors of a
# larger data set equal a smaller one and memory stays bounded while generating.
_CHUNK = 10_000
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Dataset:
    vectors: FloatArray  # (n, dim), what is stored
    queries: FloatArray  # (n_queries, dim), drawn from the same mixture

    @property
    def n(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def buckets(self) -> npt.NDArray[np.int64]:
        return np.arange(self.n, dtype=np.int64) % BUCKETS


def external_id(i: int) -> str:
    return f"v{i}"


def index_of(ext_id: str) -> int:
    return int(ext_id[1:])


def metadata(i: int) -> dict[str, Any]:
    """``{"bucket": 0}`` selects 1% of the records, ``{"bucket": {"$lt": 10}}`` selects 10%."""
    return {"bucket": i % BUCKETS}


def to_wire(vector: FloatArray) -> list[float]:
    """The JSON-ready form: the short decimal that parses back to exactly this float32."""
    return list(np.round(vector.astype(np.float64), DECIMALS).tolist())


def to_wire_rows(vectors: FloatArray) -> list[list[float]]:
    """``to_wire`` for every row of a 2-D array, in one numpy call."""
    return list(np.round(vectors.astype(np.float64), DECIMALS).tolist())


def load(
    n: int,
    n_queries: int,
    *,
    dim: int = DIM,
    clusters: int = CLUSTERS,
    seed: int = SEED,
    cache_dir: Path = CACHE_DIR,
) -> Dataset:
    """Return the data set, generating and caching it on first use."""
    centres = _centres(dim, clusters, seed)
    vectors = _cached(
        cache_dir / f"vectors-{_tag(n, dim, clusters, seed)}.npy",
        lambda: _stored_points(centres, n, seed),
    )
    queries = _cached(
        cache_dir / f"queries-{_tag(n_queries, dim, clusters, seed)}.npy",
        lambda: _sample(np.random.default_rng([seed, 2]), centres, n_queries),
    )
    return Dataset(vectors=vectors, queries=queries)


def _tag(count: int, dim: int, clusters: int, seed: int) -> str:
    params = f"{_FORMAT_VERSION}-{NOISE_SCALE}-{DECIMALS}-{_CHUNK}"
    digest = hashlib.sha256(params.encode()).hexdigest()[:8]
    return f"n{count}-d{dim}-c{clusters}-s{seed}-{digest}"


def _cached(path: Path, make: Any) -> FloatArray:
    if path.exists():
        arr: FloatArray = np.load(path)
        return arr
    arr = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, arr)
    tmp.replace(path)
    return arr


def _centres(dim: int, clusters: int, seed: int) -> FloatArray:
    rng = np.random.default_rng([seed, 0])
    return unit(rng.standard_normal((clusters, dim), dtype=np.float32))


def _stored_points(centres: FloatArray, n: int, seed: int) -> FloatArray:
    chunks = [
        _sample(np.random.default_rng([seed, 1, c]), centres, min(_CHUNK, n - start))
        for c, start in enumerate(range(0, n, _CHUNK))
    ]
    if not chunks:
        return np.empty((0, centres.shape[1]), dtype=np.float32)
    return np.concatenate(chunks)


def _sample(rng: np.random.Generator, centres: FloatArray, count: int) -> FloatArray:
    clusters, dim = centres.shape
    which = rng.integers(0, clusters, size=count)
    noise = rng.standard_normal((count, dim), dtype=np.float32) * np.float32(
        NOISE_SCALE / np.sqrt(dim)
    )
    points = unit(centres[which] + noise)
    return np.round(points.astype(np.float64), DECIMALS).astype(np.float32)


def unit(x: FloatArray) -> FloatArray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out: FloatArray = (x / np.maximum(norms, np.float32(1e-12))).astype(np.float32)
    return out
