"""Vectors sent as base64 of little-endian float32 (the encoding OpenAI clients know)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

from tests.oracles import assert_error
from vecstore.errors import DimensionMismatch, InvalidVector
from vecstore.services.vectors import as_matrix, as_vector


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


def _query_bodies(vector: Any) -> dict[str, dict[str, Any]]:
    """Every read that takes a query vector, with the same query in the given encoding."""
    return {
        "search": {"vector": vector, "k": 5},
        "bulk_search": {"queries": [{"vector": vector, "k": 5}]},
        "rerank": {"vector": vector, "candidates": [f"r{i}" for i in range(20)], "top_k": 5},
        "hybrid_search": {"vector": vector, "query_text": "word", "k": 5},
        "query": {"vector": vector, "k": 10, "top_n": 5, "rerank": {"method": "vector"}},
    }


def test_query_vectors_may_be_base64_and_answer_exactly_like_float_lists(
    client: TestClient[Litestar], make_collection: Any
) -> None:
    make_collection("q", dim=8)
    rng = np.random.default_rng(4)
    rows = rng.standard_normal((20, 8)).astype(np.float32)
    items = [
        {"external_id": f"r{i}", "vector": row.tolist(), "content": f"word {i}"}
        for i, row in enumerate(rows)
    ]
    assert client.post("/v1/collections/q/bulk_upsert", json={"items": items}).status_code == 200
    query = rng.standard_normal(8).astype(np.float32)
    as_floats, as_base64 = _query_bodies(query.tolist()), _query_bodies(b64(query.tolist()))
    for route, body in as_floats.items():
        want = client.post(f"/v1/collections/q/{route}", json=body)
        got = client.post(f"/v1/collections/q/{route}", json=as_base64[route])
        assert want.status_code == 200, (route, want.text)
        assert got.status_code == 200, (route, got.text)
        assert got.json()["data"]["results"] == want.json()["data"]["results"], route
        assert got.json()["data"]["results"], route


def test_a_bad_base64_query_vector_is_a_400_naming_the_field(
    client: TestClient[Litestar], make_collection: Any
) -> None:
    make_collection("q", dim=4)
    cases = [
        ("not base64!", "invalid_vector", "base64"),
        (b64([1.0, 2.0]), "dimension_mismatch", "expects 4"),
        (b64([1.0, float("inf"), 0.0, 0.0]), "invalid_vector", "NaN or Infinity"),
        (b64([0.0, 0.0, 0.0, 0.0]), "invalid_vector", "zeros"),
    ]
    for vector, type_, words in cases:
        for route, body in _query_bodies(vector).items():
            message = error_of(client.post(f"/v1/collections/q/{route}", json=body), 400, type_)
            assert words in message, (route, message)
            assert "vector" in message, (route, message)


def test_a_bulk_of_base64_rows_names_the_bad_item_wherever_it_is(
    client: TestClient[Litestar], make_collection: Any
) -> None:
    # dim 3: 12 bytes a row, a multiple of 3, so an all-base64 batch is decoded in one call;
    # a bad row must still be found and named, and nothing written.
    make_collection("b", dim=3)
    good = b64([1.0, 2.0, 3.0])
    padded = base64.b64encode(b"\x00" * 10).decode()  # 16 characters like a good row, 10 bytes
    assert len(padded) == len(good)
    bad_char = good[:5] + "!" + good[6:]
    cases = [
        (bad_char, "invalid_vector", "base64"),
        (padded, "dimension_mismatch", "decodes to 10 bytes"),
        (b64([1.0, float("nan"), 2.0]), "invalid_vector", "NaN"),
        (b64([0.0, 0.0, 0.0]), "invalid_vector", "zeros"),
    ]
    for bad, type_, words in cases:
        for position in (0, 1, 2):
            vectors = [good, good]
            vectors.insert(position, bad)
            items = [{"external_id": f"i{i}", "vector": v} for i, v in enumerate(vectors)]
            r = client.post("/v1/collections/b/bulk_upsert", json={"items": items})
            message = error_of(r, 400, type_)
            assert f"items[{position}]" in message, (bad, position, message)
            assert words in message, (bad, position, message)
    count = client.post("/v1/collections/b/count", json={})
    assert count.json()["data"]["count"] == 0


_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def _reference_matrix(rows: list[str], dim: int) -> np.ndarray | None:
    """The plain way: the standard library's strict decoder, row by row."""
    out = []
    for row in rows:
        try:
            raw = binascii.a2b_base64(row, strict_mode=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != dim * 4:
            return None
        out.append(np.frombuffer(raw, dtype="<f4"))
    mat = np.stack(out)
    if not np.isfinite(mat).all() or not mat.any(axis=1).all():
        return None
    return mat


@settings(max_examples=300, deadline=None)
@given(
    dim=st.sampled_from([3, 4, 6]),
    data=st.data(),
)
def test_as_matrix_agrees_with_decoding_row_by_row(dim: int, data: st.DataObject) -> None:
    """The one-call decode of a batch (dims 3 and 6) and the row-by-row one (dim 4) accept
    exactly the batches the standard library's strict decoder accepts, with the same values."""
    good = st.lists(
        st.floats(width=32, allow_nan=False, allow_infinity=False, min_value=0.5, max_value=9),
        min_size=dim,
        max_size=dim,
    ).map(b64)
    mangled = st.tuples(good, st.integers(0, 100), st.sampled_from(_B64_ALPHABET + "!- ")).map(
        lambda t: t[0][: t[1] % len(t[0])] + t[2] + t[0][t[1] % len(t[0]) + 1 :]
    )
    rows = data.draw(st.lists(st.one_of(good, good, mangled), min_size=1, max_size=6))
    want = _reference_matrix(rows, dim)
    try:
        got = as_matrix(rows, dim, field="items", metric="cosine")
    except (InvalidVector, DimensionMismatch):
        got = None
    if want is None:
        assert got is None, rows
    else:
        assert got is not None, rows
        assert np.array_equal(got, want)


_ANY_FLOAT32 = st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True)


@settings(max_examples=400, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            _ANY_FLOAT32,
            st.sampled_from([0.0, -0.0, 1e-45, -1e-40, 1e20, -3.4e38, float("nan"), float("inf")]),
        ),
        min_size=1,
        max_size=8,
    ),
    metric=st.sampled_from(["cosine", "ip", "l2"]),
    encoded=st.booleans(),
)
def test_as_vector_accepts_exactly_finite_vectors_and_for_cosine_not_all_zeros(
    values: list[float], metric: str, encoded: bool
) -> None:
    """The one sum-of-squares check gives the answers of the element-wise checks, including
    values whose squares overflow float32 (1e20) or underflow it (subnormals)."""
    arr = np.asarray(values, dtype=np.float32)
    want_ok = bool(np.isfinite(arr).all()) and (metric != "cosine" or bool(arr.any()))
    sent: Any = b64(values) if encoded else values
    try:
        got = as_vector(sent, len(values), metric=metric)
    except InvalidVector:
        assert not want_ok, values
    else:
        assert want_ok, values
        assert np.array_equal(got, arr)
