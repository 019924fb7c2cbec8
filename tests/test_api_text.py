"""Text input everywhere, through HTTP, with the real default model: upsert, bulk upsert, search,
bulk search, rerank and recommend; timing, truncation warnings and the text length limit."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import ADMIN_KEY, make_settings, wait_ready
from tests.oracles import assert_error
from vecstore.app import create_app
from vecstore.inference.host import InferenceConfig, ModelHost
from vecstore.inference.registry import ModelRegistry
from vecstore.settings import Settings

Client = TestClient[Litestar]
MakeCollection = Callable[..., dict[str, Any]]
MODEL = "all-MiniLM-L6-v2"
DIM = 384
C = "/v1/collections/docs"

DOCS = {
    "cooking": "Slowly simmer the tomato sauce with garlic, basil and olive oil for the pasta.",
    "finance": "The central bank raised interest rates to fight inflation, and bond yields rose.",
    "space": "The rocket launched the telescope into orbit to observe distant galaxies.",
    "pets": "My puppy loves chasing the ball in the park and sleeping on the sofa.",
    "football": "The striker scored twice in the final minutes and the team won the cup.",
}
QUERIES = {
    "How do I make a good spaghetti sauce?": "cooking",
    "Why are mortgage rates going up?": "finance",
    "Astronomers studying stars and planets": "space",
    "Tips for training a young dog": "pets",
    "Who won the soccer match last night?": "football",
}
LONG = " ".join(f"word{i % 97} follows" for i in range(1000))  # 2000 words: far over 256 tokens
TRUNCATED = re.compile(r"'(?P<field>[^']+)' was longer .* truncated")


@pytest.fixture(scope="module")
def host() -> Iterator[ModelHost]:
    """The reference: the same model in-process, no batcher, no cache."""
    models = ModelHost(
        ModelRegistry.load(), InferenceConfig(micro_batching=False, query_cache_entries=0)
    )
    yield models
    models.close()


def embed(host: ModelHost, *texts: str) -> np.ndarray:
    vectors: np.ndarray = host.embed(list(texts), MODEL).vectors
    return vectors


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"status", "data"}
    assert body["status"] == "success"
    return body["data"]


@pytest.fixture
def docs(make_collection: MakeCollection) -> dict[str, Any]:
    info = make_collection("docs", DIM)
    assert info["embedding_model"] == MODEL
    return info


@pytest.fixture
def indexed(client: Client, docs: dict[str, Any]) -> dict[str, str]:
    items = [{"external_id": k, "text": v} for k, v in DOCS.items()]
    data = ok(client.post(f"{C}/bulk_upsert", json={"items": items}))
    assert data["inserted"] == len(DOCS)
    assert "warnings" not in data
    return DOCS


def stored_vector(client: Client, external_id: str) -> np.ndarray:
    record = ok(client.get(f"{C}/vectors/{external_id}", params={"include_vector": True}))
    return np.asarray(record["vector"], dtype=np.float32)


def truncation_fields(data: dict[str, Any]) -> list[str]:
    fields = []
    for warning in data["warnings"]:
        found = TRUNCATED.search(warning)
        assert found is not None, warning
        fields.append(found["field"])
    return fields


# -- upserts -----------------------------------------------------------------------------------
def test_upsert_text_stores_the_model_vector_and_the_text_as_content(
    client: Client, docs: dict[str, Any], host: ModelHost
) -> None:
    text = "A man is eating food."
    data = ok(client.post(f"{C}/upsert", json={"external_id": "a", "text": text}))
    assert data == {"external_id": "a", "status": "inserted"}  # no timing, no warnings
    record = ok(client.get(f"{C}/vectors/a", params={"include_vector": True}))
    assert record["content"] == text
    assert record["metadata"] == {}
    np.testing.assert_allclose(np.asarray(record["vector"]), embed(host, text)[0], atol=1e-5)
    # Explicit content wins over the text; metadata is kept.
    body = {"external_id": "a", "text": "Bread.", "content": "other", "metadata": {"n": 1}}
    assert ok(client.post(f"{C}/upsert", json=body))["status"] == "updated"
    record = ok(client.get(f"{C}/vectors/a", params={"include_vector": True}))
    assert (record["content"], record["metadata"]) == ("other", {"n": 1})
    np.testing.assert_allclose(np.asarray(record["vector"]), embed(host, "Bread.")[0], atol=1e-5)


def test_bulk_upsert_mixes_text_and_vector_items(
    client: Client, docs: dict[str, Any], host: ModelHost
) -> None:
    given = np.zeros(DIM, dtype=np.float32)
    given[:3] = [0.6, 0.0, 0.8]
    items = [
        {"external_id": "t1", "text": DOCS["cooking"]},
        {"external_id": "v1", "vector": given.tolist(), "content": "by vector"},
        {"external_id": "t2", "text": DOCS["space"], "metadata": {"topic": "space"}},
        {"external_id": "t3", "text": DOCS["pets"], "content": None},
    ]
    data = ok(client.post(f"{C}/bulk_upsert", json={"items": items}))
    assert data["inserted"] == 4
    assert [r["external_id"] for r in data["results"]] == ["t1", "v1", "t2", "t3"]
    assert "warnings" not in data
    fetched = ok(
        client.post(
            f"{C}/vectors/fetch", json={"ids": ["t1", "v1", "t2", "t3"], "include_vectors": True}
        )
    )
    records = {r["external_id"]: r for r in fetched["vectors"]}
    expected = embed(host, DOCS["cooking"], DOCS["space"], DOCS["pets"])
    np.testing.assert_allclose(np.asarray(records["t1"]["vector"]), expected[0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(records["t2"]["vector"]), expected[1], atol=1e-5)
    np.testing.assert_allclose(np.asarray(records["t3"]["vector"]), expected[2], atol=1e-5)
    np.testing.assert_array_equal(np.asarray(records["v1"]["vector"], dtype=np.float32), given)
    assert records["t1"]["content"] == DOCS["cooking"]
    assert records["v1"]["content"] == "by vector"
    assert records["t2"]["content"] == DOCS["space"]
    assert records["t2"]["metadata"] == {"topic": "space"}
    assert records["t3"]["content"] is None  # an explicit null is kept


# -- search, bulk search, rerank, recommend ----------------------------------------------------
def test_text_search_returns_the_semantically_closest_record_first(
    client: Client, indexed: dict[str, str], host: ModelHost
) -> None:
    doc_vectors = {k: embed(host, v)[0].astype(np.float64) for k, v in DOCS.items()}
    for query, expected in QUERIES.items():
        body = {"text": query, "k": 5, "include_content": True}
        data = ok(client.post(f"{C}/search", json=body))
        assert "warnings" not in data
        results = data["results"]
        assert len(results) == 5
        assert results[0]["external_id"] == expected, (query, results)
        assert results[0]["content"] == DOCS[expected]
        # Scores are the cosines of the model's vectors, in descending order.
        q = embed(host, query)[0].astype(np.float64)
        for hit in results:
            cosine = float(doc_vectors[hit["external_id"]] @ q)
            assert hit["score"] == pytest.approx(cosine, abs=1e-4)
        scores = [h["score"] for h in results]
        assert scores == sorted(scores, reverse=True)
        assert scores[0] > scores[1] + 0.1, (query, scores)


def test_bulk_search_with_text_and_vector_queries(client: Client, indexed: dict[str, str]) -> None:
    space = stored_vector(client, "space")
    queries = list(QUERIES.items())
    body = {
        "queries": [
            {"text": queries[0][0], "k": 2},
            {"vector": space.tolist(), "k": 3},
            {"text": queries[1][0], "k": 1},
            {"text": queries[3][0], "k": 2, "filters": {"missing": {"$eq": 1}}},
        ]
    }
    data = ok(client.post(f"{C}/bulk_search", json=body))
    assert "warnings" not in data
    results = data["results"]
    assert [len(r) for r in results] == [2, 3, 1, 0]
    assert results[0][0]["external_id"] == queries[0][1]
    assert results[1][0]["external_id"] == "space"
    assert results[1][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert results[2][0]["external_id"] == queries[1][1]
    # Each text query answers what the single search answers.
    single = ok(client.post(f"{C}/search", json={"text": queries[0][0], "k": 2}))["results"]
    assert [h["external_id"] for h in single] == [h["external_id"] for h in results[0]]
    for a, b in zip(single, results[0], strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_rerank_with_text_orders_the_candidates_by_cosine(
    client: Client, indexed: dict[str, str], host: ModelHost
) -> None:
    query = "rockets, orbits and galaxies"
    candidates = ["pets", "space", "finance", "nobody"]
    data = ok(client.post(f"{C}/rerank", json={"text": query, "candidates": candidates}))
    assert data["not_found"] == ["nobody"]
    assert "warnings" not in data
    q = embed(host, query)[0].astype(np.float64)
    cos = {k: float(embed(host, DOCS[k])[0].astype(np.float64) @ q) for k in candidates[:3]}
    expected = sorted(cos, key=lambda k: -cos[k])
    assert expected[0] == "space"
    assert [h["external_id"] for h in data["results"]] == expected
    for hit in data["results"]:
        assert hit["score"] == pytest.approx(cos[hit["external_id"]], abs=1e-4)
    top = ok(client.post(f"{C}/rerank", json={"text": query, "candidates": candidates, "top_k": 1}))
    assert [h["external_id"] for h in top["results"]] == ["space"]


def test_recommend_is_unchanged_on_a_text_collection(
    client: Client, indexed: dict[str, str]
) -> None:
    vectors = {k: stored_vector(client, k).astype(np.float64) for k in DOCS}
    data = ok(client.post(f"{C}/recommend/cooking", json={"k": 4}))
    ids = [h["external_id"] for h in data["results"]]
    assert "cooking" not in ids
    cos = {k: float(vectors[k] @ vectors["cooking"]) for k in DOCS if k != "cooking"}
    assert ids == sorted(cos, key=lambda k: -cos[k])
    for hit in data["results"]:
        assert hit["score"] == pytest.approx(cos[hit["external_id"]], abs=1e-4)


# -- timing ------------------------------------------------------------------------------------
def test_embedding_time_is_reported_for_text_and_zero_for_vectors(
    client: Client, indexed: dict[str, str]
) -> None:
    vector = stored_vector(client, "pets").tolist()
    text_requests: list[tuple[str, dict[str, Any]]] = [
        ("upsert", {"external_id": "x", "text": "timing an upsert"}),
        ("bulk_upsert", {"items": [{"external_id": "y", "text": "timing a bulk upsert"}]}),
        ("search", {"text": "timing a search"}),
        ("bulk_search", {"queries": [{"text": "timing a bulk search"}, {"vector": vector}]}),
        ("rerank", {"text": "timing a rerank", "candidates": ["pets"]}),
    ]
    vector_requests: list[tuple[str, dict[str, Any]]] = [
        ("upsert", {"external_id": "x", "vector": vector}),
        ("bulk_upsert", {"items": [{"external_id": "y", "vector": vector}]}),
        ("search", {"vector": vector}),
        ("bulk_search", {"queries": [{"vector": vector}]}),
        ("rerank", {"vector": vector, "candidates": ["pets"]}),
        ("recommend/pets", {}),
    ]
    for route, body in text_requests:
        data = ok(client.post(f"{C}/{route}", json={**body, "include_timing": True}))
        assert data["timing_ms"]["embedding_ms"] > 0, (route, data["timing_ms"])
        assert data["timing_ms"]["total_ms"] >= data["timing_ms"]["embedding_ms"]
    for route, body in vector_requests:
        data = ok(client.post(f"{C}/{route}", json={**body, "include_timing": True}))
        assert data["timing_ms"]["embedding_ms"] == 0, (route, data["timing_ms"])


# -- truncation warnings -----------------------------------------------------------------------
def test_an_over_long_upsert_text_is_embedded_truncated_with_a_warning(
    client: Client, docs: dict[str, Any], host: ModelHost
) -> None:
    data = ok(client.post(f"{C}/upsert", json={"external_id": "long", "text": LONG}))
    assert data["status"] == "inserted"
    fields = truncation_fields(data)
    assert len(fields) == 1
    assert fields == ["text"]  # a single upsert names the field as the client sent it
    assert "256 tokens" in data["warnings"][0]
    record = ok(client.get(f"{C}/vectors/long", params={"include_vector": True}))
    assert record["content"] == LONG  # the stored content is whole; only the embedding is cut
    np.testing.assert_allclose(np.asarray(record["vector"]), embed(host, LONG)[0], atol=1e-5)


def test_an_over_long_bulk_upsert_item_is_named_in_the_warning(
    client: Client, docs: dict[str, Any]
) -> None:
    items = [
        {"external_id": "a", "text": "short text"},
        {"external_id": "b", "text": LONG},
        {"external_id": "c", "vector": [1.0] + [0.0] * (DIM - 1)},
        {"external_id": "d", "text": "another short one"},
    ]
    data = ok(client.post(f"{C}/bulk_upsert", json={"items": items}))
    assert data["inserted"] == 4
    assert truncation_fields(data) == ["items[1].text"]
    assert len(data["warnings"]) == 1


def test_over_long_query_texts_are_named_in_the_warnings(
    client: Client, indexed: dict[str, str]
) -> None:
    data = ok(client.post(f"{C}/search", json={"text": LONG, "k": 2}))
    assert truncation_fields(data) == ["text"]
    assert len(data["results"]) == 2
    body = {"queries": [{"text": "short query"}, {"text": LONG}, {"text": "x " + LONG}]}
    data = ok(client.post(f"{C}/bulk_search", json=body))
    assert truncation_fields(data) == ["queries[1].text", "queries[2].text"]
    assert len(data["results"]) == 3
    data = ok(client.post(f"{C}/rerank", json={"text": LONG, "candidates": ["pets", "space"]}))
    assert truncation_fields(data) == ["text"]
    assert len(data["results"]) == 2


def test_short_texts_give_no_warnings_key(client: Client, indexed: dict[str, str]) -> None:
    responses = [
        client.post(f"{C}/upsert", json={"external_id": "s", "text": "short"}),
        client.post(f"{C}/bulk_upsert", json={"items": [{"external_id": "t", "text": "short"}]}),
        client.post(f"{C}/search", json={"text": "short"}),
        client.post(f"{C}/bulk_search", json={"queries": [{"text": "short"}]}),
        client.post(f"{C}/rerank", json={"text": "short", "candidates": ["s"]}),
    ]
    for response in responses:
        assert "warnings" not in ok(response), response.text


# -- the text length limit ---------------------------------------------------------------------
@contextmanager
def serve(settings: Settings) -> Iterator[Client]:
    with TestClient(app=create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client)
        client.headers["x-api-key"] = ADMIN_KEY
        yield client


def test_text_over_max_text_chars_is_refused_and_nothing_is_written(data_dir: Path) -> None:
    fits = "x" * 50
    over = "y" * 51
    with serve(make_settings(data_dir, max_text_chars=50)) as client:
        ok(client.post("/v1/collections", json={"name": "docs", "dim": DIM}), 201)
        cases = [
            ("upsert", {"external_id": "a", "text": over}, "text"),
            (
                "bulk_upsert",
                {"items": [{"external_id": "a", "text": fits}, {"external_id": "b", "text": over}]},
                "items[1].text",
            ),
            ("search", {"text": over}, "text"),
            ("bulk_search", {"queries": [{"text": fits}, {"text": over}]}, "queries[1].text"),
            ("rerank", {"text": over, "candidates": ["a"]}, "text"),
        ]
        for route, body, field in cases:
            error = assert_error(client.post(f"{C}/{route}", json=body), 400, "limit_exceeded")
            message = error["message"]
            assert field in message, (route, message)
            assert "51" in message
            assert "50" in message
        assert ok(client.post(f"{C}/count", json={}))["count"] == 0
        # At the limit exactly, text is accepted.
        r = client.post(f"{C}/upsert", json={"external_id": "a", "text": fits})
        assert ok(r)["status"] == "inserted"
        assert (
            ok(client.post(f"{C}/search", json={"text": fits, "k": 1}))["results"][0]["external_id"]
            == "a"
        )
