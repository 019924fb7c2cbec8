"""The embedding dialects: OpenAI /v1/embeddings, /embeddings and /v1/models; TEI /embed.

In-process contract tests with the real bundled model, then the real ``openai`` SDK against a
live server process (``base_url`` with and without ``/v1``, its default base64 path).
"""

from __future__ import annotations

import base64
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import ADMIN_KEY, make_settings, wait_ready
from tests.server_process import new_admin_key, running_server
from vecstore.app import create_app

Client = TestClient[Litestar]


def embed(app: Litestar, texts: list[str]) -> np.ndarray:
    """The oracle: the model host itself, bypassing HTTP."""
    vectors: np.ndarray = app.state.services.embedder.embed(texts, None).vectors
    return vectors


def openai_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    return error


# -- OpenAI: shape and values ------------------------------------------------------------------
def test_openai_float_response_shape_and_values(client: Client, app: Litestar) -> None:
    texts = ["The cat sat on the mat.", "", "Quantum field theory"]
    r = client.post("/v1/embeddings", json={"input": texts, "model": "all-MiniLM-L6-v2"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"object", "data", "model", "usage"}
    assert body["object"] == "list"
    assert body["model"] == "all-MiniLM-L6-v2"
    assert [(d["object"], d["index"]) for d in body["data"]] == [
        ("embedding", 0),
        ("embedding", 1),
        ("embedding", 2),
    ]
    got = np.asarray([d["embedding"] for d in body["data"]], dtype=np.float32)
    np.testing.assert_allclose(got, embed(app, texts), atol=1e-6)
    usage = body["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"] > 0


def test_openai_string_input_base64_and_default_model(client: Client, app: Litestar) -> None:
    r = client.post("/embeddings", json={"input": "hello world", "encoding_format": "base64"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["data"]) == 1
    raw = base64.b64decode(body["data"][0]["embedding"])
    vector = np.frombuffer(raw, dtype="<f4")
    np.testing.assert_allclose(vector, embed(app, ["hello world"])[0], atol=0)
    assert body["model"] == "all-MiniLM-L6-v2"  # no model named: the default, by its id


def test_openai_alias_and_lenient_input(client: Client) -> None:
    r = client.post(
        "/v1/embeddings",
        json={
            "input": "x",
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "encoding_format": None,
            "dimensions": None,
            "user": None,
            "something_new": {"ignored": True},
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "all-MiniLM-L6-v2"
    assert isinstance(r.json()["data"][0]["embedding"], list)


def test_openai_dimensions_truncate_and_renormalise(client: Client, app: Litestar) -> None:
    r = client.post("/v1/embeddings", json={"input": ["alpha", "beta"], "dimensions": 64})
    assert r.status_code == 200, r.text
    got = np.asarray([d["embedding"] for d in r.json()["data"]])
    full = embed(app, ["alpha", "beta"])[:, :64]
    expected = full / np.linalg.norm(full, axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    ("body", "code", "param", "needle"),
    [
        ({"input": [[101, 2023]]}, "token_input_unsupported", "input", "check_embedding_ctx"),
        ({"input": [101, 2023]}, "token_input_unsupported", "input", "check_embedding_ctx"),
        ({"input": []}, "bad_request", "input", "empty"),
        ({"input": 5}, "bad_request", "input", "string"),
        ({}, "bad_request", "input", "string"),
        ({"input": "x", "model": "nope"}, "unknown_model", "model", "all-MiniLM-L6-v2"),
        ({"input": "x", "dimensions": 385}, "bad_request", "dimensions", "384"),
        ({"input": "x", "dimensions": 0}, "bad_request", "dimensions", "384"),
        ({"input": "x", "encoding_format": "int8"}, "bad_request", "encoding_format", "base64"),
    ],
)
def test_openai_bad_input_is_400_in_openai_shape(
    client: Client, body: dict[str, Any], code: str, param: str, needle: str
) -> None:
    error = openai_error(client.post("/v1/embeddings", json=body), 400, code)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert needle in error["message"]


def test_openai_input_count_and_length_limits(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path / "d", max_embedding_inputs=3, max_text_chars=20))
    with TestClient(app=app, raise_server_exceptions=False) as c:
        wait_ready(c)
        c.headers["x-api-key"] = ADMIN_KEY
        error = openai_error(
            c.post("/v1/embeddings", json={"input": ["a"] * 4}), 400, "limit_exceeded"
        )
        assert "3" in error["message"]
        error = openai_error(
            c.post("/v1/embeddings", json={"input": ["ok", "y" * 21]}), 400, "limit_exceeded"
        )
        assert "'input[1]'" in error["message"]


def test_openai_auth_errors_and_undecodable_body(client: Client) -> None:
    anonymous = {"x-api-key": ""}
    error = openai_error(
        client.post("/v1/embeddings", json={"input": "x"}, headers=anonymous),
        401,
        "unauthorized",
    )
    assert error["type"] == "authentication_error"
    r = client.post(
        "/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"}
    )
    openai_error(r, 422, "invalid_body")
    r = client.post(
        "/v1/embeddings", json={"input": "x"}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert r.status_code == 200


def test_read_key_suffices_and_auth_disabled_needs_no_header(
    client: Client, tmp_path: Path
) -> None:
    key = client.post("/v1/admin/keys", json={"name": "reader", "role": "read"}).json()["data"]
    r = client.post("/v1/embeddings", json={"input": "x"}, headers={"x-api-key": key["key"]})
    assert r.status_code == 200, r.text
    app = create_app(make_settings(tmp_path / "open", auth_enabled=False))
    with TestClient(app=app, raise_server_exceptions=False) as c:
        wait_ready(c)
        assert c.post("/v1/embeddings", json={"input": "x"}).status_code == 200
        assert c.post("/embed", json={"inputs": "x"}).status_code == 200


def test_models_list_shape(client: Client) -> None:
    for path in ("/v1/models", "/models"):
        r = client.get(path)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["object"] == "list"
        assert {
            "id": "all-MiniLM-L6-v2",
            "object": "model",
            "owned_by": "vecstore",
            "kind": "embedding",
            "dimension": 384,
            "max_tokens": 256,
        } in body["data"]


# -- TEI /embed ----------------------------------------------------------------------------------
def test_tei_embed_bare_list_and_normalize_false(client: Client, app: Litestar) -> None:
    r = client.post("/embed", json={"inputs": ["one", "two"]})
    assert r.status_code == 200, r.text
    got = np.asarray(r.json())
    assert got.shape == (2, 384)
    np.testing.assert_allclose(got, embed(app, ["one", "two"]), atol=1e-6)
    raw = np.asarray(client.post("/embed", json={"inputs": "one", "normalize": False}).json())
    assert raw.shape == (1, 384)
    assert np.linalg.norm(raw[0]) > 1.5  # MiniLM's pooled vectors are far from unit length
    np.testing.assert_allclose(raw[0] / np.linalg.norm(raw[0]), got[0], atol=1e-5)


def test_tei_truncate_false_refuses_long_input(client: Client) -> None:
    long = "word " * 400
    assert client.post("/embed", json={"inputs": long}).status_code == 200  # default: truncate
    r = client.post("/embed", json={"inputs": ["short", long], "truncate": False})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error_type"] == "Validation"
    assert "'inputs[1]'" in body["error"]
    assert "256" in body["error"]


def test_tei_errors_have_tei_shape(client: Client) -> None:
    r = client.post("/embed", json={"inputs": []})
    assert r.status_code == 400
    assert set(r.json()) == {"error", "error_type"}
    r = client.post("/embed", json={"inputs": "x"}, headers={"x-api-key": "wrong"})
    assert r.status_code == 401
    assert r.json()["error_type"] == "Unauthorized"
    r = client.post("/embed", json={"inputs": "x", "truncation_direction": "left"})
    assert r.status_code == 400
    assert "left" in r.json()["error"]


def test_batch_and_query_cache_metrics_are_exported(client: Client) -> None:
    client.post("/v1/embeddings", json={"input": ["a", "b", "c"]})
    text = client.get("/metrics").text
    assert 'vecstore_embedding_batch_texts_count{model="all-MiniLM-L6-v2"} 1.0' in text
    assert 'vecstore_embedding_batch_texts_sum{model="all-MiniLM-L6-v2"} 3.0' in text
    assert 'vecstore_embedding_batch_duration_seconds_count{model="all-MiniLM-L6-v2"}' in text
    assert client.post("/v1/collections", json={"name": "m", "dim": 384}).status_code == 201
    for _ in range(3):  # the same query: one miss, then hits
        r = client.post("/v1/collections/m/search", json={"text": "same question"})
        assert r.status_code == 200, r.text
    text = client.get("/metrics").text
    model = 'model="all-MiniLM-L6-v2"'
    assert f'vecstore_query_cache_lookups_total{{{model},result="miss"}} 1.0' in text
    assert f'vecstore_query_cache_lookups_total{{{model},result="hit"}} 2.0' in text


# -- the real openai SDK against a live server ----------------------------------------------------
def test_openai_sdk_against_a_live_server(tmp_path: Path) -> None:
    openai = pytest.importorskip("openai")  # a dev dependency: present in `make test`
    key = new_admin_key()
    with running_server(tmp_path / "data", admin_key=key) as server:
        for base_url in (server.base_url + "/v1", server.base_url):
            client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)
            # The SDK's default: it asks for base64 and decodes it itself.
            default = client.embeddings.create(
                model="all-MiniLM-L6-v2", input=["a red apple", "a green pear"]
            )
            assert [d.index for d in default.data] == [0, 1]
            assert len(default.data[0].embedding) == 384
            assert default.usage.prompt_tokens > 0
            floats = client.embeddings.create(
                model="all-MiniLM-L6-v2", input="a red apple", encoding_format="float"
            )
            np.testing.assert_allclose(
                floats.data[0].embedding, default.data[0].embedding, atol=1e-6
            )
            short = client.embeddings.create(
                model="all-MiniLM-L6-v2", input="a red apple", dimensions=32
            )
            assert len(short.data[0].embedding) == 32
            assert [m.id for m in client.models.list().data] == ["all-MiniLM-L6-v2"]
            with pytest.raises(openai.BadRequestError) as caught:
                client.embeddings.create(model="not-a-model", input="x")
            assert caught.value.code == "unknown_model"
            stranger = openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0)
            with pytest.raises(openai.AuthenticationError):
                stranger.embeddings.create(model="all-MiniLM-L6-v2", input="x")


def test_concurrent_requests_to_a_live_server_share_batches_and_get_their_own_vectors(
    tmp_path: Path,
) -> None:
    key = new_admin_key()
    texts = [f"request number {i} asks about topic {i * 7 % 11}" for i in range(24)]
    # One worker and a long window: while one batch runs, the others queue up and merge.
    env = {"VECSTORE_EMBEDDING_WORKERS": "1", "VECSTORE_EMBEDDING_BATCH_WINDOW_MS": "50"}
    with running_server(tmp_path / "data", admin_key=key, env=env) as server:
        with server.client() as client:
            alone = {
                t: client.post("/v1/embeddings", json={"input": t}).json()["data"][0]["embedding"]
                for t in texts
            }
            before = _batch_counts(client.get("/metrics").text)
        barrier = threading.Barrier(len(texts))

        def call(text: str) -> list[float]:
            with server.client() as own:
                barrier.wait(timeout=30)
                r = own.post("/v1/embeddings", json={"input": text})
                assert r.status_code == 200, r.text
                vector: list[float] = r.json()["data"][0]["embedding"]
                return vector

        with ThreadPoolExecutor(len(texts)) as pool:
            together = dict(zip(texts, pool.map(call, texts), strict=True))
        for text in texts:
            np.testing.assert_allclose(together[text], alone[text], atol=1e-5)
        with server.client() as client:
            after = _batch_counts(client.get("/metrics").text)
    runs, single = after[0] - before[0], after[1] - before[1]
    assert runs < len(texts)  # fewer model runs than requests: they were batched
    assert single < runs  # at least one run held more than one text


def _batch_counts(metrics: str) -> tuple[float, float]:
    """(model runs, runs of exactly one text) from the batch-size histogram."""
    runs = single = 0.0
    for line in metrics.splitlines():
        if line.startswith('vecstore_embedding_batch_texts_count{model="all-MiniLM-L6-v2"}'):
            runs = float(line.split()[-1])
        if line.startswith('vecstore_embedding_batch_texts_bucket{le="1.0",model='):
            single = float(line.split()[-1])
    return runs, single
