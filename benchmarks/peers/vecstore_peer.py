"""vecstore itself, through the same interface as its peers: ``python -m vecstore serve`` in its
own process on 127.0.0.1, driven over HTTP the way its users drive it.

- Index: the default, HNSW (FAISS ``IndexHNSWFlat``) with ``m`` and ``ef_construction`` as given,
  cosine; the search-time knob is ``ef_search``, sent with every search request.
- Ingest: ``bulk_upsert`` with vectors as base64 little-endian float32 (the documented binary
  encoding; JSON float lists parse several times slower), ``metadata: {"bucket"}``.
- Queries (search, rerank) send the query vector in the same base64 encoding.
- ``finish_indexing`` polls ``GET /v1/health`` until the ANN index holds every vector (until
  then the newest vectors are served exactly from the fresh segment).
- ``rerank`` uses the server's own ``POST /v1/collections/{name}/rerank``; the harness scores
  other peers' fetched vectors client-side instead.
- Server: default settings, except ``preload_models=false`` (no text is embedded here).
- Threads: one keep-alive ``http.client.HTTPConnection`` per ``client_for_thread`` object.
  The standard library's client, not httpx: the client shares the machine with the server, and
  on 2 cores httpx's per-request work (2.2 ms of client CPU against 1.2 ms for ``http.client``
  on a busy host: ``python -m benchmarks.run_request_path``) was a large part of every
  measured round trip. Any lean HTTP/1.1 client
  works the same; the server sees identical requests.
"""

from __future__ import annotations

import base64
import http.client
import os
import secrets
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import msgspec
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
)

_BASE = f"/v1/collections/{COLLECTION}"
_encode = msgspec.json.encode
_decode = msgspec.json.decode


class _Server:
    """The server process, its port and admin key: kept across restarts (same data dir)."""

    def __init__(self, workdir: Path, startup_timeout_s: float, env: dict[str, str]) -> None:
        self.data_dir = workdir / "vecstore-data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "vecstore.log"
        self.startup_timeout_s = startup_timeout_s
        self.env = env
        self.key = secrets.token_urlsafe(32)
        self.port = 0
        self.proc: ServerProcess | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        from vecstore.cli import serve_argv

        self.port = self.port or free_port()
        env = {
            **os.environ,
            "VECSTORE_LOG_LEVEL": "WARNING",
            # No peer carries an embedding model and this comparison embeds nothing server-side:
            # without preloading, vecstore's RSS holds no model either (it would load on the
            # first text request).
            "VECSTORE_PRELOAD_MODELS": "false",
            **self.env,
            "VECSTORE_ADMIN_KEY": self.key,
        }
        proc = ServerProcess(
            serve_argv(HOST, self.port, self.data_dir),
            self.log_path,
            env=env,
            stop_signals=((signal.SIGTERM, 60.0),),
        )

        def ready() -> bool:
            return httpx.get(f"{self.base_url}/ready", timeout=2).status_code == 200

        proc.start_ready(ready, timeout_s=self.startup_timeout_s, what="vecstore")
        self.proc = proc

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


class VecstorePeer:
    name = "vecstore"
    kind = "server"
    knob_name = "ef_search"
    knobs: Sequence[int] = DEFAULT_SWEEP

    def __init__(
        self,
        *,
        startup_timeout_s: float = 300.0,
        server_env: dict[str, str] | None = None,
        _shared: _Server | None = None,
    ) -> None:
        self.startup_timeout_s = startup_timeout_s
        self.server_env = dict(server_env or {})
        self._server = _shared
        self._http: http.client.HTTPConnection | None = None
        self._headers: dict[str, str] = {}
        self._knob = DEFAULT_KNOB
        self._dim = 0
        self.index_desc = "HNSW (FAISS IndexHNSWFlat)"
        if _shared is not None:
            self._connect()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, workdir: Path) -> None:
        try:
            import vecstore  # noqa: F401
        except ImportError as exc:  # pragma: no cover - the harness lives in vecstore's repo
            raise PeerUnavailable(f"cannot import vecstore ({exc})") from exc
        self._server = _Server(workdir, self.startup_timeout_s, self.server_env)
        self._server.start()
        self._connect()

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._server is not None:
            self._server.stop()

    def restart(self) -> None:
        server = self._require_server()
        if self._http is not None:
            self._http.close()
        server.stop()
        server.start()
        self._connect()
        # Ready means the collection is open; a search proves it answers.
        self.search(np.ones(self._dim, dtype=np.float32), 1)

    def _connect(self) -> None:
        server = self._require_server()
        self._http = http.client.HTTPConnection(HOST, server.port, timeout=300.0)
        self._headers = {"x-api-key": server.key, "content-type": "application/json"}

    def _require_server(self) -> _Server:
        if self._server is None:
            raise PeerUnavailable("vecstore was not started")
        return self._server

    # -- the contract ---------------------------------------------------------------------------
    def create(self, dim: int, m: int, ef_construction: int) -> None:
        self._dim = dim
        index = {"type": "hnsw", "m": m, "ef_construction": ef_construction}
        body = {"name": COLLECTION, "dim": dim, "metric": "cosine", "index": index}
        self._post("/v1/collections", body)
        self.index_desc = f"HNSW (FAISS IndexHNSWFlat) M={m} efConstruction={ef_construction}"

    def ingest(self, ids: Sequence[str], vectors: FloatArray, buckets: Sequence[int]) -> None:
        check_batch(ids, vectors, buckets)
        rows = np.ascontiguousarray(vectors, dtype="<f4")
        items = [
            {
                "external_id": ext,
                "vector": base64.b64encode(row.tobytes()).decode("ascii"),
                "metadata": {"bucket": int(b)},
            }
            for ext, row, b in zip(ids, rows, buckets, strict=True)
        ]
        self._post(f"{_BASE}/bulk_upsert", {"items": items})

    def finish_indexing(self) -> None:
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            health = self._get("/v1/health")
            stats = _collection_stats(health)
            if stats is not None and stats.get("index_vectors") == stats.get("vector_count"):
                return
            time.sleep(0.25)
        raise PeerUnavailable("vecstore's index did not catch up within an hour")

    def set_knob(self, value: int) -> None:
        self._knob = value

    def search(self, query: FloatArray, k: int, bucket_lt: int | None = None) -> list[str]:
        body: dict[str, Any] = {
            "vector": _b64(query),
            "k": k,
            "ef_search": self._knob,
        }
        if bucket_lt is not None:
            body["filters"] = {"bucket": {"$lt": bucket_lt}}
        data = self._post(f"{_BASE}/search", body)
        return [hit["external_id"] for hit in data["results"]]

    def rerank(self, query: FloatArray, ids: Sequence[str], k: int) -> list[str]:
        """The best ``k`` of ``ids`` by exact cosine, scored by the server."""
        body = {
            "vector": _b64(query),
            "candidates": list(ids),
            "top_k": k,
        }
        data = self._post(f"{_BASE}/rerank", body)
        return [hit["external_id"] for hit in data["results"]]

    def fetch(self, ids: Sequence[str]) -> FloatArray:
        data = self._post(f"{_BASE}/vectors/fetch", {"ids": list(ids), "include_vectors": True})
        by_id = {r["external_id"]: r["vector"] for r in data["vectors"]}
        return np.asarray([by_id[i] for i in ids], dtype=np.float32)

    def client_for_thread(self) -> Peer:
        """A client of the same server at the same knob (the concurrent passes search at the
        setting the sweep has reached, as every peer's clients do)."""
        client = VecstorePeer(
            startup_timeout_s=self.startup_timeout_s,
            server_env=self.server_env,
            _shared=self._require_server(),
        )
        client._knob = self._knob
        client._dim = self._dim
        client.index_desc = self.index_desc
        return client

    def memory_pids(self) -> list[int]:
        server = self._require_server()
        pid = server.proc.pid if server.proc is not None else None
        return [pid] if pid is not None else []

    def versions(self) -> dict[str, str]:
        return {"vecstore": package_version("vecstore")}

    # -- HTTP -----------------------------------------------------------------------------------
    def _post(self, path: str, body: Any) -> Any:
        return self._request("POST", path, _encode(body))

    def _get(self, path: str) -> Any:
        return self._request("GET", path, None)

    def _request(self, method: str, path: str, body: bytes | None) -> Any:
        if self._http is None:
            raise PeerUnavailable("vecstore was not started")
        try:
            self._http.request(method, path, body=body, headers=self._headers)
            resp = self._http.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # The server closed an idle keep-alive connection (uvicorn: after 5 s) before it
            # read this request; reconnect and send it once more (every call here is
            # idempotent: upserts by id, reads).
            self._http.close()
            self._http.request(method, path, body=body, headers=self._headers)
            resp = self._http.getresponse()
        content = resp.read()
        if resp.status >= 300:
            text = content[:300].decode("utf-8", "replace")
            raise RuntimeError(f"{method} {path} -> HTTP {resp.status}: {text}")
        return _decode(content)["data"]


def _collection_stats(health: Any) -> dict[str, Any] | None:
    for c in health.get("collections", []):
        if c.get("name") == COLLECTION:
            return dict(c)
    return None


def _b64(query: FloatArray) -> str:
    """A query vector in vecstore's binary encoding (base64 of little-endian float32)."""
    return base64.b64encode(np.asarray(query, dtype="<f4").tobytes()).decode("ascii")
