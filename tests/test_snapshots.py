"""Online snapshots and restore through HTTP: every snapshot a test takes is restored, and the
restored data answers queries bit for bit as the data did when the snapshot was taken."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import ADMIN_KEY, flush_indexes, make_settings, wait_ready
from tests.oracles import assert_error
from tests.server_process import HOST, ServerProcess, free_port
from vecstore.app import create_app
from vecstore.cli import serve_argv
from vecstore.storage import snapshots as disk

Client = TestClient[Litestar]
DIM = 8
ROOT = "/v1/admin/snapshots"


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()["data"]


def vectors(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def load(client: Client, name: str, index_type: str, seed: int, n: int = 300) -> None:
    ok(
        client.post(
            "/v1/collections", json={"name": name, "dim": DIM, "index": {"type": index_type}}
        ),
        201,
    )
    rows = vectors(seed, n)
    for start in range(0, n, 100):
        items = [
            {
                "external_id": f"{name}-{i}",
                "vector": rows[i].tolist(),
                "metadata": {"i": i, "even": i % 2 == 0},
                "content": f"record {i}",
            }
            for i in range(start, min(n, start + 100))
        ]
        ok(client.post(f"/v1/collections/{name}/bulk_upsert", json={"items": items}))
    ids = [f"{name}-{i}" for i in range(0, n, 7)]
    ok(client.post(f"/v1/collections/{name}/delete_batch", json={"external_ids": ids}))


def observe(client: Client) -> dict[str, Any]:
    """Everything a user can read back, as raw response bytes where it matters."""
    seen: dict[str, Any] = {}
    names = sorted(c["name"] for c in ok(client.get("/v1/collections"))["collections"])
    seen["collections"] = names
    queries = vectors(99, 10)
    for name in names:
        for q, query in enumerate(queries):
            for body in (
                {"vector": query.tolist(), "k": 10},
                {"vector": query.tolist(), "k": 5, "filters": {"even": True}},
            ):
                r = client.post(f"/v1/collections/{name}/search", json=body)
                assert r.status_code == 200, r.text
                seen[f"{name}/search/{q}/{len(body)}"] = r.json()["data"]["results"]
        pages = []
        cursor = None
        while True:
            body: dict[str, Any] = {"limit": 100, "include_vectors": True}
            if cursor:
                body["cursor"] = cursor
            page = ok(client.post(f"/v1/collections/{name}/scroll", json=body))
            pages.append(page["vectors"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        seen[f"{name}/scroll"] = pages
        seen[f"{name}/count"] = ok(client.get(f"/v1/collections/{name}"))["vector_count"]
    return seen


@contextlib.contextmanager
def serving(data_dir: Path) -> Iterator[Client]:
    """An in-process server on ``data_dir``, ready, with the admin key preset."""
    with TestClient(app=create_app(make_settings(data_dir))) as client:
        wait_ready(client)
        client.headers["x-api-key"] = ADMIN_KEY
        yield client


@pytest.fixture
def app(tmp_path: Path) -> Litestar:
    return create_app(make_settings(tmp_path / "data"))


@pytest.fixture
def client(app: Litestar) -> Iterator[Client]:
    with TestClient(app=app, raise_server_exceptions=False) as c:
        wait_ready(c)
        c.headers["x-api-key"] = ADMIN_KEY
        yield c


def test_restore_brings_back_every_answer_bit_for_bit(app: Litestar, client: Client) -> None:
    load(client, "flat", "flat", seed=1)
    load(client, "graph", "hnsw", seed=2)
    flush_indexes(app)
    before = observe(client)
    snap = ok(client.post(ROOT), 201)
    assert snap["id"].startswith("snap-")
    assert {c["name"]: c["vector_count"] for c in snap["collections"]} == {
        "flat": before["flat/count"],
        "graph": before["graph/count"],
    }
    assert snap["files"] == 3  # the database and two index checkpoints
    assert ok(client.get(ROOT))["snapshots"] == [snap]
    assert ok(client.get(f"{ROOT}/{snap['id']}")) == snap
    assert ok(client.post(f"{ROOT}/{snap['id']}/verify"))["verified"] is True

    # Change everything: writes, deletes, a dropped and a new collection, keys.
    load(client, "later", "flat", seed=3, n=50)
    ok(client.delete("/v1/collections/flat"))
    ok(
        client.post(
            "/v1/collections/graph/upsert",
            json={"external_id": "graph-1", "vector": [0.5] * DIM, "metadata": {"x": 1}},
        )
    )
    key = ok(client.post("/v1/admin/keys", json={"name": "later", "role": "read"}), 201)
    assert observe(client) != before

    restored = ok(client.post(f"{ROOT}/{snap['id']}/restore"))
    assert restored["restored"] == snap
    assert restored["previous_data"].startswith("pre-restore-")
    wait_ready(client)
    assert observe(client) == before
    # Keys are part of the data: one issued after the snapshot no longer exists.
    assert client.get("/v1/collections", headers={"x-api-key": key["key"]}).status_code == 401
    # The replaced data was kept, and the restored data survives a restart.
    data_dir = Path(app.state.services.settings.data_dir)
    assert (data_dir / restored["previous_data"] / "vecstore.db").is_file()
    assert not (data_dir / ".restore-staging").exists()


def test_restored_data_survives_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serving(data_dir) as client:
        load(client, "c", "hnsw", seed=4)
        flush_indexes(client.app)
        before = observe(client)
        snap = ok(client.post(ROOT), 201)
        ok(client.delete("/v1/collections/c"))
        ok(client.post(f"{ROOT}/{snap['id']}/restore"))
        wait_ready(client)
    with serving(data_dir) as client:
        assert observe(client) == before
        assert [s["id"] for s in ok(client.get(ROOT))["snapshots"]] == [snap["id"]]


def test_a_snapshot_taken_during_writes_holds_a_prefix_of_them(
    app: Litestar, client: Client
) -> None:
    """Writes go on while the snapshot is taken; the snapshot holds exactly the first m
    acknowledged writes for some m, every vector byte-equal, and nothing else."""
    ok(
        client.post("/v1/collections", json={"name": "w", "dim": DIM, "index": {"type": "flat"}}),
        201,
    )
    rows = vectors(5, 2000)
    acknowledged: list[int] = []
    errors: list[str] = []
    started = threading.Event()
    stop = threading.Event()

    def writer() -> None:
        for i in range(len(rows)):
            if stop.is_set():
                return
            r = client.post(
                "/v1/collections/w/upsert",
                json={"external_id": str(i), "vector": rows[i].tolist(), "metadata": {"i": i}},
            )
            if r.status_code != 200:
                errors.append(r.text)
                return
            acknowledged.append(i)
            if i == 200:
                started.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert started.wait(60)
        at_start = len(acknowledged)
        snap = ok(client.post(ROOT), 201)
        at_end = len(acknowledged)
    finally:
        stop.set()
        thread.join(60)
    assert errors == []
    ok(client.post(f"{ROOT}/{snap['id']}/restore"))
    wait_ready(client)
    count = ok(client.get("/v1/collections/w"))["vector_count"]
    assert at_start <= count <= at_end + 1
    assert snap["collections"][0]["vector_count"] == count
    ids = [str(i) for i in range(count + 5)]
    fetched = ok(
        client.post("/v1/collections/w/vectors/fetch", json={"ids": ids, "include_vectors": True})
    )
    got = {v["external_id"]: v for v in fetched["vectors"]}
    assert sorted(got, key=int) == [str(i) for i in range(count)]
    for i in range(count):
        assert np.array_equal(np.asarray(got[str(i)]["vector"], np.float32), rows[i])
        assert got[str(i)]["metadata"] == {"i": i}
    # Search over the restored collection is exact search over that prefix.
    query = vectors(6, 1)[0]
    hits = ok(client.post("/v1/collections/w/search", json={"vector": query.tolist(), "k": 10}))
    prefix = rows[:count]
    norms = prefix / np.linalg.norm(prefix, axis=1, keepdims=True)
    expected = np.argsort(-(norms @ (query / np.linalg.norm(query))), kind="stable")[:10]
    assert [h["external_id"] for h in hits["results"]] == [str(i) for i in expected]


def test_a_corrupt_snapshot_is_refused_and_the_running_data_is_untouched(
    app: Litestar, client: Client
) -> None:
    load(client, "c", "hnsw", seed=7)
    flush_indexes(app)
    snap = ok(client.post(ROOT), 201)
    ok(client.delete("/v1/collections/c/delete/c-1"))
    flush_indexes(app)
    before = observe(client)
    root = Path(app.state.services.settings.resolved_snapshot_dir) / snap["id"]
    for damaged in ("vecstore.db", next(p.name for p in (root / "indexes").iterdir())):
        path = root / damaged if damaged == "vecstore.db" else root / "indexes" / damaged
        original = path.read_bytes()
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0xFF
        path.write_bytes(bytes(flipped))
        error = assert_error(client.post(f"{ROOT}/{snap['id']}/verify"), 409, "snapshot_corrupt")
        assert "checksum" in error["message"]
        error = assert_error(client.post(f"{ROOT}/{snap['id']}/restore"), 409, "snapshot_corrupt")
        assert "nothing was restored" in error["message"]
        assert observe(client) == before
        data_dir = Path(app.state.services.settings.data_dir)
        assert not (data_dir / ".restore-staging").exists()
        assert not list(data_dir.glob("pre-restore-*"))
        path.write_bytes(original)
    # Repaired, it restores.
    ok(client.post(f"{ROOT}/{snap['id']}/restore"))
    wait_ready(client)
    assert ok(client.get("/v1/collections/c/vectors/c-1"))["external_id"] == "c-1"


def test_an_interrupted_restore_is_finished_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    with serving(data_dir) as client:
        load(client, "c", "hnsw", seed=8)
        flush_indexes(client.app)
        expected = observe(client)
        snap = ok(client.post(ROOT), 201)
        ok(client.delete("/v1/collections/c"))
        ok(client.post("/v1/collections", json={"name": "other", "dim": 2}), 201)
    # Crash midway through the swap: the indexes are in, the database is not.
    settings = make_settings(data_dir)
    manifest = disk.SnapshotStore(settings.resolved_snapshot_dir).manifest(snap["id"])
    staging = disk.stage(settings.resolved_snapshot_dir / snap["id"], manifest, data_dir)
    real_replace = disk.os.replace
    calls: list[str] = []

    def crash_on_database(src: Any, dst: Any) -> None:
        if Path(src) == staging / disk.DB_FILE:
            raise OSError("power cut")
        calls.append(str(src))
        real_replace(src, dst)

    monkeypatch.setattr(disk.os, "replace", crash_on_database)
    with pytest.raises(OSError, match="power cut"):
        disk.swap_in(data_dir, staging, settings.index_dir)
    monkeypatch.setattr(disk.os, "replace", real_replace)
    assert (data_dir / disk.JOURNAL).is_file()
    assert calls  # the indexes had been swapped
    with serving(data_dir) as client:
        assert observe(client) == expected
    assert not (data_dir / disk.JOURNAL).exists()
    assert not staging.exists()


@pytest.mark.parametrize(
    "snapshot_id", ["..", "snap-x", "..%2F..%2Fetc", "snap-20261203T000000Z-00000000"]
)
def test_unknown_or_malformed_snapshot_ids_are_404(client: Client, snapshot_id: str) -> None:
    for r in (
        client.get(f"{ROOT}/{snapshot_id}"),
        client.post(f"{ROOT}/{snapshot_id}/restore"),
        client.post(f"{ROOT}/{snapshot_id}/verify"),
        client.delete(f"{ROOT}/{snapshot_id}"),
    ):
        assert r.status_code == 404, r.text


def test_snapshots_can_be_deleted_and_partial_ones_are_never_listed(
    app: Litestar, client: Client
) -> None:
    load(client, "c", "flat", seed=9, n=20)
    first = ok(client.post(ROOT), 201)
    second = ok(client.post(ROOT), 201)
    assert [s["id"] for s in ok(client.get(ROOT))["snapshots"]] == sorted(
        [first["id"], second["id"]]
    )
    root = Path(app.state.services.settings.resolved_snapshot_dir)
    (root / ".partial-snap-20261203T000000Z-0000abcd").mkdir()
    assert len(ok(client.get(ROOT))["snapshots"]) == 2
    assert ok(client.delete(f"{ROOT}/{first['id']}")) == {"id": first["id"], "deleted": True}
    assert [s["id"] for s in ok(client.get(ROOT))["snapshots"]] == [second["id"]]
    assert_error(client.get(f"{ROOT}/{first['id']}"), 404, "snapshot_not_found")
    # Taking a snapshot clears a crashed one's leftovers.
    ok(client.post(ROOT), 201)
    assert not list(root.glob(".partial-*"))


@pytest.mark.parametrize("role", ["read", "write"])
def test_snapshots_need_an_unscoped_admin_key(client: Client, role: str) -> None:
    key = ok(client.post("/v1/admin/keys", json={"name": "k", "role": role}), 201)["key"]
    scoped = ok(
        client.post("/v1/admin/keys", json={"name": "s", "role": "admin", "collections": ["a*"]}),
        201,
    )["key"]
    for headers in ({"x-api-key": key}, {"x-api-key": scoped}):
        assert_error(client.post(ROOT, headers=headers), 403, "forbidden")
        assert_error(client.get(ROOT, headers=headers), 403, "forbidden")
    assert_error(client.get(ROOT, headers={"x-api-key": ""}), 401, "unauthorized")


def vecstore_cli(*argv: str, env_data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VECSTORE_")}
    return subprocess.run(
        [sys.executable, "-m", "vecstore", *argv, "--data-dir", str(env_data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_cli_restore_refuses_a_running_server_and_restores_a_stopped_one(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    key = "cli-restore-admin-key-0123456789abcdef"
    server = ServerProcess(data_dir, admin_key=key)
    try:
        server.start()
        with server.client() as c:
            ok(c.post("/v1/collections", json={"name": "c", "dim": 2}), 201)
            ok(c.post("/v1/collections/c/upsert", json={"external_id": "a", "vector": [1, 0]}))
            snap = ok(c.post(ROOT), 201)
            ok(c.delete("/v1/collections/c"))
        # A second server on the same data directory is refused, as is an offline restore.
        second = subprocess.run(
            serve_argv(HOST, free_port(), data_dir),
            capture_output=True,
            text=True,
            timeout=120,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("VECSTORE_")},
                "VECSTORE_ADMIN_KEY": key,
            },
            check=False,
        )
        assert second.returncode == 1
        assert "in use by process" in second.stderr
        busy = vecstore_cli("restore", snap["id"], env_data_dir=data_dir)
        assert busy.returncode == 1
        assert "in use" in busy.stderr
        server.stop()
        listed = vecstore_cli("restore", "--list", env_data_dir=data_dir)
        assert listed.returncode == 0
        assert snap["id"] in listed.stdout
        assert "c (1)" in listed.stdout
        done = vecstore_cli("restore", snap["id"], env_data_dir=data_dir)
        assert done.returncode == 0, done.stderr
        assert "pre-restore-" in done.stdout
        bad = vecstore_cli("restore", "snap-20261203T000000Z-00000000", env_data_dir=data_dir)
        assert bad.returncode == 1
        assert "nothing was restored" in bad.stderr
        server.start()
        with server.client() as c:
            record = ok(c.get("/v1/collections/c/vectors/a"))
            assert record["vector"] == [1.0, 0.0]
    finally:
        server.stop()


def test_a_swap_with_nothing_staged_changes_nothing(tmp_path: Path) -> None:
    """Regression: the CLI once cleared its own staging before the swap, which then moved
    nothing and reported success."""
    data_dir = tmp_path / "data"
    (data_dir / "indexes").mkdir(parents=True)
    (data_dir / "vecstore.db").write_bytes(b"live")
    with pytest.raises(disk.SnapshotError, match="nothing was restored"):
        disk.swap_in(data_dir, data_dir / ".restore-staging", data_dir / "indexes")
    assert (data_dir / "vecstore.db").read_bytes() == b"live"
    assert not (data_dir / disk.JOURNAL).exists()


@pytest.mark.parametrize("planted", ["../planted.db", "/tmp/planted.db", "indexes/../../x.faiss"])
def test_a_manifest_naming_a_path_outside_the_snapshot_is_refused(
    app: Litestar, client: Client, planted: str
) -> None:
    """A manifest is read from disk: a file entry that escapes staging must never be copied,
    even when the planted file's checksum matches (regression: paths were trusted)."""
    load(client, "c", "flat", seed=3, n=20)
    snap = ok(client.post(ROOT), 201)
    root = Path(app.state.services.settings.resolved_snapshot_dir) / snap["id"]
    manifest = json.loads((root / "manifest.json").read_text())
    source = (root / planted) if not planted.startswith("/") else Path(planted)
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(b"planted")
    size, digest = disk.sha256_of(source)
    manifest["files"].append({"path": planted, "bytes": size, "sha256": digest})
    (root / "manifest.json").write_text(json.dumps(manifest))
    data_dir = Path(app.state.services.settings.data_dir)
    before = observe(client)
    try:
        for action in ("verify", "restore"):
            error = assert_error(client.post(f"{ROOT}/{snap['id']}/{action}"), 409)
            assert "cannot hold" in error["message"]
        assert not (data_dir / "planted.db").exists()
        assert [p for p in data_dir.rglob("x.faiss") if p != source.resolve()] == []
        assert not (data_dir / ".restore-staging").exists()
        assert observe(client) == before
    finally:
        source.unlink(missing_ok=True)
