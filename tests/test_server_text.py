"""Text features through the real server process: the bundled model embeds text for records,
search, hybrid search and query; text written before a SIGKILL is still found by keyword after
the restart; a broken model registry stops the server at start with a clear message."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests.server_process import ServerProcess, new_admin_key, running_server

Json = dict[str, Any]


def ok(response: Any) -> Json:
    assert response.status_code == 200, response.text
    data: Json = response.json()["data"]
    return data


def test_text_records_search_hybrid_and_query_over_real_http(tmp_path: Path) -> None:
    key = new_admin_key()
    with running_server(tmp_path / "data", admin_key=key) as server, server.client() as client:
        created = client.post("/v1/collections", json={"name": "notes", "dim": 384})
        assert created.status_code == 201, created.text
        assert created.json()["data"]["embedding_model"] == "all-MiniLM-L6-v2"
        notes = {
            "n1": "Remember to water the tomato plants in the garden",
            "n2": "The quarterly tax return is due on the fifteenth",
            "n3": "Book a table at the Italian restaurant for Friday",
        }
        items = [{"external_id": k, "text": v} for k, v in notes.items()]
        ok(client.post("/v1/collections/notes/bulk_upsert", json={"items": items}))
        hits = ok(
            client.post(
                "/v1/collections/notes/search",
                json={"text": "gardening chores", "k": 1, "include_timing": True},
            )
        )
        assert hits["results"][0]["external_id"] == "n1"
        assert hits["timing_ms"]["embedding_ms"] > 0
        fused = ok(
            client.post(
                "/v1/collections/notes/hybrid_search",
                json={"query_text": "tax return deadline", "k": 2},
            )
        )
        assert fused["results"][0]["external_id"] == "n2"
        assert fused["results"][0]["text_score"] > 0
        staged = ok(
            client.post(
                "/v1/collections/notes/query",
                json={"text": "dinner reservation", "k": 3, "top_n": 1},
            )
        )
        assert [h["external_id"] for h in staged["results"]] == ["n3"]

        server.kill()  # no shutdown, no checkpoint: the keyword index is in the same database
        server.start()
        with server.client() as again:
            fused = ok(
                again.post(
                    "/v1/collections/notes/hybrid_search",
                    json={"query_text": "Italian restaurant", "alpha": 0.0},
                )
            )
            assert [h["external_id"] for h in fused["results"]] == ["n3"]


def test_a_broken_model_registry_stops_the_server_with_a_clear_message(tmp_path: Path) -> None:
    registry = tmp_path / "models.toml"
    registry.write_text('[[model]]\nid = "x"\nkind = "embedding"\nbogus_field = 1\n')
    server = ServerProcess(
        tmp_path / "data", admin_key=new_admin_key(), env={"VECSTORE_MODELS_FILE": str(registry)}
    )
    server._spawn()
    assert server.proc is not None
    try:
        code = server.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        raise
    assert code == 2
    err = server.stderr()
    assert "model registry" in err
    assert str(registry) in err
    assert "bogus_field" in err
    assert "Traceback" not in err
