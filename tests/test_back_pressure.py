"""Back-pressure through HTTP: request timeouts (503 + Retry-After, work cancelled; 408 for a
body that never arrives), the bounded embedding queue (503 + Retry-After) and their /metrics."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from litestar.testing import TestClient

from tests.conftest import ADMIN_KEY, make_settings, wait_ready
from tests.oracles import assert_error, metric_value
from tests.server_process import HOST, running_server
from vecstore.app import create_app
from vecstore.domain import Embeddings
from vecstore.errors import RequestTimedOut
from vecstore.inference.host import InferenceConfig, ModelHost
from vecstore.inference.registry import ModelRegistry
from vecstore.services.embedder import Embedder
from vecstore.settings import Settings

MODEL = "all-MiniLM-L6-v2"


class SlowEmbedder:
    """The real model behind a delay: the request is still embedding when its deadline passes."""

    def __init__(self, inner: ModelHost, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self.finished = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed(self, texts: Sequence[str], model: str | None, *, query: bool = False) -> Embeddings:
        time.sleep(self.delay_s)
        try:
            return self.inner.embed(texts, model, query=query)
        finally:
            self.finished.set()


@pytest.fixture(scope="module")
def host() -> Iterator[ModelHost]:
    models = ModelHost(ModelRegistry.load(), InferenceConfig(micro_batching=False))
    yield models
    models.close()


def test_a_request_past_its_timeout_is_answered_503_and_not_applied(
    tmp_path: Path, host: ModelHost
) -> None:
    slow = SlowEmbedder(host, delay_s=4.0)
    app = create_app(make_settings(tmp_path, request_timeout_s=1.0), embedder=cast(Embedder, slow))
    with TestClient(app=app, raise_server_exceptions=False) as client:
        wait_ready(client)
        client.headers["x-api-key"] = ADMIN_KEY
        # Quick requests are untouched by the timeout.
        created = client.post("/v1/collections", json={"name": "docs", "dim": 384})
        assert created.status_code == 201, created.text
        r = client.post("/v1/collections/docs/upsert", json={"external_id": "a", "text": "hi"})
        # The answer came while the embedding was still running: it did not wait for it.
        assert not slow.finished.is_set()
        error = assert_error(r, 503, "timeout")
        assert r.headers["retry-after"] == "1"
        assert "request_timeout_s" in error["message"]
        assert error["request_id"] == r.headers["x-request-id"]
        # The worker thread reached its checkpoint after the deadline: nothing was written.
        assert slow.finished.wait(10)
        deadline = time.monotonic() + 5
        while (
            time.monotonic() < deadline
            and metric_value(
                client, "vecstore_request_timeouts_total", route="/v1/collections/{name}/upsert"
            )
            < 1
        ):
            time.sleep(0.05)
        time.sleep(0.2)  # let the abandoned thread finish its (refused) write attempt
        count = client.get("/v1/collections/docs").json()["data"]["vector_count"]
        assert count == 0
        assert_error(client.get("/v1/collections/docs/vectors/a"), 404, "record_not_found")
        route = "/v1/collections/{name}/upsert"
        assert metric_value(client, "vecstore_request_timeouts_total", route=route) == 1
        assert (
            metric_value(client, "vecstore_rejected_requests_total", route=route, reason="timeout")
            == 1
        )
        # The server is healthy afterwards; with the model fast again, the same write lands.
        slow.delay_s = 0.0
        again = client.post("/v1/collections/docs/upsert", json={"external_id": "a", "text": "hi"})
        assert again.status_code == 200, again.text
        assert client.get("/v1/collections/docs").json()["data"]["vector_count"] == 1


def test_timeouts_can_be_turned_off_and_must_not_be_negative(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, request_timeout_s=0)
    assert settings.request_timeout_s == 0
    with pytest.raises(ValueError, match="request_timeout_s"):
        Settings.from_env({"VECSTORE_REQUEST_TIMEOUT_S": "-1"})
    with pytest.raises(ValueError, match="default_rate_limit_per_minute"):
        Settings.from_env({"VECSTORE_DEFAULT_RATE_LIMIT_PER_MINUTE": "-5"})


def test_a_body_that_never_arrives_is_answered_408(tmp_path: Path) -> None:
    """A slow client holding a connection open with half a body gets 408, then the close."""
    key = "timeout-test-admin-key-0123456789abcdef"
    with running_server(
        tmp_path / "data", admin_key=key, env={"VECSTORE_REQUEST_TIMEOUT_S": "0.5"}
    ) as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/collections HTTP/1.1\r\nHost: localhost\r\n"
                + f"x-api-key: {key}\r\n".encode()
                + b"content-type: application/json\r\ncontent-length: 100\r\n\r\n"
                + b'{"name": "slo'
            )
            received = b""
            while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), received
        assert b'"type":"request_timeout"' in body
        with server.client() as client:
            # The half-sent collection was never created; the server serves on.
            assert client.get("/v1/collections/slo").status_code == 404
            metrics = client.get("/metrics").text
        assert 'vecstore_request_timeouts_total{route="/v1/collections"} 1.0' in metrics


def test_a_full_embedding_queue_answers_503_with_retry_after(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, embedding_queue_max=2))
    with TestClient(app=app, raise_server_exceptions=False) as client:
        wait_ready(client)
        client.headers["x-api-key"] = ADMIN_KEY
        assert client.post("/v1/collections", json={"name": "docs", "dim": 384}).status_code == 201
        items = [{"external_id": str(i), "text": f"text {i}"} for i in range(3)]
        r = client.post("/v1/collections/docs/bulk_upsert", json={"items": items})
        error = assert_error(r, 503, "overloaded")
        assert int(r.headers["retry-after"]) >= 1
        assert "embedding queue" in error["message"]
        route = "/v1/collections/{name}/bulk_upsert"
        assert (
            metric_value(
                client, "vecstore_rejected_requests_total", route=route, reason="overloaded"
            )
            == 1
        )
        # Within the bound the same kind of request is served, and the queue gauge is exported.
        ok = client.post("/v1/collections/docs/bulk_upsert", json={"items": items[:2]})
        assert ok.status_code == 200, ok.text
        assert metric_value(client, "vecstore_embedding_queue_texts", model=MODEL) == 0
        assert "# TYPE vecstore_embedding_queue_texts gauge" in client.get("/metrics").text


def _asgi_call(app: Any, timeout_s: float, *, body_arrives: bool) -> list[dict[str, Any]]:
    """Drive TimeoutMiddleware directly; returns the messages the client got."""
    from vecstore.api.metrics import Metrics
    from vecstore.api.timeouts import TimeoutMiddleware

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if body_arrives:
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)  # a client that never sends its body
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [], "state": {}}
    asyncio.run(TimeoutMiddleware(app, timeout_s, Metrics())(scope, receive, send))
    return sent


def test_a_slow_handler_is_503_and_only_a_missing_body_is_408() -> None:
    """Regression: a slow GET (no body, never read) was answered 408 as if its body was late."""

    async def slow_without_reading(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(3600)

    async def waits_for_body(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await asyncio.sleep(3600)

    assert _asgi_call(slow_without_reading, 0.05, body_arrives=True)[0]["status"] == 503
    assert _asgi_call(waits_for_body, 0.05, body_arrives=True)[0]["status"] == 503
    assert _asgi_call(waits_for_body, 0.05, body_arrives=False)[0]["status"] == 408


class DeadlineFirstEmbedder(SlowEmbedder):
    """A worker thread whose own deadline check fires before the middleware's timer."""

    def embed(self, texts: Sequence[str], model: str | None, *, query: bool = False) -> Embeddings:
        raise RequestTimedOut("the request timed out waiting for the embedding model")


def test_a_timeout_raised_in_a_worker_thread_is_counted_like_the_timers(
    tmp_path: Path, host: ModelHost
) -> None:
    """Regression: the two /metrics series for timeouts once disagreed when the thread's
    deadline check answered before the timer did."""
    app = create_app(
        make_settings(tmp_path), embedder=cast(Embedder, DeadlineFirstEmbedder(host, 0))
    )
    with TestClient(app=app, raise_server_exceptions=False) as client:
        wait_ready(client)
        client.headers["x-api-key"] = ADMIN_KEY
        assert client.post("/v1/collections", json={"name": "docs", "dim": 384}).status_code == 201
        r = client.post("/v1/collections/docs/upsert", json={"external_id": "a", "text": "hi"})
        assert_error(r, 503, "timeout")
        route = "/v1/collections/{name}/upsert"
        assert metric_value(client, "vecstore_request_timeouts_total", route=route) == 1
        assert (
            metric_value(client, "vecstore_rejected_requests_total", route=route, reason="timeout")
            == 1
        )
