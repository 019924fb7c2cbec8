"""The lane for the hot reads (``api/hot_paths.py``): the same answers as Litestar's routing,
byte for byte, for every kind of request it may see; a use of a key is counted once; and
anything it does not take is routed as usual."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import ADMIN_KEY, flush_indexes
from tests.oracles import metric_value
from vecstore.api.hot_paths import HotPaths
from vecstore.api.state import services_of

DIM = 4
SEARCH = "/v1/collections/docs/search"
RERANK = "/v1/collections/docs/rerank"


def _lane_of(app: Litestar) -> HotPaths:
    lane: HotPaths = app.state.hot_paths
    return lane


def _lane(client: TestClient[Litestar]) -> HotPaths:
    return _lane_of(client.app)


def _b64(vector: list[float]) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


@pytest.fixture
def loaded(
    client: TestClient[Litestar], make_collection: Callable[..., dict[str, Any]]
) -> TestClient[Litestar]:
    make_collection("docs", dim=DIM, index={"type": "hnsw", "m": 8, "ef_construction": 32})
    rng = np.random.default_rng(7)
    items = [
        {
            "external_id": f"d{i}",
            "vector": rng.standard_normal(DIM).round(3).tolist(),
            "metadata": {"bucket": i % 5, "tag": "x" if i % 2 else "y"},
            "content": f"text {i}",
        }
        for i in range(60)
    ]
    assert client.post("/v1/collections/docs/bulk_upsert", json={"items": items}).is_success
    flush_indexes(client.app)
    return client


def _strip_timing(body: bytes) -> Any:
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    data = doc.get("data") if isinstance(doc, dict) else None
    if isinstance(data, dict) and "timing_ms" in data:
        data["timing_ms"] = sorted(data["timing_ms"])  # the keys, not the times
    return doc


def _both_ways(
    client: TestClient[Litestar],
    path: str,
    content: bytes,
    headers: dict[str, str],
    *,
    before: Callable[[], None] | None = None,
    state: Callable[[], Any] | None = None,
) -> tuple[Any, Any]:
    """The same request through the lane and routed. For writes, ``before`` resets the starting
    state and ``state`` reads what the write left, which is compared too."""
    lane = _lane(client)
    answers = []
    for enabled in (True, False):
        if before is not None:
            before()
        lane.enabled = enabled
        try:
            r = client.post(path, content=content, headers=headers)
        finally:
            lane.enabled = True
        assert int(r.headers["content-length"]) == len(r.content)
        # Timings differ from call to call, and with them the length.
        varying = {"x-request-id"} | ({"content-length"} if b'"timing_ms"' in r.content else set())
        kept = {k: v for k, v in r.headers.items() if k not in varying}
        after = state() if state is not None else None
        answers.append((r.status_code, kept, _strip_timing(r.content), after))
    return answers[0], answers[1]


_Q = [0.1, -0.2, 0.3, 0.4]
_CASES: list[tuple[str, str, Any]] = [
    ("search", SEARCH, {"vector": _Q}),
    ("search base64 + knobs", SEARCH, {"vector": _b64(_Q), "k": 7, "ef_search": 16}),
    (
        "search offset + threshold",
        SEARCH,
        {"vector": _Q, "k": 3, "offset": 2, "score_threshold": 0},
    ),
    (
        "search filter + count",
        SEARCH,
        {"vector": _Q, "filters": {"bucket": {"$lt": 2}}, "include_count": True},
    ),
    (
        "search vectors + content",
        SEARCH,
        {"vector": _Q, "k": 2, "include_vectors": True, "include_content": True},
    ),
    ("search exact + timing", SEARCH, {"vector": _Q, "exact": True, "include_timing": True}),
    ("search lax types", SEARCH, {"vector": _Q, "k": "3", "include_vectors": 0}),
    ("search nprobe", SEARCH, {"vector": _Q, "nprobe": 4}),
    ("search wrong dimension", SEARCH, {"vector": [1, 2]}),
    ("search bad base64", SEARCH, {"vector": "@@@"}),
    ("search no vector nor text", SEARCH, {"k": 3}),
    ("search text without a model", SEARCH, {"text": "hello"}),
    ("search k zero", SEARCH, {"vector": _Q, "k": 0}),
    ("search k not a number", SEARCH, {"vector": _Q, "k": "many"}),
    ("search unknown field", SEARCH, {"vector": _Q, "colour": "red"}),
    ("search bad filter", SEARCH, {"vector": _Q, "filters": {"bucket": {"$near": 1}}}),
    ("search missing collection", "/v1/collections/nope/search", {"vector": _Q}),
    ("search invalid name", "/v1/collections/-bad/search", {"vector": _Q}),
    ("search trailing slash", SEARCH + "/", {"vector": _Q}),
    ("rerank", RERANK, {"vector": _Q, "candidates": ["d1", "d2", "d3", "zz"], "top_k": 2}),
    (
        "rerank base64 + vectors",
        RERANK,
        {"vector": _b64(_Q), "candidates": ["d4", "d5"], "include_vectors": True},
    ),
    ("rerank no candidates", RERANK, {"vector": _Q}),
    ("rerank timing", RERANK, {"vector": _Q, "candidates": ["d1"], "include_timing": True}),
]
_RAW_BODIES: list[tuple[str, bytes]] = [
    ("not JSON", b"{vector:"),
    ("empty body", b""),
    ("JSON null", b"null"),
    ("a list", b"[1, 2]"),
    ("deep JSON", b'{"vector": [1, 2, 3, 4], "filters": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("duplicate keys", b'{"vector": [9, 9, 9, 9], "vector": [0.1, -0.2, 0.3, 0.4], "k": 2}'),
]


@pytest.mark.parametrize(
    ("path", "payload"), [(p, b) for _, p, b in _CASES], ids=[c[0] for c in _CASES]
)
def test_the_lane_answers_exactly_like_the_routed_request(
    loaded: TestClient[Litestar], path: str, payload: Any
) -> None:
    lane, routed = _both_ways(loaded, path, json.dumps(payload).encode(), {})
    assert lane == routed


@pytest.mark.parametrize("body", [b for _, b in _RAW_BODIES], ids=[n for n, _ in _RAW_BODIES])
def test_bodies_the_lane_cannot_decode_get_the_routed_answer(
    loaded: TestClient[Litestar], body: bytes
) -> None:
    for path in (SEARCH, RERANK):
        lane, routed = _both_ways(loaded, path, body, {"content-type": "application/json"})
        assert lane == routed


def test_keys_are_checked_the_same_way(loaded: TestClient[Litestar]) -> None:
    created = loaded.post(
        "/v1/admin/keys", json={"name": "other", "role": "read", "collections": ["other-*"]}
    ).json()["data"]
    # A first use reads the key from the database (routed); after it the lane may answer.
    assert loaded.get("/v1/collections", headers={"x-api-key": created["key"]}).is_success
    body = json.dumps({"vector": _Q}).encode()
    for headers in (
        {"x-api-key": ""},
        {"x-api-key": "not-a-key"},
        {"x-api-key": created["key"]},  # out of scope: the collection reads as absent
        {"authorization": f"Bearer {ADMIN_KEY}"},
        {"authorization": "Basic abc"},
    ):
        lane, routed = _both_ways(loaded, SEARCH, body, headers)
        assert lane == routed, headers


def test_a_request_counts_once_against_the_key_rate_limit(loaded: TestClient[Litestar]) -> None:
    created = loaded.post(
        "/v1/admin/keys", json={"name": "slow", "role": "read", "rate_limit_per_minute": 2}
    ).json()["data"]
    headers = {"x-api-key": created["key"]}
    answers = [loaded.post(SEARCH, json={"vector": _Q}, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["error"]["type"] == "rate_limited"
    assert int(answers[2].headers["retry-after"]) >= 1
    # A body the lane hands on after reading it must not be counted twice either.
    created = loaded.post(
        "/v1/admin/keys", json={"name": "slow2", "role": "read", "rate_limit_per_minute": 2}
    ).json()["data"]
    headers = {"x-api-key": created["key"]}
    codes = [
        loaded.post(SEARCH, content=b"{bad", headers=headers).status_code,
        loaded.post(SEARCH, json={"vector": _Q}, headers=headers).status_code,
        loaded.post(SEARCH, json={"vector": _Q}, headers=headers).status_code,
    ]
    assert codes == [422, 200, 429]


def test_a_failure_in_the_lane_is_the_usual_500_without_its_text(
    loaded: TestClient[Litestar], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail of the failure")

    monkeypatch.setattr(services_of(loaded.app.state).search, "run", broken)
    r = loaded.post(SEARCH, json={"vector": _Q})
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["type"] == "internal_error"
    assert error["request_id"] == r.headers["x-request-id"]
    assert "secret" not in r.text


def test_lane_requests_are_counted_under_the_route_template(loaded: TestClient[Litestar]) -> None:
    labels = {"method": "POST", "route": "/v1/collections/{name}/rerank", "status": "200"}
    before = metric_value(loaded, "vecstore_http_requests_total", **labels)
    assert loaded.post(RERANK, json={"vector": _Q, "candidates": ["d1"]}).is_success
    assert metric_value(loaded, "vecstore_http_requests_total", **labels) == before + 1


def test_an_oversized_body_is_the_routed_413(data_dir: Any) -> None:
    from tests.conftest import make_settings, wait_ready
    from vecstore.app import create_app

    app = create_app(make_settings(data_dir, max_body_bytes=200))
    with TestClient(app=app, raise_server_exceptions=False) as c:
        wait_ready(c)
        c.headers["x-api-key"] = ADMIN_KEY
        assert c.post("/v1/collections", json={"name": "docs", "dim": DIM}).status_code == 201
        body = json.dumps({"vector": _Q, "filters": {"tag": {"$in": ["x" * 50] * 5}}}).encode()
        lane, routed = _both_ways(c, SEARCH, body, {})
        assert lane == routed
        assert lane[0] == 413
        # Without a declared length, the limit is found while reading; Litestar reads it again.
        status, answer = _streamed(c, SEARCH, [body[:150], body[150:]])
        assert (status, json.loads(answer)) == (413, routed[2])  # routed[2]: decoded JSON


def _streamed(client: TestClient[Litestar], path: str, chunks: list[bytes]) -> tuple[int, bytes]:
    """POST ``chunks`` as separate ASGI messages (no content-length): a chunked upload."""
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"x-api-key", ADMIN_KEY.encode())],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
        "state": {},
    }

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    client.blocking_portal.call(client.app, scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_a_body_in_several_chunks_is_joined(
    loaded: TestClient[Litestar], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = json.dumps({"vector": _Q, "k": 3}).encode()
    whole = loaded.post(SEARCH, content=body)
    lane = _lane(loaded)
    handed_on: list[str] = []
    routed = lane.app

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        handed_on.append(scope["path"])
        await routed(scope, receive, send)

    monkeypatch.setattr(lane, "app", spy)
    assert _streamed(loaded, SEARCH, [body[:7], body[7:20], body[20:]]) == (200, whole.content)
    assert handed_on == []  # the lane answered it itself


def test_the_setting_turns_the_lane_off(data_dir: Any) -> None:
    from tests.conftest import make_settings
    from vecstore.app import create_app

    app = create_app(make_settings(data_dir, fast_path=False))
    assert _lane_of(app).enabled is False
    app = create_app(make_settings(data_dir, cors_allow_origins="https://app.example.com"))
    assert _lane_of(app).enabled is False  # CORS headers come from Litestar's middleware


BULK = "/v1/collections/w/bulk_upsert"


def _item(i: int, **extra: Any) -> dict[str, Any]:
    return {"external_id": f"n{i}", "vector": [float(i + 1), 0.5, -0.25, 2.0], **extra}


_WRITE_CASES: list[tuple[str, str, Any]] = [
    ("floats", BULK, {"items": [_item(i) for i in range(3)]}),
    ("base64", BULK, {"items": [{"external_id": "b", "vector": _b64([1, 2, 3, 4])}]}),
    (
        "metadata, content, timing",
        BULK,
        {
            "items": [_item(1, metadata={"a": {"b": [1, "x"]}}, content="hello")],
            "include_timing": True,
        },
    ),
    ("an update", BULK, {"items": [_item(0, external_id="old", metadata={"v": 2})]}),
    ("the same id twice", BULK, {"items": [_item(1), _item(1, metadata={"v": 2})]}),
    ("lax types", BULK, {"items": [_item(1)], "include_timing": "true"}),
    ("wrong dimension", BULK, {"items": [_item(0), {"external_id": "x", "vector": [1, 2]}]}),
    ("bad base64", BULK, {"items": [{"external_id": "x", "vector": "@@@@"}]}),
    ("zero vector", BULK, {"items": [{"external_id": "x", "vector": [0, 0, 0, 0]}]}),
    ("no items", BULK, {"items": []}),
    ("no external id", BULK, {"items": [{"vector": [1, 2, 3, 4]}]}),
    ("text without a model", BULK, {"items": [{"external_id": "t", "text": "hello"}]}),
    ("metadata not an object", BULK, {"items": [_item(1, metadata=[1, 2])]}),
    ("metadata too deep", BULK, {"items": [_item(1, metadata={"a": [[[[[[[[[1]]]]]]]]]})]}),
    ("huge metadata number", BULK, {"items": [_item(1, metadata={"n": 2**60})]}),
    ("unknown field", BULK, {"items": [_item(1, colour="red")]}),
    ("too many items", BULK, {"items": [_item(i) for i in range(1001)]}),
    ("missing collection", "/v1/collections/nope/bulk_upsert", {"items": [_item(1)]}),
    ("invalid name", "/v1/collections/-bad/bulk_upsert", {"items": [_item(1)]}),
]


def _fresh_w(client: TestClient[Litestar]) -> None:
    client.delete("/v1/collections/w")
    assert client.post("/v1/collections", json={"name": "w", "dim": DIM}).status_code == 201
    seeded = {"items": [{"external_id": "old", "vector": [1, 1, 1, 1], "metadata": {"v": 1}}]}
    assert client.post(BULK, json=seeded, headers={"x-api-key": ADMIN_KEY}).is_success


def _state_of_w(client: TestClient[Litestar]) -> Any:
    r = client.post("/v1/collections/w/scroll", json={"limit": 2000, "include_vectors": True})
    return r.json()


def _write_both_ways(
    client: TestClient[Litestar], path: str, content: bytes, headers: dict[str, str]
) -> tuple[Any, Any]:
    """The same write into the same starting state, through the lane and routed: the answers
    and the collection's contents afterwards."""
    return _both_ways(
        client,
        path,
        content,
        headers,
        before=lambda: _fresh_w(client),
        state=lambda: _state_of_w(client),
    )


@pytest.mark.parametrize(
    ("path", "payload"), [(p, b) for _, p, b in _WRITE_CASES], ids=[c[0] for c in _WRITE_CASES]
)
def test_bulk_upsert_through_the_lane_answers_and_writes_like_the_routed_request(
    client: TestClient[Litestar], path: str, payload: Any
) -> None:
    lane, routed = _write_both_ways(client, path, json.dumps(payload).encode(), {})
    assert lane == routed


@pytest.mark.parametrize("body", [b for _, b in _RAW_BODIES], ids=[n for n, _ in _RAW_BODIES])
def test_bulk_upsert_bodies_the_lane_cannot_decode_get_the_routed_answer(
    client: TestClient[Litestar], body: bytes
) -> None:
    lane, routed = _write_both_ways(client, BULK, body, {"content-type": "application/json"})
    assert lane == routed


def test_bulk_upsert_keys_are_checked_the_same_way(client: TestClient[Litestar]) -> None:
    keys = [
        client.post("/v1/admin/keys", json={"name": n, "role": role, "collections": scope}).json()[
            "data"
        ]["key"]
        for n, role, scope in [("reader", "read", None), ("elsewhere", "write", ["other-*"])]
    ]
    for key in keys:  # a first use reads the key from the database (routed); then it is cached
        assert client.get("/v1/collections", headers={"x-api-key": key}).is_success
    body = json.dumps({"items": [_item(1)]}).encode()
    for headers in (
        {"x-api-key": ""},
        {"x-api-key": "not-a-key"},
        {"x-api-key": keys[0]},  # a read key may not write
        {"x-api-key": keys[1]},  # out of scope: 403
        {"authorization": f"Bearer {ADMIN_KEY}"},
    ):
        lane, routed = _write_both_ways(client, BULK, body, headers)
        assert lane == routed, headers
    assert lane[0] == 200


def test_bulk_upsert_takes_the_lane(
    client: TestClient[Litestar], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fresh_w(client)
    lane = _lane(client)
    handed_on: list[str] = []
    routed = lane.app

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        handed_on.append(scope["path"])
        await routed(scope, receive, send)

    monkeypatch.setattr(lane, "app", spy)
    assert client.post(BULK, json={"items": [_item(1)]}).is_success
    assert client.post(BULK, json={"items": [{"external_id": "x"}]}).status_code == 400
    assert handed_on == []
    assert client.post(BULK, content=b"{bad").status_code == 422
    assert handed_on == [BULK]
