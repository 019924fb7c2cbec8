"""The in-memory row table of one collection: ids, raw metadata and index-space vectors.

Rows are appended in internal-id order (ids are allocated monotonically), so the table stays
sorted by id and "rows newer than the index watermark" is a suffix. Deleted or replaced rows are
marked dead and squeezed out by ``compact()``. The caller serialises mutations with a lock.

Vectors are held for rows ``[vector_base, size)`` only (see ``row_vectors``): when the index
keeps exact copies, the rows below the base are read from it instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import repeat

import msgspec
import numpy as np

from vecstore.domain import FloatArray, IdArray
from vecstore.storage import id_hashes
from vecstore.storage.id_hashes import IdHashes
from vecstore.storage.metadata_index import MetadataIndex
from vecstore.storage.row_vectors import RowVectors

_MIN_CAPACITY = 1024
# Fewer ids than this are looked up in the dict: a handful of lookups costs less than the ten
# array calls of the hashed path.
HASHED_LOOKUP_MIN = 64
_decode = msgspec.json.Decoder().decode


class VectorTable:
    def __init__(self, dim: int, *, block_rows: int | None = None) -> None:
        self.dim = dim
        self._block_rows = block_rows
        self.size = 0  # rows in use, dead ones included
        self.alive_count = 0
        self._ids: IdArray = np.zeros(_MIN_CAPACITY, dtype=np.int64)
        self._vectors = RowVectors(dim, block_rows=block_rows)
        self._alive = np.zeros(_MIN_CAPACITY, dtype=bool)
        self.external_ids: list[str] = []
        self.metadata_json: list[bytes] = []
        self.row_by_external: dict[str, int] = {}
        self.metadata_index = MetadataIndex()
        # Sorted external-id hashes for lookups of many ids (``id_hashes``); None until built.
        self.id_hashes: IdHashes | None = None
        self.layout = 0  # bumped when rows are renumbered (compaction)

    # -- views (valid until the next mutation) ---------------------------------------------
    @property
    def ids(self) -> IdArray:
        return self._ids[: self.size]

    @property
    def vector_base(self) -> int:
        """Rows below this have no vector in the table (their index holds it)."""
        return self._vectors.base

    @property
    def held_vector_bytes(self) -> int:
        return self._vectors.held_bytes

    def vectors_of(self, rows: np.ndarray) -> FloatArray:
        """A copy of the vectors of ``rows``, each at or above ``vector_base``."""
        return self._vectors.gather(rows)

    def vector_ranges(self, start: int, stop: int, chunk: int) -> Iterator[tuple[int, FloatArray]]:
        """Views of the vectors of rows ``[start, stop)`` (at or above ``vector_base``)."""
        return self._vectors.ranges(start, stop, chunk)

    @property
    def alive(self) -> np.ndarray:
        return self._alive[: self.size]

    @property
    def dead_count(self) -> int:
        return self.size - self.alive_count

    # -- lookups --------------------------------------------------------------------------
    def rows_for_ids(self, ids: IdArray) -> np.ndarray:
        """Rows of the given internal ids; -1 where an id is absent or dead."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.size == 0 or ids.size == 0:
            return np.full(ids.shape, -1, dtype=np.int64)
        rows = self.ids.searchsorted(ids)
        rows = np.minimum(rows, self.size - 1)
        ok = (self._ids[rows] == ids) & self._alive[rows]
        return np.where(ok, rows, -1)

    def live_rows_of(self, ids: IdArray, listed: list[int]) -> list[int] | None:
        """The rows of a few ascending internal ids (``listed`` is ``ids.tolist()``, which the
        caller needs too; at least one id), when every one is a live row; else None. Few array
        calls: for the ten hits of one search, each costs more than the Python around it."""
        found = self.ids.searchsorted(ids)
        if int(found[-1]) >= self.size:  # ids sorted: only the last can be past the end
            return None
        if self._ids[found].tolist() != listed or not all(self._alive[found].tolist()):
            return None
        rows: list[int] = found.tolist()
        return rows

    def rows_of_external(self, external_ids: Sequence[str]) -> np.ndarray:
        """The live row of each external id (int64), -1 where there is none.

        Many ids go through the id fingerprints (``id_hashes``) while the table has not
        outgrown them: a row found there is accepted if it is still live, and every other id
        is looked up in the dict, which is always current (unless nothing was appended since
        the snapshot: then the snapshot alone is conclusive). Few ids, or a snapshot missing more
        than an eighth of the rows (each of those would pay for the hashing and then the
        dict), go to the dict alone."""
        n = len(external_ids)
        hashed = self.id_hashes
        lookup = self.row_by_external.get
        if hashed is None or n < HASHED_LOOKUP_MIN or hashed.is_stale(self.size):
            return np.fromiter(map(lookup, external_ids, repeat(-1)), dtype=np.int64, count=n)
        rows, ok = hashed.find(external_ids)
        ok &= self._alive[rows]  # rows below the snapshot's size, so within the table
        if not ok.all():
            others = np.flatnonzero(~ok)
            if hashed.covers == self.size and hashed.unique_first_halves:
                # Nothing appended since the snapshot, and rows never come back to life: every
                # live row was live when it was built, so every live id is in it under its own
                # first half. An id not found there, or found dead, has no live row.
                rows[others] = -1
                return rows
            rows[others] = np.fromiter(
                map(lookup, map(external_ids.__getitem__, others.tolist()), repeat(-1)),
                dtype=np.int64,
                count=len(others),
            )
        return rows

    def id_hashes_due(self) -> bool:
        """Whether ``CollectionRuntime.hash_external_ids`` would build a snapshot: enough live
        rows, and none yet or one the table has outgrown."""
        if self.alive_count < id_hashes.MIN_ROWS:
            return False
        return self.id_hashes is None or self.id_hashes.is_stale(self.size)

    def id_hashes_source(self) -> tuple[int, int, list[str], np.ndarray]:
        """What ``IdHashes.of`` needs, read under the table lock so that the build can run
        outside it: the layout and size it belongs to, the external-id list and the live rows.
        The list may be read outside the lock below that size: appends extend it, kills leave
        it alone, and compaction replaces it with a new list (and bumps the layout)."""
        return self.layout, self.size, self.external_ids, np.flatnonzero(self.alive)

    def first_row_after(self, internal_id: int) -> int:
        """Index of the first row whose id is greater than ``internal_id``."""
        return int(self.ids.searchsorted(internal_id, side="right"))

    # -- mutations ------------------------------------------------------------------------
    def append(
        self, ids: IdArray, vectors: FloatArray, external_ids: list[str], metadata: list[bytes]
    ) -> None:
        n = len(ids)
        if n == 0:
            return
        if self.size and int(ids[0]) <= int(self._ids[self.size - 1]):
            raise ValueError("internal ids must be appended in increasing order")
        if len(vectors) != n or len(external_ids) != n or len(metadata) != n:
            raise ValueError("ids, vectors, external ids and metadata differ in length")
        for ext in external_ids:  # checked before anything changes: a refusal leaves no trace
            old = self.row_by_external.get(ext)
            if old is not None and self._alive[old]:
                raise ValueError(f"external id {ext!r} is already live; kill its row first")
        self._reserve(self.size + n)
        end = self.size + n
        self._ids[self.size : end] = ids
        self._vectors.append(vectors)
        self._alive[self.size : end] = True
        for offset, ext in enumerate(external_ids):
            self.row_by_external[ext] = self.size + offset
        self.external_ids.extend(external_ids)
        self.metadata_json.extend(metadata)
        for offset, raw in enumerate(metadata):
            self.metadata_index.add(self.size + offset, _decode(raw) if raw else {})
        self.size = end
        self.alive_count += n

    def kill_rows(self, rows: np.ndarray) -> None:
        for row in rows.tolist():
            if row < 0 or not self._alive[row]:
                continue
            self._alive[row] = False
            self.alive_count -= 1
            ext = self.external_ids[row]
            if self.row_by_external.get(ext) == row:
                del self.row_by_external[ext]
            self.metadata_json[row] = b""

    def drop_vectors_below(self, row: int) -> None:
        """Free the vectors of rows below ``row``: the caller guarantees every live one of them
        can be read from the index from now on."""
        self._vectors.drop_below(row)

    def compact(self) -> None:
        """Drop dead rows. O(rows); called when dead rows pass a fraction of the table."""
        keep = np.flatnonzero(self.alive)
        n = len(keep)
        cap = max(_MIN_CAPACITY, n * 2)
        ids = np.zeros(cap, dtype=np.int64)
        alive = np.zeros(cap, dtype=bool)
        ids[:n] = self._ids[keep]
        alive[:n] = True
        # Kept rows below the vector base stay without a vector; the rest are copied down.
        held = keep[keep >= self._vectors.base]
        vectors = RowVectors(self.dim, block_rows=self._block_rows, base=n - len(held))
        vectors.append(self._vectors.gather(held))
        keep_list = keep.tolist()
        self.external_ids = [self.external_ids[i] for i in keep_list]
        self.metadata_json = [self.metadata_json[i] for i in keep_list]
        self.row_by_external = {ext: row for row, ext in enumerate(self.external_ids)}
        self._ids, self._vectors, self._alive = ids, vectors, alive
        self.size = n
        self.alive_count = n
        self.metadata_index = MetadataIndex()
        self.id_hashes = None  # its rows are the old numbering
        self.layout += 1
        for row, raw in enumerate(self.metadata_json):
            self.metadata_index.add(row, _decode(raw) if raw else {})

    def _reserve(self, needed: int) -> None:
        cap = len(self._ids)
        if needed <= cap:
            return
        new_cap = max(needed, cap * 2)
        ids = np.zeros(new_cap, dtype=np.int64)
        alive = np.zeros(new_cap, dtype=bool)
        ids[: self.size] = self._ids[: self.size]
        alive[: self.size] = self._alive[: self.size]
        # New arrays, never resized in place: a reader holding an old view keeps valid memory.
        self._ids, self._alive = ids, alive
