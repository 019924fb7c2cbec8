"""The search family over HTTP (spec §3): search, bulk_search, recommend, similarity.

Every ranking is checked against a numpy brute force. The app used here has the background
indexer effectively off (``flush_indexes`` does its work on demand, so the state an assertion sees
is deterministic) and a low ``exact_filter_max_matches`` so that broad filters really go through
the widened index search rather than the exact scan.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import flush_indexes, make_settings
from tests.oracles import assert_error as _error
from tests.oracles import np_scores
from vecstore.settings import Settings

Client = TestClient[Litestar]
MakeCollection = Callable[..., dict[str, Any]]

EXACT_FILTER_MAX = 100


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return make_settings(
        data_dir, indexer_interval_s=3600.0, exact_filter_max_matches=EXACT_FILTER_MAX
    )


# -- helpers ---------------------------------------------------------------------------------


def _vectors(n: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _bulk(
    client: Client,
    name: str,
    vectors: np.ndarray,
    metas: list[dict[str, Any]] | None = None,
    ids: list[str] | None = None,
) -> None:
    ids = ids if ids is not None else [f"v{i}" for i in range(len(vectors))]
    for start in range(0, len(vectors), 1000):
        items = []
        for i in range(start, min(start + 1000, len(vectors))):
            item: dict[str, Any] = {"external_id": ids[i], "vector": vectors[i].tolist()}
            if metas is not None:
                item["metadata"] = metas[i]
            items.append(item)
        r = client.post(f"/v1/collections/{name}/bulk_upsert", json={"items": items})
        assert r.status_code == 200, r.text


def _post(client: Client, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = client.post(path, json=body) if body is not None else client.post(path)
    assert r.status_code == 200, r.text
    payload = r.json()
    assert payload["status"] == "success"
    data: dict[str, Any] = payload["data"]
    return data


def _search(client: Client, name: str, **body: Any) -> dict[str, Any]:
    if "vector" in body and isinstance(body["vector"], np.ndarray):
        body["vector"] = body["vector"].tolist()
    return _post(client, f"/v1/collections/{name}/search", body)


def exact_top(
    metric: str, matrix: np.ndarray, q: np.ndarray, k: int, rows: np.ndarray | None = None
) -> tuple[list[str], np.ndarray]:
    rows = np.arange(len(matrix)) if rows is None else rows
    scores = np_scores(metric, matrix[rows], q)
    order = np.argsort(-scores, kind="stable")[:k]
    return [f"v{int(rows[i])}" for i in order], scores[order]


def _ids(hits: list[dict[str, Any]]) -> list[str]:
    return [h["external_id"] for h in hits]


def _check_scores(
    metric: str, hits: list[dict[str, Any]], vectors: dict[str, np.ndarray], q: np.ndarray
) -> None:
    """Each hit's score is the exact score of that record's current vector; sorted desc."""
    for hit in hits:
        assert hit["external_id"] in vectors, f"stale or deleted record {hit['external_id']}"
        want = float(np_scores(metric, vectors[hit["external_id"]][None, :], q)[0])
        assert hit["score"] == pytest.approx(want, rel=1e-4, abs=1e-5)
        if metric == "l2":
            assert hit["distance"] == pytest.approx(-want, rel=1e-4, abs=1e-5)
        else:
            assert "distance" not in hit
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)


# -- metrics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("flushed", [False, True])
def test_scores_follow_the_collection_metric_higher_is_better(
    client: Client, app: Litestar, make_collection: MakeCollection, metric: str, flushed: bool
) -> None:
    vecs = _vectors(60, 8, seed=1)
    make_collection("m", dim=8, distance_metric=metric, index={"type": "flat"})
    _bulk(client, "m", vecs)
    if flushed:
        flush_indexes(app)
    for q in _vectors(5, 8, seed=2):
        want_ids, want_scores = exact_top(metric, vecs, q, 10)
        hits = _search(client, "m", vector=q, k=10)["results"]
        assert _ids(hits) == want_ids
        assert [h["score"] for h in hits] == pytest.approx(want_scores.tolist(), rel=1e-4)
        _check_scores(metric, hits, {f"v{i}": v for i, v in enumerate(vecs)}, q)


def test_l2_reports_negative_distance_as_score_and_the_distance(
    client: Client, make_collection: MakeCollection
) -> None:
    make_collection("l", dim=2, distance_metric="l2")
    _bulk(client, "l", np.array([[3.0, 4.0], [0.0, 1.0]], dtype=np.float32))
    hits = _search(client, "l", vector=[0.0, 0.0], k=2)["results"]
    assert [(h["external_id"], h["score"], h["distance"]) for h in hits] == [
        ("v1", -1.0, 1.0),
        ("v0", -5.0, 5.0),
    ]


def test_cosine_keeps_raw_vectors_and_scores_by_direction(
    client: Client, make_collection: MakeCollection
) -> None:
    make_collection("c", dim=3, distance_metric="cosine")
    raw = {"a": [3.0, 4.0, 0.0], "b": [0.5, -2.25, 8.0], "c": [-100.0, 0.0, 0.0]}
    for ext, vec in raw.items():
        r = client.post("/v1/collections/c/upsert", json={"external_id": ext, "vector": vec})
        assert r.status_code == 200, r.text
    fetched = _post(client, "/v1/collections/c/vectors/fetch", {"ids": list(raw)})
    assert {v["external_id"]: v["vector"] for v in fetched["vectors"]} == raw
    assert client.get("/v1/collections/c/vectors/a").json()["data"]["vector"] == raw["a"]
    # a long query in the same direction as "a" scores exactly 1
    hits = _search(client, "c", vector=[30.0, 40.0, 0.0], k=3, include_vectors=True)["results"]
    assert hits[0]["external_id"] == "a"
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-6)
    assert {h["external_id"]: h["vector"] for h in hits} == raw  # raw, not normalised
    assert hits[-1]["external_id"] == "c"
    assert hits[-1]["score"] == pytest.approx(-0.6, abs=1e-6)


# -- exact, paging, bounds -----------------------------------------------------------------


@pytest.mark.parametrize("index_type", ["hnsw", "flat"])
def test_exact_true_equals_brute_force(
    client: Client, app: Litestar, make_collection: MakeCollection, index_type: str
) -> None:
    vecs = _vectors(500, 12, seed=3)
    make_collection("e", dim=12, distance_metric="ip", index={"type": index_type})
    _bulk(client, "e", vecs)
    flush_indexes(app)
    for q in _vectors(3, 12, seed=4):
        want_ids, want_scores = exact_top("ip", vecs, q, 100)
        hits = _search(client, "e", vector=q, k=100, exact=True)["results"]
        assert _ids(hits) == want_ids
        assert [h["score"] for h in hits] == pytest.approx(want_scores.tolist(), rel=1e-4)


@pytest.mark.parametrize("exact", [True, False])
def test_k_offset_pages_tile_the_full_ranking(
    client: Client, app: Litestar, make_collection: MakeCollection, exact: bool
) -> None:
    vecs = _vectors(120, 6, seed=5)
    make_collection("p", dim=6, distance_metric="l2", index={"type": "flat"})
    _bulk(client, "p", vecs)
    flush_indexes(app)
    q = _vectors(1, 6, seed=6)[0]
    full = _search(client, "p", vector=q, k=100, exact=exact)
    assert (full["k"], full["offset"]) == (100, 0)
    assert _ids(full["results"]) == exact_top("l2", vecs, q, 100)[0]
    pages: list[str] = []
    for offset in range(0, 100, 7):
        page = _search(client, "p", vector=q, k=7, offset=offset, exact=exact)
        assert (page["k"], page["offset"]) == (7, offset)
        pages += _ids(page["results"])
    assert pages[:100] == _ids(full["results"])
    tail = _search(client, "p", vector=q, k=50, offset=100, exact=exact)["results"]
    assert _ids(tail) == exact_top("l2", vecs, q, 120)[0][100:]
    assert _search(client, "p", vector=q, k=5, offset=500, exact=exact)["results"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"k": 0},
        {"k": -1},
        {"k": 1001},
        {"k": 1000, "offset": 9001},
        {"k": 1, "offset": 10000},
        {"offset": -1},
        {"ef_search": 0},
        {"ef_search": 10001},
    ],
)
def test_out_of_range_k_offset_and_ef_search_are_400(
    client: Client, make_collection: MakeCollection, body: dict[str, Any]
) -> None:
    make_collection("b", dim=2)
    r = client.post("/v1/collections/b/search", json={"vector": [1.0, 0.0], **body})
    err = _error(r, 400)
    assert any(field in err["message"] for field in ("k", "offset", "ef_search"))


def test_largest_allowed_k_and_offset_are_accepted(
    client: Client, make_collection: MakeCollection
) -> None:
    make_collection("b", dim=2)
    _bulk(client, "b", _vectors(3, 2, seed=7))
    data = _search(client, "b", vector=[1.0, 0.0], k=1000, offset=9000)
    assert data["results"] == []
    assert len(_search(client, "b", vector=[1.0, 0.0], k=1000)["results"]) == 3


def test_k_plus_offset_over_limit_names_the_limit(
    client: Client, make_collection: MakeCollection
) -> None:
    make_collection("b", dim=2)
    r = client.post("/v1/collections/b/search", json={"vector": [1, 0], "k": 10, "offset": 9995})
    err = _error(r, 400, "limit_exceeded")
    assert "10000" in err["message"]


def test_default_k_is_10(client: Client, make_collection: MakeCollection) -> None:
    make_collection("d", dim=3)
    _bulk(client, "d", _vectors(30, 3, seed=8))
    data = _search(client, "d", vector=[1.0, 2.0, 3.0])
    assert (data["k"], data["offset"], len(data["results"])) == (10, 0, 10)
    assert "total_count" not in data
    assert "timing_ms" not in data


# -- options --------------------------------------------------------------------------------


def test_score_threshold_cuts_the_ranking(client: Client, make_collection: MakeCollection) -> None:
    vecs = _vectors(80, 5, seed=9)
    make_collection("t", dim=5, distance_metric="cosine")
    _bulk(client, "t", vecs)
    q = vecs[0] + 0.1
    full = _search(client, "t", vector=q, k=80)["results"]
    threshold = full[20]["score"]
    cut = _search(client, "t", vector=q, k=80, score_threshold=threshold)["results"]
    assert cut == full[:21]
    assert all(h["score"] >= threshold for h in cut)
    assert _search(client, "t", vector=q, k=10, score_threshold=1.5)["results"] == []


def test_include_vectors_and_include_content(
    client: Client, make_collection: MakeCollection
) -> None:
    make_collection("i", dim=2, distance_metric="ip")
    items = [
        {"external_id": "a", "vector": [1.0, 0.5], "metadata": {"x": 1}, "content": "alpha"},
        {"external_id": "b", "vector": [0.25, 1.0], "metadata": {}},
    ]
    assert client.post("/v1/collections/i/bulk_upsert", json={"items": items}).status_code == 200
    plain = _search(client, "i", vector=[1.0, 0.0], k=2)["results"]
    assert plain == [
        {"external_id": "a", "score": 1.0, "metadata": {"x": 1}},
        {"external_id": "b", "score": 0.25, "metadata": {}},
    ]
    full = _search(client, "i", vector=[1.0, 0.0], k=2, include_vectors=True, include_content=True)[
        "results"
    ]
    assert full == [
        {
            "external_id": "a",
            "score": 1.0,
            "metadata": {"x": 1},
            "content": "alpha",
            "vector": [1.0, 0.5],
        },
        {
            "external_id": "b",
            "score": 0.25,
            "metadata": {},
            "content": None,
            "vector": [0.25, 1.0],
        },
    ]


def test_include_count_reports_total_matches(
    client: Client, make_collection: MakeCollection
) -> None:
    vecs = _vectors(50, 3, seed=10)
    make_collection("n", dim=3)
    _bulk(client, "n", vecs, metas=[{"odd": i % 2 == 1} for i in range(50)])
    data = _search(client, "n", vector=vecs[0], k=5, include_count=True)
    assert data["total_count"] == 50
    data = _search(client, "n", vector=vecs[0], k=5, include_count=True, filters={"odd": True})
    assert data["total_count"] == 25
    assert len(data["results"]) == 5


def test_include_timing_is_reported_in_ms_with_zero_embedding(
    client: Client, make_collection: MakeCollection
) -> None:
    make_collection("tm", dim=2)
    _bulk(client, "tm", _vectors(4, 2, seed=11))
    timing = _search(client, "tm", vector=[1.0, 1.0], include_timing=True)["timing_ms"]
    assert set(timing) == {"embedding_ms", "search_ms", "total_ms"}
    assert all(isinstance(v, float) and v >= 0 for v in timing.values())
    assert timing["embedding_ms"] == 0
    assert timing["total_ms"] >= timing["search_ms"]


@pytest.mark.parametrize(
    ("body", "type_"),
    [
        ({"vector": [1.0, 0.0]}, "dimension_mismatch"),
        ({"vector": [1.0, 0.0, 0.0, 0.0]}, "dimension_mismatch"),
        ({"vector": [0.0, 0.0, 0.0]}, "invalid_vector"),
        ({"text": "hello"}, "embedding_unavailable"),
        ({}, None),
    ],
)
def test_bad_query_vectors_are_400(
    client: Client, make_collection: MakeCollection, body: dict[str, Any], type_: str | None
) -> None:
    make_collection("q", dim=3, distance_metric="cosine")
    err = _error(client.post("/v1/collections/q/search", json=body), 400, type_)
    if type_ == "dimension_mismatch":
        assert "3" in err["message"]


def test_vector_wins_over_text(client: Client, make_collection: MakeCollection) -> None:
    make_collection("vt", dim=2)
    _bulk(client, "vt", np.eye(2, dtype=np.float32))
    hits = _search(client, "vt", vector=[0.0, 1.0], text="ignored", k=1)["results"]
    assert _ids(hits) == ["v1"]


def test_search_unknown_collection_is_404_and_needs_a_key(client: Client) -> None:
    _error(client.post("/v1/collections/nope/search", json={"vector": [1.0]}), 404)
    r = client.post(
        "/v1/collections/nope/search", json={"vector": [1.0]}, headers={"x-api-key": ""}
    )
    _error(r, 401)


def test_ef_search_per_request_and_per_collection(
    client: Client, app: Litestar, make_collection: MakeCollection
) -> None:
    vecs = _vectors(400, 8, seed=12)
    make_collection("ef", dim=8, index={"type": "hnsw", "ef_search": 16})
    _bulk(client, "ef", vecs)
    flush_indexes(app)
    q = _vectors(1, 8, seed=13)[0]
    want = exact_top("cosine", vecs, q, 20)[0]
    # a large per-request ef on 400 points is an exhaustive graph search
    hits = _search(client, "ef", vector=q, k=20, ef_search=400)["results"]
    assert _ids(hits) == want
    low = _search(client, "ef", vector=q, k=20, ef_search=1)["results"]
    assert len(low) == 20  # ef is raised to at least k: never under-filled
    _check_scores("cosine", low, {f"v{i}": v for i, v in enumerate(vecs)}, q)

    r = client.patch("/v1/collections/ef", json={"index": {"ef_search": 400}})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["index"]["ef_search"] == 400
    assert client.get("/v1/collections/ef").json()["data"]["index"]["ef_search"] == 400
    assert app.state.services.engine.runtime("ef").index.index.hnsw.efSearch == 400
    assert _ids(_search(client, "ef", vector=q, k=20)["results"]) == want
    _error(client.patch("/v1/collections/ef", json={"index": {"ef_search": 0}}), 400)


def test_ef_search_does_not_apply_to_flat(client: Client, make_collection: MakeCollection) -> None:
    make_collection("fl", dim=2, index={"type": "flat"})
    _error(client.patch("/v1/collections/fl", json={"index": {"ef_search": 10}}), 400)


# -- the filtered-search guarantee --------------------------------------------------------------

N_FILTERED = 2000


def _filter_metas(n: int) -> list[dict[str, Any]]:
    return [
        {"sel": i % 100 == 7, "half": i % 2 == 0, "thirteen": i % 13 == 0, "g": i % 10}
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("index_type", "metric"),
    [("hnsw", "cosine"), ("hnsw", "l2"), ("hnsw_sq8", "cosine"), ("flat", "ip")],
)
def test_filtered_search_returns_min_k_matches_ranked_as_exact_over_the_matching_set(
    client: Client, app: Litestar, make_collection: MakeCollection, index_type: str, metric: str
) -> None:
    dim = 16
    vecs = _vectors(N_FILTERED, dim, seed=14)
    metas = _filter_metas(N_FILTERED)
    make_collection("fs", dim=dim, distance_metric=metric, index={"type": index_type})
    _bulk(client, "fs", vecs, metas)
    flush_indexes(app)
    health = _post_get(client, "/v1/health")["collections"]
    assert [(c["name"], c["index_vectors"]) for c in health] == [("fs", N_FILTERED)]
    current = {f"v{i}": v for i, v in enumerate(vecs)}

    def rows(pred: Callable[[dict[str, Any]], bool]) -> np.ndarray:
        return np.array([i for i, m in enumerate(metas) if pred(m)])

    selective = rows(lambda m: m["sel"])  # 1%
    broad = rows(lambda m: m["half"])  # 50%
    medium = rows(lambda m: m["thirteen"])  # 154, more than the exact-scan limit
    assert len(selective) == 20
    assert len(medium) > EXACT_FILTER_MAX

    for q in _vectors(4, dim, seed=15):
        # selective: exactly the exact answer, whatever k is
        for k in (5, 20, 50):
            hits = _search(client, "fs", vector=q, k=k, filters={"sel": True})["results"]
            want_ids, want_scores = exact_top(metric, vecs, q, k, selective)
            assert _ids(hits) == want_ids
            assert [h["score"] for h in hits] == pytest.approx(want_scores.tolist(), rel=1e-4)
        # fewer matches than k through the index path: all of them, exactly ranked
        hits = _search(client, "fs", vector=q, k=200, filters={"thirteen": True})["results"]
        assert _ids(hits) == exact_top(metric, vecs, q, 200, medium)[0]
        # broad: exact count, only matching records, exact scores, high recall
        for k in (10, 100):
            hits = _search(client, "fs", vector=q, k=k, filters={"half": True})["results"]
            assert len(hits) == k
            got = _ids(hits)
            assert len(set(got)) == k
            assert all(int(e[1:]) % 2 == 0 for e in got)
            _check_scores(metric, hits, current, q)
            want = set(exact_top(metric, vecs, q, k, broad)[0])
            assert len(want & set(got)) >= 0.9 * k
            exact_hits = _search(client, "fs", vector=q, k=k, filters={"half": True}, exact=True)
            assert _ids(exact_hits["results"]) == exact_top(metric, vecs, q, k, broad)[0]
        # unfiltered, for comparison
        hits = _search(client, "fs", vector=q, k=50)["results"]
        assert len(hits) == 50
        _check_scores(metric, hits, current, q)
        assert len(set(_ids(hits)) & set(exact_top(metric, vecs, q, 50)[0])) >= 45


def _post_get(client: Client, path: str) -> dict[str, Any]:
    r = client.get(path)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


def test_filter_matching_nothing_returns_empty(
    client: Client, make_collection: MakeCollection
) -> None:
    make_collection("z", dim=2)
    _bulk(client, "z", _vectors(10, 2, seed=16), metas=[{"g": 1}] * 10)
    data = _search(client, "z", vector=[1.0, 0.0], filters={"g": 2}, include_count=True)
    assert data["results"] == []
    assert data["total_count"] == 0


# -- deletes and updates are never stale --------------------------------------------------------


def test_deleted_and_replaced_records_are_never_returned_and_tombstones_compact(
    client: Client, app: Litestar, make_collection: MakeCollection
) -> None:
    dim, n = 8, N_FILTERED
    vecs = _vectors(n, dim, seed=17)
    metas = _filter_metas(n)
    make_collection("del", dim=dim, distance_metric="cosine", index={"type": "hnsw"})
    _bulk(client, "del", vecs, metas)
    flush_indexes(app)
    current = {f"v{i}": v for i, v in enumerate(vecs)}
    rng = np.random.default_rng(18)
    order = rng.permutation(n)
    queries = _vectors(3, dim, seed=19)

    def check_all() -> None:
        live_rows = np.array(sorted(int(e[1:]) for e in current))
        matrix = np.stack([current[f"v{i}"] for i in live_rows])
        for q in queries:
            hits = _search(client, "del", vector=q, k=50)["results"]
            assert len(hits) == 50
            _check_scores("cosine", hits, current, q)
            exact = _search(client, "del", vector=q, k=50, exact=True)["results"]
            scores = np_scores("cosine", matrix, q)
            want = [f"v{live_rows[i]}" for i in np.argsort(-scores, kind="stable")[:50]]
            assert _ids(exact) == want
            for flt in ({"half": True}, {"sel": True}):
                hits = _search(client, "del", vector=q, k=30, filters=flt)["results"]
                key = next(iter(flt))
                matching = [e for e in current if metas[int(e[1:])][key]]
                assert len(hits) == min(30, len(matching))
                _check_scores("cosine", hits, current, q)
                assert all(h["metadata"][key] is True for h in hits)

    def delete(ids: list[str]) -> None:
        data = _post(client, "/v1/collections/del/delete_batch", {"external_ids": ids})
        assert data["deleted_count"] == len(ids)
        for e in ids:
            del current[e]

    def stats() -> dict[str, Any]:
        (row,) = _post_get(client, "/v1/health")["collections"]
        assert isinstance(row, dict)
        return row

    # 15% deleted: searched before and after the tombstones reach the index, no compaction yet
    delete([f"v{i}" for i in order[:300]])
    check_all()
    flush_indexes(app)
    check_all()
    assert stats()["deleted_fraction"] == pytest.approx(300 / n)
    assert stats()["vector_count"] == n - 300

    # another 15% deleted and 50 records replaced with new vectors: > 20% tombstones
    delete([f"v{i}" for i in order[300:600]])
    replaced = [f"v{i}" for i in order[600:650]]
    new_vecs = _vectors(50, dim, seed=20)
    _bulk(client, "del", new_vecs, [metas[int(e[1:])] for e in replaced], ids=replaced)
    for e, v in zip(replaced, new_vecs, strict=True):
        current[e] = v
    check_all()
    for e, v in zip(replaced[:5], new_vecs[:5], strict=True):
        top = _search(client, "del", vector=v, k=1)["results"][0]
        assert (top["external_id"], top["score"]) == (e, pytest.approx(1.0, abs=1e-5))
    flush_indexes(app)
    row = stats()
    assert row["deleted_fraction"] == 0
    assert row["index_vectors"] == n - 600
    assert row["vector_count"] == n - 600
    check_all()
    for e in [f"v{i}" for i in order[:600:50]]:
        assert client.get(f"/v1/collections/del/vectors/{e}").status_code == 404

    # past 1024 dead rows the in-memory table compacts too (rows renumbered); then new inserts
    delete([f"v{i}" for i in order[650:1150]])
    flush_indexes(app)
    row = stats()
    assert (row["deleted_fraction"], row["index_vectors"]) == (0, n - 1100)
    assert app.state.services.engine.runtime("del").table.dead_count == 0  # table compacted
    check_all()
    extra = _vectors(30, dim, seed=21)
    extra_ids = [f"v{n + i}" for i in range(30)]
    metas += [{"sel": True, "half": True, "thirteen": False, "g": 0}] * 30
    _bulk(client, "del", extra, metas[n:], ids=extra_ids)
    current.update(zip(extra_ids, extra, strict=True))
    check_all()
    flush_indexes(app)
    assert stats()["index_vectors"] == n - 1100 + 30
    check_all()


# -- bulk_search ---------------------------------------------------------------------------------


def test_bulk_search_answers_each_query_like_a_single_search(
    client: Client, make_collection: MakeCollection
) -> None:
    vecs = _vectors(200, 6, seed=21)
    make_collection("bs", dim=6, distance_metric="ip")
    _bulk(client, "bs", vecs, metas=[{"g": i % 4} for i in range(200)])
    qs = _vectors(4, 6, seed=22)
    queries: list[dict[str, Any]] = [
        {"vector": qs[0].tolist(), "k": 3},
        {"vector": qs[1].tolist(), "k": 7, "filters": {"g": 2}},
        {"vector": qs[2].tolist()},
        {"vector": qs[3].tolist(), "k": 1, "filters": {"g": {"$in": [0, 1]}}},
    ]
    data = _post(client, "/v1/collections/bs/bulk_search", {"queries": queries})
    assert set(data) == {"results"}
    results = data["results"]
    assert [len(r) for r in results] == [3, 7, 10, 1]
    for q, got in zip(queries, results, strict=True):
        single = _search(client, "bs", **{**q, "exact": True})["results"]
        assert got == single
    assert all(h["metadata"]["g"] == 2 for h in results[1])
    timed = _post(
        client,
        "/v1/collections/bs/bulk_search",
        {"queries": queries[:1], "include_timing": True},
    )
    assert timed["timing_ms"]["embedding_ms"] == 0


def test_bulk_search_limits_and_errors(client: Client, make_collection: MakeCollection) -> None:
    make_collection("bl", dim=2)
    q = {"vector": [1.0, 0.0], "k": 1}
    assert (
        _post(client, "/v1/collections/bl/bulk_search", {"queries": [q] * 100})["results"]
        == [[]] * 100
    )
    err = _error(client.post("/v1/collections/bl/bulk_search", json={"queries": [q] * 101}), 400)
    assert "100" in err["message"]
    err = _error(
        client.post(
            "/v1/collections/bl/bulk_search",
            json={"queries": [q, {"vector": [1.0, 0.0, 0.0]}]},
        ),
        400,
        "dimension_mismatch",
    )
    assert "queries[1]" in err["message"]
    _error(client.post("/v1/collections/bl/bulk_search", json={"queries": [{**q, "k": 0}]}), 400)
    _error(client.post("/v1/collections/nope/bulk_search", json={"queries": [q]}), 404)


# -- recommend ------------------------------------------------------------------------------


@pytest.fixture
def rec(client: Client, make_collection: MakeCollection) -> np.ndarray:
    vecs = _vectors(100, 8, seed=23)
    make_collection("rec", dim=8, distance_metric="cosine")
    _bulk(client, "rec", vecs, metas=[{"even": i % 2 == 0} for i in range(100)])
    return vecs


def test_recommend_excludes_self_by_default(client: Client, rec: np.ndarray) -> None:
    hits = _post(client, "/v1/collections/rec/recommend/v4")["results"]
    want_ids, want_scores = exact_top("cosine", rec, rec[4], 11)
    assert want_ids[0] == "v4"
    assert _ids(hits) == want_ids[1:]
    assert [h["score"] for h in hits] == pytest.approx(want_scores[1:].tolist(), rel=1e-4)


def test_recommend_can_include_self(client: Client, rec: np.ndarray) -> None:
    hits = _post(client, "/v1/collections/rec/recommend/v4", {"exclude_self": False})["results"]
    assert _ids(hits) == exact_top("cosine", rec, rec[4], 10)[0]
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_recommend_k_from_query_or_body(client: Client, rec: np.ndarray) -> None:
    assert len(_post(client, "/v1/collections/rec/recommend/v1?k=3")["results"]) == 3
    assert len(_post(client, "/v1/collections/rec/recommend/v1", {"k": 2})["results"]) == 2
    assert len(_post(client, "/v1/collections/rec/recommend/v1?k=3", {})["results"]) == 3
    _error(client.post("/v1/collections/rec/recommend/v1", json={"k": 0}), 400)
    _error(client.post("/v1/collections/rec/recommend/v1?k=1001"), 400)


def test_recommend_with_filters(client: Client, rec: np.ndarray) -> None:
    hits = _post(client, "/v1/collections/rec/recommend/v4", {"k": 5, "filters": {"even": False}})[
        "results"
    ]
    odd_rows = np.arange(1, 100, 2)
    assert _ids(hits) == exact_top("cosine", rec, rec[4], 5, odd_rows)[0]
    hits = _post(client, "/v1/collections/rec/recommend/v4", {"k": 5, "filters": {"even": True}})[
        "results"
    ]
    even_rows = np.arange(0, 100, 2)
    assert _ids(hits) == exact_top("cosine", rec, rec[4], 6, even_rows)[0][1:]


def test_recommend_unknown_id_or_collection_is_404(client: Client, rec: np.ndarray) -> None:
    _error(client.post("/v1/collections/rec/recommend/missing"), 404, "record_not_found")
    _error(client.post("/v1/collections/nope/recommend/v1"), 404)


# -- similarity -----------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_similarity_matches_numpy_from_body_or_query(
    client: Client, make_collection: MakeCollection, metric: str
) -> None:
    vecs = _vectors(2, 5, seed=24) * 3
    make_collection("sim", dim=5, distance_metric=metric)
    _bulk(client, "sim", vecs, ids=["x", "y"])
    want = float(np_scores(metric, vecs[:1], vecs[1])[0])
    data = _post(client, "/v1/collections/sim/similarity", {"id1": "x", "id2": "y"})
    assert data["id1"] == "x"
    assert data["id2"] == "y"
    assert data["score"] == pytest.approx(want, rel=1e-4, abs=1e-5)
    data = _post(client, "/v1/collections/sim/similarity?id1=y&id2=x")
    assert (data["id1"], data["id2"]) == ("y", "x")
    assert data["score"] == pytest.approx(want, rel=1e-4, abs=1e-5)
    self_score = _post(client, "/v1/collections/sim/similarity", {"id1": "x", "id2": "x"})
    expected_self = float(np_scores(metric, vecs[:1], vecs[0])[0])
    assert self_score["score"] == pytest.approx(expected_self, rel=1e-4, abs=1e-5)


def test_similarity_errors(client: Client, make_collection: MakeCollection) -> None:
    make_collection("sim", dim=2)
    _bulk(client, "sim", np.eye(2, dtype=np.float32), ids=["x", "y"])
    err = _error(
        client.post("/v1/collections/sim/similarity", json={"id1": "x", "id2": "zz"}),
        404,
        "record_not_found",
    )
    assert "zz" in err["message"]
    _error(client.post("/v1/collections/sim/similarity", json={"id1": "x"}), 400)
    _error(client.post("/v1/collections/sim/similarity"), 400)
    _error(client.post("/v1/collections/nope/similarity", json={"id1": "x", "id2": "y"}), 404)


def test_cosine_search_handles_vectors_near_the_float32_limit(
    client: TestClient[Litestar], make_collection: Any
) -> None:
    # Regression: the norm was computed in float32 and overflowed to inf, zeroing the vector.
    make_collection("huge", dim=3)
    big = [3e38, 1e38, 0.0]
    r = client.post("/v1/collections/huge/upsert", json={"external_id": "big", "vector": big})
    assert r.status_code == 200, r.text
    client.post("/v1/collections/huge/upsert", json={"external_id": "other", "vector": [0, 0, 1]})
    hits = client.post("/v1/collections/huge/search", json={"vector": [3, 1, 0], "k": 2})
    results = hits.json()["data"]["results"]
    assert results[0]["external_id"] == "big"
    assert results[0]["score"] == pytest.approx(1.0, abs=1e-6)
