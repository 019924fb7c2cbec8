"""Cross-encoders from the model registry, with a small ONNX model the suite builds itself:
pair encoding that keeps the query, logits checked against a numpy oracle, sigmoid scores,
micro-batching, failures, and the two-stage query's ``cross`` method through HTTP."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests import cross_encoder_model as ce
from tests.conftest import ADMIN_KEY, make_settings, wait_ready
from tests.oracles import assert_error
from vecstore.app import create_app
from vecstore.errors import ModelNotConfigured, ModelUnavailable, UnknownModel
from vecstore.inference.batcher import BatchPolicy
from vecstore.inference.host import InferenceConfig, ModelHost
from vecstore.inference.onnx_cross_encoder import logits_of, logits_to_scores
from vecstore.inference.registry import ModelRegistry

QUERY = "how do solar panels make electricity"
DOCS = [
    "Solar panels make electricity from sunlight using photovoltaic cells.",
    "A recipe for banana bread with walnuts.",
    "Electricity prices rose in the winter.",
    "",
]


@pytest.fixture(scope="module")
def registry_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cross")
    model = ce.build(folder / "reranker.onnx")
    path = folder / "models.toml"
    path.write_text(ce.registry_entry(model))
    return path


@pytest.fixture(scope="module")
def host(registry_file: Path) -> Iterator[ModelHost]:
    models = ModelHost(ModelRegistry.load(registry_file), InferenceConfig())
    yield models
    models.close()


def oracle(host: ModelHost, query: str, documents: list[str]) -> np.ndarray:
    """Scores from the numpy reference of the graph, on the model's own pair encoding."""
    encoder = host._runtime(host.registry.get("test-reranker"))
    items = encoder.model.tokenize(query, documents)  # type: ignore[call-arg]
    logits = ce.reference_logits([(i.ids, i.type_ids or []) for i in items])
    return 1 / (1 + np.exp(-logits))


def test_scores_match_the_reference_and_rank_relevant_documents_first(host: ModelHost) -> None:
    scores = host.score(QUERY, DOCS, None)  # the registry's only cross-encoder is the default
    np.testing.assert_allclose(scores, oracle(host, QUERY, DOCS), atol=1e-5)
    assert all(0.0 < s < 1.0 for s in scores)
    assert scores[0] == max(scores)
    assert scores[0] > scores[2] > scores[1]  # shared words: 4, 1 ("electricity"), none
    assert scores[3] == pytest.approx(1 / (1 + math.exp(-ce.BIAS)), abs=1e-6)  # empty document


def test_a_pair_scores_the_same_alone_and_inside_a_batch(host: ModelHost) -> None:
    together = host.score(QUERY, DOCS * 5, "test-reranker")
    for i, doc in enumerate(DOCS * 5):
        assert host.score(QUERY, [doc], "BAAI/bge-reranker-v2-m3")[0] == pytest.approx(
            together[i], abs=1e-6
        )


def test_long_documents_are_cut_and_long_queries_keep_room_for_the_document(
    host: ModelHost,
) -> None:
    encoder = host._runtime(host.registry.get("test-reranker")).model
    long_doc = "solar " * 300
    (pair,) = encoder.tokenize(QUERY, [long_doc])  # type: ignore[call-arg]
    assert len(pair.ids) == 64
    assert pair.truncated
    query_ids = [i for i, t in zip(pair.ids, pair.type_ids or [], strict=True) if t == 0]
    assert len(query_ids) == 2 + len(QUERY.split())  # [CLS] query [SEP], whole
    long_query = "electricity " * 200
    (pair,) = encoder.tokenize(long_query, ["solar panels"])  # type: ignore[call-arg]
    types = pair.type_ids or []
    assert len(pair.ids) <= 64
    assert types.count(1) >= 3  # the document ("solar panels" [SEP]) is still there
    score = host.score(long_query, ["electricity", "banana"], None)
    assert score[0] > score[1]


def test_logit_shapes_of_common_heads() -> None:
    np.testing.assert_allclose(logits_of(np.asarray([0.5, -1.0])), [0.5, -1.0])
    np.testing.assert_allclose(logits_of(np.asarray([[0.5], [-1.0]])), [0.5, -1.0])
    # a two-class head: softmax's positive probability == sigmoid of the difference
    two = np.asarray([[0.2, 1.2], [3.0, 1.0]])
    np.testing.assert_allclose(logits_to_scores(two), 1 / (1 + np.exp(-(two[:, 1] - two[:, 0]))))
    with pytest.raises(ValueError, match="cross-encoder must output"):
        logits_of(np.zeros((2, 3)))


def test_concurrent_scoring_is_micro_batched(registry_file: Path) -> None:
    batches: list[int] = []
    models = ModelHost(
        ModelRegistry.load(registry_file),
        InferenceConfig(policy=BatchPolicy(max_texts=4)),
        observe_batch=lambda model, texts, tokens, seconds: batches.append(texts),
    )
    try:
        scores = models.score(QUERY, DOCS * 3, None)  # 12 pairs: parts of at most 4
        assert len(scores) == 12
        assert max(batches) <= 4
        assert sum(batches) == 12
    finally:
        models.close()


def test_unknown_and_missing_cross_encoders() -> None:
    models = ModelHost(ModelRegistry.load(), InferenceConfig())  # built-ins: no cross-encoder
    with pytest.raises(ModelNotConfigured, match="cross-encoder"):
        models.score("q", ["d"], None)
    with pytest.raises(UnknownModel, match="cross-encoder"):
        models.score("q", ["d"], "all-MiniLM-L6-v2")  # an embedder is not a cross-encoder
    models.close()


def test_a_broken_cross_encoder_answers_model_unavailable(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    registry = tmp_path / "models.toml"
    registry.write_text(ce.registry_entry(bad))
    models = ModelHost(ModelRegistry.load(registry), InferenceConfig())
    with pytest.raises(ModelUnavailable, match="test-reranker"):
        models.score("q", ["d"], None)
    models.close()


# -- through HTTP: /query with the cross method ----------------------------------------------------
@pytest.fixture
def cross_client(registry_file: Path, tmp_path: Path) -> Iterator[TestClient[Litestar]]:
    app = create_app(make_settings(tmp_path / "data", models_file=registry_file))
    with TestClient(app=app, raise_server_exceptions=False) as client:
        wait_ready(client)
        client.headers["x-api-key"] = ADMIN_KEY
        yield client


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def test_query_cross_method_reranks_with_the_registered_cross_encoder(
    cross_client: TestClient[Litestar], host: ModelHost
) -> None:
    c = cross_client
    assert c.post("/v1/collections", json={"name": "kb", "dim": 2}).status_code == 201
    items = [
        {"external_id": f"d{i}", "vector": [1.0, 0.1 * i], "content": doc}
        for i, doc in enumerate(DOCS)
    ]
    ok(c.post("/v1/collections/kb/bulk_upsert", json={"items": items}))
    body = {"vector": [1.0, 0.0], "text": QUERY, "k": 4, "top_n": 3, "include_timing": True}
    data = ok(c.post("/v1/collections/kb/query", json={**body, "rerank": {"method": "cross"}}))
    expected = oracle(host, QUERY, DOCS)
    order = sorted(range(4), key=lambda i: -expected[i])[:3]
    assert [h["external_id"] for h in data["results"]] == [f"d{i}" for i in order]
    for h in data["results"]:
        i = int(h["external_id"][1:])
        assert h["rerank_score"] == pytest.approx(expected[i], abs=1e-5)
    assert data["timing_ms"]["rerank_ms"] > 0
    named = {"method": "cross", "model": "BAAI/bge-reranker-v2-m3"}  # an alias works
    assert ok(c.post("/v1/collections/kb/query", json={**body, "rerank": named}))["results"]
    r = c.post(
        "/v1/collections/kb/query",
        json={**body, "rerank": {"method": "cross", "model": "all-MiniLM-L6-v2"}},
    )
    assert "test-reranker" in assert_error(r, 400, "unknown_model")["message"]
    listed = {m["id"]: m for m in c.get("/v1/models").json()["data"]}
    assert listed["test-reranker"]["kind"] == "cross-encoder"
    assert listed["test-reranker"]["max_tokens"] == 64
