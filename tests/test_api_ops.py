"""Operations (api.md §6): liveness, readiness, scoped health, metrics, OpenAPI and docs."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN_KEY, flush_indexes, make_settings, wait_ready
from vecstore import __version__
from vecstore.app import create_app

SEARCH_ROUTE = "/v1/collections/{name}/search"

# Every route of api.md §1-§6 that the server implements, with whether it takes a JSON body.
DOCUMENTED_ROUTES: list[tuple[str, str, bool]] = [
    ("post", "/v1/collections", True),
    ("get", "/v1/collections", False),
    ("get", "/v1/collections/{name}", False),
    ("patch", "/v1/collections/{name}", True),
    ("delete", "/v1/collections/{name}", False),
    ("post", "/v1/collections/{name}/upsert", True),
    ("post", "/v1/collections/{name}/bulk_upsert", True),
    ("get", "/v1/collections/{name}/vectors/{external_id}", False),
    ("post", "/v1/collections/{name}/vectors/fetch", True),
    ("delete", "/v1/collections/{name}/delete/{external_id}", False),
    ("post", "/v1/collections/{name}/delete_batch", True),
    ("post", "/v1/collections/{name}/delete_by_filter", True),
    ("post", "/v1/collections/{name}/scroll", True),
    ("post", "/v1/collections/{name}/count", True),
    ("get", "/v1/collections/{name}/export", False),
    ("post", "/v1/collections/{name}/import", False),  # NDJSON stream, not a JSON body
    ("post", "/v1/collections/{name}/search", True),
    ("post", "/v1/collections/{name}/bulk_search", True),
    ("post", "/v1/collections/{name}/recommend/{external_id}", True),
    ("post", "/v1/collections/{name}/similarity", True),
    ("post", "/v1/collections/{name}/rerank", True),
    ("post", "/v1/admin/keys", True),
    ("get", "/v1/admin/keys", False),
    ("get", "/v1/admin/keys/{key_id}", False),
    ("patch", "/v1/admin/keys/{key_id}", True),
    ("delete", "/v1/admin/keys/{key_id}", False),
    ("post", "/v1/admin/keys/{key_id}/rotate", False),
    ("get", "/v1/admin/keys/{key_id}/usage", False),
    ("get", "/v1/health", False),
    ("get", "/health", False),
    ("get", "/ready", False),
    ("get", "/metrics", False),
]

# Fields each body schema must describe (wire names from api.md).
BODY_FIELDS = {
    ("post", "/v1/collections"): {"name", "dim", "distance_metric", "description", "index"},
    ("post", "/v1/collections/{name}/upsert"): {"external_id", "vector", "text", "metadata"},
    ("post", "/v1/collections/{name}/bulk_upsert"): {"items"},
    ("post", "/v1/collections/{name}/vectors/fetch"): {"ids", "include_vectors"},
    ("post", "/v1/collections/{name}/delete_batch"): {"external_ids"},
    ("post", "/v1/collections/{name}/delete_by_filter"): {"filters"},
    ("post", "/v1/collections/{name}/scroll"): {"cursor", "limit", "filters", "include_vectors"},
    ("post", "/v1/collections/{name}/search"): {"vector", "text", "k", "offset", "filters"},
    ("post", "/v1/collections/{name}/bulk_search"): {"queries"},
    ("post", "/v1/collections/{name}/recommend/{external_id}"): {"k", "filters", "exclude_self"},
    ("post", "/v1/collections/{name}/similarity"): {"id1", "id2"},
    ("post", "/v1/collections/{name}/rerank"): {"vector", "text", "candidates", "top_k"},
    ("post", "/v1/admin/keys"): {
        "name",
        "role",
        "collections",
        "expires_in_days",
        "rate_limit_per_minute",
    },
    ("patch", "/v1/admin/keys/{key_id}"): {
        "name",
        "role",
        "is_active",
        "collections",
        "rate_limit_per_minute",
    },
}


@contextmanager
def running(data_dir: Path, **overrides: Any) -> Iterator[TestClient[Litestar]]:
    app = create_app(make_settings(data_dir, **overrides))
    with TestClient(app=app, raise_server_exceptions=False) as c:
        wait_ready(c)
        yield c


@pytest.fixture
def anon(client: TestClient[Litestar]) -> TestClient[Litestar]:
    del client.headers["x-api-key"]
    return client


@pytest.fixture
def read_key(client: TestClient[Litestar]) -> str:
    r = client.post(
        "/v1/admin/keys", json={"name": "reader", "role": "read"}, headers={"x-api-key": ADMIN_KEY}
    )
    assert r.status_code == 201, r.text
    key: str = r.json()["data"]["key"]
    return key


def upsert(client: TestClient[Litestar], name: str, vectors: list[list[float]]) -> None:
    items = [{"external_id": f"v{i}", "vector": v} for i, v in enumerate(vectors)]
    r = client.post(f"/v1/collections/{name}/bulk_upsert", json={"items": items})
    assert r.status_code == 200, r.text


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parse Prometheus text (this fails on malformed exposition) into {(sample, labels): v}."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = doc["components"]["schemas"][name]
    return schema


# -- liveness and readiness --------------------------------------------------------------------
def test_health_is_ok_without_a_key(anon: TestClient[Litestar]) -> None:
    r = anon.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_ready_is_200_without_a_key_once_loaded(anon: TestClient[Litestar]) -> None:
    assert anon.get("/ready").status_code == 200


@pytest.fixture
def loading(data_dir: Path) -> Iterator[tuple[TestClient[Litestar], threading.Event]]:
    """An app whose storage engine is held in the middle of opening."""
    app = create_app(make_settings(data_dir))
    engine = app.state.services.engine
    release = threading.Event()
    real_open = engine.open

    def held_open(**kwargs: Any) -> None:
        release.wait(30)
        real_open(**kwargs)

    engine.open = held_open
    try:
        with TestClient(app=app, raise_server_exceptions=False) as c:
            yield c, release
            release.set()
            wait_ready(c)
    finally:
        release.set()


def test_ready_is_503_while_loading_and_200_after(
    loading: tuple[TestClient[Litestar], threading.Event],
) -> None:
    c, release = loading
    r = c.get("/ready")
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "not_ready"
    assert int(r.headers["retry-after"]) >= 1
    assert c.get("/health").json() == {"status": "ok"}
    release.set()
    wait_ready(c)
    assert c.get("/ready").status_code == 200


@pytest.mark.parametrize("key", [ADMIN_KEY, "vs_some-other-key"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/collections"),
        ("GET", "/v1/collections/x"),
        ("POST", "/v1/collections"),
        ("GET", "/v1/health"),
        ("GET", "/v1/admin/keys"),
        ("GET", "/metrics"),
    ],
)
def test_keyed_routes_answer_503_not_ready_while_loading(
    loading: tuple[TestClient[Litestar], threading.Event], key: str, method: str, path: str
) -> None:
    c, _ = loading
    kwargs: dict[str, Any] = {"headers": {"x-api-key": key}}
    if method == "POST":
        kwargs["json"] = {"name": "x", "dim": 2}
    r = c.request(method, path, **kwargs)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["type"] == "not_ready"
    assert int(r.headers["retry-after"]) >= 1


# -- /v1/health --------------------------------------------------------------------------------
def test_v1_health_reports_model_status(client: TestClient[Litestar]) -> None:
    assert client.post("/v1/embeddings", json={"input": "warm up"}).status_code == 200
    models = client.get("/v1/health").json()["data"]["models"]
    assert models == [{"id": "all-MiniLM-L6-v2", "status": "loaded"}]


def test_v1_health_requires_a_key(anon: TestClient[Litestar], read_key: str) -> None:
    r = anon.get("/v1/health")
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "unauthorized"
    assert anon.get("/v1/health", headers={"x-api-key": read_key}).status_code == 200


def test_v1_health_shape_and_numbers(data_dir: Path) -> None:
    # A high compaction threshold keeps tombstones in the index, so deleted_fraction is visible.
    with running(data_dir, compaction_threshold=0.9) as c:
        c.headers["x-api-key"] = ADMIN_KEY
        assert c.get("/v1/health").json()["data"]["collections"] == []
        c.post(
            "/v1/collections",
            json={"name": "flat-l2", "dim": 3, "distance_metric": "l2", "index": {"type": "flat"}},
        )
        c.post("/v1/collections", json={"name": "hnsw-cos", "dim": 2})
        upsert(c, "flat-l2", [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])
        upsert(c, "hnsw-cos", [[1, 0], [0, 1]])
        flush_indexes(c.app)  # type: ignore[arg-type]
        assert c.delete("/v1/collections/flat-l2/delete/v0").status_code == 200
        flush_indexes(c.app)  # type: ignore[arg-type]
        r = c.get("/v1/health")
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "success"
        data = body["data"]
        assert set(data) == {
            "status",
            "version",
            "uptime_seconds",
            "collections",
            "total_vectors",
            "models",
        }
        # preload_models is off in tests: the default model loads on first use
        assert data["models"] == [{"id": "all-MiniLM-L6-v2", "status": "not loaded"}]
        assert data["status"] == "ok"
        assert data["version"] == __version__
        assert isinstance(data["uptime_seconds"], float | int)
        assert data["uptime_seconds"] >= 0
        by_name = {row["name"]: row for row in data["collections"]}
        assert by_name == {
            "flat-l2": {
                "name": "flat-l2",
                "dim": 3,
                "distance_metric": "l2",
                "vector_count": 3,
                "index_type": "flat",
                "index_vectors": 4,
                "deleted_fraction": 0.25,
            },
            "hnsw-cos": {
                "name": "hnsw-cos",
                "dim": 2,
                "distance_metric": "cosine",
                "vector_count": 2,
                "index_type": "hnsw",
                "index_vectors": 2,
                "deleted_fraction": 0.0,
            },
        }
        assert data["total_vectors"] == 5


def test_v1_health_drops_a_deleted_collection(
    client: TestClient[Litestar], make_collection: Any
) -> None:
    make_collection("gone", dim=2)
    upsert(client, "gone", [[1, 0]])
    assert client.delete("/v1/collections/gone").status_code == 200
    data = client.get("/v1/health").json()["data"]
    assert data["collections"] == []
    assert data["total_vectors"] == 0


# -- /metrics ----------------------------------------------------------------------------------
def test_metrics_need_a_read_key_by_default(anon: TestClient[Litestar], read_key: str) -> None:
    r = anon.get("/metrics")
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "unauthorized"
    assert anon.get("/metrics", headers={"x-api-key": "vs_wrong"}).status_code == 401
    ok = anon.get("/metrics", headers={"x-api-key": read_key})
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith("text/plain")


def test_metrics_public_setting_serves_them_without_a_key(data_dir: Path) -> None:
    with running(data_dir, metrics_public=True) as c:
        r = c.get("/metrics")
        assert r.status_code == 200, r.text
        assert "vecstore_http_requests_total" in r.text


def test_metrics_count_requests_by_route_template(
    client: TestClient[Litestar], make_collection: Any
) -> None:
    for name in ("alpha", "beta"):
        make_collection(name, dim=2)
        upsert(client, name, [[1, 0], [0, 1], [1, 1]] if name == "alpha" else [[1, 0]])
    for name in ("alpha", "alpha", "beta"):
        assert client.post(f"/v1/collections/{name}/search", json={"vector": [1, 0]}).is_success
    client.post("/v1/collections/missing/search", json={"vector": [1, 0]})
    client.get("/v1/no-such-route/alpha-beta-gamma")
    text = client.get("/metrics").text
    got = samples(text)
    search_ok = frozenset({("method", "POST"), ("route", SEARCH_ROUTE), ("status", "200")})
    search_404 = frozenset({("method", "POST"), ("route", SEARCH_ROUTE), ("status", "404")})
    assert got[("vecstore_http_requests_total", search_ok)] == 3.0
    assert got[("vecstore_http_requests_total", search_404)] == 1.0
    assert got[("vecstore_collection_vectors", frozenset({("collection", "alpha")}))] == 3.0
    assert got[("vecstore_collection_vectors", frozenset({("collection", "beta")}))] == 1.0
    latency = frozenset({("method", "POST"), ("route", SEARCH_ROUTE)})
    assert got[("vecstore_http_request_duration_seconds_count", latency)] == 4.0
    assert ("vecstore_index_rebuilds_total", frozenset()) in got
    # Raw paths never become label values (no per-collection or per-URL cardinality).
    routes = {dict(labels).get("route") for _, labels in got}
    assert "/v1/collections/alpha/search" not in routes
    assert not any(r and "alpha-beta-gamma" in r for r in routes)
    assert "alpha-beta-gamma" not in text


# -- OpenAPI and docs --------------------------------------------------------------------------
@pytest.fixture
def openapi(anon: TestClient[Litestar]) -> dict[str, Any]:
    r = anon.get("/schema/openapi.json")
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


def test_openapi_is_version_3_1(openapi: dict[str, Any]) -> None:
    assert openapi["openapi"].startswith("3.1")
    assert openapi["info"]["title"] == "vecstore"
    assert openapi["info"]["version"] == __version__


@pytest.mark.parametrize(("method", "path", "has_body"), DOCUMENTED_ROUTES)
def test_openapi_lists_every_route_with_its_body_schema(
    openapi: dict[str, Any], method: str, path: str, has_body: bool
) -> None:
    assert path in openapi["paths"], path
    assert method in openapi["paths"][path], (method, path)
    op = openapi["paths"][path][method]
    ok = (
        "201"
        if (method, path) in {("post", "/v1/collections"), ("post", "/v1/admin/keys")}
        else "200"
    )
    assert ok in op["responses"], (method, path, sorted(op["responses"]))
    if not has_body:
        return
    schema = resolve(openapi, op["requestBody"]["content"]["application/json"]["schema"])
    if "oneOf" in schema or "anyOf" in schema:  # optional bodies: T | None
        options = schema.get("oneOf") or schema["anyOf"]
        schema = next(resolve(openapi, o) for o in options if o.get("type") != "null")
    missing = BODY_FIELDS.get((method, path), set()) - set(schema.get("properties", {}))
    assert not missing, (method, path, missing)


def test_openapi_declares_a_key_exactly_where_one_is_needed(
    anon: TestClient[Litestar], openapi: dict[str, Any]
) -> None:
    """Schema-driven clients (and fuzzers) trust the schema: the public routes carry no
    security requirement, and every other route carries one and answers 401 without a key."""
    assert "security" not in openapi  # no global requirement that the public routes inherit
    public = set()
    for path, item in openapi["paths"].items():
        for method, op in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            if not op.get("security"):
                public.add((method, path))
                continue
            assert op["security"] == [{"apiKey": []}, {"bearer": []}], (method, path)
    assert public == {("get", "/health"), ("get", "/ready")}
    for method, path in [("get", "/health"), ("get", "/ready")]:
        assert anon.request(method, path).status_code in {200, 503}
    assert anon.get("/v1/health").status_code == 401
    assert anon.get("/metrics").status_code == 401


def test_openapi_documents_every_served_route(app: Litestar, openapi: dict[str, Any]) -> None:
    for route in app.routes:
        if route.path.startswith("/schema") or route.path == "/docs":
            continue
        doc_path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # drop path-param types
        for method in route.methods - {"OPTIONS", "HEAD"}:
            assert method.lower() in openapi["paths"].get(doc_path, {}), (method, route.path)


# Hosted-API dialect routes answer errors in their dialect's shape (next test).
DIALECT_PATHS = {"/v1/embeddings", "/embeddings", "/v1/models", "/models", "/embed", "/rerank"}
COHERE_PATHS = {"/v1/rerank", "/v2/rerank", "/api/v3/inference/reranker"}


def test_openapi_error_responses_describe_the_error_envelope(openapi: dict[str, Any]) -> None:
    for path, operations in openapi["paths"].items():
        if not path.startswith("/v1/") or path in DIALECT_PATHS | COHERE_PATHS:
            continue
        for method, op in operations.items():
            errors = {code: r for code, r in op["responses"].items() if code[0] in "45"}
            assert {"401", "422"} <= set(errors), (method, path, sorted(errors))
            for code, response in errors.items():
                schema = resolve(openapi, response["content"]["application/json"]["schema"])
                assert set(schema["properties"]) == {"status", "error"}, (method, path, code)
                body = resolve(openapi, schema["properties"]["error"])
                assert {"code", "type", "message"} <= set(body["properties"]), (method, path)


def test_openapi_dialect_routes_describe_their_own_error_shapes(openapi: dict[str, Any]) -> None:
    for path in sorted(DIALECT_PATHS | COHERE_PATHS):
        for method, op in openapi["paths"][path].items():
            errors = {code: r for code, r in op["responses"].items() if code[0] in "45"}
            assert {"401", "422", "503"} <= set(errors), (method, path, sorted(errors))
            for response in errors.values():
                schema = resolve(openapi, response["content"]["application/json"]["schema"])
                if path in COHERE_PATHS:
                    assert set(schema["properties"]) == {"message", "detail"}, path
                elif path == "/embed":
                    assert set(schema["properties"]) == {"error", "error_type"}, path
                elif path == "/rerank":  # TEI or infinity (OpenAI's shape), by the body
                    tei, infinity = (resolve(openapi, o) for o in schema["oneOf"])
                    assert set(tei["properties"]) == {"error", "error_type"}, path
                    assert_openai_error(openapi, infinity, path)
                else:
                    assert_openai_error(openapi, schema, path)


def assert_openai_error(openapi: dict[str, Any], schema: dict[str, Any], path: str) -> None:
    assert set(schema["properties"]) == {"error"}, path
    body = resolve(openapi, schema["properties"]["error"])
    assert set(body["properties"]) == {"message", "type", "param", "code"}, path


def test_openapi_rerank_documents_both_success_shapes(openapi: dict[str, Any]) -> None:
    ok = openapi["paths"]["/rerank"]["post"]["responses"]["200"]["content"]["application/json"]
    tei, infinity = ok["schema"]["oneOf"]
    assert tei["type"] == "array"
    assert {"index", "score"} <= set(resolve(openapi, tei["items"])["properties"])
    assert {"object", "results", "model", "usage"} <= set(resolve(openapi, infinity)["properties"])


@pytest.mark.parametrize("path", ["/schema", "/schema/swagger", "/schema/redoc"])
def test_schema_ui_pages_are_html_without_a_key(anon: TestClient[Litestar], path: str) -> None:
    r = anon.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "<html" in r.text.lower()


def test_docs_redirects_to_the_ui(anon: TestClient[Litestar]) -> None:
    r = anon.get("/docs", follow_redirects=False)
    assert r.status_code in {301, 302, 303, 307, 308}
    assert r.headers["location"] == "/schema/swagger"
    followed = anon.get("/docs")
    assert followed.status_code == 200
    assert "swagger" in followed.text.lower()


def test_openapi_declares_both_key_schemes(openapi: dict[str, Any]) -> None:
    schemes = openapi["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    assert schemes["bearer"]["type"] == "http"
    assert schemes["bearer"]["scheme"] == "bearer"
    # Required per operation (see the test above), either scheme will do.
    search = openapi["paths"]["/v1/collections/{name}/search"]["post"]
    assert search["security"] == [{"apiKey": []}, {"bearer": []}]
