"""Document rerank through HTTP: the Cohere v1/Jina, Cohere v2, TEI and infinity dialects, the
four methods against oracles (the bundled embedder, the test cross-encoder's numpy reference,
the fusion formula), long documents in chunks; then the real SDKs against a live server."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydantic
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from tokenizers import Tokenizer

from tests import cross_encoder_model as ce
from tests.conftest import ADMIN_KEY, make_settings, wait_ready
from tests.server_process import new_admin_key, running_server
from vecstore.app import create_app
from vecstore.inference.registry import resolve_files
from vecstore.services.document_rerank import BEST_WEIGHTS, BEST_WEIGHTS_NO_CROSS
from vecstore.storage.text_index import score_texts

Client = TestClient[Litestar]
MODEL = "all-MiniLM-L6-v2"
QUERY = "What is machine learning?"
DOCS = [
    "Machine learning is a subset of artificial intelligence that learns from data.",
    "Python is a popular programming language for web development.",
    "Deep learning uses neural networks with multiple layers.",
    "The weather today is sunny and warm.",
    "Supervised learning requires labeled training data.",
]


@pytest.fixture(scope="module")
def models_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rerank-models")
    path = folder / "models.toml"
    path.write_text(ce.registry_entry(ce.build(folder / "reranker.onnx")))
    return path


def serve(data_dir: Path, **settings: Any) -> Iterator[Client]:
    app = create_app(make_settings(data_dir, **settings))
    with TestClient(app=app, raise_server_exceptions=False) as client:
        wait_ready(client)
        client.headers["x-api-key"] = ADMIN_KEY
        yield client


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Client]:
    """The built-in registry: an embedder, no cross-encoder."""
    yield from serve(tmp_path / "plain")


@pytest.fixture
def crossed(tmp_path: Path, models_file: Path) -> Iterator[Client]:
    """With the test cross-encoder registered (it becomes the default one)."""
    yield from serve(tmp_path / "crossed", models_file=models_file)


def post(client: Client, path: str, **body: Any) -> Any:
    r = client.post(path, json=body)
    assert r.status_code == 200, r.text
    return r.json()


def cosine01(client: Client, query: str, docs: list[str]) -> np.ndarray:
    host = client.app.state.services.models
    q = host.embed([query], None).vectors[0].astype(np.float64)
    d = host.embed(docs, None).vectors.astype(np.float64)
    return np.asarray((np.clip(d @ q, -1, 1) + 1) / 2)


def cross01(client: Client, query: str, docs: list[str]) -> np.ndarray:
    host = client.app.state.services.models
    encoder = host._runtime(host.registry.get("test-reranker")).model
    pairs, owner, _ = encoder.tokenize_chunks(query, docs)
    logits = ce.reference_logits([(p.ids, p.type_ids or []) for p in pairs])
    best = np.full(len(docs), -np.inf)
    np.maximum.at(best, np.asarray(owner), logits)
    return np.asarray(1 / (1 + np.exp(-best)))


def order_of(scores: np.ndarray) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


# -- shapes ------------------------------------------------------------------------------------
def test_v1_shape_documents_meta_and_usage(plain: Client) -> None:
    docs: list[Any] = [*DOCS[:3], {"text": DOCS[3], "id": "w", "year": 2024}, DOCS[4]]
    body = post(plain, "/v1/rerank", query=QUERY, documents=docs, return_documents=True)
    assert set(body) == {"id", "model", "object", "results", "meta", "usage"}
    assert body["object"] == "list"
    assert body["model"] == "all-MiniLM-L6-v2"
    meta = body["meta"]
    assert meta["api_version"] == {"version": "1"}
    assert meta["billed_units"] == {"search_units": 1}
    assert (meta["method"], meta["deployed_model_id"]) == ("fast", "all-MiniLM-L6-v2")
    assert "model_cross" not in meta
    assert "stage1_top_k" not in meta
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert sorted(r["index"] for r in body["results"]) == list(range(5))  # all, without top_n
    by_index = {r["index"]: r["document"] for r in body["results"]}
    assert by_index[3] == {"text": DOCS[3], "id": "w", "year": 2024}
    assert by_index[0] == {"text": DOCS[0]}
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    # without return_documents there is no "document" key at all (never null)
    body = post(plain, "/v1/rerank", query=QUERY, documents=DOCS, top_n=2)
    assert len(body["results"]) == 2
    assert all(set(r) == {"index", "relevance_score"} for r in body["results"])


def test_search_units_count_hundreds_of_documents(plain: Client) -> None:
    body = post(plain, "/v1/rerank", query="q", documents=[f"doc {i}" for i in range(250)])
    assert body["meta"]["billed_units"]["search_units"] == 3


def test_lenient_input_nulls_unknown_keys_and_extra_body(plain: Client) -> None:
    body = post(
        plain,
        "/v1/rerank",
        query=QUERY,
        documents=DOCS,
        model=None,
        top_n=None,
        return_documents=None,
        max_chunks_per_doc=None,
        truncate=None,
        method=None,
        user="someone",
        metadata={"a": 1},
        something_new=True,
        extra_body={"top_n": 2, "unknown": 1},
    )
    assert len(body["results"]) == 2


def test_v2_and_seed_paths(plain: Client) -> None:
    body = post(plain, "/v2/rerank", model="all-MiniLM-L6-v2", query=QUERY, documents=DOCS,
                top_n=3, max_tokens_per_doc=None, priority=1)  # fmt: skip
    assert set(body) == {"id", "results", "meta"}
    assert body["meta"] == {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}
    assert all(set(r) == {"index", "relevance_score"} for r in body["results"])
    seed = post(plain, "/api/v3/inference/reranker", query=QUERY, documents=DOCS, top_n=3)
    assert [r["index"] for r in seed["results"]] == [r["index"] for r in body["results"]]


def test_tei_and_infinity_on_one_path(plain: Client) -> None:
    tei = post(plain, "/rerank", query=QUERY, texts=DOCS, return_text=True)
    assert isinstance(tei, list)
    assert sorted(r["index"] for r in tei) == list(range(5))  # every text
    assert all(set(r) == {"index", "score", "text"} for r in tei)
    assert [r["score"] for r in tei] == sorted((r["score"] for r in tei), reverse=True)
    raw = post(plain, "/rerank", query=QUERY, texts=DOCS, raw_scores=True)
    assert min(r["score"] for r in raw) < 0.5  # raw cosine, not mapped to [0, 1]
    inf = post(plain, "/rerank", query=QUERY, documents=DOCS, top_n=2, return_documents=True)
    assert set(inf) == {"object", "results", "model", "usage", "id", "created"}
    assert inf["object"] == "rerank"
    assert all(isinstance(r["document"], str) for r in inf["results"])
    assert len(inf["results"]) == 2


# -- methods against oracles --------------------------------------------------------------------
def test_fast_is_bi_encoder_cosine_mapped_to_unit_interval(plain: Client) -> None:
    body = post(plain, "/v1/rerank", query=QUERY, documents=DOCS, method="fast")
    expected = cosine01(plain, QUERY, DOCS)
    assert [r["index"] for r in body["results"]] == order_of(expected)
    for r in body["results"]:
        assert r["relevance_score"] == pytest.approx(expected[r["index"]], abs=1e-5)
    assert body["results"][0]["index"] == 0


def test_standard_is_the_cross_encoder_on_every_document(crossed: Client) -> None:
    body = post(crossed, "/v1/rerank", query=QUERY, documents=DOCS)  # default: standard
    assert body["meta"]["method"] == "standard"
    assert body["model"] == body["meta"]["deployed_model_id"] == "test-reranker"
    expected = cross01(crossed, QUERY, DOCS)
    assert [r["index"] for r in body["results"]] == order_of(expected)
    for r in body["results"]:
        assert r["relevance_score"] == pytest.approx(expected[r["index"]], abs=1e-5)


def test_optimal_keeps_the_bi_encoders_best_and_reorders_them(crossed: Client) -> None:
    body = post(crossed, "/v1/rerank", query=QUERY, documents=DOCS, method="optimal",
                stage1_top_k=3)  # fmt: skip
    assert body["meta"]["stage1_top_k"] == 3
    assert body["meta"]["model_cross"] == "test-reranker"
    kept = sorted(order_of(cosine01(crossed, QUERY, DOCS))[:3])
    cross = cross01(crossed, QUERY, [DOCS[i] for i in kept])
    expected = [kept[j] for j in order_of(cross)]
    assert [r["index"] for r in body["results"]] == expected


def test_best_fuses_cross_encoder_bi_encoder_and_bm25(crossed: Client, plain: Client) -> None:
    fast = cosine01(crossed, QUERY, DOCS)
    bm25 = np.asarray(score_texts(QUERY, DOCS))
    lexical = (bm25 - bm25.min()) / (bm25.max() - bm25.min())
    cross = cross01(crossed, QUERY, DOCS)
    w_cross, w_bi, w_lex = BEST_WEIGHTS
    expected = w_cross * cross + w_bi * fast + w_lex * lexical
    body = post(crossed, "/v1/rerank", query=QUERY, documents=DOCS, method="best")
    assert [r["index"] for r in body["results"]] == order_of(expected)
    for r in body["results"]:
        assert r["relevance_score"] == pytest.approx(expected[r["index"]], abs=1e-5)
    # without a cross-encoder: the bi-encoder and BM25 only
    w_bi, w_lex = BEST_WEIGHTS_NO_CROSS
    expected = w_bi * cosine01(plain, QUERY, DOCS) + w_lex * lexical
    body = post(plain, "/v1/rerank", query=QUERY, documents=DOCS, method="best")
    for r in body["results"]:
        assert r["relevance_score"] == pytest.approx(expected[r["index"]], abs=1e-5)
    assert "model_cross" not in body["meta"]


def test_a_method_without_its_model_names_it(plain: Client) -> None:
    for method in ("standard", "optimal"):
        r = plain.post("/v1/rerank", json={"query": "q", "documents": ["d"], "method": method})
        assert r.status_code == 400, r.text
        assert "cross-encoder" in r.json()["message"]
        assert set(r.json()) == {"message", "detail"}


def test_model_may_name_a_cross_encoder_or_an_alias(crossed: Client) -> None:
    body = post(crossed, "/v1/rerank", model="BAAI/bge-reranker-v2-m3", query=QUERY,
                documents=DOCS)  # fmt: skip
    assert body["model"] == "test-reranker"
    r = crossed.post("/v1/rerank", json={"model": "rerank-v3.5", "query": "q", "documents": ["d"]})
    assert r.status_code == 400
    assert "all-MiniLM-L6-v2" in r.json()["message"]
    assert "test-reranker" in r.json()["message"]


# -- long documents -----------------------------------------------------------------------------
def test_a_long_documents_score_is_its_best_chunks(crossed: Client) -> None:
    filler = "the weather was sunny and warm all week. " * 40  # many chunks of 64 tokens
    long_doc = filler + "machine learning is learning from data."
    docs = [long_doc, "The weather was sunny."]
    body = post(crossed, "/v1/rerank", query=QUERY, documents=docs, method="standard")
    best = {r["index"]: r["relevance_score"] for r in body["results"]}
    first_chunk_only = post(crossed, "/v1/rerank", query=QUERY, documents=docs,
                            method="standard", max_chunks_per_doc=1)  # fmt: skip
    cut = {r["index"]: r["relevance_score"] for r in first_chunk_only["results"]}
    assert best[0] > cut[0]  # the relevant sentence is only in the last chunk
    from_end = post(crossed, "/v1/rerank", query=QUERY, documents=docs, method="standard",
                    max_chunks_per_doc=1, truncate="start")  # fmt: skip
    assert {r["index"]: r["relevance_score"] for r in from_end["results"]}[0] == best[0]
    assert body["usage"]["prompt_tokens"] > first_chunk_only["usage"]["prompt_tokens"]
    r = crossed.post("/v1/rerank", json={"query": QUERY, "documents": docs, "method": "standard",
                                        "max_chunks_per_doc": 2, "truncate": "none"})  # fmt: skip
    assert r.status_code == 400
    assert "documents[0]" in r.json()["message"]


def test_max_tokens_per_doc_makes_smaller_chunks(crossed: Client) -> None:
    doc = "alpha beta gamma delta " * 10
    small = post(crossed, "/v1/rerank", query="alpha", documents=[doc], max_tokens_per_doc=8)
    large = post(crossed, "/v1/rerank", query="alpha", documents=[doc])
    # 40 words in chunks of 8 tokens: 5 pairs, each repeating the query and special tokens
    assert small["usage"]["prompt_tokens"] > large["usage"]["prompt_tokens"]


def chunk_texts(client: Client, text: str, budget: int) -> list[str]:
    """An independent cut of ``text`` into spans of ``budget`` tokens of the embedder's own
    tokenizer (no special tokens), from its offsets."""
    host = client.app.state.services.models
    tokenizer = Tokenizer.from_file(str(resolve_files(host.registry.get(MODEL)).tokenizer))
    tokenizer.no_truncation()
    offsets = tokenizer.encode(text, add_special_tokens=False).offsets
    return [
        text[offsets[s][0] : offsets[min(s + budget, len(offsets)) - 1][1]]
        for s in range(0, len(offsets), budget)
    ]


def test_fast_scores_a_long_document_by_its_best_chunk(plain: Client) -> None:
    filler = "the weather was sunny and warm all week. " * 60  # ~600 tokens: 3 chunks of 254
    long_doc = filler + "machine learning is learning from data."
    docs = [long_doc, "The weather was sunny."]
    chunks = chunk_texts(plain, long_doc, 254)  # the model takes 256 with [CLS] and [SEP]
    assert len(chunks) == 3
    expected = cosine01(plain, QUERY, chunks).max()
    body = post(plain, "/v1/rerank", query=QUERY, documents=docs, method="fast")
    scores = {r["index"]: r["relevance_score"] for r in body["results"]}
    assert scores[0] == pytest.approx(expected, abs=1e-5)
    assert expected == pytest.approx(cosine01(plain, QUERY, chunks[-1:])[0], abs=1e-6)
    first = post(plain, "/v1/rerank", query=QUERY, documents=docs, method="fast",
                 max_chunks_per_doc=1)  # fmt: skip
    first_scores = {r["index"]: r["relevance_score"] for r in first["results"]}
    assert first_scores[0] == pytest.approx(cosine01(plain, QUERY, chunks[:1])[0], abs=1e-5)
    assert first_scores[0] < scores[0]  # the relevant sentence is only in the last chunk
    last = post(plain, "/v1/rerank", query=QUERY, documents=docs, method="fast",
                max_chunks_per_doc=1, truncate="start")  # fmt: skip
    assert {r["index"]: r["relevance_score"] for r in last["results"]}[0] == pytest.approx(
        scores[0], abs=1e-6
    )
    assert body["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"]
    # max_tokens_per_doc cuts smaller chunks for the bi-encoder too
    small = chunk_texts(plain, long_doc, 32)
    body = post(plain, "/v1/rerank", query=QUERY, documents=docs, method="fast",
                max_tokens_per_doc=32, max_chunks_per_doc=100)  # fmt: skip
    scores = {r["index"]: r["relevance_score"] for r in body["results"]}
    assert scores[0] == pytest.approx(cosine01(plain, QUERY, small).max(), abs=1e-5)
    r = plain.post("/v1/rerank", json={"query": QUERY, "documents": docs, "method": "fast",
                                      "max_chunks_per_doc": 2, "truncate": "none"})  # fmt: skip
    assert r.status_code == 400, r.text
    assert "documents[0]" in r.json()["message"]
    assert "3 chunks" in r.json()["message"]
    ok = post(plain, "/v1/rerank", query=QUERY, documents=docs, method="fast", truncate="none")
    assert ok["results"][0]["index"] == 0  # three chunks fit the default ten


def metric(client: Client, name: str) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_reranking_the_same_documents_again_skips_the_model(plain: Client) -> None:
    docs = [f"{d} (copy {i})" for i in range(3) for d in DOCS]
    first = post(plain, "/v1/rerank", query=QUERY, documents=docs, method="fast")
    runs = metric(plain, "vecstore_embedding_batch_texts_count")
    texts = metric(plain, "vecstore_embedding_batch_texts_sum")
    again = post(plain, "/v1/rerank", query="What is deep learning?", documents=docs,
                 method="fast")  # fmt: skip
    # only the new query reached the model: every document came from the cache
    assert metric(plain, "vecstore_embedding_batch_texts_sum") == texts + 1
    assert metric(plain, "vecstore_embedding_batch_texts_count") == runs + 1
    hits = 'vecstore_document_cache_lookups_total{model="all-MiniLM-L6-v2",result="hit"}'
    assert metric(plain, hits) == len(docs)
    assert again["usage"]["prompt_tokens"] > 0
    # the cached answer is the uncached one
    same = post(plain, "/v1/rerank", query=QUERY, documents=docs, method="fast")
    assert same["results"] == first["results"]
    assert same["usage"] == first["usage"]


def test_document_cache_entries_zero_turns_the_cache_off(tmp_path: Path) -> None:
    for client in serve(tmp_path / "nocache", document_cache_entries=0):
        post(client, "/v1/rerank", query=QUERY, documents=DOCS, method="fast")
        texts = metric(client, "vecstore_embedding_batch_texts_sum")
        post(client, "/v1/rerank", query=QUERY, documents=DOCS, method="fast")
        assert metric(client, "vecstore_embedding_batch_texts_sum") == texts + len(DOCS)
        assert metric(client, "vecstore_document_cache_lookups_total") == 0


def test_rank_fields_choose_what_is_scored(plain: Client) -> None:
    docs = [{"title": "Weather report", "body": "machine learning"},
            {"title": "Machine learning basics", "body": "sunny weather"}]  # fmt: skip
    by_title = post(plain, "/v1/rerank", query="machine learning", documents=docs,
                    rank_fields=["title"], return_documents=True)  # fmt: skip
    assert by_title["results"][0]["index"] == 1
    assert by_title["results"][0]["document"]["title"] == "Machine learning basics"
    r = plain.post("/v1/rerank", json={"query": "q", "documents": docs})  # no "text" key
    assert r.status_code == 400
    assert "documents[0]" in r.json()["message"]


# -- limits and errors --------------------------------------------------------------------------
def test_limits_and_error_shapes_per_dialect(tmp_path: Path) -> None:
    for client in serve(tmp_path / "small", max_rerank_documents=3):
        too_many = {"query": "q", "documents": ["a", "b", "c", "d"]}
        r = client.post("/v1/rerank", json=too_many)
        assert r.status_code == 400
        assert "3" in r.json()["message"]
        assert post(client, "/v1/rerank", query="q", documents=["a", "b", "c"])["results"]
        r = client.post("/v1/rerank", json={"query": "q", "documents": []})
        assert (r.status_code, set(r.json())) == (400, {"message", "detail"})
        r = client.post("/v1/rerank", json={"documents": ["a"]})
        assert r.status_code == 400
        assert "query" in r.json()["message"]
        r = client.post("/v2/rerank", json={"query": "q", "documents": ["a"]},
                        headers={"x-api-key": "wrong"})  # fmt: skip
        assert (r.status_code, set(r.json())) == (401, {"message", "detail"})
        r = client.post("/rerank", json={"query": "q", "texts": []})
        assert r.status_code == 400
        assert r.json()["error_type"] == "Validation"
        r = client.post("/rerank", json={"query": "q", "documents": []})
        assert r.status_code == 400
        assert r.json()["error"]["type"] == "invalid_request_error"
        r = client.post("/rerank", json={"query": "q", "texts": ["a"]},
                        headers={"x-api-key": "wrong"})  # fmt: skip
        assert (r.status_code, r.json()["error_type"]) == (401, "Unauthorized")


# -- real clients against a live server ----------------------------------------------------------
class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class _Document(pydantic.BaseModel):
    text: str


class _Result(_Strict):
    index: int
    relevance_score: float
    document: _Document | None = None


class _ApiVersion(_Strict):
    version: str


class _BilledUnits(_Strict):
    search_units: int


class _Meta(pydantic.BaseModel):
    api_version: _ApiVersion
    billed_units: _BilledUnits


class _Usage(_Strict):
    prompt_tokens: int
    total_tokens: int


class _V1Response(_Strict):
    """The documented response, validated strictly (LiteLLM-style)."""

    id: str
    model: str
    object: str
    results: list[_Result]
    meta: _Meta
    usage: _Usage


def test_real_clients_against_a_live_server(tmp_path: Path, models_file: Path) -> None:
    cohere = pytest.importorskip("cohere")  # a dev dependency: present in `make test`
    key = new_admin_key()
    env = {"VECSTORE_MODELS_FILE": str(models_file)}
    with running_server(tmp_path / "data", admin_key=key, env=env) as server:
        v1 = cohere.Client(base_url=server.base_url, api_key=key, timeout=30)
        response = v1.rerank(model="test-reranker", query=QUERY, documents=DOCS, top_n=3,
                             return_documents=True)  # fmt: skip
        assert response.results[0].index == 0
        assert response.results[0].document.text == DOCS[0]
        objects = [{"text": d, "source": f"s{i}"} for i, d in enumerate(DOCS)]
        response = v1.rerank(model="all-MiniLM-L6-v2", query=QUERY, documents=objects,
                             return_documents=True)  # fmt: skip
        assert len(response.results) == len(DOCS)
        v2 = cohere.ClientV2(base_url=server.base_url, api_key=key, timeout=30)
        response = v2.rerank(model="test-reranker", query=QUERY, documents=DOCS, top_n=2)
        assert response.results[0].index == 0
        assert len(response.results) == 2
        with httpx.Client(base_url=server.base_url, timeout=30,
                          headers={"Authorization": f"Bearer {key}"}) as http:  # fmt: skip
            tei = http.post("/rerank", json={"query": QUERY, "texts": DOCS, "return_text": True})
            assert tei.status_code == 200
            assert tei.json()[0]["index"] == 0
            inf = http.post("/rerank", json={"query": QUERY, "documents": DOCS, "top_n": 1})
            assert inf.json()["results"][0]["index"] == 0
            raw = http.post(
                "/v1/rerank",
                json={
                    "query": QUERY,
                    "documents": DOCS,
                    "return_documents": True,
                    "method": "best",
                },
            )
            strict = _V1Response.model_validate(raw.json())  # fmt: skip
            assert all(0.0 <= r.relevance_score <= 1.0 for r in strict.results)
            assert not any(math.isnan(r.relevance_score) for r in strict.results)
