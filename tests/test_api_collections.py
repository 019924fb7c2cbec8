"""HTTP contract of /v1/collections (api.md §0 conventions, §1 collections)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
COLLECTION_KEYS = {
    "name",
    "dim",
    "distance_metric",
    "description",
    "index",
    "embedding_model",
    "vector_count",
    "created_at",
    "updated_at",
}
HNSW_DEFAULTS = {"type": "hnsw", "m": 32, "ef_construction": 128, "ef_search": 128}

MakeCollection = Callable[..., dict[str, Any]]


def assert_error(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    """The error envelope: HTTP status == error.code, a stable type, a human message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error"
    assert set(body) == {"status", "error"}
    error: dict[str, Any] = body["error"]
    assert error["code"] == status
    assert error["type"] == type_
    assert isinstance(error["message"], str)
    assert error["message"]
    assert response.headers["x-request-id"]
    return error


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "success"
    assert set(body) == {"status", "data"}
    return body["data"]


def parse_utc(value: str) -> datetime:
    """An ISO 8601 timestamp carrying an explicit UTC offset."""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)", value), value
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def upsert(client: TestClient[Litestar], name: str, eid: str, vector: list[float]) -> None:
    r = client.post(f"/v1/collections/{name}/upsert", json={"external_id": eid, "vector": vector})
    ok(r)


def make_key(client: TestClient[Litestar], role: str) -> str:
    data = ok(client.post("/v1/admin/keys", json={"name": f"{role}-key", "role": role}), 201)
    key: str = data["key"]
    return key


# -- create ------------------------------------------------------------------------------------
def test_create_returns_201_with_documented_defaults(client: TestClient[Litestar]) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    data = ok(client.post("/v1/collections", json={"name": "docs", "dim": 8}), 201)
    assert set(data) == COLLECTION_KEYS
    assert data["name"] == "docs"
    assert data["dim"] == 8
    assert data["distance_metric"] == "cosine"
    assert data["description"] is None
    assert data["index"] == HNSW_DEFAULTS
    assert data["embedding_model"] is None
    assert data["vector_count"] == 0
    created = parse_utc(data["created_at"])
    assert before <= created <= datetime.now(UTC) + timedelta(seconds=1)
    assert parse_utc(data["updated_at"]) == created


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_create_accepts_each_metric(make_collection: MakeCollection, metric: str) -> None:
    data = make_collection("m-" + metric, dim=3, distance_metric=metric, description="about")
    assert data["distance_metric"] == metric
    assert data["description"] == "about"


@pytest.mark.parametrize(
    ("index", "effective"),
    [
        ({"type": "flat"}, {"type": "flat"}),
        ({"type": "hnsw"}, HNSW_DEFAULTS),
        (
            {"type": "hnsw", "m": 16, "ef_construction": 64, "ef_search": 50},
            {"type": "hnsw", "m": 16, "ef_construction": 64, "ef_search": 50},
        ),
        ({"m": 8}, {"type": "hnsw", "m": 8, "ef_construction": 128, "ef_search": 128}),
        (
            {"type": "hnsw_sq8"},
            {"type": "hnsw_sq8", "m": 32, "ef_construction": 128, "ef_search": 128}
            | {"rescore_factor": 4},
        ),
        (
            {
                "type": "hnsw_sq8",
                "m": 4,
                "ef_construction": 8,
                "ef_search": 1,
                "rescore_factor": 64,
            },
            {
                "type": "hnsw_sq8",
                "m": 4,
                "ef_construction": 8,
                "ef_search": 1,
                "rescore_factor": 64,
            },
        ),
        (
            {"type": "hnsw", "m": 128, "ef_construction": 4096, "ef_search": 10000},
            {"type": "hnsw", "m": 128, "ef_construction": 4096, "ef_search": 10000},
        ),
    ],
)
def test_create_reports_effective_index_params(
    client: TestClient[Litestar], index: dict[str, Any], effective: dict[str, Any]
) -> None:
    data = ok(client.post("/v1/collections", json={"name": "c", "dim": 4, "index": index}), 201)
    assert data["index"] == effective
    assert ok(client.get("/v1/collections/c"))["index"] == effective


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "hnsw_sq8"])
def test_each_index_type_stores_and_finds_records(
    client: TestClient[Litestar], make_collection: MakeCollection, index_type: str
) -> None:
    make_collection("c", dim=3, index={"type": index_type})
    upsert(client, "c", "x", [1, 0, 0])
    upsert(client, "c", "y", [0, 1, 0])
    hits = ok(client.post("/v1/collections/c/search", json={"vector": [0, 1, 0.1], "k": 1}))
    assert [h["external_id"] for h in hits["results"]] == ["y"]


@pytest.mark.parametrize(
    "name", ["a", "Z", "0", "a" * 64, "A1_.-z", "tenant-a.v2_x", "9lives", "a..b", "x-"]
)
def test_valid_names_are_accepted(client: TestClient[Litestar], name: str) -> None:
    data = ok(client.post("/v1/collections", json={"name": name, "dim": 2}), 201)
    assert data["name"] == name
    assert ok(client.get(f"/v1/collections/{name}"))["name"] == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../x",
        "..",
        ".",
        ".hidden",
        "a/b",
        "a\\b",
        "/abs",
        "a" * 65,
        "-lead",
        "_lead",
        "a b",
        "tab\t",
        "ünïcode",
        "semi;colon",
        "quote'",
        "nul\x00",
        "new\nline",
    ],
)
def test_invalid_names_are_rejected(client: TestClient[Litestar], name: str) -> None:
    error = assert_error(
        client.post("/v1/collections", json={"name": name, "dim": 2}), 400, "invalid_name"
    )
    assert "name" in error["message"]
    assert ok(client.get("/v1/collections"))["collections"] == []


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=st.text(min_size=0, max_size=70) | st.from_regex(NAME_RE, fullmatch=True))
def test_name_acceptance_matches_the_documented_pattern(
    client: TestClient[Litestar], name: str
) -> None:
    r = client.post("/v1/collections", json={"name": name, "dim": 2})
    if NAME_RE.fullmatch(name):
        if r.status_code == 409:  # generated twice
            assert_error(r, 409, "collection_exists")
        else:
            assert ok(r, 201)["name"] == name
    else:
        assert_error(r, 400, "invalid_name")


@pytest.mark.parametrize("dim", [0, -1, 4097, 100000])
def test_dim_out_of_range_is_rejected(client: TestClient[Litestar], dim: int) -> None:
    error = assert_error(
        client.post("/v1/collections", json={"name": "c", "dim": dim}), 400, "bad_request"
    )
    assert "'dim'" in error["message"]
    assert "4096" in error["message"]
    assert_error(client.get("/v1/collections/c"), 404, "collection_not_found")


@pytest.mark.parametrize("dim", [1, 4096])
def test_dim_bounds_are_inclusive(client: TestClient[Litestar], dim: int) -> None:
    data = ok(client.post("/v1/collections", json={"name": "c", "dim": dim}), 201)
    assert data["dim"] == dim


@pytest.mark.parametrize("metric", ["cos", "COSINE", "dot", "euclidean", ""])
def test_bad_metric_is_rejected(client: TestClient[Litestar], metric: str) -> None:
    error = assert_error(
        client.post("/v1/collections", json={"name": "c", "dim": 2, "distance_metric": metric}),
        400,
        "bad_request",
    )
    assert "distance_metric" in error["message"]


@pytest.mark.parametrize("index_type", ["ivf_flat", "ivf_pq"])
def test_ivf_index_types_answer_a_clear_400(client: TestClient[Litestar], index_type: str) -> None:
    error = assert_error(
        client.post(
            "/v1/collections",
            json={"name": "c", "dim": 8, "index": {"type": index_type, "nlist": 16}},
        ),
        400,
        "unsupported_index",
    )
    assert index_type in error["message"]
    assert "hnsw" in error["message"]


@pytest.mark.parametrize(
    ("index", "mentions"),
    [
        ({"type": "ivf"}, "index.type"),
        ({"type": "HNSW"}, "index.type"),
        ({"type": ""}, "index.type"),
        ({"type": "hnsw", "m": 3}, "index.m"),
        ({"type": "hnsw", "m": 129}, "index.m"),
        ({"type": "hnsw", "ef_construction": 7}, "index.ef_construction"),
        ({"type": "hnsw", "ef_search": 0}, "index.ef_search"),
        ({"type": "hnsw", "ef_search": 10001}, "index.ef_search"),
        ({"type": "hnsw_sq8", "rescore_factor": 0}, "index.rescore_factor"),
        ({"type": "hnsw_sq8", "rescore_factor": 65}, "index.rescore_factor"),
        ({"type": "hnsw", "rescore_factor": 2}, "index.rescore_factor"),
        ({"type": "hnsw", "nlist": 16}, "index.nlist"),
        ({"type": "hnsw", "nprobe": 4}, "index.nprobe"),
        ({"type": "hnsw_sq8", "pq_m": 4}, "index.pq_m"),
        ({"type": "flat", "m": 16}, "m"),
        ({"type": "flat", "ef_search": 16}, "ef_search"),
    ],
)
def test_bad_index_params_are_rejected(
    client: TestClient[Litestar], index: dict[str, Any], mentions: str
) -> None:
    error = assert_error(
        client.post("/v1/collections", json={"name": "c", "dim": 4, "index": index}),
        400,
        "bad_request",
    )
    assert mentions in error["message"]
    assert_error(client.get("/v1/collections/c"), 404, "collection_not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"dim": 4},
        {"name": "c"},
        {"name": "c", "dim": "four"},
        {"name": "c", "dim": 4.5},
        {"name": 7, "dim": 4},
        {"name": "c", "dim": 4, "index": {"type": "hnsw", "m": "big"}},
        {"name": "c", "dim": 4, "index": "hnsw"},
        [],
    ],
)
def test_malformed_create_body_is_422(client: TestClient[Litestar], body: Any) -> None:
    assert_error(client.post("/v1/collections", json=body), 422, "invalid_body")


def test_unparseable_create_body_is_422(client: TestClient[Litestar]) -> None:
    r = client.post(
        "/v1/collections",
        content=b'{"name": "c", "dim":',
        headers={"content-type": "application/json"},
    )
    assert_error(r, 422, "invalid_body")


def test_unknown_embedding_model_is_rejected(client: TestClient[Litestar]) -> None:
    error = assert_error(
        client.post(
            "/v1/collections", json={"name": "c", "dim": 4, "embedding_model": "no-such-model"}
        ),
        400,
        "unknown_model",
    )
    assert "embedding_model" in error["message"]
    assert "all-MiniLM-L6-v2" in error["message"]  # the known models are listed


def test_duplicate_name_is_409_and_keeps_the_original(
    client: TestClient[Litestar], make_collection: MakeCollection
) -> None:
    original = make_collection("docs", dim=4, description="first")
    upsert(client, "docs", "a", [1, 2, 3, 4])
    error = assert_error(
        client.post("/v1/collections", json={"name": "docs", "dim": 8, "distance_metric": "l2"}),
        409,
        "collection_exists",
    )
    assert "docs" in error["message"]
    after = ok(client.get("/v1/collections/docs"))
    assert after | {"updated_at": None} == original | {"vector_count": 1, "updated_at": None}


def test_names_are_case_sensitive(make_collection: MakeCollection) -> None:
    make_collection("Docs", dim=2)
    assert make_collection("docs", dim=3)["dim"] == 3


# -- list / get --------------------------------------------------------------------------------
def test_list_is_empty_at_start(client: TestClient[Litestar]) -> None:
    assert ok(client.get("/v1/collections")) == {"collections": []}


def test_list_returns_every_collection_object(
    client: TestClient[Litestar], make_collection: MakeCollection
) -> None:
    created = {
        "b": make_collection("b", dim=2, distance_metric="l2"),
        "a": make_collection("a", dim=3, index={"type": "flat"}),
        "c": make_collection("c", dim=4, distance_metric="ip", description="third"),
    }
    upsert(client, "a", "r1", [1, 0, 0])
    listed = ok(client.get("/v1/collections"))
    assert set(listed) == {"collections"}
    by_name = {c["name"]: c for c in listed["collections"]}
    assert sorted(by_name) == ["a", "b", "c"]
    assert len(listed["collections"]) == 3
    for name, data in created.items():
        if name == "a":  # a write may move updated_at
            data = data | {"vector_count": 1, "updated_at": by_name[name]["updated_at"]}
        assert by_name[name] == data
        assert set(by_name[name]) == COLLECTION_KEYS


def test_get_returns_the_collection_object(
    client: TestClient[Litestar], make_collection: MakeCollection
) -> None:
    created = make_collection("docs", dim=5, distance_metric="ip", index={"type": "hnsw_sq8"})
    assert ok(client.get("/v1/collections/docs")) == created


@pytest.mark.parametrize("name", ["nope", "a" * 64, "%2E%2E", "-x", "a%20b"])
def test_get_unknown_collection_is_404(client: TestClient[Litestar], name: str) -> None:
    error = assert_error(client.get(f"/v1/collections/{name}"), 404, "collection_not_found")
    assert "does not exist" in error["message"]


@pytest.mark.parametrize("path", ["..%2Fx", "a%2Fb"])
def test_get_path_like_collection_name_is_404(client: TestClient[Litestar], path: str) -> None:
    r = client.get(f"/v1/collections/{path}")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == 404
    assert r.json()["error"]["type"] in {"not_found", "collection_not_found"}


def test_vector_count_follows_writes_and_deletes(
    client: TestClient[Litestar], make_collection: MakeCollection
) -> None:
    make_collection("docs", dim=2)
    for i in range(5):
        upsert(client, "docs", f"r{i}", [1, i])
    upsert(client, "docs", "r0", [2, 0])  # an update does not add
    assert ok(client.get("/v1/collections/docs"))["vector_count"] == 5
    ok(client.delete("/v1/collections/docs/delete/r1"))
    ok(client.post("/v1/collections/docs/delete_batch", json={"external_ids": ["r2", "r3"]}))
    assert ok(client.get("/v1/collections/docs"))["vector_count"] == 2
    listed = ok(client.get("/v1/collections"))["collections"]
    assert [c["vector_count"] for c in listed] == [2]


# -- patch -------------------------------------------------------------------------------------
def test_patch_description_absent_keeps_null_clears(
    client: TestClient[Litestar], make_collection: MakeCollection
) -> None:
    created = make_collection("docs", dim=2, description="original")
    data = ok(client.patch("/v1/collections/docs", json={"description": "changed"}))
    assert data["description"] == "changed"
    assert ok(client.get("/v1/collections/docs"))["description"] == "changed"

    data = ok(client.patch("/v1/collections/docs", json={}))
    assert data["description"] == "changed"
    data = ok(client.patch("/v1/collections/docs", json={"index": {"ef_search": 77}}))
    assert data["description"] == "changed"

    data = ok(client.patch("/v1/collections/docs", json={"description": None}))
    assert data["description"] is None
    final = ok(client.get("/v1/collections/docs"))
    assert final["description"] is None
    assert final["created_at"] == created["created_at"]
    assert parse_utc(final["updated_at"]) >= parse_utc(created["updated_at"])
    for key in ("name", "dim", "distance_metric", "embedding_model", "vector_count"):
        assert final[key] == created[key]


def test_patch_ef_search_is_visible_and_keeps_other_params(
    client: TestClient[Litestar], make_collection: MakeCollection
) -> None:
    make_collection("docs", dim=2, index={"type": "hnsw", "m": 16, "ef_construction": 64})
    upsert(client, "docs", "a", [1, 0])
    data = ok(client.patch("/v1/collections/docs", json={"index": {"ef_search": 300}}))
    expected = {"type": "hnsw", "m": 16, "ef_construction": 64, "ef_search": 300}
    assert data["index"] == expected
    assert ok(client.get("/v1/collections/docs"))["index"] == expected
    listed = ok(client.get("/v1/collections"))["collections"]
    assert listed[0]["index"] == expected
    # Absent ef_search leaves it alone; the collection still answers searches.
    assert ok(client.patch("/v1/collections/docs", json={"description": "d"}))["index"] == expected
    hits = ok(client.post("/v1/collections/docs/search", json={"vector": [1, 0], "k": 1}))
    assert [h["external_id"] for h in hits["results"]] == ["a"]


def test_patch_ef_search_on_hnsw_sq8_keeps_rescore_factor(
    client: TestClient[Litestar], make_collection: MakeCollection
) -> None:
    make_collection("docs", dim=2, index={"type": "hnsw_sq8", "rescore_factor": 6})
    data = ok(client.patch("/v1/collections/docs", json={"index": {"ef_search": 20}}))
    assert data["index"] == {
        "type": "hnsw_sq8",
        "m": 32,
        "ef_construction": 128,
        "ef_search": 20,
        "rescore_factor": 6,
    }


@pytest.mark.parametrize(
    ("index", "body", "mentions"),
    [
        ({"type": "hnsw"}, {"index": {"ef_search": 0}}, "ef_search"),
        ({"type": "hnsw"}, {"index": {"ef_search": 10001}}, "ef_search"),
        ({"type": "flat"}, {"index": {"ef_search": 10}}, "ef_search"),
        ({"type": "hnsw"}, {"index": {"nprobe": 4}}, "nprobe"),
    ],
)
def test_patch_rejects_inapplicable_index_params(
    client: TestClient[Litestar],
    make_collection: MakeCollection,
    index: dict[str, Any],
    body: dict[str, Any],
    mentions: str,
) -> None:
    created = make_collection("docs", dim=2, index=index)
    error = assert_error(client.patch("/v1/collections/docs", json=body), 400, "bad_request")
    assert mentions in error["message"]
    assert ok(client.get("/v1/collections/docs"))["index"] == created["index"]


def test_patch_unknown_collection_is_404(client: TestClient[Litestar]) -> None:
    assert_error(
        client.patch("/v1/collections/nope", json={"description": "x"}),
        404,
        "collection_not_found",
    )


@pytest.mark.parametrize(
    "body", [{"description": 5}, {"index": {"ef_search": "many"}}, {"index": 3}, []]
)
def test_patch_malformed_body_is_422(
    client: TestClient[Litestar], make_collection: MakeCollection, body: Any
) -> None:
    make_collection("docs", dim=2, description="keep")
    assert_error(client.patch("/v1/collections/docs", json=body), 422, "invalid_body")
    assert ok(client.get("/v1/collections/docs"))["description"] == "keep"


# -- delete ------------------------------------------------------------------------------------
def test_delete_removes_the_collection(
    client: TestClient[Litestar], make_collection: MakeCollection
) -> None:
    make_collection("docs", dim=2)
    make_collection("other", dim=2)
    upsert(client, "docs", "a", [1, 0])
    data = ok(client.delete("/v1/collections/docs"))
    assert data == {"status": "deleted", "name": "docs"}
    assert_error(client.get("/v1/collections/docs"), 404, "collection_not_found")
    assert_error(client.get("/v1/collections/docs/vectors/a"), 404, "collection_not_found")
    assert_error(
        client.post("/v1/collections/docs/upsert", json={"external_id": "b", "vector": [1, 0]}),
        404,
        "collection_not_found",
    )
    assert [c["name"] for c in ok(client.get("/v1/collections"))["collections"]] == ["other"]
    assert_error(client.delete("/v1/collections/docs"), 404, "collection_not_found")


def test_delete_unknown_collection_is_404(client: TestClient[Litestar]) -> None:
    assert_error(client.delete("/v1/collections/nope"), 404, "collection_not_found")


@pytest.mark.parametrize("role", ["read", "write"])
def test_delete_needs_the_admin_role(
    client: TestClient[Litestar], make_collection: MakeCollection, role: str
) -> None:
    make_collection("docs", dim=2)
    key = make_key(client, role)
    r = client.delete("/v1/collections/docs", headers={"x-api-key": key})
    error = assert_error(r, 403, "forbidden")
    assert "admin" in error["message"]
    assert ok(client.get("/v1/collections/docs"))["name"] == "docs"


def test_write_key_creates_and_patches_but_read_key_cannot(client: TestClient[Litestar]) -> None:
    writer = {"x-api-key": make_key(client, "write")}
    reader = {"x-api-key": make_key(client, "read")}
    ok(client.post("/v1/collections", json={"name": "w", "dim": 2}, headers=writer), 201)
    ok(client.patch("/v1/collections/w", json={"description": "d"}, headers=writer))
    assert_error(
        client.post("/v1/collections", json={"name": "r", "dim": 2}, headers=reader),
        403,
        "forbidden",
    )
    assert_error(
        client.patch("/v1/collections/w", json={"description": "x"}, headers=reader),
        403,
        "forbidden",
    )
    assert ok(client.get("/v1/collections/w", headers=reader))["description"] == "d"
    assert len(ok(client.get("/v1/collections", headers=reader))["collections"]) == 1


def test_recreated_collection_starts_empty(
    client: TestClient[Litestar], make_collection: MakeCollection
) -> None:
    make_collection("docs", dim=2, distance_metric="l2", description="old")
    for i in range(3):
        upsert(client, "docs", f"r{i}", [1, i])
    ok(client.delete("/v1/collections/docs"))

    fresh = make_collection("docs", dim=3)
    assert fresh["vector_count"] == 0
    assert fresh["dim"] == 3
    assert fresh["distance_metric"] == "cosine"
    assert fresh["description"] is None
    assert ok(client.post("/v1/collections/docs/count", json={})) == {"count": 0}
    fetched = ok(client.post("/v1/collections/docs/vectors/fetch", json={"ids": ["r0", "r1"]}))
    assert fetched == {"vectors": [], "not_found": ["r0", "r1"]}
    hits = ok(client.post("/v1/collections/docs/search", json={"vector": [1, 1, 1], "k": 10}))
    assert hits["results"] == []
    upsert(client, "docs", "r0", [0, 0, 1])
    assert ok(client.get("/v1/collections/docs"))["vector_count"] == 1


def test_collection_routes_require_a_key(
    client: TestClient[Litestar], make_collection: MakeCollection
) -> None:
    make_collection("docs", dim=2)
    anonymous = {"x-api-key": ""}
    for method, path in [
        ("GET", "/v1/collections"),
        ("GET", "/v1/collections/docs"),
        ("DELETE", "/v1/collections/docs"),
    ]:
        assert_error(client.request(method, path, headers=anonymous), 401, "unauthorized")
    assert_error(
        client.post("/v1/collections", json={"name": "x", "dim": 2}, headers={"x-api-key": "bad"}),
        401,
        "unauthorized",
    )
