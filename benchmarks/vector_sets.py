"""The data sets of the cross-database comparison: stored vectors, held-out queries, exact truth.

Every engine is handed the same float32 arrays, so the comparison measures the engines, not the
data. Two kinds of set:

- ``embedded_corpus(n)`` — real embeddings: paragraphs of ``benchmarks.text_corpus`` (Python
  docstrings), embedded in process by vecstore's own default model through the server's own code
  path (``ModelHost``: tokenise, run, pool, normalise), without its batcher or caches. Cosine.
  The corpus is in its seeded order; ``train`` is its first ``n`` texts and ``queries`` its last
  ``queries`` texts taken from the end backwards, so queries are never stored, a smaller set's
  rows are the first rows of a larger one (10k is the first 10k of 100k, 500 queries the first
  500 of 1,000), and the queries do not depend on ``n``. Queries are embedded as documents: they
  are paragraphs too (document-to-document similarity; the default model has no query prefix).
- ``from_hdf5(path)`` — a standard ann-benchmarks file (``glove-100-angular``,
  ``sift-128-euclidean``, ...): its ``train`` and ``test``, and its ``neighbors`` as the truth.

Row ``i`` is in bucket ``i % 100`` (``buckets``), so ``bucket == 0`` selects 1 % of the rows and
``bucket < 10`` selects 10 %. ``truth`` is the exact top-100 over all rows; ``truth_1pct`` and
``truth_10pct`` the exact top-100 among the rows those filters select. Rows are row indices,
best first; a row is padded with -1 when fewer rows match (``recall_at`` ignores the padding).

Cache (``benchmarks/.cache/``, one key per corpus order + model, ``emb-<key>-...``): the vectors
of ``train-n<n>.npz`` and ``queries-q<q>.npz`` (float32 ``vectors``, bool ``truncated``: cut at
the model's token budget), ``truth-n<n>-q<q>.npz`` and the set's ``source`` in ``n<n>-q<q>.json``.
A request is cut from any cached file at least as large; otherwise the largest smaller one is
extended, and a long run saves a checkpoint every ``CHECKPOINT_ROWS`` rows (replacing its previous
one), so an interrupted 100k build resumes where it stopped. ann-benchmarks files get their
filtered truths cached under the file's sha256.

    python -m benchmarks.vector_sets [--n 10000] [--queries 1000] [--site-packages DIR ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from benchmarks import text_corpus
from benchmarks.datasets import BUCKETS, FloatArray, unit
from benchmarks.groundtruth import IdArray, exact_top_k
from benchmarks.metrics import recall_at_k
from benchmarks.text_corpus import CACHE_DIR, Corpus, Progress

if TYPE_CHECKING:
    from vecstore.inference.host import ModelHost
    from vecstore.inference.registry import ModelSpec

Metric = Literal["cosine", "l2", "ip"]
BoolArray = npt.NDArray[np.bool_]
K = 100
CHECKPOINT_ROWS = 10_000
# ann-benchmarks' distance attribute -> ours.
HDF5_METRICS: dict[str, Metric] = {"angular": "cosine", "euclidean": "l2", "dot": "ip"}
_FORMAT_VERSION = 1
_QUERY_CHUNK = 128
_SCORES_PER_BLOCK = 1 << 24  # 64 MB of float32 scores per query chunk, whatever n is
_CHECKED_QUERIES = 10  # queries whose file truth is re-derived here, as a check of the metric


@dataclass(frozen=True, eq=False)  # eq=False: numpy arrays have no truth value to compare by
class VectorSet:
    name: str
    metric: Metric
    train: FloatArray  # (n, d): what is stored; unit rows for cosine
    queries: FloatArray  # (q, d): never stored
    buckets: IdArray  # (n,): i % 100
    truth: IdArray  # (q, 100): exact top-100 row indices over all rows, best first
    truth_1pct: IdArray  # (q, 100): the same among rows with bucket == 0, padded with -1
    truth_10pct: IdArray  # (q, 100): the same among rows with bucket < 10, padded with -1
    source: dict[str, Any]

    @property
    def n(self) -> int:
        return int(self.train.shape[0])

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])


def buckets_of(n: int) -> IdArray:
    return np.arange(n, dtype=np.int64) % BUCKETS


# -- exact search -------------------------------------------------------------------------------
def exact_top_k_l2(
    base: FloatArray, queries: FloatArray, k: int, *, subset: IdArray | None = None
) -> list[IdArray]:
    """Row indices into ``base`` of each query's k nearest rows by euclidean distance, nearest
    first; ``subset`` as in ``groundtruth.exact_top_k``. Candidates come from float32 scores
    ``2 q.x - |x|^2`` (the ranking of ``-|q - x|^2``); the best ``2k + 16`` are re-ranked by
    their float64 distance, because with raw SIFT-like magnitudes float32 alone cancels to a few
    hundredths, enough to swap near-ties. Memory: one (chunk, rows) float32 score block."""
    rows = base if subset is None else base[subset]
    ids = np.arange(base.shape[0], dtype=np.int64) if subset is None else subset
    count = rows.shape[0]
    kk = min(k, count)
    if kk == 0:
        return [np.empty(0, dtype=np.int64) for _ in range(queries.shape[0])]
    wide = min(2 * kk + 16, count)
    sq = np.einsum("ij,ij->i", rows, rows)
    step = max(1, min(_QUERY_CHUNK, _SCORES_PER_BLOCK // count))
    out: list[IdArray] = []
    for start in range(0, queries.shape[0], step):
        chunk = queries[start : start + step]
        scores = 2.0 * (chunk @ rows.T) - sq
        part = np.argpartition(-scores, wide - 1, axis=1)[:, :wide]
        for q, cand in zip(chunk.astype(np.float64), part, strict=True):
            dist = ((rows[cand].astype(np.float64) - q) ** 2).sum(axis=1)
            out.append(ids[cand[np.argsort(dist, kind="stable")[:kk]]])
    return out


def top_k(
    metric: Metric,
    base: FloatArray,
    queries: FloatArray,
    k: int = K,
    *,
    subset: IdArray | None = None,
) -> IdArray:
    """Exact top-k under ``metric`` as a (q, k) array, padded with -1 when fewer rows match."""
    if metric == "l2":
        found = exact_top_k_l2(base, queries, k, subset=subset)
    else:
        # exact_top_k ranks by unit(q) . x: cosine when the rows are unit, and the ip ranking
        # too (normalising a query scales all its scores by one positive number).
        rows = unit(base) if metric == "cosine" else base
        found = exact_top_k(rows, queries, k, subset=subset)
    out = np.full((queries.shape[0], k), -1, dtype=np.int64)
    for i, ids in enumerate(found):
        out[i, : ids.shape[0]] = ids
    return out


def filtered_truth(
    metric: Metric, base: FloatArray, queries: FloatArray, k: int = K
) -> tuple[IdArray, IdArray]:
    """(top-k among bucket == 0, top-k among bucket < 10) under the bucket rule of this module."""
    buckets = buckets_of(base.shape[0])
    one = top_k(metric, base, queries, k, subset=np.flatnonzero(buckets == 0))
    ten = top_k(metric, base, queries, k, subset=np.flatnonzero(buckets < 10))
    return one, ten


def recall_at(found: Sequence[Sequence[int]] | IdArray, truth: IdArray, k: int) -> float:
    """``metrics.recall_at_k`` at depth k against padded truth rows: -1 means "no such row" (a
    filter matching fewer than k rows), so the denominator is the number of real neighbours;
    a -1 (or anything past k) in ``found`` is ignored too."""
    found_rows = [[int(x) for x in row[:k] if x >= 0] for row in found]
    truth_rows = [[int(x) for x in row[:k] if x >= 0] for row in truth]
    return recall_at_k(found_rows, truth_rows)


# -- the embedded corpus ------------------------------------------------------------------------
def embedded_corpus(
    n: int,
    queries: int = 1000,
    *,
    cache_dir: Path = CACHE_DIR,
    batch_size: int = 64,
    threads: int = 2,
    progress: bool = True,
    corpus: Corpus | None = None,
) -> VectorSet:
    """``n`` corpus paragraphs and ``queries`` held-out ones, embedded by vecstore's default
    model (cached; see the module docstring). ``corpus`` defaults to the whole
    ``text_corpus.build()``; the same corpus order must be given again to hit the cache."""
    from vecstore.inference.host import InferenceConfig
    from vecstore.inference.registry import ModelRegistry

    corpus = corpus if corpus is not None else text_corpus.build(progress=progress)
    total = len(corpus.texts)
    if n < 1 or queries < 1 or n + queries > total:
        raise ValueError(
            f"{n} stored + {queries} query texts asked, the corpus has {total}"
            " (more site-packages give more: text_corpus.build(site_packages=[...]))"
        )
    config = InferenceConfig(micro_batching=False, query_cache_entries=0, document_cache_entries=0)
    registry = ModelRegistry.load()
    spec = registry.get(config.default_embedding_model, kind="embedding")
    key = _embedding_key(corpus, spec)
    stem = cache_dir / f"emb-{key}"
    train_texts = corpus.texts[:n]
    query_texts = corpus.texts[::-1][:queries]
    host: list[ModelHost] = []  # loaded on first use: a full cache hit never loads the model

    def embed(texts: list[str], desc: str) -> tuple[FloatArray, BoolArray]:
        if not host:
            from vecstore.inference.host import ModelHost

            host.append(ModelHost(registry, config))
        with Progress(len(texts), desc, unit="texts", enabled=progress) as bar:
            return _embed(host[0], texts, batch_size=batch_size, threads=threads, bar=bar)

    try:
        train, train_cut = _prefix_rows(train_texts, Path(f"{stem}-train-n"), embed, "train")
        query, query_cut = _prefix_rows(query_texts, Path(f"{stem}-queries-q"), embed, "queries")
    finally:
        for h in host:
            h.close()
    train = unit(train)  # already unit (the model normalises); exact unit rows for cosine
    query = unit(query)
    truth_path = Path(f"{stem}-truth-n{n}-q{queries}.npz")
    if truth_path.exists():
        with np.load(truth_path) as z:
            truth, one, ten = z["truth"], z["truth_1pct"], z["truth_10pct"]
    else:
        truth = top_k("cosine", train, query)
        one, ten = filtered_truth("cosine", train, query)
        _save_npz(truth_path, truth=truth, truth_1pct=one, truth_10pct=ten)
    meta = corpus.manifest
    source = {
        "kind": "embedded text corpus",
        "corpus": {
            k: meta.get(k)
            for k in (
                "what",
                "python",
                "paragraphs",
                "corpus_sha256",
                "seed",
                "limit",
                "texts_sha256",
                "fingerprint",
            )
        },
        "distributions": len(meta.get("distributions", [])),
        "layout": f"train = corpus.texts[:{n}]; queries = corpus.texts[::-1][:{queries}]",
        "train_sources": dict(Counter(corpus.sources[:n]).most_common()),
        "model": spec.id,
        "onnx_sha256": spec.onnx.sha256,
        "max_tokens": spec.max_tokens,
        "truncated": {"train": int(train_cut.sum()), "queries": int(query_cut.sum())},
        "embedded_as": "documents (ModelHost.embed, no batcher, no caches)",
        "truth": "exact cosine top-100 (numpy, float32)",
        "buckets": "row i % 100",
        "cache_key": key,
    }
    # For people reading the cache directory; nothing reads it back.
    Path(f"{stem}-n{n}-q{queries}.json").write_text(json.dumps(source, indent=1) + "\n")
    label = f"{n // 1000}k" if n % 1000 == 0 else str(n)
    return VectorSet(
        name=f"docstrings-{spec.id}-{label}",
        metric="cosine",
        train=train,
        queries=query,
        buckets=buckets_of(n),
        truth=truth,
        truth_1pct=one,
        truth_10pct=ten,
        source=source,
    )


def _embedding_key(corpus: Corpus, spec: ModelSpec) -> str:
    parts = {
        "format": _FORMAT_VERSION,
        "corpus": corpus.manifest["texts_sha256"],
        "model": spec.id,
        "onnx": spec.onnx.sha256,
        "tokenizer": spec.tokenizer.sha256,
        "max_tokens": spec.max_tokens,
        "prefix": spec.document_prefix,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


EmbedFn = Callable[[list[str], str], tuple[FloatArray, BoolArray]]


def _prefix_rows(
    texts: list[str], prefix: Path, embed: EmbedFn, what: str
) -> tuple[FloatArray, BoolArray]:
    """The vectors of ``texts``, where the cache file ``<prefix><m>.npz`` holds those of
    ``texts[:m]``: cut from a larger file, else the largest smaller one extended."""
    want = len(texts)
    sizes = sorted(
        int(m.group(1))
        for p in prefix.parent.glob(f"{prefix.name}*.npz")
        if (m := re.fullmatch(re.escape(prefix.name) + r"(\d+)\.npz", p.name))
    )
    larger = [m for m in sizes if m >= want]
    if larger:
        vectors, cut = _load_rows(Path(f"{prefix}{larger[0]}.npz"))
        return vectors[:want].copy(), cut[:want].copy()
    have = max(sizes, default=0)
    parts: list[tuple[FloatArray, BoolArray]] = []
    if have:
        parts.append(_load_rows(Path(f"{prefix}{have}.npz")))
    checkpoint: Path | None = None
    while have < want:
        step = min(CHECKPOINT_ROWS, want - have)
        parts.append(embed(texts[have : have + step], f"embedding {what} {have + step}/{want}"))
        have += step
        vectors = np.concatenate([p[0] for p in parts])
        cut = np.concatenate([p[1] for p in parts])
        parts = [(vectors, cut)]
        path = Path(f"{prefix}{have}.npz")
        _save_npz(path, vectors=vectors, truncated=cut)
        if checkpoint is not None:
            checkpoint.unlink(missing_ok=True)  # this run's own previous checkpoint only
        checkpoint = path if have < want else None
    return parts[0]


def _embed(
    host: ModelHost, texts: list[str], *, batch_size: int, threads: int, bar: Progress
) -> tuple[FloatArray, BoolArray]:
    """Embed ``texts`` in batches on ``threads`` threads (the model releases the GIL), rows in
    input order. Batches are of texts of similar length (longest first), so little of a run is
    padding and the short ones balance the threads at the end; a vector does not depend on its
    batch (padding is masked out of the pooling)."""
    order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    vectors: FloatArray | None = None
    cut = np.zeros(len(texts), dtype=np.bool_)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = {pool.submit(host.embed, [texts[i] for i in b], None): b for b in batches}
        for future in as_completed(futures):
            rows, out = futures[future], future.result()
            if vectors is None:
                vectors = np.empty((len(texts), out.vectors.shape[1]), dtype=np.float32)
            vectors[rows] = out.vectors
            cut[rows] = out.truncated
            bar.update(len(rows))
    if vectors is None:
        raise ValueError("no texts to embed")
    return vectors, cut


def _load_rows(path: Path) -> tuple[FloatArray, BoolArray]:
    with np.load(path) as z:
        return z["vectors"], z["truncated"]


def _save_npz(path: Path, **arrays: npt.NDArray[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")  # np.savez appends .npz to other names
    np.savez(tmp, allow_pickle=False, **arrays)
    tmp.replace(path)


# -- ann-benchmarks files -----------------------------------------------------------------------
def from_hdf5(
    path: Path | str, *, queries: int | None = None, cache_dir: Path = CACHE_DIR
) -> VectorSet:
    """A standard ann-benchmarks HDF5 file (datasets ``train``, ``test``, ``neighbors``,
    ``distances``; attribute ``distance``) as a VectorSet. angular -> cosine (rows normalised),
    euclidean -> l2, dot -> ip. ``truth`` is the file's ``neighbors`` (first 100 columns); the
    filtered truths are computed here with this module's bucket rule and cached. ``queries``
    keeps the first that many test rows."""
    try:
        import h5py
    except ImportError as exc:
        raise ImportError("reading ann-benchmarks HDF5 files needs h5py: pip install h5py") from exc
    path = Path(path)
    with h5py.File(path, "r") as f:
        missing = {"train", "test", "neighbors"} - set(f.keys())
        if missing:
            raise ValueError(f"{path}: not an ann-benchmarks file (no {sorted(missing)})")
        distance = f.attrs.get("distance")
        distance = distance.decode() if isinstance(distance, bytes) else str(distance)
        train = np.asarray(f["train"], dtype=np.float32)
        query = np.asarray(f["test"][: queries if queries is not None else None], np.float32)
        neighbors = np.asarray(f["neighbors"][: query.shape[0], :K], dtype=np.int64)
    if distance not in HDF5_METRICS:
        raise ValueError(f"{path}: distance {distance!r} is none of {sorted(HDF5_METRICS)}")
    metric = HDF5_METRICS[distance]
    if metric == "cosine":
        train, query = unit(train), unit(query)
    truth = np.full((query.shape[0], K), -1, dtype=np.int64)
    truth[:, : neighbors.shape[1]] = neighbors
    digest = _file_sha256(path)
    cached = cache_dir / f"hdf5-{digest[:16]}-v{_FORMAT_VERSION}-q{query.shape[0]}.npz"
    if cached.exists():
        with np.load(cached) as z:
            one, ten = z["truth_1pct"], z["truth_10pct"]
    else:
        one, ten = filtered_truth(metric, train, query)
        _save_npz(cached, truth_1pct=one, truth_10pct=ten)
    # The file's truth, re-derived for a few queries: a wrong metric mapping shows up here.
    check = top_k(metric, train, query[:_CHECKED_QUERIES], 10)
    source = {
        "kind": "ann-benchmarks HDF5",
        "path": str(path),
        "sha256": digest,
        "distance": distance,
        "truth": f"the file's neighbors (first {K} columns; {neighbors.shape[1]} in the file)",
        "filtered_truth": f"exact {metric} top-{K} computed here (numpy)",
        "truth_check_recall_at_10": recall_at(check, truth[:_CHECKED_QUERIES], 10),
        "buckets": "row i % 100",
        "normalised": metric == "cosine",
    }
    return VectorSet(
        name=path.stem,
        metric=metric,
        train=train,
        queries=query,
        buckets=buckets_of(train.shape[0]),
        truth=truth,
        truth_1pct=one,
        truth_10pct=ten,
        source=source,
    )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.vector_sets", description=__doc__)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--site-packages",
        type=Path,
        action="append",
        help="a site-packages the corpus reads (repeatable; default: this interpreter's)",
    )
    args = p.parse_args(argv)
    started = time.monotonic()
    corpus = text_corpus.build(site_packages=args.site_packages)
    vs = embedded_corpus(args.n, args.queries, threads=args.threads, corpus=corpus)
    print(json.dumps(vs.source, indent=1))
    print(f"{vs.name}: train {vs.train.shape}, queries {vs.queries.shape}", end=" ")
    print(f"in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
