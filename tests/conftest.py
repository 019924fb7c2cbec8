"""Shared fixtures: an in-process app on a temporary data directory, and an HTTP client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from vecstore.app import create_app
from vecstore.settings import Settings

ADMIN_KEY = "test-admin-key-0123456789abcdef0123456789"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "admin_key": ADMIN_KEY,
        "indexer_interval_s": 0.05,
        "log_level": "WARNING",
        # Most tests never embed text: load the model on first use, not at every app start.
        "preload_models": False,
    }
    values.update(overrides)
    return Settings.from_env({}, **values)


def wait_ready(client: TestClient[Litestar], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get("/ready").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError("server did not become ready")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return make_settings(data_dir)


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture
def client(app: Litestar) -> Iterator[TestClient[Litestar]]:
    with TestClient(app=app, raise_server_exceptions=False) as test_client:
        wait_ready(test_client)
        test_client.headers["x-api-key"] = ADMIN_KEY
        yield test_client


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"x-api-key": ADMIN_KEY}


@pytest.fixture
def make_collection(client: TestClient[Litestar]) -> Callable[..., dict[str, Any]]:
    def _make(name: str = "docs", dim: int = 4, **body: Any) -> dict[str, Any]:
        response = client.post("/v1/collections", json={"name": name, "dim": dim, **body})
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    return _make


def flush_indexes(app: Litestar) -> None:
    """Run the background indexer's work now: fresh vectors indexed, compaction, checkpoint."""
    engine = app.state.services.engine
    for name in engine.collection_names():
        engine.maintain(engine.runtime(name), force_checkpoint=True)
