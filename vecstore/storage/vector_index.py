"""A FAISS index over one collection, plus its checkpoint file format.

FAISS positions are dense (0..ntotal-1); ``ids`` maps a position to the collection's internal id.
Ids are added in increasing order, so ``ids`` is sorted and ``watermark`` is its last value: every
internal id <= watermark that was live when added is in the index. Deleted ids stay as tombstones
(``alive`` False), excluded from every search through an ``IDSelectorBitmap``.

Checkpoint file: MAGIC, a u32 header length, a JSON header, then the body (ids as int64 followed
by ``faiss.serialize_index`` bytes). The header holds the body's sha256 and the last change
``seq`` the checkpoint reflects. No pickle.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vecstore.domain import FloatArray, IdArray, IndexParams

# faiss ships partial type stubs that disagree with its SWIG API; treat the module as untyped.
faiss: Any = importlib.import_module("faiss")

MAGIC = b"VSTOREIX"
FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint file is missing, corrupt or does not belong to this collection state."""


def _faiss_metric(metric: str) -> int:
    return int(faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT)


def faiss_memory_regions(index: Any) -> list[tuple[int, int]]:
    """``(address, bytes)`` of a flat or HNSW FAISS index's large arrays (the stored codes, and
    an HNSW graph's neighbour lists), for ``huge_pages.advise``."""
    if hasattr(index, "hnsw"):
        storage = faiss.downcast_index(index.storage)
        arrays = [(storage.codes, 1), (index.hnsw.neighbors, 4)]  # (vector, bytes per element)
    else:
        arrays = [(index.codes, 1)]
    return [(int(a.data()), int(a.size()) * width) for a, width in arrays if a.size()]


class VectorIndex:
    def __init__(self, dim: int, metric: str, params: IndexParams) -> None:
        self.dim = dim
        self.metric = metric
        self.params = params
        self.index = self._build_empty()
        self.ids: IdArray = np.zeros(0, dtype=np.int64)
        self.alive = np.zeros(0, dtype=bool)
        self.alive_count = 0
        self._packed: np.ndarray | None = None
        self._params_by_ef: dict[int, Any] = {}
        self._stored: FloatArray | None = None  # stored_vectors(), until the next add

    def _build_empty(self) -> Any:
        metric = _faiss_metric(self.metric)
        p = self.params
        if p.type == "flat":
            return faiss.IndexFlat(self.dim, metric)
        if p.type == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, p.m, metric)
        elif p.type == "hnsw_sq8":
            index = faiss.IndexHNSWSQ(self.dim, faiss.ScalarQuantizer.QT_8bit, p.m, metric)
        else:
            raise ValueError(f"unknown index type {p.type!r}")
        index.hnsw.efConstruction = p.ef_construction
        index.hnsw.efSearch = p.ef_search
        return index

    # -- state ------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        # ``ids`` has one entry per FAISS position (``add`` and ``load`` keep them in step):
        # its length is free, where reading FAISS's own counter goes through SWIG.
        return len(self.ids)

    @property
    def watermark(self) -> int:
        return int(self.ids[-1]) if len(self.ids) else -1

    @property
    def tombstones(self) -> int:
        return self.ntotal - self.alive_count

    @property
    def deleted_fraction(self) -> float:
        return self.tombstones / self.ntotal if self.ntotal else 0.0

    @property
    def is_hnsw(self) -> bool:
        return self.params.type in ("hnsw", "hnsw_sq8")

    @property
    def needs_training(self) -> bool:
        return not bool(self.index.is_trained)

    @property
    def holds_exact_vectors(self) -> bool:
        """Whether the index stores every vector as the exact float32 it was given (flat and
        HNSW-flat do; the 8-bit quantiser does not), so the row table need not keep a copy."""
        return self.params.type in ("flat", "hnsw")

    def memory_regions(self) -> list[tuple[int, int]]:
        """``faiss_memory_regions`` of this index. Valid until the next ``add`` (which may move
        them); read them under the index lock."""
        return faiss_memory_regions(self.index) if self.ntotal else []

    def stored_vectors(self) -> FloatArray:
        """A view of the stored vectors, by position. It borrows FAISS's memory, which the next
        ``add`` may move and which dies with the index: use it only under the collection's index
        lock (read side) and copy what must outlive that."""
        if not self.holds_exact_vectors:
            raise ValueError(f"a {self.params.type} index keeps no exact vectors")
        view = self._stored
        if (
            view is None
        ):  # made once per add: three SWIG calls cost more than a small search's gather
            n = self.ntotal
            if n == 0:
                return np.zeros((0, self.dim), dtype=np.float32)
            index = self.index
            flat = index if self.params.type == "flat" else faiss.downcast_index(index.storage)
            view = faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)
            self._stored = view
        return view

    def scores_at(self, query: FloatArray, positions: np.ndarray) -> np.ndarray:
        """Exact "higher is better" scores (float32) of the stored vectors at ``positions``
        against an index-space ``query``, read where FAISS keeps them: the inner product, or
        minus the L2 distance. Gathering 1,000 scattered rows into a new array first, as
        ``stored_vectors()[positions] @ query`` does, writes and re-reads 1.5 MB at 384
        dimensions and cost as much again as the scoring (``benchmarks/run_request_path.py``,
        item 8). Same locking rule as ``stored_vectors``."""
        stored = self.stored_vectors()
        pos = np.ascontiguousarray(positions, dtype=np.int64)
        out = np.empty(len(pos), dtype=np.float32)
        if len(pos) == 0:
            return out
        # FAISS reads ``stored + position * dim`` unchecked.
        if int(pos.min()) < 0 or int(pos.max()) >= len(stored):
            raise IndexError("a position outside the index")
        q = np.ascontiguousarray(query, dtype=np.float32)
        if q.shape != (self.dim,):
            raise ValueError(f"a query of shape {q.shape} for dimension {self.dim}")
        by_idx = (
            faiss.fvec_L2sqr_by_idx if self.metric == "l2" else faiss.fvec_inner_products_by_idx
        )
        ptr = faiss.swig_ptr
        # FAISS splits the work by query, and there is one, but it opens an OpenMP parallel
        # region all the same: waking the team for nothing cost 14 -> 6 us for 10 rows and
        # 260 -> 233 us for 1,000 (warm caches, 2 cores). The thread count set here is this
        # thread's own (an OpenMP per-thread setting): batched searches elsewhere keep theirs.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            by_idx(ptr(out), ptr(q), ptr(stored), ptr(pos), self.dim, 1, len(pos))
        finally:
            faiss.omp_set_num_threads(threads)
        if self.metric == "l2":
            np.sqrt(out, out=out)
            np.negative(out, out=out)
        return out

    # -- mutations --------------------------------------------------------------------------
    def train(self, sample: FloatArray) -> None:
        self.index.train(np.ascontiguousarray(sample, dtype=np.float32))

    def add(self, ids: IdArray, vectors: FloatArray) -> None:
        if len(ids) == 0:
            return
        if int(ids[0]) <= self.watermark:
            raise ValueError("ids must be added above the watermark, in increasing order")
        if self.needs_training:
            self.train(vectors)
        self._stored = None  # the add may move FAISS's storage
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.ids = np.concatenate([self.ids, np.asarray(ids, dtype=np.int64)])
        self.alive = np.concatenate([self.alive, np.ones(len(ids), dtype=bool)])
        self.alive_count += len(ids)
        self._packed = None

    def kill(self, ids: IdArray) -> None:
        """Tombstone internal ids that are in the index (others are ignored)."""
        if len(ids) == 0 or len(self.ids) == 0:
            return
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.ids, ids)
        pos = np.minimum(pos, len(self.ids) - 1)
        hit = pos[(self.ids[pos] == ids) & self.alive[pos]]
        if len(hit):
            self.alive[hit] = False
            self.alive_count -= len(np.unique(hit))
            self._packed = None

    def positions_of(self, ids: IdArray) -> np.ndarray:
        """Positions of the given ids that are in the index and alive."""
        if len(self.ids) == 0:
            return np.zeros(0, dtype=np.int64)
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.ids, ids)
        pos = np.minimum(pos, len(self.ids) - 1)
        out: np.ndarray = pos[(self.ids[pos] == ids) & self.alive[pos]]
        return out

    def positions_of_indexed(self, ids: IdArray) -> np.ndarray:
        """Positions of ids that must be in the index (tombstoned or not); raises if one is not."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return np.zeros(0, dtype=np.int64)
        pos = np.searchsorted(self.ids, ids)
        if (
            len(self.ids) == 0
            or int(pos.max()) >= len(self.ids)
            or not bool(np.array_equal(self.ids[pos], ids))
        ):
            raise LookupError("asked for the stored vector of an id the index does not hold")
        return pos

    # -- search -----------------------------------------------------------------------------
    def search(
        self, query: FloatArray, k: int, *, ef_search: int | None = None, allowed: Any = None
    ) -> IdArray:
        """Internal ids of up to ``k`` approximate neighbours (FAISS order).

        ``allowed``: an optional bool mask over positions; tombstones are always excluded.
        """
        found = self.search_positions(query.reshape(1, -1), k, ef_search=ef_search, allowed=allowed)
        row = found[0]
        out: IdArray = self.ids[row[row >= 0]]
        return out

    def search_positions(
        self, queries: FloatArray, k: int, *, ef_search: int | None = None, allowed: Any = None
    ) -> np.ndarray:
        """FAISS positions of up to ``k`` approximate neighbours of each row of ``queries``
        (``len(queries)`` by ``min(k, ntotal)``, padded with -1), in one FAISS call: FAISS spreads
        a batch over its OpenMP threads, and runs a single query on the calling thread."""
        k = min(k, self.ntotal)
        if k <= 0:
            return np.zeros((len(queries), 0), dtype=np.int64)
        mask = None
        if allowed is not None:
            mask = allowed & self.alive
        elif self.tombstones:
            mask = self.alive
        bitmap = None
        selector = None
        if mask is not None:
            if mask is self.alive:
                if self._packed is None:
                    self._packed = np.packbits(self.alive, bitorder="little")
                bitmap = self._packed
            else:
                bitmap = np.packbits(mask, bitorder="little")
            selector = faiss.IDSelectorBitmap(bitmap)
        params: Any
        if self.is_hnsw:
            ef = max(ef_search or self.params.ef_search, k)
            if selector is None:
                params = self._hnsw_params(ef)
            else:
                params = faiss.SearchParametersHNSW(efSearch=ef)
                params.sel = selector
        else:
            params = faiss.SearchParameters()
            if selector is not None:
                params.sel = selector
        q = np.ascontiguousarray(queries, dtype=np.float32)
        _, positions = self.index.search(q, k, params=params)
        del bitmap  # the selector borrowed it; keep it alive until here
        out: np.ndarray = positions
        return out

    def _hnsw_params(self, ef: int) -> Any:
        """Search parameters without a selector, made once per ``ef`` (building the SWIG object
        costs as much as a small search's bookkeeping); FAISS only reads them."""
        params = self._params_by_ef.get(ef)
        if params is None:
            if len(self._params_by_ef) >= 64:
                self._params_by_ef.clear()
            params = self._params_by_ef[ef] = faiss.SearchParametersHNSW(efSearch=ef)
        return params

    # -- checkpoints ------------------------------------------------------------------------
    def save(self, path: Path, *, collection_id: int, applied_seq: int) -> None:
        """Stream the checkpoint to disk. FAISS serialises the index twice, once into the
        checksum (the header, which holds it, precedes the body) and once into the file, 1 MiB
        at a time: a save costs no copy of the index in memory (it used to cost three, which
        set the server's peak RSS). The caller holds the index lock, so both passes agree."""
        ids_bytes = self.ids.astype("<i8").tobytes()
        digest = hashlib.sha256(ids_bytes)
        self._write_index_to(digest.update)
        header = json.dumps(
            {
                "format": FORMAT_VERSION,
                "collection_id": collection_id,
                "dim": self.dim,
                "metric": self.metric,
                "params": self.params.as_dict(),
                "applied_seq": applied_seq,
                "ntotal": self.ntotal,
                "ids_bytes": len(ids_bytes),
                "sha256": digest.hexdigest(),
            }
        ).encode()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(MAGIC + struct.pack("<I", len(header)) + header + ids_bytes)
            self._write_index_to(fh.write)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _write_index_to(self, sink: Callable[[bytes], object]) -> None:
        writer = faiss.PyCallbackIOWriter(sink)
        try:
            faiss.write_index(self.index, writer)
        finally:
            del writer  # flushes its last buffered chunk into ``sink``

    @classmethod
    def load(
        cls, path: Path, *, collection_id: int, dim: int, metric: str, params: IndexParams
    ) -> tuple[VectorIndex, int]:
        """Load and verify a checkpoint; returns the index and its ``applied_seq``."""
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise CheckpointError("no checkpoint file") from exc
        header = _parse_header(data)
        expected = {"collection_id": collection_id, "dim": dim, "metric": metric}
        for key, want in expected.items():
            if header.get(key) != want:
                raise CheckpointError(f"checkpoint {key} is {header.get(key)!r}, expected {want!r}")
        if header.get("params", {}).get("type") != params.type:
            raise CheckpointError("checkpoint index type differs from the collection's")
        start = 12 + int(header["_header_len"])
        body = memoryview(data)[start:]  # views, not copies: the file is as large as the index
        if hashlib.sha256(body).hexdigest() != header.get("sha256"):
            raise CheckpointError("checkpoint checksum mismatch")
        ids_bytes = header["ids_bytes"]
        if ids_bytes % 8 or ids_bytes > len(body):
            raise CheckpointError("checkpoint id list does not fit its body")
        ids = np.frombuffer(body[:ids_bytes], dtype="<i8").astype(np.int64)
        try:
            index = faiss.deserialize_index(np.frombuffer(body[ids_bytes:], dtype=np.uint8))
        except RuntimeError as exc:
            raise CheckpointError(f"faiss could not read the index: {exc}") from exc
        if index.ntotal != len(ids) or index.d != dim:
            raise CheckpointError("checkpoint index size does not match its id list")
        if len(ids) > 1 and not bool(np.all(np.diff(ids) > 0)):
            raise CheckpointError("checkpoint ids are not strictly increasing")
        out = cls(dim, metric, params)
        out.index = index
        if out.is_hnsw:
            index.hnsw.efSearch = params.ef_search
        out.ids = ids
        out.alive = np.ones(len(ids), dtype=bool)
        out.alive_count = len(ids)
        return out, int(header["applied_seq"])


def _parse_header(data: bytes) -> dict[str, Any]:
    if len(data) < 12 or data[:8] != MAGIC:
        raise CheckpointError("not a vecstore index file (bad magic)")
    (length,) = struct.unpack("<I", data[8:12])
    if 12 + length > len(data):
        raise CheckpointError("truncated checkpoint header")
    try:
        header = json.loads(data[12 : 12 + length])
    except ValueError as exc:
        raise CheckpointError("unreadable checkpoint header") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        raise CheckpointError("unsupported checkpoint format")
    # The checksum covers the body only: a damaged header must fail here, never with a KeyError.
    for key in ("ids_bytes", "applied_seq"):
        value = header.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CheckpointError(f"checkpoint header field {key!r} is missing or invalid")
    if not isinstance(header.get("params"), dict):
        raise CheckpointError("checkpoint header field 'params' is missing or invalid")
    header["_header_len"] = length
    return header
