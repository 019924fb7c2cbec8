"""LanceDB embedded (OSS, a directory of Lance files), through its synchronous Python API.

Index: ``IVF_HNSW_FLAT`` (``lancedb.index.HnswFlat``) with ``num_partitions=1``: one HNSW graph
over the raw vectors, the closest thing LanceDB has to a plain HNSW (IVF_HNSW_SQ and
IVF_HNSW_PQ quantise; IVF_PQ is no graph at all), with ``m`` and ``ef_construction`` as given and
``distance_type="cosine"``. The knob is the query's ``ef``; with one partition ``nprobes`` is 1
and no ``refine_factor`` is needed (nothing is quantised). Filters are SQL ``where`` strings
applied as a prefilter (a row mask given to the graph search). A BTree on ``id`` makes
``fetch`` an index lookup instead of a scan.

- Ingest appends an Arrow batch per call: each is a new table version (a commit). Two threads
  may add to the same table object; Lance retries the commit on an append/append conflict.
- Rows added after ``create_index`` are not in the graph (a query then also scans them flat);
  ``finish_indexing`` builds the index once everything is in, and ``create_index`` blocks.
- ``client_for_thread`` opens its own connection and table handle, which sees the table as of
  when it was opened (``read_consistency_interval`` is left unset: no per-query version check).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.peers.base import (
    COLLECTION,
    DEFAULT_KNOB,
    DEFAULT_SWEEP,
    FloatArray,
    Peer,
    PeerUnavailable,
    check_batch,
    package_version,
    require,
)


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class LanceDBPeer:
    name = "lancedb"
    kind = "embedded"
    knob_name = "ef"

    def __init__(self, knobs: Sequence[int] = DEFAULT_SWEEP) -> None:
        self.knobs: Sequence[int] = tuple(knobs)
        self.index_desc = "IVF_HNSW_FLAT, 1 partition, cosine"
        self._lancedb: Any = None
        self._pa: Any = None
        self._uri = ""
        self._db: Any = None
        self._table: Any = None
        self._schema: Any = None
        self._ef = DEFAULT_KNOB
        self._dim = 0
        self._m = 0
        self._ef_construction = 0

    def start(self, workdir: Path) -> None:
        self._lancedb = require("lancedb", "lancedb (the `peers` extra)")
        self._pa = require("pyarrow", "pyarrow")
        self._uri = str(workdir / "lancedb")
        self._open()

    def _open(self) -> None:
        try:
            self._db = self._lancedb.connect(self._uri)
        except Exception as exc:
            raise PeerUnavailable(f"lancedb.connect({self._uri}) failed: {exc}") from exc
        self._table = self._db.open_table(COLLECTION) if self._dim else None

    def stop(self) -> None:
        self._table = None
        self._db = None

    def restart(self) -> None:
        self.stop()
        self._open()
        self.search(np.ones(self._dim, dtype=np.float32), 1)

    def versions(self) -> dict[str, str]:
        return {"lancedb": package_version("lancedb"), "pyarrow": package_version("pyarrow")}

    def memory_pids(self) -> list[int]:
        return []

    def client_for_thread(self) -> Peer:
        peer = LanceDBPeer(self.knobs)
        peer._lancedb, peer._pa, peer._uri = self._lancedb, self._pa, self._uri
        peer._schema, peer._ef, peer._dim = self._schema, self._ef, self._dim
        peer.index_desc = self.index_desc
        peer._open()
        return peer

    def create(self, dim: int, m: int, ef_construction: int) -> None:
        pa = self._pa
        self._schema = pa.schema(
            [
                pa.field("id", pa.string(), nullable=False),
                pa.field("bucket", pa.int32(), nullable=False),
                pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
            ]
        )
        self._table = self._db.create_table(COLLECTION, schema=self._schema)
        self._dim, self._m, self._ef_construction = dim, m, ef_construction
        self.index_desc = (
            f"IVF_HNSW_FLAT num_partitions=1 m={m} ef_construction={ef_construction}, cosine"
        )

    def ingest(self, ids: Sequence[str], vectors: FloatArray, buckets: Sequence[int]) -> None:
        check_batch(ids, vectors, buckets)
        pa = self._pa
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
        batch = pa.Table.from_arrays(
            [
                pa.array(list(ids), type=pa.string()),
                pa.array(np.asarray(buckets, dtype=np.int32)),
                pa.FixedSizeListArray.from_arrays(flat, self._dim),
            ],
            schema=self._schema,
        )
        self._table.add(batch)

    def finish_indexing(self) -> None:
        from lancedb.index import BTree, HnswFlat

        config = HnswFlat(
            distance_type="cosine",
            num_partitions=1,
            m=self._m,
            ef_construction=self._ef_construction,
        )
        self._table.create_index("vector", config=config)
        self._table.create_index("id", config=BTree())

    def set_knob(self, value: int) -> None:
        self._ef = int(value)

    def search(self, query: FloatArray, k: int, bucket_lt: int | None = None) -> list[str]:
        q = (
            self._table.search(np.asarray(query, dtype=np.float32), vector_column_name="vector")
            .distance_type("cosine")
            .limit(k)
            .ef(max(self._ef, k))
            .nprobes(1)
            .select(["id", "_distance"])  # naming _distance silences a deprecation warning
        )
        if bucket_lt is not None:
            q = q.where(f"bucket < {int(bucket_lt)}", prefilter=True)
        return [str(i) for i in q.to_arrow().column("id").to_pylist()]

    def fetch(self, ids: Sequence[str]) -> FloatArray:
        where = "id IN (" + ", ".join(_sql_str(i) for i in ids) + ")"
        res = self._table.search().where(where).select(["id", "vector"]).limit(len(ids))
        table = res.to_arrow()
        got = table.column("id").to_pylist()
        vecs = table.column("vector").combine_chunks().flatten().to_numpy()
        by_id = {i: n for n, i in enumerate(got)}
        rows = np.asarray(vecs, dtype=np.float32).reshape(len(got), self._dim)
        return np.ascontiguousarray(rows[[by_id[i] for i in ids]])
