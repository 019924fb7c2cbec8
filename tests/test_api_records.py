"""HTTP contract of records: upserts, reads, deletes, scroll, count, export and import (§2)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import ADMIN_KEY, flush_indexes, make_settings, wait_ready
from vecstore.app import create_app

MakeCollection = Callable[..., dict[str, Any]]
Client = TestClient[Litestar]
HYPOTHESIS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# -- helpers -----------------------------------------------------------------------------------
def assert_error(response: httpx.Response, status: int, type_: str) -> str:
    """The error envelope: HTTP status == error.code, a stable type, a human message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"status", "error"}
    assert body["status"] == "error"
    error = body["error"]
    assert error["code"] == status
    assert error["type"] == type_
    message: str = error["message"]
    assert isinstance(message, str)
    assert message
    assert response.headers["x-request-id"]
    return message


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"status", "data"}
    assert body["status"] == "success"
    return body["data"]


def f32(values: list[float]) -> list[float]:
    """What a float32 store must return for ``values``: each rounded to float32, exactly."""
    return [float(x) for x in np.asarray(values, dtype=np.float32)]


def enc(external_id: str) -> str:
    """Percent-encode an id for a path segment (dots too, so '..' is never a dot-segment)."""
    return quote(external_id, safe="").replace(".", "%2E")


def upsert(client: Client, c: str, eid: str, vector: list[float], **extra: Any) -> dict[str, Any]:
    body = {"external_id": eid, "vector": vector, **extra}
    data: dict[str, Any] = ok(client.post(f"/v1/collections/{c}/upsert", json=body))
    return data


def get_record(client: Client, c: str, eid: str, **params: Any) -> dict[str, Any]:
    data: dict[str, Any] = ok(client.get(f"/v1/collections/{c}/vectors/{enc(eid)}", params=params))
    return data


def count(client: Client, c: str, filters: dict[str, Any] | None = None) -> int:
    body = {} if filters is None else {"filters": filters}
    n: int = ok(client.post(f"/v1/collections/{c}/count", json=body))["count"]
    return n


def search_ids(
    client: Client, c: str, vector: list[float], k: int = 100, **extra: Any
) -> list[str]:
    body = {"vector": vector, "k": k, **extra}
    hits = ok(client.post(f"/v1/collections/{c}/search", json=body))["results"]
    return [h["external_id"] for h in hits]


def export_bytes(client: Client, c: str) -> bytes:
    r = client.get(f"/v1/collections/{c}/export")
    assert r.status_code == 200, r.text
    return r.content


def scroll_all(client: Client, c: str, limit: int, **extra: Any) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    for _ in range(10_000):
        body = {"limit": limit, **extra} | ({"cursor": cursor} if cursor else {})
        data = ok(client.post(f"/v1/collections/{c}/scroll", json=body))
        assert set(data) == {"vectors", "next_cursor"}
        pages.append(data["vectors"])
        cursor = data["next_cursor"]
        if cursor is None:
            return pages
        assert isinstance(cursor, str)
        assert cursor
    raise AssertionError("scroll never ended")


@pytest.fixture
def coll(make_collection: MakeCollection) -> str:
    make_collection("c", dim=4)
    return "c"


_ids = itertools.count()


def fresh_id(prefix: str = "h") -> str:
    return f"{prefix}{next(_ids)}"


# -- upsert ------------------------------------------------------------------------------------
def test_upsert_reports_inserted_then_updated(client: Client, coll: str) -> None:
    r = client.post("/v1/collections/c/upsert", json={"external_id": "a", "vector": [1, 2, 3, 4]})
    assert r.json() == {"status": "success", "data": {"external_id": "a", "status": "inserted"}}
    assert r.status_code == 200
    r = client.post("/v1/collections/c/upsert", json={"external_id": "a", "vector": [4, 3, 2, 1]})
    assert r.json() == {"status": "success", "data": {"external_id": "a", "status": "updated"}}
    assert count(client, coll) == 1
    assert get_record(client, coll, "a")["vector"] == [4.0, 3.0, 2.0, 1.0]


def test_upsert_stores_metadata_and_content(client: Client, coll: str) -> None:
    meta = {
        "s": "x",
        "n": 1.5,
        "i": -3,
        "b": True,
        "z": None,
        "l": [1, "two"],
        "o": {"p": {"q": 1}},
    }
    upsert(client, coll, "a", [1, 0, 0, 0], metadata=meta, content="some text ✓")
    assert get_record(client, coll, "a") == {
        "external_id": "a",
        "vector": [1.0, 0.0, 0.0, 0.0],
        "metadata": meta,
        "content": "some text ✓",
    }
    upsert(client, coll, "bare", [0, 1, 0, 0])
    assert get_record(client, coll, "bare") == {
        "external_id": "bare",
        "vector": [0.0, 1.0, 0.0, 0.0],
        "metadata": {},
        "content": None,
    }


def test_upsert_field_semantics(client: Client, coll: str) -> None:
    upsert(client, coll, "a", [1, 0, 0, 0], metadata={"k": 1, "j": 2}, content="first")
    # absent metadata and content: both kept, vector replaced
    upsert(client, coll, "a", [0, 1, 0, 0])
    assert get_record(client, coll, "a") == {
        "external_id": "a",
        "vector": [0.0, 1.0, 0.0, 0.0],
        "metadata": {"k": 1, "j": 2},
        "content": "first",
    }
    # present metadata replaces (no merge); content still kept
    upsert(client, coll, "a", [0, 0, 1, 0], metadata={"m": 3})
    rec = get_record(client, coll, "a")
    assert rec["metadata"] == {"m": 3}
    assert rec["content"] == "first"
    # present content replaces; metadata kept
    upsert(client, coll, "a", [0, 0, 1, 0], content="second")
    rec = get_record(client, coll, "a")
    assert (rec["metadata"], rec["content"]) == ({"m": 3}, "second")
    # {} clears metadata; null clears content
    upsert(client, coll, "a", [0, 0, 0, 1], metadata={}, content=None)
    assert get_record(client, coll, "a") == {
        "external_id": "a",
        "vector": [0.0, 0.0, 0.0, 1.0],
        "metadata": {},
        "content": None,
    }
    # a cleared record does not resurrect the old values on a later bare update
    upsert(client, coll, "a", [1, 1, 0, 0])
    rec = get_record(client, coll, "a")
    assert (rec["metadata"], rec["content"]) == ({}, None)


_ABSENT = object()
metadata_option = st.sampled_from([_ABSENT, {}]) | st.dictionaries(
    st.text(min_size=1, max_size=5), st.integers(-5, 5) | st.text(max_size=5), max_size=3
)
content_option = st.sampled_from([_ABSENT, None]) | st.text(max_size=20)


@HYPOTHESIS
@given(
    steps=st.lists(
        st.tuples(metadata_option, content_option, st.booleans()), min_size=1, max_size=5
    )
)
def test_upsert_semantics_match_a_model(
    client: Client, coll: str, steps: list[tuple[Any, Any, bool]]
) -> None:
    """Any sequence of upserts (single or bulk) leaves exactly what the documented rules say."""
    eid = fresh_id()
    meta: dict[str, Any] = {}
    content: str | None = None
    for i, (m, cont, bulk) in enumerate(steps):
        item: dict[str, Any] = {"external_id": eid, "vector": [1, i + 1, 0, 0]}
        if m is not _ABSENT:
            item["metadata"] = m
            meta = m
        if cont is not _ABSENT:
            item["content"] = cont
            content = cont
        if bulk:
            data = ok(client.post("/v1/collections/c/bulk_upsert", json={"items": [item]}))
            status = data["results"][0]["status"]
        else:
            status = ok(client.post("/v1/collections/c/upsert", json=item))["status"]
        assert status == ("inserted" if i == 0 else "updated")
        assert get_record(client, coll, eid) == {
            "external_id": eid,
            "vector": [1.0, float(i + 1), 0.0, 0.0],
            "metadata": meta,
            "content": content,
        }


def test_vector_with_text_stores_vector_and_text_as_content(client: Client, coll: str) -> None:
    r = client.post(
        "/v1/collections/c/upsert",
        json={"external_id": "a", "vector": [1, 2, 3, 4], "text": "the words"},
    )
    assert ok(r)["status"] == "inserted"
    rec = get_record(client, coll, "a")
    assert rec["vector"] == [1.0, 2.0, 3.0, 4.0]
    assert rec["content"] == "the words"


def test_text_without_a_model_is_embedding_unavailable(client: Client, coll: str) -> None:
    r = client.post("/v1/collections/c/upsert", json={"external_id": "a", "text": "hello"})
    message = assert_error(r, 400, "embedding_unavailable")
    assert "vector" in message
    assert count(client, coll) == 0


def test_upsert_without_vector_or_text_is_400(client: Client, coll: str) -> None:
    r = client.post("/v1/collections/c/upsert", json={"external_id": "a", "metadata": {"x": 1}})
    message = assert_error(r, 400, "bad_request")
    assert "vector" in message
    assert "text" in message
    assert count(client, coll) == 0


@pytest.mark.parametrize("length", [0, 1, 3, 5, 100])
def test_wrong_dimension_is_dimension_mismatch(client: Client, coll: str, length: int) -> None:
    r = client.post("/v1/collections/c/upsert", json={"external_id": "a", "vector": [0.5] * length})
    message = assert_error(r, 400, "dimension_mismatch")
    assert "expects 4" in message
    assert f"has {length} " in message
    assert count(client, coll) == 0


@pytest.mark.parametrize(
    ("vector", "mentions"),
    [([1e39, 0, 0, 0], "Infinity"), ([0, -1e39, 1, 1], "Infinity"), ([0, 0, 0, 0], "zeros")],
)
def test_invalid_vectors_are_rejected(
    client: Client, coll: str, vector: list[float], mentions: str
) -> None:
    r = client.post("/v1/collections/c/upsert", json={"external_id": "a", "vector": vector})
    assert mentions in assert_error(r, 400, "invalid_vector")
    assert count(client, coll) == 0


def test_zero_vector_is_fine_outside_cosine(
    client: Client, make_collection: MakeCollection
) -> None:
    make_collection("l2", dim=2, distance_metric="l2")
    make_collection("ip", dim=2, distance_metric="ip")
    for c in ("l2", "ip"):
        assert upsert(client, c, "z", [0, 0])["status"] == "inserted"
        assert get_record(client, c, "z")["vector"] == [0.0, 0.0]


@pytest.mark.parametrize(
    "external_id",
    ["x", "a" * 512, "é" * 256, "☃" * 170, "😀" * 128, " ", "\t\n", "a/b", "{}", "null"],
)
def test_external_ids_up_to_512_utf8_bytes_are_accepted(
    client: Client, coll: str, external_id: str
) -> None:
    assert upsert(client, coll, external_id, [1, 0, 0, 0]) == {
        "external_id": external_id,
        "status": "inserted",
    }
    fetched = ok(client.post("/v1/collections/c/vectors/fetch", json={"ids": [external_id]}))
    assert [v["external_id"] for v in fetched["vectors"]] == [external_id]


@pytest.mark.parametrize("external_id", ["", "a" * 513, "é" * 256 + "a", "😀" * 129])
def test_external_ids_outside_1_to_512_bytes_are_rejected(
    client: Client, coll: str, external_id: str
) -> None:
    r = client.post(
        "/v1/collections/c/upsert", json={"external_id": external_id, "vector": [1, 0, 0, 0]}
    )
    message = assert_error(r, 400, "invalid_external_id")
    assert "512" in message
    assert count(client, coll) == 0


def test_oversize_metadata_is_rejected(client: Client, coll: str) -> None:
    big = {"blob": "x" * (64 * 1024)}
    r = client.post(
        "/v1/collections/c/upsert",
        json={"external_id": "a", "vector": [1, 0, 0, 0], "metadata": big},
    )
    message = assert_error(r, 400, "limit_exceeded")
    assert "metadata" in message
    assert "65536" in message
    assert count(client, coll) == 0
    # just under the limit is fine: {"blob":"…"} is 11 bytes of JSON around the string
    fits = {"blob": "x" * (64 * 1024 - 11)}
    assert upsert(client, coll, "a", [1, 0, 0, 0], metadata=fits)["status"] == "inserted"
    assert get_record(client, coll, "a")["metadata"] == fits


@pytest.mark.parametrize(
    "body",
    [
        {"vector": [1, 0, 0, 0]},
        {"external_id": 5, "vector": [1, 0, 0, 0]},
        {"external_id": "a", "vector": [1, "x", 0, 0]},
        {"external_id": "a", "vector": [1, 0, 0, 0], "metadata": [1, 2]},
        {"external_id": "a", "vector": [1, 0, 0, 0], "metadata": "m"},
        {"external_id": "a", "vector": [1, 0, 0, 0], "content": 7},
        [],
    ],
)
def test_malformed_upsert_body_is_422(client: Client, coll: str, body: Any) -> None:
    assert_error(client.post("/v1/collections/c/upsert", json=body), 422, "invalid_body")
    assert count(client, coll) == 0


UNPARSEABLE = [b"{not json", b'{"external_id": "a",', b"\xff\xfe", b"[1, 2", b""]
JSON_ROUTES = [
    "upsert",
    "bulk_upsert",
    "vectors/fetch",
    "delete_batch",
    "delete_by_filter",
    "scroll",
    "count",
]


def test_unparseable_json_is_422(client: Client, coll: str) -> None:
    for route in JSON_ROUTES:
        for raw in UNPARSEABLE:
            if route == "count" and raw == b"":
                continue  # count's body is optional
            r = client.post(
                f"/v1/collections/c/{route}",
                content=raw,
                headers={"content-type": "application/json"},
            )
            assert_error(r, 422, "invalid_body")
    assert count(client, coll) == 0


def test_include_timing_on_writes(client: Client, coll: str) -> None:
    data = upsert(client, coll, "a", [1, 0, 0, 0], include_timing=True)
    assert set(data) == {"external_id", "status", "timing_ms"}
    timing = data["timing_ms"]
    assert set(timing) == {"embedding_ms", "storage_ms", "total_ms"}
    assert all(isinstance(v, float) and v >= 0 for v in timing.values())
    assert timing["embedding_ms"] == 0
    assert timing["total_ms"] >= timing["storage_ms"]

    items = [{"external_id": f"b{i}", "vector": [1, i, 0, 0]} for i in range(3)]
    data = ok(
        client.post("/v1/collections/c/bulk_upsert", json={"items": items, "include_timing": True})
    )
    assert set(data) == {"results", "inserted", "updated", "timing_ms"}
    assert set(data["timing_ms"]) == {"embedding_ms", "storage_ms", "total_ms"}
    assert data["timing_ms"]["embedding_ms"] == 0
    assert all(isinstance(v, float) and v >= 0 for v in data["timing_ms"].values())

    assert "timing_ms" not in upsert(client, coll, "c", [1, 0, 0, 0], include_timing=False)
    assert "timing_ms" not in ok(
        client.post("/v1/collections/c/bulk_upsert", json={"items": items})
    )


# -- bulk upsert -------------------------------------------------------------------------------
def test_bulk_upsert_reports_each_status_in_order(client: Client, coll: str) -> None:
    upsert(client, coll, "b", [1, 0, 0, 0], metadata={"old": True})
    items = [
        {"external_id": "a", "vector": [1, 0, 0, 0], "metadata": {"i": 0}},
        {"external_id": "b", "vector": [0, 1, 0, 0]},
        {"external_id": "c", "vector": [0, 0, 1, 0], "content": "see"},
    ]
    data = ok(client.post("/v1/collections/c/bulk_upsert", json={"items": items}))
    assert data == {
        "results": [
            {"external_id": "a", "status": "inserted"},
            {"external_id": "b", "status": "updated"},
            {"external_id": "c", "status": "inserted"},
        ],
        "inserted": 2,
        "updated": 1,
    }
    assert get_record(client, coll, "b") == {
        "external_id": "b",
        "vector": [0.0, 1.0, 0.0, 0.0],
        "metadata": {"old": True},
        "content": None,
    }
    assert get_record(client, coll, "c")["content"] == "see"
    assert count(client, coll) == 3


def test_bulk_duplicate_ids_last_wins(client: Client, coll: str) -> None:
    items = [
        {"external_id": "d", "vector": [1, 0, 0, 0], "metadata": {"v": 1}, "content": "one"},
        {"external_id": "x", "vector": [0, 0, 0, 1]},
        {"external_id": "d", "vector": [0, 1, 0, 0], "metadata": {"v": 2}},
        {"external_id": "d", "vector": [0, 0, 1, 0]},
    ]
    data = ok(client.post("/v1/collections/c/bulk_upsert", json={"items": items}))
    assert [r["status"] for r in data["results"]] == ["inserted", "inserted", "updated", "updated"]
    assert [r["external_id"] for r in data["results"]] == ["d", "x", "d", "d"]
    assert (data["inserted"], data["updated"]) == (2, 2)
    # the last write wins for the vector; absent fields keep what the earlier items wrote
    assert get_record(client, coll, "d") == {
        "external_id": "d",
        "vector": [0.0, 0.0, 1.0, 0.0],
        "metadata": {"v": 2},
        "content": "one",
    }
    assert count(client, coll) == 2
    assert ok(client.get("/v1/collections/c"))["vector_count"] == 2
    assert search_ids(client, coll, [0, 0, 1, 0], k=10, exact=True) == ["d", "x"]


BAD_ITEMS: list[tuple[str, dict[str, Any], str, str]] = [
    ("wrong_dim", {"external_id": "bad", "vector": [1, 0, 0]}, "dimension_mismatch", "expects 4"),
    ("overflow", {"external_id": "bad", "vector": [1e39, 0, 0, 0]}, "invalid_vector", "Infinity"),
    ("zero_cosine", {"external_id": "bad", "vector": [0, 0, 0, 0]}, "invalid_vector", "zeros"),
    ("long_id", {"external_id": "x" * 513, "vector": [1, 0, 0, 0]}, "invalid_external_id", "512"),
    (
        "big_metadata",
        {"external_id": "bad", "vector": [1, 0, 0, 0], "metadata": {"b": "x" * 70000}},
        "limit_exceeded",
        "metadata",
    ),
    ("no_vector", {"external_id": "bad"}, "bad_request", "vector"),
]


@pytest.mark.parametrize(
    ("item", "type_", "mentions"),
    [pytest.param(item, t, m, id=name) for name, item, t, m in BAD_ITEMS],
)
def test_bulk_upsert_is_all_or_nothing(
    client: Client, coll: str, item: dict[str, Any], type_: str, mentions: str
) -> None:
    upsert(client, coll, "keep", [1, 0, 0, 0], metadata={"v": "old"}, content="old")
    before = export_bytes(client, coll)
    items = [
        {"external_id": "new1", "vector": [0, 1, 0, 0]},
        {"external_id": "keep", "vector": [0, 0, 1, 0], "metadata": {"v": "new"}, "content": None},
        item,
        {"external_id": "new2", "vector": [0, 0, 0, 1]},
    ]
    message = assert_error(
        client.post("/v1/collections/c/bulk_upsert", json={"items": items}), 400, type_
    )
    assert "items[2]" in message
    assert mentions in message
    assert count(client, coll) == 1
    assert export_bytes(client, coll) == before
    assert search_ids(client, coll, [0, 1, 0, 0], k=10) == ["keep"]
    assert search_ids(client, coll, [0, 1, 0, 0], k=10, exact=True) == ["keep"]


def test_bulk_text_item_without_model_writes_nothing(client: Client, coll: str) -> None:
    items = [
        {"external_id": "a", "vector": [1, 0, 0, 0]},
        {"external_id": "b", "text": "needs a model"},
    ]
    r = client.post("/v1/collections/c/bulk_upsert", json={"items": items})
    assert_error(r, 400, "embedding_unavailable")
    assert count(client, coll) == 0


def test_bulk_limit_is_1000_items(client: Client, make_collection: MakeCollection) -> None:
    make_collection("b", dim=2)
    items = [{"external_id": f"i{i}", "vector": [1, i]} for i in range(1001)]
    message = assert_error(
        client.post("/v1/collections/b/bulk_upsert", json={"items": items}), 400, "limit_exceeded"
    )
    assert "1000" in message
    assert "1001" in message
    assert "items" in message
    assert count(client, "b") == 0
    data = ok(client.post("/v1/collections/b/bulk_upsert", json={"items": items[:1000]}))
    assert (data["inserted"], data["updated"], len(data["results"])) == (1000, 0, 1000)
    assert count(client, "b") == 1000


def test_bulk_with_no_items_is_400(client: Client, coll: str) -> None:
    message = assert_error(
        client.post("/v1/collections/c/bulk_upsert", json={"items": []}), 400, "bad_request"
    )
    assert "items" in message


# -- reads -------------------------------------------------------------------------------------
def test_get_record_with_and_without_vector(client: Client, coll: str) -> None:
    upsert(client, coll, "a", [1, 2, 3, 4], metadata={"m": 1}, content="txt")
    full = get_record(client, coll, "a")
    assert full == {
        "external_id": "a",
        "vector": [1.0, 2.0, 3.0, 4.0],
        "metadata": {"m": 1},
        "content": "txt",
    }
    assert get_record(client, coll, "a", include_vector="true") == full
    bare = get_record(client, coll, "a", include_vector="false")
    assert bare == {"external_id": "a", "metadata": {"m": 1}, "content": "txt"}


def test_get_missing_record_is_404(client: Client, coll: str) -> None:
    message = assert_error(client.get("/v1/collections/c/vectors/nope"), 404, "record_not_found")
    assert "nope" in message
    assert_error(client.get("/v1/collections/zz/vectors/a"), 404, "collection_not_found")


PATH_IDS = [
    "a b",
    "héllo ☃",
    "日本語",
    "😀",
    "..",
    ".",
    "?x=1&y=2#frag",
    "100%",
    "a%2Fb",
    "+plus+",
    "semi;colon",
    "a/b",
    "a/b/c",
    "/lead",
    "trail/",
    "x//y",
    "back\\slash",
]


@pytest.mark.parametrize("external_id", PATH_IDS)
def test_url_encoded_ids_in_paths(client: Client, coll: str, external_id: str) -> None:
    upsert(client, coll, external_id, [1, 2, 3, 4], metadata={"id": external_id})
    upsert(client, coll, "decoy", [1, 0, 0, 0])
    rec = get_record(client, coll, external_id)
    assert rec["external_id"] == external_id
    assert rec["metadata"] == {"id": external_id}
    r = client.delete(f"/v1/collections/c/delete/{enc(external_id)}")
    assert ok(r) == {"status": "deleted", "external_id": external_id}
    assert_error(
        client.get(f"/v1/collections/c/vectors/{enc(external_id)}"), 404, "record_not_found"
    )
    assert count(client, coll) == 1


@HYPOTHESIS
@given(
    external_id=st.text(
        st.characters(exclude_categories=["Cs"]) | st.sampled_from("/.%?#+ \\"),
        min_size=1,
        max_size=40,
    ).filter(lambda s: s.strip("/") != "")
)
def test_any_external_id_round_trips_through_the_path(
    client: Client, coll: str, external_id: str
) -> None:
    upsert(client, coll, external_id, [1, 0, 0, 1])
    assert get_record(client, coll, external_id, include_vector="false")["external_id"] == (
        external_id
    )
    r = client.delete(f"/v1/collections/c/delete/{enc(external_id)}")
    assert ok(r)["external_id"] == external_id


def test_vectors_are_returned_as_written(client: Client, make_collection: MakeCollection) -> None:
    make_collection("raw", dim=8, distance_metric="cosine")
    vector = [0.1, 1 / 3, -2.5e-7, 123456.789, -3.4e38, 1e-40, 0.7, 2.0]
    upsert(client, "raw", "v", vector)
    expected = f32(vector)
    assert expected != vector  # the test would be vacuous otherwise
    assert get_record(client, "raw", "v")["vector"] == expected
    fetched = ok(client.post("/v1/collections/raw/vectors/fetch", json={"ids": ["v"]}))
    assert fetched["vectors"][0]["vector"] == expected
    page = ok(client.post("/v1/collections/raw/scroll", json={"include_vectors": True}))
    assert page["vectors"][0]["vector"] == expected
    line = json.loads(export_bytes(client, "raw"))
    assert line["vector"] == expected
    # cosine keeps the raw vector, not the normalised copy the index uses
    assert abs(float(np.linalg.norm(expected)) - 1) > 0.5


@HYPOTHESIS
@given(
    vector=st.lists(
        st.floats(min_value=-3.4e38, max_value=3.4e38, allow_nan=False, allow_infinity=False),
        min_size=4,
        max_size=4,
    )
)
def test_any_finite_float32_vector_round_trips(
    client: Client, make_collection: MakeCollection, vector: list[float]
) -> None:
    if "l2" not in {c["name"] for c in ok(client.get("/v1/collections"))["collections"]}:
        make_collection("l2", dim=4, distance_metric="l2")
    eid = fresh_id("v")
    upsert(client, "l2", eid, vector)
    assert get_record(client, "l2", eid)["vector"] == f32(vector)


def test_fetch_keeps_input_order_and_lists_missing(client: Client, coll: str) -> None:
    for i, eid in enumerate(["a", "b", "c"]):
        upsert(client, coll, eid, [1, i, 0, 0], metadata={"i": i})
    data = ok(
        client.post("/v1/collections/c/vectors/fetch", json={"ids": ["c", "zz", "a", "yy", "b"]})
    )
    assert set(data) == {"vectors", "not_found"}
    assert [v["external_id"] for v in data["vectors"]] == ["c", "a", "b"]
    assert data["not_found"] == ["zz", "yy"]
    assert data["vectors"][0] == {
        "external_id": "c",
        "vector": [1.0, 2.0, 0.0, 0.0],
        "metadata": {"i": 2},
        "content": None,
    }


def test_fetch_without_vectors(client: Client, coll: str) -> None:
    upsert(client, coll, "a", [1, 0, 0, 0], content="x")
    data = ok(
        client.post(
            "/v1/collections/c/vectors/fetch", json={"ids": ["a"], "include_vectors": False}
        )
    )
    assert data == {
        "vectors": [{"external_id": "a", "metadata": {}, "content": "x"}],
        "not_found": [],
    }


def test_fetch_duplicate_ids_collapse(client: Client, coll: str) -> None:
    upsert(client, coll, "a", [1, 0, 0, 0])
    upsert(client, coll, "b", [0, 1, 0, 0])
    data = ok(
        client.post(
            "/v1/collections/c/vectors/fetch", json={"ids": ["b", "a", "b", "zz", "a", "zz"]}
        )
    )
    assert [v["external_id"] for v in data["vectors"]] == ["b", "a"]
    assert data["not_found"] == ["zz"]


def test_fetch_limits(client: Client, coll: str) -> None:
    assert ok(client.post("/v1/collections/c/vectors/fetch", json={"ids": []})) == {
        "vectors": [],
        "not_found": [],
    }
    ids = [f"i{i}" for i in range(1000)]
    data = ok(client.post("/v1/collections/c/vectors/fetch", json={"ids": ids}))
    assert data["not_found"] == ids
    r = client.post("/v1/collections/c/vectors/fetch", json={"ids": [*ids, "one-more"]})
    assert "1000" in assert_error(r, 400, "limit_exceeded")
    assert_error(client.post("/v1/collections/c/vectors/fetch", json={}), 422, "invalid_body")


# -- deletes -----------------------------------------------------------------------------------
def test_delete_one(client: Client, coll: str) -> None:
    upsert(client, coll, "a", [1, 0, 0, 0])
    upsert(client, coll, "b", [0, 1, 0, 0])
    assert ok(client.delete("/v1/collections/c/delete/a")) == {
        "status": "deleted",
        "external_id": "a",
    }
    assert_error(client.get("/v1/collections/c/vectors/a"), 404, "record_not_found")
    message = assert_error(client.delete("/v1/collections/c/delete/a"), 404, "record_not_found")
    assert "'a'" in message
    assert count(client, coll) == 1
    assert_error(client.delete("/v1/collections/zz/delete/a"), 404, "collection_not_found")
    # a deleted id can be inserted again
    assert upsert(client, coll, "a", [0, 0, 1, 0])["status"] == "inserted"
    assert get_record(client, coll, "a")["metadata"] == {}


def test_delete_batch(client: Client, coll: str) -> None:
    for eid in ["a", "b", "c", "d"]:
        upsert(client, coll, eid, [1, 0, 0, 0])
    data = ok(
        client.post(
            "/v1/collections/c/delete_batch", json={"external_ids": ["c", "zz", "a", "c", "yy"]}
        )
    )
    assert data == {"deleted": ["c", "a"], "not_found": ["zz", "yy"], "deleted_count": 2}
    assert count(client, coll) == 2
    data = ok(client.post("/v1/collections/c/delete_batch", json={"external_ids": ["a"]}))
    assert data == {"deleted": [], "not_found": ["a"], "deleted_count": 0}
    data = ok(client.post("/v1/collections/c/delete_batch", json={"external_ids": []}))
    assert data == {"deleted": [], "not_found": [], "deleted_count": 0}
    fetched = ok(client.post("/v1/collections/c/vectors/fetch", json={"ids": ["a", "b", "c", "d"]}))
    assert [v["external_id"] for v in fetched["vectors"]] == ["b", "d"]


def test_delete_batch_limit(client: Client, coll: str) -> None:
    upsert(client, coll, "i0", [1, 0, 0, 0])
    ids = [f"i{i}" for i in range(1001)]
    r = client.post("/v1/collections/c/delete_batch", json={"external_ids": ids})
    assert "1000" in assert_error(r, 400, "limit_exceeded")
    assert count(client, coll) == 1


def test_delete_by_filter_counts(client: Client, coll: str) -> None:
    for i in range(10):
        meta = {"parity": "even" if i % 2 == 0 else "odd", "i": i, "tags": ["t"] if i < 3 else []}
        upsert(client, coll, f"r{i}", [1, i, 0, 0], metadata=meta)
    r = client.post("/v1/collections/c/delete_by_filter", json={"filters": {"parity": "even"}})
    assert ok(r) == {"deleted_count": 5}
    assert count(client, coll) == 5
    assert count(client, coll, {"parity": "even"}) == 0
    r = client.post("/v1/collections/c/delete_by_filter", json={"filters": {"parity": "even"}})
    assert ok(r) == {"deleted_count": 0}
    r = client.post(
        "/v1/collections/c/delete_by_filter",
        json={"filters": {"$or": [{"i": {"$gte": 7}}, {"tags": {"$contains": "t"}}]}},
    )
    assert ok(r) == {"deleted_count": 3}  # r1, r7, r9
    remaining = scroll_all(client, coll, 100)
    assert [v["external_id"] for v in remaining[0]] == ["r3", "r5"]


@pytest.mark.parametrize(
    ("body", "status", "type_"),
    [
        ({"filters": {}}, 400, "bad_request"),
        ({"filters": {"i": {"$regex": "x"}}}, 400, "invalid_filter"),
        ({"filters": {"$or": []}}, 400, "invalid_filter"),
        ({}, 422, "invalid_body"),
        ({"filters": None}, 422, "invalid_body"),
        ({"filters": [1]}, 422, "invalid_body"),
    ],
)
def test_delete_by_filter_requires_a_valid_non_empty_filter(
    client: Client, coll: str, body: dict[str, Any], status: int, type_: str
) -> None:
    upsert(client, coll, "a", [1, 0, 0, 0], metadata={"i": 1})
    message = assert_error(
        client.post("/v1/collections/c/delete_by_filter", json=body), status, type_
    )
    assert "filters" in message or "$" in message
    assert count(client, coll) == 1


def test_unknown_filter_operator_is_named(client: Client, coll: str) -> None:
    r = client.post("/v1/collections/c/delete_by_filter", json={"filters": {"i": {"$regex": "x"}}})
    assert "$regex" in assert_error(r, 400, "invalid_filter")


# -- scroll ------------------------------------------------------------------------------------
def _fill(client: Client, c: str, n: int) -> list[str]:
    items = [
        {
            "external_id": f"r{i:03d}",
            "vector": [1, i, 0, 0],
            "metadata": {"i": i, "parity": "even" if i % 2 == 0 else "odd"},
        }
        for i in range(n)
    ]
    ok(client.post(f"/v1/collections/{c}/bulk_upsert", json={"items": items}))
    return [str(item["external_id"]) for item in items]


def test_scroll_walks_every_record_in_full_pages(client: Client, coll: str) -> None:
    ids = _fill(client, coll, 25)
    pages = scroll_all(client, coll, 10)
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [v["external_id"] for p in pages for v in p] == sorted(ids)
    first = pages[0][0]
    assert first == {"external_id": "r000", "metadata": {"i": 0, "parity": "even"}, "content": None}


def test_scroll_ends_with_null_cursor_on_an_exact_multiple(client: Client, coll: str) -> None:
    _fill(client, coll, 20)
    assert [len(p) for p in scroll_all(client, coll, 10)] == [10, 10]
    assert [len(p) for p in scroll_all(client, coll, 20)] == [20]
    assert [len(p) for p in scroll_all(client, coll, 1000)] == [20]


def test_scroll_empty_collection(client: Client, coll: str) -> None:
    assert ok(client.post("/v1/collections/c/scroll", json={})) == {
        "vectors": [],
        "next_cursor": None,
    }


def test_scroll_default_limit_is_100_and_body_is_optional(client: Client, coll: str) -> None:
    _fill(client, coll, 130)
    data = ok(client.post("/v1/collections/c/scroll", json={}))
    assert len(data["vectors"]) == 100
    assert data["next_cursor"] is not None
    rest = ok(client.post("/v1/collections/c/scroll", json={"cursor": data["next_cursor"]}))
    assert len(rest["vectors"]) == 30
    assert rest["next_cursor"] is None


def test_scroll_with_filters(client: Client, coll: str) -> None:
    _fill(client, coll, 30)
    pages = scroll_all(client, coll, 4, filters={"parity": "odd", "i": {"$lt": 20}})
    assert [len(p) for p in pages] == [4, 4, 2]
    got = [v["metadata"]["i"] for p in pages for v in p]
    assert got == list(range(1, 20, 2))


def test_scroll_include_vectors(client: Client, coll: str) -> None:
    _fill(client, coll, 3)
    data = ok(client.post("/v1/collections/c/scroll", json={"include_vectors": True, "limit": 2}))
    assert [v["vector"] for v in data["vectors"]] == [[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]
    data = ok(client.post("/v1/collections/c/scroll", json={"include_vectors": False}))
    assert all("vector" not in v for v in data["vectors"])


def test_scroll_survives_deleting_the_cursor_record(client: Client, coll: str) -> None:
    _fill(client, coll, 6)
    page = ok(client.post("/v1/collections/c/scroll", json={"limit": 3}))
    last = page["vectors"][-1]["external_id"]
    ok(client.delete(f"/v1/collections/c/delete/{last}"))
    rest = ok(
        client.post("/v1/collections/c/scroll", json={"limit": 3, "cursor": page["next_cursor"]})
    )
    assert [v["external_id"] for v in rest["vectors"]] == ["r003", "r004", "r005"]
    assert rest["next_cursor"] is None


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_scroll_limit_out_of_bounds(client: Client, coll: str, limit: int) -> None:
    r = client.post("/v1/collections/c/scroll", json={"limit": limit})
    message = assert_error(r, 400, "limit_exceeded")
    assert "limit" in message
    assert "1000" in message


@pytest.mark.parametrize("limit", [1, 1000])
def test_scroll_limit_bounds_are_inclusive(client: Client, coll: str, limit: int) -> None:
    _fill(client, coll, 3)
    data = ok(client.post("/v1/collections/c/scroll", json={"limit": limit}))
    assert len(data["vectors"]) == min(limit, 3)


@pytest.mark.parametrize(
    "cursor", ["abc", "zzzz", "not-a-cursor", "!!!!", "%%%%", "cjAwMQ", "===="]
)
def test_scroll_invalid_cursor_is_400(client: Client, coll: str, cursor: str) -> None:
    _fill(client, coll, 3)
    r = client.post("/v1/collections/c/scroll", json={"cursor": cursor})
    assert "cursor" in assert_error(r, 400, "invalid_cursor")


def test_scroll_bad_filter_is_400(client: Client, coll: str) -> None:
    r = client.post("/v1/collections/c/scroll", json={"filters": {"i": {"$nope": 1}}})
    assert "$nope" in assert_error(r, 400, "invalid_filter")


# -- count -------------------------------------------------------------------------------------
def test_count_with_and_without_filters(client: Client, coll: str) -> None:
    assert count(client, coll) == 0
    _fill(client, coll, 12)
    assert count(client, coll) == 12
    assert ok(client.post("/v1/collections/c/count")) == {"count": 12}
    assert ok(client.post("/v1/collections/c/count", json={"filters": None})) == {"count": 12}
    assert count(client, coll, {"parity": "even"}) == 6
    assert count(client, coll, {"i": {"$gte": 10}}) == 2
    assert count(client, coll, {"i": {"$in": [1, 2, 99]}}) == 2
    assert count(client, coll, {"missing": {"$exists": True}}) == 0
    assert count(client, coll, {"$not": {"parity": "even"}}) == 6
    ok(client.post("/v1/collections/c/delete_batch", json={"external_ids": ["r000", "r001"]}))
    assert count(client, coll) == 10
    assert count(client, coll, {"parity": "even"}) == 5
    r = client.post("/v1/collections/c/count", json={"filters": {"i": {"$bad": 1}}})
    assert "$bad" in assert_error(r, 400, "invalid_filter")


# -- export / import ---------------------------------------------------------------------------
def _varied(client: Client, c: str) -> None:
    upsert(client, c, "plain", [1, 2, 3, 4])
    upsert(client, c, "meta", [0.1, 0.2, 0.3, 0.4], metadata={"n": {"d": [1, 2.5, None]}})
    upsert(client, c, "üñí ☃/x", [1e-30, -7, 3.3, 1e30], metadata={"k": "v"}, content="txt ✓")
    upsert(client, c, "empty-content", [4, 3, 2, 1], content="")


def test_export_is_ndjson_of_raw_records(client: Client, coll: str) -> None:
    _varied(client, coll)
    r = client.get("/v1/collections/c/export")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert r.content.endswith(b"\n")
    lines = r.content.decode().splitlines()
    assert len(lines) == 4
    records = {rec["external_id"]: rec for rec in map(json.loads, lines)}
    assert all(
        set(rec) == {"external_id", "vector", "metadata", "content"} for rec in records.values()
    )
    assert records["meta"] == {
        "external_id": "meta",
        "vector": f32([0.1, 0.2, 0.3, 0.4]),
        "metadata": {"n": {"d": [1, 2.5, None]}},
        "content": None,
    }
    assert records["üñí ☃/x"]["vector"] == f32([1e-30, -7, 3.3, 1e30])
    assert records["üñí ☃/x"]["content"] == "txt ✓"
    assert records["empty-content"]["content"] == ""
    assert records["plain"]["metadata"] == {}


def test_export_of_empty_and_unknown_collections(client: Client, coll: str) -> None:
    r = client.get("/v1/collections/c/export")
    assert r.status_code == 200
    assert r.content == b""
    assert_error(client.get("/v1/collections/zz/export"), 404, "collection_not_found")


def test_export_spans_many_batches(client: Client, make_collection: MakeCollection) -> None:
    make_collection("big", dim=2)
    for start in range(0, 2500, 1000):
        items = [{"external_id": f"r{i:05d}", "vector": [1, i]} for i in range(start, start + 1000)]
        ok(client.post("/v1/collections/big/bulk_upsert", json={"items": items[: 2500 - start]}))
    lines = export_bytes(client, "big").splitlines()
    assert len(lines) == 2500
    assert [json.loads(line)["external_id"] for line in lines] == [f"r{i:05d}" for i in range(2500)]


def test_import_of_an_export_round_trips_byte_equal(
    client: Client, coll: str, make_collection: MakeCollection
) -> None:
    _varied(client, coll)
    dump = export_bytes(client, coll)
    make_collection("copy", dim=4)
    r = client.post(
        "/v1/collections/copy/import",
        content=dump,
        headers={"content-type": "application/x-ndjson"},
    )
    assert ok(r) == {"inserted": 4, "updated": 0}
    assert export_bytes(client, "copy") == dump
    r = client.post("/v1/collections/copy/import", content=dump)
    assert ok(r) == {"inserted": 0, "updated": 4}
    assert export_bytes(client, "copy") == dump
    assert ok(client.get("/v1/collections/copy"))["vector_count"] == 4
    assert search_ids(client, "copy", [4, 3, 2, 1], k=1) == ["empty-content"]


def test_import_accepts_blank_lines_and_a_missing_final_newline(client: Client, coll: str) -> None:
    body = (
        b'\n{"external_id": "a", "vector": [1, 0, 0, 0]}\n\n'
        b'{"external_id": "b", "vector": [0, 1, 0, 0], "metadata": {"x": 1}, "content": "c"}'
    )
    assert ok(client.post("/v1/collections/c/import", content=body)) == {
        "inserted": 2,
        "updated": 0,
    }
    assert get_record(client, coll, "b") == {
        "external_id": "b",
        "vector": [0.0, 1.0, 0.0, 0.0],
        "metadata": {"x": 1},
        "content": "c",
    }
    assert ok(client.post("/v1/collections/c/import", content=b"")) == {"inserted": 0, "updated": 0}


GOOD_LINE = b'{"external_id": "ok%d", "vector": [1, 0, 0, %d]}'


@pytest.mark.parametrize(
    ("bad", "type_"),
    [
        (b"{not json", "bad_request"),
        (b'{"vector": [1, 0, 0, 0]}', "bad_request"),
        (b'{"external_id": "x"}', "bad_request"),
        (b'["x", [1, 0, 0, 0]]', "bad_request"),
        (b'{"external_id": "x", "vector": [1, 0, 0, 0], "metadata": [1]}', "bad_request"),
        (b'{"external_id": "x", "vector": [1, 0, 0, 0], "content": 5}', "bad_request"),
        (b'{"external_id": "x", "vector": [1, 0, 0]}', "dimension_mismatch"),
        (b'{"external_id": "x", "vector": [0, 0, 0, 0]}', "invalid_vector"),
        (b'{"external_id": "x", "vector": [1e39, 0, 0, 0]}', "invalid_vector"),
        (b'{"external_id": "x", "vector": ["1", 0, 0, 0]}', "bad_request"),
        (b'{"external_id": "x", "vector": [[1], 0, 0, 0]}', "bad_request"),
        (b'{"external_id": "x", "vector": [true, 0, 0, 0]}', "bad_request"),
        (b'{"external_id": "", "vector": [1, 0, 0, 0]}', "invalid_external_id"),
        (b'{"external_id": "%s", "vector": [1, 0, 0, 0]}' % (b"x" * 513), "invalid_external_id"),
        (
            b'{"external_id": "x", "vector": [1, 0, 0, 0], "metadata": {"b": "%s"}}'
            % (b"x" * 70000),
            "limit_exceeded",
        ),
    ],
)
def test_import_bad_line_is_400_naming_the_line(
    client: Client, coll: str, bad: bytes, type_: str
) -> None:
    lines = [GOOD_LINE % (i, i) for i in range(4)]
    lines.insert(2, bad)  # line 3
    r = client.post("/v1/collections/c/import", content=b"\n".join(lines) + b"\n")
    message = assert_error(r, 400, type_)
    assert "line 3" in message
    assert count(client, coll) == 0


@pytest.fixture
def small_batch_client(tmp_path: Path) -> Iterator[Client]:
    app = create_app(make_settings(tmp_path / "small-batch", max_bulk_items=3))
    with TestClient(app=app, raise_server_exceptions=False) as test_client:
        wait_ready(test_client)
        test_client.headers["x-api-key"] = ADMIN_KEY
        yield test_client


@pytest.mark.parametrize(
    ("bad", "type_"),
    [
        (b"{oops", "bad_request"),
        (b'{"external_id": "x", "vector": [1, 0]}', "dimension_mismatch"),
    ],
)
def test_import_line_numbers_count_across_batches(
    small_batch_client: Client, bad: bytes, type_: str
) -> None:
    client = small_batch_client
    ok(client.post("/v1/collections", json={"name": "c", "dim": 4}), 201)
    lines = [GOOD_LINE % (i, i) for i in range(9)]
    lines.insert(7, bad)  # line 8, in the third batch of three
    r = client.post("/v1/collections/c/import", content=b"\n".join(lines))
    message = assert_error(r, 400, type_)
    assert "line 8" in message
    # the import streams in batches: the batches before the bad line are kept
    assert count(client, "c") == 6


# -- body size ---------------------------------------------------------------------------------
@pytest.fixture
def small_body_client(tmp_path: Path) -> Iterator[Client]:
    app = create_app(make_settings(tmp_path / "small-body", max_body_bytes=4096))
    with TestClient(app=app, raise_server_exceptions=False) as test_client:
        wait_ready(test_client)
        test_client.headers["x-api-key"] = ADMIN_KEY
        yield test_client


def test_body_over_the_limit_is_413(small_body_client: Client) -> None:
    client = small_body_client
    ok(client.post("/v1/collections", json={"name": "c", "dim": 4}), 201)
    big = {"external_id": "a", "vector": [1, 0, 0, 0], "metadata": {"b": "x" * 5000}}
    assert_error(client.post("/v1/collections/c/upsert", json=big), 413, "payload_too_large")
    items = [{"external_id": f"i{i}", "vector": [1, 0, 0, 0]} for i in range(200)]
    assert_error(
        client.post("/v1/collections/c/bulk_upsert", json={"items": items}),
        413,
        "payload_too_large",
    )
    assert count(client, "c") == 0
    small = {"external_id": "a", "vector": [1, 0, 0, 0], "metadata": {"b": "x" * 100}}
    assert ok(client.post("/v1/collections/c/upsert", json=small))["status"] == "inserted"


def test_import_streams_past_the_body_limit(small_body_client: Client) -> None:
    client = small_body_client
    ok(client.post("/v1/collections", json={"name": "c", "dim": 4}), 201)
    body = b"\n".join(GOOD_LINE % (i, i) for i in range(300))
    assert len(body) > 4096
    assert ok(client.post("/v1/collections/c/import", content=body)) == {
        "inserted": 300,
        "updated": 0,
    }
    assert count(client, "c") == 300


# -- unknown collection ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "upsert", {"external_id": "a", "vector": [1, 0, 0, 0]}),
        ("POST", "bulk_upsert", {"items": [{"external_id": "a", "vector": [1, 0, 0, 0]}]}),
        ("GET", "vectors/a", None),
        ("POST", "vectors/fetch", {"ids": ["a"]}),
        ("DELETE", "delete/a", None),
        ("POST", "delete_batch", {"external_ids": ["a"]}),
        ("POST", "delete_by_filter", {"filters": {"x": 1}}),
        ("POST", "scroll", {}),
        ("POST", "count", {}),
        ("GET", "export", None),
    ],
)
def test_record_routes_on_unknown_collection_are_404(
    client: Client, method: str, path: str, body: Any
) -> None:
    r = client.request(method, f"/v1/collections/nope/{path}", json=body)
    assert "nope" in assert_error(r, 404, "collection_not_found")


def test_import_into_unknown_collection_is_404(client: Client) -> None:
    r = client.post("/v1/collections/nope/import", content=GOOD_LINE % (1, 1))
    assert_error(r, 404, "collection_not_found")


def test_read_key_cannot_write_records(client: Client, coll: str) -> None:
    upsert(client, coll, "a", [1, 0, 0, 0])
    key = ok(client.post("/v1/admin/keys", json={"name": "r", "role": "read"}), 201)["key"]
    reader = {"x-api-key": key}
    assert get_record(client, coll, "a") == ok(
        client.get("/v1/collections/c/vectors/a", headers=reader)
    )
    for method, path, body in [
        ("POST", "upsert", {"external_id": "b", "vector": [1, 0, 0, 0]}),
        ("DELETE", "delete/a", None),
        ("POST", "delete_batch", {"external_ids": ["a"]}),
        ("POST", "delete_by_filter", {"filters": {"x": 1}}),
        ("POST", "import", None),
    ]:
        r = client.request(method, f"/v1/collections/c/{path}", json=body, headers=reader)
        assert_error(r, 403, "forbidden")
    assert count(client, coll) == 1


# -- deleted and updated records never surface in search -----------------------------------------
def _hits(client: Client, c: str, vector: list[float], exact: bool) -> dict[str, float]:
    body = {"vector": vector, "k": 100, "exact": exact}
    hits = ok(client.post(f"/v1/collections/{c}/search", json=body))["results"]
    ids = [h["external_id"] for h in hits]
    assert len(ids) == len(set(ids)), ids
    return {h["external_id"]: h["score"] for h in hits}


def _check_search(client: Client, c: str, gone: set[str], moved: str, live: int) -> None:
    for exact in (False, True):
        near = _hits(client, c, [1, 0, 0, 0], exact)
        assert not gone & set(near)
        assert len(near) == live
        # the moved record now points along the second axis: it no longer scores ~1 on the first
        assert near[moved] == pytest.approx(0.0, abs=1e-3)
        along = _hits(client, c, [0, 1, 0, 0], exact)
        assert next(iter(along)) == moved
        assert along[moved] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "hnsw_sq8"])
@pytest.mark.parametrize("indexed_first", [False, True])
def test_deleted_or_updated_records_never_appear_in_search(
    client: Client,
    app: Litestar,
    make_collection: MakeCollection,
    index_type: str,
    indexed_first: bool,
) -> None:
    make_collection("s", dim=4, index={"type": index_type})
    rng = np.random.default_rng(7)
    items = []
    for i in range(40):
        vec = [1.0, *(rng.random(3) * 0.2).tolist()]
        items.append({"external_id": f"r{i:02d}", "vector": vec, "metadata": {"g": i % 4}})
    ok(client.post("/v1/collections/s/bulk_upsert", json={"items": items}))
    if indexed_first:
        flush_indexes(app)  # the deletes below then hit the FAISS index, not the fresh segment
    ok(client.delete("/v1/collections/s/delete/r00"))
    ok(client.post("/v1/collections/s/delete_batch", json={"external_ids": ["r01", "r02"]}))
    deleted = ok(client.post("/v1/collections/s/delete_by_filter", json={"filters": {"g": 3}}))
    assert deleted == {"deleted_count": 10}
    upsert(client, "s", "r04", [0, 1, 0, 0])
    gone = {"r00", "r01", "r02"} | {f"r{i:02d}" for i in range(3, 40, 4)}
    live = 40 - len(gone)
    assert count(client, "s") == live
    _check_search(client, "s", gone, "r04", live)
    flush_indexes(app)
    _check_search(client, "s", gone, "r04", live)
    # updating again after the flush, then flushing once more
    upsert(client, "s", "r05", [0, 0, 1, 0])
    ok(client.delete("/v1/collections/s/delete/r06"))
    for _ in range(2):
        near = _hits(client, "s", [0, 0, 1, 0], exact=False)
        assert "r06" not in near
        assert next(iter(near)) == "r05"
        assert near["r05"] == pytest.approx(1.0, abs=1e-3)
        flush_indexes(app)
