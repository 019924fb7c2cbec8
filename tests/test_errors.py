"""The error envelope, request ids and 500 hygiene (api.md §0)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import ADMIN_KEY, make_settings, wait_ready
from vecstore.app import create_app

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
SAFE_ID = st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True)
FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def assert_envelope(response: Any, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"status", "error"}
    assert body["status"] == "error"
    error: dict[str, Any] = body["error"]
    expected_keys = {"code", "type", "message"} | ({"request_id"} if status >= 500 else set())
    assert set(error) == expected_keys
    assert error["code"] == status
    assert isinstance(error["code"], int)
    assert SNAKE.fullmatch(error["type"]), error["type"]
    assert error["type"] == type_
    assert isinstance(error["message"], str)
    assert error["message"].strip()
    return error


@pytest.fixture
def docs(client: TestClient[Litestar], make_collection: Any) -> str:
    make_collection("docs", dim=2)
    r = client.post("/v1/collections/docs/upsert", json={"external_id": "a", "vector": [1, 0]})
    assert r.status_code == 200, r.text
    return "docs"


def new_key(client: TestClient[Litestar], role: str, **body: Any) -> dict[str, str]:
    r = client.post("/v1/admin/keys", json={"name": role, "role": role, **body})
    assert r.status_code == 201, r.text
    return {"x-api-key": r.json()["data"]["key"]}


# -- the envelope --------------------------------------------------------------------------------
Case = Callable[[TestClient[Litestar]], Any]

ERROR_CASES: dict[str, tuple[Case, int, str]] = {
    "bad key role": (
        lambda c: c.post("/v1/admin/keys", json={"name": "k", "role": "root"}),
        400,
        "bad_request",
    ),
    "dimension mismatch": (
        lambda c: c.post("/v1/collections/docs/search", json={"vector": [1, 0, 0]}),
        400,
        "dimension_mismatch",
    ),
    "unknown filter operator": (
        lambda c: c.post(
            "/v1/collections/docs/search",
            json={"vector": [1, 0], "filters": {"a": {"$regex": "x"}}},
        ),
        400,
        "invalid_filter",
    ),
    "bad collection name": (
        lambda c: c.post("/v1/collections", json={"name": "no spaces", "dim": 2}),
        400,
        "invalid_name",
    ),
    "no key": (lambda c: c.get("/v1/collections", headers={"x-api-key": ""}), 401, "unauthorized"),
    "unknown key": (
        lambda c: c.get("/v1/collections", headers={"x-api-key": "vs_nope"}),
        401,
        "unauthorized",
    ),
    "role too low": (
        lambda c: c.delete("/v1/collections/docs", headers=new_key(c, "write")),
        403,
        "forbidden",
    ),
    "missing collection": (
        lambda c: c.get("/v1/collections/nope"),
        404,
        "collection_not_found",
    ),
    "missing record": (
        lambda c: c.get("/v1/collections/docs/vectors/zzz"),
        404,
        "record_not_found",
    ),
    "unknown route": (lambda c: c.get("/v1/nothing-here"), 404, "not_found"),
    "unknown sub-route": (lambda c: c.post("/v1/collections/docs/nothing"), 404, "not_found"),
    "wrong method": (lambda c: c.put("/v1/collections"), 405, "method_not_allowed"),
    "wrong method on a public route": (lambda c: c.delete("/health"), 405, "method_not_allowed"),
    "duplicate collection": (
        lambda c: c.post("/v1/collections", json={"name": "docs", "dim": 2}),
        409,
        "collection_exists",
    ),
    "malformed json": (
        lambda c: c.post(
            "/v1/collections",
            content=b'{"name": "x", "dim": ',
            headers={"content-type": "application/json"},
        ),
        422,
        "invalid_body",
    ),
    "wrong field type": (
        lambda c: c.post("/v1/collections", json={"name": "x", "dim": "two"}),
        422,
        "invalid_body",
    ),
    "missing field": (lambda c: c.post("/v1/collections", json={"dim": 2}), 422, "invalid_body"),
    "body is not an object": (
        lambda c: c.post("/v1/collections/docs/search", json=[1, 2]),
        422,
        "invalid_body",
    ),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_every_error_uses_the_envelope_and_its_code_is_the_http_status(
    client: TestClient[Litestar], docs: str, case: str
) -> None:
    send, status, type_ = ERROR_CASES[case]
    response = send(client)
    assert_envelope(response, status, type_)
    assert response.headers["x-request-id"]


def test_field_errors_name_the_field(client: TestClient[Litestar], docs: str) -> None:
    wrong_type = client.post("/v1/collections", json={"name": "x", "dim": "two"})
    assert "dim" in wrong_type.json()["error"]["message"]
    missing = client.post("/v1/collections", json={"dim": 2})
    assert "name" in missing.json()["error"]["message"]
    mismatch = client.post("/v1/collections/docs/search", json={"vector": [1, 0, 0]})
    assert "2" in mismatch.json()["error"]["message"]
    assert (
        "$regex"
        in client.post(
            "/v1/collections/docs/search", json={"vector": [1, 0], "filters": {"a": {"$regex": 1}}}
        ).json()["error"]["message"]
    )


def test_unknown_route_message_names_the_path(client: TestClient[Litestar]) -> None:
    error = assert_envelope(client.get("/v1/no-such-thing"), 404, "not_found")
    assert "/v1/no-such-thing" in error["message"]


def test_wrong_method_lists_the_allowed_ones(client: TestClient[Litestar]) -> None:
    response = client.put("/v1/collections")
    error = assert_envelope(response, 405, "method_not_allowed")
    assert error["message"].startswith("PUT is not allowed on /v1/collections; use ")
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "POST"} <= allowed
    assert "PUT" not in allowed


def test_rate_limited_error_has_retry_after(client: TestClient[Litestar]) -> None:
    headers = new_key(client, "read", rate_limit_per_minute=1)
    statuses = [client.get("/v1/collections", headers=headers) for _ in range(3)]
    # A minute boundary can reset the window once; two refusals in a row cannot both miss.
    refused = [r for r in statuses if r.status_code == 429]
    assert refused
    assert_envelope(refused[0], 429, "rate_limited")
    assert 1 <= int(refused[0].headers["retry-after"]) <= 60


def test_body_over_the_limit_is_413(data_dir: Path) -> None:
    app = create_app(make_settings(data_dir, max_body_bytes=2048))
    with TestClient(app=app, raise_server_exceptions=False) as c:
        wait_ready(c)
        c.headers["x-api-key"] = ADMIN_KEY
        assert c.post("/v1/collections", json={"name": "big", "dim": 2}).status_code == 201
        body = {"external_id": "a", "vector": [1, 0], "content": "x" * 4096}
        response = c.post("/v1/collections/big/upsert", json=body)
        error = assert_envelope(response, 413, "payload_too_large")
        assert "max_body_bytes" in error["message"]
        assert response.headers["x-request-id"]
        assert c.get("/v1/collections/big").json()["data"]["vector_count"] == 0


# -- request ids ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/health", 200),
        ("GET", "/ready", 200),
        ("GET", "/v1/collections", 200),
        ("GET", "/v1/collections/docs/export", 200),
        ("GET", "/metrics", 200),
        ("GET", "/schema/openapi.json", 200),
        ("GET", "/schema/swagger", 200),
        ("GET", "/docs", 302),
        ("GET", "/v1/collections/nope", 404),
        ("GET", "/no/such/route", 404),
        ("PUT", "/v1/collections", 405),
        ("POST", "/v1/collections", 422),
    ],
)
def test_every_response_carries_a_fresh_request_id(
    client: TestClient[Litestar], docs: str, method: str, path: str, status: int
) -> None:
    ids = set()
    for _ in range(2):
        response = client.request(method, path, follow_redirects=False)
        assert response.status_code == status, response.text
        assert GENERATED_ID.fullmatch(response.headers["x-request-id"])
        ids.add(response.headers["x-request-id"])
    assert len(ids) == 2


def test_unauthorized_response_carries_a_request_id(client: TestClient[Litestar]) -> None:
    response = client.get("/v1/collections", headers={"x-api-key": "vs_nope"})
    assert response.status_code == 401
    assert GENERATED_ID.fullmatch(response.headers["x-request-id"])


@pytest.mark.parametrize("path", ["/v1/collections", "/no/such/route", "/health"])
def test_a_safe_client_request_id_is_echoed(client: TestClient[Litestar], path: str) -> None:
    response = client.get(path, headers={"x-request-id": "trace-42.a:b_C"})
    assert response.headers["x-request-id"] == "trace-42.a:b_C"


@FUZZ
@given(rid=SAFE_ID)
def test_any_safe_request_id_is_echoed(client: TestClient[Litestar], rid: str) -> None:
    assert client.get("/health", headers={"x-request-id": rid}).headers["x-request-id"] == rid


@FUZZ
@given(
    rid=st.one_of(
        st.from_regex(r"[A-Za-z0-9]{129,600}", fullmatch=True),
        st.tuples(SAFE_ID, st.sampled_from(" /\\\"'<>{}%;,=@!?\t"), SAFE_ID).map("".join),
    )
)
def test_an_unsafe_request_id_is_replaced(client: TestClient[Litestar], rid: str) -> None:
    response = client.get("/v1/collections", headers={"x-request-id": rid})
    assert response.status_code == 200
    assert GENERATED_ID.fullmatch(response.headers["x-request-id"])


def test_a_500_character_request_id_is_replaced(client: TestClient[Litestar]) -> None:
    response = client.get("/v1/nope", headers={"x-request-id": "a" * 500})
    assert GENERATED_ID.fullmatch(response.headers["x-request-id"])


# -- 500s ----------------------------------------------------------------------------------------
class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def error_log() -> Iterator[ListHandler]:
    """Capture the error logger directly (it may not propagate once logging is configured)."""
    logger = logging.getLogger("vecstore.errors")
    handler = ListHandler()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _boom(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("secret-detail /var/lib/vecstore/password=hunter2")


SERVER_FAILURES: dict[str, tuple[str, str, str, dict[str, Any] | None]] = {
    # case: (service attribute path, method, url, json body)
    "sync list": ("collections.list", "GET", "/v1/collections", None),
    "sync search": ("search.run", "POST", "/v1/collections/docs/search", {"vector": [1, 0]}),
    "async metrics": ("metrics.render", "GET", "/metrics", None),
    "key admin": ("keys.list", "GET", "/v1/admin/keys", None),
}


@pytest.mark.parametrize("case", sorted(SERVER_FAILURES))
def test_a_500_never_leaks_the_exception_and_carries_the_request_id(
    client: TestClient[Litestar],
    app: Litestar,
    docs: str,
    monkeypatch: pytest.MonkeyPatch,
    error_log: ListHandler,
    case: str,
) -> None:
    target, method, path, body = SERVER_FAILURES[case]
    service_name, attr = target.split(".")
    monkeypatch.setattr(getattr(app.state.services, service_name), attr, _boom)
    kwargs: dict[str, Any] = {"json": body} if body is not None else {}
    response = client.request(method, path, **kwargs)
    error = assert_envelope(response, 500, "internal_error")
    for leaked in ("secret-detail", "hunter2", "/var/lib", "RuntimeError", "Traceback"):
        assert leaked not in response.text
    rid = response.headers["x-request-id"]
    assert GENERATED_ID.fullmatch(rid)
    assert error["request_id"] == rid
    assert rid in error["message"]
    # The same id is in the server log, next to the real cause.
    logged = [r for r in error_log.records if rid in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].levelno == logging.ERROR
    assert logged[0].exc_info is not None
    assert "secret-detail" in str(logged[0].exc_info[1])


def test_a_500_uses_the_client_request_id(
    client: TestClient[Litestar], app: Litestar, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.state.services.collections, "list", _boom)
    response = client.get("/v1/collections", headers={"x-request-id": "support-ticket-7"})
    error = assert_envelope(response, 500, "internal_error")
    assert response.headers["x-request-id"] == "support-ticket-7"
    assert error["request_id"] == "support-ticket-7"


def test_the_server_keeps_serving_after_a_500(
    client: TestClient[Litestar], app: Litestar, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.state.services.collections, "list", _boom)
    assert client.get("/v1/collections").status_code == 500
    monkeypatch.undo()
    assert client.get("/v1/collections").status_code == 200
