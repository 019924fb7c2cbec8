"""API keys (api.md §0 auth, §5): issuing, presenting, revoking, expiry, rotation, roles, scopes,
usage counting, hashed storage and rate limits."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import ADMIN_KEY, make_settings, wait_ready
from tests.oracles import metric_value
from vecstore.app import create_app
from vecstore.services import keys as keys_module
from vecstore.services import rate_limit as rate_limit_module
from vecstore.storage import schema as t

KEY_OBJECT_FIELDS = {
    "id",
    "name",
    "role",
    "collections",
    "is_active",
    "created_at",
    "expires_at",
    "last_used_at",
    "prefix",
    "rate_limit_per_minute",
}
SEARCH_ROUTE = "/v1/collections/{name}/search"
SEARCH_PATH = "/v1/collections/docs/search"


def create_key(client: TestClient[Litestar], role: str = "read", **body: Any) -> dict[str, Any]:
    response = client.post("/v1/admin/keys", json={"name": f"{role}-key", "role": role, **body})
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def as_key(secret: str) -> dict[str, str]:
    return {"x-api-key": secret}


def assert_error(response: Any, status: int, type_: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error"
    assert body["error"]["code"] == status
    assert body["error"]["type"] == type_


@pytest.fixture
def anon(client: TestClient[Litestar]) -> TestClient[Litestar]:
    """The shared client with its preset admin key removed."""
    del client.headers["x-api-key"]
    return client


@pytest.fixture
def docs(make_collection: Callable[..., dict[str, Any]], client: TestClient[Litestar]) -> str:
    make_collection("docs", dim=2)
    for i, vec in enumerate([[1.0, 0.0], [0.0, 1.0]]):
        r = client.post("/v1/collections/docs/upsert", json={"external_id": f"d{i}", "vector": vec})
        assert r.status_code == 200, r.text
    return "docs"


class FakeClock:
    """Stands in for the ``time`` module inside ``vecstore.services.keys``."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


# -- issuing and reading keys ------------------------------------------------------------------
@pytest.mark.parametrize("role", ["read", "write", "admin"])
def test_created_key_shows_its_secret_once_and_reads_never_do(
    client: TestClient[Litestar], role: str
) -> None:
    created = create_key(client, role)
    secret = created.pop("key")
    assert set(created) == KEY_OBJECT_FIELDS
    assert created["role"] == role
    assert created["name"] == f"{role}-key"
    assert created["collections"] is None
    assert created["is_active"] is True
    assert created["expires_at"] is None
    assert created["last_used_at"] is None
    assert created["rate_limit_per_minute"] is None
    assert secret.startswith(created["prefix"])
    assert len(created["prefix"]) < len(secret)

    one = client.get(f"/v1/admin/keys/{created['id']}")
    assert one.status_code == 200
    assert one.json() == {"status": "success", "data": created}
    listed = client.get("/v1/admin/keys").json()["data"]["keys"]
    assert listed == [created]
    assert secret not in client.get("/v1/admin/keys").text


def test_keys_are_long_random_secrets(client: TestClient[Litestar]) -> None:
    secrets = {create_key(client)["key"] for _ in range(5)}
    assert len(secrets) == 5
    # >= 32 random bytes: at least 43 url-safe base64 characters after the prefix.
    assert all(len(s) - len(keys_module.KEY_PREFIX) >= 43 for s in secrets)


def test_keys_are_stored_only_as_a_hash(client: TestClient[Litestar], app: Litestar) -> None:
    created = create_key(client, "write", collections=["a-*"], rate_limit_per_minute=5)
    secret = created["key"]
    secret_body = secret[len(created["prefix"]) :]
    with app.state.services.engine.db.connect() as conn:
        rows = conn.execute(sa.select(t.api_keys)).mappings().all()
    assert len(rows) == 1
    row = dict(rows[0])
    for column, value in row.items():
        assert secret not in str(value), column
        assert secret_body not in str(value), column
    assert row["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()


@pytest.mark.parametrize(
    ("body", "status", "type_"),
    [
        ({"name": "k", "role": "superuser"}, 400, "bad_request"),
        ({"name": "", "role": "read"}, 400, "bad_request"),
        ({"name": "k", "role": "read", "expires_in_days": 0}, 400, "bad_request"),
        ({"name": "k", "role": "read", "rate_limit_per_minute": 0}, 400, "bad_request"),
        ({"name": "k", "role": "read", "collections": [""]}, 400, "bad_request"),
        ({"role": "read"}, 422, "invalid_body"),
        ({"name": "k", "role": 3}, 422, "invalid_body"),
    ],
)
def test_invalid_key_requests_are_rejected_and_create_nothing(
    client: TestClient[Litestar], body: dict[str, Any], status: int, type_: str
) -> None:
    assert_error(client.post("/v1/admin/keys", json=body), status, type_)
    assert client.get("/v1/admin/keys").json()["data"]["keys"] == []


def test_bad_role_message_names_the_field_and_the_choices(client: TestClient[Litestar]) -> None:
    message = client.post("/v1/admin/keys", json={"name": "k", "role": "root"}).json()["error"][
        "message"
    ]
    assert "role" in message
    assert all(r in message for r in ("read", "write", "admin"))


def test_patch_with_a_bad_role_is_400_and_changes_nothing(client: TestClient[Litestar]) -> None:
    created = create_key(client, "read")
    assert_error(
        client.patch(f"/v1/admin/keys/{created['id']}", json={"role": "god"}), 400, "bad_request"
    )
    assert client.get(f"/v1/admin/keys/{created['id']}").json()["data"]["role"] == "read"


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/rotate"), ("GET", "/usage")],
)
def test_unknown_key_id_is_404(client: TestClient[Litestar], method: str, suffix: str) -> None:
    kwargs: dict[str, Any] = {"json": {"name": "x"}} if method == "PATCH" else {}
    response = client.request(method, f"/v1/admin/keys/no-such-id{suffix}", **kwargs)
    assert_error(response, 404, "key_not_found")


# -- presenting keys ---------------------------------------------------------------------------
def test_key_works_as_x_api_key_and_as_bearer_token(
    client: TestClient[Litestar], docs: str
) -> None:
    secret = create_key(client, "read")["key"]
    del client.headers["x-api-key"]
    anon = client
    for headers in (
        {"x-api-key": secret},
        {"Authorization": f"Bearer {secret}"},
        {"Authorization": f"bearer {secret}"},
    ):
        r = anon.post(
            "/v1/collections/docs/search", json={"vector": [1, 0], "k": 1}, headers=headers
        )
        assert r.status_code == 200, (headers, r.text)
        assert r.json()["data"]["results"][0]["external_id"] == "d0"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": ""},
        {"x-api-key": "vs_not-a-real-key"},
        {"Authorization": "Bearer vs_not-a-real-key"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {ADMIN_KEY}"},
        {"Authorization": ADMIN_KEY},
        {"x-api-key": ADMIN_KEY + "x"},
        {"x-api-key": ADMIN_KEY[:-1]},
    ],
)
def test_missing_or_unknown_key_is_401(anon: TestClient[Litestar], headers: dict[str, str]) -> None:
    for method, path in [
        ("GET", "/v1/collections"),
        ("GET", "/v1/health"),
        ("GET", "/v1/admin/keys"),
    ]:
        assert_error(anon.request(method, path, headers=headers), 401, "unauthorized")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(presented=st.from_regex(r"[!-~]{1,80}", fullmatch=True))
def test_any_string_that_is_not_an_issued_key_is_401(
    anon: TestClient[Litestar], presented: str
) -> None:
    if presented == ADMIN_KEY:
        return
    assert_error(anon.get("/v1/collections", headers=as_key(presented)), 401, "unauthorized")


def test_without_a_configured_admin_key_no_default_key_exists(data_dir: Path) -> None:
    app = create_app(make_settings(data_dir, admin_key=None))
    with TestClient(app=app, raise_server_exceptions=False) as c:
        wait_ready(c)
        for candidate in (ADMIN_KEY, "admin", "changeme", "secret", "vecstore"):
            assert_error(c.get("/v1/collections", headers=as_key(candidate)), 401, "unauthorized")
        assert_error(c.get("/v1/collections"), 401, "unauthorized")


def test_auth_disabled_lets_requests_without_a_key_through(data_dir: Path) -> None:
    app = create_app(make_settings(data_dir, auth_enabled=False))
    with TestClient(app=app, raise_server_exceptions=False) as c:
        wait_ready(c)
        assert c.post("/v1/collections", json={"name": "open", "dim": 2}).status_code == 201
        r = c.post("/v1/collections/open/upsert", json={"external_id": "a", "vector": [1, 0]})
        assert r.status_code == 200, r.text
        names = [x["name"] for x in c.get("/v1/collections").json()["data"]["collections"]]
        assert names == ["open"]
        assert c.get("/v1/health").status_code == 200
        assert c.get("/v1/admin/keys").status_code == 200
        assert c.delete("/v1/collections/open").status_code == 200


# -- revocation, expiry and rotation -----------------------------------------------------------
def test_deactivated_key_is_401_until_reactivated(client: TestClient[Litestar], docs: str) -> None:
    created = create_key(client, "read")
    headers = as_key(created["key"])
    assert client.get("/v1/collections", headers=headers).status_code == 200  # now cached
    r = client.patch(f"/v1/admin/keys/{created['id']}", json={"is_active": False})
    assert r.status_code == 200
    assert r.json()["data"]["is_active"] is False
    assert "key" not in r.json()["data"]
    assert_error(client.get("/v1/collections", headers=headers), 401, "unauthorized")
    assert client.patch(f"/v1/admin/keys/{created['id']}", json={"is_active": True}).is_success
    assert client.get("/v1/collections", headers=headers).status_code == 200


def test_deleted_key_is_401_and_gone(client: TestClient[Litestar]) -> None:
    created = create_key(client, "admin")
    headers = as_key(created["key"])
    assert client.get("/v1/admin/keys", headers=headers).status_code == 200  # now cached
    r = client.delete(f"/v1/admin/keys/{created['id']}")
    assert r.status_code == 200
    assert r.json() == {"status": "success", "data": {"deleted": True, "id": created["id"]}}
    assert_error(client.get("/v1/collections", headers=headers), 401, "unauthorized")
    assert_error(client.get(f"/v1/admin/keys/{created['id']}"), 404, "key_not_found")
    assert_error(client.delete(f"/v1/admin/keys/{created['id']}"), 404, "key_not_found")


def test_revocation_racing_a_cache_fill_is_not_lost(
    client: TestClient[Litestar], app: Litestar, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that read the key row just before an admin revoked it must not leave the
    stale (active) row in the cache for later requests."""
    created = create_key(client, "read")
    service = app.state.services.keys
    real_by_hash = service.store.by_hash

    def by_hash_then_revoke(digest: str) -> Any:
        row = real_by_hash(digest)
        monkeypatch.setattr(service.store, "by_hash", real_by_hash)
        service.update(created["id"], {"is_active": False})  # lands between read and cache fill
        return row

    monkeypatch.setattr(service.store, "by_hash", by_hash_then_revoke)
    headers = as_key(created["key"])
    client.get("/v1/collections", headers=headers)  # raced with the revocation: either answer
    assert_error(client.get("/v1/collections", headers=headers), 401, "unauthorized")


def test_expires_at_is_expires_in_days_after_creation(client: TestClient[Litestar]) -> None:
    created = create_key(client, "read", expires_in_days=3)
    made = datetime.fromisoformat(created["created_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(created["expires_at"].replace("Z", "+00:00"))
    assert abs((expires - made) - timedelta(days=3)) < timedelta(seconds=5)
    assert created["created_at"].endswith("Z")
    assert created["expires_at"].endswith("Z")


def test_key_whose_expiry_is_in_the_past_is_401(
    client: TestClient[Litestar], app: Litestar
) -> None:
    created = create_key(client, "read", expires_in_days=1)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    with app.state.services.engine.db.begin() as conn:
        conn.execute(
            t.api_keys.update().where(t.api_keys.c.id == created["id"]).values(expires_at=past)
        )
    response = client.get("/v1/collections", headers=as_key(created["key"]))
    assert_error(response, 401, "unauthorized")
    assert "expired" in response.json()["error"]["message"]


def test_expiry_is_checked_on_every_request_even_for_a_cached_key(
    client: TestClient[Litestar], monkeypatch: pytest.MonkeyPatch
) -> None:
    created = create_key(client, "read", expires_in_days=2)
    headers = as_key(created["key"])
    assert client.get("/v1/collections", headers=headers).status_code == 200  # now cached

    class Later(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Later:  # type: ignore[override]
            moment = datetime.now(tz) + timedelta(days=2, minutes=1)
            return cls.fromtimestamp(moment.timestamp(), tz)

    monkeypatch.setattr(keys_module, "datetime", Later)
    assert_error(client.get("/v1/collections", headers=headers), 401, "unauthorized")
    monkeypatch.undo()
    assert client.get("/v1/collections", headers=headers).status_code == 200


def test_rotate_invalidates_the_old_secret_and_issues_a_new_one(
    client: TestClient[Litestar],
) -> None:
    created = create_key(client, "read")
    old = created["key"]
    assert client.get("/v1/collections", headers=as_key(old)).status_code == 200  # now cached
    r = client.post(f"/v1/admin/keys/{created['id']}/rotate")
    assert r.status_code == 200, r.text
    rotated = r.json()["data"]
    new = rotated.pop("key")
    assert new != old
    assert rotated["id"] == created["id"]
    assert rotated["role"] == "read"
    assert new.startswith(rotated["prefix"])
    assert_error(client.get("/v1/collections", headers=as_key(old)), 401, "unauthorized")
    assert client.get("/v1/collections", headers=as_key(new)).status_code == 200
    assert "key" not in client.get(f"/v1/admin/keys/{created['id']}").json()["data"]


# -- roles -------------------------------------------------------------------------------------
ROLE_RANK = {"read": 1, "write": 2, "admin": 3}


def _ladder(role: str) -> list[tuple[str, str, dict[str, Any] | None, str, int]]:
    """(method, path, body, least role, success status) — run in this order."""
    return [
        ("GET", "/v1/collections", None, "read", 200),
        ("GET", "/v1/collections/docs", None, "read", 200),
        ("POST", "/v1/collections/docs/search", {"vector": [1, 0], "k": 1}, "read", 200),
        ("POST", "/v1/collections/docs/count", {}, "read", 200),
        ("GET", "/v1/collections/docs/vectors/d0", None, "read", 200),
        ("GET", "/v1/health", None, "read", 200),
        ("GET", "/metrics", None, "read", 200),
        (
            "POST",
            "/v1/collections/docs/upsert",
            {"external_id": "n", "vector": [1, 1]},
            "write",
            200,
        ),
        (
            "POST",
            "/v1/collections/docs/bulk_upsert",
            {"items": [{"external_id": "m", "vector": [1, 2]}]},
            "write",
            200,
        ),
        ("PATCH", "/v1/collections/docs", {"description": "x"}, "write", 200),
        ("DELETE", "/v1/collections/docs/delete/d1", None, "write", 200),
        ("POST", "/v1/collections", {"name": f"made-by-{role}", "dim": 2}, "write", 201),
        ("GET", "/v1/admin/keys", None, "admin", 200),
        ("POST", "/v1/admin/keys", {"name": "child", "role": "read"}, "admin", 201),
        ("DELETE", "/v1/collections/victim", None, "admin", 200),
    ]


@pytest.mark.parametrize("role", ["read", "write", "admin"])
def test_role_ladder(
    client: TestClient[Litestar], docs: str, make_collection: Any, role: str
) -> None:
    make_collection("victim", dim=2)
    headers = as_key(create_key(client, role)["key"])
    for method, path, body, needs, ok in _ladder(role):
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["json"] = body
        response = client.request(method, path, **kwargs)
        if ROLE_RANK[role] >= ROLE_RANK[needs]:
            assert response.status_code == ok, (method, path, response.text)
        else:
            assert_error(response, 403, "forbidden")
            assert needs in response.json()["error"]["message"], (method, path)
    # Refused writes changed nothing.
    names = {c["name"] for c in client.get("/v1/collections").json()["data"]["collections"]}
    expected_docs = 2 if role == "read" else 3  # +n, +m, -d1
    assert client.get("/v1/collections/docs").json()["data"]["vector_count"] == expected_docs
    assert ("victim" in names) is (role != "admin")
    assert (f"made-by-{role}" in names) is (role != "read")


def test_patching_the_role_takes_effect_on_the_next_request(
    client: TestClient[Litestar], docs: str
) -> None:
    created = create_key(client, "read")
    headers = as_key(created["key"])
    upsert = {"external_id": "z", "vector": [0.5, 0.5]}
    assert_error(
        client.post("/v1/collections/docs/upsert", json=upsert, headers=headers), 403, "forbidden"
    )
    assert client.patch(f"/v1/admin/keys/{created['id']}", json={"role": "write"}).is_success
    r = client.post("/v1/collections/docs/upsert", json=upsert, headers=headers)
    assert r.status_code == 200, r.text
    assert client.patch(f"/v1/admin/keys/{created['id']}", json={"role": "read"}).is_success
    assert_error(
        client.post("/v1/collections/docs/upsert", json=upsert, headers=headers), 403, "forbidden"
    )


# -- collection scopes -------------------------------------------------------------------------
@pytest.fixture
def tenants(client: TestClient[Litestar], make_collection: Any) -> dict[str, int]:
    counts = {"tenant-a-1": 2, "tenant-a-2": 1, "tenant-b-1": 3}
    for name, n in counts.items():
        make_collection(name, dim=2)
        items = [{"external_id": f"r{i}", "vector": [1.0, float(i)]} for i in range(n)]
        r = client.post(f"/v1/collections/{name}/bulk_upsert", json={"items": items})
        assert r.status_code == 200, r.text
    return counts


def test_scoped_key_lists_and_reads_only_matching_collections(
    client: TestClient[Litestar], tenants: dict[str, int]
) -> None:
    headers = as_key(create_key(client, "write", collections=["tenant-a-*"])["key"])
    listed = client.get("/v1/collections", headers=headers).json()["data"]["collections"]
    assert sorted(c["name"] for c in listed) == ["tenant-a-1", "tenant-a-2"]
    assert client.get("/v1/collections/tenant-a-1", headers=headers).status_code == 200
    r = client.post(
        "/v1/collections/tenant-a-1/search", json={"vector": [1, 0], "k": 5}, headers=headers
    )
    assert len(r.json()["data"]["results"]) == 2


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/collections/{c}", None),
        ("POST", "/v1/collections/{c}/search", {"vector": [1, 0]}),
        ("POST", "/v1/collections/{c}/count", {}),
        ("GET", "/v1/collections/{c}/vectors/r0", None),
        ("POST", "/v1/collections/{c}/vectors/fetch", {"ids": ["r0"]}),
        ("POST", "/v1/collections/{c}/scroll", {}),
        ("GET", "/v1/collections/{c}/export", None),
        ("POST", "/v1/collections/{c}/similarity", {"id1": "r0", "id2": "r1"}),
        ("POST", "/v1/collections/{c}/recommend/r0", {}),
        ("POST", "/v1/collections/{c}/rerank", {"vector": [1, 0], "candidates": ["r0"]}),
        ("POST", "/v1/collections/{c}/bulk_search", {"queries": [{"vector": [1, 0]}]}),
    ],
)
def test_reads_outside_the_scope_look_exactly_like_a_missing_collection(
    client: TestClient[Litestar],
    tenants: dict[str, int],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    headers = as_key(create_key(client, "write", collections=["tenant-a-*"])["key"])
    kwargs: dict[str, Any] = {"headers": headers} | ({"json": body} if body is not None else {})
    hidden = client.request(method, path.format(c="tenant-b-1"), **kwargs)
    missing = client.request(method, path.format(c="tenant-a-missing"), **kwargs)
    assert_error(hidden, 404, "collection_not_found")
    assert_error(missing, 404, "collection_not_found")
    assert hidden.json()["error"]["message"] == missing.json()["error"]["message"].replace(
        "tenant-a-missing", "tenant-b-1"
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/collections/tenant-b-1/upsert", {"external_id": "x", "vector": [1, 0]}),
        ("POST", "/v1/collections/tenant-b-1/bulk_upsert", {"items": []}),
        ("POST", "/v1/collections/tenant-b-1/delete_batch", {"external_ids": ["r0"]}),
        ("POST", "/v1/collections/tenant-b-1/delete_by_filter", {"filters": {"a": 1}}),
        ("DELETE", "/v1/collections/tenant-b-1/delete/r0", None),
        ("PATCH", "/v1/collections/tenant-b-1", {"description": "mine now"}),
        ("DELETE", "/v1/collections/tenant-b-1", None),
        ("POST", "/v1/collections", {"name": "tenant-b-2", "dim": 2}),
    ],
)
def test_writes_outside_the_scope_are_403_and_change_nothing(
    client: TestClient[Litestar],
    tenants: dict[str, int],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    headers = as_key(create_key(client, "admin", collections=["tenant-a-*"])["key"])
    kwargs: dict[str, Any] = {"headers": headers} | ({"json": body} if body is not None else {})
    assert_error(client.request(method, path, **kwargs), 403, "forbidden")
    names = sorted(c["name"] for c in client.get("/v1/collections").json()["data"]["collections"])
    assert names == ["tenant-a-1", "tenant-a-2", "tenant-b-1"]
    b1 = client.get("/v1/collections/tenant-b-1").json()["data"]
    assert b1["vector_count"] == 3
    assert b1["description"] is None


def test_scoped_key_may_create_inside_its_scope(
    client: TestClient[Litestar], tenants: dict[str, int]
) -> None:
    headers = as_key(create_key(client, "write", collections=["tenant-a-*"])["key"])
    r = client.post("/v1/collections", json={"name": "tenant-a-9", "dim": 2}, headers=headers)
    assert r.status_code == 201, r.text


def test_health_is_scoped_to_the_key(client: TestClient[Litestar], tenants: dict[str, int]) -> None:
    headers = as_key(create_key(client, "read", collections=["tenant-a-*"])["key"])
    data = client.get("/v1/health", headers=headers).json()["data"]
    assert sorted(c["name"] for c in data["collections"]) == ["tenant-a-1", "tenant-a-2"]
    assert data["total_vectors"] == 3
    assert "tenant-b" not in client.get("/v1/health", headers=headers).text
    everything = client.get("/v1/health").json()["data"]
    assert everything["total_vectors"] == 6


def test_metrics_never_name_collections_outside_the_scope(
    client: TestClient[Litestar], tenants: dict[str, int]
) -> None:
    headers = as_key(create_key(client, "read", collections=["tenant-a-*"])["key"])
    client.post("/v1/collections/tenant-b-1/search", json={"vector": [1, 0]})
    text = client.get("/metrics", headers=headers).text
    assert 'vecstore_collection_vectors{collection="tenant-a-1"} 2.0' in text
    assert 'vecstore_collection_vectors{collection="tenant-a-2"} 1.0' in text
    assert "tenant-b" not in text
    assert 'collection="tenant-b-1"' in client.get("/metrics").text


def test_patching_the_scope_takes_effect_on_the_next_request(
    client: TestClient[Litestar], tenants: dict[str, int]
) -> None:
    created = create_key(client, "read", collections=["tenant-a-*"])
    headers = as_key(created["key"])
    assert client.get("/v1/collections/tenant-b-1", headers=headers).status_code == 404
    r = client.patch(f"/v1/admin/keys/{created['id']}", json={"collections": ["tenant-b-*"]})
    assert r.json()["data"]["collections"] == ["tenant-b-*"]
    assert client.get("/v1/collections/tenant-b-1", headers=headers).status_code == 200
    assert client.get("/v1/collections/tenant-a-1", headers=headers).status_code == 404
    client.patch(f"/v1/admin/keys/{created['id']}", json={"collections": None})
    listed = client.get("/v1/collections", headers=headers).json()["data"]["collections"]
    assert len(listed) == 3


def test_scope_patterns_are_globs_matched_on_the_whole_name(
    client: TestClient[Litestar], make_collection: Any
) -> None:
    for name in ("logs", "logs-2024", "blogs", "LOGS", "log"):
        make_collection(name, dim=2)
    headers = as_key(create_key(client, "read", collections=["logs", "log?"])["key"])
    listed = client.get("/v1/collections", headers=headers).json()["data"]["collections"]
    assert sorted(c["name"] for c in listed) == ["logs"]


# -- usage ---------------------------------------------------------------------------------------
def test_usage_counts_requests_by_route_template(
    client: TestClient[Litestar], app: Litestar, docs: str
) -> None:
    created = create_key(client, "read")
    headers = as_key(created["key"])
    empty = client.get(f"/v1/admin/keys/{created['id']}/usage").json()["data"]
    assert empty == {
        "total_requests": 0,
        "last_24h": 0,
        "last_7d": 0,
        "by_route": {},
        "last_request_at": None,
    }
    for _ in range(3):
        client.post("/v1/collections/docs/search", json={"vector": [1, 0]}, headers=headers)
    client.get("/v1/collections/docs", headers=headers)
    client.get("/v1/collections", headers=headers)
    client.get("/v1/collections/docs/vectors/d0", headers=headers)
    client.get("/v1/collections/docs/vectors/d1", headers=headers)
    app.state.services.keys.flush()
    usage = client.get(f"/v1/admin/keys/{created['id']}/usage").json()["data"]
    assert usage["by_route"] == {
        SEARCH_ROUTE: 3,
        "/v1/collections/{name}": 1,
        "/v1/collections": 1,
        "/v1/collections/{name}/vectors/{external_id}": 2,
    }
    assert usage["total_requests"] == 7
    assert usage["last_24h"] == 7
    assert usage["last_7d"] == 7
    assert usage["last_request_at"] is not None
    key = client.get(f"/v1/admin/keys/{created['id']}").json()["data"]
    assert key["last_used_at"] == usage["last_request_at"]


def test_usage_endpoint_flushes_pending_counts_itself(
    client: TestClient[Litestar], docs: str
) -> None:
    created = create_key(client, "read")
    client.post(
        "/v1/collections/docs/search", json={"vector": [1, 0]}, headers=as_key(created["key"])
    )
    usage = client.get(f"/v1/admin/keys/{created['id']}/usage").json()["data"]
    assert usage["by_route"] == {SEARCH_ROUTE: 1}
    assert usage["total_requests"] == 1


def test_usage_windows_split_by_age(
    client: TestClient[Litestar],
    app: Litestar,
    docs: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created = create_key(client, "read")
    headers = as_key(created["key"])
    real_now = time.time()
    clock = FakeClock(real_now)
    monkeypatch.setattr(keys_module, "time", clock)
    ages_hours = {0: 2, 23: 1, 48: 4, 24 * 8: 5}
    for age, n in ages_hours.items():
        clock.now = real_now - age * 3600
        for _ in range(n):
            client.post("/v1/collections/docs/search", json={"vector": [1, 0]}, headers=headers)
        app.state.services.keys.flush()
    clock.now = real_now
    usage = client.get(f"/v1/admin/keys/{created['id']}/usage").json()["data"]
    assert usage["total_requests"] == 12
    assert usage["last_24h"] == 3
    assert usage["last_7d"] == 7
    assert usage["by_route"] == {SEARCH_ROUTE: 12}


def test_bootstrap_admin_requests_are_not_counted_against_other_keys(
    client: TestClient[Litestar], docs: str
) -> None:
    created = create_key(client, "read")
    for _ in range(3):
        client.post("/v1/collections/docs/search", json={"vector": [1, 0]})
    usage = client.get(f"/v1/admin/keys/{created['id']}/usage").json()["data"]
    assert usage["total_requests"] == 0


# -- rate limits ---------------------------------------------------------------------------------
class FakeMonotonic:
    """Stands in for the ``time`` module inside ``vecstore.services.rate_limit``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def bucket_clock(monkeypatch: pytest.MonkeyPatch) -> FakeMonotonic:
    clock = FakeMonotonic()
    monkeypatch.setattr(rate_limit_module, "time", clock)
    return clock


def test_rate_limit_answers_429_with_retry_after(
    client: TestClient[Litestar], docs: str, bucket_clock: FakeMonotonic
) -> None:
    limited = create_key(client, "read", rate_limit_per_minute=3)
    assert limited["rate_limit_per_minute"] == 3
    other = as_key(create_key(client, "read")["key"])
    headers = as_key(limited["key"])
    for _ in range(3):  # an idle key may burst up to its limit
        assert client.get("/v1/collections", headers=headers).status_code == 200
    refused = client.post("/v1/collections/docs/search", json={"vector": [1, 0]}, headers=headers)
    assert_error(refused, 429, "rate_limited")
    # 3 per minute refill one token every 20 s.
    assert refused.headers["retry-after"] == "20"
    assert "3 requests per minute" in refused.json()["error"]["message"]
    # Other keys are not affected.
    for _ in range(5):
        assert client.get("/v1/collections", headers=other).status_code == 200
    bucket_clock.now += 15
    again = client.get("/v1/collections", headers=headers)
    assert_error(again, 429, "rate_limited")
    assert again.headers["retry-after"] == "5"
    bucket_clock.now += 5
    assert client.get("/v1/collections", headers=headers).status_code == 200
    assert_error(client.get("/v1/collections", headers=headers), 429, "rate_limited")
    # Refused requests show in /metrics, per key and per route.
    assert metric_value(client, "vecstore_rate_limited_requests_total", key_id=limited["id"]) == 3
    assert (
        metric_value(
            client,
            "vecstore_rejected_requests_total",
            route="/v1/collections/{name}/search",
            reason="rate_limited",
        )
        == 1
    )


def test_sustained_traffic_is_held_to_the_limit(
    client: TestClient[Litestar], bucket_clock: FakeMonotonic
) -> None:
    """No window boundary lets twice the limit through: over 3 minutes a 60/min key gets
    its burst of 60 plus one request a second, whatever the phase of the clock."""
    headers = as_key(create_key(client, "read", rate_limit_per_minute=60)["key"])
    passed = 0
    for _ in range(180 * 4):  # four attempts a second for three minutes
        passed += client.get("/v1/collections", headers=headers).status_code == 200
        bucket_clock.now += 0.25
    assert 60 + 180 - 1 <= passed <= 60 + 180


def test_default_rate_limit_applies_to_keys_without_their_own(
    tmp_path: Path, bucket_clock: FakeMonotonic
) -> None:
    app = create_app(make_settings(tmp_path, default_rate_limit_per_minute=2))
    with TestClient(app=app) as client:
        wait_ready(client)
        client.headers["x-api-key"] = ADMIN_KEY
        plain = as_key(create_key(client, "read")["key"])
        own = as_key(create_key(client, "read", rate_limit_per_minute=5)["key"])
        assert [client.get("/v1/collections", headers=plain).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        assert [client.get("/v1/collections", headers=own).status_code for _ in range(6)] == [
            *[200] * 5,
            429,
        ]
        # The bootstrap admin key is never limited: the operator can always get in.
        for _ in range(10):
            assert client.get("/v1/admin/keys").status_code == 200


def test_rate_limit_can_be_changed_and_removed(
    client: TestClient[Litestar], bucket_clock: FakeMonotonic
) -> None:
    created = create_key(client, "read", rate_limit_per_minute=1)
    headers = as_key(created["key"])
    assert client.get("/v1/collections", headers=headers).status_code == 200
    assert_error(client.get("/v1/collections", headers=headers), 429, "rate_limited")
    r = client.patch(f"/v1/admin/keys/{created['id']}", json={"rate_limit_per_minute": 2})
    assert r.json()["data"]["rate_limit_per_minute"] == 2
    # A changed limit starts a full bucket of the new size.
    assert [client.get("/v1/collections", headers=headers).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    r = client.patch(f"/v1/admin/keys/{created['id']}", json={"rate_limit_per_minute": None})
    assert r.json()["data"]["rate_limit_per_minute"] is None
    for _ in range(5):
        assert client.get("/v1/collections", headers=headers).status_code == 200


def test_a_scoped_admin_key_cannot_manage_keys(client: TestClient[Litestar]) -> None:
    scoped = create_key(client, "admin", collections=["tenant-a-*"])
    headers = as_key(scoped["key"])
    # It could otherwise issue itself an unscoped key and escape its scope.
    assert_error(
        client.post("/v1/admin/keys", json={"name": "x", "role": "admin"}, headers=headers),
        403,
        "forbidden",
    )
    assert_error(client.get("/v1/admin/keys", headers=headers), 403, "forbidden")
    assert_error(
        client.post(f"/v1/admin/keys/{scoped['id']}/rotate", headers=headers), 403, "forbidden"
    )
    # It is still an admin within its scope.
    created = client.post("/v1/collections", json={"name": "tenant-a-1", "dim": 2}, headers=headers)
    assert created.status_code == 201
    assert client.delete("/v1/collections/tenant-a-1", headers=headers).status_code == 200


def test_a_request_hashes_its_key_once_and_the_usage_time_is_iso(
    client: TestClient[Litestar], app: Litestar, docs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = client.post("/v1/admin/keys", json={"name": "r", "role": "read"}).json()["data"]
    headers = {"x-api-key": created["key"]}
    # first use: a database read (in a worker thread), which caches the key
    assert client.post(SEARCH_PATH, json={"vector": [1, 0]}, headers=headers).status_code == 200
    hashed: list[str] = []
    real_hash = keys_module.hash_key

    def counting_hash(key: str) -> str:
        hashed.append(key)
        return real_hash(key)

    monkeypatch.setattr(keys_module, "hash_key", counting_hash)
    assert client.post(SEARCH_PATH, json={"vector": [1, 0]}, headers=headers).status_code == 200
    assert hashed == [created["key"]]
    # the last use is kept as a number and written in the API's time format when flushed
    before = datetime.now(UTC)
    app.state.services.keys.flush()
    key = client.get(f"/v1/admin/keys/{created['id']}").json()["data"]
    used = datetime.fromisoformat(key["last_used_at"].replace("Z", "+00:00"))
    assert key["last_used_at"].endswith("Z")
    assert before - timedelta(seconds=60) < used <= before


def test_from_memory_authentication_never_reads_the_database(
    app: Litestar, client: TestClient[Litestar], monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = app.state.services.keys
    created = client.post("/v1/admin/keys", json={"name": "m", "role": "read"}).json()["data"]
    keys._invalidate()  # nothing cached now

    def no_reads(digest: str) -> Any:
        raise AssertionError("read the database")

    monkeypatch.setattr(keys.store, "by_hash", no_reads)
    assert keys.authenticate_from_memory(created["key"]) is None  # not cached: the caller reads
    assert keys.authenticate_from_memory(ADMIN_KEY).role == "admin"
    with pytest.raises(keys_module.Unauthorized):
        keys.authenticate_from_memory(None)
    monkeypatch.undo()
    assert keys.authenticate(created["key"]).key_id == created["id"]  # cached by this read
    monkeypatch.setattr(keys.store, "by_hash", no_reads)
    principal = keys.authenticate_from_memory(created["key"])
    assert principal is not None
    assert principal.key_id == created["id"]
