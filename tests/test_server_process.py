"""The real server process, over real HTTP: start-up, crash durability, index recovery.

Every test starts ``python -m vecstore serve`` (see ``tests/server_process.py``) on 127.0.0.1 and
a temporary data directory, and stops it before it ends. Exact results are checked against a numpy
oracle over the vectors the test itself wrote.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.server_process import ServerProcess, new_admin_key, poll_until, running_server
from vecstore.domain import IndexParams
from vecstore.storage.vector_index import VectorIndex

pytestmark = pytest.mark.timeout(180)

Json = Any
State = dict[str, tuple[bytes, Json]]  # external_id -> (float32 vector bytes, metadata)


# -- small HTTP helpers -----------------------------------------------------------------------
def ok(response: httpx.Response, status: int = 200) -> Json:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    body: dict[str, Any] = response.json()
    assert body["status"] == "error"
    assert body["error"]["code"] == status
    return dict(body["error"])


def create_collection(client: httpx.Client, name: str, dim: int, **body: Any) -> Json:
    return ok(client.post("/v1/collections", json={"name": name, "dim": dim, **body}), 201)


def scroll_all(client: httpx.Client, name: str) -> State:
    """Every record of a collection, read back through ``scroll`` with vectors."""
    out: State = {}
    cursor: str | None = None
    for _ in range(10_000):
        data = ok(
            client.post(
                f"/v1/collections/{name}/scroll",
                json={"cursor": cursor, "limit": 1000, "include_vectors": True},
            )
        )
        for rec in data["vectors"]:
            assert rec["external_id"] not in out, "scroll returned a record twice"
            out[rec["external_id"]] = (f32(rec["vector"]), rec["metadata"])
        cursor = data["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("scroll did not end")


def f32(values: Any) -> bytes:
    return np.asarray(values, dtype=np.float32).tobytes()


def health_of(client: httpx.Client, name: str) -> dict[str, Any]:
    rows = ok(client.get("/v1/health"))["collections"]
    matches = [r for r in rows if r["name"] == name]
    assert len(matches) == 1, rows
    return dict(matches[0])


def metric_value(client: httpx.Client, series: str) -> float:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    for line in response.text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    raise AssertionError(f"{series} is not in /metrics")


# -- the numpy oracle -------------------------------------------------------------------------
def oracle_scores(vectors: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    v = vectors.astype(np.float64)
    q = query.astype(np.float64)
    if metric == "cosine":
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        q = q / np.linalg.norm(q)
        result: np.ndarray = v @ q
    elif metric == "ip":
        result = v @ q
    else:
        result = -np.linalg.norm(v - q, axis=1)
    return result


def assert_exact_hits(
    hits: list[dict[str, Any]],
    records: dict[str, np.ndarray],
    query: np.ndarray,
    metric: str,
    k: int,
    tol: float = 1e-4,
) -> None:
    """``hits`` are the exact top ``k`` of ``records``: right count, scores, order and members.

    Robust to float ties: a returned id must score within ``tol`` of the oracle's k-th score.
    """
    ids = list(records)
    scores = oracle_scores(np.stack([records[i] for i in ids]), query, metric)
    by_id = dict(zip(ids, scores.tolist(), strict=True))
    want = sorted(scores.tolist(), reverse=True)[:k]
    assert len(hits) == min(k, len(ids))
    got = [h["score"] for h in hits]
    assert got == sorted(got, reverse=True), "hits are not sorted by score"
    assert np.allclose(got, want, atol=tol), (got, want)
    assert len({h["external_id"] for h in hits}) == len(hits), "duplicate hit"
    for h in hits:
        assert h["external_id"] in by_id, f"hit {h['external_id']} is not a live record"
        assert abs(h["score"] - by_id[h["external_id"]]) <= tol
        assert by_id[h["external_id"]] >= want[-1] - tol


def search(client: httpx.Client, name: str, query: np.ndarray, k: int, **body: Any) -> Json:
    data = ok(
        client.post(
            f"/v1/collections/{name}/search",
            json={"vector": query.tolist(), "k": k, **body},
        )
    )
    hits: list[dict[str, Any]] = data["results"]
    return hits


# -- a. basics --------------------------------------------------------------------------------
def test_collection_upsert_search_and_rerank_over_real_http(tmp_path: Path) -> None:
    key = new_admin_key()
    with running_server(tmp_path / "data", admin_key=key) as server, server.client() as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/ready").json() == {"status": "ready"}
        info = create_collection(client, "docs", 3, distance_metric="cosine")
        assert (info["name"], info["dim"], info["vector_count"]) == ("docs", 3, 0)

        r = client.post(
            "/v1/collections/docs/upsert",
            json={"external_id": "a", "vector": [1, 0, 0], "metadata": {"n": 1}},
        )
        assert ok(r) == {"external_id": "a", "status": "inserted"}
        assert r.headers["x-request-id"]
        bulk = ok(
            client.post(
                "/v1/collections/docs/bulk_upsert",
                json={
                    "items": [
                        {"external_id": "b", "vector": [0, 1, 0], "metadata": {"n": 2}},
                        {"external_id": "c", "vector": [0.9, 0.1, 0], "metadata": {"n": 3}},
                        {"external_id": "a", "vector": [1, 0, 0.1], "metadata": {"n": 4}},
                    ]
                },
            )
        )
        assert (bulk["inserted"], bulk["updated"]) == (2, 1)

        hits = search(client, "docs", np.array([1.0, 0.0, 0.0]), 2)
        assert [(h["external_id"], h["metadata"]) for h in hits] == [
            ("a", {"n": 4}),
            ("c", {"n": 3}),
        ]
        assert hits[0]["score"] == pytest.approx(1 / np.sqrt(1.01), abs=1e-6)

        rerank = ok(
            client.post(
                "/v1/collections/docs/rerank",
                json={"vector": [0, 1, 0], "candidates": ["a", "b", "missing", "c"]},
            )
        )
        assert [h["external_id"] for h in rerank["results"]] == ["b", "c", "a"]
        assert rerank["not_found"] == ["missing"]

        stored = ok(client.get("/v1/collections/docs/vectors/c"))
        assert f32(stored["vector"]) == f32([0.9, 0.1, 0])
        with server.client(key="not-a-key") as stranger:
            assert error_of(stranger.get("/v1/collections"), 401)["type"] == "unauthorized"


def _printed_key(stdout: str) -> str:
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 2, stdout
    assert lines[0].startswith("vecstore admin key"), stdout
    return lines[1]


def test_generated_admin_key_is_printed_saved_and_reused_on_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    key_file = data_dir / "admin.key"
    with running_server(data_dir, admin_key=None) as server:
        printed = _printed_key(server.stdout())
        assert "generated" in server.stdout()
        assert key_file.read_text().strip() == printed
        assert len(printed) >= 32
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        with server.client(key=printed) as client:
            create_collection(client, "kept", 2)
            assert ok(client.get("/v1/admin/keys")) == {"keys": []}  # admin role works
        with server.client(key=printed + "x") as client:
            assert error_of(client.get("/v1/collections"), 401)["type"] == "unauthorized"

    with running_server(data_dir, admin_key=None) as server:
        # Later starts name the file but never print the key again (stdout reaches log stores).
        assert "read from" in server.stdout()
        assert printed not in server.stdout()
        assert key_file.read_text().strip() == printed
        with server.client(key=printed) as client:
            names = [c["name"] for c in ok(client.get("/v1/collections"))["collections"]]
            assert names == ["kept"]
    assert sorted(p.name for p in data_dir.glob("*.key")) == ["admin.key"]


# -- b. crash durability ----------------------------------------------------------------------
CRASH_DIM = 8
CRASH_POOL = 250


@dataclass
class Op:
    kind: str  # "upsert" | "bulk" | "delete_one" | "delete_batch"
    items: list[tuple[str, list[float], Json]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def apply(self, state: State) -> State:
        out = dict(state)
        for ext, vector, metadata in self.items:
            out[ext] = (f32(vector), metadata)
        for ext in self.ids:
            out.pop(ext, None)
        return out

    def send(self, client: httpx.Client) -> httpx.Response:
        base = "/v1/collections/crash"
        body = [{"external_id": e, "vector": v, "metadata": m} for e, v, m in self.items]
        if self.kind == "upsert":
            return client.post(f"{base}/upsert", json=body[0])
        if self.kind == "bulk":
            return client.post(f"{base}/bulk_upsert", json={"items": body})
        if self.kind == "delete_one":
            return client.delete(f"{base}/delete/{self.ids[0]}")
        return client.post(f"{base}/delete_batch", json={"external_ids": self.ids})


class AckCounter:
    def __init__(self) -> None:
        self.total = 0
        self.cond = threading.Condition()

    def add(self) -> None:
        with self.cond:
            self.total += 1
            self.cond.notify_all()

    def wait_for(self, target: int, writers: list[Writer], timeout_s: float) -> int:
        with self.cond:
            self.cond.wait_for(
                lambda: self.total >= target or not all(w.is_alive() for w in writers),
                timeout=timeout_s,
            )
            return self.total


class Writer(threading.Thread):
    """Sends a random stream of writes; tracks the state its acknowledged writes imply."""

    def __init__(
        self, base_url: str, key: str, prefix: str, state: State, seed: int, acks: AckCounter
    ) -> None:
        super().__init__(name=f"writer-{prefix}", daemon=True)
        self.base_url, self.key, self.prefix = base_url, key, prefix
        self.state = state
        self.rng = random.Random(seed)
        self.acks = acks
        self.inflight: Op | None = None
        self.error: str | None = None
        self.sent = 0

    def _vector(self) -> list[float]:
        values = [self.rng.gauss(0.0, 1.0) for _ in range(CRASH_DIM)]
        exact: list[float] = np.asarray(values, dtype=np.float32).tolist()  # float32 values
        return exact

    def _item(self, ext: str) -> tuple[str, list[float], Json]:
        metadata = {
            "writer": self.prefix,
            "op": self.sent,
            "x": self.rng.random(),
            "tags": self.rng.sample(["日本", "b", "c", "d"], self.rng.randint(0, 3)),
        }
        return ext, self._vector(), metadata

    def next_op(self) -> Op:
        pool = [f"{self.prefix}-{n}" for n in range(CRASH_POOL)]
        r = self.rng.random()
        if r < 0.45:
            return Op("upsert", items=[self._item(self.rng.choice(pool))])
        if r < 0.8:
            ids = self.rng.sample(pool, self.rng.randint(2, 40))
            return Op("bulk", items=[self._item(e) for e in ids])
        if r < 0.9 and self.state:
            return Op("delete_one", ids=[self.rng.choice(sorted(self.state))])
        return Op("delete_batch", ids=self.rng.sample(pool, self.rng.randint(1, 6)))

    def run(self) -> None:
        with httpx.Client(
            base_url=self.base_url, headers={"x-api-key": self.key}, timeout=30.0
        ) as client:
            while True:
                op = self.next_op()
                self.inflight = op
                self.sent += 1
                try:
                    response = op.send(client)
                except httpx.TransportError:
                    return  # the server died: ``op`` may or may not have been applied
                if response.status_code != 200:
                    self.error = f"{op.kind}: {response.status_code} {response.text}"
                    return
                self.state = op.apply(self.state)
                self.inflight = None
                self.acks.add()


def _diff(expected: State, actual: State) -> str:
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    changed = sorted(e for e in set(expected) & set(actual) if expected[e] != actual[e])
    return f"missing={missing[:5]} phantom={extra[:5]} changed={changed[:5]}"


def _verify_after_crash(
    client: httpx.Client, writers: dict[str, State], pending: dict[str, Op]
) -> None:
    """Every acknowledged write is there, byte-equal; nothing else except the in-flight op.

    Updates ``writers`` in place to the state that survived (resolving the in-flight ops).
    """
    actual = scroll_all(client, "crash")
    owners = {e.split("-", 1)[0] for e in actual}
    assert owners <= set(writers), f"records from no writer: {owners - set(writers)}"
    for prefix, acked in writers.items():
        mine = {e: v for e, v in actual.items() if e.startswith(prefix + "-")}
        options = [acked]
        if prefix in pending:
            options.append(pending[prefix].apply(acked))  # all of the op or none of it
        if mine not in options:
            diffs = "; ".join(_diff(o, mine) for o in options)
            raise AssertionError(
                f"writer {prefix}: state after restart is neither the acknowledged state "
                f"nor it plus the in-flight op: {diffs}"
            )
        writers[prefix] = mine
    assert ok(client.post("/v1/collections/crash/count", json={}))["count"] == len(actual)
    assert health_of(client, "crash")["vector_count"] == len(actual)


def _check_search(client: httpx.Client, records: State, rng: np.random.Generator) -> None:
    vectors = {e: np.frombuffer(v, dtype=np.float32) for e, (v, _) in records.items()}
    for _ in range(3):
        query = rng.standard_normal(CRASH_DIM).astype(np.float32)
        hits = search(client, "crash", query, 10, exact=True)
        assert_exact_hits(hits, vectors, query, "cosine", 10)
        for h in hits:
            assert h["metadata"] == records[h["external_id"]][1]
        approx = search(client, "crash", query, 10)
        assert len(approx) == min(10, len(records))
        assert {h["external_id"] for h in approx} <= set(records)


def test_acknowledged_writes_survive_sigkill_and_nothing_else_appears(tmp_path: Path) -> None:
    key = new_admin_key()
    server = ServerProcess(tmp_path / "data", admin_key=key, log_dir=tmp_path / "logs")
    rng = random.Random(20240611)
    np_rng = np.random.default_rng(11)
    states: dict[str, State] = {"a": {}, "b": {}}
    writers: list[Writer] = []
    try:
        server.start()
        with server.client() as client:
            create_collection(client, "crash", CRASH_DIM, distance_metric="cosine")
        for cycle in range(3):
            acks = AckCounter()
            writers = [
                Writer(server.base_url, key, p, states[p], rng.randrange(2**32), acks)
                for p in states
            ]
            for w in writers:
                w.start()
            target = rng.randint(200, 500)
            reached = acks.wait_for(target, writers, timeout_s=60)
            server.kill()  # mid-stream: both writers have a request on the wire or about to
            for w in writers:
                w.join(timeout=30)
                assert not w.is_alive(), "writer did not stop after the server died"
                assert w.error is None, w.error
            assert reached >= target, (
                f"cycle {cycle}: only {reached} acks before the writers stopped"
            )
            pending = {w.prefix: w.inflight for w in writers if w.inflight is not None}
            states = {w.prefix: w.state for w in writers}

            server.start()
            with server.client() as client:
                _verify_after_crash(client, states, pending)
                _check_search(client, {**states["a"], **states["b"]}, np_rng)
        assert sum(len(s) for s in states.values()) > 0
    finally:
        server.kill()
        for w in writers:
            w.join(timeout=30)


# -- c. a corrupt, truncated or missing index checkpoint is rebuilt from the database ----------
REBUILD_DIM = 16
REBUILD_N = 3000
REBUILD_ENV = {"VECSTORE_CHECKPOINT_EVERY_CHANGES": "1000", "VECSTORE_INDEXER_INTERVAL_S": "0.05"}


@dataclass(frozen=True)
class Golden:
    data_dir: Path
    vectors: dict[str, np.ndarray]
    key: str


def _index_file(data_dir: Path) -> Path:
    files = sorted((data_dir / "indexes").glob("collection-*.faiss"))
    assert len(files) == 1, files
    return files[0]


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Golden:
    """A data directory holding 3000 indexed vectors and a checkpoint, stopped gracefully."""
    root = tmp_path_factory.mktemp("golden")
    key = new_admin_key()
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((REBUILD_N, REBUILD_DIM)).astype(np.float32)
    vectors = {f"v{i}": matrix[i] for i in range(REBUILD_N)}
    with (
        running_server(root / "data", admin_key=key, env=REBUILD_ENV) as server,
        server.client() as client,
    ):
        create_collection(client, "docs", REBUILD_DIM, distance_metric="l2")
        ids = list(vectors)
        for start in range(0, REBUILD_N, 500):
            items = [
                {"external_id": e, "vector": vectors[e].tolist(), "metadata": {"i": int(e[1:])}}
                for e in ids[start : start + 500]
            ]
            ok(client.post("/v1/collections/docs/bulk_upsert", json={"items": items}))

        def indexed() -> bool:
            row = health_of(client, "docs")
            return bool(row["vector_count"] == row["index_vectors"] == REBUILD_N)

        poll_until(indexed, timeout_s=60, what="all vectors indexed")
        poll_until(
            lambda: list((root / "data" / "indexes").glob("collection-*.faiss")),
            timeout_s=30,
            what="a checkpoint file",
        )
    return Golden(root / "data", vectors, key)


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for i in range(mid, mid + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _delete(path: Path) -> None:
    path.unlink()


def _valid_checkpoint(path: Path, collection_id: int) -> int:
    """ntotal of the checkpoint at ``path`` if it loads and verifies, else -1."""
    try:
        index, _ = VectorIndex.load(
            path,
            collection_id=collection_id,
            dim=REBUILD_DIM,
            metric="l2",
            params=IndexParams(),
        )
    except Exception:
        return -1
    return index.ntotal


@pytest.mark.parametrize("damage", ["intact", "flipped", "truncated", "deleted"])
def test_damaged_checkpoint_is_rebuilt_while_exact_search_keeps_working(
    tmp_path: Path, golden: Golden, damage: str
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(golden.data_dir, data_dir)
    path = _index_file(data_dir)
    collection_id = int(path.stem.split("-")[1])
    assert _valid_checkpoint(path, collection_id) == REBUILD_N  # the graceful stop saved it all
    {"intact": lambda p: None, "flipped": _flip_middle, "truncated": _truncate, "deleted": _delete}[
        damage
    ](path)
    if damage != "intact":
        assert _valid_checkpoint(path, collection_id) == -1

    queries = np.random.default_rng(5).standard_normal((4, REBUILD_DIM)).astype(np.float32)
    with (
        running_server(data_dir, admin_key=golden.key, env=REBUILD_ENV) as server,
        server.client() as client,
    ):
        rebuilds = metric_value(client, "vecstore_index_rebuilds_total")
        assert rebuilds == (0 if damage == "intact" else 1)
        if damage == "intact":
            row = health_of(client, "docs")
            assert row["index_vectors"] == row["vector_count"] == REBUILD_N
        for q in queries:  # at once, while the index may still be rebuilding
            assert_exact_hits(
                search(client, "docs", q, 10, exact=True), golden.vectors, q, "l2", 10
            )
            hits = search(client, "docs", q, 10)
            assert len(hits) == 10
            for h in hits:
                assert h["metadata"] == {"i": int(h["external_id"][1:])}

        def rebuilt() -> bool:
            row = health_of(client, "docs")
            return bool(row["index_vectors"] == row["vector_count"] == REBUILD_N)

        poll_until(rebuilt, timeout_s=60, what="the index rebuilt")
        recall = []
        for q in queries:
            exact = search(client, "docs", q, 10, exact=True)
            assert_exact_hits(exact, golden.vectors, q, "l2", 10)
            approx = {h["external_id"] for h in search(client, "docs", q, 10)}
            recall.append(len(approx & {h["external_id"] for h in exact}) / 10)
        assert np.mean(recall) >= 0.9, recall
        # The indexer writes a fresh, valid checkpoint over the damaged one.
        poll_until(
            lambda: _valid_checkpoint(path, collection_id) == REBUILD_N,
            timeout_s=30,
            what="a valid checkpoint rewritten",
        )
        assert metric_value(client, "vecstore_index_rebuilds_total") == rebuilds


# -- d. one broken collection does not stop the server -----------------------------------------
def _vector_blob_table(db: sqlite3.Connection) -> str:
    """The one catalog table holding the raw ``vector`` blobs (its name is a storage detail)."""
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    holding = [
        name
        for name in tables
        if {"collection_id", "internal_id", "vector"}
        <= {r[1] for r in db.execute(f"PRAGMA table_info({name})")}
    ]
    assert len(holding) == 1, holding
    return holding[0]


def test_collection_that_fails_to_load_answers_503_while_others_serve(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    key = new_admin_key()
    rng = np.random.default_rng(9)
    good = {f"g{i}": rng.standard_normal(4).astype(np.float32) for i in range(50)}
    with running_server(data_dir, admin_key=key) as server, server.client() as client:
        for name in ("good", "bad"):
            create_collection(client, name, 4, distance_metric="ip")
            items = [
                {"external_id": e, "vector": v.tolist(), "metadata": {"c": name}}
                for e, v in good.items()
            ]
            ok(client.post(f"/v1/collections/{name}/bulk_upsert", json={"items": items}))

    # Cut one stored vector of "bad" to 6 bytes: its rows can no longer be reshaped to dim 4.
    with sqlite3.connect(data_dir / "vecstore.db") as db:
        table = _vector_blob_table(db)
        cur = db.execute(
            f"UPDATE {table} SET vector = substr(vector, 1, 6) WHERE internal_id = 0 AND "
            "collection_id = (SELECT id FROM collections WHERE name = 'bad')"
        )
        assert cur.rowcount == 1
    db.close()

    with running_server(data_dir, admin_key=key) as server, server.client() as client:
        assert client.get("/ready").status_code == 200
        q = rng.standard_normal(4).astype(np.float32)
        assert_exact_hits(search(client, "good", q, 5, exact=True), good, q, "ip", 5)
        assert len(search(client, "good", q, 5)) == 5
        r = client.post(
            "/v1/collections/good/upsert", json={"external_id": "new", "vector": [1, 2, 3, 4]}
        )
        assert ok(r)["status"] == "inserted"

        r = client.post("/v1/collections/bad/search", json={"vector": q.tolist(), "k": 5})
        err = error_of(r, 503)
        assert err["type"] == "not_ready"
        assert "bad" in err["message"]
        assert r.headers["retry-after"]
        r = client.post("/v1/collections/bad/upsert", json={"external_id": "x", "vector": [0] * 4})
        assert error_of(r, 503)["type"] == "not_ready"
        names = [c["name"] for c in ok(client.get("/v1/health"))["collections"]]
        assert names == ["good"]
        assert client.get("/health").status_code == 200
