"""The row table's own copy of vectors, kept only for rows the index cannot give back.

Flat and HNSW-flat FAISS indexes store every vector they hold as the exact float32 the row table
was given, so once a row is indexed the table's copy is a second copy of the collection: at 100k
384-d vectors that is ~150 MB of RSS for nothing. ``RowVectors`` therefore holds the vectors of
rows ``[base, size)`` only, in fixed-size blocks, and ``drop_below(row)`` frees the blocks wholly
below a new base, and the last one too when no row is left (the indexer calls it once rows are
in FAISS). Blocks are never resized in place:
dropping a block or adding one leaves the arrays a reader is still using valid.

Rows are the table's row numbers; the caller (``VectorTable``) serialises mutations.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from vecstore.domain import FloatArray

# ~4 MiB per block: small enough that freeing the indexed prefix is fine-grained, large enough
# that a scan visits few blocks. Zeroed pages of a new block cost no RSS until written.
_BLOCK_BYTES = 4 << 20
_MIN_BLOCK_ROWS = 16
_MAX_BLOCK_ROWS = 4096


def default_block_rows(dim: int) -> int:
    return max(_MIN_BLOCK_ROWS, min(_MAX_BLOCK_ROWS, _BLOCK_BYTES // (4 * max(1, dim))))


class RowVectors:
    def __init__(self, dim: int, *, block_rows: int | None = None, base: int = 0) -> None:
        self.dim = dim
        self.block_rows = block_rows or default_block_rows(dim)
        self.base = base  # rows below this have no vector here
        self.size = base  # one past the last row written
        self._blocks: dict[int, FloatArray] = {}

    @property
    def held_bytes(self) -> int:
        """Bytes of the blocks allocated (the last one may be partly unwritten)."""
        return len(self._blocks) * self.block_rows * self.dim * 4

    # -- mutations ------------------------------------------------------------------------
    def append(self, vectors: FloatArray) -> None:
        """Vectors of rows ``size .. size + len(vectors) - 1``."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        done = 0
        while done < len(vectors):
            row = self.size + done
            block, offset = divmod(row, self.block_rows)
            take = min(self.block_rows - offset, len(vectors) - done)
            self._block(block)[offset : offset + take] = vectors[done : done + take]
            done += take
        self.size += len(vectors)

    def drop_below(self, row: int) -> None:
        """Forget the vectors of rows below ``row`` (the base never moves down)."""
        row = min(max(row, self.base), self.size)
        if row == self.base:
            return
        self.base = row
        # Every block without a held row goes, the partly written last one too once all of its
        # rows are dropped (the next append starts a fresh, untouched block).
        for block in [
            b for b in self._blocks if (b + 1) * self.block_rows <= row or row == self.size
        ]:
            del self._blocks[block]

    def _block(self, block: int) -> FloatArray:
        found = self._blocks.get(block)
        if found is None:
            found = self._blocks[block] = np.zeros((self.block_rows, self.dim), dtype=np.float32)
        return found

    # -- reads ----------------------------------------------------------------------------
    def gather(self, rows: np.ndarray) -> FloatArray:
        """A copy of the vectors of ``rows`` (each in ``[base, size)``), in the given order."""
        rows = np.asarray(rows, dtype=np.int64)
        out: FloatArray = np.empty((len(rows), self.dim), dtype=np.float32)
        if len(rows) == 0:
            return out
        if int(rows.min()) < self.base or int(rows.max()) >= self.size:
            raise IndexError(f"rows outside the held range [{self.base}, {self.size})")
        blocks, offsets = np.divmod(rows, self.block_rows)
        first, last = int(blocks.min()), int(blocks.max())
        if first == last:
            out[:] = self._blocks[first][offsets]
            return out
        for block in np.unique(blocks).tolist():
            where = blocks == block
            out[where] = self._blocks[block][offsets[where]]
        return out

    def ranges(self, start: int, stop: int, chunk: int) -> Iterator[tuple[int, FloatArray]]:
        """``(first_row, view)`` pieces covering rows ``[start, stop)`` (within the held range),
        none longer than ``chunk`` rows and none crossing a block: views, never copies."""
        if start < self.base or stop > self.size:
            raise IndexError(f"rows outside the held range [{self.base}, {self.size})")
        row = start
        while row < stop:
            block, offset = divmod(row, self.block_rows)
            take = min(self.block_rows - offset, stop - row, chunk)
            yield row, self._blocks[block][offset : offset + take]
            row += take
