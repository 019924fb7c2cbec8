"""Per-collection rerank, ``POST /v1/collections/{name}/rerank`` (spec §4, seed page 000).

Candidates' stored vectors are scored exactly with the collection's metric, sorted descending
with ties in input order; duplicates collapse and unknown ids are listed in ``not_found``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import ADMIN_KEY, flush_indexes
from tests.oracles import assert_error as _error
from tests.oracles import counted, np_scores
from vecstore.storage import id_hashes

Client = TestClient[Litestar]
MakeCollection = Callable[..., dict[str, Any]]


def _vectors(n: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _load(
    client: Client,
    name: str,
    vectors: np.ndarray,
    ids: list[str] | None = None,
    metas: list[dict[str, Any]] | None = None,
) -> list[str]:
    ids = ids if ids is not None else [f"doc-{i}" for i in range(len(vectors))]
    items = [
        {
            "external_id": ext,
            "vector": vec.tolist(),
            "metadata": metas[i] if metas is not None else {"i": i},
        }
        for i, (ext, vec) in enumerate(zip(ids, vectors, strict=True))
    ]
    r = client.post(f"/v1/collections/{name}/bulk_upsert", json={"items": items})
    assert r.status_code == 200, r.text
    return ids


def _rerank(client: Client, name: str, **body: Any) -> dict[str, Any]:
    if isinstance(body.get("vector"), np.ndarray):
        body["vector"] = body["vector"].tolist()
    r = client.post(f"/v1/collections/{name}/rerank", json=body)
    assert r.status_code == 200, r.text
    payload = r.json()
    assert payload["status"] == "success"
    data: dict[str, Any] = payload["data"]
    return data


# -- scoring -----------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("flushed", [False, True])
def test_rerank_scores_candidates_exactly_with_the_collection_metric(
    client: Client, app: Litestar, make_collection: MakeCollection, metric: str, flushed: bool
) -> None:
    vecs = _vectors(40, 7, seed=1) * 2.5
    make_collection("articles", dim=7, distance_metric=metric)
    ids = _load(client, "articles", vecs)
    if flushed:
        flush_indexes(app)
    rng = np.random.default_rng(2)
    picked = [int(i) for i in rng.choice(40, size=15, replace=False)]
    q = _vectors(1, 7, seed=3)[0]
    data = _rerank(client, "articles", vector=q, candidates=[ids[i] for i in picked])
    assert set(data) == {"results", "not_found"}
    assert data["not_found"] == []
    scores = np_scores(metric, vecs[picked], q)
    order = np.argsort(-scores, kind="stable")
    results = data["results"]
    assert [r["external_id"] for r in results] == [ids[picked[i]] for i in order]
    assert [r["score"] for r in results] == pytest.approx(scores[order].tolist(), rel=1e-4)
    assert [r["metadata"] for r in results] == [{"i": picked[i]} for i in order]
    got = [r["score"] for r in results]
    assert got == sorted(got, reverse=True)
    for r in results:
        assert "vector" not in r
        if metric == "l2":
            assert r["distance"] == pytest.approx(-r["score"])


def test_seed_example_shape(client: Client, make_collection: MakeCollection) -> None:
    """The request/response shape of the original product page."""
    make_collection("articles", dim=4, distance_metric="cosine")
    vecs = np.array(
        [
            [0.1, 0.2, 0.3, 0.4],
            [0.4, 0.3, 0.2, 0.1],
            [0.1, 0.2, 0.3, 0.5],
            [1.0, 0.0, 0.0, 0.0],
            [0.2, 0.2, 0.3, 0.4],
        ],
        dtype=np.float32,
    )
    _load(client, "articles", vecs, ids=[f"doc-{i}" for i in range(1, 6)], metas=[{}] * 5)
    r = client.post(
        "/v1/collections/articles/rerank",
        json={
            "vector": [0.1, 0.2, 0.3, 0.4],
            "candidates": ["doc-1", "doc-2", "doc-3", "doc-4", "doc-5"],
        },
        headers={"x-api-key": ADMIN_KEY, "Content-Type": "application/json"},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "success"
    results = body["data"]["results"]
    assert [x["external_id"] for x in results] == ["doc-1", "doc-3", "doc-5", "doc-2", "doc-4"]
    assert results[0] == {"external_id": "doc-1", "score": pytest.approx(1.0), "metadata": {}}
    assert body["data"]["not_found"] == []


def test_ties_keep_input_order(client: Client, make_collection: MakeCollection) -> None:
    make_collection("t", dim=3, distance_metric="ip")
    same = np.array([[1.0, 2.0, 3.0]] * 4 + [[0.0, 0.0, 1.0]], dtype=np.float32)
    _load(client, "t", same, ids=["a", "b", "c", "d", "low"])
    for order in (["a", "b", "c", "d", "low"], ["low", "d", "b", "a", "c"], ["c", "a", "d", "b"]):
        data = _rerank(client, "t", vector=[1.0, 1.0, 1.0], candidates=order)
        expected = [e for e in order if e != "low"] + (["low"] if "low" in order else [])
        assert [x["external_id"] for x in data["results"]] == expected
        assert {x["score"] for x in data["results"] if x["external_id"] != "low"} == {6.0}


def test_duplicates_collapse_and_missing_ids_are_listed(
    client: Client, make_collection: MakeCollection
) -> None:
    make_collection("d", dim=2, distance_metric="ip")
    _load(client, "d", np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32), ids=["x", "y"])
    data = _rerank(
        client, "d", vector=[2.0, 1.0], candidates=["y", "ghost", "x", "y", "other", "ghost", "x"]
    )
    assert [(x["external_id"], x["score"]) for x in data["results"]] == [("x", 2.0), ("y", 1.0)]
    assert data["not_found"] == ["ghost", "other"]


def test_all_candidates_missing(client: Client, make_collection: MakeCollection) -> None:
    make_collection("m", dim=2)
    data = _rerank(client, "m", vector=[1.0, 0.0], candidates=["a", "b"])
    assert data == {"results": [], "not_found": ["a", "b"]}


def test_empty_candidates_give_an_empty_result(
    client: Client, make_collection: MakeCollection
) -> None:
    make_collection("e", dim=2)
    _load(client, "e", np.eye(2, dtype=np.float32))
    assert _rerank(client, "e", vector=[1.0, 0.0], candidates=[]) == {
        "results": [],
        "not_found": [],
    }


def test_deleted_and_updated_candidates(
    client: Client, app: Litestar, make_collection: MakeCollection
) -> None:
    make_collection("u", dim=2, distance_metric="ip")
    _load(client, "u", np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32))
    flush_indexes(app)
    assert client.delete("/v1/collections/u/delete/doc-0").status_code == 200
    r = client.post("/v1/collections/u/upsert", json={"external_id": "doc-1", "vector": [5.0, 0.0]})
    assert r.status_code == 200
    data = _rerank(client, "u", vector=[1.0, 0.0], candidates=["doc-0", "doc-1", "doc-2"])
    assert [(x["external_id"], x["score"]) for x in data["results"]] == [
        ("doc-1", 5.0),
        ("doc-2", 1.0),
    ]
    assert data["results"][0]["metadata"] == {"i": 1}  # metadata kept when absent on upsert
    assert data["not_found"] == ["doc-0"]


def test_many_candidates_through_the_id_fingerprints_after_deletes_and_rewrites(
    client: Client, app: Litestar, make_collection: MakeCollection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reranks of many ids look rows up through the sorted id fingerprints the indexer builds
    (``id_hashes``). Records deleted, rewritten or added after it was built are answered as the
    records are now, in the order an exact scoring gives."""
    monkeypatch.setattr(id_hashes, "MIN_ROWS", 100)  # built for this small collection
    make_collection("many", dim=8, distance_metric="cosine")
    vecs = _vectors(300, 8, seed=11)
    ids = _load(client, "many", vecs)
    flush_indexes(app)
    table = app.state.services.engine.runtime("many").table
    assert table.id_hashes is not None
    assert table.id_hashes.covers == 300
    for gone in ids[:10]:
        assert client.delete(f"/v1/collections/many/delete/{gone}").status_code == 200
    stored = dict(zip(ids[10:], vecs[10:], strict=True))
    rewritten, added = _vectors(2, 8, seed=12)
    _load(client, "many", np.stack([rewritten, added]), ids=["doc-5", "doc-300"])
    stored["doc-5"], stored["doc-300"] = rewritten, added
    candidates = [*reversed(ids), "doc-300", "missing"]
    q = _vectors(1, 8, seed=13)[0]
    dict_lookups = counted(table)
    data = _rerank(client, "many", vector=q, candidates=candidates)
    # Only the ids the fingerprints cannot answer reach the dict: the deleted ten (doc-5's
    # fingerprint leads to its dead row), the one added since, and the unknown one.
    assert dict_lookups.gets == 12
    present = [c for c in candidates if c in stored]
    expected = np_scores("cosine", np.stack([stored[c] for c in present]), q)
    order = np.argsort(-expected, kind="stable")
    assert [x["external_id"] for x in data["results"]] == [present[i] for i in order]
    assert [x["score"] for x in data["results"]] == pytest.approx(expected[order], abs=1e-5)
    assert data["not_found"] == [c for c in candidates if c not in stored]
    assert len(data["not_found"]) == 10  # doc-0..9 but doc-5, and 'missing'


# -- options -----------------------------------------------------------------------------------


def test_top_k_cuts_after_sorting(client: Client, make_collection: MakeCollection) -> None:
    vecs = _vectors(20, 4, seed=4)
    make_collection("k", dim=4, distance_metric="l2")
    ids = _load(client, "k", vecs)
    q = _vectors(1, 4, seed=5)[0]
    full = _rerank(client, "k", vector=q, candidates=[*ids, "nope"])
    cut = _rerank(client, "k", vector=q, candidates=[*ids, "nope"], top_k=5)
    assert cut["results"] == full["results"][:5]
    assert cut["not_found"] == ["nope"]
    big = _rerank(client, "k", vector=q, candidates=ids, top_k=500)
    assert big["results"] == full["results"]
    for bad in (0, -1):
        r = client.post(
            "/v1/collections/k/rerank", json={"vector": q.tolist(), "candidates": ids, "top_k": bad}
        )
        _error(r, 400)


def test_score_threshold_drops_low_scores(client: Client, make_collection: MakeCollection) -> None:
    make_collection("s", dim=2, distance_metric="ip")
    vecs = np.array([[3.0, 0.0], [2.0, 0.0], [1.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    ids = _load(client, "s", vecs)
    data = _rerank(client, "s", vector=[1.0, 0.0], candidates=ids, score_threshold=2.0)
    assert [(x["external_id"], x["score"]) for x in data["results"]] == [
        ("doc-0", 3.0),
        ("doc-1", 2.0),
    ]
    data = _rerank(client, "s", vector=[1.0, 0.0], candidates=ids, score_threshold=-5, top_k=3)
    assert [x["external_id"] for x in data["results"]] == ["doc-0", "doc-1", "doc-2"]
    data = _rerank(client, "s", vector=[1.0, 0.0], candidates=ids, score_threshold=10)
    assert data["results"] == []


def test_include_vectors_returns_raw_stored_vectors(
    client: Client, make_collection: MakeCollection
) -> None:
    make_collection("v", dim=3, distance_metric="cosine")
    raw = np.array([[3.0, 4.0, 0.0], [0.0, -0.5, 2.0]], dtype=np.float32)
    ids = _load(client, "v", raw)
    data = _rerank(client, "v", vector=[1.0, 0.0, 0.0], candidates=ids, include_vectors=True)
    assert {x["external_id"]: x["vector"] for x in data["results"]} == {
        "doc-0": [3.0, 4.0, 0.0],
        "doc-1": [0.0, -0.5, 2.0],
    }
    assert data["results"][0]["score"] == pytest.approx(0.6)


def test_include_timing_reports_read_timings(
    client: Client, make_collection: MakeCollection
) -> None:
    make_collection("tm", dim=2)
    ids = _load(client, "tm", np.eye(2, dtype=np.float32))
    data = _rerank(client, "tm", vector=[1.0, 0.0], candidates=ids, include_timing=True)
    timing = data["timing_ms"]
    assert set(timing) == {"embedding_ms", "search_ms", "total_ms"}
    assert all(isinstance(v, float) and v >= 0 for v in timing.values())
    assert timing["embedding_ms"] == 0
    assert timing["total_ms"] >= timing["search_ms"]
    assert "timing_ms" not in _rerank(client, "tm", vector=[1.0, 0.0], candidates=ids)


def test_vector_wins_when_text_is_also_given(
    client: Client, make_collection: MakeCollection
) -> None:
    make_collection("vt", dim=2, distance_metric="ip")
    ids = _load(client, "vt", np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32))
    data = _rerank(client, "vt", vector=[0.0, 1.0], text="machine learning", candidates=ids)
    assert [x["external_id"] for x in data["results"]] == ["doc-1", "doc-0"]
    assert data["results"][0]["score"] == 1.0


# -- errors ------------------------------------------------------------------------------------


def test_text_only_without_an_embedding_model_is_400(
    client: Client, make_collection: MakeCollection
) -> None:
    make_collection("tx", dim=2)
    r = client.post(
        "/v1/collections/tx/rerank",
        json={"text": "machine learning best practices", "candidates": ["doc-1"]},
    )
    err = _error(r, 400, "embedding_unavailable")
    assert "vector" in err["message"]


def test_neither_vector_nor_text_is_400(client: Client, make_collection: MakeCollection) -> None:
    make_collection("nv", dim=2)
    err = _error(client.post("/v1/collections/nv/rerank", json={"candidates": ["a"]}), 400)
    assert "vector" in err["message"]


@pytest.mark.parametrize("got", [2, 4, 1])
def test_dimension_mismatch_names_expected_and_got(
    client: Client, make_collection: MakeCollection, got: int
) -> None:
    make_collection("dm", dim=3)
    _load(client, "dm", np.eye(3, dtype=np.float32))
    r = client.post(
        "/v1/collections/dm/rerank", json={"vector": [1.0] * got, "candidates": ["doc-0"]}
    )
    err = _error(r, 400, "dimension_mismatch")
    assert "expect" in err["message"]
    assert "3" in err["message"]
    assert str(got) in err["message"]


def test_non_finite_query_is_400(client: Client, make_collection: MakeCollection) -> None:
    make_collection("nf", dim=2, distance_metric="ip")
    r = client.post("/v1/collections/nf/rerank", json={"vector": [1e39, 0.0], "candidates": ["a"]})
    _error(r, 400, "invalid_vector")


def test_unknown_collection_is_404(client: Client) -> None:
    r = client.post("/v1/collections/nope/rerank", json={"vector": [1.0], "candidates": ["a"]})
    err = _error(r, 404, "collection_not_found")
    assert "nope" in err["message"]


@pytest.mark.parametrize(
    "headers",
    [{"x-api-key": ""}, {"x-api-key": "wrong-key"}, {"Authorization": "Bearer wrong-key"}],
)
def test_missing_or_invalid_key_is_401(
    client: Client, make_collection: MakeCollection, headers: dict[str, str]
) -> None:
    make_collection("auth", dim=2)
    body = {"vector": [1.0, 0.0], "candidates": ["a"]}
    client.headers.pop("x-api-key")
    try:
        _error(client.post("/v1/collections/auth/rerank", json=body), 401)
        _error(client.post("/v1/collections/auth/rerank", json=body, headers=headers), 401)
        r = client.post(
            "/v1/collections/auth/rerank",
            json=body,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert r.status_code == 200, r.text
    finally:
        client.headers["x-api-key"] = ADMIN_KEY


def test_read_key_may_rerank_in_scope_and_sees_404_outside(
    client: Client, make_collection: MakeCollection
) -> None:
    make_collection("tenant-a-docs", dim=2)
    make_collection("tenant-b-docs", dim=2)
    r = client.post(
        "/v1/admin/keys",
        json={"name": "reader", "role": "read", "collections": ["tenant-a-*"]},
    )
    assert r.status_code in (200, 201), r.text
    key = r.json()["data"]["key"]
    body = {"vector": [1.0, 0.0], "candidates": ["a"]}
    r = client.post("/v1/collections/tenant-a-docs/rerank", json=body, headers={"x-api-key": key})
    assert r.status_code == 200, r.text
    r = client.post("/v1/collections/tenant-b-docs/rerank", json=body, headers={"x-api-key": key})
    _error(r, 404)


def test_candidate_limit(client: Client, make_collection: MakeCollection) -> None:
    make_collection("lim", dim=2)
    ids = _load(client, "lim", np.eye(2, dtype=np.float32))
    at_limit = [*ids, *(f"m{i}" for i in range(9998))]
    data = _rerank(client, "lim", vector=[1.0, 0.0], candidates=at_limit)
    assert [x["external_id"] for x in data["results"]] == ["doc-0", "doc-1"]
    assert len(data["not_found"]) == 9998
    r = client.post(
        "/v1/collections/lim/rerank",
        json={"vector": [1.0, 0.0], "candidates": [*at_limit, "one-more"]},
    )
    err = _error(r, 400)
    assert "candidates" in err["message"]
    assert "10000" in err["message"]


def test_missing_candidates_field_is_rejected(
    client: Client, make_collection: MakeCollection
) -> None:
    make_collection("mc", dim=2)
    r = client.post("/v1/collections/mc/rerank", json={"vector": [1.0, 0.0]})
    assert r.status_code in (400, 422), r.text
    assert r.json()["error"]["code"] == r.status_code
    assert "candidates" in r.json()["error"]["message"]
