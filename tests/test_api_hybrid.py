"""Hybrid search and two-stage query through HTTP, checked against independent oracles: a BM25
written from its formula, numpy's exact vector scores, and the two fusion rules."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import ADMIN_KEY, make_settings, wait_ready
from tests.oracles import assert_error
from vecstore.app import create_app
from vecstore.storage.database import create_engine, migrations_dir

Client = TestClient[Litestar]
Json = dict[str, Any]

# Words the Porter stemmer leaves as they are, so the oracle needs no stemmer.
WORDS = ["cat", "dog", "red", "blue", "fish", "bird", "tree", "sun", "moon", "star"]


def ok(response: Any) -> Json:
    assert response.status_code == 200, response.text
    data: Json = response.json()["data"]
    return data


def bm25_oracle(docs: dict[str, str], query: str) -> dict[str, float]:
    """FTS5's BM25 (k1 = 1.2, b = 0.75, IDF floored at 1e-6) over docs with content."""
    tokens = {i: d.lower().split() for i, d in docs.items() if d}
    n_docs = len(tokens)
    avgdl = sum(len(t) for t in tokens.values()) / n_docs
    terms = list(dict.fromkeys(query.lower().split()))
    out: dict[str, float] = {}
    for ext, toks in tokens.items():
        counts = Counter(toks)
        score = 0.0
        for term in terms:
            hits = sum(1 for t in tokens.values() if term in t)
            if not counts[term]:
                continue
            idf = math.log((n_docs - hits + 0.5) / (hits + 0.5))
            idf = idf if idf > 0 else 1e-6
            tf = counts[term]
            score += idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * len(toks) / avgdl))
        out[ext] = score
    return out


def minmax(values: np.ndarray, constant: float) -> np.ndarray:
    span = values.max() - values.min()
    if span <= 0:
        return np.full(len(values), constant)
    return (values - values.min()) / span


def exact_scores(vectors: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return unit @ (query / np.linalg.norm(query))
    if metric == "ip":
        return vectors @ query
    return -np.linalg.norm(vectors - query, axis=1)


class Corpus:
    """A small collection with random vectors and word contents, and its oracle data."""

    def __init__(self, client: Client, name: str, metric: str, n: int = 40, seed: int = 7):
        rng = random.Random(seed)
        self.name = name
        self.metric = metric
        self.ids = [f"r{i}" for i in range(n)]
        self.vectors = np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)
        self.docs = {
            ext: " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))) for ext in self.ids
        }
        self.docs[self.ids[-1]] = ""  # one record without content
        self.meta = {ext: {"n": i, "even": i % 2 == 0} for i, ext in enumerate(self.ids)}
        r = client.post("/v1/collections", json={"name": name, "dim": 8, "distance_metric": metric})
        assert r.status_code == 201, r.text
        items = [
            {
                "external_id": ext,
                "vector": self.vectors[i].tolist(),
                "metadata": self.meta[ext],
                "content": self.docs[ext],
            }
            for i, ext in enumerate(self.ids)
        ]
        ok(client.post(f"/v1/collections/{name}/bulk_upsert", json={"items": items}))

    def vector_scores(self, query: np.ndarray, metric: str | None = None) -> dict[str, float]:
        scores = exact_scores(self.vectors.astype(np.float64), query, metric or self.metric)
        return dict(zip(self.ids, scores.tolist(), strict=True))


def hybrid(client: Client, name: str, **body: Any) -> list[Json]:
    hits: list[Json] = ok(client.post(f"/v1/collections/{name}/hybrid_search", json=body))[
        "results"
    ]
    return hits


# -- hybrid search ------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_weighted_fusion_matches_the_oracle(client: Client, metric: str) -> None:
    corpus = Corpus(client, f"h-{metric}", metric)
    query = np.random.default_rng(1).normal(size=8)
    text = "red fish under the sun"
    for alpha in (0.0, 0.3, 0.5, 1.0):
        hits = hybrid(
            client, corpus.name, query_text=text, vector=query.tolist(), k=10, alpha=alpha
        )
        bm25 = bm25_oracle(corpus.docs, text)
        vec = corpus.vector_scores(query)
        # 40 records, legs 100 deep: every record is a candidate of the vector leg.
        ids = corpus.ids
        v = np.asarray([vec[i] for i in ids])
        t = np.asarray([bm25.get(i, 0.0) for i in ids])
        fused = alpha * minmax(v, 1.0) + (1 - alpha) * minmax(t, 1.0 if t.max() > 0 else 0.0)
        expected = sorted(range(len(ids)), key=lambda j: (-fused[j], j))[:10]
        assert [h["external_id"] for h in hits] == [ids[j] for j in expected]
        for h in hits:
            j = ids.index(h["external_id"])
            assert h["score"] == pytest.approx(fused[j], abs=1e-6)
            assert h["vector_score"] == pytest.approx(vec[h["external_id"]], abs=1e-5)
            assert h["text_score"] == pytest.approx(bm25.get(h["external_id"], 0.0), abs=1e-6)
            assert "distance" not in h  # a fused score is not a distance
            assert h["metadata"] == corpus.meta[h["external_id"]]


def test_rrf_fusion_matches_the_oracle(client: Client) -> None:
    corpus = Corpus(client, "rrf", "cosine")
    query = np.random.default_rng(2).normal(size=8)
    text = "blue bird in a tree"
    hits = hybrid(client, corpus.name, query_text=text, vector=query.tolist(), k=15, fusion="rrf")
    bm25 = bm25_oracle(corpus.docs, text)
    vec = corpus.vector_scores(query)
    vector_rank = {e: r for r, e in enumerate(sorted(vec, key=lambda e: -vec[e]), start=1)}
    position = {e: i for i, e in enumerate(corpus.ids)}  # ties: older record first
    matched = sorted((e for e in bm25 if bm25[e] > 0), key=lambda e: (-bm25[e], position[e]))
    text_rank = {e: r for r, e in enumerate(matched, start=1)}
    rrf = {
        e: 1 / (60 + vector_rank[e]) + (1 / (60 + text_rank[e]) if e in text_rank else 0.0)
        for e in corpus.ids
    }
    expected = sorted(rrf, key=lambda e: (-rrf[e], position[e]))[:15]
    assert [h["external_id"] for h in hits] == expected
    for h in hits:
        assert h["score"] == pytest.approx(rrf[h["external_id"]], rel=1e-9)


def test_keyword_only_search_needs_no_embedding_model(client: Client) -> None:
    corpus = Corpus(client, "kw", "cosine")  # dim 8: no embedding model produces that
    text = "moon star"
    hits = hybrid(client, corpus.name, query_text=text, alpha=0.0, k=5, include_content=True)
    bm25 = bm25_oracle(corpus.docs, text)
    position = {e: i for i, e in enumerate(corpus.ids)}
    best = sorted((e for e in bm25 if bm25[e] > 0), key=lambda e: (-bm25[e], position[e]))[:5]
    assert [h["external_id"] for h in hits] == best
    assert all("vector_score" not in h for h in hits)
    assert all(h["content"] == corpus.docs[h["external_id"]] for h in hits)
    # With the vector leg on, the text must be embedded: this collection cannot.
    r = client.post("/v1/collections/kw/hybrid_search", json={"query_text": text, "alpha": 0.5})
    assert_error(r, 400, "embedding_unavailable")


def test_filters_apply_to_both_legs_and_never_underfill(client: Client) -> None:
    corpus = Corpus(client, "filt", "cosine", n=60)
    query = np.random.default_rng(3).normal(size=8)
    text = "cat dog"
    only_odd = {"even": False}
    for fusion_rule in ("weighted", "rrf"):
        for alpha in (0.0, 0.5):
            hits = hybrid(
                client,
                corpus.name,
                query_text=text,
                vector=query.tolist(),
                alpha=alpha,
                fusion=fusion_rule,
                k=25,
                filters=only_odd,
            )
            assert all(corpus.meta[h["external_id"]]["even"] is False for h in hits)
            odd = [e for e in corpus.ids if not corpus.meta[e]["even"]]
            if alpha == 0.0 and fusion_rule == "weighted":
                assert len(hits) == 25  # every odd record is a candidate through the vector leg
            else:
                assert len(hits) == min(25, len(odd))


def test_offset_pages_are_slices_of_one_ranking(client: Client) -> None:
    corpus = Corpus(client, "pages", "ip")
    body = {"query_text": "sun tree", "vector": [0.5] * 8}
    full = [h["external_id"] for h in hybrid(client, corpus.name, **body, k=12)]
    page = [h["external_id"] for h in hybrid(client, corpus.name, **body, k=4, offset=4)]
    assert page == full[4:8]


def test_keyword_index_follows_updates_deletes_and_drops(client: Client) -> None:
    name = "live"
    ok_create = client.post("/v1/collections", json={"name": name, "dim": 2})
    assert ok_create.status_code == 201
    upsert = f"/v1/collections/{name}/upsert"
    ok(client.post(upsert, json={"external_id": "a", "vector": [1, 0], "content": "red fish"}))
    ok(client.post(upsert, json={"external_id": "b", "vector": [0, 1], "content": "blue bird"}))

    def keyword(text: str) -> list[str]:
        return [h["external_id"] for h in hybrid(client, name, query_text=text, alpha=0.0)]

    assert keyword("fish") == ["a"]
    # A vector-only update keeps the stored content, and the content stays searchable.
    ok(client.post(upsert, json={"external_id": "a", "vector": [1, 1]}))
    assert keyword("fish") == ["a"]
    # New content replaces the old words.
    ok(client.post(upsert, json={"external_id": "a", "vector": [1, 1], "content": "green tree"}))
    assert keyword("fish") == []
    assert keyword("tree") == ["a"]
    ok(client.post(upsert, json={"external_id": "a", "vector": [1, 1], "content": None}))
    assert keyword("tree") == []
    ok(client.post(f"/v1/collections/{name}/delete_batch", json={"external_ids": ["b"]}))
    assert keyword("bird") == []
    ok(
        client.post(
            upsert,
            json={"external_id": "c", "vector": [1, 0], "content": "red sun", "metadata": {"x": 1}},
        )
    )
    assert keyword("red") == ["c"]
    ok(client.post(f"/v1/collections/{name}/delete_by_filter", json={"filters": {"x": 1}}))
    assert keyword("red") == []
    ok(client.post(upsert, json={"external_id": "d", "vector": [1, 0], "content": "red moon"}))
    r = client.delete(f"/v1/collections/{name}")
    assert r.status_code == 200
    assert client.post("/v1/collections", json={"name": name, "dim": 2}).status_code == 201
    assert keyword("red") == []


def test_query_text_is_never_read_as_fts_syntax(client: Client) -> None:
    Corpus(client, "syntax", "cosine")
    for text in ['"cat', "cat AND NOT dog", "NEAR(cat dog)", "cat*", "^cat", "-- '; DROP"]:
        hits = hybrid(client, "syntax", query_text=text, alpha=0.0, k=3)
        assert isinstance(hits, list)
    # Only punctuation: no words, so the keyword leg is empty (and the request is still fine).
    assert hybrid(client, "syntax", query_text="!!! ???", vector=[1.0] * 8, k=3)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"query_text": "   "}, "query_text"),
        ({"query_text": "cat", "alpha": 1.5}, "alpha"),
        ({"query_text": "cat", "alpha": -0.1}, "alpha"),
        ({"query_text": "cat", "fusion": "max"}, "fusion"),
        ({"query_text": "cat", "k": 0}, "k"),
        ({"query_text": "cat", "vector": [1, 2]}, "dimensions"),
        ({"query_text": "cat", "filters": {"n": {"$near": 1}}}, "$near"),
    ],
)
def test_hybrid_search_bad_input(client: Client, body: Json, needle: str) -> None:
    Corpus(client, "bad", "cosine", n=5)
    r = client.post("/v1/collections/bad/hybrid_search", json={"alpha": 0.0, **body})
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"]


def test_hybrid_with_embedded_text_and_timing(client: Client) -> None:
    assert client.post("/v1/collections", json={"name": "text", "dim": 384}).status_code == 201
    sentences = {
        "pets": "My cat sleeps on the sofa all day",
        "code": "Write unit tests for the Python parser",
        "food": "A recipe for tomato soup with basil",
    }
    items = [{"external_id": k, "text": v} for k, v in sentences.items()]
    ok(client.post("/v1/collections/text/bulk_upsert", json={"items": items}))
    data = ok(
        client.post(
            "/v1/collections/text/hybrid_search",
            json={"query_text": "kitten napping on a couch", "k": 3, "include_timing": True},
        )
    )
    assert data["results"][0]["external_id"] == "pets"
    assert data["timing_ms"]["embedding_ms"] > 0
    assert set(data["timing_ms"]) == {"embedding_ms", "search_ms", "total_ms"}


def test_keyword_index_is_backfilled_for_collections_made_before_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    engine = create_engine(f"sqlite:///{data_dir / 'vecstore.db'}")
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    vector = np.asarray([1.0, 0.0], dtype="<f4").tobytes()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO collections (id, name, dim, distance_metric, index_params,"
                " next_internal_id, created_at, updated_at) VALUES (1, 'old', 2, 'cosine',"
                " '{\"type\": \"flat\"}', 2, 'x', 'x')"
            )
        )
        for iid, content in ((0, "old red fish"), (1, None)):
            conn.execute(
                sa.text(
                    "INSERT INTO records (collection_id, internal_id, external_id, content)"
                    " VALUES (1, :i, :e, :c)"
                ),
                {"i": iid, "e": f"e{iid}", "c": content},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO record_vectors (collection_id, internal_id, vector)"
                    " VALUES (1, :i, :v)"
                ),
                {"i": iid, "v": vector},
            )
    engine.dispose()
    app = create_app(make_settings(data_dir))
    with TestClient(app=app, raise_server_exceptions=False) as c:
        wait_ready(c)
        c.headers["x-api-key"] = ADMIN_KEY
        hits = hybrid(c, "old", query_text="fish", alpha=0.0)
        assert [h["external_id"] for h in hits] == ["e0"]


# -- two-stage query ----------------------------------------------------------------------------
class FakeCrossEncoder:
    """Scores a document by how many times it contains the query's first word."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], str | None]] = []

    def score(self, query: str, documents: Sequence[str], model: str | None) -> list[float]:
        self.calls.append((query, list(documents), model))
        word = query.split()[0]
        return [d.split().count(word) / 10 for d in documents]


def query(client: Client, name: str, **body: Any) -> Json:
    return ok(client.post(f"/v1/collections/{name}/query", json=body))


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_query_vector_method_rescores_exactly(client: Client, metric: str) -> None:
    corpus = Corpus(client, f"q-{metric}", metric)
    q = np.random.default_rng(4).normal(size=8)
    data = query(client, corpus.name, vector=q.tolist(), k=20, top_n=5, include_timing=True)
    vec = corpus.vector_scores(q)
    best = sorted(vec, key=lambda e: -vec[e])[:5]
    assert [h["external_id"] for h in data["results"]] == best
    for h in data["results"]:
        assert h["rerank_score"] == pytest.approx(vec[h["external_id"]], abs=1e-5)
        assert h["retrieval_score"] == pytest.approx(h["rerank_score"], abs=1e-5)
        assert h["score"] == h["rerank_score"]
        if metric == "l2":
            assert h["distance"] == pytest.approx(-h["score"], abs=1e-6)
    assert set(data["timing_ms"]) == {"embedding_ms", "search_ms", "rerank_ms", "total_ms"}


def test_query_hybrid_method_fuses_over_the_candidates(client: Client) -> None:
    corpus = Corpus(client, "qh", "cosine")
    q = np.random.default_rng(5).normal(size=8)
    text = "star moon"
    # vector wins for retrieval; the text feeds the keyword half of the rerank
    data = query(
        client,
        corpus.name,
        vector=q.tolist(),
        text=text,
        k=15,
        top_n=15,
        rerank={"method": "hybrid", "alpha": 0.25},
    )
    vec = corpus.vector_scores(q)
    candidates = sorted(vec, key=lambda e: -vec[e])[:15]
    bm25 = bm25_oracle(corpus.docs, text)
    v = np.asarray([vec[e] for e in candidates])
    t = np.asarray([bm25.get(e, 0.0) for e in candidates])
    fused = 0.25 * minmax(v, 1.0) + 0.75 * minmax(t, 1.0 if t.max() > 0 else 0.0)
    order = sorted(range(15), key=lambda j: (-fused[j], j))
    assert [h["external_id"] for h in data["results"]] == [candidates[j] for j in order]
    for h in data["results"]:
        j = candidates.index(h["external_id"])
        assert h["rerank_score"] == pytest.approx(fused[j], abs=1e-6)
        assert h["retrieval_score"] == pytest.approx(vec[h["external_id"]], abs=1e-5)


def test_query_cross_method_uses_the_cross_encoder_seam(tmp_path: Path) -> None:
    fake = FakeCrossEncoder()
    app = create_app(make_settings(tmp_path / "d"), cross_encoder=fake)
    with TestClient(app=app, raise_server_exceptions=False) as c:
        wait_ready(c)
        c.headers["x-api-key"] = ADMIN_KEY
        corpus = Corpus(c, "qc", "cosine")
        q = [1.0] * 8
        data = query(
            c,
            "qc",
            vector=q,
            text="fish please",
            k=30,
            top_n=4,
            rerank={"method": "cross", "model": "my-reranker"},
        )
        vec = corpus.vector_scores(np.asarray(q))
        candidates = sorted(vec, key=lambda e: -vec[e])[:30]
        (call,) = fake.calls
        assert call[0] == "fish please"
        assert call[1] == [corpus.docs[e] for e in candidates]  # the candidates' content
        assert call[2] == "my-reranker"
        scores = [corpus.docs[e].split().count("fish") / 10 for e in candidates]
        order = sorted(range(30), key=lambda j: (-scores[j], j))[:4]
        assert [h["external_id"] for h in data["results"]] == [candidates[j] for j in order]


def test_query_errors(client: Client) -> None:
    Corpus(client, "qe", "cosine", n=5)
    path = "/v1/collections/qe/query"
    q = [1.0] * 8
    r = client.post(path, json={"vector": q, "rerank": {"method": "cross"}})
    assert "needs the query as 'text'" in assert_error(r, 400, "bad_request")["message"]
    r = client.post(path, json={"vector": q, "text": "fish", "rerank": {"method": "cross"}})
    assert "cross-encoder" in assert_error(r, 400, "model_not_configured")["message"]
    r = client.post(path, json={"vector": q, "rerank": {"method": "bm25"}})
    assert "rerank.method" in assert_error(r, 400, "bad_request")["message"]
    r = client.post(path, json={"vector": q, "top_n": 0})
    assert "top_n" in assert_error(r, 400, "limit_exceeded")["message"]
    r = client.post(path, json={"text": "fish"})  # dim 8: no model embeds it
    assert_error(r, 400, "embedding_unavailable")
    r = client.post("/v1/collections/nope/query", json={"vector": q})
    assert_error(r, 404, "collection_not_found")


def test_query_with_text_end_to_end(client: Client) -> None:
    assert client.post("/v1/collections", json={"name": "qt", "dim": 384}).status_code == 201
    docs = {
        "a": "The Eiffel Tower is in Paris",
        "b": "Bananas are rich in potassium",
        "c": "Paris is the capital of France",
    }
    items = [{"external_id": k, "text": v} for k, v in docs.items()]
    ok(client.post("/v1/collections/qt/bulk_upsert", json={"items": items}))
    data = query(
        client,
        "qt",
        text="What is the capital of France?",
        k=3,
        top_n=2,
        rerank={"method": "hybrid"},
        include_timing=True,
        include_content=True,
    )
    assert data["results"][0]["external_id"] == "c"
    assert data["results"][0]["content"] == docs["c"]
    assert len(data["results"]) == 2
    assert data["timing_ms"]["embedding_ms"] > 0
