"""Raw FAISS in this process: the same HNSW library vecstore builds on, with nothing around it.

``IndexHNSWFlat(dim, m, METRIC_INNER_PRODUCT)`` on L2-normalised rows (cosine), efConstruction
as given. It is the floor under every other figure: no storage, no HTTP, no filtering engine.

- ``ingest`` only appends to a buffer (under a lock, so 2 threads are safe); the graph is built
  in ``finish_indexing`` with one ``add`` of everything (FAISS parallelises that over its
  OpenMP threads). Its time is the pure HNSW build of this data, a bound for anyone's indexing.
- Filtered search passes ``SearchParametersHNSW(sel=IDSelectorBitmap)``: the graph is walked as
  usual and only selected ids enter the result list (no iterative widening).
- ``search`` is read-only and releases the GIL, so threads search in parallel;
  ``client_for_thread`` returns the same object.
- ``restart`` writes the index to ``workdir`` and reads it back (a cold load), since nothing
  else persists.
- ``fetch`` reconstructs from the index's flat storage: the normalised rows, which differ from
  what was sent by float rounding only (the data set's rows are unit up to 1e-6).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.peers.base import (
    DEFAULT_KNOB,
    DEFAULT_SWEEP,
    FloatArray,
    Peer,
    PeerUnavailable,
    check_batch,
    package_version,
    require,
    unit_rows,
)


class FaissPeer:
    name = "faiss"
    kind = "embedded"
    knob_name = "efSearch"

    def __init__(self, knobs: Sequence[int] = DEFAULT_SWEEP) -> None:
        self.knobs: Sequence[int] = tuple(knobs)
        self.index_desc = "HNSWFlat (inner product on unit rows)"
        self._faiss: Any = None
        self._workdir: Path | None = None
        self._dim = 0
        self._m = 0
        self._ef_construction = 0
        self._lock = threading.Lock()
        self._pending_vectors: list[FloatArray] = []
        self._ids: list[str] = []
        self._buckets: list[int] = []
        self._row_of: dict[str, int] = {}
        self._bucket_arr: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self._index: Any = None
        self._ef = DEFAULT_KNOB
        # bucket_lt -> (bitmap, selector); the bitmap must outlive the selector that points at it.
        self._selectors: dict[int, tuple[npt.NDArray[np.uint8], Any]] = {}

    def start(self, workdir: Path) -> None:
        self._faiss = require("faiss", "faiss-cpu")
        self._workdir = workdir

    def stop(self) -> None:
        self._index = None
        self._selectors.clear()

    def versions(self) -> dict[str, str]:
        return {"faiss-cpu": package_version("faiss-cpu")}

    def create(self, dim: int, m: int, ef_construction: int) -> None:
        self._dim, self._m, self._ef_construction = dim, m, ef_construction
        self.index_desc = f"HNSWFlat M={m} efConstruction={ef_construction}, IP on unit rows"
        self._index = self._new_index()

    def _new_index(self) -> Any:
        faiss = self._faiss
        index = faiss.IndexHNSWFlat(self._dim, self._m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self._ef_construction
        index.hnsw.efSearch = self._ef
        return index

    def ingest(self, ids: Sequence[str], vectors: FloatArray, buckets: Sequence[int]) -> None:
        check_batch(ids, vectors, buckets)
        rows = unit_rows(vectors)
        with self._lock:
            for i in ids:
                self._row_of[i] = len(self._ids)
                self._ids.append(i)
            self._buckets.extend(int(b) for b in buckets)
            self._pending_vectors.append(rows)

    def finish_indexing(self) -> None:
        if self._index is None:
            raise PeerUnavailable("create() was not called")
        with self._lock:
            pending, self._pending_vectors = self._pending_vectors, []
            if pending:
                self._index.add(np.ascontiguousarray(np.concatenate(pending)))
            self._bucket_arr = np.asarray(self._buckets, dtype=np.int64)
            self._selectors.clear()

    def set_knob(self, value: int) -> None:
        self._ef = int(value)
        if self._index is not None:
            self._index.hnsw.efSearch = self._ef

    def _selector(self, bucket_lt: int) -> Any:
        entry = self._selectors.get(bucket_lt)
        if entry is None:
            mask = self._bucket_arr < bucket_lt
            bitmap = np.packbits(mask, bitorder="little")
            sel = self._faiss.IDSelectorBitmap(mask.size, self._faiss.swig_ptr(bitmap))
            entry = (bitmap, sel)
            self._selectors[bucket_lt] = entry
        return entry[1]

    def search(self, query: FloatArray, k: int, bucket_lt: int | None = None) -> list[str]:
        q = unit_rows(np.asarray(query, dtype=np.float32).reshape(1, -1))
        if bucket_lt is None:
            _, rows = self._index.search(q, k)
        else:
            params = self._faiss.SearchParametersHNSW(
                sel=self._selector(bucket_lt), efSearch=self._ef
            )
            _, rows = self._index.search(q, k, params=params)
        return [self._ids[r] for r in rows[0] if r >= 0]

    def fetch(self, ids: Sequence[str]) -> FloatArray:
        rows = np.asarray([self._row_of[i] for i in ids], dtype=np.int64)
        out: FloatArray = self._index.reconstruct_batch(rows).astype(np.float32)
        return out

    def client_for_thread(self) -> Peer:
        return self

    def memory_pids(self) -> list[int]:
        return []

    def restart(self) -> None:
        if self._workdir is None or self._index is None:
            raise PeerUnavailable("restart() before start() / create()")
        path = self._workdir / "faiss-hnsw.index"
        self._faiss.write_index(self._index, str(path))
        self._index = None
        self._selectors.clear()
        self._index = self._faiss.read_index(str(path))
        self._index.hnsw.efSearch = self._ef
        self.search(np.ones(self._dim, dtype=np.float32), 1)
