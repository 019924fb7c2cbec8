"""Milvus Lite through ``pymilvus.MilvusClient`` on a local ``.db`` path.

Milvus Lite 3.x is not the C++ Milvus of the 2.x wheels: it is a pure-Python engine (memtable,
WAL, parquet segments) on FAISS, which pymilvus starts *in this process* as a gRPC server
thread on 127.0.0.1 (``milvus_lite.server_manager``) and then talks to over loopback gRPC. So
it is ``embedded`` (its memory is this process's) although every call crosses a socket, and
its server threads compete with the caller's for this interpreter's GIL.

Index: ``HNSW`` (FAISS ``IndexHNSWFlat`` per segment, cosine as IP on normalised rows; it also
offers HNSW_SQ, IVF_FLAT, IVF_SQ8, BRUTE_FORCE), with ``M`` and ``efConstruction``; the knob is
the search parameter ``ef`` (Milvus Lite's default is 64, not the index's). Filters are
expressions (``bucket < 10``): a mask handed to FAISS as an ``IDSelectorBatch``.

- Rows sit in a memtable (searched by brute force) until a flush (at 128 MB, or an explicit
  ``flush``) writes a segment, whose index is built by a background thread. ``flush`` does not
  wait for it, and no API reports index progress (``describe_index`` always says Finished), so
  ``finish_indexing`` releases, flushes and loads the collection: ``load`` builds (or reads)
  every segment's index once, before it returns. (Flush first, and the background thread and
  ``load`` build the same index at the same time.)
- Threads: the gRPC channel is thread-safe; ``client_for_thread`` opens another
  ``MilvusClient`` on the same path, which reuses the same in-process server.
- ``restart`` stops that server (closing the engine) and opens the path again: recovery from
  the manifest, segments and index sidecars on disk.
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

_ID_MAX_LENGTH = 64


class MilvusLitePeer:
    name = "milvus-lite"
    kind = "embedded"
    knob_name = "ef"

    def __init__(self, knobs: Sequence[int] = DEFAULT_SWEEP) -> None:
        self.knobs: Sequence[int] = tuple(knobs)
        self.index_desc = "HNSW (FAISS HNSWFlat per segment), COSINE"
        self._pymilvus: Any = None
        self._client: Any = None
        self._uri = ""
        self._ef = DEFAULT_KNOB
        self._dim = 0
        self._owner = True

    def start(self, workdir: Path) -> None:
        self._pymilvus = require("pymilvus", "pymilvus and milvus-lite (the `peers` extra)")
        require("milvus_lite", "milvus-lite (the `peers` extra)")
        self._uri = str(workdir / "milvus.db")
        self._open()

    def _open(self) -> None:
        try:
            self._client = self._pymilvus.MilvusClient(uri=self._uri)
        except Exception as exc:
            raise PeerUnavailable(f"Milvus Lite did not start on {self._uri}: {exc}") from exc

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
        if self._owner and self._uri:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self._uri)

    def restart(self) -> None:
        self.stop()
        self._open()
        self._client.load_collection(COLLECTION)
        self.search(np.ones(self._dim, dtype=np.float32), 1)

    def versions(self) -> dict[str, str]:
        return {
            "pymilvus": package_version("pymilvus"),
            "milvus-lite": package_version("milvus-lite"),
            "faiss-cpu": package_version("faiss-cpu"),
        }

    def memory_pids(self) -> list[int]:
        return []

    def client_for_thread(self) -> Peer:
        peer = MilvusLitePeer(self.knobs)
        peer._pymilvus = self._pymilvus
        peer._uri = self._uri
        peer._ef = self._ef
        peer._dim = self._dim
        peer._owner = False  # closing it must not stop the shared in-process server
        peer.index_desc = self.index_desc
        peer._open()
        return peer

    def create(self, dim: int, m: int, ef_construction: int) -> None:
        data_type = self._pymilvus.DataType
        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", data_type.VARCHAR, is_primary=True, max_length=_ID_MAX_LENGTH)
        schema.add_field("bucket", data_type.INT32)
        schema.add_field("vector", data_type.FLOAT_VECTOR, dim=dim)
        index_params = self._client.prepare_index_params()
        # pymilvus 3 flattens ``params`` into top-level key/value pairs, while Milvus Lite 3.2
        # reads only a JSON ``params`` key and silently builds its defaults (M=16,
        # efConstruction=200) otherwise: nest them, so the wire carries ``params`` itself.
        build = {"M": m, "efConstruction": ef_construction}
        index_params.add_index(
            field_name="vector", index_type="HNSW", metric_type="COSINE", params={"params": build}
        )
        self._client.create_collection(COLLECTION, schema=schema, index_params=index_params)
        got = self._client.describe_index(COLLECTION, "vector") or {}
        if got.get("params", {}).get("M") not in (m, str(m)):
            raise PeerUnavailable(f"Milvus Lite did not take the HNSW parameters: {got}")
        self._dim = dim
        self.index_desc = (
            f"HNSW (FAISS HNSWFlat per segment) M={m} efConstruction={ef_construction}"
        )

    def ingest(self, ids: Sequence[str], vectors: FloatArray, buckets: Sequence[int]) -> None:
        check_batch(ids, vectors, buckets)
        rows = np.ascontiguousarray(vectors, dtype=np.float32)
        data = [
            {"id": i, "bucket": int(b), "vector": v}
            for i, b, v in zip(ids, buckets, rows, strict=True)
        ]
        self._client.insert(COLLECTION, data)

    def finish_indexing(self) -> None:
        # Released first, the flush's background index build finds the collection not loaded
        # and skips; ``load`` then builds every segment's index once, synchronously. (Flush
        # then release would have the background thread and ``load`` build the same index at
        # the same time: twice the work on 2 CPUs.)
        self._client.release_collection(COLLECTION)
        self._client.flush(COLLECTION)
        self._client.load_collection(COLLECTION)

    def set_knob(self, value: int) -> None:
        self._ef = int(value)

    def search(self, query: FloatArray, k: int, bucket_lt: int | None = None) -> list[str]:
        res = self._client.search(
            COLLECTION,
            data=[np.asarray(query, dtype=np.float32).tolist()],
            limit=k,
            filter="" if bucket_lt is None else f"bucket < {int(bucket_lt)}",
            output_fields=[],
            search_params={"metric_type": "COSINE", "params": {"ef": max(self._ef, k)}},
            anns_field="vector",
        )
        return [str(hit["id"]) for hit in res[0]]

    def fetch(self, ids: Sequence[str]) -> FloatArray:
        rows = self._client.get(COLLECTION, ids=list(ids), output_fields=["vector"])
        by_id = {str(r["id"]): r["vector"] for r in rows}
        return np.asarray([by_id[i] for i in ids], dtype=np.float32)
