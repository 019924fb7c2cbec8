"""The live state of one collection: its row table, its FAISS index, and how to search both.

Correctness rests on the row table (a mirror of the committed ``records`` rows): every candidate
the index returns is checked against it, so a deleted or replaced record is never returned even
before its tombstone reaches the index. Rows newer than the index watermark form the "fresh"
segment, scanned exactly on every search until the background indexer moves them into FAISS.

Each vector is held once. When the index stores exact vectors (flat, HNSW-flat), the table frees
its copy of every row the indexer has moved into FAISS and reads those rows from the index's
storage instead, under the index lock (an ``add`` may move that memory). Lock order: table lock,
then index lock.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import compress

import msgspec
import numpy as np

from vecstore.domain import FloatArray, Hit, IdArray, IndexParams
from vecstore.storage.filters import Node
from vecstore.storage.id_hashes import IdHashes
from vecstore.storage.rwlock import RWLock
from vecstore.storage.vector_index import VectorIndex
from vecstore.storage.vector_table import VectorTable

_SCAN_CHUNK = 32768
_NO_ROWS: IdArray = np.zeros(0, dtype=np.int64)
_decode_many = msgspec.json.Decoder(list[dict[str, object]]).decode
MIN_TRAINING_VECTORS = 1024
MAX_TRAINING_VECTORS = 65536
# What a search may cost and still run on the event loop (see ``answers_quickly``): a thread hop
# costs more than such a search on a small machine, but anything bigger must not stall the loop.
QUICK_MAX_RESULTS = 100
QUICK_MAX_EF = 512
QUICK_FRESH_ROWS = 4096
QUICK_FLAT_ROWS = 16384
QUICK_MAX_CANDIDATES = 2000


@dataclass
class CollectionRuntime:
    id: int
    name: str
    dim: int
    metric: str
    params: IndexParams
    embedding_model: str | None = None
    exact_filter_max_matches: int = 20000
    table: VectorTable = field(init=False)
    index: VectorIndex = field(init=False)
    table_lock: RWLock = field(default_factory=RWLock)
    index_lock: RWLock = field(default_factory=RWLock)
    applied_seq: int = 0
    checkpoint_seq: int = -1
    changes_since_checkpoint: int = 0
    last_change_monotonic: float = 0.0
    pending_kills: deque[IdArray] = field(default_factory=deque)
    indexer_mutex: threading.Lock = field(default_factory=threading.Lock)
    huge_pages_due: bool = True  # the indexer's next round puts the index on huge pages

    def __post_init__(self) -> None:
        self.table = VectorTable(self.dim)
        self.index = VectorIndex(self.dim, self.metric, self.params)

    # -- vectors ----------------------------------------------------------------------------
    def to_index_space(self, vectors: FloatArray) -> FloatArray:
        """Cosine collections index unit vectors; raw vectors stay in the database."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.metric != "cosine":
            return vectors
        # In float64: the norm of large float32 values overflows float32.
        wide = vectors.astype(np.float64)
        squares = np.einsum("...i,...i->...", wide, wide)
        if squares.ndim == 1 and len(squares) == 1:
            # One query (a search request): the same values with half the array calls, each
            # of which costs microseconds on the request path. ``math.sqrt`` and ``np.sqrt``
            # are both correctly rounded, and dividing by a scalar is the broadcast division.
            wide /= max(math.sqrt(float(squares[0])), 1e-300)
        else:
            wide /= np.maximum(np.sqrt(squares), 1e-300)[..., None]
        out: FloatArray = wide.astype(np.float32)
        return out

    def scores(self, vectors: FloatArray, query: FloatArray) -> np.ndarray:
        """Exact "higher is better" scores of index-space vectors against an index-space query."""
        if self.metric == "l2":
            diff = vectors - query
            dist: np.ndarray = np.sqrt(np.einsum("ij,ij->i", diff, diff))
            return -dist
        dots: np.ndarray = vectors @ query
        return dots

    # -- mutations (caller holds the engine's write lock) --------------------------------------
    def apply_write(
        self,
        *,
        killed_ids: IdArray,
        new_ids: IdArray,
        new_vectors: FloatArray,
        external_ids: list[str],
        metadata_json: list[bytes],
        seq: int,
        now: float,
    ) -> None:
        with self.table_lock.write():
            if len(killed_ids):
                self.table.kill_rows(self.table.rows_for_ids(killed_ids))
            self.table.append(
                new_ids, self.to_index_space(new_vectors), external_ids, metadata_json
            )
        if len(killed_ids):
            self.pending_kills.append(np.asarray(killed_ids, dtype=np.int64))
        self.applied_seq = max(self.applied_seq, seq)
        self.changes_since_checkpoint += len(killed_ids) + len(new_ids)
        self.last_change_monotonic = now

    # -- reads --------------------------------------------------------------------------------
    @property
    def vector_count(self) -> int:
        return self.table.alive_count

    def answers_quickly(self, n: int, ef_search: int | None) -> bool:
        """Whether an unfiltered approximate search for ``n`` results is cheap enough to run on
        the event loop: a bounded HNSW beam (or a small flat index) plus an exact scan of a
        small fresh segment. Reads sizes without a lock: an estimate, never a correctness
        question (the search itself takes the locks)."""
        index, table = self.index, self.table
        if n > QUICK_MAX_RESULTS:
            return False
        if index.is_hnsw:
            if max(ef_search or self.params.ef_search, n) > QUICK_MAX_EF:
                return False
        elif index.ntotal > QUICK_FLAT_ROWS:
            return False
        return table.size - table.first_row_after(index.watermark) <= QUICK_FRESH_ROWS

    def search(
        self,
        query: FloatArray,
        n: int,
        *,
        ef_search: int | None = None,
        exact: bool = False,
        node: Node | None = None,
        blocking: bool = True,
    ) -> list[Hit]:
        """Top ``n`` rows by exact score; ``node`` restricts them to a filter's matches.

        ``blocking=False``: raise ``WouldBlock`` instead of waiting for a writer's lock."""
        if node is None and not exact:
            return self.search_many(
                query.reshape(1, -1), n, ef_search=ef_search, blocking=blocking
            )[0]
        q = self.to_index_space(query.reshape(-1))
        with self.table_lock.read(blocking=blocking):
            table = self.table
            if node is None:
                with self._reading_vectors(blocking=blocking):
                    return self._top(self._scan_rows(0, table.size, q, n), q, n)
            allowed_rows = self._matching_rows(node)
            if exact or len(allowed_rows) <= self.exact_filter_max_matches:
                with self._reading_vectors(blocking=blocking):
                    return self._top(allowed_rows, q, n)
            with self.index_lock.read(blocking=blocking):
                return self._index_search(q, n, ef_search, allowed_rows)

    def search_many(
        self,
        queries: FloatArray,
        n: int,
        *,
        ef_search: int | None = None,
        blocking: bool = True,
    ) -> list[list[Hit]]:
        """The unfiltered approximate ``search`` of each row of ``queries``, with one index search
        for all of them: concurrent requests batched into one FAISS call, which spreads them
        over its threads. Each answer is the one ``search`` gives for its query alone."""
        qs = self.to_index_space(queries)
        if n <= 0:
            return [[] for _ in qs]
        with self.table_lock.read(blocking=blocking), self.index_lock.read(blocking=blocking):
            table, index = self.table, self.index
            fresh_start = table.first_row_after(index.watermark)
            fresh = fresh_start < table.size
            if fresh:
                indexed_available = int(np.count_nonzero(table.alive[:fresh_start]))
            else:
                indexed_available = table.alive_count
            if not indexed_available:
                return [self._top(self._scan_rows(fresh_start, table.size, q, n), q, n) for q in qs]
            factor = self.params.rescore_factor if self.params.type == "hnsw_sq8" else 1
            fetch = min(n * factor, indexed_available)
            ef = max(ef_search or self.params.ef_search, fetch)
            positions = index.search_positions(qs, fetch, ef_search=ef)
            if len(qs) == 1 and not fresh and fetch == n and index.holds_exact_vectors:
                lone = self._top_of_lone_hits(qs[0], positions[0], n)
                if lone is not None:
                    return [lone]
            ids = index.ids[positions]
            short = bool((positions < 0).any())
            if short:  # FAISS pads with -1 (which picked the last id just now)
                ids[positions < 0] = -1
            rows = table.rows_for_ids(ids)
            if not fresh and not short and bool((rows >= 0).all()):
                return self._top_of_index_hits(qs, rows, positions, n)
            needed = min(n, indexed_available)
            out: list[list[Hit]] = []
            for q, found in zip(qs, rows, strict=True):
                candidates = found[found >= 0]
                if len(candidates) < needed:
                    # Tombstones the index has not applied yet took live rows' places: the
                    # search that widens its beam (or scans) until enough are found.
                    out.append(self._index_search(q, n, ef_search, None))
                    continue
                if fresh_start < table.size:
                    fresh_rows = self._scan_rows(fresh_start, table.size, q, n)
                    candidates = np.concatenate([candidates, fresh_rows])
                out.append(self._top(candidates, q, n))
            return out

    def _top_of_index_hits(
        self, qs: FloatArray, rows: np.ndarray, positions: np.ndarray, n: int
    ) -> list[list[Hit]]:
        """``_top`` of each query's index hits when every hit is a live row and nothing else is
        a candidate (no fresh rows): the usual case, with the per-query work done once for the
        batch. Each query's rows are put in row order and their vectors read from the index's
        storage (the same values ``_vectors_of`` reads), so each query is scored exactly as
        ``_top`` scores it. Caller holds both locks."""
        by_row = (np.arange(len(rows))[:, None], np.argsort(rows, axis=1))
        rows = rows[by_row]
        if self.index.holds_exact_vectors:
            vectors = self.index.stored_vectors()[positions[by_row]]
        else:
            vectors = self._vectors_of(rows.ravel()).reshape(*rows.shape, self.dim)
        out: list[list[Hit]] = []
        for q, found, stored in zip(qs, rows, vectors, strict=True):
            scores = self.scores(stored, q)
            if len(scores) > n:  # a re-scored quantised index fetched more than n
                keep = _best(scores, n)
                found, scores = found[keep], scores[keep]
            best = np.lexsort((found, -scores))[:n]
            out.append(self._scored(found[best], scores[best]))
        return out

    def _top_of_lone_hits(self, q: FloatArray, positions: np.ndarray, n: int) -> list[Hit] | None:
        """``_top_of_index_hits`` for one query (a client searching alone), or None when one of
        its hits is not a live row. The same scores (the same gather in row order, the same
        ``scores`` call) and order, with the per-hit bookkeeping on Python lists: right after
        an HNSW search has swept the core's caches, each numpy call costs several
        microseconds, a list operation on ten items a fraction of one. Sorts ``positions`` (the
        query's own row of FAISS's answer) in place. Caller holds both locks."""
        # FAISS positions, internal ids and rows all grow together (ids are added in
        # increasing order, and rows are kept in id order): position order is row order.
        positions.sort()
        if positions[0] < 0:  # FAISS pads a short answer with -1, which sorts first
            return None
        index = self.index
        ids = index.ids[positions]
        internal: list[int] = ids.tolist()
        rows = self.table.live_rows_of(ids, internal)
        if rows is None:
            return None
        scores: list[float] = self.scores(index.stored_vectors()[positions], q).tolist()
        if any(map(math.isnan, scores)):
            # Huge inner products overflow to inf - inf; lexsort puts NaN last, a sort by key
            # would leave it anywhere. The general path ranks these as it ranks a batch.
            return None
        # Best score first, ties in row order: a stable sort keeps equal keys in their (row)
        # order even when reversed.
        ranked = sorted(range(len(rows)), key=scores.__getitem__, reverse=True)[:n]
        return self._hits_of(
            [rows[i] for i in ranked], [scores[i] for i in ranked], [internal[i] for i in ranked]
        )

    @contextmanager
    def _reading_vectors(self, *, blocking: bool = True) -> Iterator[None]:
        """The index lock a vector read needs, taken only when some rows live in the index
        alone (caller holds the table lock, so the table's vector base cannot move)."""
        if self.table.vector_base == 0:
            yield
            return
        with self.index_lock.read(blocking=blocking):
            yield

    def _vectors_of(self, rows: np.ndarray) -> FloatArray:
        """Copies of the vectors of live ``rows``, from the table or, below its vector base,
        from the index (caller holds the table lock and, see ``_reading_vectors``, the index
        lock)."""
        positions = self._indexed_positions(rows)
        if positions is not None:  # the usual case once indexed: one gather, no merge
            found: FloatArray = self.index.stored_vectors()[positions]
            return found
        table = self.table
        base = table.vector_base
        if base == 0 or len(rows) == 0 or int(rows.min()) >= base:
            return table.vectors_of(rows)
        low = np.flatnonzero(rows < base)
        high = np.flatnonzero(rows >= base)
        out: FloatArray = np.empty((len(rows), self.dim), dtype=np.float32)
        out[low] = self.index.stored_vectors()[
            self.index.positions_of_indexed(table.ids[rows[low]])
        ]
        out[high] = table.vectors_of(rows[high])
        return out

    def _indexed_positions(self, rows: np.ndarray) -> np.ndarray | None:
        """The FAISS positions of ``rows`` when every one lives in the index alone (below the
        table's vector base), else None (caller holds the locks ``_vectors_of`` needs)."""
        base = self.table.vector_base
        if base == 0 or len(rows) == 0 or int(rows.max()) >= base:
            return None
        return self.index.positions_of_indexed(self.table.ids[rows])

    def _scores_of(self, rows: np.ndarray, q: FloatArray) -> np.ndarray:
        """``scores(_vectors_of(rows), q)`` for the exact scores of named records (rerank,
        ``score_ids``): rows that live in the index alone, the usual case once indexed, are
        scored where FAISS keeps them, without copying them out first. Search ranks its hits
        with ``scores`` on gathered rows instead, so that all its paths score alike; the two
        may differ in the last bits (summation order). Same locks as ``_vectors_of``."""
        positions = self._indexed_positions(rows)
        if positions is not None:
            return self.index.scores_at(q, positions)
        return self.scores(self._vectors_of(rows), q)

    def _index_search(
        self, q: FloatArray, n: int, ef_search: int | None, allowed_rows: np.ndarray | None
    ) -> list[Hit]:
        table, index = self.table, self.index
        fresh_start = table.first_row_after(index.watermark)
        alive = table.alive
        if allowed_rows is None:
            fresh_rows = self._scan_rows(fresh_start, table.size, q, n)
            indexed_available = int(np.count_nonzero(alive[:fresh_start]))
            mask = None
        else:
            fresh_rows = allowed_rows[allowed_rows >= fresh_start]
            indexed_rows = allowed_rows[allowed_rows < fresh_start]
            indexed_available = len(indexed_rows)
            mask = np.zeros(index.ntotal, dtype=bool)
            mask[index.positions_of(table.ids[indexed_rows])] = True
        candidates = np.zeros(0, dtype=np.int64)
        if indexed_available:
            factor = self.params.rescore_factor if self.params.type == "hnsw_sq8" else 1
            fetch = min(n * factor, indexed_available)
            needed = min(n, indexed_available)
            ef = max(ef_search or self.params.ef_search, fetch)
            if mask is not None and index.is_hnsw:
                # A selector hides most of the graph's neighbours: widen the beam by the
                # inverse selectivity (at most 16x) so recall holds on filtered searches.
                selectivity = indexed_available / max(1, index.alive_count)
                ef = min(index.ntotal, int(ef * min(16.0, 1.0 / max(selectivity, 1e-9))))
            while True:
                ids = index.search(q, fetch, ef_search=ef, allowed=mask)
                rows = table.rows_for_ids(ids)
                candidates = rows[rows >= 0]
                if len(candidates) >= needed:
                    break
                if not index.is_hnsw or ef >= index.ntotal:
                    # Tombstones not yet applied, or a graph that cannot reach enough allowed
                    # points: fall back to an exact scan of the indexed part, never under-fill.
                    if allowed_rows is None:
                        candidates = self._scan_rows(0, fresh_start, q, n)
                    else:
                        candidates = allowed_rows[allowed_rows < fresh_start]
                    break
                ef *= 2
                fetch = min(max(fetch, n) * 2, indexed_available + index.tombstones)
        return self._top(np.concatenate([candidates, fresh_rows]), q, n)

    def _top(self, rows: np.ndarray, q: FloatArray, n: int) -> list[Hit]:
        if len(rows) == 0 or n <= 0:
            return []
        rows = _sorted_unique(rows)  # sorted by row == by internal id: a stable tie-break
        scores = self.scores(self._vectors_of(rows), q)
        keep = _best(scores, n)
        rows, scores = rows[keep], scores[keep]
        order = np.lexsort((rows, -scores))[:n]
        return self._scored(rows[order], scores[order])

    def _scan_rows(self, start: int, stop: int, q: FloatArray, n: int) -> np.ndarray:
        """The best ``n`` live rows in ``[start, stop)`` (ties kept), scored on views in chunks:
        no copy of the scanned vectors, bounded temporary memory. Rows below the table's vector
        base are scanned in the index's storage (caller holds both locks)."""
        table = self.table
        found: list[np.ndarray] = []
        base = table.vector_base
        if start < base and bool(table.alive[start : min(stop, base)].any()):
            found.append(self._scan_indexed(start, min(stop, base), q, n))
        for lo, view in table.vector_ranges(max(start, base), max(stop, base), _SCAN_CHUNK):
            scores = self.scores(view, q)
            alive = table.alive[lo : lo + len(view)]
            scores[~alive] = -np.inf
            keep = _best(scores, n)
            keep = keep[alive[keep]]  # not isfinite: a live score may overflow to -inf
            found.append(lo + keep)
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def _scan_indexed(self, start: int, stop: int, q: FloatArray, n: int) -> np.ndarray:
        """``_scan_rows`` for rows the index alone holds: walk its storage by position and keep
        the positions whose id is a live row in ``[start, stop)``."""
        index, table = self.index, self.table
        stored = index.stored_vectors()
        found: list[np.ndarray] = []
        for lo in range(0, index.ntotal, _SCAN_CHUNK):
            hi = min(lo + _SCAN_CHUNK, index.ntotal)
            rows = table.rows_for_ids(index.ids[lo:hi])
            wanted = (rows >= start) & (rows < stop)  # dead or absent rows are -1
            scores = self.scores(stored[lo:hi], q)
            scores[~wanted] = -np.inf
            keep = _best(scores, n)
            found.append(rows[keep[wanted[keep]]])
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def _scored(self, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
        """Rows (already ordered) to results; bulk ``tolist`` keeps numpy out of the loop."""
        return self._hits_of(rows.tolist(), scores.tolist(), self.table.ids[rows].tolist())

    def _hits_of(self, rows: list[int], scores: list[float], internal_ids: list[int]) -> list[Hit]:
        table = self.table
        ext, meta = table.external_ids, table.metadata_json
        # One decode of a JSON array instead of one call per hit (live rows never hold b"").
        metadata = _decode_many(b"[" + b",".join([meta[r] for r in rows]) + b"]")
        externals = [ext[r] for r in rows]
        distances = [-s for s in scores] if self.metric == "l2" else [None] * len(rows)
        return list(map(Hit, externals, scores, internal_ids, metadata, distances))

    def _matching_rows(self, node: Node) -> np.ndarray:
        """Live rows matching a filter (caller holds the table lock)."""
        table = self.table
        mask = table.metadata_index.evaluate(node, table.size) & table.alive
        return np.flatnonzero(mask)

    def matching_ids(self, node: Node) -> IdArray:
        with self.table_lock.read():
            out: IdArray = self.table.ids[self._matching_rows(node)]
            return out

    def passing(self, internal_ids: IdArray, node: Node | None) -> np.ndarray:
        """For each internal id: is it a live record (matching ``node``, when given)?"""
        with self.table_lock.read():
            rows = self.table.rows_for_ids(internal_ids)
            ok: np.ndarray = rows >= 0
            if node is not None and ok.any():
                mask = self.table.metadata_index.evaluate(node, self.table.size)
                ok[ok] = mask[rows[ok]]
            return ok

    def score_ids(self, query: FloatArray | None, internal_ids: IdArray) -> list[Hit]:
        """Exact scores of live records given by internal id, in the given order (absent or
        deleted ids are left out). Without a query every score is 0: metadata only."""
        q = None if query is None else self.to_index_space(query.reshape(-1))
        with self.table_lock.read(), self._reading_vectors():
            rows = self.table.rows_for_ids(np.asarray(internal_ids, dtype=np.int64))
            rows = rows[rows >= 0]
            if len(rows) == 0:
                return []
            if q is None:
                return self._scored(rows, np.zeros(len(rows)))
            return self._scored(rows, self._scores_of(rows, q))

    def count(self, node: Node | None) -> int:
        if node is None:
            return self.vector_count
        with self.table_lock.read():
            return len(self._matching_rows(node))

    def rerank(
        self,
        query: FloatArray,
        external_ids: list[str],
        *,
        top_k: int | None = None,
        score_threshold: float | None = None,
        blocking: bool = True,
    ) -> tuple[list[Hit], list[str]]:
        """Exact scores of the named records, sorted descending (ties keep input order); only
        the best ``top_k`` at or above ``score_threshold`` become results (building a result
        decodes its metadata, so a 1,000-candidate call asking for 10 builds 10).
        ``blocking=False``: raise ``WouldBlock`` instead of waiting for a writer."""
        q = self.to_index_space(query.reshape(-1))
        with self.table_lock.read(blocking=blocking), self._reading_vectors(blocking=blocking):
            table = self.table
            found = table.rows_of_external(external_ids)  # -1 for an id with no live record
            absent = found < 0
            not_found: list[str] = []
            if absent.any():
                not_found = list(compress(external_ids, absent.tolist()))
                found = found[~absent]
            if len(found) == 0:
                return [], not_found
            # Read and score the rows in row order: sorted lookups and a forward walk through
            # the vectors (random reads of 1,000 rows cost more than scoring them), then the
            # scores go back to the candidates' order. Each row's score does not depend on the
            # order it is scored in.
            by_row = np.argsort(found)
            scored = self._scores_of(found[by_row], q)
            scores = np.empty_like(scored)
            scores[by_row] = scored
            best = _ranked(scores, top_k, score_threshold)
            return self._scored(found[best], scores[best]), not_found

    def index_vector_of(self, external_id: str) -> tuple[int, FloatArray] | None:
        with self.table_lock.read(), self._reading_vectors():
            row = self.table.row_by_external.get(external_id)
            if row is None:
                return None
            rows = np.asarray([row], dtype=np.int64)
            return int(self.table.ids[row]), self._vectors_of(rows)[0]

    # -- background work (indexer thread only) ------------------------------------------------
    def fresh_count(self) -> int:
        with self.table_lock.read():
            start = self.table.first_row_after(self.index.watermark)
            return int(np.count_nonzero(self.table.alive[start:]))

    def index_step(self, batch_size: int, keep_fresh: int = 0) -> bool:
        """Move up to ``batch_size`` fresh rows into the index, leaving at least ``keep_fresh``
        of the newest in the fresh segment; True if it did any work."""
        did = self._apply_pending_kills()
        with self.table_lock.read():
            table = self.table
            start = table.first_row_after(self.index.watermark)
            rows = start + np.flatnonzero(table.alive[start:])
            if self.index.needs_training:
                # A quantiser trained on a handful of vectors would be useless; until enough
                # arrive they stay in the (exactly scanned) fresh segment.
                if len(rows) < MIN_TRAINING_VECTORS:
                    return did
                # Fresh rows: the table holds their vectors (rows the index lacks never lose
                # theirs), and vectors_of copies.
                sample = table.vectors_of(rows[:MAX_TRAINING_VECTORS])
                with self.index_lock.write():
                    self.index.train(sample)
            rows = rows[: max(0, min(batch_size, len(rows) - keep_fresh))]
            if len(rows) == 0:
                return did
            ids = table.ids[rows].copy()
            vectors = table.vectors_of(rows)
        with self.index_lock.write():
            self.index.add(ids, vectors)
        del vectors
        # A writer may have replaced some of these rows after we copied them.
        with self.table_lock.read():
            gone = ids[self.table.rows_for_ids(ids) < 0]
        if len(gone):
            with self.index_lock.write():
                self.index.kill(gone)
        self.release_indexed_vectors()
        return True

    def release_indexed_vectors(self) -> None:
        """Free the table's copy of every row up to the index watermark, when the index keeps
        exact vectors: each live one of them is in the index (indexer thread, or load)."""
        if not self.index.holds_exact_vectors:
            return
        with self.table_lock.write():
            self.table.drop_vectors_below(self.table.first_row_after(self.index.watermark))

    def _apply_pending_kills(self) -> bool:
        batches = []
        while self.pending_kills:
            batches.append(self.pending_kills.popleft())
        if not batches:
            return False
        with self.index_lock.write():
            self.index.kill(np.concatenate(batches))
        return True

    def sync_index_with_table(self) -> None:
        """Tombstone every index entry whose row is no longer live (after load or rebuild)."""
        with self.table_lock.read(), self.index_lock.write():
            idx = self.index
            if idx.ntotal:
                dead = idx.ids[self.table.rows_for_ids(idx.ids) < 0]
                idx.kill(dead)

    def rebuild_index(self, batch_size: int) -> None:
        """Build a compacted index from the live indexed rows, then swap it in."""
        with self.table_lock.read(), self.index_lock.read():
            table = self.table
            end = table.first_row_after(self.index.watermark)
            rows = np.flatnonzero(table.alive[:end])
            ids = table.ids[rows].copy()
            vectors = self._vectors_of(rows)
        fresh = VectorIndex(self.dim, self.metric, self.params)
        if fresh.needs_training:
            if len(ids) < MIN_TRAINING_VECTORS:
                # Too few to train a quantiser: an empty index leaves them all fresh.
                ids, vectors = ids[:0], vectors[:0]
            else:
                fresh.train(vectors[:MAX_TRAINING_VECTORS])
        for start in range(0, len(ids), max(batch_size, 4096)):
            stop = start + max(batch_size, 4096)
            fresh.add(ids[start:stop], vectors[start:stop])
        self.pending_kills.clear()
        with self.index_lock.write():
            self.index = fresh
        self.sync_index_with_table()

    def hash_external_ids(self) -> bool:
        """Build the table's sorted id hashes (``id_hashes``) when due; True if it did. The
        hashing and sorting (~35 ms per 100k rows) run outside the table lock, so writers do
        not wait for them; a compaction meanwhile makes the result useless, and it is
        dropped. Indexer thread only."""
        with self.table_lock.read():
            table = self.table
            if not table.id_hashes_due():
                return False
            layout, size, external_ids, rows = table.id_hashes_source()
        built = IdHashes.of(external_ids, rows, size)
        with self.table_lock.read():  # compaction, the only renumbering, takes the write side
            if table.layout != layout:
                return False
            table.id_hashes = built  # one reference: a reader sees the old snapshot or this
        return True

    def maybe_compact_table(self) -> bool:
        table = self.table
        if table.dead_count > 1024 and table.dead_count > 0.25 * table.size:
            with self.table_lock.write():
                self.table.compact()
            return True
        return False


def _sorted_unique(rows: np.ndarray) -> np.ndarray:
    """``np.unique`` for the few candidate rows of a search: sort and drop repeats, without its
    general machinery (which costs more than the sort at this size)."""
    rows = np.sort(rows)
    if len(rows) > 1:
        rows = rows[np.concatenate(([True], rows[1:] != rows[:-1]))]
    return rows


def _ranked(scores: np.ndarray, top_k: int | None, threshold: float | None) -> np.ndarray:
    """Indices of the scores at or above ``threshold``, best first, ties in index order (what a
    stable sort gives), at most ``top_k``: only the candidates that can make the cut are
    sorted."""
    keep = np.arange(len(scores)) if threshold is None else np.flatnonzero(scores >= threshold)
    if top_k is not None and top_k < len(keep):
        kept = scores[keep]
        kth = -np.partition(-kept, top_k - 1)[top_k - 1]  # the top_k-th best score
        keep = keep[kept >= kth]
    order: np.ndarray = keep[np.argsort(-scores[keep], kind="stable")]
    return order[:top_k] if top_k is not None else order


def _best(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` highest scores and of every score tied with the n-th."""
    if len(scores) <= n:
        return np.arange(len(scores))
    threshold = -np.partition(-scores, n - 1)[n - 1]
    return np.flatnonzero(scores >= threshold)
