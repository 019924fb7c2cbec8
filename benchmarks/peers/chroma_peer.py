"""Chroma as a real server: ``chroma run`` in its own process, driven by ``chromadb.HttpClient``.

The server is the Rust frontend that ships inside the ``chromadb`` wheel (``chroma run`` is a
thin Python shim around it), started with this interpreter so the version is the one imported
here. Index: Chroma's HNSW (hnswlib) with ``space=cosine``, ``max_neighbors`` = m and
``ef_construction`` as given; the search-time ``ef_search`` is changed with
``collection.modify(configuration=...)``. Filters go in ``where`` (``{"bucket": {"$lt": n}}``).

- Telemetry: the client gets ``anonymized_telemetry=False`` and the server
  ``ANONYMIZED_TELEMETRY=False`` (this release's Python product telemetry is a no-op anyway, and
  the Rust server opens no outbound connection: checked with strace).
- Threads: ``HttpClient`` sits on an httpx connection pool, so one object may be used from
  several threads; ``client_for_thread`` still gives each thread its own client object.
- ``add`` is applied to the index before it returns in single-node mode, so
  ``finish_indexing`` only checks the count.
- ``ef_search`` changed by ``modify`` does not reach the server's loaded index (this release):
  ``set_knob`` restarts the server after it, so each knob step costs a restart and a cold cache.
"""

from __future__ import annotations

import os
import signal
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.peers.base import (
    COLLECTION,
    DEFAULT_KNOB,
    DEFAULT_SWEEP,
    HOST,
    FloatArray,
    Peer,
    PeerUnavailable,
    ServerProcess,
    check_batch,
    free_port,
    package_version,
    require,
)

# ``chroma run`` through this interpreter: the ``chroma`` console script may belong to another
# environment, and the shim needs ``argv[0]`` to look like the program name.
_RUN_CHROMA = "import sys; from chromadb.cli.cli import app; sys.argv[0] = 'chroma'; app()"


class _Server:
    """The running ``chroma run`` process, shared by the peer and its per-thread clients."""

    def __init__(self, workdir: Path, startup_timeout_s: float) -> None:
        self.path = workdir / "chroma-data"
        self.path.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "chroma.log"
        self.startup_timeout_s = startup_timeout_s
        self.port = 0
        self.proc: ServerProcess | None = None

    def start(self) -> None:
        # The same port on a restart, so clients made before it keep working.
        self.port = self.port or free_port()
        argv = [sys.executable, "-c", _RUN_CHROMA, "run", "--path", str(self.path)]
        argv += ["--host", HOST, "--port", str(self.port)]
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}
        proc = ServerProcess(argv, self.log_path, env=env, stop_signals=((signal.SIGTERM, 30.0),))
        url = f"http://{HOST}:{self.port}/api/v2/heartbeat"

        def ready() -> bool:
            with urllib.request.urlopen(url, timeout=2) as resp:  # loopback only
                return int(resp.status) == 200

        proc.start_ready(ready, timeout_s=self.startup_timeout_s, what="chroma run")
        self.proc = proc

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


class ChromaPeer:
    name = "chroma"
    kind = "server"
    knob_name = "ef_search"

    def __init__(
        self,
        knobs: Sequence[int] = DEFAULT_SWEEP,
        *,
        startup_timeout_s: float = 60.0,
        _server: _Server | None = None,
    ) -> None:
        self.knobs: Sequence[int] = tuple(knobs)
        self.index_desc = "HNSW (hnswlib), cosine"
        self._startup_timeout_s = startup_timeout_s
        self._server = _server
        self._owns_server = _server is None
        self._client: Any = None
        self._collection: Any = None
        self._chromadb: Any = None
        self._dim = 0
        self._ef = DEFAULT_KNOB

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, workdir: Path) -> None:
        self._chromadb = require("chromadb", "chromadb (the `peers` extra)")
        self._server = _Server(workdir, self._startup_timeout_s)
        self._owns_server = True
        self._server.start()
        self._connect()

    def _connect(self) -> None:
        assert self._server is not None
        chromadb = self._chromadb
        settings = chromadb.config.Settings(anonymized_telemetry=False)
        self._client = chromadb.HttpClient(host=HOST, port=self._server.port, settings=settings)
        self._collection = None
        if self._dim:
            self._collection = self._client.get_collection(COLLECTION, embedding_function=None)

    def stop(self) -> None:
        self._client = None
        self._collection = None
        if self._owns_server and self._server is not None:
            self._server.stop()

    def restart(self) -> None:
        if self._server is None:
            raise PeerUnavailable("restart() before start()")
        self._client = None
        self._collection = None
        self._server.stop()
        self._server.start()
        self._connect()
        self.search(np.ones(self._dim, dtype=np.float32), 1)

    def versions(self) -> dict[str, str]:
        return {"chromadb": package_version("chromadb")}

    def memory_pids(self) -> list[int]:
        if self._server is None or self._server.proc is None or self._server.proc.pid is None:
            return []
        return [self._server.proc.pid]

    def client_for_thread(self) -> Peer:
        peer = ChromaPeer(self.knobs, _server=self._server)
        peer._chromadb = self._chromadb
        peer._dim = self._dim
        peer._ef = self._ef
        peer.index_desc = self.index_desc
        peer._connect()
        return peer

    # -- data --------------------------------------------------------------------------------------

    def create(self, dim: int, m: int, ef_construction: int) -> None:
        hnsw = {
            "space": "cosine",
            "max_neighbors": m,
            "ef_construction": ef_construction,
            "ef_search": DEFAULT_KNOB,
        }
        self._collection = self._client.create_collection(
            COLLECTION, configuration={"hnsw": hnsw}, embedding_function=None
        )
        self._dim = dim
        self.index_desc = f"HNSW (hnswlib) max_neighbors={m} ef_construction={ef_construction}"

    def ingest(self, ids: Sequence[str], vectors: FloatArray, buckets: Sequence[int]) -> None:
        check_batch(ids, vectors, buckets)
        self._collection.add(
            ids=list(ids),
            embeddings=np.ascontiguousarray(vectors, dtype=np.float32),
            metadatas=[{"bucket": int(b)} for b in buckets],
        )

    def finish_indexing(self) -> None:
        count = int(self._collection.count())
        if count == 0:
            raise PeerUnavailable("chroma: collection is empty after ingest")

    def set_knob(self, value: int) -> None:
        """``modify`` stores the new ``ef_search``, but the running server keeps searching its
        loaded HNSW with the old one until it restarts (checked: recall does not move), so a
        change restarts the server. Its caches are then cold: warm up before timing."""
        if int(value) == self._ef:
            return
        self._collection.modify(configuration={"hnsw": {"ef_search": int(value)}})
        self._ef = int(value)
        self.restart()

    def search(self, query: FloatArray, k: int, bucket_lt: int | None = None) -> list[str]:
        where = None if bucket_lt is None else {"bucket": {"$lt": int(bucket_lt)}}
        res = self._collection.query(
            query_embeddings=[np.asarray(query, dtype=np.float32)],
            n_results=k,
            where=where,
            include=[],
        )
        return [str(i) for i in res["ids"][0]]

    def fetch(self, ids: Sequence[str]) -> FloatArray:
        res = self._collection.get(ids=list(ids), include=["embeddings"])
        by_id = dict(zip(res["ids"], res["embeddings"], strict=True))
        return np.asarray([by_id[i] for i in ids], dtype=np.float32)
