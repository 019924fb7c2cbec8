"""A first end-to-end pass through the main routes."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import flush_indexes


def test_create_upsert_search_rerank(
    client: TestClient[Litestar], app: Litestar, make_collection: Any
) -> None:
    make_collection("docs", dim=3)
    for i, vec in enumerate([[1, 0, 0], [0, 1, 0], [0.9, 0.1, 0]]):
        r = client.post(
            "/v1/collections/docs/upsert",
            json={"external_id": f"d{i}", "vector": vec, "metadata": {"i": i}},
        )
        assert r.status_code == 200, r.text
        assert r.json() == {
            "status": "success",
            "data": {"external_id": f"d{i}", "status": "inserted"},
        }
    r = client.post("/v1/collections/docs/search", json={"vector": [1, 0, 0], "k": 2})
    assert [h["external_id"] for h in r.json()["data"]["results"]] == ["d0", "d2"]
    flush_indexes(app)
    r = client.post("/v1/collections/docs/search", json={"vector": [1, 0, 0], "k": 2})
    assert [h["external_id"] for h in r.json()["data"]["results"]] == ["d0", "d2"]
    r = client.post(
        "/v1/collections/docs/rerank",
        json={"vector": [0, 1, 0], "candidates": ["d0", "d1", "zz", "d1"], "include_timing": True},
    )
    data = r.json()["data"]
    assert [h["external_id"] for h in data["results"]] == ["d1", "d0"]
    assert data["not_found"] == ["zz"]
    assert set(data["timing_ms"]) == {"embedding_ms", "search_ms", "total_ms"}
