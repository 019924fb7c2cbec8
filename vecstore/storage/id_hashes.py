"""Sorted fingerprints of the live rows' external ids: many ids to rows in a few array calls.

A rerank of 1,000 candidates looks up 1,000 external ids. Through the table's dict each lookup
follows pointers to places spread over the heap (the dict's entry, the stored key it compares,
the row's int object): about 0.7 ms of a 1.4 ms rerank at 100k rows in a scratch profile,
nearly all of it cache and TLB misses. Checking a hashed candidate against the stored string
costs two of those misses per id again (~0.4 ms for 1,000, scratch), so the check here reads
arrays, not strings (``benchmarks/run_request_path.py`` times the lookups both ways).

Each id gets a 128-bit fingerprint: ``hash(id)`` and ``hash(id + "\\0")``. Python hashes strings
with SipHash under a key drawn at random per process (PEP 456), a keyed pseudo-random function:
two different ids agree on both halves with probability 2**-128, and without the key nobody can
choose ids that do. The first halves are sorted and searched with one ``searchsorted``; the
second halves are compared for the one row each search lands on.

``IdHashes`` is a snapshot, never updated in place: rows appended after it was built are not in
it, and rows killed since are still there. The table therefore accepts a row found here only if
it is live, and looks every other id up in its dict, which is always current: a snapshot older
than the latest writes costs speed, never a wrong row. While nothing has been appended since,
the snapshot is conclusive on its own (``VectorTable.rows_of_external``). Once the table has
grown by more than an eighth since, it stops using the snapshot (the hashing would be paid for
and most new ids then looked up in the dict anyway) until the indexer builds a new one, when
writes pause. Row numbers change only when the table compacts, which drops the snapshot.

With ``PYTHONHASHSEED`` set, the key is fixed and known: the 2**-128 then holds for ids nobody
chose to collide (finding a colliding pair still takes ~2**64 hash evaluations).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

import numpy as np

# Below this many live rows the dict's entries stay in cache and the arrays would not pay.
MIN_ROWS = 4096
# A table that has grown by more than 1/STALE_FRACTION of the rows a snapshot covers no longer
# uses it, and the indexer builds a new one once writes pause.
STALE_FRACTION = 8


# Ids hashed per array call while building: each call holds the GIL throughout (~3 ms for
# this many), so other threads, the event loop among them, get it back between calls
# (``benchmarks/run_request_path.py`` times the longest wait of a ticker thread both ways).
BUILD_CHUNK = 16384


def _fingerprints(ids: Sequence[str], count: int) -> tuple[np.ndarray, np.ndarray]:
    """The two 64-bit halves of each id's fingerprint, as int64 arrays. ``hash(str)`` is cached
    in the string; the second half hashes a new string, so costs ~80 ns an id."""
    first = np.fromiter(map(hash, ids), dtype=np.int64, count=count)
    second = np.fromiter(
        map(hash, map(str.__add__, ids, repeat("\0"))), dtype=np.int64, count=count
    )
    return first, second


def _fingerprints_in_chunks(ids: Sequence[str], count: int) -> tuple[np.ndarray, np.ndarray]:
    """``_fingerprints`` of ``ids[:count]``, ``BUILD_CHUNK`` ids per call."""
    first = np.empty(count, dtype=np.int64)
    second = np.empty(count, dtype=np.int64)
    for start in range(0, count, BUILD_CHUNK):
        stop = min(count, start + BUILD_CHUNK)
        first[start:stop], second[start:stop] = _fingerprints(ids[start:stop], stop - start)
    return first, second


class IdHashes:
    """Fingerprints of the live rows below ``covers``, sorted by first half, with their rows."""

    __slots__ = ("checks", "covers", "hashes", "rows", "unique_first_halves")

    def __init__(self, hashes: np.ndarray, checks: np.ndarray, rows: np.ndarray, covers: int):
        self.hashes = hashes  # first halves, ascending
        self.checks = checks  # second halves, in the same order
        self.rows = rows  # the row of each
        self.covers = covers  # the table's size when built: rows from here on are not in it
        # No two ids share a first half (all but certain): then an id whose first half leads
        # to another id's entry has none of its own here, since the search finds the first of
        # equal halves.
        self.unique_first_halves = bool((hashes[1:] != hashes[:-1]).all())

    @classmethod
    def of(cls, external_ids: Sequence[str], rows: np.ndarray, covers: int) -> IdHashes:
        """The snapshot of ``rows`` (ascending, all below ``covers``) of a table whose
        external id by row is ``external_ids``."""
        # Every row's id, dead ones too (compaction keeps them under a quarter), rather than a
        # list of the live rows' numbers made as Python ints for the heap to keep.
        first, second = _fingerprints_in_chunks(external_ids, covers)
        order = rows[np.argsort(first[rows], kind="stable")]
        row_type = np.int32 if covers < 2**31 else np.int64  # 4 bytes a row saved
        return cls(first[order], second[order], order.astype(row_type), covers)

    @property
    def nbytes(self) -> int:
        return int(self.hashes.nbytes + self.checks.nbytes + self.rows.nbytes)

    def is_stale(self, table_size: int) -> bool:
        return table_size - self.covers > self.covers // STALE_FRACTION

    def find(self, external_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """For each id: a row (int64), and whether that row's fingerprint is the id's. The
        row may have died since the snapshot; the caller checks."""
        n = len(external_ids)
        if len(self.hashes) == 0:
            return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
        first, second = _fingerprints(external_ids, n)
        # Searched in ascending order: numpy's binary search starts each key where the last one
        # ended, and the walk through the hashes runs forward.
        order = first.argsort()
        at = self.hashes.searchsorted(first[order])
        np.minimum(at, len(self.hashes) - 1, out=at)
        rows = np.empty(n, dtype=np.int64)
        rows[order] = self.rows[at]
        found = np.empty(n, dtype=bool)
        found[order] = (self.hashes[at] == first[order]) & (self.checks[at] == second[order])
        return rows, found
