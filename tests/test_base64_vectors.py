"""Vectors sent as base64 of little-endian float32 (the encoding OpenAI clients know)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from litestar import Litestar
from litestar.testing import TestClient

from tests.oracles import assert_error


def b64(values: list[float]) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()


def error_of(response: Any, status: int, type_: str) -> str:
    message: str = assert_error(response, status, type_)["message"]
    return message


def test_base64_and_float_list_store_the_same_vector(
    client: TestClient[Litestar], make_collection: Any
) -> None:
    make_collection("b", dim=3)
    values = [0.1, -2.5, 3.25]
    r = client.post("/v1/collections/b/upsert", json={"external_id": "x", "vector": b64(values)})
    assert r.status_code == 200, r.text
    items = [
        {"external_id": "y", "vector": values},
        {"external_id": "z", "vector": b64([1.0, 0.0, 0.0])},
    ]
    r = client.post("/v1/collections/b/bulk_upsert", json={"items": items})
    assert r.json()["data"]["inserted"] == 2
    fetched = client.post("/v1/collections/b/vectors/fetch", json={"ids": ["x", "y", "z"]})
    vectors = {v["external_id"]: v["vector"] for v in fetched.json()["data"]["vectors"]}
    expected = np.asarray(values, dtype=np.float32).tolist()
    assert vectors["x"] == expected
    assert vectors["y"] == expected
    assert vectors["z"] == [1.0, 0.0, 0.0]
    hits = client.post("/v1/collections/b/search", json={"vector": [1, 0, 0], "k": 1})
    assert hits.json()["data"]["results"][0]["external_id"] == "z"


def test_bad_base64_vectors_name_the_item_and_write_nothing(
    client: TestClient[Litestar], make_collection: Any
) -> None:
    make_collection("b", dim=3)
    good = {"external_id": "ok", "vector": [1, 2, 3]}
    cases = [
        ({"external_id": "bad", "vector": "not base64!"}, "invalid_vector", "base64"),
        ({"external_id": "bad", "vector": b64([1.0, 2.0])}, "dimension_mismatch", "expects 3"),
        ({"external_id": "bad", "vector": b64([1.0, float("nan"), 2.0])}, "invalid_vector", "NaN"),
        ({"external_id": "bad", "vector": b64([0.0, 0.0, 0.0])}, "invalid_vector", "zeros"),
    ]
    for bad, type_, words in cases:
        r = client.post("/v1/collections/b/bulk_upsert", json={"items": [good, good, bad]})
        message = error_of(r, 400, type_)
        assert "items[2]" in message
        assert words in message
    count = client.post("/v1/collections/b/count", json={})
    assert count.json()["data"]["count"] == 0


def test_error_names_the_items_position_when_text_items_come_first(
    client: TestClient[Litestar], make_collection: Any
) -> None:
    # Regression: the index counted only items that carried vectors.
    make_collection("b", dim=3)
    items = [
        {"external_id": "t", "text": "hello"},
        {"external_id": "ok", "vector": [1, 2, 3]},
        {"external_id": "bad", "vector": [1, 2]},
    ]
    message = error_of(
        client.post("/v1/collections/b/bulk_upsert", json={"items": items[1:] + items[:1]}),
        400,
        "dimension_mismatch",
    )
    assert "items[1]" in message
    message = error_of(
        client.post(
            "/v1/collections/b/bulk_upsert", json={"items": [items[1], items[0], items[2]]}
        ),
        400,
        "dimension_mismatch",
    )
    assert "items[2]" in message


def test_a_string_that_is_not_base64_float32_is_an_invalid_vector(
    client: TestClient[Litestar], make_collection: Any
) -> None:
    make_collection("b", dim=4)
    r = client.post("/v1/collections/b/upsert", json={"external_id": "a", "vector": "1,0,0,0"})
    assert "base64" in error_of(r, 400, "invalid_vector")
