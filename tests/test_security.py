"""Security review (docs/security.md): one test, or a table of them, for every hole checked.

Each test here would fail if its protection were removed; docs/security.md names the test for
each item of the review.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import ADMIN_KEY, make_settings, wait_ready
from vecstore.app import create_app
from vecstore.bootstrap import ensure_admin_key
from vecstore.logs import JsonFormatter
from vecstore.services.limits import MAX_JSON_DEPTH
from vecstore.settings import Settings

Client = TestClient[Litestar]
HIDDEN = "bravo-secret"  # outside the scoped key's "alpha-*"
VISIBLE = "alpha-1"
MISSING = "alpha-missing"  # inside the scope, but absent
MARKER = "BRAVO-MARKER"  # only ever stored in the hidden collection
JSON_HEADERS = {"content-type": "application/json"}


def key_headers(secret: str) -> dict[str, str]:
    return {"x-api-key": secret}


def error_of(response: Any, status: int, type_: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error", body
    assert body["error"]["code"] == status
    assert body["error"]["type"] == type_, body
    message: str = body["error"]["message"]
    return message


def new_key(client: Client, role: str, collections: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": f"{role}-key", "role": role}
    if collections is not None:
        body["collections"] = collections
    r = client.post("/v1/admin/keys", json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


@pytest.fixture
def tenants(client: Client, make_collection: Callable[..., dict[str, Any]]) -> None:
    """alpha-1, alpha-2 inside the scope; bravo-secret outside it, holding the marker."""
    for name in (VISIBLE, "alpha-2", HIDDEN):
        make_collection(name, dim=2)
    for name in (VISIBLE, "alpha-2"):
        items = [
            {"external_id": f"{name}-{i}", "vector": [1.0, float(i)], "content": "alpha words"}
            for i in range(3)
        ]
        r = client.post(f"/v1/collections/{name}/bulk_upsert", json={"items": items})
        assert r.status_code == 200, r.text
    hidden_items: list[dict[str, Any]] = [
        {
            "external_id": f"bravo-{i}",
            "vector": [1.0, float(i)],
            "metadata": {"secret": MARKER},
            "content": f"{MARKER} words",
        }
        for i in range(2)
    ]
    r = client.post(f"/v1/collections/{HIDDEN}/bulk_upsert", json={"items": hidden_items})
    assert r.status_code == 200, r.text


@pytest.fixture
def scoped(client: Client, tenants: None) -> dict[str, str]:
    """An admin-role key limited to alpha-*: the most a scoped key can be."""
    return key_headers(new_key(client, "admin", ["alpha-*"])["key"])


# -- cross-scope reads: every route of the app has a rule --------------------------------------
PUBLIC = "public"  # no key; never names a collection
LISTING = "listing"  # lists or counts collections: only the key's own
READ = "read"  # a collection in the path: outside the scope it is exactly a missing one
WRITE = "write"  # a collection in the path or body: outside the scope 403, nothing changes
UNSCOPED = "unscoped_admin"  # only an admin key without scopes (keys, snapshots)
NO_COLLECTION = "no_collection"  # takes no collection at all (documents, texts come inline)

Body = dict[str, Any] | str | None
VEC = [1.0, 0.0]
C = "/v1/collections/{name:str}"
ROUTE_RULES: dict[tuple[str, str], tuple[str, Body]] = {
    # collections
    ("GET", "/v1/collections"): (LISTING, None),
    ("POST", "/v1/collections"): (WRITE, {"name": "bravo-new", "dim": 2}),
    ("GET", C): (READ, None),
    ("PATCH", C): (WRITE, {"description": "mine now"}),
    ("DELETE", C): (WRITE, None),
    # records
    ("POST", C + "/upsert"): (WRITE, {"external_id": "x", "vector": VEC}),
    ("POST", C + "/bulk_upsert"): (WRITE, {"items": [{"external_id": "x", "vector": VEC}]}),
    ("POST", C + "/import"): (WRITE, '{"external_id": "x", "vector": [1.0, 0.0]}\n'),
    ("POST", C + "/delete_batch"): (WRITE, {"external_ids": ["bravo-0"]}),
    ("POST", C + "/delete_by_filter"): (WRITE, {"filters": {"secret": MARKER}}),
    ("DELETE", C + "/delete/{external_id:path}"): (WRITE, None),
    ("GET", C + "/vectors/{external_id:path}"): (READ, None),
    ("POST", C + "/vectors/fetch"): (READ, {"ids": ["bravo-0", "bravo-1"]}),
    ("POST", C + "/scroll"): (READ, {"limit": 10}),
    ("POST", C + "/count"): (READ, {}),
    ("GET", C + "/export"): (READ, None),
    # search family
    ("POST", C + "/search"): (READ, {"vector": VEC, "k": 5}),
    ("POST", C + "/bulk_search"): (READ, {"queries": [{"vector": VEC}]}),
    ("POST", C + "/recommend/{external_id:path}"): (READ, {}),
    ("POST", C + "/similarity"): (READ, {"id1": "bravo-0", "id2": "bravo-1"}),
    ("POST", C + "/rerank"): (READ, {"vector": VEC, "candidates": ["bravo-0"]}),
    ("POST", C + "/hybrid_search"): (READ, {"query_text": MARKER, "vector": VEC}),
    ("POST", C + "/query"): (READ, {"vector": VEC, "rerank": {"method": "vector"}}),
    # keys and snapshots: no scoped key at all (a scoped admin could mint an unscoped key, and a
    # snapshot holds every collection and every key hash)
    ("GET", "/v1/admin/keys"): (UNSCOPED, None),
    ("POST", "/v1/admin/keys"): (UNSCOPED, {"name": "escalate", "role": "admin"}),
    ("GET", "/v1/admin/keys/{key_id:str}"): (UNSCOPED, None),
    ("PATCH", "/v1/admin/keys/{key_id:str}"): (UNSCOPED, {"collections": None}),
    ("DELETE", "/v1/admin/keys/{key_id:str}"): (UNSCOPED, None),
    ("POST", "/v1/admin/keys/{key_id:str}/rotate"): (UNSCOPED, None),
    ("GET", "/v1/admin/keys/{key_id:str}/usage"): (UNSCOPED, None),
    ("GET", "/v1/admin/snapshots"): (UNSCOPED, None),
    ("POST", "/v1/admin/snapshots"): (UNSCOPED, None),
    ("GET", "/v1/admin/snapshots/{snapshot_id:str}"): (UNSCOPED, None),
    ("DELETE", "/v1/admin/snapshots/{snapshot_id:str}"): (UNSCOPED, None),
    ("POST", "/v1/admin/snapshots/{snapshot_id:str}/verify"): (UNSCOPED, None),
    ("POST", "/v1/admin/snapshots/{snapshot_id:str}/restore"): (UNSCOPED, None),
    # model endpoints: the texts or documents come in the body, no collection is read
    ("POST", "/v1/embeddings"): (NO_COLLECTION, {}),
    ("POST", "/embeddings"): (NO_COLLECTION, {}),
    ("GET", "/v1/models"): (NO_COLLECTION, None),
    ("GET", "/models"): (NO_COLLECTION, None),
    ("POST", "/embed"): (NO_COLLECTION, {}),
    ("POST", "/v1/rerank"): (NO_COLLECTION, {}),
    ("POST", "/api/v3/inference/reranker"): (NO_COLLECTION, {}),
    ("POST", "/v2/rerank"): (NO_COLLECTION, {}),
    ("POST", "/rerank"): (NO_COLLECTION, {}),
    # operations: /v1/health and /metrics are scoped to the key (metrics_public opts out)
    ("GET", "/v1/health"): (LISTING, None),
    ("GET", "/metrics"): (LISTING, None),
    ("GET", "/health"): (PUBLIC, None),
    ("GET", "/ready"): (PUBLIC, None),
    ("GET", "/docs"): (PUBLIC, None),
    ("GET", "/schema"): (PUBLIC, None),
    ("GET", "/schema/openapi.json"): (PUBLIC, None),
    ("GET", "/schema/swagger"): (PUBLIC, None),
    ("GET", "/schema/redoc"): (PUBLIC, None),
    ("GET", "/schema/oauth2-redirect.html"): (PUBLIC, None),
    ("GET", "/schema/{path:str}"): (PUBLIC, None),
}


def served_routes(app: Litestar) -> set[tuple[str, str]]:
    """Every (method, path template) the app answers, but Litestar's automatic OPTIONS."""
    out = set()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for method in handler.http_methods:
                if method != "OPTIONS":
                    out.add((str(method), route.path))
    return out


def test_every_route_has_a_scope_rule(app: Litestar) -> None:
    served = served_routes(app)
    missing = sorted(served - set(ROUTE_RULES))
    assert not missing, (
        f"routes without a scope rule: {missing}. Add each to ROUTE_RULES in"
        " tests/test_security.py with the rule it follows (a collection in the path or body:"
        " READ or WRITE, and call vecstore.api.auth.check_scope in the handler; a route listing"
        " collections: LISTING, filtered with Principal.can_see; key or snapshot administration:"
        " UNSCOPED via opt={'unscoped': True}), and add it to the table in docs/security.md."
    )
    stale = sorted(set(ROUTE_RULES) - served)
    assert not stale, f"ROUTE_RULES names routes the app no longer serves: {stale}"


def _path(template: str, name: str) -> str:
    return (
        template.replace("{name:str}", name)
        .replace("{external_id:path}", "bravo-0")
        .replace("{key_id:str}", "0123456789abcdef0123456789abcdef")
        .replace("{snapshot_id:str}", "snap-20250101T000000Z-0123abcd")
        .replace("{path:str}", "nothing-here")
    )


def _send(client: Client, method: str, path: str, body: Body, headers: dict[str, str]) -> Any:
    if isinstance(body, str):
        return client.request(method, path, content=body, headers=headers)
    if body is None:
        return client.request(method, path, headers=headers)
    return client.request(method, path, json=body, headers=headers)


def _hidden_state(client: Client) -> dict[str, Any]:
    info = client.get(f"/v1/collections/{HIDDEN}").json()["data"]
    page = client.post(f"/v1/collections/{HIDDEN}/scroll", json={"include_vectors": True})
    names = [c["name"] for c in client.get("/v1/collections").json()["data"]["collections"]]
    return {"info": info, "records": page.json()["data"]["vectors"], "names": sorted(names)}


@pytest.mark.parametrize(("method", "template"), sorted(ROUTE_RULES))
def test_a_scoped_key_learns_nothing_outside_its_scope(
    client: Client, scoped: dict[str, str], method: str, template: str
) -> None:
    kind, body = ROUTE_RULES[(method, template)]
    before = _hidden_state(client)
    if kind == READ:
        hidden = _send(client, method, _path(template, HIDDEN), body, scoped)
        missing = _send(client, method, _path(template, MISSING), body, scoped)
        hidden_msg = error_of(hidden, 404, "collection_not_found")
        missing_msg = error_of(missing, 404, "collection_not_found")
        assert hidden_msg == missing_msg.replace(MISSING, HIDDEN)
        assert MARKER not in hidden.text
        assert "bravo-1" not in hidden.text
    elif kind == WRITE:
        response = _send(client, method, _path(template, HIDDEN), body, scoped)
        error_of(response, 403, "forbidden")
        assert MARKER not in response.text
    elif kind == UNSCOPED:
        response = _send(client, method, _path(template, HIDDEN), body, scoped)
        error_of(response, 403, "forbidden")
    elif kind == LISTING:
        response = _send(client, method, template, body, scoped)
        assert response.status_code == 200, response.text
        assert VISIBLE in response.text
        assert "bravo" not in response.text
        assert MARKER not in response.text
    elif kind == NO_COLLECTION:
        response = _send(client, method, template, body, scoped)
        assert response.status_code < 500, response.text
        assert "bravo" not in response.text
        assert MARKER not in response.text
    else:
        assert kind == PUBLIC
        response = _send(client, method, _path(template, HIDDEN), body, {"x-api-key": ""})
        assert response.status_code in (200, 302, 404), response.text
        assert "bravo" not in response.text
        assert MARKER not in response.text
    assert _hidden_state(client) == before  # nothing outside the scope changed


def test_a_read_key_without_scope_rules_cannot_administer(client: Client, tenants: None) -> None:
    reader = key_headers(new_key(client, "read")["key"])
    for (method, template), (kind, body) in sorted(ROUTE_RULES.items()):
        if kind == UNSCOPED:
            error_of(_send(client, method, _path(template, HIDDEN), body, reader), 403, "forbidden")


def test_automatic_options_answers_carry_no_data(client: Client, tenants: None) -> None:
    for _method, template in sorted(ROUTE_RULES):
        r = client.options(_path(template, HIDDEN), headers={"x-api-key": ""})
        assert r.status_code in (204, 401, 404), (template, r.status_code)
        assert "bravo" not in r.text
        assert MARKER not in r.text


def test_metrics_are_key_scoped_unless_metrics_public(data_dir: Path) -> None:
    for public in (False, True):
        app = create_app(make_settings(data_dir / str(public), metrics_public=public))
        with TestClient(app=app, raise_server_exceptions=False) as c:
            wait_ready(c)
            c.headers["x-api-key"] = ADMIN_KEY
            for name in (VISIBLE, HIDDEN):
                assert c.post("/v1/collections", json={"name": name, "dim": 2}).status_code == 201
            anonymous = c.get("/metrics", headers={"x-api-key": ""})
            scoped = key_headers(new_key(c, "read", ["alpha-*"])["key"])
            seen = c.get("/metrics", headers=scoped).text
            if public:
                assert anonymous.status_code == 200
                assert f'collection="{HIDDEN}"' in anonymous.text
            else:
                error_of(anonymous, 401, "unauthorized")
                assert f'collection="{VISIBLE}"' in seen
                assert HIDDEN not in seen


# -- scroll cursors ----------------------------------------------------------------------------
def _cursor(client: Client, name: str, headers: dict[str, str] | None = None) -> str:
    r = client.post(f"/v1/collections/{name}/scroll", json={"limit": 1}, headers=headers or {})
    assert r.status_code == 200, r.text
    cursor: str = r.json()["data"]["next_cursor"]
    assert cursor
    return cursor


def test_a_cursor_from_one_collection_is_refused_by_another(
    client: Client, scoped: dict[str, str]
) -> None:
    from_hidden = _cursor(client, HIDDEN)  # the unscoped admin's
    from_visible = _cursor(client, VISIBLE, scoped)
    # The scoped key cannot use any cursor on the hidden collection: it does not exist for it.
    r = client.post(
        f"/v1/collections/{HIDDEN}/scroll", json={"cursor": from_visible}, headers=scoped
    )
    error_of(r, 404, "collection_not_found")
    # A cursor issued for the hidden collection is refused on the key's own collections, and
    # one collection's cursor is refused on its sibling: never read as another position.
    for name, cursor in ((VISIBLE, from_hidden), ("alpha-2", from_visible)):
        r = client.post(f"/v1/collections/{name}/scroll", json={"cursor": cursor}, headers=scoped)
        assert "another collection" in error_of(r, 400, "invalid_cursor")
        assert MARKER not in r.text
    # Its own cursor resumes after the first record.
    r = client.post(
        f"/v1/collections/{VISIBLE}/scroll", json={"cursor": from_visible}, headers=scoped
    )
    assert [v["external_id"] for v in r.json()["data"]["vectors"]] == ["alpha-1-1", "alpha-1-2"]


def test_a_cursor_of_a_dropped_collection_is_refused_by_its_successor(
    client: Client, tenants: None
) -> None:
    cursor = _cursor(client, "alpha-2")
    assert client.delete("/v1/collections/alpha-2").status_code == 200
    assert client.post("/v1/collections", json={"name": "alpha-2", "dim": 2}).status_code == 201
    client.post("/v1/collections/alpha-2/upsert", json={"external_id": "z", "vector": VEC})
    r = client.post("/v1/collections/alpha-2/scroll", json={"cursor": cursor})
    error_of(r, 400, "invalid_cursor")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_forged_and_tampered_cursors_are_refused(client: Client, tenants: None) -> None:
    good = _cursor(client, VISIBLE)
    raw = base64.urlsafe_b64decode(good + "=" * (-len(good) % 4))
    flipped = bytearray(raw)
    flipped[-1] ^= 1
    forged = [
        _b64(b"alpha-1-0"),  # the old, unchecked form: a bare external id
        _b64(b"' OR 1=1 --"),
        _b64(bytes(flipped)),  # one bit of the id changed
        _b64(raw[:8] + (999).to_bytes(8, "big") + raw[16:]),  # another collection id
        good[:-2],  # truncated
        good + "A",
        _b64(b"\x00" * 64),
        "x" * 10000,
    ]
    for cursor in forged:
        r = client.post(f"/v1/collections/{VISIBLE}/scroll", json={"cursor": cursor})
        error_of(r, 400, "invalid_cursor")


# -- path traversal ----------------------------------------------------------------------------
def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


BAD_NAMES = [
    "..",
    "../outside",
    "a/../../b",
    "..%2f..%2fetc",
    "%2e%2e",
    "a\x00b",
    ".hidden",
    "-dash-first",
    "a b",
    "a\\b",
    "x" * 65,
    "x'; DROP TABLE collections; --",
    "名前",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_bad_collection_name_is_refused_and_creates_nothing(
    client: Client, data_dir: Path, name: str
) -> None:
    root = data_dir.parent
    before = _files(root)
    r = client.post("/v1/collections", json={"name": name, "dim": 2})
    error_of(r, 400, "invalid_name")
    assert client.get("/v1/collections").json()["data"]["collections"] == []
    new = _files(root) - before
    assert all(data_dir in p.parents for p in new), new


@pytest.mark.parametrize(
    "path",
    [
        "/v1/collections/..",
        "/v1/collections/%2e%2e",
        "/v1/collections/..%2f..%2fetc%2fpasswd",
        "/v1/collections/%2e%2e%2fvecstore.db",
        "/v1/collections/a%00b",
        "/v1/collections/" + "x" * 5000,
        "/v1/collections/%2e%2e/export",
        "/v1/collections/..%2findexes/export",
    ],
)
def test_traversal_in_a_collection_path_is_a_clean_404(
    client: Client, tenants: None, path: str
) -> None:
    r = client.get(path)
    assert r.status_code == 404, r.text
    assert r.json()["error"]["type"] in ("collection_not_found", "not_found")
    assert "SQLite" not in r.text
    assert "root:" not in r.text


def encode_id(external_id: str) -> str:
    """Percent-encode every byte but letters and digits: a client that left '.' or '..' as is
    would have it removed from the URL as a dot segment (RFC 3986) before it is sent."""
    return quote(external_id, safe="").replace(".", "%2E")


HOSTILE_IDS = [
    "../../../../etc/passwd",
    "..",
    "a/../b",
    "/absolute",
    "%2e%2e%2f",
    "nul\x00byte",
    "back\\slash",
    "x' OR '1'='1",
    "名前/ファイル",
    "trailing/",
    "//double",
    ".",
    "a/./b",
]


def test_hostile_external_ids_are_opaque_data_never_paths(
    client: Client, data_dir: Path, make_collection: Callable[..., dict[str, Any]]
) -> None:
    make_collection("ids", dim=2)
    root = data_dir.parent
    before = _files(root)
    items = [{"external_id": i, "vector": [1.0, float(n)]} for n, i in enumerate(HOSTILE_IDS)]
    assert client.post("/v1/collections/ids/bulk_upsert", json={"items": items}).status_code == 200
    for n, external_id in enumerate(HOSTILE_IDS):
        encoded = encode_id(external_id)
        r = client.get(f"/v1/collections/ids/vectors/{encoded}")
        assert r.status_code == 200, (external_id, r.text)
        assert r.json()["data"]["external_id"] == external_id
        assert r.json()["data"]["vector"] == [1.0, float(n)]
    # A traversal id that was never stored is simply absent.
    r = client.get("/v1/collections/ids/vectors/..%2F..%2Fvecstore.db")
    error_of(r, 404, "record_not_found")
    for external_id in HOSTILE_IDS:
        r = client.delete(f"/v1/collections/ids/delete/{encode_id(external_id)}")
        assert r.status_code == 200, (external_id, r.text)
    assert client.get("/v1/collections/ids").json()["data"]["vector_count"] == 0
    new = _files(root) - before
    assert all(data_dir in p.parents for p in new), new
    # Index files are named by the collection's number, never by a user's string.
    for p in new:
        assert p.name.startswith(("vecstore.db", "collection-")) or p.is_dir(), p


def test_an_overlong_external_id_is_refused(client: Client, tenants: None) -> None:
    body = {"external_id": "x" * 513, "vector": VEC}
    error_of(
        client.post(f"/v1/collections/{VISIBLE}/upsert", json=body), 400, "invalid_external_id"
    )
    r = client.get(f"/v1/collections/{VISIBLE}/vectors/{'x' * 5000}")
    assert r.status_code in (400, 404), r.text


@pytest.mark.parametrize(
    "snapshot_id",
    ["..%2F..%2Fvictim", "%2e%2e", "snap-..%2F..%2Fvictim", "snap-20250101T000000Z-0123abcd%00"],
)
def test_traversal_in_a_snapshot_id_reaches_nothing(
    client: Client, data_dir: Path, snapshot_id: str
) -> None:
    victim = data_dir.parent / "victim"
    victim.mkdir()
    (victim / "manifest.json").write_text("{}")
    for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/verify"), ("POST", "/restore")):
        r = client.request(method, f"/v1/admin/snapshots/{snapshot_id}{suffix}")
        assert r.status_code in (404, 405), (method, r.text)
        assert r.status_code != 405 or method == "POST"
    assert (victim / "manifest.json").exists()


@pytest.mark.parametrize("key_id", ["..%2F..%2Fx", "%2e%2e", "' OR '1'='1", "1 OR 1=1", "*"])
def test_a_hostile_key_id_matches_no_key(client: Client, key_id: str) -> None:
    created = new_key(client, "read")
    for method in ("GET", "PATCH", "DELETE"):
        kwargs: dict[str, Any] = {"json": {"is_active": False}} if method == "PATCH" else {}
        r = client.request(method, f"/v1/admin/keys/{quote(key_id, safe='%')}", **kwargs)
        assert r.status_code == 404, r.text
    still = client.get(f"/v1/admin/keys/{created['id']}").json()["data"]
    assert still["is_active"] is True


@pytest.mark.parametrize("model", ["../../../../etc/passwd", "/etc/passwd", "models.toml"])
def test_a_model_id_is_a_registry_key_never_a_path(client: Client, model: str) -> None:
    r = client.post("/v1/collections", json={"name": "m", "dim": 2, "embedding_model": model})
    error_of(r, 400, "unknown_model")
    r = client.post("/v1/embeddings", json={"input": "hello", "model": model})
    assert 400 <= r.status_code < 500, r.text
    assert "root:" not in r.text


# -- SQL injection -----------------------------------------------------------------------------
def test_sql_in_filter_keys_values_and_unknown_sort_fields_is_inert(
    client: Client, make_collection: Callable[..., dict[str, Any]]
) -> None:
    make_collection("sql", dim=2)
    hostile_key = "k') OR 1=1 --"
    items = [
        {"external_id": "r0", "vector": VEC, "metadata": {hostile_key: "' OR '1'='1"}},
        {"external_id": "r1", "vector": VEC, "metadata": {"k": "plain"}},
        {"external_id": "r2", "vector": VEC, "metadata": {"k": "x'; DROP TABLE records; --"}},
    ]
    assert client.post("/v1/collections/sql/bulk_upsert", json={"items": items}).status_code == 200

    def scroll_ids(body: dict[str, Any]) -> list[str]:
        r = client.post("/v1/collections/sql/scroll", json=body)
        assert r.status_code == 200, r.text
        return [v["external_id"] for v in r.json()["data"]["vectors"]]

    def count(flt: dict[str, Any]) -> int:
        r = client.post("/v1/collections/sql/count", json={"filters": flt})
        assert r.status_code == 200, r.text
        n: int = r.json()["data"]["count"]
        return n

    # Scroll compiles filters to SQL; count evaluates them in memory: both agree.
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({hostile_key: "' OR '1'='1"}, ["r0"]),
        ({"k": "' OR '1'='1"}, []),
        ({"k": {"$in": ["plain", "') OR 1=1 --"]}}, ["r1"]),
        ({"k": {"$gt": "' OR 1=1"}}, ["r1", "r2"]),
        ({"k'); DROP TABLE records; --": {"$exists": True}}, []),
        ({"k.$[0]": 1}, []),
        ({"$or": [{"k": "x'; DROP TABLE records; --"}, {"k%": "_"}]}, ["r2"]),
    ]
    for flt, expected in cases:
        assert scroll_ids({"filters": flt}) == expected, flt
        assert count(flt) == len(expected), flt
    for key in ('k" OR 1=1 --', "k\\"):
        r = client.post("/v1/collections/sql/scroll", json={"filters": {key: 1}})
        error_of(r, 400, "invalid_filter")
    # There is no sort or order parameter: an unknown field is ignored, never spliced in.
    assert scroll_ids({"order_by": "external_id; DROP TABLE records; --"}) == ["r0", "r1", "r2"]
    assert scroll_ids({}) == ["r0", "r1", "r2"]


def test_fts_syntax_in_keyword_queries_is_plain_words(
    client: Client, make_collection: Callable[..., dict[str, Any]]
) -> None:
    make_collection("fts", dim=2)
    item = {"external_id": "d", "vector": VEC, "content": "tax deadline"}
    assert client.post("/v1/collections/fts/upsert", json=item).status_code == 200
    for text in ['" OR NEAR(', "content:tax", "tax*", "^tax", "tax AND NOT ()", "'; --"]:
        r = client.post(
            "/v1/collections/fts/hybrid_search", json={"query_text": text, "vector": VEC}
        )
        assert r.status_code == 200, (text, r.text)


# -- sizes and nesting -------------------------------------------------------------------------
def _deep_array(depth: int) -> str:
    return "[" * depth + "]" * depth


def _fill(template: str, value: str) -> str:
    """``template`` with its ``@`` replaced by ``value`` (JSON braces make format() awkward)."""
    return template.replace("@", value)


def _deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


DEEP = 10_000
DEEP_BODIES: dict[str, tuple[str, str]] = {
    "metadata": (
        f"/v1/collections/{VISIBLE}/upsert",
        _fill('{"external_id": "d", "vector": [1, 0], "metadata": @}', _deep_object(DEEP)),
    ),
    "metadata array": (
        f"/v1/collections/{VISIBLE}/upsert",
        _fill('{"external_id": "d", "vector": [1, 0], "metadata": {"a": @}}', _deep_array(DEEP)),
    ),
    "filter $not": (
        f"/v1/collections/{VISIBLE}/count",
        _fill('{"filters": @}', '{"$not":' * DEEP + '{"k": 1}' + "}" * DEEP),
    ),
    "filter $and": (
        f"/v1/collections/{VISIBLE}/scroll",
        _fill('{"filters": @}', '{"$and":[' * DEEP + '{"k": 1}' + "]}" * DEEP),
    ),
    "search filter": (
        f"/v1/collections/{VISIBLE}/search",
        _fill('{"vector": [1, 0], "filters": {"k": {"$in": @}}}', _deep_array(DEEP)),
    ),
    "vector": (
        f"/v1/collections/{VISIBLE}/upsert",
        _fill('{"external_id": "d", "vector": @}', _deep_array(DEEP)),
    ),
    "key scopes": (
        "/v1/admin/keys",
        _fill('{"name": "n", "role": "read", "collections": @}', _deep_array(DEEP)),
    ),
    "document rerank": ("/v1/rerank", _fill('{"query": "q", "documents": @}', _deep_array(DEEP))),
    "embeddings": ("/v1/embeddings", _fill('{"input": @}', _deep_array(DEEP))),
    "tei": ("/embed", _fill('{"inputs": @}', _deep_array(DEEP))),
}


@pytest.mark.parametrize("case", sorted(DEEP_BODIES))
def test_json_nested_ten_thousand_deep_is_a_400(client: Client, tenants: None, case: str) -> None:
    path, body = DEEP_BODIES[case]
    r = client.post(path, content=body, headers=JSON_HEADERS)
    assert r.status_code == 400, r.text
    assert "nested" in r.text


def test_a_deep_import_line_is_a_400_naming_the_line(client: Client, tenants: None) -> None:
    lines = [
        '{"external_id": "ok", "vector": [1, 0]}',
        _fill('{"external_id": "d", "vector": [1, 0], "metadata": {"a": @}}', _deep_array(DEEP)),
    ]
    r = client.post(f"/v1/collections/{VISIBLE}/import", content="\n".join(lines) + "\n")
    assert "line 2" in error_of(r, 400, "limit_exceeded")


def test_metadata_nesting_is_limited_where_every_walk_of_it_is_safe(
    client: Client, tenants: None
) -> None:
    def nested(levels: int) -> dict[str, Any]:
        value: dict[str, Any] = {"leaf": 1}
        for _ in range(levels - 1):
            value = {"a": value}
        return value

    ok = {"external_id": "d", "vector": VEC, "metadata": nested(MAX_JSON_DEPTH)}
    assert client.post(f"/v1/collections/{VISIBLE}/upsert", json=ok).status_code == 200
    path = ".".join(["a"] * (MAX_JSON_DEPTH - 1) + ["leaf"])
    r = client.post(f"/v1/collections/{VISIBLE}/scroll", json={"filters": {path: 1}})
    assert [v["external_id"] for v in r.json()["data"]["vectors"]] == ["d"]
    too_deep = {"external_id": "e", "vector": VEC, "metadata": nested(MAX_JSON_DEPTH + 1)}
    r = client.post(f"/v1/collections/{VISIBLE}/upsert", json=too_deep)
    assert str(MAX_JSON_DEPTH) in error_of(r, 400, "limit_exceeded")
    line = json.dumps(too_deep) + "\n"
    r = client.post(f"/v1/collections/{VISIBLE}/import", content=line)
    assert "line 1" in error_of(r, 400, "limit_exceeded")


def test_a_body_over_max_body_bytes_is_413_even_without_a_content_length(data_dir: Path) -> None:
    app = create_app(make_settings(data_dir, max_body_bytes=4096))
    with TestClient(app=app, raise_server_exceptions=False) as c:
        wait_ready(c)
        c.headers["x-api-key"] = ADMIN_KEY
        assert c.post("/v1/collections", json={"name": "big", "dim": 2}).status_code == 201
        body = json.dumps({"external_id": "a", "vector": VEC, "content": "x" * 8192}).encode()

        def chunks() -> Iterator[bytes]:
            for i in range(0, len(body), 1024):
                yield body[i : i + 1024]

        for content in (body, chunks()):
            r = c.post("/v1/collections/big/upsert", content=content, headers=JSON_HEADERS)
            error_of(r, 413, "payload_too_large")
        assert c.get("/v1/collections/big").json()["data"]["vector_count"] == 0


def test_an_import_line_over_its_limit_is_413(client: Client, tenants: None) -> None:
    line = json.dumps({"external_id": "x", "vector": VEC, "content": "y" * (3 * 1024 * 1024)})
    r = client.post(f"/v1/collections/{VISIBLE}/import", content=line + "\n")
    error_of(r, 413, "payload_too_large")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            f"/v1/collections/{VISIBLE}/upsert",
            {"external_id": "a", "vector": VEC, "content": "c" * 100_001},
        ),
        (f"/v1/collections/{VISIBLE}/upsert", {"external_id": "a", "text": "t" * 100_001}),
        (f"/v1/collections/{VISIBLE}", {"description": "d" * 100_001}),
        ("/v1/collections", {"name": "alpha-d", "dim": 2, "description": "d" * 100_001}),
        (
            f"/v1/collections/{VISIBLE}/bulk_upsert",
            {"items": [{"external_id": str(i), "vector": VEC} for i in range(1001)]},
        ),
        (f"/v1/collections/{VISIBLE}/vectors/fetch", {"ids": [str(i) for i in range(1001)]}),
        (
            f"/v1/collections/{VISIBLE}/delete_batch",
            {"external_ids": [str(i) for i in range(1001)]},
        ),
        (f"/v1/collections/{VISIBLE}/count", {"filters": {"k": {"$in": list(range(1001))}}}),
        (f"/v1/collections/{VISIBLE}/search", {"vector": [0.5] * 5000}),
        (f"/v1/collections/{VISIBLE}/search", {"vector": VEC, "k": 1001}),
        (f"/v1/collections/{VISIBLE}/search", {"vector": VEC, "k": 1000, "offset": 9001}),
        (f"/v1/collections/{VISIBLE}/bulk_search", {"queries": [{"vector": VEC}] * 101}),
        (
            f"/v1/collections/{VISIBLE}/rerank",
            {"vector": VEC, "candidates": [str(i) for i in range(10_001)]},
        ),
        (f"/v1/collections/{VISIBLE}/scroll", {"limit": 1001}),
        (
            f"/v1/collections/{VISIBLE}/upsert",
            {"external_id": "a", "vector": VEC, "metadata": {"m": "x" * 70_000}},
        ),
        ("/v1/collections", {"name": "alpha-big", "dim": 4097}),
        ("/v1/admin/keys", {"name": "n" * 201, "role": "read"}),
        ("/v1/admin/keys", {"name": "n", "role": "read", "collections": ["a*"] * 101}),
    ],
)
def test_every_size_has_a_limit(
    client: Client, tenants: None, path: str, body: dict[str, Any]
) -> None:
    method = "PATCH" if path == f"/v1/collections/{VISIBLE}" else "POST"
    r = client.request(method, path, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] in (
        "limit_exceeded",
        "bad_request",
        "dimension_mismatch",
        "invalid_filter",
    )


# -- keys: hashed at rest, compared in constant time, never logged -----------------------------
class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.json = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.json.format(record))
        self.lines.append(logging.Formatter().format(record))


@pytest.fixture
def captured_logs() -> Iterator[Capture]:
    handler = Capture()
    loggers = [logging.getLogger(n) for n in ("", "vecstore", "litestar", "uvicorn", "sqlalchemy")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


def test_keys_never_reach_logs_metrics_or_error_bodies(
    client: Client,
    app: Litestar,
    tenants: None,
    captured_logs: Capture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created = new_key(client, "write", ["alpha-*"])
    first = created["key"]
    rotated = client.post(f"/v1/admin/keys/{created['id']}/rotate").json()["data"]["key"]
    bodies: list[str] = []
    near_miss = rotated[:-1] + ("A" if rotated[-1] != "A" else "B")
    requests: list[tuple[str, str, dict[str, str]]] = [
        ("GET", f"/v1/collections/{VISIBLE}", key_headers(rotated)),
        ("GET", f"/v1/collections/{VISIBLE}", {"authorization": f"Bearer {rotated}"}),
        ("GET", f"/v1/collections/{HIDDEN}", key_headers(rotated)),  # 404
        ("DELETE", f"/v1/collections/{HIDDEN}", key_headers(rotated)),  # 403
        ("GET", "/v1/admin/keys", key_headers(rotated)),  # 403
        ("GET", "/v1/collections", key_headers(first)),  # 401: rotated away
        ("GET", "/v1/collections", key_headers(near_miss)),  # 401
        ("GET", "/v1/collections", {"authorization": f"Basic {first}"}),  # 401: wrong scheme
        ("GET", "/no/such/route", key_headers(rotated)),
    ]
    for method, path, headers in requests:
        bodies.append(client.request(method, path, headers=headers).text)

    def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("storage exploded")

    monkeypatch.setattr(app.state.services.collections, "list", boom)
    r = client.get("/v1/collections", headers=key_headers(rotated))
    assert r.status_code == 500
    bodies.append(r.text)
    bodies.append(client.get("/metrics").text)
    bodies.append(client.get("/v1/admin/keys").text)
    bodies.append(client.get(f"/v1/admin/keys/{created['id']}/usage").text)
    logged = "\n".join(captured_logs.lines)
    assert "request" in logged  # the capture did capture
    assert "storage exploded" in logged
    for secret in (first, rotated, near_miss, ADMIN_KEY):
        body_part = secret[10:]  # everything after the displayed prefix
        assert body_part not in logged
        for text in bodies:
            assert body_part not in text


def test_keys_are_stored_hashed_the_database_files_never_hold_one(
    client: Client, app: Litestar, data_dir: Path
) -> None:
    created = new_key(client, "admin", ["alpha-*"])
    rotated = client.post(f"/v1/admin/keys/{created['id']}/rotate").json()["data"]["key"]
    client.get("/v1/collections", headers=key_headers(rotated))
    app.state.services.keys.flush()
    raw = b"".join(p.read_bytes() for p in data_dir.glob("vecstore.db*"))
    assert raw  # the database and its WAL were read
    for secret in (created["key"], rotated, ADMIN_KEY):
        assert secret.encode() not in raw
        assert secret[10:].encode() not in raw
    assert hashlib.sha256(rotated.encode()).hexdigest().encode() in raw


def test_key_checks_compare_digests_in_constant_time(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = new_key(client, "read")
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module vecstore.services.keys uses
    digest = hashlib.sha256(created["key"].encode()).hexdigest()
    admin_digest = hashlib.sha256(ADMIN_KEY.encode()).hexdigest()
    assert client.get("/v1/collections", headers=key_headers(created["key"])).status_code == 200
    assert (digest, admin_digest) in calls  # the bootstrap admin key: compared, not ==
    assert (digest, digest) in calls  # the stored hash against the presented key's
    assert client.get("/v1/collections").status_code == 200
    assert (admin_digest, admin_digest) in calls
    # Only fixed-length digests are ever compared, never the raw secret.
    assert all(len(a) == len(b) == 64 for a, b in calls)
    assert all(created["key"] not in (a, b) for a, b in calls)


# -- CORS ----------------------------------------------------------------------------------------
PREFLIGHT = {
    "origin": "https://app.example.com",
    "access-control-request-method": "POST",
    "access-control-request-headers": "x-api-key, content-type",
}


def _cors_headers(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def test_cors_is_off_by_default(client: Client, tenants: None) -> None:
    r = client.get("/v1/collections", headers={"origin": "https://app.example.com"})
    assert r.status_code == 200
    assert _cors_headers(r) == {}
    for path in ("/v1/collections", f"/v1/collections/{VISIBLE}/search", "/v1/admin/keys"):
        r = client.options(path, headers={**PREFLIGHT, "x-api-key": ""})
        assert _cors_headers(r) == {}, path  # without Allow-Origin a browser refuses it
    assert Settings.from_env({}).cors_origins == []


def test_cors_allows_exactly_the_configured_origins(data_dir: Path) -> None:
    origins = "https://app.example.com, https://ops.example.com"
    from_env = Settings.from_env({"VECSTORE_CORS_ALLOW_ORIGINS": origins})
    assert from_env.cors_origins == ["https://app.example.com", "https://ops.example.com"]
    app = create_app(make_settings(data_dir, cors_allow_origins=origins))
    with TestClient(app=app, raise_server_exceptions=False) as c:
        wait_ready(c)
        # A preflight needs no key, even for an admin route.
        for path in ("/v1/collections", "/v1/admin/keys"):
            r = c.options(path, headers=PREFLIGHT)
            assert r.status_code == 204, r.text
            cors = _cors_headers(r)
            assert cors["access-control-allow-origin"] == "https://app.example.com"
            assert "x-api-key" in cors["access-control-allow-headers"]
            assert "access-control-allow-credentials" not in cors
        r = c.options("/v1/collections", headers={**PREFLIGHT, "origin": "https://evil.example"})
        assert r.status_code == 400
        assert "access-control-allow-origin" not in _cors_headers(r)
        r = c.get(
            "/v1/collections", headers={"origin": "https://ops.example.com", "x-api-key": ADMIN_KEY}
        )
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://ops.example.com"
        assert "x-request-id" in r.headers["access-control-expose-headers"]
        r = c.get(
            "/v1/collections", headers={"origin": "https://evil.example", "x-api-key": ADMIN_KEY}
        )
        assert "access-control-allow-origin" not in _cors_headers(r)
        # CORS never replaces the key: a cross-origin call without one is still 401.
        r = c.get("/v1/collections", headers={"origin": "https://app.example.com"})
        error_of(r, 401, "unauthorized")


# -- what the server exposes by default ----------------------------------------------------------
DIALECT_FAILURES = {
    "openai": ("embeddings.embed", "/v1/embeddings", {"input": "hi"}),
    "tei": ("embeddings.embed", "/embed", {"inputs": "hi"}),
    "cohere": ("document_rerank.rerank", "/v1/rerank", {"query": "q", "documents": ["a"]}),
    "cohere v2": ("document_rerank.rerank", "/v2/rerank", {"query": "q", "documents": ["a"]}),
}


@pytest.mark.parametrize("case", sorted(DIALECT_FAILURES))
def test_a_500_in_any_dialect_hides_the_exception(
    client: Client, app: Litestar, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    target, path, body = DIALECT_FAILURES[case]
    service, attr = target.split(".")

    def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("secret-detail /var/lib/vecstore password=hunter2")

    monkeypatch.setattr(getattr(app.state.services, service), attr, boom)
    r = client.post(path, json=body)
    assert r.status_code == 500, r.text
    for leaked in ("secret-detail", "hunter2", "/var/lib", "RuntimeError", "Traceback"):
        assert leaked not in r.text
    assert r.headers["x-request-id"] in r.text


def test_defaults_bind_loopback_require_keys_and_have_no_default_key() -> None:
    defaults = Settings.from_env({})
    assert defaults.host == "127.0.0.1"
    assert defaults.auth_enabled is True
    assert defaults.admin_key is None
    assert defaults.metrics_public is False
    assert defaults.cors_allow_origins == ""


def test_the_generated_admin_key_file_and_the_data_dir_are_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"
    key, generated = ensure_admin_key(data_dir)
    assert generated
    assert stat.S_IMODE(os.stat(data_dir / "admin.key").st_mode) == 0o600
    assert ensure_admin_key(data_dir) == (key, False)
    app_dir = tmp_path / "app-data"
    create_app(make_settings(app_dir))
    assert stat.S_IMODE(os.stat(app_dir).st_mode) == 0o700
    # A directory the operator made keeps the mode the operator gave it.
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o750)
    os.chmod(existing, 0o750)
    create_app(make_settings(existing))
    assert stat.S_IMODE(os.stat(existing).st_mode) == 0o750


def test_a_loose_admin_key_file_is_made_owner_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    key, _ = ensure_admin_key(data_dir)
    os.chmod(data_dir / "admin.key", 0o644)
    with caplog.at_level(logging.WARNING, logger="vecstore.bootstrap"):
        assert ensure_admin_key(data_dir) == (key, False)
    assert stat.S_IMODE(os.stat(data_dir / "admin.key").st_mode) == 0o600
    assert "owner-only" in caplog.text
    assert key not in caplog.text
